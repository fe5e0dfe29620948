"""``lwprof profile``: load a model spec, count it, show and write the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lwprof.commands.common import count
from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.console import Column, OutputFormat
from lwprof.reports.layer_table import (
    csv_columns,
    layer_columns,
    rolled_up_rows,
    sort_rows,
    totals_rows,
    write_run_files,
)


def _analyze(loaded: Any, dtype: str) -> tuple[Any, dict[str, Any]]:
    profile = count(loaded, dtype)
    if loaded.kind != "onnx":
        return profile, {}
    from lwprof.counting.onnx_count import analyze_onnx

    optimized = analyze_onnx(loaded.onnx_path, input_shape=loaded.input_shape, name=loaded.name, optimized=True)
    return profile, {"ort_optimized_totals": optimized.totals}


def run_profile(
    spec: str,
    *,
    input_shape: str | None,
    batch_size: int | None,
    dtype: str,
    depth: int | None,
    top: int | None,
    sort: str,
    fmt: OutputFormat,
    out: Path | None,
    crosscheck: bool,
) -> None:
    from lwprof.runtime.loader import load_model, parse_shape

    shape = parse_shape(input_shape) if input_shape is not None else None
    output.info(f"loading {spec}")
    loaded = load_model(spec, input_shape=shape, batch_size=batch_size)
    output.info(f"counting {loaded.name} on input {'x'.join(map(str, loaded.input_shape))} ({dtype})")
    profile, extra = _analyze(loaded, dtype)

    checks = None
    if crosscheck:
        if loaded.module is None:
            raise LwprofError("--crosscheck needs a PyTorch model (thop and FlopCounterMode do not read ONNX graphs)")
        from lwprof.counting.crosscheck import crosscheck as run_crosscheck

        checks = run_crosscheck(loaded.module, profile)
        extra["crosscheck"] = checks

    rows = sort_rows(rolled_up_rows(profile, depth), sort, top)
    if profile.unsupported_ops:
        listed = ", ".join(f"{op} x{n}" for op, n in profile.unsupported_ops.items())
        output.warn(f"ops without a cost formula (memory counted, FLOPs not): {listed}")

    if fmt is OutputFormat.json:
        payload = profile.to_dict()
        payload["layers"] = rows
        payload.update(extra)
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif fmt is OutputFormat.csv:
        if checks is not None:
            from lwprof.counting.crosscheck import crosscheck_rows

            crossed = crosscheck_rows(checks)
            output.emit(crossed, [Column(k, k) for k in crossed[0]], fmt)
        else:
            output.emit(rows, csv_columns(rows), fmt)
    else:
        _print_tables(profile, rows, extra, checks)

    if out is not None:
        written = write_run_files(profile, out, extra or None)
        output.info("wrote " + ", ".join(str(p) for p in written))


def _print_tables(profile, rows, extra, checks) -> None:
    from lwprof.core.units import format_bytes, format_count

    shape = "x".join(map(str, profile.input_shape))
    output.emit(rows, layer_columns(rows), OutputFormat.table, title=f"{profile.model}: {shape}, {profile.dtype}")
    totals = totals_rows(profile)
    if "ort_optimized_totals" in extra:
        totals.append(
            {
                "quantity": "memory access, ONNX Runtime-optimized graph",
                "value": format_bytes(extra["ort_optimized_totals"]["memory_bytes"]),
            }
        )
    output.emit(totals, [Column("quantity", "total"), Column("value", "", justify="right")], OutputFormat.table)
    if profile.unsupported_ops:
        unsupported = [{"op": op, "count": n} for op, n in profile.unsupported_ops.items()]
        output.emit(unsupported, [Column("op", "unsupported op"), Column("count", "calls", str, "right")], OutputFormat.table)
    if checks is not None:
        from lwprof.counting.crosscheck import crosscheck_rows

        columns = [
            Column("counter", "counter"),
            Column("macs", "MACs", format_count, "right"),
            Column("flops", "FLOPs", format_count, "right"),
            Column("params", "params", format_count, "right"),
            Column("counts", "op classes counted"),
            Column("misses", "op classes missed"),
        ]
        output.emit(crosscheck_rows(checks), columns, OutputFormat.table, title="cross-check")
