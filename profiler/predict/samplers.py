"""The kernels calibration times: one registered sampler per kernel type.

A sampler (:func:`sampler`) draws one configuration (channels, spatial
size, kernel size, stride, the ops after a convolution) from the ranges
lightweight networks use and builds the module that runs it: a pointwise
convolution with or without its BatchNorm and activation, a depthwise one,
attention's batched matmul, a channel shuffle, ... Each type draws from its
own seeded stream (:func:`configurations`).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

from lwprof.core.registry import Registry

# Channel widths, spatial sizes and kernels as lightweight CNNs use them (224x224 input).
CHANNELS = (8, 12, 16, 24, 32, 40, 48, 64, 72, 96, 120, 144, 160, 192, 240, 256, 320, 384, 480, 512, 576, 672, 960, 1024)
SPATIAL = (7, 14, 28, 56, 112)
KERNELS = (3, 5, 7)
ACTIVATIONS = ("relu", "relu6", "hardswish", "none")

_SAMPLERS: Registry[Callable[[random.Random], tuple[Any, tuple[int, ...]]]] = Registry("sampler for kernel type")


def sampler(kernel_type: str) -> Callable:
    """Register the sampler of ``kernel_type``: ``rng -> (module, input shape)``."""
    return _SAMPLERS.register(kernel_type)


def sampled_types() -> list[str]:
    return _SAMPLERS.names()


def _activation(name: str) -> Any:
    from torch import nn

    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hardswish": nn.Hardswish(), "none": nn.Identity()}[name]


def _conv_block(rng: random.Random, cin: int, cout: int, k: int, stride: int, groups: int) -> Any:
    """A convolution with, or without, its BatchNorm and an activation: a
    runtime that runs either apart (eager PyTorch) is calibrated on the
    convolutions alone and on BatchNorms and activations of their own."""
    from torch import nn

    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)]
    if rng.random() < 0.5:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(_activation(rng.choice(ACTIVATIONS)))
    return nn.Sequential(*layers).eval()


@sampler("conv_pointwise")
def _pointwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    cin, cout, size = rng.choice(CHANNELS), rng.choice(CHANNELS), rng.choice(SPATIAL)
    return _conv_block(rng, cin, cout, 1, 1, 1), (1, cin, size, size)


@sampler("conv_depthwise")
def _depthwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    channels, size, k, stride = rng.choice(CHANNELS), rng.choice(SPATIAL), rng.choice(KERNELS), rng.choice((1, 1, 2))
    return _conv_block(rng, channels, channels, k, stride, channels), (1, channels, size, size)


@sampler("conv")
def _dense(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    cin, cout, size = rng.choice(CHANNELS[:12]), rng.choice(CHANNELS[:16]), rng.choice(SPATIAL)
    k, stride = rng.choice((3, 3, 5)), rng.choice((1, 2))
    return _conv_block(rng, cin, cout, k, stride, 1), (1, cin, size, size)


@sampler("conv_group")
def _grouped(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    groups = rng.choice((2, 3, 4, 8))
    cin, cout = groups * rng.choice((8, 16, 24, 32, 60)), groups * rng.choice((8, 16, 24, 32, 60))
    k = rng.choice((1, 1, 3))
    return _conv_block(rng, cin, cout, k, 1, groups), (1, cin, rng.choice(SPATIAL), rng.choice(SPATIAL))


# Token counts and widths of the attention blocks in MobileViT-class models
# (patches of a 32x32..8x8 map, 2x2 pixels per patch).
TOKENS = (16, 64, 256)
EMBEDDINGS = (64, 96, 128, 144, 192, 240)


def _attention_scores() -> Any:
    import torch
    from torch import nn

    class Scores(nn.Module):
        """``q @ k^T`` of one self-attention head group: a batched matmul."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.matmul(x, x.transpose(-1, -2))

    return Scores().eval()


