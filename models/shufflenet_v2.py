"""ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design.

Ma et al., ECCV 2018, https://arxiv.org/abs/1807.11164. The layout mirrors
torchvision's ``shufflenet_v2_x0_5`` ... ``shufflenet_v2_x2_0`` (parameter
counts and conv+linear MACs identical).
"""

from collections import OrderedDict

import torch
from torch import nn

from ._blocks import ChannelShuffle, ClassifierHead, ConvBNAct, check_width, init_weights
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1807.11164", "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", 2018)
REFERENCE_NOTE = (
    "Reference MACs are conv+linear MACs of torchvision's model at batch 1 on 1x3x224x224 "
    "(torch.utils.flop_counter); the paper's Table 5 rounds to 41M/146M/299M/591M."
)


class ShuffleV2Unit(nn.Module):
    """Channel split → [identity | 1×1 → 3×3 depthwise → 1×1] → concat → shuffle (paper Fig. 3c/d).

    A stride-1 unit splits its input in half and transforms one half only; a
    stride-2 unit feeds the whole input to both branches (the left one a
    depthwise 3×3 → 1×1), so the output width doubles while the map halves.
    The depthwise convs stay linear, as in the paper and torchvision.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNetV2 units take stride 1 or 2, got {stride}")
        branch_channels = out_channels // 2
        if stride == 1 and in_channels != 2 * branch_channels:
            raise ValueError(
                "a stride-1 ShuffleNetV2 unit needs in_channels == out_channels, an even number; "
                f"got {in_channels} → {out_channels}"
            )
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                OrderedDict(
                    dw=ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act_layer=None),
                    pw=ConvBNAct(in_channels, branch_channels, 1),
                )
            )
        else:
            self.branch1 = None
        branch2_in = in_channels if stride == 2 else branch_channels
        self.branch2 = nn.Sequential(
            OrderedDict(
                pw1=ConvBNAct(branch2_in, branch_channels, 1),
                dw=ConvBNAct(branch_channels, branch_channels, 3, stride, groups=branch_channels, act_layer=None),
                pw2=ConvBNAct(branch_channels, branch_channels, 1),
            )
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(transformed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000):
        super().__init__()
        width_mult = check_width(width_mult)
        if width_mult not in STAGE_WIDTHS:
            # The paper's widths (Table 5) follow no formula, so only its four are defined.
            supported = ", ".join(f"{w:g}" for w in STAGE_WIDTHS)
            raise ValueError(f"ShuffleNetV2 is defined for width_mult in {{{supported}}}, got {width_mult:g}")
        *stage_channels, last_channels = STAGE_WIDTHS[width_mult]

        in_ch = STEM_CHANNELS
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=ConvBNAct(3, in_ch, 3, stride=2),
            pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        for (stage_name, repeats), out_ch in zip(ARCH, stage_channels):
            units = [ShuffleV2Unit(in_ch, out_ch, stride=2)]
            units += [ShuffleV2Unit(out_ch, out_ch, stride=1) for _ in range(repeats - 1)]
            layers[stage_name] = nn.Sequential(*units)
            in_ch = out_ch
        layers["conv5"] = ConvBNAct(in_ch, last_channels, 1)
        self.features = nn.Sequential(layers)
        self.head = ClassifierHead(last_channels, num_classes)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


STEM_CHANNELS = 24

# Paper Table 5: each stage opens with one stride-2 unit followed by stride-1 units.
ARCH = [
    # stage, repeats
    ("stage2", 4),
    ("stage3", 8),
    ("stage4", 4),
]

# Paper Table 5: output channels per width.
STAGE_WIDTHS = {
    # width: (stage2, stage3, stage4, conv5)
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


@register_model(
    family="shufflenet_v2",
    variant="0.5x",
    paper=PAPER,
    mirrors="torchvision shufflenet_v2_x0_5",
    reference=Reference("torchvision shufflenet_v2_x0_5", params=1_366_792, macs=40_476_448),
    notes=REFERENCE_NOTE,
    published=Published(macs=41_000_000, params=1_400_000, top1=60.3),
)
def shufflenet_v2_050(**kwargs):
    return ShuffleNetV2(width_mult=0.5, **kwargs)


@register_model(
    family="shufflenet_v2",
    variant="1.0x",
    paper=PAPER,
    mirrors="torchvision shufflenet_v2_x1_0",
    reference=Reference("torchvision shufflenet_v2_x1_0", params=2_278_604, macs=144_907_992),
    notes=REFERENCE_NOTE,
    published=Published(macs=146_000_000, params=2_300_000, top1=69.4),
)
def shufflenet_v2_100(**kwargs):
    return ShuffleNetV2(width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v2",
    variant="1.5x",
    paper=PAPER,
    mirrors="torchvision shufflenet_v2_x1_5",
    reference=Reference("torchvision shufflenet_v2_x1_5", params=3_503_624, macs=295_759_392),
    notes=REFERENCE_NOTE,
    published=Published(macs=299_000_000, params=3_500_000, top1=72.6),
)
def shufflenet_v2_150(**kwargs):
    return ShuffleNetV2(width_mult=1.5, **kwargs)


@register_model(
    family="shufflenet_v2",
    variant="2.0x",
    paper=PAPER,
    mirrors="torchvision shufflenet_v2_x2_0",
    reference=Reference("torchvision shufflenet_v2_x2_0", params=7_393_996, macs=583_253_464),
    notes=REFERENCE_NOTE,
    published=Published(macs=591_000_000, params=7_400_000, top1=74.9),
)
def shufflenet_v2_200(**kwargs):
    return ShuffleNetV2(width_mult=2.0, **kwargs)


register_alias("shufflenetv2", "shufflenet_v2_100")
