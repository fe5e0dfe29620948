"""GoogLeNet (Inception v1): Going Deeper with Convolutions.

Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and Rabinovich,
CVPR 2015, https://arxiv.org/abs/1409.4842. A non-lightweight baseline for
comparison. The layout mirrors torchvision's ``googlenet(aux_logits=False,
init_weights=False, transform_input=False)`` (parameter count and MACs
identical), the nine Inception modules of the paper's Table 1, on 224×224
inputs. Where torchvision departs from the paper, this model follows
torchvision:

- every conv is conv (no bias) → BatchNorm → ReLU (the paper predates
  BatchNorm and uses biased convs and local response normalisation in the
  stem; torchvision has no LRN);
- the "5×5" branch of every module is a 3×3 conv, a known quirk of the
  torchvision port kept for its pretrained weights (true 5×5 convs would add
  380,928 parameters);
- the max-pools use ``ceil_mode=True`` (Caffe's rounding), the pool before
  the 5th stage is 2×2 (paper: 3×3/2), and the classifier dropout is 0.2
  (paper: 0.4);
- the two auxiliary classifiers are training-only and left out.
"""

from collections import OrderedDict

from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, init_weights
from ._inception import InceptionBlock, conv, max_pool
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("1409.4842", "Going Deeper with Convolutions", 2015)

BN_EPS = 1e-3  # torchvision's BasicConv2d


def inception_module(
    in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
) -> InceptionBlock:
    """1×1 | 1×1 → 3×3 | 1×1 → "5×5" (3×3, as in torchvision) | 3×3 max-pool → 1×1."""
    return InceptionBlock(
        in_channels,
        [
            [conv(ch1x1)],
            [conv(ch3x3red), conv(ch3x3, 3)],
            [conv(ch5x5red), conv(ch5x5, 3)],
            [max_pool(3, 1, 1, ceil_mode=True), conv(pool_proj)],
        ],
        bn_eps=BN_EPS,
    )


def _stem_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> ConvBNAct:
    layer = ConvBNAct(in_channels, out_channels, kernel, stride)
    layer.bn.eps = BN_EPS
    return layer


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers = OrderedDict(
            conv1=_stem_conv(3, 64, 7, stride=2),
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            conv2=_stem_conv(64, 64, 1),
            conv3=_stem_conv(64, 192, 3),
            pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        in_ch = 192
        for name, *widths in ARCH:
            block = inception_module(in_ch, *widths)
            layers[f"inception{name}"] = block
            in_ch = block.out_channels
            if name in POOL_AFTER:
                layers[f"pool{name[0]}"] = nn.MaxPool2d(POOL_AFTER[name], stride=2, ceil_mode=True)
        self.features = nn.Sequential(layers)
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1, one row per Inception module: output width = 1x1 + 3x3 + 5x5 + pool proj.
# The "5x5" column is built as a 3x3 conv, as in torchvision.
ARCH = [
    # name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
]
# Stride-2 max-pool kernel after the last module of stages 3 and 4 (torchvision: 3 and 2).
POOL_AFTER = {"3b": 3, "4e": 2}


@register_model(
    family="googlenet",
    variant="base",
    paper=PAPER,
    mirrors="torchvision googlenet(aux_logits=False, init_weights=False, transform_input=False)",
    reference=Reference(
        "torchvision googlenet(aux_logits=False, init_weights=False, transform_input=False)",
        params=6_624_904,
        macs=1_498_376_192,
    ),
    published=Published(macs=1_500_000_000, params=6_800_000),
    notes="Non-lightweight baseline. 6,624,904 params / 1,498,376,192 conv+linear MACs at 1x3x224x224, identical "
    "to torchvision 0.28 googlenet without auxiliary classifiers. The paper gives a budget of 1.5 billion "
    "multiply-adds (Section 1; Table 1's ops column sums to about 1.5G) and Table 1's params column sums to "
    "about 6.8M; torchvision's 3x3 convs in place of the 5x5 branch convs and its bias-free convs account for "
    "the difference. The paper reports only top-5 error (6.67% for the 7-model ensemble, Table 2; 10.07% for "
    "one model, one crop, Table 3), so no top-1 is recorded.",
)
def googlenet(**kwargs):
    return GoogLeNet(**kwargs)


register_alias("inceptionv1", "googlenet")
