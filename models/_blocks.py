"""Building blocks shared by the zoo families, each written once.

The layouts follow the public implementations the zoo mirrors (torchvision's
``Conv2dNormActivation``/``SqueezeExcitation``/``InvertedResidual`` and timm's
``_efficientnet_blocks``), so that parameter counts match them exactly.
"""

from __future__ import annotations

import math
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


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., CVPR 2021, arXiv 2103.02907).

    Average-pools along each spatial axis (an ``H×1`` and a ``1×W`` descriptor
    per channel), encodes both together with one shared 1×1 conv-BN-act down to
    ``max(min_channels, channels // reduction)`` channels, splits them again and
    turns each into a per-row and a per-column sigmoid gate with its own 1×1
    conv; the input is multiplied by both. As in the authors' code the convs
    carry biases and the activation is hard-swish.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 32,
        min_channels: int = 8,
        act_layer: ActLayer = nn.Hardswish,
    ):
        super().__init__()
        mid = max(min_channels, channels // reduction)
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.encode = ConvBNAct(channels, mid, 1, act_layer=act_layer, bias=True)
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)
        self.gate_h = nn.Sigmoid()
        self.gate_w = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pooled_h = self.pool_h(x)  # N, C, H, 1
        pooled_w = self.pool_w(x).permute(0, 1, 3, 2)  # N, C, W, 1
        y = self.encode(torch.cat([pooled_h, pooled_w], dim=2))
        y_h, y_w = torch.split(y, [height, width], dim=2)
        gate_h = self.gate_h(self.conv_h(y_h))  # N, C, H, 1
        gate_w = self.gate_w(self.conv_w(y_w.permute(0, 1, 3, 2)))  # N, C, 1, W
        return x * gate_w * gate_h


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive 1-D kernel size: ``(log2(C) + b) / γ`` truncated, raised to the next odd integer if even."""
    k = int(abs((math.log2(channels) + beta) / gamma))
    return k if k % 2 else k + 1


class EfficientChannelAttention(nn.Module):
    """Efficient channel attention (ECA, Wang et al., CVPR 2020, arXiv 1910.03151).

    Global average pool → a 1-D convolution of size ``k`` across the channel
    axis (no bias, no reduction) → sigmoid gate, times input. ``kernel_size``
    defaults to the paper's adaptive rule (:func:`eca_kernel_size`).
    """

    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        y = self.conv(self.pool(x).view(batch, 1, channels))  # channels as the 1-D sequence
        return x * self.gate(y.view(batch, channels, 1, 1))


class ShuffleAttention(nn.Module):
    """Shuffle attention (SA-Net, Zhang & Yang, ICASSP 2021, arXiv 2102.00240).

    The channels are split into ``groups`` sub-features, each halved: one half
    gets a channel gate (global average pool, per-channel scale and shift,
    sigmoid), the other a spatial gate (GroupNorm with one channel per group,
    per-channel scale and shift, sigmoid). The halves are concatenated and the
    result is channel-shuffled with 2 groups so the two kinds of attention mix.
    Needs ``channels`` divisible by ``2 * groups``.
    """

    def __init__(self, channels: int, groups: int = 64):
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(f"shuffle attention needs channels divisible by 2*groups, got {channels} and {groups}")
        half = channels // (2 * groups)
        self.groups = groups
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.channel_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.channel_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.spatial_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.spatial_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.norm = nn.GroupNorm(half, half)
        self.gate_channel = nn.Sigmoid()
        self.gate_spatial = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        x = x.reshape(batch * self.groups, channels // self.groups, height, width)
        x_channel, x_spatial = x.chunk(2, dim=1)
        x_channel = x_channel * self.gate_channel(self.channel_weight * self.pool(x_channel) + self.channel_bias)
        x_spatial = x_spatial * self.gate_spatial(self.spatial_weight * self.norm(x_spatial) + self.spatial_bias)
        out = torch.cat([x_channel, x_spatial], dim=1).reshape(batch, channels, height, width)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ZPoolGate(nn.Module):
    """Triplet attention's branch: channel max and mean ("Z-pool", 2 maps) →
    k×k conv-BN to one map → sigmoid, times input."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = ConvBNAct(2, 1, kernel_size, act_layer=None)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(pooled))


