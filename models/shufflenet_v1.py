"""ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices.

Zhang et al., CVPR 2018, https://arxiv.org/abs/1707.01083. The layout follows
the paper's Table 1 as the authors' own code builds it (megvii-model/
ShuffleNet-Series ``ShuffleNetV1``): the bottleneck is a quarter of the unit's
output width, the channel shuffle sits after the depthwise conv (equivalent
to the paper's Fig. 2 placement, since a depthwise conv acts per channel), the
classifier has no bias, and stride-2 units concatenate a 3×3 average-pooled
shortcut. No exact public parameter/MAC figures exist for it, so the variants
carry the paper's rounded complexities only.
"""

from collections import OrderedDict

import torch
from torch import nn

from ._blocks import ChannelShuffle, ClassifierHead, ConvBNAct, check_width, init_weights, make_divisible
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER = Paper("1707.01083", "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", 2018)
MIRRORS = "megvii-model/ShuffleNet-Series ShuffleNetV1"


class ShuffleV1Unit(nn.Module):
    """1×1 group conv → 3×3 depthwise → shuffle → 1×1 group conv, plus shortcut (paper Fig. 2b/c).

    Stride 1 adds the identity; stride 2 concatenates a 3×3 average-pooled copy
    of the input, so the main branch only produces ``out - in`` channels.
    ``group_first_conv=False`` keeps the first 1×1 dense where its input is too
    narrow to split (the first unit of stage 2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        stride: int,
        groups: int,
        group_first_conv: bool = True,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNetV1 units take stride 1 or 2, got {stride}")
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        self.pw1 = ConvBNAct(in_channels, mid_channels, 1, groups=groups if group_first_conv else 1)
        self.dw = ConvBNAct(mid_channels, mid_channels, 3, stride, groups=mid_channels, act_layer=None)
        # With one group there is nothing to interleave; skipping it avoids a pointless copy.
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.pw2 = ConvBNAct(mid_channels, branch_channels, 1, groups=groups, act_layer=None)
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw2(self.shuffle(self.dw(self.pw1(x))))
        if self.shortcut is None:
            return self.act(x + out)
        # The pooled input is already non-negative (it follows a ReLU), so only the new channels need one.
        return torch.cat((self.shortcut(x), self.act(out)), dim=1)


class ShuffleNetV1(nn.Module):
    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        stem_channels: int | None = None,
    ):
        super().__init__()
        if isinstance(groups, bool) or groups not in STAGE_CHANNELS:
            supported = ", ".join(str(g) for g in STAGE_CHANNELS)
            raise ValueError(f"ShuffleNetV1 supports groups in {{{supported}}}, got {groups!r}")
        width_mult = check_width(width_mult)
        # Multiples of 4·g keep the quarter-width bottleneck and every group conv divisible by g.
        stage_channels = [make_divisible(c * width_mult, 4 * groups) for c in STAGE_CHANNELS[groups]]
        in_ch = stem_channels if stem_channels is not None else make_divisible(STEM_CHANNELS * width_mult, groups)
        if (stage_channels[0] - in_ch) % groups:
            raise ValueError(f"stem width {in_ch} leaves stage 2's first unit indivisible by groups={groups}")

        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=ConvBNAct(3, in_ch, 3, stride=2),
            pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        for stage_index, ((stage_name, repeats), out_ch) in enumerate(zip(ARCH, stage_channels)):
            units = []
            for i in range(repeats):
                units.append(
                    ShuffleV1Unit(
                        in_ch,
                        out_ch,
                        mid_channels=out_ch // 4,
                        stride=2 if i == 0 else 1,
                        groups=groups,
                        group_first_conv=not (stage_index == 0 and i == 0),
                    )
                )
                in_ch = out_ch
            layers[stage_name] = nn.Sequential(*units)
        self.features = nn.Sequential(layers)
        # The authors' classifier has no bias.
        self.head = ClassifierHead(in_ch, num_classes, bias=False)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


STEM_CHANNELS = 24

# Paper Table 1: each stage opens with one stride-2 unit followed by stride-1 units.
ARCH = [
    # stage, repeats
    ("stage2", 4),
    ("stage3", 8),
    ("stage4", 4),
]

# Paper Table 1: output channels of ShuffleNet 1× per number of groups.
STAGE_CHANNELS = {
    # groups: (stage2, stage3, stage4)
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


def _notes(params: str, macs: str, paper_mflops: int, authors_readme: str | None = None, extra: str = "") -> str:
    """Obtained vs published complexity; ``authors_readme`` is the authors' rounded "params / MACs"."""
    text = (
        f"No exact public reference; obtained {params} params / {macs} conv+linear MACs "
        f"(batch 1, 1x3x224x224) vs paper {paper_mflops} MFLOPs."
    )
    if authors_readme:
        text += f" Counts equal a rebuild of the authors' network; their README rounds them to {authors_readme}."
    else:
        text += " The authors' code ships g=3 and g=8 only; this uses the paper's Table 1 widths in the same layout."
    return f"{text} {extra}".rstrip()


