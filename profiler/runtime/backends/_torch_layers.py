"""Per-layer latency of a PyTorch model, under the analytic table's layer names.

Method: the same TorchDispatchMode and module stack the counting engine uses
(:mod:`lwprof.counting.engine`), with a clock around each aten op's kernel. Every op's
time goes to the row the engine gives its cost to (the innermost module, or
``path (op)`` for a container's functional ops), so time and cost join
exactly, including the residual adds, concats and shuffles that module hooks
would leave in no row. View and allocation ops are not timed: they launch no
kernel, and their cost is metadata the end-to-end figure still contains.

Why this method: module hooks can only time whole modules (a container's own
``add`` disappears into its parent), and torch.profiler attributes ops to
modules only for TorchScript. The timed region here is the kernel alone; the
mode's Python work happens between ops, so it lengthens the pass (reported as
overhead by the caller) but not the per-op figures, apart from colder caches.
On CUDA, each op is bracketed by CUDA events and the events are read after one
synchronize at the end of the pass, so kernels stay asynchronous.
"""

from __future__ import annotations

import time
from typing import Any

from lwprof.core.timing import LayerTiming


def layer_timings(module: Any, x: Any, runs: int, device: str = "cpu", warmup: int = 1) -> list[LayerTiming]:
    """Time every op of ``runs`` forward passes of ``module`` on ``x``; one
    sample per pass for each layer row, rows in execution order."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from lwprof.counting.engine import _COUNTED, _ModuleStack, _op_info

    if runs < 1:
        raise ValueError("runs must be at least 1")
    cuda = device == "cuda"
    clock = time.perf_counter

    class _TimedTracer(TorchDispatchMode):
        def __init__(self, modules: _ModuleStack):
            super().__init__()
            self.modules = modules
            self.events: list[tuple[tuple[int | None, str], Any, Any]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            info = _op_info(func)
            if info.kind != _COUNTED:
                return func(*args, **kwargs)
            key = (self.modules.current(), info.short_name)
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                result = func(*args, **kwargs)
                end.record()
                self.events.append((key, start, end))
            else:
                start = clock()
                result = func(*args, **kwargs)
                self.events.append((key, start, clock()))
            return result

    modules = _ModuleStack(module)
    names, leaf = modules.names, modules.leaf

    def row_of(module_id: int | None, op: str) -> str:
        if module_id is None:
            return f"<root> ({op})"
        path = names[module_id]
        return (path or "<root>") if leaf[module_id] else f"{path or '<root>'} ({op})"

    rows: dict[str, list[float]] = {}
    ops: dict[str, set[str]] = {}
    training = [m for m in modules.by_path.values() if m.training]
    for m in training:
        m.training = False
    try:
        with torch.no_grad(), modules:
            for run in range(warmup + runs):
                with _TimedTracer(modules) as tracer:
                    module(x)
                if cuda:
                    torch.cuda.synchronize()
                if run < warmup:
                    continue
                per_row: dict[str, float] = {}
                for (module_id, op), start, end in tracer.events:
                    seconds = start.elapsed_time(end) / 1000.0 if cuda else end - start
                    row = row_of(module_id, op)
                    per_row[row] = per_row.get(row, 0.0) + seconds
                    ops.setdefault(row, set()).add(f"aten.{op}")
                for row, seconds in per_row.items():
                    rows.setdefault(row, []).append(seconds)
    finally:
        for m in training:
            m.training = True
    # A row missing from some pass (data-dependent control flow) counts 0 there.
    return [
        LayerTiming(layer=row, samples_s=tuple(samples) + (0.0,) * (runs - len(samples)), ops=tuple(sorted(ops[row])))
        for row, samples in rows.items()
    ]
