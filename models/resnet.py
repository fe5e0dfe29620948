"""ResNet: Deep Residual Learning for Image Recognition.

He et al., CVPR 2016, https://arxiv.org/abs/1512.03385. A non-lightweight
baseline for comparison. The layout mirrors torchvision's ``resnet18`` and
``resnet50`` (parameter counts identical), including torchvision's "v1.5"
bottleneck, which strides its 3×3 conv rather than the first 1×1 conv as the
paper does (same parameters, slightly more MACs).
"""

import torch
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_model

PAPER = Paper("1512.03385", "Deep Residual Learning for Image Recognition", 2016)


class BasicBlock(nn.Module):
    """Two 3×3 convs; the ReLU comes after the residual add."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBNAct(in_channels, channels, 3, stride)
        self.conv2 = ConvBNAct(channels, out_channels, 3, act_layer=None)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand by 4; the ReLU comes after the residual add."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBNAct(in_channels, channels, 1)
        self.conv2 = ConvBNAct(channels, channels, 3, stride)
        self.conv3 = ConvBNAct(channels, out_channels, 1, act_layer=None)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Projection shortcut (paper option B) only where the shape changes.
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvBNAct(in_channels, out_channels, 1, stride, act_layer=None)


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, ...],
        width_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.0,
    ):
        super().__init__()
        width_mult = check_width(width_mult)
        if len(depths) != len(STAGES):
            raise ValueError(f"ResNet needs {len(STAGES)} stage depths, got {len(depths)}: {depths!r}")
        if any(d < 1 for d in depths):
            raise ValueError(f"every ResNet stage needs at least one block, got {depths!r}")
        in_ch = make_divisible(64 * width_mult)
        self.stem = nn.Sequential(
            ConvBNAct(3, in_ch, 7, stride=2),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        for (channels, first_stride), depth in zip(STAGES, depths):
            channels = make_divisible(channels * width_mult)
            blocks = []
            for i in range(depth):
                blocks.append(block(in_ch, channels, first_stride if i == 0 else 1))
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