@sampler("batched_matmul")
def _attention(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    # (batch*heads, tokens, head width) @ its transpose: attention's scores
    heads, tokens, width = rng.choice((1, 2, 4, 8)), rng.choice(TOKENS), rng.choice((16, 24, 32, 48, 64))
    return _attention_scores(), (4 * heads, tokens, width)


@sampler("matmul")
def _linear(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    if rng.random() < 0.25:  # a classifier: one feature vector, weights far larger than the activations
        width = rng.choice((512, 576, 960, 1024, 1280, 1536, 2048))
        return nn.Linear(width, 1000).eval(), (1, width)
    cin, cout = rng.choice(CHANNELS + EMBEDDINGS), rng.choice(CHANNELS + EMBEDDINGS + (1000,))
    if rng.random() < 0.3:  # a transformer's projection over a batch of patch tokens
        return nn.Linear(cin, cout).eval(), (4, rng.choice(TOKENS), cin)
    return nn.Linear(cin, cout).eval(), (rng.choice((1, 1, 16, 64, 256)), cin)


@sampler("pooling")
def _pooling(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    module = rng.choice((nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1)))
    return module.eval(), (1, channels, size, size)


@sampler("reduction")
def _global_pool(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    return nn.AdaptiveAvgPool2d(1).eval(), (1, rng.choice(CHANNELS), *(rng.choice(SPATIAL),) * 2)


def _elementwise_module(op: str, shape: tuple[int, ...]) -> Any:
    import torch
    from torch import nn

    class Elementwise(nn.Module):
        """``x + other`` or ``x * other`` with a second operand of x's shape
        (a residual's shortcut, an attention map)."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("other", torch.randn(shape))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.other if op == "add" else x * self.other

    return Elementwise().eval()


@sampler("elementwise")
def _elementwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    shape = (1, rng.choice(CHANNELS), *(rng.choice(SPATIAL),) * 2)
    return _elementwise_module(rng.choice(("add", "mul")), shape), shape


@sampler("activation")
def _activation_alone(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    module = rng.choice((nn.ReLU(), nn.Hardswish(), nn.Hardsigmoid(), nn.Sigmoid(), nn.GELU(), nn.SiLU()))
    return module.eval(), (1, channels, size, size)


@sampler("prelu")
def _prelu(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    return nn.PReLU(channels).eval(), (1, channels, size, size)


@sampler("softmax")
def _softmax(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    tokens = rng.choice(TOKENS)  # attention's softmax over (batch*heads, tokens, tokens)
    return nn.Softmax(dim=-1).eval(), (4 * rng.choice((1, 2, 4, 8)), tokens, tokens)


@sampler("layer_norm")
def _layer_norm(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    width = rng.choice(EMBEDDINGS)  # over a transformer's patch tokens
    return nn.LayerNorm(width).eval(), (4, rng.choice(TOKENS), width)


@sampler("normalization")
def _normalization(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    module = nn.BatchNorm2d(channels) if rng.random() < 0.5 else nn.GroupNorm(1, channels)
    return module.eval(), (1, channels, size, size)


def _data_movement_module(op: str, shape: tuple[int, ...], groups: int) -> Any:
    import torch
    from torch import nn

    class DataMovement(nn.Module):
        """A concatenation with a second tensor of x's shape (a ShuffleNet or
        GhostNet merge), or a channel shuffle (view, transpose, copy)."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("other", torch.randn(shape))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if op == "cat":
                return torch.cat((x, self.other), dim=1)
            batch, channels, height, width = x.shape
            return x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous().view(
                batch, channels, height, width)

    return DataMovement().eval()


@sampler("data_movement")
def _data_movement(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    shape = (1, rng.choice(CHANNELS), *(rng.choice(SPATIAL[:-1]),) * 2)
    return _data_movement_module(rng.choice(("cat", "shuffle")), shape, 2), shape


def configurations(kernel_type: str, seed: int) -> Iterator[tuple[Any, tuple[int, ...]]]:
    """``kernel_type``'s sampler's draws, in order: each type draws from its
    own stream, so more samples of one type (an adaptive round, a resumed
    run) never change another type's, and the same seed draws the same
    configurations."""
    rng, draw = random.Random(f"{seed}:{kernel_type}"), _SAMPLERS.get(kernel_type)
    while True:
        yield draw(rng)
