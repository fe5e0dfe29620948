"""Inception-v3: Rethinking the Inception Architecture for Computer Vision.

Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, CVPR 2016,
https://arxiv.org/abs/1512.00567. A non-lightweight baseline for comparison.
The layout mirrors torchvision's ``inception_v3(aux_logits=False,
init_weights=False)`` with ``transform_input=False`` (parameter count and
MACs identical), on 299×299 inputs. torchvision ports the released
TensorFlow model, which departs from the paper's Table 1 in places; this
model follows torchvision:

- the stem after the first max-pool is 1×1 conv → 80, 3×3 conv → 192,
  3×3/2 max-pool (Table 1 lists three 3×3 convs there, the second strided,
  and no second pool);
- the 35×35 modules (Figure 5, "Inception-A" here) keep a 5×5 branch next to
  the double 3×3 one, with 32/64/64 pool-projection widths, so they output
  256, 288, 288 channels;
- the 17×17 grid has four Figure-6 modules ("Inception-C", 7×1/1×7
  factorised, inner width 128, 160, 160, 192) where Table 1 lists five;
- the grid reductions are torchvision's "Inception-B" (35→17) and
  "Inception-D" (17→8), and the two 8×8 modules are the expanded filter
  banks of Figure 7 ("Inception-E", 1×3 and 3×1 convs side by side);
- every conv is conv (no bias) → BatchNorm(eps=1e-3) → ReLU; the 3×3
  average pools count padding (``F.avg_pool2d``'s default);
- the auxiliary classifier is training-only and left out; the classifier
  dropout is 0.5.
"""

from collections import OrderedDict

from torch import nn

from ._blocks import ClassifierHead, init_weights
from ._inception import InceptionBlock, avg_pool, conv, fork, make_branch, max_pool
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1512.00567", "Rethinking the Inception Architecture for Computer Vision", 2016)

BN_EPS = 1e-3  # torchvision's BasicConv2d


def inception_a(pool_features: int) -> list:
    """35×35: 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg-pool → 1×1."""
    return [
        [conv(64)],
        [conv(48), conv(64, 5)],
        [conv(64), conv(96, 3), conv(96, 3)],
        [avg_pool(3, 1, 1), conv(pool_features)],
    ]


def inception_b() -> list:
    """35→17 reduction: 3×3/2 | 1×1 → 3×3 → 3×3/2 | 3×3/2 max-pool."""
    return [
        [conv(384, 3, 2, valid=True)],
        [conv(64), conv(96, 3), conv(96, 3, 2, valid=True)],
        [max_pool(3, 2)],
    ]


def inception_c(channels_7x7: int) -> list:
    """17×17, 7×7 factorised into 1×7 and 7×1: 1×1 | 1×1 → 1×7 → 7×1 |
    1×1 → 7×1 → 1×7 → 7×1 → 1×7 | avg-pool → 1×1."""
    c7 = channels_7x7
    return [
        [conv(192)],
        [conv(c7), conv(c7, (1, 7)), conv(192, (7, 1))],
        [conv(c7), conv(c7, (7, 1)), conv(c7, (1, 7)), conv(c7, (7, 1)), conv(192, (1, 7))],
        [avg_pool(3, 1, 1), conv(192)],
    ]


def inception_d() -> list:
    """17→8 reduction: 1×1 → 3×3/2 | 1×1 → 1×7 → 7×1 → 3×3/2 | 3×3/2 max-pool."""
    return [
        [conv(192), conv(320, 3, 2, valid=True)],
        [conv(192), conv(192, (1, 7)), conv(192, (7, 1)), conv(192, 3, 2, valid=True)],
        [max_pool(3, 2)],
    ]


def inception_e() -> list:
    """8×8 expanded filter bank: 1×1 | 1×1 → (1×3, 3×1) | 1×1 → 3×3 → (1×3, 3×1) | avg-pool → 1×1."""
    return [
        [conv(320)],
        [conv(384), fork(conv(384, (1, 3)), conv(384, (3, 1)))],
        [conv(448), conv(384, 3), fork(conv(384, (1, 3)), conv(384, (3, 1)))],
        [avg_pool(3, 1, 1), conv(192)],
    ]


class InceptionV3(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        stem, in_ch = make_branch(3, STEM, bn_eps=BN_EPS)
        layers = OrderedDict(stem=stem)
        for name, block, *args in ARCH:
            layers[name] = InceptionBlock(in_ch, block(*args), bn_eps=BN_EPS)
            in_ch = layers[name].out_channels
        self.features = nn.Sequential(layers)
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Stem, 299 → 35 (torchvision's Conv2d_1a_3x3 .. maxpool2): unpadded convs unless padded "same".
STEM = [
    conv(32, 3, 2, valid=True),  # 149×149
    conv(32, 3, valid=True),  # 147×147
    conv(64, 3),  # 147×147
    max_pool(3, 2),  # 73×73
    conv(80, 1),
    conv(192, 3, valid=True),  # 71×71
    max_pool(3, 2),  # 35×35
]

# Modules in order, torchvision's Mixed_5b .. Mixed_7c; the argument is
# Inception-A's pool-projection width or Inception-C's 7×7 inner width.
ARCH = [
    # name, block, argument  (output channels)
    ("mixed_5b", inception_a, 32),  # 256
    ("mixed_5c", inception_a, 64),  # 288
    ("mixed_5d", inception_a, 64),  # 288
    ("mixed_6a", inception_b),  # 768, 17×17
    ("mixed_6b", inception_c, 128),  # 768
    ("mixed_6c", inception_c, 160),  # 768
    ("mixed_6d", inception_c, 160),  # 768
    ("mixed_6e", inception_c, 192),  # 768
    ("mixed_7a", inception_d),  # 1280, 8×8
    ("mixed_7b", inception_e),  # 2048
    ("mixed_7c", inception_e),  # 2048
]


@register_model(
    family="inception_v3",
    variant="base",
    paper=PAPER,
    mirrors="torchvision inception_v3(aux_logits=False, init_weights=False)",
    input_shape=(1, 3, 299, 299),
    reference=Reference(
        "torchvision inception_v3(aux_logits=False, init_weights=False)",
        params=23_834_568,
        macs=5_713_216_096,
    ),
    published=Published(macs=5_000_000_000, top1=78.8),
    notes="Non-lightweight baseline. Input 299x299. 23,834,568 params / 5,713,216,096 conv+linear MACs at "
    "1x3x299x299, identical to torchvision 0.28 inception_v3 without the auxiliary classifier. The abstract "
    "gives 21.2% top-1 error (single frame) at 'a computational cost of 5 billion multiply-adds' with 'less "
    "than 25 million parameters' (Table 3 lists 4.8 billion ops for the same model); no exact parameter count "
    "is published, so none is recorded.",
)
def inception_v3(**kwargs):
    return InceptionV3(**kwargs)


register_alias("inceptionv3", "inception_v3")
