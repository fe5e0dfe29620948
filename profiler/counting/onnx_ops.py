"""Per-op cost formulas for ONNX op types: the ONNX side of the one table.

The conventions are those of :mod:`lwprof.counting.ops` and are written there once:
MACs are multiply-accumulates of convolutions and matrix products only,
FLOPs = 2·MACs + ``FLOPS_PER_ELEMENT`` for everything else, and the op
classes are the same. A formula here only says how to read an ONNX node
(attributes, input and output shapes) to apply them. Memory access is not a
formula's business: :mod:`lwprof.counting.onnx_count` counts every node's bytes read
(inputs, initializers included) and written (outputs).

Where ONNX differs from eager PyTorch, the ONNX meaning wins, because that is
what a runtime executes:

- ``Transpose``, ``Split``, ``Slice``, ``Gather``, ``Concat``, ``Pad``,
  ``Expand``, ``Tile``, ``Cast``: real copies (data movement, read + write),
  even where eager PyTorch used a free view (``permute``, ``chunk``).
- ``FREE_OPS`` (``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
  ``Identity``, ``Dropout`` at inference, ``Shape``, ``Size``, ``Constant``)
  only re-describe memory or produce metadata: ONNX Runtime aliases their
  output to their input. Zero FLOPs and zero bytes, like eager views.
- ``Clip`` is costed as ``hardtanh`` (2 FLOPs, an activation): ReLU6 is how
  lightweight networks reach it.

Any other op type without a formula is *unsupported*: counted, reported by
name, its memory traffic still included, never silently zero.

ONNX Runtime's CPU graph optimizer (``ORT_ENABLE_EXTENDED``) writes ops of
the ``com.microsoft`` domain (``FusedConv``, ``FusedGemm``, ``FusedMatMul``,
``QuickGelu``, ``SkipLayerNormalization``, ...); they are registered here
with their domain and named ``com.microsoft.FusedConv`` in records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from lwprof.counting.ops import (
    ACTIVATION,
    DATA_MOVEMENT,
    ELEMENTWISE,
    FLOPS_PER_ELEMENT,
    MATMUL,
    NORMALIZATION,
    POOLING,
    REDUCTION,
    OpCost,
    conv_class,
    vector_norm_flops,
)

MICROSOFT = "com.microsoft"
_DEFAULT_DOMAINS = ("", "ai.onnx")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OnnxCall:
    """What a formula may look at: one node's type, attributes and tensor shapes.

    ``input_shapes`` keeps the node's input positions; an absent optional
    input (an empty name in ONNX) is ``None``.
    """

    op_type: str
    domain: str
    attributes: dict[str, Any]
    input_shapes: tuple[Shape | None, ...]
    output_shapes: tuple[Shape, ...]

    @property
    def out_shape(self) -> Shape:
        return self.output_shapes[0]

    @property
    def out_numel(self) -> int:
        return math.prod(self.output_shapes[0])

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def has_input(self, index: int) -> bool:
        return len(self.input_shapes) > index and self.input_shapes[index] is not None

    def input_shape(self, index: int) -> Shape:
        shape = self.input_shapes[index] if len(self.input_shapes) > index else None
        if shape is None:
            raise ValueError(f"{self.op_type} has no input {index}")
        return shape

    def input_numel(self, index: int) -> int:
        return math.prod(self.input_shape(index))


OnnxFormula = Callable[[OnnxCall], OpCost]

_FORMULAS: dict[str, OnnxFormula] = {}


def onnx_op_name(op_type: str, domain: str = "") -> str:
    """'Conv' for the default ONNX domain, 'com.microsoft.FusedConv' otherwise."""
    return op_type if domain in _DEFAULT_DOMAINS else f"{domain}.{op_type}"


def register_onnx_formula(*op_types: str, domain: str = "") -> Callable[[OnnxFormula], OnnxFormula]:
    """Register ``formula`` for ONNX op types of one domain (the default ONNX domain unless given)."""

    def decorator(formula: OnnxFormula) -> OnnxFormula:
        for op_type in op_types:
            name = onnx_op_name(op_type, domain)
            if name in _FORMULAS:
                raise ValueError(f"a cost formula for ONNX op {name} is already registered")
            if name in FREE_OPS:
                raise ValueError(f"ONNX op {name} is in FREE_OPS: it costs nothing and takes no formula")
            _FORMULAS[name] = formula
        return formula

    return decorator


def onnx_formula_for(op_type: str, domain: str = "") -> OnnxFormula | None:
    return _FORMULAS.get(onnx_op_name(op_type, domain))


def registered_onnx_ops() -> list[str]:
    """Names of every ONNX op with a formula, for documentation and tests."""
    return sorted(_FORMULAS)


# Ops that move no data and compute nothing a runtime executes per inference.
FREE_OPS = frozenset(
    {
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Shape",
        "Size",
        "Constant",
    }
)


def is_free_op(op_type: str, domain: str = "") -> bool:
    return onnx_op_name(op_type, domain) in FREE_OPS


# Inputs that configure an op rather than carry data (bounds, shapes, axes,
# slice ends, scales): kernel arguments, as the Python scalars and lists they
# were in eager PyTorch. They are not counted as memory traffic or as weights.
ARGUMENT_INPUTS: dict[str, frozenset[int]] = {
    "Clip": frozenset({1, 2}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Split": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "ReduceMean": frozenset({1}),
    "ReduceSum": frozenset({1}),
    "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}),
    "ReduceL1": frozenset({1}),
    "ReduceL2": frozenset({1}),
    "TopK": frozenset({1}),
    "CumSum": frozenset({1}),
    "ConstantOfShape": frozenset({0}),
    "Range": frozenset({0, 1, 2}),
}


def is_argument_input(op_name: str, position: int) -> bool:
    return position in ARGUMENT_INPUTS.get(op_name, ())


# ---------------------------------------------------------------------------
# Convolutions and matrix products: the only ops with MACs.


def _activation_flops(call: OnnxCall) -> int:
    """FLOPs of the activation a fused ORT op (FusedConv, FusedGemm) applies to its output."""
    activation = call.attr("activation", b"")
    activation = activation.decode() if isinstance(activation, bytes) else str(activation)
    kind = _FUSED_ACTIVATIONS.get(activation)
    if kind is None:
        return 0
    return FLOPS_PER_ELEMENT[kind] * call.out_numel


_FUSED_ACTIVATIONS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "Clip": "hardtanh",
    "HardSigmoid": "hardsigmoid",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
}


@register_onnx_formula("Conv")
def conv(call: OnnxCall) -> OpCost:
    x, weight = call.input_shape(0), call.input_shape(1)
    groups = int(call.attr("group", 1))
    kernel_numel = math.prod(weight[2:])
    # N·Hout·Wout·Cout·(Cin/groups)·Kh·Kw; the weight is (Cout, Cin/groups, Kh, Kw)
    macs = call.out_numel * math.prod(weight[1:])
    bias_flops = call.out_numel if call.has_input(2) else 0
    return OpCost(macs, 2 * macs + bias_flops, conv_class(x[1], weight[0], groups, kernel_numel))


@register_onnx_formula("FusedConv", domain=MICROSOFT)
def fused_conv(call: OnnxCall) -> OpCost:
    """ORT's Conv + activation (+ an optional summed input Z, a fused residual add)."""
    cost = conv(call)
    sum_flops = call.out_numel * FLOPS_PER_ELEMENT["binary"] if call.has_input(3) else 0
    return OpCost(cost.macs, cost.flops + _activation_flops(call) + sum_flops, cost.op_class)


