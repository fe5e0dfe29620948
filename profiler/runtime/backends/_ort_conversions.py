"""Precision conversions in ONNX Runtime's optimized graph, and the layer each belongs to."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lwprof.runtime.precision import CONVERSION_OPS, QUANTIZE_OPS

if TYPE_CHECKING:
    import onnx


class Conversions:
    """Precision conversions and their rows: ``<layer> (quantize)``,
    ``(dequantize)``, ``(cast)``, and for a quantized graph the ``(transpose)``
    ORT inserts for its channels-last int8 kernels.

    A conversion's layer is the layer whose tensor it converts, found by
    following the tensor's name back through the reference graph's own
    conversions and the suffixes the quantizer and ORT add
    (``X_quantized``, ``X_DequantizeLinear_Output``, ``_token_N``) to the layer
    that produced ``X``; a converted weight (``ConvBnFusion_W_features.2.project.conv.weight_quantized``)
    belongs to the module that owns it; the graph input keeps its own name."""

    _SUFFIX = re.compile(r"(_token_\d+|_quantized|_QuantizeLinear_Output|_DequantizeLinear_Output|_QuantizeLinear"
                         r"|_DequantizeLinear|_zero_point|_scale)$")
    _PREFIXES = ("ConvBnFusion_W_", "ConvBnFusion_BN_B_")

    def __init__(self, reference: "onnx.ModelProto", ref_layers: list[str], producer: dict[str, int]):
        self.nodes = list(reference.graph.node)
        self.layers = ref_layers
        self.producer = producer
        self.inputs = {value.name for value in reference.graph.input}
        self.names = {node.name for node in self.nodes if node.name}
        self.quantized = any(node.op_type in QUANTIZE_OPS for node in self.nodes)

    def kind(self, node: Any) -> str | None:
        if node.op_type in QUANTIZE_OPS:
            return CONVERSION_OPS[node.op_type]
        inserted = not node.name or node.name not in self.names
        if node.op_type == "Cast" and inserted:
            return CONVERSION_OPS["Cast"]
        if node.op_type == "Transpose" and inserted and self.quantized:
            return "transpose"
        return None

    def layer(self, node: Any) -> str | None:
        for tensor in [*node.input[:1], *node.output[:1]]:
            layer = self._tensor_layer(tensor)
            if layer is not None:
                return layer
        return None

    def _tensor_layer(self, tensor: str) -> str | None:
        name, seen = tensor, set()
        while name and name not in seen:
            seen.add(name)
            index = self.producer.get(name)
            if index is not None:
                node = self.nodes[index]
                if node.op_type in CONVERSION_OPS and node.input:
                    name = node.input[0]
                    continue
                return self.layers[index]
            if name in self.inputs:
                return name
            stripped = self._SUFFIX.sub("", name)
            for prefix in self._PREFIXES:
                stripped = stripped.removeprefix(prefix)
            if stripped == name:
                break
            name = stripped
        if name.endswith((".weight", ".bias")):
            return name.rsplit(".", 1)[0]
        return None
