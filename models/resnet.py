"""ResNet: Deep Residual Learning for Image Recognition, and the Bag-of-Tricks variants.

He et al., CVPR 2016, https://arxiv.org/abs/1512.03385. A non-lightweight
baseline for comparison. The layout mirrors torchvision's ``resnet18`` and
``resnet50`` (parameter counts identical), including torchvision's "v1.5"
bottleneck, which strides its 3×3 conv rather than the first 1×1 conv as the
paper does (same parameters, slightly more MACs).

T. He et al., "Bag of Tricks for Image Classification with Convolutional
Neural Networks", CVPR 2019, https://arxiv.org/abs/1812.01187, Section 4 /
Figure 2, names three tweaks of ResNet-50 (Table 5):

- ResNet-B strides the bottleneck's 3×3 conv instead of its first 1×1: that
  is torchvision's v1.5 layout above, so ``resnet50`` is ResNet-50-B (aliases
  ``resnet50b`` and ``resnet50_v1b``, Gluon's name);
- ResNet-C replaces the 7×7 stem conv by three 3×3 convs of widths 32, 32, 64
  (the first strided), before the same max-pool: ``resnet50c``;
- ResNet-D also average-pools (2×2, stride 2) in front of the 1×1 projection
  shortcut of each downsampling block, whose conv then has stride 1:
  ``resnet50d``.

Both mirror timm's ``resnet50c``/``resnet50d`` (parameters and conv+linear MACs
identical). Where the paper is silent this follows timm (itself following
Gluon's ``resnetv1c``/``resnetv1d``): every stem conv is conv → BN → ReLU; the
shortcut pool uses ``ceil_mode=True, count_include_pad=False``; the first
stage's shortcut, which does not downsample, has no pool. C and D have the same
parameters and MACs, since the pool is not a conv and the projection conv does
the same work at stride 1 on the pooled map as at stride 2 on the full one.

The stem (:func:`make_stem`) and shortcut (:func:`make_shortcut`) are shared with
ResNeSt (``resnest.py``), which uses the ResNet-D stem and shortcut.
"""

import torch
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1512.03385", "Deep Residual Learning for Image Recognition", 2016)
TRICKS_PAPER = Paper("1812.01187", "Bag of Tricks for Image Classification with Convolutional Neural Networks", 2019)


