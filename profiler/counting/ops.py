"""Per-op cost formulas for PyTorch (aten) ops: the one documented table.

Each formula is one function registered with :func:`register_formula` for one
op or op family (as in ``torch.utils.flop_counter``). A formula sees the op's
arguments and outputs and returns its MACs, FLOPs and op class; memory access
is not a formula's business: the engine counts every op's bytes read and
written from the tensors it actually touched.

Conventions (README "Counting conventions" repeats them):

- MACs are multiply-accumulates of convolutions and matrix products only.
  Bias adds are not MACs; they are FLOPs (one per output element).
- FLOPs = 2·MACs + the floating-point operations of every other op, per
  output element unless stated: see ``FLOPS_PER_ELEMENT``. A transcendental
  function (exp, erf, tanh) counts as one FLOP.
- Ops in ``VIEW_OPS`` only re-describe memory: zero FLOPs and zero bytes.
  ``ALLOCATION_OPS`` reserve memory without touching it: zero of both too.
- Any other op without a formula is *unsupported*: counted, reported by name,
  its memory traffic still included, never silently zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

aten = torch.ops.aten


@dataclass(frozen=True)
class OpCost:
    macs: int
    flops: int
    op_class: str


@dataclass(frozen=True)
class OpCall:
    """What a formula may look at: the op's arguments and its tensor outputs."""

    args: tuple
    kwargs: dict
    outputs: tuple[torch.Tensor, ...]

    @property
    def out(self) -> torch.Tensor:
        return self.outputs[0]

    @property
    def out_numel(self) -> int:
        return self.outputs[0].numel()

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)


Formula = Callable[[OpCall], OpCost]

# Op classes, used to group time and FLOPs ("where does time go?").
CONV = "conv"
CONV_DEPTHWISE = "conv_depthwise"
CONV_POINTWISE = "conv_pointwise"
MATMUL = "matmul"
NORMALIZATION = "normalization"
ACTIVATION = "activation"
ELEMENTWISE = "elementwise"
POOLING = "pooling"
REDUCTION = "reduction"
DATA_MOVEMENT = "data_movement"
VIEW = "view"
CONVERSION = "conversion"  # a tensor's precision changed: quantize, dequantize, cast
UNSUPPORTED = "unsupported"

_FORMULAS: dict[Any, Formula] = {}


def register_formula(*ops: Any) -> Callable[[Formula], Formula]:
    """Register ``formula`` for aten op packets (all overloads) or single overloads."""

    def decorator(formula: Formula) -> Formula:
        for op in ops:
            if op in _FORMULAS:
                raise ValueError(f"a cost formula for {op} is already registered")
            _FORMULAS[op] = formula
        return formula

    return decorator


def formula_for(func: Any) -> Formula | None:
    """The formula of an op overload, looked up by overload first, then by packet."""
    return _FORMULAS.get(func) or _FORMULAS.get(getattr(func, "overloadpacket", None))


def op_name(func: Any) -> str:
    """'aten.convolution' style name of an op overload (overload suffix dropped)."""
    packet = getattr(func, "overloadpacket", func)
    return f"aten.{getattr(packet, '__name__', str(packet))}"


# View and allocation ops: no arithmetic and no memory traffic.
VIEW_OPS = frozenset(
    {
        aten.view,
        aten._unsafe_view,
        aten.reshape,
        aten.alias,
        aten.detach,
        aten.expand,
        aten.permute,
        aten.transpose,
        aten.t,
        aten.squeeze,
        aten.unsqueeze,
        aten.select,
        aten.slice,
        aten.split,
        aten.split_with_sizes,
        aten.unbind,
        aten.chunk,
        aten.narrow,
        aten.as_strided,
        aten.flatten,
        aten.unflatten,
        aten.lift_fresh,
    }
)
ALLOCATION_OPS = frozenset({aten.empty, aten.empty_like, aten.empty_strided})


