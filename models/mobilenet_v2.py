"""MobileNetV2: Inverted Residuals and Linear Bottlenecks.

Sandler et al., CVPR 2018, https://arxiv.org/abs/1801.04381. The layout
mirrors torchvision's ``mobilenet_v2`` (parameter count identical).
"""

from functools import partial
from typing import Any, Callable

from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, InvertedResidual, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1801.04381", "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018)


class MobileNetV2(nn.Module):
    """``block_options(t, c)``, when given, is called with each stage's row of
    :data:`ARCH` (expansion ratio, output channels before the width multiplier)
    and returns extra :class:`InvertedResidual` keyword arguments for that
    stage's blocks: how attention variants (``mobilenet_v2_attention``) place
    their module."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.2,
        block_options: Callable[[int, int], dict[str, Any]] | None = None,
    ):
        super().__init__()
        width_mult = check_width(width_mult)
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(32 * width_mult)
        last_ch = channels(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.ReLU6)]
        for expand_ratio, out, repeats, first_stride in ARCH:
            out_ch = channels(out * width_mult)
            options = block_options(expand_ratio, out) if block_options is not None else {}
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                layers.append(InvertedResidual(in_ch, out_ch, in_ch * expand_ratio, 3, stride, nn.ReLU6, **options))
                in_ch = out_ch
        layers.append(ConvBNAct(in_ch, last_ch, 1, act_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(last_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 2: t = expansion ratio, c = output channels, n = repeats, s = first stride.
ARCH = [
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


@register_model(
    family="mobilenet_v2",
    variant="1.0x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v2",
    reference=Reference("torchvision mobilenet_v2", params=3_504_872, macs=300_774_272),
    published=Published(macs=300_000_000, params=3_400_000, top1=72.0),
)
def mobilenet_v2_100(**kwargs):
    return MobileNetV2(width_mult=1.0, **kwargs)


@register_model(
    family="mobilenet_v2",
    variant="1.4x",
    paper=PAPER,
    mirrors="torchvision mobilenet_v2(width_mult=1.4)",
    published=Published(macs=585_000_000, params=6_900_000, top1=74.7),
)
def mobilenet_v2_140(**kwargs):
    return MobileNetV2(width_mult=1.4, **kwargs)


register_alias("mobilenetv2", "mobilenet_v2_100")
