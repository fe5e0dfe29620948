"""``trace.json``: a profile run's per-layer times as a timeline that Perfetto
UI and ``chrome://tracing`` open (the Chrome Trace Event format, JSON object
form, as ``torch.profiler`` and ONNX Runtime write it).

One process per measured backend, precision and batch size; on its
``layers`` thread, one complete event (``ph: "X"``) per timed layer row, laid
end to end in execution order, each as long as the layer's median time; a
counter track (``ph: "C"``) with the running share of the end-to-end median.
The slices are medians of separate per-layer passes placed one after another,
not one recorded pass: the trace says so in ``otherData``. Each slice's
``args`` carry the layer's op class, FLOPs, MACs, memory access (eager and
fused), arithmetic intensity, roofline bound and efficiency, and the layers
a fused runtime kernel covers.

Built from plain records (a run being measured or its saved ``profile.json``
and ``layers.csv``), so ``lwprof report RUN_DIR`` rewrites it.
"""

from __future__ import annotations

from typing import Any, Sequence

from lwprof.reports.files import number
from lwprof.runtime.precision import result_key

LAYERS_THREAD = 1
COUNTER = "share of end to end"


def trace(layer_rows: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], model: str, device: str) -> dict[str, Any]:
    """The trace of one run: ``layer_rows`` as ``layers.csv`` holds them (all
    batch sizes), ``results`` as ``profile.json``'s (the summary rows)."""
    events: list[dict[str, Any]] = []
    pid = 0
    for result in results:
        median = number(result.get("median_s"))
        if not median:
            continue
        key = result_key(result["backend"], result.get("precision", "fp32"))
        batch = str(result["batch_size"])
        rows = [r for r in layer_rows if str(r.get("batch_size")) == batch and number(r.get(f"{key}_time_s"))]
        if not rows:
            continue
        pid += 1
        label = f"{key} batch {batch}: end to end {median * 1e3:.3f} ms (median)"
        events += [
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0, "args": {"name": label}},
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0, "args": {"sort_index": pid}},
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": LAYERS_THREAD, "ts": 0, "args": {"name": "layers"}},
        ]
        start_us = 0.0
        for row in rows:
            seconds = number(row[f"{key}_time_s"])
            assert seconds is not None
            events.append({
                "ph": "X", "name": row["layer"], "cat": row.get("op_class") or "layer", "pid": pid, "tid": LAYERS_THREAD,
                "ts": start_us, "dur": seconds * 1e6, "args": _args(row, key, seconds),
            })
            start_us += seconds * 1e6
            events.append({"ph": "C", "name": COUNTER, "pid": pid, "tid": LAYERS_THREAD, "ts": start_us,
                           "args": {"share": start_us / (median * 1e6)}})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"model": model, "device": device, "generator": "lwprof",
                          "note": "each slice is a layer's median over lwprof's per-layer passes, laid end to end in "
                                  "execution order: a timeline of medians, not one recorded pass"}}


def _args(row: dict[str, Any], key: str, seconds: float) -> dict[str, Any]:
    args: dict[str, Any] = {"time_ms": seconds * 1e3, "op_class": row.get("op_class") or None}
    for column in ("flops", "macs", "memory_bytes", "memory_bytes_fused"):
        value = number(row.get(column))
        args[column] = int(value) if value is not None else None
    for column in ("intensity_flops_per_byte", "roofline_bound_s", "roofline_efficiency", "bound_by", "fused_layers",
                   "ran_in", "predicted_s"):
        value = row.get(f"{key}_{column}")
        if value not in (None, ""):
            args[column] = value if column in ("bound_by", "fused_layers", "ran_in") else float(value)
    return args