@register_model(
    family="shufflenet_v1",
    variant="g1 1.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS} layout, paper Table 1 widths for g=1",
    published=Published(macs=140_000_000, top1=66.4),
    notes=_notes("1,530,936", "143,078,976", 140),
)
def shufflenet_v1_g1_100(**kwargs):
    return ShuffleNetV1(groups=1, width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g2 1.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS} layout, paper Table 1 widths for g=2",
    published=Published(macs=140_000_000, top1=67.3),
    notes=_notes("1,732,848", "140,836,512", 140),
)
def shufflenet_v1_g2_100(**kwargs):
    return ShuffleNetV1(groups=2, width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g3 1.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS}(group=3, model_size='1.0x')",
    # The authors' README: 1.9M params / 138M FLOPs; Table 2 puts g=3 at 140 MFLOPs.
    approximate=Approximate("authors' README, Table 2", params=1_870_000, macs=138_000_000, tolerance=0.015),
    published=Published(macs=140_000_000, top1=67.4),
    notes=_notes("1,864,728", "137,460,672", 140, "1.9M / 138M"),
)
def shufflenet_v1_g3_100(**kwargs):
    return ShuffleNetV1(groups=3, width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g4 1.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS} layout, paper Table 1 widths for g=4",
    published=Published(macs=140_000_000, top1=67.2),
    notes=_notes("1,967,344", "134,339,776", 140),
)
def shufflenet_v1_g4_100(**kwargs):
    return ShuffleNetV1(groups=4, width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g8 1.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS}(group=8, model_size='1.0x')",
    published=Published(macs=140_000_000, top1=67.6),
    notes=_notes("2,433,768", "138,365,952", 140, "2.4M / 138M"),
)
def shufflenet_v1_g8_100(**kwargs):
    return ShuffleNetV1(groups=8, width_mult=1.0, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g3 0.5x",
    paper=PAPER,
    mirrors=f"{MIRRORS}(group=3, model_size='0.5x')",
    published=Published(macs=38_000_000, top1=56.8),
    notes=_notes("717,324", "37,589,856", 38, "0.7M / 38M"),
)
def shufflenet_v1_g3_050(**kwargs):
    return ShuffleNetV1(groups=3, width_mult=0.5, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g3 1.5x",
    paper=PAPER,
    mirrors=f"{MIRRORS}(group=3, model_size='1.5x')",
    published=Published(macs=292_000_000, top1=71.5),
    notes=_notes(
        "3,441,168",
        "292,443,552",
        292,
        "3.4M / 292M",
        extra="Its stem keeps 24 channels, not the 36 a strict 1.5x scaling gives.",
    ),
)
def shufflenet_v1_g3_150(**kwargs):
    kwargs.setdefault("stem_channels", 24)
    return ShuffleNetV1(groups=3, width_mult=1.5, **kwargs)


@register_model(
    family="shufflenet_v1",
    variant="g3 2.0x",
    paper=PAPER,
    mirrors=f"{MIRRORS}(group=3, model_size='2.0x')",
    published=Published(macs=524_000_000, top1=73.7),
    notes=_notes("5,449,776", "524,045,184", 524, "5.4M / 524M"),
)
def shufflenet_v1_g3_200(**kwargs):
    return ShuffleNetV1(groups=3, width_mult=2.0, **kwargs)


register_alias("shufflenetv1", "shufflenet_v1_g3_100")
