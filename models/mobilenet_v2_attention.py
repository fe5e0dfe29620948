"""MobileNetV2 with attention modules in its inverted residuals.

MobileNetV2 1.0x (``mobilenet_v2.py``, torchvision's layout) with one
attention module in each inverted residual block, placed as each module's
paper and public code place it on MobileNetV2:

- ``mobilenet_v2_ca``: coordinate attention. Hou, Zhou & Feng, "Coordinate
  Attention for Efficient Mobile Network Design", CVPR 2021,
  https://arxiv.org/abs/2103.02907. Mirrors the authors' ``mbv2_ca.py``
  (houqb/CoordAttention): after the depthwise conv, on the expanded width,
  with reduction 32 (never fewer than 8 channels), biased 1×1 convs and
  hard-swish; the first block (``t = 1``, no expansion) has none.
- ``mobilenet_v2_eca``: efficient channel attention. Wang, Wu, Zhu, Li, Zuo &
  Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
  Networks", CVPR 2020, https://arxiv.org/abs/1910.03151. Mirrors the
  authors' ``eca_mobilenetv2.py`` (BangguWu/ECANet, the "k13" model of their
  table): after the linear projection, before the shortcut, in every block;
  the kernel size is 1 in stages of up to 96 channels and 3 above, the
  authors' MobileNetV2 setting rather than the paper's adaptive rule (which
  would give 3 to 5).
- ``mobilenet_v2_sa``: shuffle attention. Zhang & Yang, "SA-Net: Shuffle
  Attention for Deep Convolutional Neural Networks", ICASSP 2021,
  https://arxiv.org/abs/2102.00240. The paper and its code
  (wofmanaf/SA-Net) only build ResNets, where the module follows the last
  BatchNorm of the residual branch, before the shortcut, with 64 groups. The
  same place is taken here (after the projection, as ECA and triplet
  attention are placed on MobileNetV2). Choice where the paper is silent: 4
  groups, the most that split every MobileNetV2 block width (16 and 24
  included) into ``2 × groups`` equal parts; 64 would need widths divisible by
  128. Classifier dropout is torchvision's 0.2.
- ``mobilenet_v2_triplet``: triplet attention. Misra, Nalamada,
  Arasanipalai & Hou, "Rotate to Attend: Convolutional Triplet Attention
  Module", WACV 2021, https://arxiv.org/abs/2010.03045. Mirrors the authors'
  ``MODELS/mobilenet.py`` (landskape-ai/triplet-attention): after the linear
  projection, before the shortcut, in every block. Gate kernel 3×3, the
  variant the paper's MobileNetV2 row reports (3.506M parameters; the code's
  default 7×7 gives the 3.51M of the authors' second MobileNetV2 model).

The classifier dropout follows each authors' code (CA 0.1, ECA and triplet
0.25); it changes no count. No packaged implementation of these models
exists, so each is checked against its paper's figures (``Approximate``).
ECA-Net reports parameters and FLOPs as thop counts divided by 2**20 (the
authors' ``paras_flops.py``), so its "3.34M" is 3.50M parameters here. Its
FLOPs (319.9 × 2**20 = 335.4M) and triplet attention's 0.322G count more than
conv+linear MACs: the two modules add only 3,104 and 1,143,072 MACs to
MobileNetV2's 300,774,272. For those two only the parameters are asserted;
the papers' FLOPs are recorded as published.
"""

from functools import partial


from ._blocks import CoordinateAttention, EfficientChannelAttention, ShuffleAttention, TripletAttention
from ._registry import Approximate, Paper, Published, register_alias, register_model
from .mobilenet_v2 import MobileNetV2

PAPER_CA = Paper("2103.02907", "Coordinate Attention for Efficient Mobile Network Design", 2021)
PAPER_ECA = Paper("1910.03151", "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", 2019)
PAPER_SA = Paper("2102.00240", "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", 2021)
PAPER_TRIPLET = Paper("2010.03045", "Rotate to Attend: Convolutional Triplet Attention Module", 2020)


class MobileNetV2Attention(MobileNetV2):
    """MobileNetV2 whose inverted residuals carry the attention module named by
    ``attention``, a key of :data:`ATTENTION`."""

    def __init__(self, attention: str, width_mult: float = 1.0, num_classes: int = 1000, dropout: float | None = None):
        if attention not in ATTENTION:
            raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION)}")
        module, position, in_first_block, settings, default_dropout = ATTENTION[attention]

        def block_options(expand_ratio: int, out_channels: int) -> dict:
            if expand_ratio == 1 and not in_first_block:
                return {}
            return {position: partial(module, **settings(out_channels))}

        super().__init__(
            width_mult=width_mult,
            num_classes=num_classes,
            dropout=default_dropout if dropout is None else dropout,
            block_options=block_options,
        )
        self.attention = attention


def _fixed(**settings):
    return lambda out_channels: settings


def _eca_mobilenet_kernel(out_channels: int) -> dict:
    # The authors' MobileNetV2 rule, by the stage's output width in ARCH (c).
    return {"kernel_size": 1 if out_channels <= 96 else 3}


# Where each module goes: "se_layer" = after the depthwise conv (expanded width),
# "attn_layer" = after the linear projection, before the shortcut (block output width).
ATTENTION = {
    # module, position, in the t=1 block, settings for a stage of output width c, classifier dropout
    "ca": (CoordinateAttention, "se_layer", False, _fixed(reduction=32, min_channels=8), 0.1),
    "eca": (EfficientChannelAttention, "attn_layer", True, _eca_mobilenet_kernel, 0.25),
    "sa": (ShuffleAttention, "attn_layer", True, _fixed(groups=4), 0.2),
    "triplet": (TripletAttention, "attn_layer", True, _fixed(kernel_size=3), 0.25),
}


