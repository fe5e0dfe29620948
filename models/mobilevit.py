"""MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer.

Mehta & Rastegari, ICLR 2022, https://arxiv.org/abs/2110.02178. The layout
mirrors timm's ``mobilevit_xxs`` / ``mobilevit_xs`` / ``mobilevit_s`` (ported
from Apple's ml-cvnets; parameter counts identical), at the paper's 256×256
input.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import ClassifierHead, ConvBNAct, InvertedResidual, init_weights, make_divisible
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper(
    "2110.02178", "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer", 2022
)

INPUT_SHAPE = (1, 3, 256, 256)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Written with explicit ops (q @ kᵀ, softmax, @ v) rather than
    ``F.scaled_dot_product_attention`` so that an op-level profiler sees, times
    and counts every step; the fused kernel would hide the two matmuls (its
    CPU variant is not even counted by ``FlopCounterMode``).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + MHSA(LN(x)), then x + MLP(LN(x)), MLP with SiLU."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, act_layer=nn.SiLU):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """Local 3×3 conv → 1×1 to width d → unfold into patches → L transformer layers
    → fold → 1×1 back to C → concat with the input → 3×3 fusion conv.

    Attention runs across patches, separately for each pixel position inside a
    patch, so every pixel sees the whole image at 1/P of the cost of full
    pixel attention.
    """

    def __init__(
        self,
        channels: int,
        transformer_dim: int,
        depth: int,
        patch_size: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        act_layer=nn.SiLU,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.local_conv = ConvBNAct(channels, channels, 3, act_layer=act_layer)
        # Plain projection into the transformer width: no BN or activation, no bias.
        self.to_tokens = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[TransformerLayer(transformer_dim, num_heads, mlp_ratio, act_layer) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(transformer_dim)
        self.from_tokens = ConvBNAct(transformer_dim, channels, 1, act_layer=act_layer)
        self.fusion = ConvBNAct(2 * channels, channels, 3, act_layer=act_layer)

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) → (B·P, N, C): one sequence of N patches per pixel position p of the P in a patch.
        batch, channels, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, channels, height // p, p, width // p, p).permute(0, 3, 5, 2, 4, 1)
        return x.reshape(batch * p * p, (height // p) * (width // p), channels)

    def _fold(self, x: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
        p = self.patch_size
        channels = x.shape[-1]
        x = x.reshape(batch, p, p, height // p, width // p, channels).permute(0, 5, 3, 1, 4, 2)
        return x.reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.to_tokens(self.local_conv(x))
        height, width = x.shape[-2:]
        p = self.patch_size
        padded_h, padded_w = math.ceil(height / p) * p, math.ceil(width / p) * p
        # Inputs not divisible by the patch are resized to fit and back (as in the reference code).
        resized = (padded_h, padded_w) != (height, width)
        if resized:
            x = F.interpolate(x, size=(padded_h, padded_w), mode="bilinear", align_corners=False)
        tokens = self.norm(self.transformer(self._unfold(x)))
        x = self._fold(tokens, x.shape[0], padded_h, padded_w)
        if resized:
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        x = self.from_tokens(x)
        return self.fusion(torch.cat((shortcut, x), dim=1))


class MobileViT(nn.Module):
    def __init__(self, variant: str = "s", num_classes: int = 1000, dropout: float = 0.0):
        super().__init__()
        if variant not in ARCHS:
            raise ValueError(f"unknown MobileViT variant {variant!r}; expected one of {', '.join(ARCHS)}")
        arch = ARCHS[variant]
        act = nn.SiLU
        in_ch = arch["stem"]
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, act_layer=act)]
        for out_ch, repeats, first_stride, transformer_dim, depth in arch["stages"]:
            for i in range(repeats):
                # MV2 blocks expand the block's input width (always, even at ratio 1).
                mid_ch = make_divisible(in_ch * arch["expansion"])
                stride = first_stride if i == 0 else 1
                layers.append(InvertedResidual(in_ch, out_ch, mid_ch, 3, stride, act, force_expand=True))
                in_ch = out_ch
            if transformer_dim:
                layers.append(MobileViTBlock(out_ch, transformer_dim, depth, act_layer=act))
        layers.append(ConvBNAct(in_ch, arch["head"], 1, act_layer=act))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(arch["head"], num_classes, dropout)
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))


# Paper appendix A / timm configs. Per stage: c = output channels, n = MV2 blocks
# (inverted residuals, expansion ratio `expansion`), s = first stride, d and L =
# width and depth of the MobileViT block that follows (0: MV2-only stage).
# Every MobileViT block uses 2×2 patches, 4 heads and an MLP ratio of 2.
ARCHS = {
    "xxs": {
        "stem": 16,
        "expansion": 2.0,
        "head": 320,
        "stages": [
            # c, n, s, d, L
            (16, 1, 1, 0, 0),
            (24, 3, 2, 0, 0),
            (48, 1, 2, 64, 2),
            (64, 1, 2, 80, 4),
            (80, 1, 2, 96, 3),
        ],
    },
    "xs": {
        "stem": 16,
        "expansion": 4.0,
        "head": 384,
        "stages": [
            # c, n, s, d, L
            (32, 1, 1, 0, 0),
            (48, 3, 2, 0, 0),
            (64, 1, 2, 96, 2),
            (80, 1, 2, 120, 4),
            (96, 1, 2, 144, 3),
        ],
    },
    "s": {
        "stem": 16,
        "expansion": 4.0,
        "head": 640,
        "stages": [
            # c, n, s, d, L
            (32, 1, 1, 0, 0),
            (64, 3, 2, 0, 0),
            (96, 1, 2, 144, 2),
            (128, 1, 2, 192, 4),
            (160, 1, 2, 240, 3),
        ],
    },
}

_NOTES = (
    "MACs count conv + linear + the attention matmuls (q @ k^T, attn @ v) at 256x256, "
    "matching timm with TIMM_FUSED_ATTN=0; with timm's default fused SDPA on CPU, "
    "FlopCounterMode misses the attention matmuls ({fused:,} MACs there)."
)


@register_model(
    family="mobilevit",
    variant="XXS",
    paper=PAPER,
    mirrors="timm mobilevit_xxs",
    input_shape=INPUT_SHAPE,
    reference=Reference("timm mobilevit_xxs", params=1_272_024, macs=407_364_096),
    published=Published(params=1_300_000, top1=69.0),
    notes=_NOTES.format(fused=329_179_648),
)
def mobilevit_xxs(**kwargs):
    return MobileViT("xxs", **kwargs)


@register_model(
    family="mobilevit",
    variant="XS",
    paper=PAPER,
    mirrors="timm mobilevit_xs",
    input_shape=INPUT_SHAPE,
    reference=Reference("timm mobilevit_xs", params=2_317_848, macs=1_025_911_808),
    published=Published(params=2_300_000, top1=74.8),
    notes=_NOTES.format(fused=908_635_136),
)
def mobilevit_xs(**kwargs):
    return MobileViT("xs", **kwargs)


@register_model(
    family="mobilevit",
    variant="S",
    paper=PAPER,
    mirrors="timm mobilevit_s",
    input_shape=INPUT_SHAPE,
    reference=Reference("timm mobilevit_s", params=5_578_632, macs=2_000_831_488),
    published=Published(params=5_600_000, top1=78.4),
    notes=_NOTES.format(fused=1_823_196_160),
)
def mobilevit_s(**kwargs):
    return MobileViT("s", **kwargs)


register_alias("mobilevit", "mobilevit_s")