class TripletAttention(nn.Module):
    """Triplet attention (Misra et al., WACV 2021, arXiv 2010.03045).

    Three :class:`ZPoolGate` branches on the input rotated three ways, so each
    gate sees a different pair of dimensions: (C, W) with H pooled, (H, C) with
    W pooled, and (H, W) with C pooled (a CBAM-style spatial gate); the
    outputs are rotated back and averaged. ``channels`` is accepted for a
    uniform attention-layer signature and unused (the module is width-free).
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 7):
        super().__init__()
        self.cw = ZPoolGate(kernel_size)
        self.hc = ZPoolGate(kernel_size)
        self.hw = ZPoolGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_cw = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)  # H pooled
        out_hc = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)  # W pooled
        return (out_cw + out_hc + self.hw(x)) / 3


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
    """MobileNetV2 inverted residual: 1×1 expand → k×k depthwise → [SE] → 1×1 linear project → [attention].

    The expansion is skipped when ``mid_channels == in_channels`` (as in
    torchvision), and the identity shortcut is added when stride is 1 and the
    widths match. ``se_layer`` attends to the wide depthwise output (SE,
    coordinate attention); ``attn_layer`` to the projected output before the
    shortcut (ECA, shuffle and triplet attention on MobileNetV2), and is a child
    (``attn``) only when given, so blocks without it keep their layer names.
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
        attn_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        if mid_channels != in_channels or force_expand:
            self.expand = ConvBNAct(in_channels, mid_channels, 1, act_layer=act_layer)
        else:
            self.expand = nn.Identity()
        self.dw = ConvBNAct(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, act_layer=act_layer)
        self.se = se_layer(mid_channels) if se_layer is not None else nn.Identity()
        self.project = ConvBNAct(mid_channels, out_channels, 1, act_layer=None)
        self.attn = attn_layer(out_channels) if attn_layer is not None else None
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.attn is not None:
            out = self.attn(out)
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
    """He-normal convs (fan-out per group), unit BatchNorm, small-normal
    linears: the common ImageNet initialisation.

    The fan-out of a grouped convolution is ``k*k*out_channels/groups`` (as
    timm's EfficientNet initialisation has it), not torch's ``fan_out`` mode,
    which counts every output channel: that gives a depthwise 3x3 a standard
    deviation sqrt(C) times too small, and activations that shrink by that
    factor at every depthwise layer (mobilenet_v2's logits came out near 1e-9).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            fan_out = max(1, kernel * module.out_channels // module.groups)
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
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


@torch.no_grad()
def settle_batchnorm(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """Data-free BatchNorm statistics, so a random model behaves like a trained one.

    A trained network's BatchNorm layers hold the mean and variance of what
    reaches them; fresh ones hold 0 and 1, so they normalise nothing, and
    activations drift by orders of magnitude with depth, which makes int8
    scales and output agreement meaningless. One forward pass on a seeded
    standard-normal input of the model's own shape (a normalised image's
    statistics), with only the BatchNorm layers in training mode (dropout and
    stochastic depth stay off), records every layer's statistics in order,
    each on inputs its predecessors already normalise. A BatchNorm that sees
    one value per channel (after global pooling, at batch 1) keeps 0 and 1.

    The pass runs on one thread, so the statistics are bit-identical whatever
    thread count the caller (or a worker process rebuilding the model) uses,
    and at the model's own input size, so it allocates nothing an inference
    warm-up would not. A model built on the meta device is left as it is.
    """
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not batchnorms or any(p.is_meta for p in model.parameters()):
        return model

    def one_value_per_channel(module: nn.Module, args: tuple) -> None:
        x = args[0]
        module.training = x.numel() // x.shape[1] > 1

    was_training = model.training
    momenta = [bn.momentum for bn in batchnorms]
    model.eval()
    hooks = [bn.register_forward_pre_hook(one_value_per_channel) for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # the pass's own statistics, not a blend with 0 and 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model(torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(seed)))
    finally:
        torch.set_num_threads(threads)
        for hook in hooks:
            hook.remove()
        for bn, momentum in zip(batchnorms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return model
