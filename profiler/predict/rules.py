"""Fusion rules learned from the runtime itself.

Whether a runtime runs a convolution's BatchNorm, activation or residual add
inside the convolution's kernel is not a fixed list: ONNX Runtime's graph
optimizer fuses what its build knows (``FusedConv``, the NCHWc kernels'
``activation`` and ``Sum``), OpenVINO's runtime graph names what it fused,
inductor's provenance says which nodes a generated kernel computes, and eager
PyTorch fuses nothing. Each probe here is a one-kernel candidate (a
convolution or linear layer followed by one op) run on the backend with its
per-layer timing on: every backend's layer rows already say which layers a
runtime kernel covers, taken from the runtime's own optimized graph. A
follower fuses when its layer is covered by the head's row (or by no row:
the runtime removed it), and stays a kernel of its own otherwise. A backend without layer rows falls back to nn-Meter's pair test:
the pair timed against its two halves timed alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lwprof.predict.kernels import FusionRules

if TYPE_CHECKING:
    from lwprof.runtime.settings import RunSettings


@dataclass(frozen=True)
class Probe:
    """A head (``conv``: a pointwise convolution, ``linear``) and the op after
    it; ``ops``: the aten ops the follower stands for (in place or not)."""

    name: str
    head: str
    follower: str
    ops: tuple[str, ...]


PROBES = (
    Probe("conv+batch_norm", "conv", "batch_norm", ("aten.native_batch_norm",)),
    Probe("conv+relu", "conv", "relu", ("aten.relu", "aten.relu_")),
    Probe("conv+relu6", "conv", "relu6", ("aten.hardtanh", "aten.hardtanh_")),
    Probe("conv+hardswish", "conv", "hardswish", ("aten.hardswish", "aten.hardswish_")),
    Probe("conv+hardsigmoid", "conv", "hardsigmoid", ("aten.hardsigmoid", "aten.hardsigmoid_")),
    Probe("conv+sigmoid", "conv", "sigmoid", ("aten.sigmoid", "aten.sigmoid_")),
    Probe("conv+silu", "conv", "silu", ("aten.silu", "aten.silu_")),
    Probe("conv+add", "conv", "add", ("aten.add", "aten.add_")),
    Probe("linear+relu", "linear", "relu", ("aten.relu", "aten.relu_")),
    Probe("linear+hardsigmoid", "linear", "hardsigmoid", ("aten.hardsigmoid", "aten.hardsigmoid_")),
    Probe("linear+hardswish", "linear", "hardswish", ("aten.hardswish", "aten.hardswish_")),
    Probe("linear+gelu", "linear", "gelu", ("aten.gelu", "aten.gelu_")),
)
# The analytic op classes a probe's head stands for: a rule learned on a
# pointwise convolution holds for every convolution kernel.
HEAD_CLASSES = {"conv": ("conv", "conv_pointwise", "conv_depthwise"), "linear": ("matmul",)}
CHANNELS, SIZE, TOKENS = 64, 28, 64


def probe_module(probe: Probe) -> tuple[Any, tuple[int, ...]]:
    """The probe as a module whose head is ``head`` and follower ``follower``
    (layer names ``head`` and ``follower``), and its input shape."""
    import torch
    from torch import nn

    followers = {"batch_norm": lambda: nn.BatchNorm2d(CHANNELS), "relu": nn.ReLU, "relu6": nn.ReLU6,
                 "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid, "silu": nn.SiLU,
                 "gelu": nn.GELU, "add": nn.Identity}

    class Pair(nn.Module):
        """``before`` -> ``head`` -> ``follower``: the layer before keeps the pair
        inside a network, as a runtime sees it there (ONNX Runtime fuses a
        residual add into an NCHWc convolution only when the shortcut is in
        that layout already, not when it is the graph's input)."""

        def __init__(self) -> None:
            super().__init__()
            self.before = nn.Conv2d(CHANNELS, CHANNELS, 1) if probe.head == "conv" else nn.Linear(CHANNELS, CHANNELS)
            self.head = nn.Conv2d(CHANNELS, CHANNELS, 1, bias=True) if probe.head == "conv" else nn.Linear(CHANNELS, CHANNELS)
            self.follower = followers[probe.follower]()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.before(x)
            y = self.head(x)
            return y + x if probe.follower == "add" else self.follower(y)

    shape = (1, CHANNELS, SIZE, SIZE) if probe.head == "conv" else (TOKENS, CHANNELS)
    return Pair().eval(), shape


def _follower_layer(module: Any, shape: tuple[int, ...], probe: Probe) -> str:
    from lwprof.counting.engine import profile_module

    profile = profile_module(module, shape)
    return next(op.layer for op in profile.ops if op.op in probe.ops)


def fuses_by_layer_rows(probe: Probe, backend: str, settings: "RunSettings") -> tuple[bool, dict[str, Any]] | None:
    """Whether the runtime fuses the probe's follower into its head, read
    from the backend's layer rows; None when the backend has none."""
    from lwprof.predict.calibrate import prepared

    module, shape = probe_module(probe)
    follower = _follower_layer(module, shape, probe)
    with prepared(module, shape, backend, settings, f"lwprof-probe-{probe.name}") as session:
        try:
            rows = session.layer_timings(1)
        except NotImplementedError:
            return None
    covers = [list(row.layers) for row in rows]
    # Kept apart only when the head has a row without the follower and the follower one without the head.
    # A row of one alone may be a layout conversion placed there (ORT's ReorderOutput after an NCHWc
    # convolution), and a runtime names a fused node after either layer (OpenVINO after the BatchNorm whose
    # output it computes), so one side alone says nothing.
    head_alone = any("head" in layers and follower not in layers for layers in covers)
    follower_alone = any(follower in layers and "head" not in layers for layers in covers)
    kept_apart = head_alone and follower_alone
    return not kept_apart, {"how": "layer rows", "rows": covers, "ops": [list(row.ops) for row in rows]}


def fuses_by_pair_timing(probe: Probe, backend: str, settings: "RunSettings", overhead: float) -> tuple[bool, dict[str, Any]]:
    """nn-Meter's test: fused when the pair takes less than its head alone
    plus half of what the follower alone adds."""
    from torch import nn

    from lwprof.predict.calibrate import time_module

    module, shape = probe_module(probe)
    pair = time_module(module, shape, backend, settings, f"lwprof-probe-{probe.name}")
    head = time_module(module.head, shape, backend, settings, f"lwprof-probe-{probe.head}")
    alone = module.follower if probe.follower != "add" else _doubling()
    follower = time_module(alone, shape, backend, settings, f"lwprof-probe-{probe.follower}")
    fused = pair < head + 0.5 * max(follower - overhead, 0.0)
    return fused, {"how": "pair timing", "pair_s": pair, "head_s": head, "follower_s": follower}


def _doubling() -> Any:
    """``x + x``: a residual add's work on its own."""
    import torch
    from torch import nn

    class Add(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + x

    return Add().eval()


def learn_rules(backend: str, settings: "RunSettings", overhead: float,
                progress: Callable[[str], None] | None = None) -> FusionRules:
    """Probe every (head, follower) pair on the backend: the ops it keeps apart."""
    never: list[tuple[str, str]] = []
    evidence: dict[str, Any] = {}
    for probe in PROBES:
        found = fuses_by_layer_rows(probe, backend, settings)
        fused, seen = found if found is not None else fuses_by_pair_timing(probe, backend, settings, overhead)
        evidence[probe.name] = {"fused": fused, **seen}
        if not fused:
            never += [(head_class, op) for head_class in HEAD_CLASSES[probe.head] for op in probe.ops]
        if progress is not None:
            progress(f"{probe.name}: {'fused' if fused else 'kept apart'} ({seen['how']})")
    return FusionRules(True, tuple(never), evidence)
