"""PP-LCNet: A Lightweight CPU Convolutional Neural Network.

Cui et al., 2021, https://arxiv.org/abs/2109.15099. The layout mirrors timm's
``lcnet_050`` / ``lcnet_100`` (``_gen_lcnet``; parameter counts identical):
depthwise-separable blocks with hard-swish, squeeze-and-excite only in the
last two blocks, and a 1×1 convolution to 1280 channels applied *after* the
global pool, where it costs little.
"""

from functools import partial

from torch import nn

from ._blocks import ConvBNAct, DepthwiseSeparable, PooledConvHead, SqueezeExcite, check_width, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("2109.15099", "PP-LCNet: A Lightweight CPU Convolutional Neural Network", 2021)


def _squeeze_excite(channels: int) -> SqueezeExcite:
    # PP-LCNet squeezes to a quarter of the block input and gates with hard-sigmoid.
    return SqueezeExcite(channels, channels // 4, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)


class PPLCNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        width_mult = check_width(width_mult)
        channels = partial(make_divisible, divisor=8)
        in_ch = channels(16 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.Hardswish)]
        for kernel, out, repeats, first_stride, use_se in ARCH:
            out_ch = channels(out * width_mult)
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                se_layer = _squeeze_excite if use_se else None
                layers.append(DepthwiseSeparable(in_ch, out_ch, kernel, stride, nn.Hardswish, se_layer))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        # The head width stays 1280 at every scale, as in the paper and timm.
        self.head = PooledConvHead(in_ch, HEAD_CHANNELS, num_classes, dropout, act_layer=nn.Hardswish)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper Table 1, grouped into runs of depthwise-separable blocks:
# k = depthwise kernel, c = output channels, n = repeats,
# s = stride of the first block of the run, se = squeeze-and-excite.
ARCH = [
    # k, c, n, s, se
    (3, 32, 1, 1, False),
    (3, 64, 2, 2, False),
    (3, 128, 2, 2, False),
    (3, 256, 1, 2, False),
    (5, 256, 5, 1, False),
    (5, 512, 2, 2, True),
]
HEAD_CHANNELS = 1280

_WIDTH_NOTE = (
    "Widths are make_divisible(c * scale, 8), as in PaddleClas and timm's _gen_lcnet. "
    "The paper's MACs run 1-7% above these conv+linear counts (it also counts other ops)."
)


@register_model(
    family="pplcnet",
    variant="0.25x",
    paper=PAPER,
    mirrors="timm _gen_lcnet layout, channel_multiplier=0.25",
    published=Published(macs=18_000_000, top1=51.86),
    notes=(
        "No timm model at this scale; obtained 1,522,464 params / 16,773,440 MACs "
        "(identical to timm _gen_lcnet(channel_multiplier=0.25)) vs paper 18M MACs. " + _WIDTH_NOTE
    ),
)
def pplcnet_025(**kwargs):
    return PPLCNet(width_mult=0.25, **kwargs)


@register_model(
    family="pplcnet",
    variant="0.35x",
    paper=PAPER,
    mirrors="timm lcnet_035",
    reference=Reference("timm lcnet_035", params=1_644_370, macs=27_357_832),
    published=Published(macs=29_000_000, top1=58.09),
    notes=_WIDTH_NOTE,
)
def pplcnet_035(**kwargs):
    return PPLCNet(width_mult=0.35, **kwargs)


@register_model(
    family="pplcnet",
    variant="0.5x",
    paper=PAPER,
    mirrors="timm lcnet_050",
    reference=Reference("timm lcnet_050", params=1_880_856, macs=44_731_008),
    published=Published(macs=47_000_000, top1=63.14),
    notes=_WIDTH_NOTE,
)
def pplcnet_050(**kwargs):
    return PPLCNet(width_mult=0.5, **kwargs)


@register_model(
    family="pplcnet",
    variant="0.75x",
    paper=PAPER,
    mirrors="timm lcnet_075",
    reference=Reference("timm lcnet_075", params=2_358_288, macs=94_786_496),
    published=Published(macs=99_000_000, top1=68.18),
    notes=_WIDTH_NOTE,
)
def pplcnet_075(**kwargs):
    return PPLCNet(width_mult=0.75, **kwargs)


@register_model(
    family="pplcnet",
    variant="1.0x",
    paper=PAPER,
    mirrors="timm lcnet_100",
    reference=Reference("timm lcnet_100", params=2_953_800, macs=155_700_480),
    published=Published(macs=161_000_000, top1=71.32),
    notes=_WIDTH_NOTE,
)
def pplcnet_100(**kwargs):
    return PPLCNet(width_mult=1.0, **kwargs)


@register_model(
    family="pplcnet",
    variant="1.5x",
    paper=PAPER,
    mirrors="timm lcnet_150",
    reference=Reference("timm lcnet_150", params=4_501_112, macs=334_188_416),
    published=Published(macs=342_000_000, top1=73.71),
    notes=_WIDTH_NOTE,
)
def pplcnet_150(**kwargs):
    return PPLCNet(width_mult=1.5, **kwargs)


@register_model(
    family="pplcnet",
    variant="2.0x",
    paper=PAPER,
    mirrors="timm _gen_lcnet layout, channel_multiplier=2.0",
    published=Published(macs=590_000_000, top1=75.18),
    notes=(
        "No timm model at this scale; obtained 6,522,792 params / 580,194,816 MACs "
        "(identical to timm _gen_lcnet(channel_multiplier=2.0)) vs paper 590M MACs. " + _WIDTH_NOTE
    ),
)
def pplcnet_200(**kwargs):
    return PPLCNet(width_mult=2.0, **kwargs)


@register_model(
    family="pplcnet",
    variant="2.5x",
    paper=PAPER,
    mirrors="timm _gen_lcnet layout, channel_multiplier=2.5",
    published=Published(macs=906_000_000, top1=76.6),
    notes=(
        "No timm model at this scale; obtained 9,018,840 params / 893,719,680 MACs "
        "(identical to timm _gen_lcnet(channel_multiplier=2.5)) vs paper 906M MACs. " + _WIDTH_NOTE
    ),
)
def pplcnet_250(**kwargs):
    return PPLCNet(width_mult=2.5, **kwargs)


register_alias("pplcnet", "pplcnet_100")
register_alias("lcnet", "pplcnet_100")
