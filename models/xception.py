"""Xception: Deep Learning with Depthwise Separable Convolutions.

Chollet, CVPR 2017, https://arxiv.org/abs/1610.02357. The layout mirrors
timm's ``legacy_xception`` (formerly ``xception``; parameter count identical,
and equal to the paper's 22,855,952): entry flow, eight middle-flow blocks,
exit flow, on 299×299 inputs.
"""

from collections import OrderedDict

import torch
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, init_weights
from ._registry import Paper, Published, Reference, register_model

PAPER = Paper("1610.02357", "Xception: Deep Learning with Depthwise Separable Convolutions", 2017)


class SeparableConv2d(nn.Sequential):
    """Depthwise k×k conv straight into a pointwise 1×1 conv, with no BN or
    activation between them (the paper found an intermediate ReLU hurts)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.dw = nn.Conv2d(in_channels, in_channels, kernel_size, 1, padding, groups=in_channels, bias=False)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)


def _act_sep_bn(in_channels: int, out_channels: int, act: nn.Module | None) -> nn.Sequential:
    # Blocks are pre-activation: ReLU → separable conv → BN.
    layers = OrderedDict(act=act) if act is not None else OrderedDict()
    layers["conv"] = SeparableConv2d(in_channels, out_channels)
    layers["bn"] = nn.BatchNorm2d(out_channels)
    return nn.Sequential(layers)


def _sep_bn_act(in_channels: int, out_channels: int) -> nn.Sequential:
    # The exit flow's last two convs are post-activation: separable conv → BN → ReLU.
    return nn.Sequential(
        OrderedDict(
            conv=SeparableConv2d(in_channels, out_channels),
            bn=nn.BatchNorm2d(out_channels),
            act=nn.ReLU(inplace=True),
        )
    )


class XceptionBlock(nn.Module):
    """``repeats`` × (ReLU → separable 3×3 → BN), then a 3×3 max-pool if strided,
    plus an identity or 1×1-conv-BN shortcut.

    ``grow_first`` widens to ``out_channels`` at the first separable conv
    (entry and middle flow) rather than the last (exit flow);
    ``start_with_relu=False`` drops the leading ReLU (first entry block, whose
    input is already activated by the stem).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        repeats: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ):
        super().__init__()
        if repeats < 1:
            raise ValueError(f"an Xception block needs at least one separable conv, got repeats={repeats}")
        layers: list[nn.Module] = []
        in_ch = in_channels
        for i in range(repeats):
            is_widening = i == 0 if grow_first else i == repeats - 1
            out_ch = out_channels if is_widening else in_ch
            if i == 0 and not start_with_relu:
                act = None
            else:
                # The first ReLU must not act in place: the shortcut still needs the block input.
                act = nn.ReLU(inplace=i > 0)
            layers.append(_act_sep_bn(in_ch, out_ch, act))
            in_ch = out_ch
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.layers = nn.Sequential(*layers)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, act_layer=None)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + self.shortcut(x)


class Xception(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.0, middle_repeats: int = 8):
        super().__init__()
        if middle_repeats < 0:
            raise ValueError(f"middle_repeats must be non-negative, got {middle_repeats}")
        # Unpadded stem convs, as in the reference: 299 → 149 → 147.
        self.stem = nn.Sequential(
            ConvBNAct(3, 32, 3, stride=2, padding=0),
            ConvBNAct(32, 64, 3, padding=0),
        )
        self.entry_flow = nn.Sequential(*(XceptionBlock(*cfg) for cfg in ENTRY_FLOW))
        self.middle_flow = nn.Sequential(*(XceptionBlock(*MIDDLE_FLOW) for _ in range(middle_repeats)))
        exit_in, exit_out, *exit_cfg = EXIT_FLOW
        self.exit_flow = nn.Sequential(
            XceptionBlock(exit_in, exit_out, *exit_cfg),
            *(_sep_bn_act(c_in, c_out) for c_in, c_out in EXIT_CONVS),
        )
        self.head = ClassifierHead(EXIT_CONVS[-1][1], num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.exit_flow(self.middle_flow(self.entry_flow(self.stem(x)))))


# Paper Figure 5. Block columns: input and output channels, separable convs per
# block, stride (a 3×3 max-pool closes strided blocks), leading ReLU, and whether
# the width grows at the first separable conv (else at the last).
ENTRY_FLOW = [
    # in, out, repeats, stride, start_with_relu, grow_first
    (64, 128, 2, 2, False, True),
    (128, 256, 2, 2, True, True),
    (256, 728, 2, 2, True, True),
]
MIDDLE_FLOW = (728, 728, 3, 1, True, True)  # repeated 8 times
EXIT_FLOW = (728, 1024, 2, 2, True, False)
# Then two post-activation separable convs before global pooling.
EXIT_CONVS = [
    # in, out
    (1024, 1536),
    (1536, 2048),
]


@register_model(
    family="xception",
    variant="base",
    paper=PAPER,
    mirrors="timm legacy_xception",
    input_shape=(1, 3, 299, 299),
    reference=Reference("timm legacy_xception", params=22_855_952, macs=8_357_403_496),
    published=Published(params=22_855_952, top1=79.0),
    notes="Input 299x299. The paper reports no MAC count; 8,357,403,496 conv+linear MACs at 1x3x299x299, measured "
    "on timm 1.0.31 legacy_xception (identical to this model's count).",
)
def xception(**kwargs):
    return Xception(**kwargs)