@register_onnx_formula("ConvTranspose")
def conv_transpose(call: OnnxCall) -> OpCost:
    x, weight = call.input_shape(0), call.input_shape(1)
    groups = int(call.attr("group", 1))
    kernel_numel = math.prod(weight[2:])
    # Every input element scatters into Cout/groups channels over the kernel;
    # the weight is (Cin, Cout/groups, Kh, Kw).
    macs = math.prod(x) * weight[1] * kernel_numel
    bias_flops = call.out_numel if call.has_input(2) else 0
    return OpCost(macs, 2 * macs + bias_flops, conv_class(x[1], weight[1] * groups, groups, kernel_numel))


@register_onnx_formula("Gemm")
def gemm(call: OnnxCall) -> OpCost:
    a = call.input_shape(0)
    inner = a[0] if call.attr("transA", 0) else a[1]
    # M·N outputs, each a K-long dot product; C (the bias) adds one FLOP per output
    macs = call.out_numel * inner
    bias_flops = call.out_numel if call.has_input(2) else 0
    return OpCost(macs, 2 * macs + bias_flops, MATMUL)


@register_onnx_formula("FusedGemm", domain=MICROSOFT)
def fused_gemm(call: OnnxCall) -> OpCost:
    cost = gemm(call)
    return OpCost(cost.macs, cost.flops + _activation_flops(call), MATMUL)


