"""ESPNet and ESPNetv2: efficient spatial pyramids of dilated convolutions.

ESPNet: Mehta, Rastegari, Caspi, Shapiro and Hajishirzi, ECCV 2018,
https://arxiv.org/abs/1803.06815: a semantic-segmentation network built from
ESP modules: a 1×1 convolution reduces the input to d = M/K channels, K = 5
parallel 3×3 convolutions with dilation 1, 2, 4, 8, 16 transform it, and
their outputs are summed hierarchically (d2, d2+d4, d2+d4+d8, ...: the
"hierarchical feature fusion" that removes the gridding artefacts of large
dilations) before they are concatenated. ``espnet_v1`` is the paper's full
ESPNet for Cityscapes (encoder ESPNet-C with α2 = p = 2, α3 = q = 8, plus the
light decoder of transposed convolutions), mirroring the authors' code
(sacmehta/ESPNet, ``train/Model.py``, class ``ESPNet``) on a 1024×512 image
(H×W = 512×1024) with 19 classes. Where the paper is silent it follows that
code: conv → BN (eps 1e-3) → PReLU (one slope per channel), the first branch
of each ESP module takes the remainder of the channels (M − 4⌊M/5⌋), the
input image is average-pooled (3×3, stride 2) to every encoder level and
concatenated there, and the three decoder upsamplings are 2×2 stride-2
transposed convolutions without bias. The authors train with 20 classes
(Cityscapes' 19 plus the ignore label); 19 are built here (``num_classes``).

ESPNetv2: Mehta, Rastegari, Shapiro and Hajishirzi, CVPR 2019,
https://arxiv.org/abs/1811.11431: the ImageNet classifier built from EESP
units, which make the ESP module cheaper: the 1×1 reduction is a group
convolution (K = 4 groups), the K branches are depthwise dilated 3×3
convolutions, their outputs are fused hierarchically, concatenated, and mixed
back by a second grouped 1×1 convolution; a strided EESP unit is concatenated
with an average-pooled copy of its input, and the input image, pooled to the
same size, is added through a small 3×3 + 1×1 "input reinforcement". The
layout mirrors the authors' code (sacmehta/EdgeNets,
``model/classification/espnetv2.py``, ``nn_layers/eesp.py`` and
``espnetv2_config.py``; the same model is ``imagenet/Model.py`` in
sacmehta/ESPNetv2). Where the paper is silent it follows that code: each
level's branches have the dilations of kernel sizes 3, 5, 7, 9 capped at the
level's receptive-field limit (capped ones fall back to 3×3, dilation 1),
sorted, and fused in sorted order; the unit's residual is added before its
final PReLU; the reinforcement re-pools the full image (3×3, stride 2, pad 1)
down to each level's size, at levels 2-4 only; the classifier is a depthwise
3×3 and a grouped 1×1 convolution (both with BN and PReLU) to 1024 (1280 at
s = 2) channels, global pooling, dropout 0.2 and a linear layer.

Modules of the authors' code that never run are left out: the fifth level's
input reinforcement (built, but the forward pass gives that level no image)
and the final PReLU of each strided EESP unit (its output goes to the
downsampler's concatenation before any activation). Together they are
2,650 + 480 parameters at s = 1, 0.19 % of the model.
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, init_weights
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER_V1 = Paper(
    "1803.06815", "ESPNet: Efficient Spatial Pyramid of Dilated Convolutions for Semantic Segmentation", 2018
)
PAPER_V2 = Paper(
    "1811.11431", "ESPNetv2: A Light-weight, Power Efficient, and General Purpose Convolutional Neural Network", 2019
)


def conv_bn_prelu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
    bn_eps: float = 1e-5,
) -> ConvBNAct:
    """Conv → BN → PReLU with one slope per channel (``act=False``: conv → BN)."""
    block = ConvBNAct(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        groups=groups,
        act_layer=partial(nn.PReLU, out_channels) if act else None,
    )
    block.bn.eps = bn_eps
    return block


class BNPReLU(nn.Sequential):
    """BN → PReLU, on a concatenation (the authors' ``BR``)."""

    def __init__(self, channels: int, bn_eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps)
        self.act = nn.PReLU(channels)


# ---------------------------------------------------------------------------
# ESPNet (v1)

V1_BN_EPS = 1e-3
V1_DILATIONS = (1, 2, 4, 8, 16)


class ESPModule(nn.Module):
    """Reduce → split over 5 dilated 3×3 convs → hierarchical fusion → concat → [+ input] → BN → PReLU.

    ``stride=2`` is the authors' ``DownSamplerB``: the reduction is then a
    strided 3×3 convolution and there is no residual. Otherwise it is
    ``DilatedParllelResidualBlockB``: a 1×1 reduction, and the identity
    shortcut when ``residual`` is set.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True):
        super().__init__()
        branches = len(V1_DILATIONS)
        width = out_channels // branches
        first_width = out_channels - (branches - 1) * width
        kernel = 3 if stride == 2 else 1
        self.reduce = nn.Conv2d(in_channels, width, kernel, stride, (kernel - 1) // 2, bias=False)
        self.branches = nn.ModuleList(
            nn.Conv2d(width, first_width if i == 0 else width, 3, 1, d, dilation=d, bias=False)
            for i, d in enumerate(V1_DILATIONS)
        )
        self.use_residual = residual and stride == 1 and in_channels == out_channels
        self.norm_act = BNPReLU(out_channels, V1_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        outs = [branch(reduced) for branch in self.branches]
        # Hierarchical feature fusion: each dilated branch is added to the sum of the smaller ones.
        fused = [outs[0], outs[1]]
        for out in outs[2:]:
            fused.append(fused[-1] + out)
        out = torch.cat(fused, 1)
        if self.use_residual:
            out = x + out
        return self.norm_act(out)


class InputProjection(nn.Sequential):
    """The input image average-pooled (3×3, stride 2) ``times`` times, to a level's size."""

    def __init__(self, times: int):
        super().__init__(*(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times)))


