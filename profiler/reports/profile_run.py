"""A measured profile run: its records, the join of counts with times, its files and plots.

A run directory holds::

    layers.csv     analytic counts joined with per-layer time per backend
    latency.csv    raw end-to-end samples (one row per timed run)
    profile.json   totals, statistics, output checks, peaks, settings, environment
    trace.json     per-layer times as a Perfetto / chrome://tracing timeline (lwprof.reports.trace)
    time_share.png/.svg, roofline.png/.svg
    report.html    all of it in one self-contained page (lwprof.reports.html_report)

Joining rows: torch rows carry the analytic layer names already. A runtime
node that fused several layers (ONNX Runtime's Conv+BatchNorm+ReLU) is one
timing row; its time is shown on the first layer it covers, the others name it
in ``<backend>_fused_into``, and its achieved rates and roofline use the sum
of the covered layers' counts. Roofline bytes follow the backend's memory
view: eager memory access for torch (every op goes through memory), fused
for ONNX Runtime (its fused kernels keep intermediates out of memory).

Everything here reads plain records, so a run being measured
(:func:`write_run`, :func:`plot_run`) and a saved one (:func:`render_saved_run`)
go through the same code.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwprof.core.stats import Measurement
from lwprof.reports.allocator_report import allocator_columns, allocator_comparison
from lwprof.reports.console import cell
from lwprof.reports.files import atomic_write, csv_text, json_text, number
from lwprof.reports.trace import trace
from lwprof.runtime.allocator import DEFAULT
from lwprof.runtime.precision import ran_in, result_key

__all__ = ["AllocatorRun", "BackendResult", "join_layers", "layer_table", "payload", "plot_run", "read_layer_rows",
           "render_saved_run", "roofline_columns", "summary_rows", "write_run"]


@dataclass
class AllocatorRun:
    """The same backend timed once more with the other allocator setting."""

    allocator: str
    measurement: Measurement | None
    minor_page_faults_per_pass: float | None
    process: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class BackendResult:
    """Everything one backend produced for one batch size."""

    backend: str
    batch_size: int
    precision: str = "fp32"
    skipped: str | None = None
    measurement: Measurement | None = None
    output_check: dict[str, Any] | None = None
    layer_rows: list[Any] = field(default_factory=list)
    layer_pass_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    allocator: str = DEFAULT
    minor_page_faults_per_pass: float | None = None
    process: dict[str, Any] = field(default_factory=dict)
    allocator_check: AllocatorRun | None = None

    @property
    def key(self) -> str:
        """The name of this result's columns: the backend, with its precision when not fp32."""
        return result_key(self.backend, self.precision)

    @property
    def layer_sum_s(self) -> float | None:
        return sum(row.stats.median for row in self.layer_rows) if self.layer_rows else None


def check_record(check: Any) -> dict[str, Any]:
    """An :class:`~lwprof.runtime.outputs.OutputCheck` as JSON-ready fields."""
    return {
        "allclose": check.allclose,
        "max_abs_diff": check.max_abs_diff,
        "max_rel_diff": check.max_rel_diff,
        "nonfinite": check.nonfinite,
        "shapes_match": check.shapes_match,
    }


# ---------------------------------------------------------------------------
# Rows


def roofline_bytes(backend: str, eager: int | float, fused: int | float) -> int | float:
    from lwprof.runtime.backends import memory_view

    return fused if memory_view(backend) == "fused" else eager


def roofline_columns(flops: int, memory_bytes: int, seconds: float | None, peaks: Any, prefix: str) -> dict[str, Any]:
    columns: dict[str, Any] = {
        f"{prefix}achieved_flops_per_s": flops / seconds if seconds else None,
        f"{prefix}achieved_bytes_per_s": memory_bytes / seconds if seconds else None,
        f"{prefix}intensity_flops_per_byte": flops / memory_bytes if memory_bytes else None,
        f"{prefix}roofline_bound_s": None,
        f"{prefix}roofline_efficiency": None,
        f"{prefix}bound_by": None,
    }
    if peaks is not None and (flops or memory_bytes):
        from lwprof.runtime.roofline import efficiency, roofline_bound

        point = roofline_bound(flops, memory_bytes, peaks)
        columns[f"{prefix}roofline_bound_s"] = point.bound_s
        columns[f"{prefix}roofline_efficiency"] = efficiency(point.bound_s, seconds) if seconds else None
        columns[f"{prefix}bound_by"] = point.limit
    return columns


