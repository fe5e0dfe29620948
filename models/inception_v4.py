"""Inception-v4: Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning.

Szegedy, Ioffe, Vanhoucke and Alemi, AAAI 2017,
https://arxiv.org/abs/1602.07261. A non-lightweight baseline for comparison.
The layout mirrors timm's ``inception_v4`` (a port of the TF-slim model;
parameter count and MACs identical), on 299×299 inputs: the stem of
Figure 3, 4 × Inception-A (Figure 4), Reduction-A (Figure 7 with k, l, m,
n = 192, 224, 256, 384), 7 × Inception-B (Figure 5), Reduction-B (Figure 8),
3 × Inception-C (Figure 6), global average pool and a linear classifier.
Choices where the paper is silent or the figures disagree with the code:

- every conv is conv (no bias) → BatchNorm(eps=1e-3) → ReLU, as in timm;
- the order of the 1×7/7×1 (and 1×3/3×1) convs inside a branch follows
  timm; where a figure draws them the other way round, the parameter and MAC
  counts are the same;
- the branch pools of Inception-A/B/C are 3×3 average pools that do not
  count padding (``count_include_pad=False``), as in timm;
- the classifier has no dropout, timm's default (the paper's keeps
  each feature with probability 0.8).
"""

from collections import OrderedDict

from torch import nn

from ._blocks import ClassifierHead, init_weights
from ._inception import InceptionBlock, Pool, avg_pool, conv, fork, make_branch, max_pool
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1602.07261", "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning", 2017)

BN_EPS = 1e-3  # timm's norm_eps


def _pool() -> Pool:
    return avg_pool(3, 1, 1, count_include_pad=False)


# Branches of each block, in concatenation order (Figures 3-8).
# Stem (Figure 3), after three plain convs: 147×147×64 → 35×35×384.
MIXED_3A = [[max_pool(3, 2)], [conv(96, 3, 2, valid=True)]]  # 160, 73×73
MIXED_4A = [  # 192, 71×71
    [conv(64), conv(96, 3, valid=True)],
    [conv(64), conv(64, (1, 7)), conv(64, (7, 1)), conv(96, 3, valid=True)],
]
MIXED_5A = [[conv(192, 3, 2, valid=True)], [max_pool(3, 2)]]  # 384, 35×35

INCEPTION_A = [  # 384 at 35×35
    [conv(96)],
    [conv(64), conv(96, 3)],
    [conv(64), conv(96, 3), conv(96, 3)],
    [_pool(), conv(96)],
]
REDUCTION_A = [  # 1024, 35 → 17
    [conv(384, 3, 2, valid=True)],
    [conv(192), conv(224, 3), conv(256, 3, 2, valid=True)],
    [max_pool(3, 2)],
]
INCEPTION_B = [  # 1024 at 17×17
    [conv(384)],
    [conv(192), conv(224, (1, 7)), conv(256, (7, 1))],
    [conv(192), conv(192, (7, 1)), conv(224, (1, 7)), conv(224, (7, 1)), conv(256, (1, 7))],
    [_pool(), conv(128)],
]
REDUCTION_B = [  # 1536, 17 → 8
    [conv(192), conv(192, 3, 2, valid=True)],
    [conv(256), conv(256, (1, 7)), conv(320, (7, 1)), conv(320, 3, 2, valid=True)],
    [max_pool(3, 2)],
]
INCEPTION_C = [  # 1536 at 8×8
    [conv(256)],
    [conv(384), fork(conv(256, (1, 3)), conv(256, (3, 1)))],
    [conv(384), conv(448, (3, 1)), conv(512, (1, 3)), fork(conv(256, (1, 3)), conv(256, (3, 1)))],
    [_pool(), conv(256)],
]


class InceptionV4(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.0):
        super().__init__()
        stem, in_ch = make_branch(3, STEM, bn_eps=BN_EPS)
        layers = OrderedDict(stem=stem)
        for name, branches, repeats in ARCH:
            for i in range(repeats):
                block = InceptionBlock(in_ch, branches, bn_eps=BN_EPS)
                layers[f"{name}{i + 1}" if repeats > 1 else name] = block
                in_ch = block.out_channels
        self.features = nn.Sequential(layers)
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# The stem's first three convs (Figure 3): 299 → 149 → 147 → 147, unpadded but the last.
STEM = [
    conv(32, 3, 2, valid=True),
    conv(32, 3, valid=True),
    conv(64, 3),
]

ARCH = [
    # name, branches, repeats  (output channels, grid)
    ("mixed_3a", MIXED_3A, 1),  # 160, 73×73
    ("mixed_4a", MIXED_4A, 1),  # 192, 71×71
    ("mixed_5a", MIXED_5A, 1),  # 384, 35×35
    ("inception_a", INCEPTION_A, 4),  # 384, 35×35
    ("reduction_a", REDUCTION_A, 1),  # 1024, 17×17
    ("inception_b", INCEPTION_B, 7),  # 1024, 17×17
    ("reduction_b", REDUCTION_B, 1),  # 1536, 8×8
    ("inception_c", INCEPTION_C, 3),  # 1536, 8×8
]


@register_model(
    family="inception_v4",
    variant="base",
    paper=PAPER,
    mirrors="timm inception_v4",
    input_shape=(1, 3, 299, 299),
    reference=Reference("timm inception_v4", params=42_679_816, macs=12_253_974_624),
    published=Published(top1=80.0),
    notes="Non-lightweight baseline. Input 299x299. 42,679,816 params / 12,253,974,624 conv+linear MACs at "
    "1x3x299x299, identical to timm 1.0.31 inception_v4. The paper reports neither a parameter nor a MAC "
    "count; top-1 is 100 - 20.0% error, single model single crop (Table 2, on the non-blacklisted subset of "
    "the ILSVRC 2012 validation set).",
)
def inception_v4(**kwargs):
    return InceptionV4(**kwargs)


register_alias("inceptionv4", "inception_v4")
