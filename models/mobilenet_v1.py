"""MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications.

Howard et al., 2017, https://arxiv.org/abs/1704.04861. The layout mirrors
timm's ``mobilenetv1_100`` (parameter count identical): a 3×3 stride-2 stem,
13 depthwise-separable blocks, global pooling and a single linear classifier,
with no 1×1 head convolution before the pool.
"""

from functools import partial

from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, DepthwiseSeparable, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper(
    "1704.04861", "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications", 2017
)


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.0):
        super().__init__()
        width_mult = check_width(width_mult)
        # The paper scales with plain int(c * alpha); timm rounds to a multiple of 8.
        # For the paper's multipliers (0.25, 0.5, 0.75, 1.0) both give the same widths.
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.ReLU)]
        for out, repeats, first_stride in ARCH:
            out_ch = channels(out * width_mult)
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                layers.append(DepthwiseSeparable(in_ch, out_ch, 3, stride, act_layer=nn.ReLU))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1, grouped into runs of depthwise-separable blocks:
# c = output channels, n = repeats, s = stride of the first block of the run.
ARCH = [
    # c, n, s
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 6, 2),
    (1024, 2, 2),
]

_WIDTH_NOTE = (
    "No timm model at this width; counts are identical to timm _gen_mobilenet_v1(channel_multiplier=alpha). "
    "Widths are make_divisible(c * alpha, 8) as in timm, which for this alpha equals the paper's int(c * alpha). "
    "timm's mobilenetv1 uses ReLU6, the paper (and this model) plain ReLU; counts are unaffected."
)


@register_model(
    family="mobilenet_v1",
    variant="0.25x",
    paper=PAPER,
    mirrors="timm mobilenetv1_100 layout, channel_multiplier=0.25",
    published=Published(macs=41_000_000, params=500_000, top1=50.6),
    notes="Obtained 470,072 params / 41,030,272 MACs vs paper 0.5M / 41M. " + _WIDTH_NOTE,
)
def mobilenet_v1_025(**kwargs):
    return MobileNetV1(width_mult=0.25, **kwargs)


@register_model(
    family="mobilenet_v1",
    variant="0.5x",
    paper=PAPER,
    mirrors="timm mobilenetv1_100 layout, channel_multiplier=0.5",
    published=Published(macs=149_000_000, params=1_300_000, top1=63.7),
    notes="Obtained 1,331,592 params / 149,497,088 MACs vs paper 1.3M / 149M. " + _WIDTH_NOTE,
)
def mobilenet_v1_050(**kwargs):
    return MobileNetV1(width_mult=0.5, **kwargs)


@register_model(
    family="mobilenet_v1",
    variant="0.75x",
    paper=PAPER,
    mirrors="timm mobilenetv1_100 layout, channel_multiplier=0.75",
    published=Published(macs=325_000_000, params=2_600_000, top1=68.4),
    notes="Obtained 2,585,560 params / 325,400,448 MACs vs paper 2.6M / 325M. " + _WIDTH_NOTE,
)
def mobilenet_v1_075(**kwargs):
    return MobileNetV1(width_mult=0.75, **kwargs)


@register_model(
    family="mobilenet_v1",
    variant="1.0x",
    paper=PAPER,
    mirrors="timm mobilenetv1_100",
    reference=Reference("timm mobilenetv1_100", params=4_231_976, macs=568_740_352),
    published=Published(macs=569_000_000, params=4_200_000, top1=70.6),
    notes="timm's mobilenetv1_100 uses ReLU6, the paper (and this model) plain ReLU; counts are unaffected.",
)
def mobilenet_v1_100(**kwargs):
    return MobileNetV1(width_mult=1.0, **kwargs)


register_alias("mobilenetv1", "mobilenet_v1_100")