def is_view_op(func: Any) -> bool:
    return getattr(func, "overloadpacket", func) in VIEW_OPS


def is_allocation_op(func: Any) -> bool:
    return getattr(func, "overloadpacket", func) in ALLOCATION_OPS


# ---------------------------------------------------------------------------
# Convolutions and matrix products: the only ops with MACs.


def conv_class(in_channels: int, out_channels: int, groups: int, kernel_numel: int) -> str:
    if groups > 1 and groups == in_channels:
        return CONV_DEPTHWISE
    if kernel_numel == 1 and groups == 1:
        return CONV_POINTWISE
    return CONV


@register_formula(aten.convolution, aten._convolution, aten.conv2d, aten.conv1d, aten.conv3d)
def convolution(call: OpCall) -> OpCost:
    x, weight = call.args[0], call.args[1]
    bias = call.arg(2, "bias")
    transposed = bool(call.arg(6, "transposed", False))
    groups = int(call.arg(8, "groups", 1))
    out = call.out
    kernel_numel = math.prod(weight.shape[2:])
    if transposed:
        # Every input element scatters into Cout/groups channels over the kernel.
        macs = x.numel() * (weight.shape[1]) * kernel_numel
        out_channels = weight.shape[1] * groups
    else:
        # N·Hout·Wout·Cout·(Cin/groups)·Kh·Kw
        macs = out.numel() * weight.shape[1] * kernel_numel
        out_channels = weight.shape[0]
    bias_flops = out.numel() if bias is not None else 0
    return OpCost(macs, 2 * macs + bias_flops, conv_class(x.shape[1], out_channels, groups, kernel_numel))


@register_formula(aten.mm)
def mm(call: OpCall) -> OpCost:
    a, b = call.args[0], call.args[1]
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return OpCost(macs, 2 * macs, MATMUL)


@register_formula(aten.addmm)
def addmm(call: OpCall) -> OpCost:
    a, b = call.args[1], call.args[2]
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return OpCost(macs, 2 * macs + call.out_numel, MATMUL)


@register_formula(aten.bmm)
def bmm(call: OpCall) -> OpCost:
    a, b = call.args[0], call.args[1]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return OpCost(macs, 2 * macs, MATMUL)


@register_formula(aten.baddbmm)
def baddbmm(call: OpCall) -> OpCost:
    a, b = call.args[1], call.args[2]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return OpCost(macs, 2 * macs + call.out_numel, MATMUL)


@register_formula(
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_cudnn_attention,
)
def scaled_dot_product_attention(call: OpCall) -> OpCost:
    query, key, value = call.args[0], call.args[1], call.args[2]
    *batch, q_len, head_dim = query.shape
    k_len, v_dim = key.shape[-2], value.shape[-1]
    heads = math.prod(batch)
    macs = heads * q_len * k_len * head_dim + heads * q_len * k_len * v_dim
    # softmax over each score row, plus the 1/sqrt(d) scaling
    other = heads * q_len * k_len * (FLOPS_PER_ELEMENT["softmax"] + 1)
    return OpCost(macs, 2 * macs + other, MATMUL)


# ---------------------------------------------------------------------------
# Everything else: FLOPs per output element, from one table.

FLOPS_PER_ELEMENT: dict[str, int] = {
    # activations
    "relu": 1,  # max(x, 0)
    "leaky_relu": 2,  # compare, multiply
    "hardtanh": 2,  # min, max (ReLU6 is hardtanh(0, 6))
    "hardsigmoid": 4,  # add 3, max, min, divide by 6
    "hardswish": 5,  # hardsigmoid, times x
    "sigmoid": 4,  # negate, exp, add 1, reciprocal
    "silu": 5,  # sigmoid, times x
    "tanh": 1,
    "gelu": 5,  # x * 0.5 * (1 + erf(x / sqrt 2))
    "elu": 3,
    # element-wise arithmetic (per output element, broadcasting included)
    "binary": 1,
    # normalization in inference: y = x * scale + shift, scale and shift per channel
    "batch_norm": 2,
    # layer norm: mean (1), variance (3), normalize (2); affine adds 2
    "layer_norm": 5,
    "layer_norm_affine": 2,
    # softmax: max, subtract, exp, sum, divide
    "softmax": 5,
    # precision conversion: quantize x / scale + zero point (then round and saturate, no
    # arithmetic), dequantize (q - zero point) * scale; an int8 kernel requantizes its output alike
    "quantize": 2,
    "dequantize": 2,
}


