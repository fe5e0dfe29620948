"""A model as the kernels a runtime runs: the unit latency prediction works on.

A runtime does not run layers one by one: it folds a BatchNorm into the
convolution before it, runs an activation in that convolution's epilogue,
and so on. A *kernel* is one such group of ops, named after the layers it
covers, with the features its latency depends on. :func:`decompose` groups
an analytic profile's ops by a set of fusion rules (:class:`FusionRules`);
the default rules are the analytic engine's deployment view (``fused_into``
on every op, :mod:`lwprof.counting.fusion`), and a calibration carries the
rules it learned from its runtime.

Each kernel type is one registered feature function (:func:`kernel_type`),
so a new type is one function; an op class without one is the ``other``
type, which a calibration that never saw it flags instead of predicting.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from lwprof.core.errors import LwprofError
from lwprof.core.records import ModelProfile, OpRecord

# Features every kernel has, in this order (a regressor's inputs).
FEATURES = ("flops", "memory_bytes", "output_elements", "in_channels", "out_channels", "kernel_area", "stride", "groups",
            "fused_ops")
OTHER = "other"


@dataclass(frozen=True)
class Kernel:
    """One kernel: its type, the analytic layers it covers (the first is the
    one its time is reported under), the ops it runs, and its features."""

    type: str
    layers: tuple[str, ...]
    ops: tuple[str, ...]
    features: dict[str, float] = field(hash=False)

    def vector(self) -> list[float]:
        return [float(self.features.get(name, 0.0)) for name in FEATURES]


@dataclass(frozen=True)
class FusionRules:
    """Which ops join the kernel before them. ``follow_engine``: as the
    analytic engine's deployment view fuses them (BatchNorm into the
    convolution, the activation and a residual add after it); ``never``:
    (head op class, op) pairs the runtime keeps apart even so, ``*`` for any
    head (learned from the runtime: eager PyTorch fuses nothing; an ONNX
    Runtime build runs a linear layer's ``HardSigmoid`` as a node of its
    own). ``evidence`` says how each rule was learned."""

    follow_engine: bool = True
    never: tuple[tuple[str, str], ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def keeps_apart(self, head_class: str, op: str) -> bool:
        return (head_class, op) in self.never or ("*", op) in self.never

    def to_dict(self) -> dict[str, Any]:
        return {"follow_engine": self.follow_engine, "never": [list(pair) for pair in self.never],
                "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionRules":
        never = tuple(("*", entry) if isinstance(entry, str) else (str(entry[0]), str(entry[1]))
                      for entry in data.get("never", ()))
        return cls(bool(data.get("follow_engine", True)), never, dict(data.get("evidence", {})))


# ---------------------------------------------------------------------------
# Kernel types: op class -> (type name, features of the head op)

_TYPES: dict[str, tuple[str, Callable[[OpRecord], dict[str, float]]]] = {}


def kernel_type(key: str, name: str | None = None) -> Callable:
    """Register the feature function of the kernels whose first op has op
    class ``key``, or is the op ``key`` (``aten.*``: an op whose cost differs
    from the rest of its class, as PReLU's from ReLU's, gets a type and a
    regressor of its own; the op wins over its class). The type is ``name``,
    default ``key``."""

    def decorator(features: Callable[[OpRecord], dict[str, float]]) -> Callable[[OpRecord], dict[str, float]]:
        if key in _TYPES:
            raise LwprofError(f"a kernel type for '{key}' is already registered ({_TYPES[key][0]})")
        _TYPES[key] = (name or key, features)
        return features

    return decorator


def kernel_types() -> list[str]:
    return sorted({name for name, _ in _TYPES.values()} | {"conv_group"})


def check_kernel_type(name: str) -> str:
    known = kernel_types()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LwprofError(f"unknown kernel type '{name}'{hint} (types: {', '.join(known)})")
    return name


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def _conv_features(op: OpRecord) -> dict[str, float]:
    x, weight = op.input_shapes[0], op.input_shapes[1]
    out = op.output_shapes[0]
    in_channels, out_channels = x[1], out[1]
    groups = in_channels // weight[1] if len(weight) > 1 and weight[1] else 1
    spatial_in, spatial_out = _elements(x[2:]), _elements(out[2:])
    stride = round(math.sqrt(spatial_in / spatial_out)) if spatial_out else 1
    return {"in_channels": in_channels, "out_channels": out_channels, "kernel_area": _elements(weight[2:]),
            "stride": max(stride, 1), "groups": groups}


for _conv_class in ("conv", "conv_depthwise", "conv_pointwise"):
    kernel_type(_conv_class)(_conv_features)


@kernel_type("matmul")
def _matmul_features(op: OpRecord) -> dict[str, float]:
    # addmm's first input is the bias: the activation is the first input of two or more dimensions.
    x = next((shape for shape in op.input_shapes if len(shape) >= 2), op.input_shapes[0] if op.input_shapes else ())
    out = op.output_shapes[0]
    return {"in_channels": x[-1] if x else 0, "out_channels": out[-1] if out else 0}


def _channel_features(op: OpRecord) -> dict[str, float]:
    x = op.input_shapes[0] if op.input_shapes else ()
    out = op.output_shapes[0] if op.output_shapes else ()
    channels = x[1] if len(x) > 1 else (x[0] if x else 0)
    spatial_in, spatial_out = _elements(x[2:]), _elements(out[2:])
    stride = round(math.sqrt(spatial_in / spatial_out)) if spatial_out and spatial_in else 1
    return {"in_channels": channels, "out_channels": out[1] if len(out) > 1 else channels, "stride": max(stride, 1)}


for _op_class in ("pooling", "reduction", "normalization", "activation", "elementwise", "data_movement", "conversion"):
    kernel_type(_op_class)(_channel_features)

# Ops that cost unlike the rest of their class on some runtime: ONNX Runtime's
# PRelu broadcasts its slope per element (ten times a ReLU's time on the zoo's
# ESPNet), a softmax or a layer norm reduces before it writes, and a batched
# matmul of attention has other shapes than a linear layer's.
kernel_type("aten._prelu_kernel", "prelu")(_channel_features)
kernel_type("aten._softmax", "softmax")(_channel_features)
kernel_type("aten.native_layer_norm", "layer_norm")(_channel_features)
kernel_type("aten.bmm", "batched_matmul")(_matmul_features)


# ---------------------------------------------------------------------------
# Decomposition


def decompose(profile: ModelProfile, rules: FusionRules | None = None) -> list[Kernel]:
    """The kernels of ``profile``, in execution order: an op the rules fuse
    joins the kernel of the op that absorbed it; every other counted op
    (views have no cost and no kernel) starts one."""
    rules = rules or FusionRules()
    groups: dict[int, list[OpRecord]] = {}
    order: list[int] = []
    for op in profile.ops:
        if op.op_class == "view":
            continue
        fused = (rules.follow_engine and op.fused_into is not None and op.fused_into in groups
                 and not rules.keeps_apart(groups[op.fused_into][0].op_class, op.op))
        if fused:
            groups[op.fused_into].append(op)
            continue
        groups[op.index] = [op]
        order.append(op.index)
    return [_kernel(groups[index]) for index in order]


def _kernel(ops: list[OpRecord]) -> Kernel:
    head = ops[0]
    registered = _TYPES.get(head.op) or _TYPES.get(head.op_class)
    name, features = registered if registered else (OTHER, _channel_features)
    values = {key: float(value) for key, value in features(head).items()}
    if name == "conv" and values.get("groups", 1) > 1:
        name = "conv_group"
    values.update(
        flops=float(sum(op.flops for op in ops)),
        # What the kernel moves once fused (the engine's fused figure: a folded BatchNorm
        # moves nothing, a fused residual add reads its shortcut). A head the engine would have fused
        # into the op before it, but which this runtime runs as a kernel of its own (eager PyTorch's
        # BatchNorm), reads and writes its tensors as in eager mode.
        memory_bytes=float(sum(op.memory_bytes if op is head and op.fused_into is not None else op.memory_bytes_fused
                               for op in ops)),
        output_elements=float(_elements(ops[-1].output_shapes[0]) if ops[-1].output_shapes else 0),
        fused_ops=float(len(ops) - 1),
    )
    for key in FEATURES:
        values.setdefault(key, 1.0 if key in ("kernel_area", "stride", "groups") else 0.0)
    layers = tuple(dict.fromkeys(op.layer for op in ops))
    return Kernel(name, layers, tuple(op.op for op in ops), values)
