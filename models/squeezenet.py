"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size.

Iandola et al., arXiv 2016, https://arxiv.org/abs/1602.07360. The layout
mirrors torchvision's ``squeezenet1_0`` and ``squeezenet1_1`` (parameter
counts identical). Version 1.1 is the authors' later release (DeepScale
GitHub, not the paper): a 3×3/64 stem and earlier pooling, ~2.4× fewer MACs at
the same accuracy.
"""

import torch
from torch import nn

from ._blocks import ConvBNAct, init_weights
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1602.07360", "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size", 2016)


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int | None = None):
    # SqueezeNet predates BatchNorm in compact nets: biased convs followed by ReLU.
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, padding=padding, bias=True, norm=False)


def _max_pool() -> nn.Module:
    # ceil_mode keeps the reference's spatial sizes (e.g. 55 → 27 → 13).
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class Fire(nn.Module):
    """1×1 squeeze conv, then parallel 1×1 and 3×3 expand convs concatenated."""

    def __init__(self, in_channels: int, squeeze_channels: int, expand_channels: int):
        super().__init__()
        self.squeeze = _conv_relu(in_channels, squeeze_channels, 1)
        self.expand1x1 = _conv_relu(squeeze_channels, expand_channels, 1)
        self.expand3x3 = _conv_relu(squeeze_channels, expand_channels, 3)
        self.out_channels = 2 * expand_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class SqueezeNetHead(nn.Module):
    """Dropout → 1×1 conv to the classes → ReLU → global average pool: no linear layer."""

    def __init__(self, in_channels: int, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.act(self.conv(self.dropout(x)))))


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "1_1", num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        if version not in ARCH:
            raise ValueError(f"unsupported SqueezeNet version {version!r}; expected one of {sorted(ARCH)}")
        stem_channels, stem_kernel, fire_layout = ARCH[version]
        layers: list[nn.Module] = [
            _conv_relu(3, stem_channels, stem_kernel, stride=2, padding=0),
            _max_pool(),
        ]
        in_ch = stem_channels
        for entry in fire_layout:
            if entry == POOL:
                layers.append(_max_pool())
                continue
            squeeze, expand = entry
            layers.append(Fire(in_ch, squeeze, expand))
            in_ch = 2 * expand
        self.features = nn.Sequential(*layers)
        self.head = SqueezeNetHead(in_ch, num_classes, dropout)
        init_weights(self)
        # The classifier conv feeds a ReLU then the logits directly; a small init
        # keeps random-model outputs near zero, as in the reference code.
        nn.init.normal_(self.head.conv.weight, 0.0, 0.01)

    def forward(self, x):
        return self.head(self.features(x))


POOL = "pool"  # a 3×3 stride-2 max-pool between Fire modules

# version: (stem channels, stem kernel, layout after the stem's max-pool).
# Layout entries are POOL or a Fire module given as (s1x1, e): squeeze channels
# and the width of each expand branch (e1x1 = e3x3 = e, output 2e), paper Table 1.
ARCH = {
    "1_0": (96, 7, [
        # s1x1, e
        (16, 64),
        (16, 64),
        (32, 128),
        POOL,
        (32, 128),
        (48, 192),
        (48, 192),
        (64, 256),
        POOL,
        (64, 256),
    ]),
    "1_1": (64, 3, [
        # s1x1, e
        (16, 64),
        (16, 64),
        POOL,
        (32, 128),
        (32, 128),
        POOL,
        (48, 192),
        (48, 192),
        (64, 256),
        (64, 256),
    ]),
}


@register_model(
    family="squeezenet",
    variant="1.0",
    paper=PAPER,
    mirrors="torchvision squeezenet1_0",
    reference=Reference("torchvision squeezenet1_0", params=1_248_424, macs=818_924_576),
    published=Published(params=1_248_424, top1=57.5),
    notes="The paper reports no MAC count. The classifier is a 1x1 conv (512 -> classes) + ReLU + "
    "global average pool, so its 'linear' MACs are counted as conv MACs.",
)
def squeezenet_1_0(**kwargs):
    return SqueezeNet(version="1_0", **kwargs)


@register_model(
    family="squeezenet",
    variant="1.1",
    paper=PAPER,
    mirrors="torchvision squeezenet1_1",
    reference=Reference("torchvision squeezenet1_1", params=1_235_496, macs=349_151_936),
    published=Published(),
    notes="Version 1.1 is not in the paper: it is the authors' later GitHub release (DeepScale/SqueezeNet), "
    "claimed to match 1.0's accuracy with 2.4x less computation. The classifier is a 1x1 conv + ReLU + "
    "global average pool.",
)
def squeezenet_1_1(**kwargs):
    return SqueezeNet(version="1_1", **kwargs)


register_alias("squeezenet", "squeezenet_1_1")