def _unary(kind: str, op_class: str) -> Formula:
    per_element = FLOPS_PER_ELEMENT[kind]

    def formula(call: OpCall) -> OpCost:
        return OpCost(0, per_element * call.out_numel, op_class)

    formula.__name__ = kind
    formula.__doc__ = f"{per_element} FLOP(s) per output element."
    return formula


register_formula(aten.relu, aten.relu_)(_unary("relu", ACTIVATION))
register_formula(aten.leaky_relu, aten.leaky_relu_)(_unary("leaky_relu", ACTIVATION))
# PReLU: a compare and a multiply by the (learned) slope, as leaky ReLU
register_formula(aten._prelu_kernel, aten.prelu)(_unary("leaky_relu", ACTIVATION))
register_formula(aten.hardtanh, aten.hardtanh_)(_unary("hardtanh", ACTIVATION))
register_formula(aten.hardsigmoid, aten.hardsigmoid_)(_unary("hardsigmoid", ACTIVATION))
register_formula(aten.hardswish, aten.hardswish_)(_unary("hardswish", ACTIVATION))
register_formula(aten.sigmoid, aten.sigmoid_)(_unary("sigmoid", ACTIVATION))
register_formula(aten.silu, aten.silu_)(_unary("silu", ACTIVATION))
register_formula(aten.tanh, aten.tanh_)(_unary("tanh", ACTIVATION))
register_formula(aten.gelu, aten.gelu_)(_unary("gelu", ACTIVATION))
register_formula(aten.elu, aten.elu_)(_unary("elu", ACTIVATION))
register_formula(
    aten.add,
    aten.add_,
    aten.sub,
    aten.sub_,
    aten.mul,
    aten.mul_,
    aten.div,
    aten.div_,
    aten.rsub,
    aten.maximum,
    aten.minimum,
    aten.clamp,
    aten.clamp_,
    aten.neg,
    aten.reciprocal,
    aten.sqrt,
    aten.rsqrt,
    aten.exp,
    aten.pow,
    aten.where,
)(_unary("binary", ELEMENTWISE))


@register_formula(aten.native_batch_norm, aten._native_batch_norm_legit_no_training, aten._native_batch_norm_legit)
def batch_norm(call: OpCall) -> OpCost:
    return OpCost(0, FLOPS_PER_ELEMENT["batch_norm"] * call.out_numel, NORMALIZATION)


@register_formula(aten.native_layer_norm)
def layer_norm(call: OpCall) -> OpCost:
    weight = call.arg(2, "weight")
    per_element = FLOPS_PER_ELEMENT["layer_norm"] + (FLOPS_PER_ELEMENT["layer_norm_affine"] if weight is not None else 0)
    return OpCost(0, per_element * call.out_numel, NORMALIZATION)


@register_formula(aten.native_group_norm)
def group_norm(call: OpCall) -> OpCost:
    weight = call.arg(1, "weight")
    per_element = FLOPS_PER_ELEMENT["layer_norm"] + (FLOPS_PER_ELEMENT["layer_norm_affine"] if weight is not None else 0)
    return OpCost(0, per_element * call.out_numel, NORMALIZATION)


@register_formula(aten._softmax, aten._log_softmax)
def softmax(call: OpCall) -> OpCost:
    return OpCost(0, FLOPS_PER_ELEMENT["softmax"] * call.out_numel, ACTIVATION)


