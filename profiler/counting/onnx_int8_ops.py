"""Formulas for the int8 graph ONNX Runtime runs: QDQ conversions and its integer kernels.

A statically quantized model reaches the runtime as QuantizeLinear /
DequantizeLinear pairs around float ops; ONNX Runtime's optimizer fuses each
pattern it has a kernel for into one integer op (``QLinearConv``,
``com.microsoft.QLinearAdd``, ``QGemm``, ...). Counted on that graph
(``analyze_onnx(path, optimized=True)``), an int8 kernel has the MACs of the
float op it replaced plus the requantization of its output (``quantize``
FLOPs per output element), and its memory access is what the node really
reads and writes: 1-byte activations and weights, the per-channel scales
(fp32) and zero points (1 byte), and int32 biases; per-tensor scales and
zero points are rank-0 constants, kernel arguments as everywhere else. A
QuantizeLinear / DequantizeLinear / Cast is a ``conversion``: the
quantization tax, in FLOPs and bytes.

The conventions are :mod:`lwprof.counting.ops`'s; the readers of the nodes
are :mod:`lwprof.counting.onnx_ops`'s, registered the same way.
"""

from __future__ import annotations

import math

from lwprof.counting.ops import ACTIVATION, CONVERSION, DATA_MOVEMENT, ELEMENTWISE, FLOPS_PER_ELEMENT, MATMUL, POOLING, OpCost, conv_class
from lwprof.counting.onnx_ops import MICROSOFT, OnnxCall, register_onnx_formula

_REQUANTIZE = FLOPS_PER_ELEMENT["quantize"]


@register_onnx_formula("QuantizeLinear", "DynamicQuantizeLinear")
def quantize_linear(call: OnnxCall) -> OpCost:
    return OpCost(0, FLOPS_PER_ELEMENT["quantize"] * call.out_numel, CONVERSION)


@register_onnx_formula("QuantizeLinear", "DequantizeLinear", domain=MICROSOFT)
@register_onnx_formula("DequantizeLinear")
def dequantize_linear(call: OnnxCall) -> OpCost:
    kind = "quantize" if call.op_type == "QuantizeLinear" else "dequantize"
    return OpCost(0, FLOPS_PER_ELEMENT[kind] * call.out_numel, CONVERSION)


@register_onnx_formula("QLinearConv")
@register_onnx_formula("QLinearConv", domain=MICROSOFT)
def qlinear_conv(call: OnnxCall) -> OpCost:
    """Inputs x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
    y_zero_point, B; ORT's ``com.microsoft`` one may be channels-last."""
    x, weight = call.input_shape(0), call.input_shape(3)
    groups = int(call.attr("group", 1))
    channels = x[-1] if call.attr("channels_last", 0) else x[1]
    kernel_numel = math.prod(weight[2:])
    macs = call.out_numel * math.prod(weight[1:])  # N·Hout·Wout·Cout·(Cin/groups)·Kh·Kw
    bias_flops = call.out_numel if call.has_input(8) else 0
    return OpCost(macs, 2 * macs + bias_flops + _REQUANTIZE * call.out_numel,
                  conv_class(channels, weight[0], groups, kernel_numel))


@register_onnx_formula("ConvInteger")
def conv_integer(call: OnnxCall) -> OpCost:
    weight = call.input_shape(1)
    macs = call.out_numel * math.prod(weight[1:])
    return OpCost(macs, 2 * macs, conv_class(call.input_shape(0)[1], weight[0], int(call.attr("group", 1)), math.prod(weight[2:])))


@register_onnx_formula("QLinearMatMul")
def qlinear_matmul(call: OnnxCall) -> OpCost:
    a = call.input_shape(0)
    macs = call.out_numel * (a[-1] if len(a) > 1 else a[0])
    return OpCost(macs, 2 * macs + _REQUANTIZE * call.out_numel, MATMUL)


@register_onnx_formula("MatMulInteger")
@register_onnx_formula("MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain=MICROSOFT)
def matmul_integer(call: OnnxCall) -> OpCost:
    a = call.input_shape(0)
    macs = call.out_numel * (a[-1] if len(a) > 1 else a[0])
    return OpCost(macs, 2 * macs, MATMUL)


@register_onnx_formula("QGemm", domain=MICROSOFT)
def qgemm(call: OnnxCall) -> OpCost:
    """Inputs A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale, y_zero_point."""
    a = call.input_shape(0)
    inner = a[0] if call.attr("transA", 0) else a[1]
    macs = call.out_numel * inner
    bias_flops = call.out_numel if call.has_input(6) else 0
    requantize = _REQUANTIZE * call.out_numel if call.has_input(7) else 0  # no y_scale: a float output
    return OpCost(macs, 2 * macs + bias_flops + requantize, MATMUL)


def _requantized(kind: str, op_class: str):
    def formula(call: OnnxCall) -> OpCost:
        return OpCost(0, (FLOPS_PER_ELEMENT[kind] + _REQUANTIZE) * call.out_numel, op_class)

    formula.__name__ = f"qlinear_{kind}"
    formula.__doc__ = f"{FLOPS_PER_ELEMENT[kind]} FLOP(s) per output element, then its requantization."
    return formula


register_onnx_formula("QLinearAdd", "QLinearMul", "QLinearWhere", domain=MICROSOFT)(_requantized("binary", ELEMENTWISE))
register_onnx_formula("QLinearSigmoid", domain=MICROSOFT)(_requantized("sigmoid", ACTIVATION))
register_onnx_formula("QLinearLeakyRelu", domain=MICROSOFT)(_requantized("leaky_relu", ACTIVATION))
register_onnx_formula("QLinearSoftmax", domain=MICROSOFT)(_requantized("softmax", ACTIVATION))


@register_onnx_formula("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearReduceMean", domain=MICROSOFT)
def qlinear_pool(call: OnnxCall) -> OpCost:
    """One addition per input element and a division per output, then requantization."""
    return OpCost(0, call.input_numel(0) + (1 + _REQUANTIZE) * call.out_numel, POOLING)


@register_onnx_formula("QLinearConcat", domain=MICROSOFT)
def qlinear_concat(call: OnnxCall) -> OpCost:
    """A copy that requantizes each input to the output's scale."""
    return OpCost(0, _REQUANTIZE * call.out_numel, DATA_MOVEMENT)
