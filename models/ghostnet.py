"""GhostNet: More Features from Cheap Operations.

Han et al., CVPR 2020, https://arxiv.org/abs/1911.11907. The layout mirrors
timm's ``ghostnet_100`` (GhostNet v1; parameter count identical).
"""

import math

import torch
from torch import nn

from ._blocks import ConvBNAct, PooledConvHead, SqueezeExcite, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1911.11907", "GhostNet: More Features from Cheap Operations", 2020)


class GhostModule(nn.Module):
    """A 1×1 conv makes ``ceil(out / ratio)`` intrinsic maps; a cheap depthwise conv
    derives the remaining "ghost" maps from them; both are concatenated.

    With an odd ``out_channels`` the concatenation has one channel too many and is
    sliced back, as in the reference implementation; the slice is kept so that
    profiles show the same ops.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ratio: int = 2,
        cheap_kernel_size: int = 3,
        act_layer=nn.ReLU,
    ):
        super().__init__()
        if ratio < 2:
            raise ValueError(f"ghost ratio must be at least 2, got {ratio!r}")
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        ghosts = intrinsic * (ratio - 1)
        self.primary = ConvBNAct(in_channels, intrinsic, 1, act_layer=act_layer)
        self.cheap = ConvBNAct(intrinsic, ghosts, cheap_kernel_size, groups=intrinsic, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        out = torch.cat([intrinsic, self.cheap(intrinsic)], dim=1)
        return out[:, : self.out_channels]


class GhostBottleneck(nn.Module):
    """Ghost module (expand, ReLU) → [stride-2 depthwise] → [SE] → ghost module (linear), plus shortcut.

    The shortcut is the identity when shapes match, otherwise a depthwise k×k
    conv (carrying the stride) followed by a 1×1 projection, both linear.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        use_se: bool = False,
    ):
        super().__init__()
        self.expand = GhostModule(in_channels, mid_channels, act_layer=nn.ReLU)
        if stride > 1:
            self.dw = ConvBNAct(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, act_layer=None)
        else:
            self.dw = nn.Identity()
        if use_se:
            # GhostNet squeezes to a quarter of the expanded width, rounded to 4.
            reduced = make_divisible(mid_channels * 0.25, 4)
            self.se = SqueezeExcite(mid_channels, reduced, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)
        else:
            self.se = nn.Identity()
        self.project = GhostModule(mid_channels, out_channels, act_layer=None)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels, act_layer=None),
                ConvBNAct(in_channels, out_channels, 1, act_layer=None),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.dw(self.expand(x)))) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        width_mult = check_width(width_mult)

        def channels(c: float) -> int:
            return make_divisible(c * width_mult, 4)

        in_ch = channels(16)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.ReLU)]
        for kernel, expanded, out, use_se, stride in ARCH:
            out_ch = channels(out)
            layers.append(GhostBottleneck(in_ch, channels(expanded), out_ch, kernel, stride, use_se))
            in_ch = out_ch
        # The last 1×1 conv widens to the last block's expansion width (960 at 1.0x).
        last_ch = channels(ARCH[-1][1])
        layers.append(ConvBNAct(in_ch, last_ch, 1, act_layer=nn.ReLU))
        self.features = nn.Sequential(*layers)
        # The 1280-wide head is not scaled with the width multiplier.
        self.head = PooledConvHead(last_ch, HEAD_CHANNELS, num_classes, dropout, act_layer=nn.ReLU)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1, one row per ghost bottleneck:
# k = depthwise kernel, exp = expanded width, c = output channels,
# se = squeeze-and-excite, s = stride.
ARCH = [
    # k, exp, c, se, s
    (3, 16, 16, False, 1),
    (3, 48, 24, False, 2),
    (3, 72, 24, False, 1),
    (5, 72, 40, True, 2),
    (5, 120, 40, True, 1),
    (3, 240, 80, False, 2),
    (3, 200, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 480, 112, True, 1),
    (3, 672, 112, True, 1),
    (5, 672, 160, True, 2),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
]
HEAD_CHANNELS = 1280

_WIDTH_NOTE = "Widths are make_divisible(c * width, 4), as in the official code and timm."


@register_model(
    family="ghostnet",
    variant="0.5x",
    paper=PAPER,
    mirrors="timm ghostnet_050",
    reference=Reference("timm ghostnet_050", params=2_587_292, macs=42_328_152),
    published=Published(macs=42_000_000, params=2_600_000, top1=66.2),
    notes=_WIDTH_NOTE,
)
def ghostnet_050(**kwargs):
    return GhostNet(width_mult=0.5, **kwargs)


@register_model(
    family="ghostnet",
    variant="1.0x",
    paper=PAPER,
    mirrors="timm ghostnet_100",
    reference=Reference("timm ghostnet_100", params=5_182_508, macs=141_150_512),
    published=Published(macs=141_000_000, params=5_200_000, top1=73.9),
    notes=_WIDTH_NOTE,
)
def ghostnet_100(**kwargs):
    return GhostNet(width_mult=1.0, **kwargs)


@register_model(
    family="ghostnet",
    variant="1.3x",
    paper=PAPER,
    mirrors="timm ghostnet_130",
    reference=Reference("timm ghostnet_130", params=7_358_820, macs=227_003_256),
    published=Published(macs=226_000_000, params=7_300_000, top1=75.7),
    notes=_WIDTH_NOTE,
)
def ghostnet_130(**kwargs):
    return GhostNet(width_mult=1.3, **kwargs)


register_alias("ghostnet", "ghostnet_100")
