"""MnasNet: Platform-Aware Neural Architecture Search for Mobile.

Tan et al., CVPR 2019, https://arxiv.org/abs/1807.11626. The layout mirrors
torchvision's ``mnasnet1_0`` (parameter count identical), which is the
paper's B1 variant: the searched network without squeeze-and-excite.
"""

from functools import partial

from torch import nn

from ._blocks import (
    ClassifierHead,
    ConvBNAct,
    DepthwiseSeparable,
    InvertedResidual,
    check_width,
    init_weights,
    make_divisible,
)
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1807.11626", "MnasNet: Platform-Aware Neural Architecture Search for Mobile", 2019)

# The final 1×1 conv stays 1280 wide at every width multiplier (as in torchvision).
HEAD_CHANNELS = 1280


class MnasNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        width_mult = check_width(width_mult)
        channels = partial(make_divisible, divisor=8)
        stem_ch = channels(32 * width_mult)
        in_ch = channels(16 * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(3, stem_ch, 3, stride=2, act_layer=nn.ReLU),
            # A depthwise-separable block with a linear projection and no shortcut.
            DepthwiseSeparable(stem_ch, in_ch, 3, 1, act_layer=nn.ReLU, pw_act=False),
        ]
        for expand_ratio, kernel, out, repeats, first_stride in ARCH:
            out_ch = channels(out * width_mult)
            stage: list[nn.Module] = []
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                stage.append(InvertedResidual(in_ch, out_ch, in_ch * expand_ratio, kernel, stride, nn.ReLU))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(in_ch, HEAD_CHANNELS, 1, act_layer=nn.ReLU))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(HEAD_CHANNELS, num_classes, dropout)
        init_weights(self)
        # The paper trains with TensorFlow's BatchNorm decay 0.9997, i.e. PyTorch momentum 0.0003.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1 - 0.9997

    def forward(self, x):
        return self.head(self.features(x))


# MnasNet-B1 (torchvision's layout), one row per stage of inverted residuals
# after the stem and the depthwise-separable block:
# t = expansion ratio, k = depthwise kernel, c = output channels,
# n = repeats, s = first stride.
ARCH = [
    # t, k, c, n, s
    (3, 3, 24, 3, 2),
    (3, 5, 40, 3, 2),
    (6, 5, 80, 3, 2),
    (6, 3, 96, 2, 1),
    (6, 5, 192, 4, 2),
    (6, 3, 320, 1, 1),
]


@register_model(
    family="mnasnet",
    variant="B1 1.0x",
    paper=PAPER,
    mirrors="torchvision mnasnet1_0",
    reference=Reference("torchvision mnasnet1_0", params=4_383_312, macs=314_415_872),
    published=Published(top1=73.46),
    notes="MnasNet-B1 (no squeeze-and-excite), as in torchvision; top-1 73.46 is torchvision's figure for its "
    "trained weights. The paper's headline MACs and top-1 are for MnasNet-A1, a different network (with SE), "
    "so no published MACs or params are recorded here.",
)
def mnasnet_100(**kwargs):
    return MnasNet(width_mult=1.0, **kwargs)


register_alias("mnasnet", "mnasnet_100")