def _window(call: OpCall, kernel_index: int) -> int:
    kernel = call.arg(kernel_index, "kernel_size")
    kernel = [kernel] if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * (call.out.dim() - 2)
    return math.prod(kernel)


@register_formula(aten.max_pool2d_with_indices, aten.max_pool2d, aten.max_pool1d, aten.max_pool3d_with_indices)
def max_pool(call: OpCall) -> OpCost:
    # k·k − 1 comparisons per output element
    return OpCost(0, (_window(call, 1) - 1) * call.out_numel, POOLING)


@register_formula(aten.avg_pool2d, aten.avg_pool1d, aten.avg_pool3d)
def avg_pool(call: OpCall) -> OpCost:
    # k·k − 1 additions and one division per output element
    return OpCost(0, _window(call, 1) * call.out_numel, POOLING)


@register_formula(aten._adaptive_avg_pool2d, aten.adaptive_avg_pool2d)
def adaptive_avg_pool(call: OpCall) -> OpCost:
    # Windows cover the input (overlapping when sizes do not divide): count
    # each input element once plus one division per output element.
    return OpCost(0, call.args[0].numel() + call.out_numel, POOLING)


@register_formula(aten.sum, aten.amax, aten.amin)
def sum_reduction(call: OpCall) -> OpCost:
    # a max or min is one comparison per input element, as a sum is one addition
    # one addition per input element
    return OpCost(0, call.args[0].numel(), REDUCTION)


@register_formula(aten.mean)
def mean_reduction(call: OpCall) -> OpCost:
    # one addition per input element, one division per output element
    return OpCost(0, call.args[0].numel() + call.out_numel, REDUCTION)


@register_formula(
    aten.cat,
    aten.stack,
    aten.clone,
    aten.copy_,
    aten._to_copy,
    aten.contiguous,
    aten.constant_pad_nd,
    aten.index_select,
    aten.index,
    aten.gather,
    aten.repeat,
    aten.roll,
    aten.flip,
    aten.upsample_nearest2d,
    aten.zeros_like,
    aten.ones_like,
    aten.fill_,
    aten.zero_,
)
def data_movement(call: OpCall) -> OpCost:
    """Copies and layout changes: no arithmetic; their memory traffic is the cost."""
    return OpCost(0, 0, DATA_MOVEMENT)


@register_formula(aten.upsample_bilinear2d, aten._upsample_bilinear2d_aa)
def upsample_bilinear(call: OpCall) -> OpCost:
    # 4 neighbours: 4 multiplies and 3 adds per output element
    return OpCost(0, 7 * call.out_numel, DATA_MOVEMENT)


# ---------------------------------------------------------------------------
# Vector norms, and im2col: AdderNet's adder layer is -‖patch − filter‖₁ of
# unfolded patches (unfold → broadcast sub → L1 norm → neg), so it costs, per
# output element, Cin·k·k subtractions + Cin·k·k abs + (Cin·k·k − 1) additions
# + 1 negation, and no MACs.

register_formula(aten.im2col)(data_movement)


def vector_norm_flops(order: float, numel: int, out_numel: int) -> int:
    """FLOPs of ``out_numel`` p-norms over ``numel`` elements in all: one
    per-element op (|x| for p = 1 and ±inf, x² for p = 2, x ≠ 0 for p = 0,
    |x| and its power otherwise), n − 1 additions (comparisons for ±inf) per
    norm of n elements, and one root per norm for p ∉ {0, 1, ±inf}."""
    order = float(order)
    per_element = 2 if order not in (0.0, 1.0, 2.0, math.inf, -math.inf) else 1
    roots = out_numel if order not in (0.0, 1.0, math.inf, -math.inf) else 0
    return per_element * numel + (numel - out_numel) + roots


@register_formula(aten.linalg_vector_norm)
def vector_norm(call: OpCall) -> OpCost:
    order = call.arg(1, "ord", 2)
    return OpCost(0, vector_norm_flops(order, call.args[0].numel(), call.out_numel), REDUCTION)
