"""Mobile-Former: Bridging MobileNet and Transformer.

Chen et al., CVPR 2022, https://arxiv.org/abs/2108.05895. A MobileNet
("Mobile") and a tiny transformer on a handful of learnt global tokens
("Former") run in parallel and talk through two light cross attentions in
every block: Mobile→Former (the tokens attend to the feature map's pixels)
and Former→Mobile (the pixels attend to the tokens). The layout follows the
paper's Table 1 (Mobile-Former-294M: 6 tokens of 192) and its appendix table
of the smaller variants (Mobile-Former-96M: 4 tokens of 128), block details as
the authors' public code builds them (AAboys/MobileFormer, ``mobile_former.py``
and ``dna_blocks.py``). There is no packaged implementation, so the variants
are compared with the paper's rounded parameter and FLOP (multiply-add)
figures, within 5% (``tolerance=0.05``).

Choices, following the authors' code where the paper is silent:

- Block order: Mobile→Former, then the Former (self-attention on the tokens
  and an FFN), then the Mobile sub-block, whose dynamic ReLUs read the
  updated first token, then Former→Mobile added to the sub-block's output
  (after its identity shortcut).
- Mobile→Former: only the query is projected (token width → C); keys and
  values are the feature map itself, split into 2 heads; the attended
  features are gated by ``2·hardsigmoid(Linear(tokens))`` (the code's dynamic
  bridge), projected back to the token width, added to the tokens and
  LayerNorm'ed (post-norm).
- Former: 4-head self-attention with only a query projection (keys = values
  = the tokens) and an output projection, post-norm; FFN of expansion 2 with
  GELU, post-norm.
- Former→Mobile: keys and values are projected from the tokens (token width →
  C), the queries are the pixels unprojected; 2 heads; the result is added to
  the feature map.
- Dynamic ReLU (DY-ReLU with two linear pieces and no offsets): an MLP on the
  first token (width → width/4 → ReLU → 2·C → hardsigmoid) gives per-channel
  slopes ``a₁ = 2h₁`` and ``a₂ = 2h₂ - 1``; the output is ``max(a₁x, a₂x)``.
  It follows the first two convs of a block; the last 1×1 conv is linear.
- Mobile sub-block: 1×1 expand → dyReLU → 3×3 depthwise → dyReLU → 1×1
  project (each conv with BN); the identity shortcut where widths match.
  Downsampling blocks (the paper's "Mobile-Former↓") instead run a 3×3
  stride-2 depthwise conv that multiplies the channels (expansion ``e1``) →
  dyReLU → 1×1 project, then a second, stride-1 "lite bottleneck" (3×3
  depthwise ×``e2`` → dyReLU → 1×1 project) with a shortcut around it.
- The first block after the 3×3 stride-2 stem is a lite bottleneck alone
  (3×3 depthwise ×2 → ReLU6 → 1×1 project, identity shortcut) with no token
  interaction; stem and lite block use ReLU6.
- Head: one more Mobile→Former on the last map, then 1×1 conv to 6·C (BN,
  ReLU6), global pool, hard-swish, concatenated with the first token, a
  linear to 1920 (294M) or 1280 (96M) with BatchNorm1d and hard-swish, dropout
  0.3 (the authors' training command), and the classifier.
- The tokens are a learnt (T, width) parameter, normal-initialised as the
  code's ``nn.Embedding``, repeated over the batch.
- Attention is written with explicit matmuls and softmax (no fused kernel),
  so the profiler sees and counts every step.
"""

import torch
from torch import nn

from ._blocks import ConvBNAct, init_weights
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER = Paper("2108.05895", "Mobile-Former: Bridging MobileNet and Transformer", 2022)
MIRRORS = "AAboys/MobileFormer (authors' code)"

BRIDGE_HEADS = 2  # heads of both cross attentions
FORMER_HEADS = 4  # heads of the tokens' self-attention


