"""EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks.

Tan & Le, ICML 2019, https://arxiv.org/abs/1905.11946. The layout mirrors
torchvision's ``efficientnet_b0`` (parameter count identical). Stochastic
depth, a training-time regulariser that is the identity at inference, is
left out.
"""

import math
from functools import partial

from torch import nn

from ._blocks import (
    ClassifierHead,
    ConvBNAct,
    InvertedResidual,
    SqueezeExcite,
    check_width,
    init_weights,
    make_divisible,
)
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1905.11946", "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", 2019)


def _squeeze_excite(block_in_channels: int):
    # EfficientNet sizes the squeeze from the block's *input* width (a quarter
    # of it), not from the expanded width the SE sits on.
    reduced = max(1, block_in_channels // 4)
    return lambda expanded_channels: SqueezeExcite(expanded_channels, reduced, act_layer=nn.SiLU, gate_layer=nn.Sigmoid)


class EfficientNet(nn.Module):
    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ):
        super().__init__()
        width_mult = check_width(width_mult)
        if not depth_mult > 0:
            raise ValueError(f"depth multiplier must be positive, got {depth_mult!r}")
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.SiLU)]
        for expand_ratio, kernel, out, repeats, first_stride in ARCH:
            out_ch = channels(out * width_mult)
            stage: list[nn.Module] = []
            for i in range(math.ceil(repeats * depth_mult)):
                stride = first_stride if i == 0 else 1
                stage.append(
                    InvertedResidual(
                        in_ch,
                        out_ch,
                        channels(in_ch * expand_ratio),
                        kernel,
                        stride,
                        nn.SiLU,
                        se_layer=_squeeze_excite(in_ch),
                    )
                )
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        last_ch = 4 * in_ch
        layers.append(ConvBNAct(in_ch, last_ch, 1, act_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(last_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1 (EfficientNet-B0), one row per stage of MBConv blocks:
# t = expansion ratio (1 = no expansion conv), k = depthwise kernel,
# c = output channels, n = repeats, s = first stride. Every block has SE.
ARCH = [
    # t, k, c, n, s
    (1, 3, 16, 1, 1),
    (6, 3, 24, 2, 2),
    (6, 5, 40, 2, 2),
    (6, 3, 80, 3, 2),
    (6, 5, 112, 3, 1),
    (6, 5, 192, 4, 2),
    (6, 3, 320, 1, 1),
]


@register_model(
    family="efficientnet",
    variant="B0",
    paper=PAPER,
    mirrors="torchvision efficientnet_b0",
    reference=Reference("torchvision efficientnet_b0", params=5_288_548, macs=385_814_752),
    published=Published(macs=390_000_000, params=5_300_000, top1=77.1),
    notes="Stochastic depth (drop-connect, p=0.2 in torchvision) is training-only and left out; inference "
    "outputs, parameters and MACs are unaffected.",
)
def efficientnet_b0(**kwargs):
    return EfficientNet(width_mult=1.0, depth_mult=1.0, **kwargs)


register_alias("efficientnet", "efficientnet_b0")
