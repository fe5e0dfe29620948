"""Per-op records summed into per-layer rows, for the aten tracer and for ONNX graphs alike.

A layer row is exclusive: each op's cost goes to the one row its record
names. A row's op class is that of its costliest op class, by FLOPs first and
bytes second: a conv row with its bias add is a conv row.
"""

from __future__ import annotations

from typing import Callable

from lwprof.core.records import LayerCost, OpRecord

__all__ = ["aggregate_layers", "is_leaf_row"]


def is_leaf_row(rec: OpRecord) -> bool:
    """A leaf module's row carries the module's path; a container's functional
    ops get ``path (op)`` rows."""
    return rec.layer == (rec.module_path or "<root>")


def aggregate_layers(
    records: list[OpRecord],
    module_type: Callable[[OpRecord], str],
    on_new_row: Callable[[OpRecord, LayerCost], None] | None = None,
    on_record: Callable[[OpRecord, LayerCost], None] | None = None,
) -> list[LayerCost]:
    """Rows in order of first appearance. ``on_new_row`` fills what only the
    caller knows about a row (its parameters, its call count);
    ``on_record`` runs for every record of a row."""
    layers: dict[str, LayerCost] = {}
    class_weight: dict[str, dict[str, tuple[int, int]]] = {}
    for rec in records:
        layer = layers.get(rec.layer)
        if layer is None:
            layer = LayerCost(
                name=rec.layer,
                module_path=rec.module_path,
                module_type=module_type(rec),
                input_shape=rec.input_shapes[0] if rec.input_shapes else (),
                output_shape=rec.output_shapes[0] if rec.output_shapes else (),
            )
            layers[rec.layer] = layer
            if on_new_row is not None:
                on_new_row(rec, layer)
        if on_record is not None:
            on_record(rec, layer)
        layer.ops[rec.op] += 1
        if not rec.supported:
            layer.unsupported_ops[rec.op] += 1
        layer.macs += rec.macs
        layer.flops += rec.flops
        layer.memory_bytes += rec.memory_bytes
        layer.memory_bytes_fused += rec.memory_bytes_fused
        layer.output_shape = rec.output_shapes[0] if rec.output_shapes else layer.output_shape
        weights = class_weight.setdefault(rec.layer, {})
        flops, moved = weights.get(rec.op_class, (0, 0))
        weights[rec.op_class] = (flops + rec.flops, moved + rec.memory_bytes)
    for layer in layers.values():
        layer.op_class = max(class_weight[layer.name].items(), key=lambda item: item[1])[0]
    return list(layers.values())
