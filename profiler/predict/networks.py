"""Synthetic networks: how kernels cost inside a network rather than alone.

A kernel timed alone is not the kernel inside a model: alone, each call
converts its input and output to and from the runtime's layout (ONNX
Runtime's NCHWc), keeps its weights hot in the cache across repetitions,
and hides the memory traffic between layers. Calibration therefore also
times a few random networks built from the blocks lightweight networks use
(inverted residuals with or without squeeze-excitation, ShuffleNet and
GhostNet units, ESPNet's PReLU blocks, MobileViT's attention, plain
convolutions), drawn from a search space like nn-Meter's NAS-style
sets, never from the zoo, and fits how the sum of the kernels predicted
alone maps to the network's time (:class:`Context`): a factor for
convolution kernels, one for every other kernel, and a cost per kernel.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

CONV_TYPES = frozenset({"conv", "conv_pointwise", "conv_depthwise", "conv_group"})
WIDTHS = (8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320)
RESOLUTIONS = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class Context:
    """``network time = once + sum over kernels (factor[group] * kernel time
    alone + per_kernel_s)``, ``group`` being ``conv`` or ``other``; fitted
    by non-negative least squares of relative error over the synthetic
    networks. ``error_alone`` and ``error_in_context``: the median relative
    error over them without and with it (cross-validated)."""

    conv_factor: float = 1.0
    other_factor: float = 1.0
    per_kernel_s: float = 0.0
    networks: int = 0
    error_alone: float | None = None
    error_in_context: float | None = None
    measured: list[dict[str, Any]] = field(default_factory=list, compare=False)

    def adjust(self, kernel_type: str, seconds: float) -> float:
        factor = self.conv_factor if kernel_type in CONV_TYPES else self.other_factor
        return factor * seconds + self.per_kernel_s

    def to_dict(self) -> dict[str, Any]:
        return {"conv_factor": self.conv_factor, "other_factor": self.other_factor, "per_kernel_s": self.per_kernel_s,
                "networks": self.networks, "error_alone": self.error_alone, "error_in_context": self.error_in_context,
                "measured": self.measured}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Context":
        return cls(float(data.get("conv_factor", 1.0)), float(data.get("other_factor", 1.0)),
                   float(data.get("per_kernel_s", 0.0)), int(data.get("networks", 0)), data.get("error_alone"),
                   data.get("error_in_context"), list(data.get("measured", [])))


MIN_NETWORKS_PER_TERM = 6  # fewer networks than this per fitted term: one common factor only


RIDGES = (0.0, 0.5, 2.0, 5.0)  # pulls on both factors towards 1, the one chosen by leave-one-out error


def fit_context(parts: list[tuple[float, float, int]], measured: list[float], once: float,
                ridge: float = 0.0) -> tuple[float, float, float]:
    """(conv factor, other factor, per-kernel seconds) from each network's
    (conv kernels' time alone, other kernels' time alone, kernel count) and
    its measured time: non-negative least squares of relative error, exact
    over the subsets of the three terms, with ``ridge`` pulling both factors
    towards 1 (convolutions dominate most networks, so the other factor is
    poorly determined without it); with too few networks for three terms,
    one factor common to every kernel."""
    import itertools

    import numpy as np

    if len(parts) < 3 * MIN_NETWORKS_PER_TERM:
        ratios = [(m - once) / (conv + other) for (conv, other, _), m in zip(parts, measured) if conv + other > 0 and m > once]
        # The factor minimizing the squared relative error: sum(r) / sum(r^2) over ratios r = measured / alone.
        factor = sum(1 / r for r in ratios) / sum(1 / (r * r) for r in ratios) if ratios else 1.0
        return factor, factor, 0.0
    design = np.asarray([[conv, other, float(count)] for conv, other, count in parts], dtype=np.float64)
    weights = 1.0 / np.asarray(measured, dtype=np.float64)
    target = (np.asarray(measured, dtype=np.float64) - once) * weights
    weighted = design * weights[:, None]
    prior = math.sqrt(ridge) * np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    weighted, target = np.vstack([weighted, prior]), np.concatenate([target, [math.sqrt(ridge)] * 2])
    scale = np.abs(weighted).max(axis=0)
    scale[scale == 0] = 1.0
    best, best_residual = np.array([1.0, 1.0, 0.0]), np.inf
    for size in range(1, 4):
        for subset in itertools.combinations(range(3), size):
            solution = np.linalg.lstsq(weighted[:, subset] / scale[list(subset)], target, rcond=None)[0] / scale[list(subset)]
            if (solution < 0).any():
                continue
            residual = float(np.sum((weighted[:, subset] @ solution - target) ** 2))
            if residual < best_residual:
                best_residual, best = residual, np.zeros(3)
                best[list(subset)] = solution
    return float(best[0]), float(best[1]), float(best[2])


def synthetic_network(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    """A random lightweight network (module, input shape): a stem, 3 to 8
    blocks of random kinds and widths, a global pool and a classifier."""
    import torch
    from torch import nn

    def act() -> nn.Module:
        return rng.choice((nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.Hardswish(inplace=True)))

    def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, activation: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if activation:
            layers.append(act())
        return nn.Sequential(*layers)

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            squeezed = max(8, channels // 4)
            self.reduce, self.expand = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)
            self.act, self.gate = nn.ReLU(inplace=True), nn.Hardsigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            hidden = cin * rng.choice((1, 3, 4, 6))
            layers: list[nn.Module] = [] if hidden == cin else [conv_bn(cin, hidden, 1, 1)]
            layers.append(conv_bn(hidden, hidden, rng.choice((3, 5)), stride, groups=hidden))
            if rng.random() < 0.3:
                layers.append(SqueezeExcite(hidden))
            layers.append(conv_bn(hidden, cout, 1, 1, activation=False))
            self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    class ShuffleUnit(nn.Module):
        """ShuffleNet V2's unit with stride 1: split, a branch, concatenate, shuffle."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            half = channels // 2
            self.branch = nn.Sequential(conv_bn(half, half, 1, 1), conv_bn(half, half, 3, 1, groups=half, activation=False),
                                        conv_bn(half, half, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            left, right = x.chunk(2, dim=1)
            out = torch.cat((left, self.branch(right)), dim=1)
            batch, channels, height, width = out.shape
            return out.view(batch, 2, channels // 2, height, width).transpose(1, 2).reshape(batch, channels, height, width)

    class GhostUnit(nn.Module):
        """GhostNet's module: half the outputs from a pointwise convolution,
        the other half from a cheap depthwise one on them, concatenated."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            half = channels // 2
            self.primary = conv_bn(channels, half, 1, 1)
            self.cheap = conv_bn(half, half, 3, 1, groups=half)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            primary = self.primary(x)
            return x + torch.cat((primary, self.cheap(primary)), dim=1)

    class PReLUBlock(nn.Module):
        """ESPNet's convolution, BatchNorm and PReLU."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv, self.norm, self.act = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.norm(self.conv(x)))

    class Attention(nn.Module):
        """MobileViT's global representation: patches of 2x2 pixels as tokens,
        one transformer layer (layer norm, attention, layer norm, MLP)."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.heads = rng.choice((1, 2, 4))
            self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
            self.qkv, self.proj = nn.Linear(channels, 3 * channels), nn.Linear(channels, channels)
            self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.SiLU(), nn.Linear(2 * channels, channels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, channels, height, width = x.shape
            tokens = x.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 3, 5, 2, 4, 1)
            tokens = tokens.reshape(batch * 4, (height // 2) * (width // 2), channels)
            q, k, v = self.qkv(self.norm1(tokens)).chunk(3, dim=-1)
            split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
            scores = (split(q) @ split(k).transpose(-1, -2)).softmax(dim=-1)
            attended = (scores @ split(v)).transpose(1, 2).reshape(tokens.shape)
            tokens = tokens + self.proj(attended)
            tokens = tokens + self.mlp(self.norm2(tokens))
            tokens = tokens.reshape(batch, 2, 2, height // 2, width // 2, channels).permute(0, 5, 3, 1, 4, 2)
            return x + tokens.reshape(batch, channels, height, width)

    width = rng.choice(WIDTHS[:6])
    blocks: list[nn.Module] = [conv_bn(3, width, 3, 2)]
    size = rng.choice(RESOLUTIONS)
    spatial = size // 2
    for _ in range(rng.randint(3, 8)):
        kind = rng.choice(("inverted", "inverted", "shuffle", "ghost", "prelu", "attention", "plain"))
        if kind in ("shuffle", "ghost") and width % 2 == 0:
            blocks.append(ShuffleUnit(width) if kind == "shuffle" else GhostUnit(width))
            continue
        if kind == "attention" and spatial % 2 == 0 and spatial <= 32 and width % 4 == 0:
            blocks.append(Attention(width))
            continue
        stride = rng.choice((1, 1, 2)) if spatial > 4 else 1
        out = rng.choice([w for w in WIDTHS if width <= w <= 2 * width] or [width])
        block = {"prelu": PReLUBlock(width, out, stride), "plain": conv_bn(width, out, 3, stride)}.get(
            kind, InvertedResidual(width, out, stride))
        blocks.append(block)
        width, spatial = out, (spatial + stride - 1) // stride
    last = rng.choice((256, 512, 1024))
    blocks += [conv_bn(width, last, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, 1000)]
    return nn.Sequential(*blocks).eval(), (1, 3, size, size)
