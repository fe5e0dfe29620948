"""CondenseNet: An Efficient DenseNet using Learned Group Convolutions.

Huang, Liu, van der Maaten & Weinberger, CVPR 2018, https://arxiv.org/abs/1711.09224.
The layout is the deployed (condensed) ImageNet network of the paper, as the
authors' ``condensenet_converted`` (ShichenLiu/CondenseNet) builds it: a 3×3
stride-2 stem of ``2·k₀ = 16`` channels, five dense blocks of 4-6-8-10-8 layers
with growth rates 8-16-32-64-128 (the paper's increasing growth rate), 2×2
average pooling between blocks (fully dense connectivity: no transition conv),
then BN-ReLU, global pooling and the classifier. Each dense layer is
BN-ReLU-1×1 group conv (``G`` groups, ``4k`` outputs) → channel shuffle →
BN-ReLU-3×3 group conv (``G`` groups, ``k`` outputs), concatenated to its input
(the shuffle is placed after the second BN-ReLU, an equivalent order, see
:class:`CondenseLayer`).

There is no packaged implementation, so the variants are compared with the
paper's rounded figures (its ImageNet comparison table with MobileNet,
ShuffleNet and NASNet-A; the authors' README lists the same): G=C=4 is 529M FLOPs (multiply-adds), 4.8M
params, 26.2% top-1 error; G=C=8 is 274M, 2.9M, 29.0%. Both are asserted within
5% (``tolerance=0.05``).

Choices where the deployed net is data dependent or the paper silent:

- The learned group conv, after condensation, reads through an *Index* layer:
  each of the ``G`` groups gathers the ``1/C`` of the input channels it kept
  in training (with ``G = C`` that is ``in_channels`` indices in all, some
  channels used by several groups, some by none), and BN-ReLU run on the
  gathered copy. The gather is learned, so here it is the identity: group
  ``g`` reads the contiguous slice ``[g·c/G, (g+1)·c/G)``. Weights, BN widths
  and MACs are those of the deployed layer; only the gather copy (no
  arithmetic) is left out.
- The *Permute* after the 1×1 group conv is the fixed channel shuffle with
  ``G`` groups (:func:`channel_shuffle`), as in the authors' code (it
  interleaves the groups' outputs so each 3×3 group sees all of them); it
  runs after the second BN-ReLU instead of before it, which is the same
  function (both act per channel) and lets the 1×1 conv-BN-ReLU fuse.
- The classifier is condensed too: it reads half of the pooled features,
  picked by weight magnitude in training. Here it reads every second channel
  (a strided slice, taken before pooling, which is the same thing), so the
  1,000-way linear has ``c/2 = 1032`` inputs as deployed.
- The stem conv has neither BN nor activation (the first dense layer's
  BN-ReLU follows it), as in the authors' code.

The paper's FLOPs come from the authors' counter (``utils.measure_model``),
which also counts every ReLU and pooling element and the classifier at its
training-time width; that adds about 12M to both variants, so the conv+linear
MACs counted here land 2-5% below the table.
"""

from collections import OrderedDict

import torch
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, channel_shuffle, init_weights
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER = Paper("1711.09224", "CondenseNet: An Efficient DenseNet using Learned Group Convolutions", 2018)
MIRRORS = "ShichenLiu/CondenseNet condensenet_converted (ImageNet, stages 4-6-8-10-8, growth 8-16-32-64-128)"


class CondenseLayer(nn.Module):
    """Deployed CondenseNet layer: BN-ReLU-1×1 group conv → BN-ReLU → shuffle → 3×3 group conv, concatenated.

    The paper's Fig. 1 (right) is BN-ReLU-1×1 G-Conv → Permute → BN-ReLU-3×3
    G-Conv. BN and ReLU act per channel, so the permute commutes with them
    (BN's parameters permuted alike); it is placed after them here, which lets
    the 1×1 conv, BN and ReLU run as one fused kernel, as a deployment runtime
    would. The layer's ``growth`` new channels are appended to its input
    (dense connectivity). Convs have no bias (pre-activation).
    """

    def __init__(self, in_channels: int, growth: int, groups: int, bottleneck: int = 4):
        super().__init__()
        mid = bottleneck * growth
        self.groups = groups
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, groups=groups, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act2(self.norm2(self.conv1(self.act1(self.norm1(x)))))
        out = self.conv2(channel_shuffle(out, self.groups))
        return torch.cat((x, out), dim=1)


