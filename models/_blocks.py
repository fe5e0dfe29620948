"""Building blocks shared by the zoo families, each written once.

The layouts follow the public implementations the zoo mirrors (torchvision's
``Conv2dNormActivation``/``SqueezeExcitation``/``InvertedResidual`` and timm's
``_efficientnet_blocks``), so that parameter counts match them exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ActLayer = Callable[..., nn.Module] | None


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping below
    ``round_limit`` of it (the rule of the MobileNet/EfficientNet reference code)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def check_width(width_mult: float) -> float:
    if not width_mult > 0:
        raise ValueError(f"width multiplier must be positive, got {width_mult!r}")
    return float(width_mult)


def _make_act(act_layer: ActLayer) -> nn.Module | None:
    if act_layer is None:
        return None
    try:
        return act_layer(inplace=True)
    except TypeError:  # activations without an inplace flag (GELU, Hardsigmoid, ...)
        return act_layer()


class ConvBNAct(nn.Sequential):
    """Conv2d → BatchNorm2d → activation; ``act_layer=None`` leaves the output linear.

    Children are named ``conv``, ``bn`` and ``act`` so per-layer reports read
    ``features.3.conv`` rather than ``features.3.0``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act_layer: ActLayer = nn.ReLU,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = False,
        norm: bool = True,
    ):
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias
        )
        if norm:
            self.bn = nn.BatchNorm2d(out_channels)
        act = _make_act(act_layer)
        if act is not None:
            self.act = act
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool → 1×1 conv → act → 1×1 conv → gate, times input.

    Each family's reduced width differs (``make_divisible(c/4, 8)`` in
    MobileNetV3, ``block_in/4`` in EfficientNet, ...), so callers pass it.
    """

    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        act_layer: ActLayer = nn.ReLU,
        gate_layer: Callable[..., nn.Module] = nn.Sigmoid,
    ):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced_channels, 1)
        self.act = _make_act(act_layer)
        self.fc2 = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.act(self.fc1(self.pool(x))))
        return x * self.gate(scale)


class DepthwiseSeparable(nn.Module):
    """Depthwise k×k conv-BN-act → optional SE → pointwise 1×1 conv-BN(-act).

    MobileNetV1 and PP-LCNet keep the pointwise activation; EfficientNet's,
    MnasNet's and MobileNetV3's first block leave it linear (``pw_act=False``)
    and add the identity shortcut when shapes allow (``residual=True``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: ActLayer = nn.ReLU,
        se_layer: Callable[[int], nn.Module] | None = None,
        pw_act: bool = True,
        residual: bool = False,
    ):
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels, act_layer=act_layer)
        self.se = se_layer(in_channels) if se_layer is not None else nn.Identity()
        self.pw = ConvBNAct(in_channels, out_channels, 1, act_layer=act_layer if pw_act else None)
        self.use_residual = residual and stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw(self.se(self.dw(x)))
        return x + out if self.use_residual else out


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1×1 expand → k×k depthwise → [SE] → 1×1 linear project.

    The expansion is skipped when ``mid_channels == in_channels`` (as in
    torchvision), and the identity shortcut is added when stride is 1 and the
    widths match.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: ActLayer = nn.ReLU6,
        se_layer: Callable[[int], nn.Module] | None = None,
        force_expand: bool = False,
    ):
        super().__init__()
        if mid_channels != in_channels or force_expand:
            self.expand = ConvBNAct(in_channels, mid_channels, 1, act_layer=act_layer)
        else:
            self.expand = nn.Identity()
        self.dw = ConvBNAct(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, act_layer=act_layer)
        self.se = se_layer(mid_channels) if se_layer is not None else nn.Identity()
        self.project = ConvBNAct(mid_channels, out_channels, 1, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + out if self.use_residual else out


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet): reshape, transpose, flatten."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ClassifierHead(nn.Module):
    """Global average pool → flatten → [dropout] → linear, the usual ImageNet head."""

    def __init__(self, in_features: int, num_classes: int = 1000, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.pool(x))))


class PooledConvHead(nn.Module):
    """Pool → 1×1 conv (with bias) → act → flatten → dropout → linear.

    PP-LCNet and GhostNet widen the features with a 1×1 conv after the global
    pool, on a 1×1 map, instead of before it on the last feature map.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
        act_layer=nn.Hardswish,
    ):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvBNAct(in_channels, hidden_channels, 1, act_layer=act_layer, bias=True, norm=False)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.conv(self.pool(x)))))


def init_weights(model: nn.Module) -> nn.Module:
    """Kaiming-normal convs, unit BatchNorm, small-normal linears: the common
    ImageNet initialisation, so random models give finite, well-scaled outputs."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
