"""EfficientFormer: Vision Transformers at MobileNet Speed.

Li et al., NeurIPS 2022, https://arxiv.org/abs/2206.01191. The layout mirrors
timm's ``efficientformer_l1`` (ported from snap-research/EfficientFormer;
parameter count and MACs identical), at its fixed 224×224 input.

The network is four stages of "MetaBlocks" on a stride-4 conv stem. The first
stages use 4-D blocks (pooling as the token mixer, then a 1×1-conv MLP, both
on the NCHW map); the last stage ends in 3-D blocks that flatten the 7×7 map
into 49 tokens and mix them with multi-head self-attention (L1: one block).
Every residual branch is scaled by a learnt per-channel LayerScale.

Choices, all as in timm:

- The attention adds a learnt bias per head and relative offset, gathered
  from a (heads, 49) table by a fixed (49, 49) index. timm caches the
  gathered biases in eval mode; here they are gathered on every forward (the
  same values), so a per-op profiler sees the gather (``aten.index``).
- Keys and queries are 32 wide per head, values 4 × 32 = 128 (8 heads), and
  attention is written with explicit ops (q @ kᵀ, softmax, @ v) so that both
  matmuls are seen and counted.
- The classifier is the distilled one of the released weights: two linear
  heads on the mean token, averaged (timm's inference output).
- Stochastic depth (off by default in timm) and dropout are left out.
"""

import torch
from torch import nn

from ._blocks import ConvBNAct, init_weights
from ._registry import Paper, Published, Reference, register_alias, register_model

PAPER = Paper("2206.01191", "EfficientFormer: Vision Transformers at MobileNet Speed", 2022)

# The attention biases index a 7×7 grid: the last stage's map at 224×224.
RESOLUTION = 7
LAYER_SCALE_INIT = 1e-5


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch, on the last dim or (``channels_first``) on NCHW."""

    def __init__(self, dim: int, channels_first: bool = False, init_value: float = LAYER_SCALE_INIT):
        super().__init__()
        self.channels_first = channels_first
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.gamma.view(1, -1, 1, 1) if self.channels_first else self.gamma)


class Pooling(nn.Module):
    """PoolFormer token mixer: 3×3 average (padding not counted) minus the input."""

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class MetaBlock4d(nn.Module):
    """x + LS(pool(x) − x), then x + LS(1×1 conv-BN-GELU → 1×1 conv-BN), on NCHW."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.token_mixer = Pooling()
        self.ls1 = LayerScale(dim, channels_first=True)
        self.mlp = nn.Sequential(
            ConvBNAct(dim, hidden, 1, act_layer=nn.GELU, bias=True),
            ConvBNAct(hidden, dim, 1, act_layer=None, bias=True),
        )
        self.ls2 = LayerScale(dim, channels_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(x))
        return x + self.ls2(self.mlp(x))


class Attention(nn.Module):
    """Multi-head self-attention with a learnt bias per head and relative position."""

    def __init__(
        self,
        dim: int,
        key_dim: int = 32,
        num_heads: int = 8,
        attn_ratio: float = 4.0,
        resolution: int = RESOLUTION,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Linear(num_heads * self.val_dim, dim)
        # Offset (|dy|, |dx|) between every pair of the resolution² positions, as one table index.
        rows, cols = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
        pos = torch.stack((rows.flatten(), cols.flatten()))
        offset = (pos[:, :, None] - pos[:, None, :]).abs()
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", offset[0] * resolution + offset[1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, self.num_heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn + self.attention_biases[:, self.attention_bias_idxs]
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, tokens, self.num_heads * self.val_dim)
        return self.proj(out)


class MetaBlock3d(nn.Module):
    """Pre-norm transformer block on tokens: x + LS(MHSA(LN(x))), then x + LS(MLP(LN(x))), MLP with GELU."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = Attention(dim)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class Flatten(nn.Module):
    """(B, C, H, W) → (B, H·W, C): the switch from 4-D to 3-D blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class EfficientFormer(nn.Module):
    def __init__(self, depths, widths, num_vit: int, num_classes: int = 1000, mlp_ratio: float = 4.0):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNAct(3, widths[0] // 2, 3, stride=2, act_layer=nn.ReLU, bias=True),
            ConvBNAct(widths[0] // 2, widths[0], 3, stride=2, act_layer=nn.ReLU, bias=True),
        )
        in_ch = widths[0]
        stages: list[nn.Module] = []
        for index, (depth, width) in enumerate(zip(depths, widths)):
            layers: list[nn.Module] = []
            if index > 0:  # stride-2 3×3 conv-BN between stages
                layers.append(ConvBNAct(in_ch, width, 3, stride=2, act_layer=None, bias=True))
            last_stage = index == len(depths) - 1
            vit_blocks = num_vit if last_stage else 0
            for block in range(depth):
                if block == depth - vit_blocks:
                    layers.append(Flatten())
                block_type = MetaBlock3d if block >= depth - vit_blocks else MetaBlock4d
                layers.append(block_type(width, mlp_ratio))
            stages.append(nn.Sequential(*layers))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(in_ch)
        self.head = nn.Linear(in_ch, num_classes)
        self.head_dist = nn.Linear(in_ch, num_classes)
        init_weights(self)  # leaves the LayerScales at 1e-5 and the attention biases at zero

    def forward(self, x):
        x = self.norm(self.stages(self.stem(x))).mean(dim=1)
        # The distilled classifier: the class and distillation heads, averaged.
        return (self.head(x) + self.head_dist(x)) / 2


# The paper's L1 (as timm's EfficientFormer_depth/EfficientFormer_width list it):
# d = blocks per stage and c = widths of the four stages (strides 4, 8, 16, 32),
# vit = how many of the last stage's final blocks are 3-D (attention) blocks.
ARCHS = {
    # d, c, vit
    "l1": ((3, 2, 6, 4), (48, 96, 224, 448), 1),
}


@register_model(
    family="efficientformer",
    variant="L1",
    paper=PAPER,
    mirrors="timm efficientformer_l1",
    reference=Reference("timm efficientformer_l1", params=12_289_928, macs=1_291_284_736),
    published=Published(macs=1_300_000_000, params=12_300_000, top1=79.2),
    notes=(
        "timm's L1 (snap-research/EfficientFormer weights' layout). Obtained 12,289,928 params / "
        "1,291,284,736 conv+linear+matmul MACs at 224x224 vs paper 12.3M / 1.3G. The attention-bias gather "
        "runs on every forward (timm caches it in eval mode): same outputs, one small aten.index copy per "
        "attention block. Top-1 79.2 is with distillation."
    ),
)
def efficientformer_l1(**kwargs):
    depths, widths, num_vit = ARCHS["l1"]
    return EfficientFormer(depths, widths, num_vit, **kwargs)


register_alias("efficientformer", "efficientformer_l1")