def result_keys(job: Any) -> list[str]:
    """Each (backend, precision) measured, as its column prefix, in order."""
    return list(dict.fromkeys(result.key for result in job.results))


def summary_rows(job: Any) -> list[dict[str, Any]]:
    """One row per backend and batch size: statistics, throughput, roofline,
    per-layer coverage, output agreement, the allocator's share."""
    rows = []
    for result in job.results:
        row: dict[str, Any] = {"backend": result.backend, "precision": result.precision, "device": job.device,
                               "batch_size": result.batch_size}
        if result.measurement is None:
            row["skipped"] = result.skipped or ("interrupted before timing" if job.partial else "not measured")
            rows.append(row)
            continue
        stats = result.measurement.stats
        row.update(stats.as_dict())
        prediction = job.predictions.get(result.batch_size, {}).get(result.key)  # --calibration
        if prediction is not None:
            row.update(prediction.summary(stats.median))
        row["throughput_items_per_s"] = result.batch_size / stats.median if stats.median else None
        profile = job.profiles.get(result.batch_size)
        if profile is not None:
            totals = profile.totals
            memory = roofline_bytes(result.backend, totals["memory_bytes"], totals["memory_bytes_fused"])
            flops = totals["flops"]
            analytic = (result.info.get("quantization") or {}).get("analytic")
            if analytic and analytic.get("memory_bytes"):  # counted on what runs, at its element sizes
                flops, memory = analytic["flops"], analytic["memory_bytes"]
            peaks = job.peaks.get(result.key) or job.peaks.get(result.backend)
            row.update(roofline_columns(flops, memory, stats.median, peaks, prefix=""))
        row["layer_sum_s"] = result.layer_sum_s
        row["layer_sum_vs_end_to_end"] = result.layer_sum_s / stats.median if result.layer_sum_s and stats.median else None
        row["layer_pass_overhead"] = result.layer_pass_s / stats.median if result.layer_pass_s and stats.median else None
        check = result.output_check
        if check is not None and check["reference"] != result.backend:
            row["outputs_vs"] = check["reference"]
            row["max_abs_diff"] = check["max_abs_diff"]
            row["max_rel_diff"] = check["max_rel_diff"]
            row["outputs_allclose"] = check["allclose"]
        elif check is not None:
            row["outputs_vs"] = "(reference)"
        row.update(allocator_columns(result))
        row.update(_precision_columns(job, result, stats.median))
        row["skipped"] = ""
        rows.append(row)
    return rows


def _precision_columns(job: Any, result: BackendResult, median: float) -> dict[str, Any]:
    """For a precision other than fp32: speedup over the same backend's fp32
    (when measured in this run), agreement with fp32, layers left in float."""
    if result.precision == "fp32":
        return {}
    columns: dict[str, Any] = {"outputs_vs": "fp32"}
    fp32 = next((r for r in job.results if r.backend == result.backend and r.batch_size == result.batch_size
                 and r.precision == "fp32" and r.measurement is not None), None)
    columns["speedup_vs_fp32"] = fp32.measurement.stats.median / median if fp32 is not None and median else None
    record = result.info.get("quantization") or {}
    agreement = record.get("agreement") or {}
    columns["relative_error_vs_fp32"] = agreement.get("relative_error")
    columns["cosine_vs_fp32"] = agreement.get("cosine")
    columns["top1_agreement"] = agreement.get("top1_agreement")
    columns["outputs_meaningful"] = agreement.get("meaningful")
    layers = record.get("layers")
    columns["float_layers"] = len(layers["float_layers"]) if layers else None
    analytic = record.get("analytic") or {}
    columns["memory_bytes_at_precision"] = analytic.get("memory_bytes")
    columns["conversion_memory_bytes"] = analytic.get("conversion_memory_bytes")
    profile = job.profiles.get(result.batch_size)
    if profile is not None and analytic.get("memory_bytes"):
        totals = profile.totals  # the fp32 side in the backend's own memory view
        columns["memory_ratio_vs_fp32"] = roofline_bytes(result.backend, totals["memory_bytes"], totals["memory_bytes_fused"]) / analytic["memory_bytes"]
    return columns


