"""MobileNeXt: Rethinking Bottleneck Structure for Efficient Mobile Network Design.

Zhou et al., ECCV 2020, https://arxiv.org/abs/2007.02269. The layout mirrors
the authors' public PyTorch code (zhoudaquan/rethinking_bottleneck_design,
``mobilenext.py``, first published as "I2RNet"), stage table of the paper's
Table 1. There is no packaged reference implementation, so the parameter and
MAC counts are compared with the paper's rounded figures only.
"""

import math
from functools import partial

import torch
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, check_width, init_weights, make_divisible
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER = Paper("2007.02269", "Rethinking Bottleneck Structure for Efficient Mobile Network Design", 2020)


def sandglass_hidden_channels(in_channels: int, out_channels: int, reduction: int) -> int:
    """Width of the bottleneck between the two 1×1 convs.

    The authors' rule: ``in / t``, but never thinner than a sixth of the output,
    rounded up to a multiple of 16, so blocks that widen a lot keep enough
    channels in the narrow middle.
    """
    hidden = in_channels // reduction
    if hidden < out_channels / 6.0:
        hidden = make_divisible(math.ceil(out_channels / 6.0), 16)
    return hidden


class SandGlass(nn.Module):
    """Depthwise 3×3 → 1×1 reduce (linear) → 1×1 expand → depthwise 3×3 (linear, strided).

    The inverse of MobileNetV2's block: the shortcut joins the two wide ends,
    and the spatial convs work on the wide tensors. As in the authors' code, a
    block that changes width drops the depthwise convs it does not need: at
    stride 1 both (it is then a plain 1×1 bottleneck), at stride 2 the first
    (the last one still downsamples). The very first block (``t = 2``) and the
    single-block stride-1 stages (``keep_depthwise``) keep both.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        reduction: int,
        keep_depthwise: bool = False,
        act_layer=nn.ReLU6,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"SandGlass stride must be 1 or 2, got {stride}")
        hidden = sandglass_hidden_channels(in_channels, out_channels, reduction)
        full_block = reduction == 2 or in_channels == out_channels or keep_depthwise
        if full_block:
            self.dw_in = ConvBNAct(in_channels, in_channels, 3, groups=in_channels, act_layer=act_layer)
        else:
            self.dw_in = nn.Identity()
        self.reduce = ConvBNAct(in_channels, hidden, 1, act_layer=None)
        self.expand = ConvBNAct(hidden, out_channels, 1, act_layer=act_layer)
        if full_block or stride == 2:
            self.dw_out = ConvBNAct(out_channels, out_channels, 3, stride, groups=out_channels, act_layer=None)
        else:
            self.dw_out = nn.Identity()
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dw_out(self.expand(self.reduce(self.dw_in(x))))
        return x + out if self.use_residual else out


class MobileNeXt(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        width_mult = check_width(width_mult)
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.ReLU6)]
        for reduction, out, repeats, first_stride in ARCH:
            # The last stage is the 1280-wide feature layer: like MobileNetV2's,
            # it is never narrowed below 1280 by a width multiplier < 1.
            out_ch = channels(out * max(1.0, width_mult)) if out == LAST_CHANNELS else channels(out * width_mult)
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                keep_depthwise = repeats == 1 and first_stride == 1
                layers.append(SandGlass(in_ch, out_ch, stride, reduction, keep_depthwise))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        # No 1×1 conv before pooling: the last SandGlass block already outputs 1280 channels.
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


LAST_CHANNELS = 1280

# Paper Table 1: t = reduction ratio of the 1×1 bottleneck (in / t channels),
# c = output channels, n = repeats, s = first stride.
ARCH = [
    # t, c, n, s
    (2, 96, 1, 2),
    (6, 144, 1, 1),
    (6, 192, 3, 2),
    (6, 288, 3, 2),
    (6, 384, 4, 1),
    (6, 576, 4, 2),
    (6, 960, 3, 1),
    (6, LAST_CHANNELS, 1, 1),
]


@register_model(
    family="mobilenext",
    variant="1.0x",
    paper=PAPER,
    mirrors="zhoudaquan/rethinking_bottleneck_design mobilenext (I2RNet) 1.0x",
    # Table 4 (300M MAdds); 3.5M params as Coordinate Attention (2103.02907) Table 1 lists it.
    approximate=Approximate("Table 4; CA paper Table 1", params=3_500_000, macs=300_000_000, tolerance=0.05),
    published=Published(macs=300_000_000, params=3_400_000, top1=74.02),
    notes=(
        "No packaged reference: built from the paper's Table 1 and the authors' block rules. "
        "Obtained 3,535,416 params / 311,342,592 conv+linear MACs at 224x224 vs paper 3.4M / 300M "
        "(the authors' follow-up, Coordinate Attention, lists this baseline as 3.5M). "
        "Confirmed from public copies of the authors' code: hidden width max(in/t, ceil(out/6) rounded to 16), "
        "depthwise convs dropped in width-changing blocks (first one at stride 2, both at stride 1) except "
        "the t=2 block and single-block stride-1 stages, no 1x1 conv before pooling. "
        "Not confirmed: copies disagree on the 960-channel stage's repeats (3 here, as in the authors' "
        "I2RNet/Coordinate-Attention code; 2 in another copy: 3.20M / 295M) and on classifier dropout (0.2 here). "
        "The partial shortcut (identity tensor multiplier < 1) of the paper's ablation is not modelled."
    ),
)
def mobilenext_100(**kwargs):
    return MobileNeXt(width_mult=1.0, **kwargs)


register_alias("mobilenext", "mobilenext_100")