def _matmul_inner(call: OnnxCall, transposed: bool = False) -> int:
    a = call.input_shape(0)
    if len(a) == 1:
        return a[0]
    return a[-2] if transposed else a[-1]


@register_onnx_formula("MatMul")
def matmul(call: OnnxCall) -> OpCost:
    # batch·M·N outputs (broadcast batch included), each a K-long dot product
    macs = call.out_numel * _matmul_inner(call)
    return OpCost(macs, 2 * macs, MATMUL)


@register_onnx_formula("FusedMatMul", domain=MICROSOFT)
def fused_matmul(call: OnnxCall) -> OpCost:
    """ORT's MatMul with a folded scalar scale (alpha) and optional transposes."""
    if call.attr("transBatchA", 0) or call.attr("transBatchB", 0):
        # Batch-transposed A: K is what is left of A once the output rows are taken.
        rows = call.out_numel // call.out_shape[-1]
        inner = math.prod(call.input_shape(0)) // rows
    else:
        inner = _matmul_inner(call, transposed=bool(call.attr("transA", 0)))
    macs = call.out_numel * inner
    scale_flops = call.out_numel if float(call.attr("alpha", 1.0)) != 1.0 else 0
    return OpCost(macs, 2 * macs + scale_flops, MATMUL)


# ---------------------------------------------------------------------------
# Everything else: FLOPs per output element, from the one table in lwprof.counting.ops.


def _per_element(kind: str, op_class: str) -> OnnxFormula:
    per_element = FLOPS_PER_ELEMENT[kind]

    def formula(call: OnnxCall) -> OpCost:
        return OpCost(0, per_element * call.out_numel, op_class)

    formula.__name__ = kind
    formula.__doc__ = f"{per_element} FLOP(s) per output element."
    return formula


register_onnx_formula("Relu")(_per_element("relu", ACTIVATION))
register_onnx_formula("LeakyRelu")(_per_element("leaky_relu", ACTIVATION))
register_onnx_formula("PRelu")(_per_element("leaky_relu", ACTIVATION))
register_onnx_formula("Clip")(_per_element("hardtanh", ACTIVATION))
register_onnx_formula("HardSigmoid")(_per_element("hardsigmoid", ACTIVATION))
register_onnx_formula("HardSwish")(_per_element("hardswish", ACTIVATION))
register_onnx_formula("Sigmoid")(_per_element("sigmoid", ACTIVATION))
register_onnx_formula("Tanh")(_per_element("tanh", ACTIVATION))
register_onnx_formula("Elu")(_per_element("elu", ACTIVATION))
register_onnx_formula("Gelu")(_per_element("gelu", ACTIVATION))
register_onnx_formula("Gelu", "FastGelu", domain=MICROSOFT)(_per_element("gelu", ACTIVATION))
register_onnx_formula("Softmax", "LogSoftmax")(_per_element("softmax", ACTIVATION))
register_onnx_formula(
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Erf",
    "Where",
    "Equal",
    "Less",
    "Greater",
)(_per_element("binary", ELEMENTWISE))


@register_onnx_formula("QuickGelu", domain=MICROSOFT)
def quick_gelu(call: OnnxCall) -> OpCost:
    """x·sigmoid(alpha·x): ORT's fusion of SiLU (alpha = 1) and of the sigmoid GELU."""
    scale = 1 if float(call.attr("alpha", 1.0)) != 1.0 else 0
    return OpCost(0, (FLOPS_PER_ELEMENT["silu"] + scale) * call.out_numel, ACTIVATION)


