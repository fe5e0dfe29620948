"""``lwprof profile MODEL --device cpu|cuda``: the main job, and its summary on stdout.

Count the model (the analytic table), measure its end-to-end latency on every
selected backend in fresh worker processes, time it layer by layer, place
layers and model on the device's roofline, and write a run directory
(:mod:`lwprof.reports.profile_run`); the job itself is
:class:`lwprof.commands.profile_job.LatencyJob`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lwprof.commands.common import EXIT_INTERRUPTED, parse_backends, parse_batch_sizes, precision_targets
from lwprof.commands.profile_job import LatencyJob
from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.allocator_report import allocator_notes
from lwprof.reports.console import Column, OutputFormat, milliseconds, percent
from lwprof.reports.files import json_text
from lwprof.reports.profile_run import layer_table, payload, result_keys, summary_rows
from lwprof.runtime.settings import RunSettings


def run_latency_profile(
    spec: str,
    *,
    settings: RunSettings,
    backends: str | None,
    precisions: str | None = None,
    batch_sizes: str | None = None,
    input_shape: str | None,
    top: int,
    fmt: OutputFormat,
    out: Path | None,
    reports_dir: Path,
    plots: bool,
    calibrations: list[Path] | None = None,
) -> int:
    """Run the job and print its summary; returns the exit code."""
    from lwprof.runtime.loader import parse_shape

    shape = parse_shape(input_shape) if input_shape is not None else None
    chosen = parse_backends(backends)
    targets = precision_targets(chosen, precisions, explicit=backends is not None)
    job = LatencyJob(
        spec,
        settings=settings,
        backends=chosen,
        precisions=targets,
        batch_sizes=parse_batch_sizes(batch_sizes),
        input_shape=shape,
        reports_dir=reports_dir,
        out=out,
        calibrations=load_calibrations(calibrations, targets),
    )
    job.run()
    if job.profiles:
        from lwprof.reports.html_report import write_profile_report

        try:
            if plots:
                job.plot()
            if job.run_dir is not None:
                write_profile_report(job.run_dir)
        except KeyboardInterrupt:
            job.partial = True
            job.write()
    _print_summary(job, fmt, top)
    if job.run_dir is not None:
        output.info(f"wrote {job.run_dir}" + (" (partial: interrupted)" if job.partial else ""))
    if not any(r.measurement for r in job.results) and not job.partial:
        reasons = "; ".join(f"{r.backend}: {r.skipped}" for r in job.results if r.skipped)
        raise LwprofError(f"no backend could measure {job.model_name} ({reasons})")
    return EXIT_INTERRUPTED if job.partial else 0


def load_calibrations(paths: list[Path] | None, targets: list[tuple[str, str]]) -> list[Any]:
    """The ``--calibration`` files, each checked to predict a (backend,
    precision) this run measures, and announced with its own held-out error."""
    from lwprof.predict.calibration import Calibration

    calibrations = [Calibration.load(path) for path in paths or []]
    for path, calibration in zip(paths or [], calibrations):
        if (calibration.backend, calibration.precision) not in targets:
            measured = ", ".join(f"{b} {p}" for b, p in targets)
            raise LwprofError(f"--calibration {path} predicts {calibration.backend} {calibration.precision}, which this "
                              f"run does not measure ({measured}): add --backend {calibration.backend} "
                              f"--precision {calibration.precision}")
        output.info(f"predicting {calibration.result_key} from {path}: {calibration.describe()}")
    keys = [c.result_key for c in calibrations]
    if len(set(keys)) != len(keys):
        raise LwprofError(f"two --calibration files predict the same backend and precision ({', '.join(keys)})")
    return calibrations


def _print_summary(job: LatencyJob, fmt: OutputFormat, top: int) -> None:
    from lwprof.core.units import format_bytes, format_count

    summary = summary_rows(job)
    if fmt is OutputFormat.json:
        sys.stdout.write(json_text(payload(job)))
        return
    columns = [
        Column("backend", "backend"),
        Column("precision", "precision"),
        Column("batch_size", "batch", str, "right"),
        Column("median_s", "median ms", milliseconds, "right"),
        Column("iqr_s", "IQR ms", milliseconds, "right"),
        Column("p99_s", "p99 ms", milliseconds, "right"),
        Column("n", "runs", lambda v: "" if v is None else str(v), "right"),
        Column("throughput_items_per_s", "items/s", lambda v: "" if v is None else f"{v:.1f}", "right"),
        Column("roofline_bound_s", "roofline ms", milliseconds, "right"),
        Column("roofline_efficiency", "efficiency", percent, "right"),
        Column("bound_by", "bound by"),
        Column("predicted_s", "predicted ms", milliseconds, "right"),
        Column("predicted_error", "predicted vs measured", lambda v: "" if v is None else f"{v:+.1%}", "right"),
        Column("layer_sum_vs_end_to_end", "layers/e2e", percent, "right"),
        Column("outputs_vs", "outputs vs"),
        Column("max_rel_diff", "max rel diff", lambda v: "" if v is None else f"{v:.1e}", "right"),
        Column("speedup_vs_fp32", "vs fp32", lambda v: "" if v is None else f"{v:.2f}x", "right"),
        Column("cosine_vs_fp32", "cosine", lambda v: "" if v is None else f"{v:.4f}", "right"),
        Column("top1_agreement", "top-1 agree", percent, "right"),
        Column("float_layers", "float layers", lambda v: "" if v is None else str(v), "right"),
        Column("minor_page_faults_per_pass", "faults/pass", lambda v: "" if v is None else f"{v:,.0f}", "right"),
        Column("tuned_median_s", "tuned ms", milliseconds, "right"),
        Column("skipped", "skipped"),
    ]
    if fmt is OutputFormat.csv:
        keys = ["backend", "precision", "device", "batch_size", "n", "median_s", "mean_s", "std_s", "iqr_s", "p90_s", "p99_s", "min_s", "max_s",
                "ci95_low_s", "ci95_high_s", "relative_iqr", "noisy", "throughput_items_per_s", "roofline_bound_s",
                "roofline_efficiency", "bound_by", "predicted_s", "predicted_error", "predicted_not_calibrated",
                "layer_sum_s", "layer_sum_vs_end_to_end", "layer_pass_overhead",
                "outputs_vs", "max_abs_diff", "max_rel_diff", "outputs_allclose", "allocator", "timed_processes", "minor_page_faults_per_pass",
                "tuned_median_s", "tuned_iqr_s", "tuned_minor_page_faults_per_pass", "allocator_tax", "speedup_vs_fp32",
                "relative_error_vs_fp32", "cosine_vs_fp32", "top1_agreement", "outputs_meaningful", "float_layers", "skipped"]
        output.emit(summary, [Column(k, k) for k in keys], fmt)
        return
    profile = next(iter(job.profiles.values()), None)
    if profile is not None:
        totals = profile.totals
        shape = "x".join(map(str, profile.input_shape))
        output.stdout.print(
            f"[bold]{job.model_name}[/bold] on {job.device} ({job.settings.threads} threads), input {shape}: "
            f"{format_count(totals['params'])} params, {format_count(totals['macs'])} MACs, {format_count(totals['flops'])} FLOPs, "
            f"memory access {format_bytes(totals['memory_bytes'])} eager / {format_bytes(totals['memory_bytes_fused'])} fused",
            highlight=False,
        )
    output.emit(summary, columns, OutputFormat.table, title="end-to-end latency")
    for note in allocator_notes(summary):
        output.stdout.print(note, highlight=False, soft_wrap=True)
    for row in summary:
        if row.get("predicted_not_calibrated"):
            output.warn(f"{row['backend']} {row['precision']}: the calibration never saw kernel types "
                        f"{row['predicted_not_calibrated']}; their kernels are left out of the prediction")
    rows = [r for r in layer_table(job) if r["batch_size"] == (next(iter(job.profiles), None))]
    for backend in result_keys(job):
        key = f"{backend}_time_s"
        timed = sorted((r for r in rows if r.get(key)), key=lambda r: -r[key])[:top]
        if not timed:
            continue
        layer_columns = [
            Column("layer", "layer"),
            Column("op_class", "class"),
            Column(key, "ms", milliseconds, "right"),
            Column(f"{backend}_time_share", "time share", percent, "right"),
            Column("flops_share", "FLOP share", percent, "right"),
            Column(f"{backend}_achieved_flops_per_s", "GFLOP/s", lambda v: "" if v is None else f"{v / 1e9:.2f}", "right"),
            Column(f"{backend}_achieved_bytes_per_s", "GB/s", lambda v: "" if v is None else f"{v / 1e9:.2f}", "right"),
            Column(f"{backend}_roofline_efficiency", "efficiency", percent, "right"),
            Column(f"{backend}_bound_by", "bound by"),
            Column(f"{backend}_fused_layers", "also covers", lambda v: v or ""),
        ]
        if any(f"{backend}_predicted_s" in r for r in timed):
            layer_columns.insert(3, Column(f"{backend}_predicted_s", "predicted ms",
                                           lambda v: "not calibrated" if v is None else milliseconds(v), "right"))
        output.emit(timed, layer_columns, OutputFormat.table, title=f"top {len(timed)} layers by {backend} time")