class BasicBlock(nn.Module):
    """Two 3×3 convs; the ReLU comes after the residual add."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, avg_down: bool = False):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBNAct(in_channels, channels, 3, stride)
        self.conv2 = ConvBNAct(channels, out_channels, 3, act_layer=None)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, avg_down)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand by 4; the ReLU comes after the residual add."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, avg_down: bool = False):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBNAct(in_channels, channels, 1)
        self.conv2 = ConvBNAct(channels, channels, 3, stride)
        self.conv3 = ConvBNAct(channels, out_channels, 1, act_layer=None)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, avg_down)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class AvgPoolShortcut(nn.Module):
    """ResNet-D's downsampling shortcut: 2×2 average pool (stride 2), then the
    1×1 projection conv-BN at stride 1, which so sees every input position (a
    strided 1×1 conv ignores three in four, the paper's reason for the tweak)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        self.proj = ConvBNAct(in_channels, out_channels, 1, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


def make_shortcut(in_channels: int, out_channels: int, stride: int, avg_down: bool = False) -> nn.Module:
    """Identity where the shape is kept; otherwise the 1×1 projection (paper
    option B), strided, or behind an average pool with ``avg_down`` (ResNet-D)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if avg_down and stride > 1:
        return AvgPoolShortcut(in_channels, out_channels, stride)
    return ConvBNAct(in_channels, out_channels, 1, stride, act_layer=None)


def make_stem(out_channels: int, deep: bool = False) -> nn.Sequential:
    """The stride-4 stem: 7×7 stride-2 conv (ResNet, ResNet-B) or three 3×3
    convs of widths out/2, out/2, out, the first strided (ResNet-C/D), each
    conv-BN-ReLU; then a 3×3 stride-2 max-pool."""
    if deep:
        mid = out_channels // 2
        convs = [ConvBNAct(3, mid, 3, stride=2), ConvBNAct(mid, mid, 3), ConvBNAct(mid, out_channels, 3)]
    else:
        convs = [ConvBNAct(3, out_channels, 7, stride=2)]
    return nn.Sequential(*convs, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, ...],
        width_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.0,
        deep_stem: bool = False,
        avg_down: bool = False,
        block_kwargs: dict | None = None,
    ):
        super().__init__()
        width_mult = check_width(width_mult)
        if len(depths) != len(STAGES):
            raise ValueError(f"ResNet needs {len(STAGES)} stage depths, got {len(depths)}: {depths!r}")
        if any(d < 1 for d in depths):
            raise ValueError(f"every ResNet stage needs at least one block, got {depths!r}")
        # The deep stem's 3×3 convs are 32 wide and it ends 64 wide, as the 7×7 stem.
        in_ch = 2 * make_divisible(32 * width_mult) if deep_stem else make_divisible(64 * width_mult)
        self.stem = make_stem(in_ch, deep_stem)
        block_kwargs = dict(block_kwargs or {}, avg_down=avg_down)
        stages: list[nn.Module] = []
        for (channels, first_stride), depth in zip(STAGES, depths):
            channels = make_divisible(channels * width_mult)
            blocks = []
            for i in range(depth):
                blocks.append(block(in_ch, channels, first_stride if i == 0 else 1, **block_kwargs))
                in_ch = channels * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


# Paper Table 1, conv2_x..conv5_x: c = bottleneck (inner) width, s = first stride.
# conv2_x's stride is 1 because the stem's max-pool already downsampled.
STAGES = [
    # c, s
    (64, 1),
    (128, 2),
    (256, 2),
    (512, 2),
]

# Blocks per stage, paper Table 1.
DEPTHS = {
    # block, (conv2_x, conv3_x, conv4_x, conv5_x)
    18: (BasicBlock, (2, 2, 2, 2)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


@register_model(
    family="resnet",
    variant="18",
    paper=PAPER,
    mirrors="torchvision resnet18",
    reference=Reference("torchvision resnet18", params=11_689_512, macs=1_814_073_344),
    published=Published(macs=1_800_000_000),
    notes="Non-lightweight baseline. Paper Table 1 gives 1.8e9 FLOPs (multiply-adds). The paper's ResNet-18 "
    "ImageNet figure (27.88% top-1 error, Table 2) is 10-crop testing, so no single-crop top-1 is recorded.",
)
def resnet18(**kwargs):
    block, depths = DEPTHS[18]
    return ResNet(block, depths, **kwargs)


@register_model(
    family="resnet",
    variant="50",
    paper=PAPER,
    mirrors="torchvision resnet50",
    reference=Reference("torchvision resnet50", params=25_557_032, macs=4_089_184_256),
    published=Published(macs=3_800_000_000),
    notes="Non-lightweight baseline. torchvision's v1.5 bottleneck strides the 3x3 conv instead of the first "
    "1x1 (paper), which adds about 0.2 GMACs: 4.09 GMACs here vs the paper's 3.8e9 FLOPs (multiply-adds, "
    "Table 1); parameters are the same. "
    "The paper's ResNet-50 ImageNet figure (22.85% top-1 error, Table 3) is 10-crop testing, so no single-crop "
    "top-1 is recorded.",
)
def resnet50(**kwargs):
    block, depths = DEPTHS[50]
    return ResNet(block, depths, **kwargs)


# Bag of Tricks Table 5 gives 25M parameters, 4.3 GFLOPs (multiply-adds) and top-1 for both tweaks.
@register_model(
    family="resnet",
    variant="50-C",
    paper=TRICKS_PAPER,
    mirrors="timm resnet50c",
    reference=Reference("timm resnet50c", params=25_576_264, macs=4_328_824_832),
    published=Published(macs=4_300_000_000, params=25_000_000, top1=76.87),
    notes="ResNet-50-B (resnet50) with the 3x3 deep stem: 25.58M parameters and 4.33 GMACs here vs the paper's "
    "25M and 4.3 GFLOPs (multiply-adds, Table 5); the stem adds 19k parameters and 0.24 GMACs to ResNet-50-B.",
)
def resnet50c(**kwargs):
    block, depths = DEPTHS[50]
    return ResNet(block, depths, deep_stem=True, **kwargs)


@register_model(
    family="resnet",
    variant="50-D",
    paper=TRICKS_PAPER,
    mirrors="timm resnet50d",
    reference=Reference("timm resnet50d", params=25_576_264, macs=4_328_824_832),
    published=Published(macs=4_300_000_000, params=25_000_000, top1=77.16),
    notes="ResNet-50-C plus the average-pooled projection shortcut: 25.58M parameters and 4.33 GMACs here vs the "
    "paper's 25M and 4.3 GFLOPs (multiply-adds, Table 5). Parameters and conv+linear MACs equal ResNet-50-C's: "
    "the 2x2 average pool costs no MACs and the 1x1 projection does the same work at stride 1 on the pooled map.",
)
def resnet50d(**kwargs):
    block, depths = DEPTHS[50]
    return ResNet(block, depths, deep_stem=True, avg_down=True, **kwargs)


# resnet50 strides the 3x3 conv: it is the Bag of Tricks' ResNet-50-B (Gluon's "v1b").
register_alias("resnet50b", "resnet50")
register_alias("resnet50_v1b", "resnet50")
register_alias("resnet50_v1c", "resnet50c")
register_alias("resnet50_v1d", "resnet50d")