@register_onnx_formula("BiasGelu", domain=MICROSOFT)
def bias_gelu(call: OnnxCall) -> OpCost:
    return OpCost(0, (FLOPS_PER_ELEMENT["gelu"] + FLOPS_PER_ELEMENT["binary"]) * call.out_numel, ACTIVATION)


@register_onnx_formula("BatchNormalization")
def batch_norm(call: OnnxCall) -> OpCost:
    return OpCost(0, FLOPS_PER_ELEMENT["batch_norm"] * call.out_numel, NORMALIZATION)


def _layer_norm_per_element(affine: bool) -> int:
    return FLOPS_PER_ELEMENT["layer_norm"] + (FLOPS_PER_ELEMENT["layer_norm_affine"] if affine else 0)


@register_onnx_formula("LayerNormalization", "GroupNormalization", "InstanceNormalization")
def layer_norm(call: OnnxCall) -> OpCost:
    # The scale input is required by all three, so they are always affine.
    return OpCost(0, _layer_norm_per_element(call.has_input(1)) * call.out_numel, NORMALIZATION)


@register_onnx_formula("SkipLayerNormalization", domain=MICROSOFT)
def skip_layer_norm(call: OnnxCall) -> OpCost:
    """ORT's residual add (input + skip [+ bias]) followed by an affine layer norm."""
    adds = 2 if call.has_input(4) else 1
    per_element = _layer_norm_per_element(True) + adds * FLOPS_PER_ELEMENT["binary"]
    return OpCost(0, per_element * call.out_numel, NORMALIZATION)


def _kernel_numel(call: OnnxCall) -> int:
    return math.prod(call.attr("kernel_shape", [1]))


@register_onnx_formula("MaxPool")
def max_pool(call: OnnxCall) -> OpCost:
    # k·k − 1 comparisons per output element
    return OpCost(0, (_kernel_numel(call) - 1) * call.out_numel, POOLING)


@register_onnx_formula("AveragePool")
def avg_pool(call: OnnxCall) -> OpCost:
    # k·k − 1 additions and one division per output element
    return OpCost(0, _kernel_numel(call) * call.out_numel, POOLING)


@register_onnx_formula("GlobalAveragePool")
def global_avg_pool(call: OnnxCall) -> OpCost:
    # one addition per input element, one division per output element
    return OpCost(0, call.input_numel(0) + call.out_numel, POOLING)


@register_onnx_formula("GlobalMaxPool")
def global_max_pool(call: OnnxCall) -> OpCost:
    # one comparison per input element
    return OpCost(0, call.input_numel(0), POOLING)


@register_onnx_formula("ReduceMean")
def reduce_mean(call: OnnxCall) -> OpCost:
    # one addition per input element, one division per output element
    return OpCost(0, call.input_numel(0) + call.out_numel, REDUCTION)


@register_onnx_formula("ReduceSum", "ReduceMax", "ReduceMin")
def reduce_sum(call: OnnxCall) -> OpCost:
    # one addition (or comparison) per input element
    return OpCost(0, call.input_numel(0), REDUCTION)


@register_onnx_formula("ReduceL1", "ReduceL2")
def reduce_norm(call: OnnxCall) -> OpCost:
    """L1/L2 norms, as aten ``linalg_vector_norm`` (AdderNet's adder layer ends in ReduceL1)."""
    order = 1 if call.op_type == "ReduceL1" else 2
    return OpCost(0, vector_norm_flops(order, call.input_numel(0), call.out_numel), REDUCTION)


@register_onnx_formula(
    "Concat",
    "Transpose",
    "Split",
    "Slice",
    "Gather",
    "GatherElements",
    "Expand",
    "Tile",
    "Pad",
    "Cast",
    "DepthToSpace",
    "SpaceToDepth",
    "ConstantOfShape",
)
def data_movement(call: OnnxCall) -> OpCost:
    """Copies and layout changes: no arithmetic; their memory traffic is the cost."""
    return OpCost(0, 0, DATA_MOVEMENT)


@register_onnx_formula("Resize", "Upsample")
def resize(call: OnnxCall) -> OpCost:
    mode = call.attr("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    # (bi)linear: 4 neighbours, 4 multiplies and 3 adds per output element
    return OpCost(0, 7 * call.out_numel if mode == "linear" else 0, DATA_MOVEMENT)