class DynamicReLU(nn.Module):
    """DY-ReLU whose two per-channel slopes are generated from the first global token."""

    def __init__(self, channels: int, token_dim: int, reduction: int = 4):
        super().__init__()
        self.channels = channels
        self.hyper = nn.Sequential(
            nn.Linear(token_dim, token_dim // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(token_dim // reduction, 2 * channels),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        coeffs = self.hyper(tokens[:, 0]).view(x.shape[0], 2 * self.channels, 1, 1)
        h1, h2 = coeffs.split(self.channels, dim=1)
        return torch.maximum(x * (2 * h1), x * (2 * h2 - 1))


class MobileToFormer(nn.Module):
    """Tokens attend to the pixels: only the query is projected; keys = values = the feature map."""

    def __init__(self, channels: int, token_dim: int, heads: int = BRIDGE_HEADS):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.q = nn.Linear(token_dim, channels)
        self.gate = nn.Sequential(nn.Linear(token_dim, channels), nn.Hardsigmoid())
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        num_tokens = tokens.shape[1]
        q = self.q(tokens).view(batch, num_tokens, self.heads, -1).transpose(1, 2)  # B, h, T, C/h
        kv = x.reshape(batch, self.heads, channels // self.heads, height * width)  # B, h, C/h, HW
        attn = ((q @ kv) * self.scale).softmax(dim=-1)  # B, h, T, HW
        out = (attn @ kv.transpose(-2, -1)).transpose(1, 2).reshape(batch, num_tokens, channels)
        out = out * (2 * self.gate(tokens))
        return self.norm(tokens + self.proj(out))


class Former(nn.Module):
    """Post-norm transformer layer on the tokens: self-attention (query projection only) and an FFN."""

    def __init__(self, token_dim: int, heads: int = FORMER_HEADS, ffn_ratio: int = 2):
        super().__init__()
        self.heads = heads
        self.scale = (token_dim // heads) ** -0.5
        self.q = nn.Linear(token_dim, token_dim)
        self.proj = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.ffn = nn.Sequential(
            nn.Linear(token_dim, token_dim * ffn_ratio), nn.GELU(), nn.Linear(token_dim * ffn_ratio, token_dim)
        )
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, num_tokens, dim = tokens.shape
        q = self.q(tokens).view(batch, num_tokens, self.heads, -1).transpose(1, 2)  # B, h, T, D/h
        kv = tokens.view(batch, num_tokens, self.heads, -1).transpose(1, 2)  # B, h, T, D/h
        attn = ((q @ kv.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # B, h, T, T
        out = (attn @ kv).transpose(1, 2).reshape(batch, num_tokens, dim)
        tokens = self.norm1(tokens + self.proj(out))
        return self.norm2(tokens + self.ffn(tokens))


class FormerToMobile(nn.Module):
    """Pixels attend to the tokens: keys and values projected from the tokens; queries = the feature map."""

    def __init__(self, channels: int, token_dim: int, heads: int = BRIDGE_HEADS):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.k = nn.Linear(token_dim, channels)
        self.v = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        num_tokens = tokens.shape[1]
        q = x.reshape(batch, self.heads, channels // self.heads, height * width).transpose(-2, -1)  # B, h, HW, C/h
        k = self.k(tokens).view(batch, num_tokens, self.heads, -1).permute(0, 2, 3, 1)  # B, h, C/h, T
        v = self.v(tokens).view(batch, num_tokens, self.heads, -1).transpose(1, 2)  # B, h, T, C/h
        attn = ((q @ k) * self.scale).softmax(dim=-1)  # B, h, HW, T
        out = (attn @ v).transpose(-2, -1).reshape(batch, channels, height, width)
        return x + out


class LiteBottleneck(nn.Module):
    """The first block: 3×3 depthwise conv multiplying the channels → ReLU6 → 1×1 linear project (no tokens)."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int = 1):
        super().__init__()
        mid = in_channels * expansion
        self.dw = ConvBNAct(in_channels, mid, 3, stride, groups=in_channels, act_layer=nn.ReLU6)
        self.project = ConvBNAct(mid, out_channels, 1, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.project(self.dw(x))
        return (x + out if self.use_residual else out), tokens


class MobileFormerBlock(nn.Module):
    """Mobile→Former, Former, the Mobile sub-block (dynamic ReLUs from the tokens), Former→Mobile.

    ``down`` (the paper's Mobile-Former↓, stride 2) replaces the inverted
    residual with a channel-multiplying strided depthwise conv → 1×1 project,
    followed by a lite bottleneck of expansion ``lite_expansion`` with its own
    shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int,
        token_dim: int,
        down: bool = False,
        lite_expansion: int = 4,
    ):
        super().__init__()
        self.down = down
        self.mobile_to_former = MobileToFormer(in_channels, token_dim)
        self.former = Former(token_dim)
        mid = in_channels * expansion
        if down:
            self.conv1 = ConvBNAct(in_channels, mid, 3, stride=2, groups=in_channels, act_layer=None)
            self.act1 = DynamicReLU(mid, token_dim)
            self.conv2 = ConvBNAct(mid, out_channels, 1, act_layer=None)
            lite_mid = out_channels * lite_expansion
            self.conv3 = ConvBNAct(out_channels, lite_mid, 3, groups=out_channels, act_layer=None)
            self.act3 = DynamicReLU(lite_mid, token_dim)
            self.conv4 = ConvBNAct(lite_mid, out_channels, 1, act_layer=None)
        else:
            self.conv1 = ConvBNAct(in_channels, mid, 1, act_layer=None)
            self.act1 = DynamicReLU(mid, token_dim)
            self.conv2 = ConvBNAct(mid, mid, 3, groups=mid, act_layer=None)
            self.act2 = DynamicReLU(mid, token_dim)
            self.conv3 = ConvBNAct(mid, out_channels, 1, act_layer=None)
        self.former_to_mobile = FormerToMobile(out_channels, token_dim)
        self.use_residual = not down and in_channels == out_channels

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens))
        if self.down:
            out = self.conv2(self.act1(self.conv1(x), tokens))
            out = out + self.conv4(self.act3(self.conv3(out), tokens))
        else:
            out = self.act1(self.conv1(x), tokens)
            out = self.conv3(self.act2(self.conv2(out), tokens))
            if self.use_residual:
                out = out + x
        return self.former_to_mobile(out, tokens), tokens


class MergeHead(nn.Module):
    """1×1 conv to ``expansion``·C (BN, ReLU6) → pool → hard-swish, joined with the first token,
    → linear-BN-hard-swish to ``hidden`` → dropout → classifier."""

    def __init__(
        self,
        in_channels: int,
        token_dim: int,
        hidden: int,
        num_classes: int = 1000,
        expansion: int = 6,
        dropout: float = 0.3,
    ):
        super().__init__()
        wide = in_channels * expansion
        self.conv = ConvBNAct(in_channels, wide, 1, act_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_act = nn.Hardswish()
        self.fc = nn.Linear(wide + token_dim, hidden)
        self.fc_norm = nn.BatchNorm1d(hidden)
        self.fc_act = nn.Hardswish()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.pool_act(self.pool(self.conv(x))).flatten(1)
        merged = torch.cat((pooled, tokens[:, 0]), dim=1)
        return self.classifier(self.dropout(self.fc_act(self.fc_norm(self.fc(merged)))))


class MobileFormer(nn.Module):
    def __init__(self, variant: str = "294m", num_classes: int = 1000, dropout: float = 0.3):
        super().__init__()
        if variant not in ARCHS:
            raise ValueError(f"unknown Mobile-Former variant {variant!r}; expected one of {', '.join(ARCHS)}")
        arch = ARCHS[variant]
        token_dim = arch["token_dim"]
        self.tokens = nn.Parameter(torch.randn(arch["tokens"], token_dim))
        in_ch = arch["stem"]
        self.stem = ConvBNAct(3, in_ch, 3, stride=2, act_layer=nn.ReLU6)
        blocks: list[nn.Module] = []
        for kind, expansion, out_ch, lite_expansion in arch["blocks"]:
            if kind == "lite":
                blocks.append(LiteBottleneck(in_ch, out_ch, expansion))
            else:
                blocks.append(
                    MobileFormerBlock(in_ch, out_ch, expansion, token_dim, kind == "down", lite_expansion)
                )
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.mobile_to_former = MobileToFormer(in_ch, token_dim)
        self.head = MergeHead(in_ch, token_dim, arch["head"], num_classes, dropout=dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A copy per sample, as in the authors' code (a broadcast view of the parameter would do for the
        # maths, but hooks that track module inputs reject a grad-less view of a grad-requiring leaf).
        tokens = self.tokens.unsqueeze(0).repeat(x.shape[0], 1, 1)
        x = self.stem(x)
        for block in self.blocks:
            x, tokens = block(x, tokens)
        return self.head(x, self.mobile_to_former(x, tokens))


# Paper Table 1 (294M) and the appendix table of smaller variants (96M); one row per block.
# kind: "lite" = lite bottleneck (no tokens), "mf" = Mobile-Former block, "down" = Mobile-Former↓ (stride 2);
# e = expansion (hidden = input width × e), c = output channels, e2 = expansion of a down block's lite bottleneck.
ARCHS = {
    "294m": {
        "stem": 16,
        "tokens": 6,
        "token_dim": 192,
        "head": 1920,
        "blocks": [
            # kind, e, c, e2
            ("lite", 2, 16, 0),  # 112²
            ("down", 6, 24, 4),  # 56²
            ("mf", 4, 24, 0),
            ("down", 6, 48, 4),  # 28²
            ("mf", 4, 48, 0),
            ("down", 6, 96, 4),  # 14²
            ("mf", 4, 96, 0),
            ("mf", 6, 128, 0),
            ("mf", 6, 128, 0),
            ("down", 6, 192, 4),  # 7²
            ("mf", 6, 192, 0),
            ("mf", 6, 192, 0),
        ],
    },
    "96m": {
        "stem": 12,
        "tokens": 4,
        "token_dim": 128,
        "head": 1280,
        "blocks": [
            # kind, e, c, e2
            ("lite", 2, 12, 0),  # 112²
            ("down", 6, 16, 4),  # 56²
            ("down", 6, 32, 4),  # 28²
            ("mf", 3, 32, 0),
            ("down", 6, 64, 4),  # 14²
            ("mf", 4, 64, 0),
            ("mf", 6, 88, 0),
            ("down", 6, 128, 4),  # 7²
            ("mf", 6, 128, 0),
        ],
    },
}


@register_model(
    family="mobileformer",
    variant="294M",
    paper=PAPER,
    mirrors=MIRRORS + " mobile_former_294m",
    approximate=Approximate(
        "Table 1 (294M spec); ImageNet results table; authors' README",
        params=11_400_000,
        macs=294_000_000,
        tolerance=0.05,
    ),
    published=Published(macs=294_000_000, params=11_400_000, top1=77.9),
    notes=(
        "No packaged reference: built from the paper's Table 1 with block details from the authors' code. "
        "Obtained 11,422,648 params / 286,732,160 MACs at 224x224 (conv 248.8M, linear 27.2M, attention "
        "matmuls 10.8M) vs paper 11.4M / 294M FLOPs. The 2.5% MAC shortfall is not traced; the paper's "
        "counter is not public and may include element-wise work (dynamic-ReLU and bridge gating products). "
        "6 tokens x 192; bridges 2 heads, Former 4 heads; classifier dropout 0.3 (the authors' training "
        "command), which does not change the counts."
    ),
)
def mobileformer_294m(**kwargs):
    return MobileFormer("294m", **kwargs)


@register_model(
    family="mobileformer",
    variant="96M",
    paper=PAPER,
    mirrors=MIRRORS + " mobile_former_96m",
    approximate=Approximate(
        "appendix table of variants; ImageNet results table; authors' README",
        params=4_600_000,
        macs=96_000_000,
        tolerance=0.05,
    ),
    published=Published(macs=96_000_000, params=4_600_000, top1=72.8),
    notes=(
        "As mobileformer_294m with the 96M configuration: stem 12, 4 tokens x 128 (not 6: the paper's and "
        "the authors' 96M uses 4), head 1280, nine blocks. Obtained 4,585,252 params / 92,017,040 MACs "
        "(conv 80.9M, linear 7.4M, attention matmuls 3.7M) vs paper 4.6M / 96M: 4.1% below on MACs, within "
        "the 5% tolerance, with the same untraced counting gap as the 294M."
    ),
)
def mobileformer_96m(**kwargs):
    return MobileFormer("96m", **kwargs)


register_alias("mobileformer", "mobileformer_294m")