class ESPNet(nn.Module):
    """ESPNet-C encoder (three levels at 1/2, 1/4, 1/8) with ESPNet's decoder back to full resolution."""

    def __init__(self, num_classes: int = 19, p: int | None = None, q: int | None = None):
        super().__init__()
        (c2, p_default), (c3, q_default) = V1_ARCH
        p = p_default if p is None else p
        q = q_default if q is None else q
        c1 = V1_STEM_CHANNELS + 3  # level-1 features and the pooled image
        cat2 = 2 * c2 + 3  # level-2 output, its strided module's output and the pooled image
        # Encoder (the authors' ESPNet_Encoder).
        self.level1 = conv_bn_prelu(3, V1_STEM_CHANNELS, 3, 2, bn_eps=V1_BN_EPS)
        self.sample1 = InputProjection(1)
        self.sample2 = InputProjection(2)
        self.b1 = BNPReLU(c1, V1_BN_EPS)
        self.level2_0 = ESPModule(c1, c2, stride=2)
        self.level2 = nn.Sequential(*(ESPModule(c2, c2) for _ in range(p)))
        self.b2 = BNPReLU(cat2, V1_BN_EPS)
        self.level3_0 = ESPModule(cat2, c3, stride=2)
        self.level3 = nn.Sequential(*(ESPModule(c3, c3) for _ in range(q)))
        self.b3 = BNPReLU(2 * c3, V1_BN_EPS)
        self.encoder_classifier = nn.Conv2d(2 * c3, num_classes, 1, bias=False)
        # Decoder: project, upsample by 2, fuse with the level below, three times.
        self.br = nn.BatchNorm2d(num_classes, eps=V1_BN_EPS)
        self.up_l3 = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False)
        self.level3_C = nn.Conv2d(cat2, num_classes, 1, bias=False)
        self.combine_l2_l3 = nn.Sequential(
            BNPReLU(2 * num_classes, V1_BN_EPS), ESPModule(2 * num_classes, num_classes, residual=False)
        )
        self.up_l2 = nn.Sequential(
            nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False), BNPReLU(num_classes, V1_BN_EPS)
        )
        self.conv = conv_bn_prelu(c1 + num_classes, num_classes, 3, bn_eps=V1_BN_EPS)
        self.classifier = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level1 = self.b1(torch.cat([self.level1(x), self.sample1(x)], 1))
        level2_0 = self.level2_0(level1)
        level2 = self.b2(torch.cat([self.level2(level2_0), level2_0, self.sample2(x)], 1))
        level3_0 = self.level3_0(level2)
        level3 = self.b3(torch.cat([level3_0, self.level3(level3_0)], 1))
        up3 = self.up_l3(self.br(self.encoder_classifier(level3)))
        up2 = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(level2), up3], 1)))
        return self.classifier(self.conv(torch.cat([up2, level1], 1)))


V1_STEM_CHANNELS = 16

# Paper Sect. 3.2 / Fig. 4: ESPNet-C's levels 2 and 3 after the 3×3 stride-2 stem:
# c = width, n = ESP modules after the level's strided one (α2 = p, α3 = q).
V1_ARCH = [
    # c, n
    (64, 2),
    (128, 8),
]