def join_layers(profile: Any, results: list[BackendResult], peaks: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """Analytic rows (execution order) with each backend's per-layer time."""
    rows = [{"batch_size": batch_size, **row} for row in profile.layer_rows()]
    by_name = {row["layer"]: row for row in rows}
    analytic = set(by_name)
    total_flops = sum(row["flops"] for row in rows) or None
    for row in rows:
        row["flops_share"] = row["flops"] / total_flops if total_flops else None
    extra_rows: list[dict[str, Any]] = []
    for result in results:
        name = result.key
        layers_record = (result.info.get("quantization") or {}).get("layers") or {}
        left_in_float = {entry["layer"] for entry in layers_record.get("float_layers", [])}
        # This precision's own counts of a layer, where its graph names it as the table does.
        own_counts = ((result.info.get("quantization") or {}).get("analytic") or {}).get("layers") or {}
        groups: dict[str, dict[str, Any]] = {}  # head layer -> time and members
        for timing in result.layer_rows:
            members = [layer for layer in timing.layers if layer in analytic]
            head = members[0] if members else timing.layer
            group = groups.setdefault(head, {"time": 0.0, "members": [], "ops": set(), "known": bool(members)})
            group["time"] += timing.stats.median
            group["ops"].update(timing.ops)
            for member in members:
                if member not in group["members"]:
                    group["members"].append(member)
        total_time = sum(group["time"] for group in groups.values()) or None
        for head, group in groups.items():
            if not group["known"]:
                row = by_name.get(head)
                if row is None:  # a runtime-only row (another result may have made it already)
                    row = {"batch_size": batch_size, "layer": head, "module_type": "", "op_class": "", "ops": ""}
                    extra_rows.append(row)
                    by_name[head] = row
                row["ops"] = " ".join(sorted(set(row["ops"].split()) | group["ops"]))
                members = []
            else:
                row = by_name[head]
                members = group["members"]
            flops = sum(by_name[m]["flops"] for m in members)
            memory = roofline_bytes(result.backend, sum(by_name[m]["memory_bytes"] for m in members), sum(by_name[m]["memory_bytes_fused"] for m in members))
            row[f"{name}_time_s"] = group["time"]
            row[f"{name}_time_share"] = group["time"] / total_time if total_time else None
            # Each layer on the roof of the precision it ran in: an int8 model's float layers on fp32's.
            kind = ran_in(group["ops"], result.precision)
            if kind == result.precision and head in left_in_float:
                kind = "fp32"
            if own_counts and all(m in own_counts for m in members or [head]):
                flops = sum(own_counts[m][0] for m in members or [head])
                memory = sum(own_counts[m][1] for m in members or [head])
                row[f"{name}_memory_bytes"] = memory
            roof = peaks.get(name) if kind == result.precision else None
            row.update(roofline_columns(flops, memory, group["time"], roof or peaks.get(result.backend), prefix=f"{name}_"))
            row[f"{name}_ran_in"] = kind
            if not group["known"] and row[f"{name}_ran_in"] == "conversion":
                row["op_class"] = "conversion"
            if len(members) > 1:
                row[f"{name}_fused_layers"] = " ".join(members[1:])
                for member in members[1:]:
                    by_name[member][f"{name}_fused_into"] = head
    return rows + extra_rows


def layer_table(job: Any) -> list[dict[str, Any]]:
    """Every batch size's analytic rows joined with each backend's per-layer time."""
    table = []
    for batch_size, profile in job.profiles.items():
        results = [r for r in job.results if r.batch_size == batch_size and r.layer_rows]
        rows = join_layers(profile, results, job.peaks, batch_size)
        for key, prediction in job.predictions.get(batch_size, {}).items():
            predicted = prediction.layer_seconds()  # a kernel's time on its first layer, as a measured runtime's row
            rows = [{**row, f"{key}_predicted_s": predicted.get(row["layer"])} for row in rows]
        table.extend(rows)
    return table


# ---------------------------------------------------------------------------
# Files


def payload(job: Any) -> dict[str, Any]:
    """``profile.json``: what was run, with which settings, and everything measured."""
    first = next(iter(job.profiles.values()), None)
    settings = job.settings
    return {
        "model": job.model_name,
        "spec": job.spec,
        "device": job.device,
        "backends": job.backends,
        "measured": result_keys(job),
        "batch_sizes": list(job.profiles) or [b for b in job.batch_sizes if b],
        "input_shapes": {str(b): list(s) for b, s in job.shapes.items()},
        "threads": settings.threads,
        "budget": {
            "min_time_s": settings.budget.min_time_s,
            "max_time_s": settings.budget.max_time_s,
            "warmup": settings.budget.warmup,
            "layer_runs": settings.layer_runs,
        },
        "settings": settings.to_dict(),
        "partial": job.partial,
        "totals": first.totals if first is not None else None,
        "totals_by_batch_size": {str(b): p.totals for b, p in job.profiles.items()},
        "unsupported_ops": dict(first.unsupported_ops) if first is not None else {},
        "results": [
            {
                **row,
                "info": result.info,
                "process": result.process,
                "allocator_comparison": allocator_comparison(result),
                "output_check": result.output_check,
                "warnings": result.warnings + (result.measurement.warnings() if result.measurement else []),
            }
            for row, result in zip(summary_rows(job), job.results)
        ],
        "predictions": {str(b): {key: {**p.summary(), "calibration": p.calibration.describe()} for key, p in by_key.items()}
                        for b, by_key in job.predictions.items() if by_key},
        "roofline": {backend: {**peaks.to_dict(), "source": job.peak_notes.get(backend)} for backend, peaks in job.peaks.items()},
        "roofline_notes": {b: n for b, n in job.peak_notes.items() if b not in job.peaks},
        "wall_time_split_s": dict(job.timings),
        "environment": job.environment,
    }


def write_run(job: Any) -> list[Path]:
    """``profile.json``, ``latency.csv`` and ``layers.csv``, rewritten as the
    run grows; a ``PARTIAL`` marker while it is interrupted."""
    run_dir = job.run_dir
    if run_dir is None:
        return []
    written = [run_dir / "profile.json", run_dir / "latency.csv", run_dir / "layers.csv", run_dir / "trace.json"]
    saved, layers = payload(job), layer_table(job)
    atomic_write(run_dir / "profile.json", json_text(saved))
    lines = ["backend,precision,device,batch_size,allocator,process,run,latency_s"]
    for result in job.results:
        timed = [(result.allocator, result.measurement)]
        if result.allocator_check is not None:
            timed.append((result.allocator_check.allocator, result.allocator_check.measurement))
        for allocator, measurement in timed:
            if measurement is not None:
                counts = measurement.metadata.get("samples_per_process") or [len(measurement.samples_s)]
                processes = [process for process, n in enumerate(counts) for _ in range(n)]
                for index, seconds in enumerate(measurement.samples_s):
                    lines.append(f"{result.backend},{result.precision},{job.device},{result.batch_size},{allocator},"
                                 f"{processes[index]},{index},{seconds!r}")
    atomic_write(run_dir / "latency.csv", "\n".join(lines) + "\n")
    atomic_write(run_dir / "layers.csv", csv_text(layers))
    atomic_write(run_dir / "trace.json", json_text(trace(layers, saved["results"], job.model_name, job.device)))
    marker = run_dir / "PARTIAL"
    if job.partial:
        marker.write_text("This run was interrupted: the files hold what was measured before Ctrl-C.\n")
        written.append(marker)
    elif marker.exists():
        marker.unlink()
    return written


# ---------------------------------------------------------------------------
# Plots and summary, live or from the saved files


def _plots(run_dir: Path, title: str, backends: list[str], rows: list[dict[str, Any]], peaks: dict[str, Any]) -> list[Path]:
    """Time share per layer and layers on the roofline, from joined rows of
    one batch size (numbers, or None where a cell is empty)."""
    from lwprof.reports.plots import plot_roofline, plot_time_vs_flop_share

    timed = [b for b in backends if any(r.get(f"{b}_time_s") is not None for r in rows)]
    if not timed:
        return []
    share_rows = [
        {
            "layer": r["layer"],
            "flops": r.get("flops") or 0,  # runtime-only rows count nothing
            "memory_bytes": r.get("memory_bytes") or 0,
            "time_s": {b: r.get(f"{b}_time_s") for b in timed},
        }
        for r in rows
    ]
    written = list(plot_time_vs_flop_share(share_rows, run_dir / "time_share", title))
    points = [
        {
            "layer": r["layer"],
            "intensity": r[f"{b}_intensity_flops_per_byte"],
            "achieved_flops_per_s": r[f"{b}_achieved_flops_per_s"],
            "backend": b,
            "op_class": r.get("op_class") or "",
        }
        for b in timed
        for r in rows
        if r.get(f"{b}_achieved_flops_per_s") and r.get(f"{b}_intensity_flops_per_byte")
    ]
    shown = {b: p for b, p in peaks.items() if b in timed}
    if points and shown:
        written += list(plot_roofline(points, shown, run_dir / "roofline", f"{title}: layers on the roofline"))
    return written


def plot_run(job: Any) -> list[Path]:
    """The plots of a run being measured, for its first batch size."""
    if job.run_dir is None or not job.profiles:
        return []
    batch_size = next(iter(job.profiles))
    rows = [r for r in layer_table(job) if r["batch_size"] == batch_size]
    return _plots(job.run_dir, f"{job.model_name} on {job.device} (batch {batch_size})", result_keys(job), rows, job.peaks)


_TEXT_COLUMNS = {"layer", "module_type", "op_class", "ops", "unsupported_ops", "input_shape", "output_shape", "batch_size"}


def read_layer_rows(path: Path) -> list[dict[str, Any]]:
    """``layers.csv`` with its numbers as numbers again."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: v if k in _TEXT_COLUMNS or k.endswith(("_bound_by", "_fused_layers", "_fused_into", "_ran_in")) else number(v)
         for k, v in row.items()}
        for row in rows
    ]


def render_saved_run(run_dir: Path) -> list[Path]:
    """The plots and ``summary.md`` of a profile run directory, from its files only."""
    from lwprof.core.errors import LwprofError
    from lwprof.runtime.roofline import DevicePeaks

    saved = json.loads((run_dir / "profile.json").read_text())
    rows = read_layer_rows(run_dir / "layers.csv")
    if not rows:
        raise LwprofError(f"{run_dir / 'layers.csv'} has no rows")
    atomic_write(run_dir / "trace.json", json_text(trace(rows, saved["results"], saved["model"], saved["device"])))
    first = rows[0]["batch_size"]
    rows = [r for r in rows if r["batch_size"] == first]
    peaks = {b: DevicePeaks.from_dict(d) for b, d in saved.get("roofline", {}).items()}
    written = _plots(run_dir, f"{saved['model']} on {saved['device']} (batch {first})", saved.get("measured", saved["backends"]), rows, peaks)
    lines = [f"# {saved['model']} on {saved['device']}", "", "| backend | batch | median ms | IQR ms | p99 ms | runs | roofline eff. |",
             "|---|---|---|---|---|---|---|"]
    for r in saved["results"]:
        if r.get("median_s"):
            lines.append(f"| {r['backend']} | {r['batch_size']} | {r['median_s'] * 1e3:.3f} | {r['iqr_s'] * 1e3:.3f} | "
                         f"{r['p99_s'] * 1e3:.3f} | {r['n']} | {cell(r.get('roofline_efficiency'), 0.01, 1, '%')} |")
        else:
            lines.append(f"| {r['backend']} | {r['batch_size']} | skipped: {r.get('skipped')} | | | | |")
    lines += [f"\n![{p.stem}]({p.name})" for p in written if p.suffix == ".png"]
    summary = run_dir / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return written + [summary, run_dir / "trace.json"]
