"""What an analysis produces: per-op and per-layer records and the model totals.

All quantities are integers in base units (MACs, FLOPs, bytes); scaling is for
display only (``lwprof.core.units``). Layer rows are *exclusive*: an op's cost goes
to the innermost module that ran it, so summing rows never double counts, and
container totals (``--depth``) are derived sums.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpRecord:
    """One executed op, in execution order."""

    index: int
    op: str
    layer: str
    module_path: str
    op_class: str
    macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    supported: bool
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    # Deployment view: the op's traffic once fused (0 when it disappears into
    # its producer) and the index of the op that absorbed it.
    memory_bytes_fused: int = 0
    fused_into: int | None = None

    @property
    def memory_bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass
class LayerCost:
    """One row of the per-layer table: a leaf module, or the functional ops of a
    container (``features.3 (add)``)."""

    name: str
    module_path: str
    module_type: str
    op_class: str = ""
    calls: int = 0
    params: int = 0
    macs: int = 0
    flops: int = 0
    memory_bytes: int = 0
    memory_bytes_fused: int = 0
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    ops: Counter = field(default_factory=Counter)
    unsupported_ops: Counter = field(default_factory=Counter)

    @property
    def arithmetic_intensity(self) -> float | None:
        """FLOPs per byte of memory access (eager); None when nothing is moved."""
        return self.flops / self.memory_bytes if self.memory_bytes else None


@dataclass
class ModelProfile:
    model: str
    input_shape: tuple[int, ...]
    dtype: str
    params: int
    layers: list[LayerCost]
    ops: list[OpRecord]
    unsupported_ops: dict[str, int]

    @property
    def totals(self) -> dict[str, Any]:
        macs = sum(layer.macs for layer in self.layers)
        flops = sum(layer.flops for layer in self.layers)
        memory = sum(layer.memory_bytes for layer in self.layers)
        fused = sum(layer.memory_bytes_fused for layer in self.layers)
        return {
            "params": self.params,
            "macs": macs,
            "flops": flops,
            "memory_bytes": memory,
            "memory_bytes_fused": fused,
            "arithmetic_intensity": flops / memory if memory else None,
            "arithmetic_intensity_fused": flops / fused if fused else None,
        }

    def layer_rows(self) -> list[dict[str, Any]]:
        """Flat per-layer records with unit-carrying keys (the CSV columns)."""
        return [
            {
                "layer": layer.name,
                "module_type": layer.module_type,
                "op_class": layer.op_class,
                "calls": layer.calls,
                "params": layer.params,
                "macs": layer.macs,
                "flops": layer.flops,
                "memory_bytes": layer.memory_bytes,
                "memory_bytes_fused": layer.memory_bytes_fused,
                "arithmetic_intensity_flops_per_byte": layer.arithmetic_intensity,
                "input_shape": "x".join(map(str, layer.input_shape)),
                "output_shape": "x".join(map(str, layer.output_shape)),
                "ops": " ".join(f"{op}x{count}" if count > 1 else op for op, count in layer.ops.items()),
                "unsupported_ops": " ".join(layer.unsupported_ops),
            }
            for layer in self.layers
        ]

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.layer_rows())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "totals": self.totals,
            "unsupported_ops": dict(self.unsupported_ops),
            "layers": self.layer_rows(),
        }