class CondenseNet(nn.Module):
    """``groups`` is both the group count G and the condensation factor C (G = C)."""

    def __init__(self, groups: int = 4, num_classes: int = 1000, dropout: float = 0.0):
        super().__init__()
        if groups < 1:
            raise ValueError(f"CondenseNet needs at least one group, got {groups}")
        channels = 2 * ARCH[0][1]
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = ConvBNAct(3, channels, 3, stride=2, act_layer=None, norm=False)
        for index, (layers, growth) in enumerate(ARCH, start=1):
            if index > 1:
                stages[f"pool{index - 1}"] = nn.AvgPool2d(kernel_size=2, stride=2)
            block = []
            for _ in range(layers):
                block.append(CondenseLayer(channels, growth, groups))
                channels += growth
            stages[f"block{index}"] = nn.Sequential(*block)
        stages["norm"] = nn.BatchNorm2d(channels)
        stages["act"] = nn.ReLU(inplace=True)
        self.features = nn.Sequential(stages)
        self.num_features = channels
        # The condensed classifier reads half the features (every second channel here, see the module docstring).
        self.head = ClassifierHead(channels // 2, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[:, ::2])


# The paper's ImageNet network (authors' --stages 4-6-8-10-8 --growth 8-16-32-64-128):
# n = layers in the dense block, k = growth rate (new channels per layer; the 1×1 bottleneck is 4k).
# Blocks run at 112², 56², 28², 14², 7² (stride-2 stem, then 2×2 average pooling between blocks).
ARCH = [
    # n, k
    (4, 8),
    (6, 16),
    (8, 32),
    (10, 64),
    (8, 128),
]


@register_model(
    family="condensenet",
    variant="G=C=4",
    paper=PAPER,
    mirrors=MIRRORS + ", G=C=4",
    approximate=Approximate(
        "ImageNet comparison table; authors' README", params=4_800_000, macs=529_000_000, tolerance=0.05
    ),
    published=Published(macs=529_000_000, params=4_800_000, top1=73.8),
    notes=(
        "No packaged reference: the deployed (condensed) network built from the paper and the authors' "
        "condensenet_converted. Obtained 4,773,944 params / 516,640,576 conv+linear MACs at 224x224 vs paper "
        "4.8M / 529M (ImageNet table; the authors' counter also counts ReLU and pooling elements and the uncondensed "
        "classifier, about 12M more). Learned index layers modelled as identity (contiguous groups), the permute "
        "as a 4-group channel shuffle (after the second BN-ReLU, an equivalent order), the condensed "
        "classifier as every second feature channel."
    ),
)
def condensenet_g4c4(**kwargs):
    return CondenseNet(groups=4, **kwargs)


@register_model(
    family="condensenet",
    variant="G=C=8",
    paper=PAPER,
    mirrors=MIRRORS + ", G=C=8",
    approximate=Approximate(
        "ImageNet comparison table; authors' README", params=2_900_000, macs=274_000_000, tolerance=0.05
    ),
    published=Published(macs=274_000_000, params=2_900_000, top1=71.0),
    notes=(
        "As condensenet_g4c4 with 8 groups (8-group shuffle). Obtained 2,935,416 params / 261,545,792 "
        "conv+linear MACs at 224x224 vs paper 2.9M / 274M (ImageNet table; the same ~12M of ReLU/pooling/classifier "
        "counting separates them)."
    ),
)
def condensenet_g8c8(**kwargs):
    return CondenseNet(groups=8, **kwargs)


register_alias("condensenet", "condensenet_g4c4")
