"""MobileNetV3: Searching for MobileNetV3.

Howard et al., ICCV 2019, https://arxiv.org/abs/1905.02244. The layout
mirrors torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small``
(parameter counts identical), including its width scaling of the
classifier's hidden layer (1280/1024 × width_mult).
"""

from functools import partial

import torch
from torch import nn

from ._blocks import ConvBNAct, InvertedResidual, SqueezeExcite, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1905.02244", "Searching for MobileNetV3", 2019)

# Activation shorthands of the paper's tables: RE = ReLU, HS = hard-swish.
RE = nn.ReLU
HS = nn.Hardswish


def _squeeze_excite(expanded_channels: int) -> SqueezeExcite:
    # MobileNetV3 squeezes to a quarter of the expanded width, rounded to 8, and
    # gates with the cheap hard-sigmoid instead of the sigmoid.
    return SqueezeExcite(
        expanded_channels, make_divisible(expanded_channels // 4, 8), act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid
    )


class MobileNetV3Head(nn.Module):
    """Pool → flatten → linear → hard-swish → dropout → linear.

    Unlike the usual head, MobileNetV3 puts a hidden fully connected layer after
    the pooling, where it is cheap (1×1 spatial), instead of a wider last conv.
    """

    def __init__(self, in_features: int, hidden_features: int, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Linear(in_features, hidden_features)
        self.act = nn.Hardswish(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.act(self.pre_logits(self.flatten(self.pool(x))))))


class MobileNetV3(nn.Module):
    def __init__(
        self,
        arch: list[tuple],
        hidden_features: int,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ):
        super().__init__()
        width_mult = check_width(width_mult)
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(16 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=HS)]
        for kernel, expanded, out, use_se, act_layer, stride in arch:
            out_ch = channels(out * width_mult)
            layers.append(
                InvertedResidual(
                    in_ch,
                    out_ch,
                    channels(expanded * width_mult),
                    kernel,
                    stride,
                    act_layer,
                    se_layer=_squeeze_excite if use_se else None,
                )
            )
            in_ch = out_ch
        last_conv_ch = 6 * in_ch
        layers.append(ConvBNAct(in_ch, last_conv_ch, 1, act_layer=HS))
        self.features = nn.Sequential(*layers)
        self.head = MobileNetV3Head(last_conv_ch, channels(hidden_features * width_mult), num_classes, dropout)
        init_weights(self)
        # The TensorFlow-trained reference uses these BatchNorm settings; matching
        # them keeps torchvision's weights loadable with identical outputs.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = 1e-3, 0.01

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1 (Large) and Table 2 (Small), one row per bneck block:
# k = depthwise kernel, exp = expanded width, c = output channels,
# se = squeeze-and-excite, act = nonlinearity, s = stride.
ARCH_LARGE = [
    # k, exp, c, se, act, s
    (3, 16, 16, False, RE, 1),
    (3, 64, 24, False, RE, 2),
    (3, 72, 24, False, RE, 1),
    (5, 72, 40, True, RE, 2),
    (5, 120, 40, True, RE, 1),
    (5, 120, 40, True, RE, 1),
    (3, 240, 80, False, HS, 2),
    (3, 200, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 480, 112, True, HS, 1),
    (3, 672, 112, True, HS, 1),
    (5, 672, 160, True, HS, 2),
    (5, 960, 160, True, HS, 1),
    (5, 960, 160, True, HS, 1),
]
HIDDEN_LARGE = 1280

ARCH_SMALL = [
    # k, exp, c, se, act, s
    (3, 16, 16, True, RE, 2),
    (3, 72, 24, False, RE, 2),
    (3, 88, 24, False, RE, 1),
    (5, 96, 40, True, HS, 2),
    (5, 240, 40, True, HS, 1),
    (5, 240, 40, True, HS, 1),
    (5, 120, 48, True, HS, 1),
    (5, 144, 48, True, HS, 1),
    (5, 288, 96, True, HS, 2),
    (5, 576, 96, True, HS, 1),
    (5, 576, 96, True, HS, 1),
]
HIDDEN_SMALL = 1024

_SCALED_HEAD_NOTE = (
    "torchvision scales the whole network with width_mult, the last conv ({conv}) and the classifier's "
    "hidden layer ({hidden} instead of {full}) included, so this variant is smaller than the paper's: "
    "{params} params / {macs} MACs vs paper ≈{paper_params} / {paper_macs}. Keeping the hidden layer at "
    "{full} would add {extra} params ({total}), most of the parameter gap; the MACs stay below the paper's."
)


@register_model(
    family="mobilenet_v3",
    variant="large 1.0x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v3_large",
    reference=Reference("torchvision mobilenet_v3_large", params=5_483_032, macs=216_589_760),
    published=Published(macs=219_000_000, params=5_400_000, top1=75.2),
)
def mobilenet_v3_large_100(**kwargs):
    return MobileNetV3(ARCH_LARGE, HIDDEN_LARGE, width_mult=1.0, **kwargs)


@register_model(
    family="mobilenet_v3",
    variant="large 0.75x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v3_large(width_mult=0.75)",
    reference=Reference("torchvision mobilenet_v3_large(width_mult=0.75)", params=3_377_576, macs=140_033_816),
    published=Published(macs=155_000_000, params=4_000_000, top1=73.3),
    notes=_SCALED_HEAD_NOTE.format(
        conv=720,
        hidden=960,
        full=1280,
        params="3,377,576",
        macs="140.0M",
        paper_params="4.0M",
        paper_macs="155M",
        extra="550,720",
        total="3.93M",
    ),
)
def mobilenet_v3_large_075(**kwargs):
    return MobileNetV3(ARCH_LARGE, HIDDEN_LARGE, width_mult=0.75, **kwargs)


@register_model(
    family="mobilenet_v3",
    variant="small 1.0x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v3_small",
    reference=Reference("torchvision mobilenet_v3_small", params=2_542_856, macs=56_510_400),
    published=Published(macs=56_000_000, params=2_500_000, top1=67.4),
)
def mobilenet_v3_small_100(**kwargs):
    return MobileNetV3(ARCH_SMALL, HIDDEN_SMALL, width_mult=1.0, **kwargs)


@register_model(
    family="mobilenet_v3",
    variant="small 0.75x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v3_small(width_mult=0.75)",
    reference=Reference("torchvision mobilenet_v3_small(width_mult=0.75)", params=1_653_920, macs=39_115_576),
    published=Published(macs=44_000_000, params=2_000_000, top1=65.4),
    notes=_SCALED_HEAD_NOTE.format(
        conv=432,
        hidden=768,
        full=1024,
        params="1,653,920",
        macs="39.1M",
        paper_params="2.0M",
        paper_macs="44M",
        extra="366,848",
        total="2.02M",
    ),
)
def mobilenet_v3_small_075(**kwargs):
    return MobileNetV3(ARCH_SMALL, HIDDEN_SMALL, width_mult=0.75, **kwargs)


register_alias("mobilenetv3", "mobilenet_v3_large_100")
register_alias("mobilenetv3_large", "mobilenet_v3_large_100")
register_alias("mobilenetv3_small", "mobilenet_v3_small_100")
