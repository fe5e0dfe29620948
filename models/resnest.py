"""ResNeSt: Split-Attention Networks.

Zhang et al., CVPR 2022 Workshops (arXiv 2020), https://arxiv.org/abs/2004.08955.
The layout mirrors timm's ``resnest50d`` (ported from the authors'
zhanghang1989/ResNeSt; parameters and conv+linear MACs identical), the paper's
ResNeSt-50 "2s1x64d": radix 2, cardinality 1, 64-wide bottleneck.

A ResNet-D (``resnet.py``: deep 3×3 stem, average-pooled projection shortcut,
both imported from there) whose bottleneck 3×3 conv is a split-attention conv
(Section 3): the conv produces ``radix`` splits per cardinal group (one grouped
conv, ``groups = cardinality * radix``); their sum is global-average-pooled and
goes through a two-layer 1×1 MLP (``fc1`` with BN and ReLU, ``fc2``) that gives
one logit per split and channel; a softmax across the splits of each channel
(:class:`RadixSoftmax`; a sigmoid when ``radix`` is 1) weights the splits, which
are summed.

Choices where the paper is silent, all as in timm and the authors' code:

- the attention MLP's width is ``in * radix / 4``, rounded to a multiple of 8
  and at least 32 (``make_divisible``); its convs have biases, grouped by the
  cardinality;
- "avd" downsampling: in a strided block the split-attention conv runs at
  stride 1 and a 3×3 average pool (stride 2, padding 1) after it downsamples
  (Section 4.1, "Average Downsampling");
- the first stage's shortcut, which does not downsample, is the plain 1×1
  projection; every ReLU is in place, BN follows every conv except ``fc2``.

Attention is written with ``view``/``transpose``/``softmax`` on a fixed axis,
so the torchscript ONNX exporter gives one ``Softmax`` node (opset 13 on, any
axis) and ONNX Runtime agrees with PyTorch.
"""

import torch
from torch import nn

from ._blocks import ConvBNAct, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model
from .resnet import DEPTHS, ResNet, make_shortcut

PAPER = Paper("2004.08955", "ResNeSt: Split-Attention Networks", 2020)


class RadixSoftmax(nn.Module):
    """Softmax over the ``radix`` splits of each channel (sigmoid for radix 1).

    Input: the attention logits, ``(N, radix * C, 1, 1)`` laid out as
    ``(cardinality, radix, C / cardinality)`` (how ``fc2``'s groups order them);
    output: ``(N, radix, C, 1, 1)`` weights, split-major, to scale the splits.
    """

    def __init__(self, radix: int, cardinality: int):
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.size(0)
        if self.radix > 1:
            x = x.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
            x = torch.softmax(x, dim=1)
        else:
            x = torch.sigmoid(x)
        return x.reshape(batch, self.radix, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"radix={self.radix}, cardinality={self.cardinality}"


class SplitAttention(nn.Module):
    """Split-attention conv: k×k conv-BN-ReLU into ``radix`` splits → sum →
    global pool → 1×1 conv-BN-ReLU → 1×1 conv → radix softmax → weighted sum."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        radix: int = 2,
        cardinality: int = 1,
        reduction: float = 0.25,
    ):
        super().__init__()
        self.radix = radix
        attn_channels = make_divisible(in_channels * radix * reduction, 8, min_value=32)
        self.conv = ConvBNAct(in_channels, out_channels * radix, kernel_size, stride, groups=cardinality * radix)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = ConvBNAct(out_channels, attn_channels, 1, groups=cardinality, bias=True)
        self.fc2 = nn.Conv2d(attn_channels, out_channels * radix, 1, groups=cardinality)
        self.rsoftmax = RadixSoftmax(radix, cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        batch, channels, height, width = x.shape
        splits = x.view(batch, self.radix, channels // self.radix, height, width)
        attn = self.rsoftmax(self.fc2(self.fc1(self.pool(splits.sum(dim=1)))))
        return (splits * attn).sum(dim=1)


class SplitAttnBottleneck(nn.Module):
    """ResNet bottleneck whose 3×3 conv is split attention: 1×1 reduce →
    split-attention 3×3 → [3×3 avg-pool, if strided] → 1×1 expand by 4; the
    ReLU comes after the residual add."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        avg_down: bool = True,
        radix: int = 2,
        cardinality: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        out_channels = channels * self.expansion
        group_width = int(channels * base_width / 64) * cardinality
        self.conv1 = ConvBNAct(in_channels, group_width, 1)
        self.conv2 = SplitAttention(group_width, group_width, 3, 1, radix, cardinality)
        self.avd = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv3 = ConvBNAct(group_width, out_channels, 1, act_layer=None)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, avg_down)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.avd(self.conv2(self.conv1(x)))) + self.shortcut(x))


class ResNeSt(ResNet):
    """ResNet-D (deep stem, average-pooled shortcuts) of split-attention bottlenecks."""

    def __init__(
        self,
        depths: tuple[int, ...],
        radix: int = 2,
        cardinality: int = 1,
        base_width: int = 64,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.0,
    ):
        if radix < 1 or cardinality < 1:
            raise ValueError(f"ResNeSt needs radix and cardinality >= 1, got {radix}, {cardinality}")
        super().__init__(
            SplitAttnBottleneck,
            depths,
            width_mult=width_mult,
            num_classes=num_classes,
            dropout=dropout,
            deep_stem=True,
            avg_down=True,
            block_kwargs=dict(radix=radix, cardinality=cardinality, base_width=base_width),
        )


# The paper's ablation notation "{radix}s{cardinality}x{width}d"; stage widths and strides as ResNet's (resnet.STAGES).
ARCH = {
    # depths, radix, cardinality, base width
    "resnest50d": (DEPTHS[50][1], 2, 1, 64),
}


@register_model(
    family="resnest",
    variant="50 (2s1x64d)",
    paper=PAPER,
    mirrors="timm resnest50d",
    reference=Reference("timm resnest50d", params=27_483_240, macs=5_371_160_576),
    published=Published(macs=5_390_000_000, params=27_500_000, top1=81.13),
    notes="Non-lightweight baseline. 27.48M parameters and 5.37 GMACs here vs the paper's 27.5M and 5.39 GFLOPs "
    "(ResNeSt-50 at 224x224 in its ImageNet comparison table). timm's resnest50d (the 'd' for the ResNet-D stem and "
    "shortcut) is the paper's ResNeSt-50; the paper's top-1 comes with its full training recipe (AutoAugment, "
    "mixup, label smoothing, DropBlock, 270 epochs).",
)
def resnest50d(**kwargs):
    depths, radix, cardinality, base_width = ARCH["resnest50d"]
    return ResNeSt(depths, radix, cardinality, base_width, **kwargs)


register_alias("resnest", "resnest50d")
register_alias("resnest50", "resnest50d")
