"""The Inception branch block, shared by GoogLeNet, Inception-v3 and Inception-v4.

Every Inception module, reduction module and mixed stem block of the three
families is one :class:`InceptionBlock`: parallel branches on the same input,
concatenated along channels. A branch is a sequence of layer specs:

- :func:`conv`: conv (no bias) → BatchNorm → ReLU, the ``BasicConv2d`` /
  ``ConvNormAct`` of torchvision and timm (built with ``ConvBNAct``);
- :func:`max_pool` / :func:`avg_pool`: a pooling layer (a branch may be a
  pool alone, passing its input channels through);
- :func:`fork`: convs applied in parallel to the branch's current tensor and
  concatenated, Inception-v3's "expanded filter bank" (1×3 and 3×1 side by
  side) that Inception-v4's Inception-C keeps.

The references leave a conv unpadded unless told otherwise (``nn.Conv2d``'s
default); here ``conv`` pads "same" (``k // 2`` per dimension) by default and
``valid=True`` asks for no padding, as the strided convs of Inception-v3/v4
and their stems' "V" convs have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from ._blocks import ConvBNAct

__all__ = ["Conv", "Fork", "InceptionBlock", "Pool", "avg_pool", "conv", "fork", "make_branch", "max_pool"]

Kernel = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class Conv:
    out_channels: int
    kernel: Kernel = 1
    stride: int = 1
    valid: bool = False

    @property
    def padding(self) -> tuple[int, int]:
        if self.valid:
            return (0, 0)
        kh, kw = _pair(self.kernel)
        return (kh // 2, kw // 2)


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


@dataclass(frozen=True)
class Fork:
    convs: tuple[Conv, ...]


def conv(out_channels: int, kernel: Kernel = 1, stride: int = 1, valid: bool = False) -> Conv:
    return Conv(out_channels, kernel, stride, valid)


def max_pool(kernel: int = 3, stride: int = 1, padding: int = 0, ceil_mode: bool = False) -> Pool:
    return Pool("max", kernel, stride, padding, ceil_mode)


def avg_pool(kernel: int = 3, stride: int = 1, padding: int = 0, count_include_pad: bool = True) -> Pool:
    return Pool("avg", kernel, stride, padding, count_include_pad=count_include_pad)


def fork(*convs: Conv) -> Fork:
    return Fork(tuple(convs))


Spec = Union[Conv, Pool, Fork]


def _pair(kernel: Kernel) -> tuple[int, int]:
    return (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)


class Concat(nn.Module):
    """Modules applied to the same input, outputs concatenated on channels."""

    def __init__(self, paths: Sequence[nn.Module]):
        super().__init__()
        self.paths = nn.ModuleList(paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([path(x) for path in self.paths], 1)


def _conv_layer(in_channels: int, spec: Conv, bn_eps: float) -> ConvBNAct:
    layer = ConvBNAct(in_channels, spec.out_channels, spec.kernel, spec.stride, padding=spec.padding)
    # ConvBNAct takes no eps; both references use 1e-3 (counts do not depend on it).
    layer.bn.eps = bn_eps
    return layer


def _pool_layer(spec: Pool) -> nn.Module:
    if spec.kind == "max":
        return nn.MaxPool2d(spec.kernel, spec.stride, spec.padding, ceil_mode=spec.ceil_mode)
    if spec.kind == "avg":
        return nn.AvgPool2d(
            spec.kernel, spec.stride, spec.padding, ceil_mode=spec.ceil_mode, count_include_pad=spec.count_include_pad
        )
    raise ValueError(f"unknown pool kind {spec.kind!r}; expected 'max' or 'avg'")


def make_branch(in_channels: int, specs: Sequence[Spec], bn_eps: float = 1e-3) -> tuple[nn.Sequential, int]:
    """One branch (or a plain stem) from its layer specs, with its output width."""
    if not specs:
        raise ValueError("an Inception branch needs at least one layer")
    layers: list[nn.Module] = []
    channels = in_channels
    for spec in specs:
        if isinstance(spec, Conv):
            layers.append(_conv_layer(channels, spec, bn_eps))
            channels = spec.out_channels
        elif isinstance(spec, Pool):
            layers.append(_pool_layer(spec))
        elif isinstance(spec, Fork):
            if not spec.convs:
                raise ValueError("a fork needs at least one conv")
            layers.append(Concat([_conv_layer(channels, c, bn_eps) for c in spec.convs]))
            channels = sum(c.out_channels for c in spec.convs)
        else:
            raise TypeError(f"unknown Inception layer spec {spec!r}")
    return nn.Sequential(*layers), channels


class InceptionBlock(nn.Module):
    """Parallel branches on one input, concatenated along channels.

    ``branches`` lists each branch's layer specs (:func:`conv`,
    :func:`max_pool`, :func:`avg_pool`, :func:`fork`), in concatenation order;
    ``out_channels`` is the sum of the branch widths (a pool-only branch
    contributes ``in_channels``).
    """

    def __init__(self, in_channels: int, branches: Sequence[Sequence[Spec]], bn_eps: float = 1e-3):
        super().__init__()
        if not branches:
            raise ValueError("an Inception block needs at least one branch")
        built = [make_branch(in_channels, specs, bn_eps) for specs in branches]
        self.branches = nn.ModuleList(branch for branch, _ in built)
        self.out_channels = sum(width for _, width in built)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)