# ---------------------------------------------------------------------------
# ESPNetv2

V2_BRANCHES = 4
# Dilation of a 3×3 kernel with the given effective kernel size (the authors' map_receptive_ksize).
_DILATION_OF_KSIZE = {3: 1, 5: 2, 7: 3, 9: 4, 11: 5, 13: 6, 15: 7, 17: 8}


def eesp_dilations(branches: int, receptive_limit: int) -> list[int]:
    """Kernel sizes 3, 5, 7, ... per branch, capped ones back to 3, sorted; as dilations."""
    sizes = sorted(k if k <= receptive_limit else 3 for k in (3 + 2 * i for i in range(branches)))
    return [_DILATION_OF_KSIZE[k] for k in sizes]


class EESP(nn.Module):
    """Grouped 1×1 reduce → K depthwise dilated 3×3 → hierarchical fusion → concat → BN-PReLU
    → grouped 1×1 expand (BN) → [+ input] → PReLU.

    A strided unit (``stride=2``) returns the expanded map before the residual
    and the PReLU: :class:`DownSampler` concatenates it and activates the sum.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, receptive_limit: int = 7):
        super().__init__()
        k = V2_BRANCHES
        if out_channels % k:
            raise ValueError(f"EESP width {out_channels} must be a multiple of its {k} branches")
        width = out_channels // k
        self.stride = stride
        self.reduce = conv_bn_prelu(in_channels, width, 1, groups=k)
        self.branches = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, d, dilation=d, groups=width, bias=False)
            for d in eesp_dilations(k, receptive_limit)
        )
        self.norm_act = BNPReLU(out_channels)
        self.expand = conv_bn_prelu(out_channels, out_channels, 1, groups=k, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.act = nn.PReLU(out_channels) if stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        fused = [self.branches[0](reduced)]
        for branch in self.branches[1:]:
            fused.append(branch(reduced) + fused[-1])
        out = self.expand(self.norm_act(torch.cat(fused, 1)))
        if self.act is None:
            return out
        if self.use_residual:
            out = out + x
        return self.act(out)


class DownSampler(nn.Module):
    """Halves the map: [avg-pool(x), strided EESP(x)] concatenated, plus the reinforced image, → PReLU."""

    def __init__(self, in_channels: int, out_channels: int, receptive_limit: int, reinforce: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.eesp = EESP(in_channels, out_channels - in_channels, stride=2, receptive_limit=receptive_limit)
        if reinforce:
            self.reinforce = nn.Sequential(conv_bn_prelu(3, 3, 3), conv_bn_prelu(3, out_channels, 1, act=False))
        else:
            self.reinforce = None
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.pool(x)
        out = torch.cat([pooled, self.eesp(x)], 1)
        if self.reinforce is not None and image is not None:
            while image.shape[-2:] != pooled.shape[-2:] and image.shape[-1] > pooled.shape[-1]:
                image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1)
            out = out + self.reinforce(image)
        return self.act(out)


class ESPNetV2Level(nn.Module):
    """One spatial level: a :class:`DownSampler`, then ``units`` EESP units at its width."""

    def __init__(self, in_channels: int, out_channels: int, units: int, down_limit: int, limit: int, reinforce: bool):
        super().__init__()
        self.down = DownSampler(in_channels, out_channels, down_limit, reinforce)
        self.units = nn.Sequential(*(EESP(out_channels, out_channels, receptive_limit=limit) for _ in range(units)))

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.units(self.down(x, image))


class ESPNetV2(nn.Module):
    def __init__(self, scale: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        if scale not in V2_WIDTHS:
            raise ValueError(f"ESPNetv2 scale must be one of {sorted(V2_WIDTHS)}, got {scale!r}")
        *widths, head_ch = V2_WIDTHS[scale]
        self.stem = conv_bn_prelu(3, widths[0], 3, 2)
        self.levels = nn.ModuleList(
            ESPNetV2Level(in_ch, out_ch, units, down_limit, limit, reinforce)
            for (units, down_limit, limit, reinforce), in_ch, out_ch in zip(V2_ARCH, widths, widths[1:])
        )
        last = widths[-1]
        # Widen the features: depthwise 3×3, then a grouped 1×1 to the head width.
        self.expand = nn.Sequential(
            conv_bn_prelu(last, last, 3, groups=last), conv_bn_prelu(last, head_ch, 1, groups=V2_BRANCHES)
        )
        self.head = ClassifierHead(head_ch, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for level in self.levels:
            out = level(out, x)
        return self.head(self.expand(out))


# The authors' espnetv2_config.py: channels of the stem, of levels 2-5 and of the head, per scale s.
V2_WIDTHS = {
    # s: stem, level2, level3, level4, level5, head
    0.5: (16, 32, 64, 128, 256, 1024),
    1.0: (32, 64, 128, 256, 512, 1024),
    2.0: (32, 128, 256, 512, 1024, 1280),
}

# Levels 2-5 (the authors' rep_layers and recept_limit): n = EESP units after the
# downsampler, r_down / r = receptive-field limit of the downsampler's unit / of the units,
# reinforce = whether the downsampler adds the pooled input image.
V2_ARCH = [
    # n, r_down, r, reinforce
    (0, 13, 11, True),
    (3, 11, 9, True),
    (7, 9, 7, True),
    (3, 7, 5, False),
]


# ---------------------------------------------------------------------------
# Registered variants


@register_model(
    family="espnet",
    variant="v1 (p=2, q=8), Cityscapes",
    paper=PAPER_V1,
    mirrors="sacmehta/ESPNet train/Model.py ESPNet(p=2, q=8), 19 classes",
    input_shape=(1, 3, 512, 1024),
    output_shape=(1, 19, 512, 1024),
    approximate=Approximate("Cityscapes comparison (Sect. 4.2), 0.364M", params=364_000, tolerance=0.05),
    published=Published(params=364_000),
    notes=(
        "No packaged reference: built from the authors' train/Model.py. Obtained 363,462 params / "
        "4,670,283,776 conv+linear MACs (transposed convs included) on 1024x512 (HxW 512x1024) vs paper "
        "0.364M params; the authors' 20-class Cityscapes build has 365,109 params / 4,780,220,416 MACs. "
        "No MAC figure from the paper is asserted. Semantic segmentation: no ImageNet top-1 (the paper "
        "reports 60.3 class mIOU on the Cityscapes test set)."
    ),
)
def espnet_v1(**kwargs):
    return ESPNet(**kwargs)


def _espnetv2(scale: float, **kwargs) -> ESPNetV2:
    return ESPNetV2(scale=scale, **kwargs)


_V2_TABLE = "ImageNet results (Sect. 4.1); authors' ESPNetv2 imagenet/README.md"


@register_model(
    family="espnetv2",
    variant="s=0.5",
    paper=PAPER_V2,
    mirrors="sacmehta/EdgeNets espnetv2 (s=0.5)",
    approximate=Approximate(_V2_TABLE, params=1_240_000, macs=28_370_000, tolerance=0.05),
    published=Published(macs=28_000_000, params=1_240_000, top1=57.7),
    notes=(
        "No packaged reference: built from the authors' EdgeNets code. Obtained "
        "1,239,722 params / 29,399,508 MACs vs 1.24M / 28.37M (+3.6 %); "
        "the two never-run modules left out (module docstring) would add 0.2 % params."
    ),
)
def espnetv2_050(**kwargs):
    return _espnetv2(0.5, **kwargs)


@register_model(
    family="espnetv2",
    variant="s=1.0",
    paper=PAPER_V2,
    mirrors="sacmehta/EdgeNets espnetv2 (s=1.0)",
    approximate=Approximate(_V2_TABLE, params=1_670_000, macs=85_720_000, tolerance=0.05),
    published=Published(macs=86_000_000, params=1_670_000, top1=66.1),
    notes=(
        "No packaged reference: built from the authors' EdgeNets code. Obtained "
        "1,666,942 params / 86,744,404 MACs vs 1.67M / 85.72M (+1.2 %); "
        "the two never-run modules left out (module docstring) would add 0.2 % params."
    ),
)
def espnetv2_100(**kwargs):
    return _espnetv2(1.0, **kwargs)


@register_model(
    family="espnetv2",
    variant="s=2.0",
    paper=PAPER_V2,
    mirrors="sacmehta/EdgeNets espnetv2 (s=2.0)",
    approximate=Approximate(_V2_TABLE, params=3_490_000, macs=284_800_000, tolerance=0.05),
    published=Published(macs=284_000_000, params=3_490_000, top1=72.1),
    notes=(
        "No packaged reference: built from the authors' EdgeNets code. Obtained "
        "3,491,934 params / 286,086,228 MACs vs 3.49M / 284.8M (+0.5 %); "
        "the two never-run modules left out (module docstring) would add 0.2 % params."
    ),
)
def espnetv2_200(**kwargs):
    return _espnetv2(2.0, **kwargs)


register_alias("espnet", "espnet_v1")
register_alias("espnetv2", "espnetv2_100")