@register_model(
    family="mobilenet_v2_attention",
    variant="CA 1.0x",
    paper=PAPER_CA,
    mirrors="houqb/CoordAttention mbv2_ca (MobileNetV2 1.0x + coordinate attention, r = 32)",
    # Table 1 (MobileNetV2 + CA: 3.95M params, 310M MAdds, 74.3%), as the authors' README repeats it.
    approximate=Approximate("Table 1", params=3_950_000, macs=310_000_000, tolerance=0.05),
    published=Published(macs=310_000_000, params=3_950_000, top1=74.3),
    notes=(
        "No packaged reference: built from the authors' mbv2_ca.py on torchvision's MobileNetV2 layout "
        "(the same widths and layers). Obtained 3,950,648 params / 306,666,368 conv+linear MACs at 224x224 "
        "vs paper 3.95M / 310M. Coordinate attention after each expanded block's depthwise conv (none in "
        "the t=1 block), hidden width max(8, C/32), biased 1x1 convs, hard-swish."
    ),
)
def mobilenet_v2_ca(**kwargs):
    return MobileNetV2Attention("ca", **kwargs)


@register_model(
    family="mobilenet_v2_attention",
    variant="ECA 1.0x",
    paper=PAPER_ECA,
    mirrors="BangguWu/ECANet eca_mobilenet_v2 (k13: kernel 1 up to 96 channels, 3 above)",
    # Table 3 / the authors' README: 3.34M params, 319.9M FLOPs, 72.56%, thop counts in units of 2**20:
    # 3.34 * 2**20 = 3,502,244 parameters. The FLOPs are not conv+linear MACs, so only parameters are asserted.
    approximate=Approximate("Table 3 (3.34M in units of 2**20)", params=3_502_244, tolerance=0.005),
    published=Published(macs=319_900_000, params=3_340_000, top1=72.56),
    notes=(
        "No packaged reference: built from the authors' eca_mobilenetv2.py on torchvision's MobileNetV2 layout. "
        "Obtained 3,504,897 params / 300,777,376 conv+linear MACs at 224x224. The paper's 3.34M / 319.9M are "
        "thop counts divided by 2**20 (the authors' paras_flops.py): 3.34M is 3.50M parameters, and 319.9M is "
        "335.4M, more than conv+linear MACs (ECA adds 3,104 MACs to MobileNetV2's 300,774,272), so the MACs are "
        "recorded, not asserted. ECA after each block's projection, before the shortcut."
    ),
)
def mobilenet_v2_eca(**kwargs):
    return MobileNetV2Attention("eca", **kwargs)


@register_model(
    family="mobilenet_v2_attention",
    variant="SA 1.0x",
    paper=PAPER_SA,
    mirrors="MobileNetV2 1.0x (torchvision layout) + wofmanaf/SA-Net sa_layer after each projection, 4 groups",
    # SA-Net reports no MobileNetV2: the target is MobileNetV2's own (1801.04381 Table 4: 3.4M, 300M MACs),
    # which shuffle attention leaves almost unchanged (1,128 parameters, no conv/linear MACs).
    approximate=Approximate(
        "MobileNetV2 paper (1801.04381) Table 4", params=3_400_000, macs=300_000_000, tolerance=0.05
    ),
    published=Published(),
    notes=(
        "The SA-Net paper and code build only ResNets; this variant is this zoo's choice: shuffle attention "
        "where SA-ResNet has it (after the residual branch's last BatchNorm, i.e. MobileNetV2's projection, "
        "before the shortcut) in every block, with 4 groups (the most that divide every block width, 16 and 24 "
        "included, into 2x4 equal parts; the paper's 64 needs widths divisible by 128). Obtained 3,506,000 "
        "params / 300,774,272 conv+linear MACs at 224x224 (MobileNetV2 + 1,128 parameters, no MACs), checked "
        "against MobileNetV2's published 3.4M / 300M."
    ),
)
def mobilenet_v2_sa(**kwargs):
    return MobileNetV2Attention("sa", **kwargs)


@register_model(
    family="mobilenet_v2_attention",
    variant="triplet 1.0x",
    paper=PAPER_TRIPLET,
    mirrors="landskape-ai/triplet-attention triplet_attention_mobilenet_v2 (gate kernel 3)",
    # Table 2 / the authors' README: MobileNetV2 + triplet attention (k = 3) 3.506M params, 0.322 GFLOPs,
    # 72.62%. Its FLOPs count more than convs and linears, so only parameters are asserted; 3.506M pins
    # the kernel size (k = 7 gives 3.510M).
    approximate=Approximate("Table 2", params=3_506_000, tolerance=0.001),
    published=Published(macs=322_000_000, params=3_506_000, top1=72.62),
    notes=(
        "No packaged reference: built from the authors' MODELS/mobilenet.py on torchvision's MobileNetV2 "
        "layout. Obtained 3,505,892 params / 301,917,344 conv+linear MACs at 224x224 vs paper 3.506M / 0.322G "
        "(the paper's FLOPs are not conv+linear MACs: the module adds 1,143,072 MACs to MobileNetV2's "
        "300,774,272, so the MACs are recorded, not asserted). Triplet attention after each block's projection, "
        "before the shortcut, with 3x3 gates (the paper's MobileNetV2 row; the code defaults to 7x7, 3.510M)."
    ),
)
def mobilenet_v2_triplet(**kwargs):
    return MobileNetV2Attention("triplet", **kwargs)


register_alias("mobilenetv2_ca", "mobilenet_v2_ca")
register_alias("mobilenetv2_eca", "mobilenet_v2_eca")
register_alias("mobilenetv2_sa", "mobilenet_v2_sa")
register_alias("mobilenetv2_triplet", "mobilenet_v2_triplet")
