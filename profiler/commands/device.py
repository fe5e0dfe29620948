"""``lwprof device``: this machine's roofline per backend (cached by fingerprint)."""

from __future__ import annotations

from typing import Any

from lwprof.commands.common import precision_targets, start
from lwprof.reports import console as output
from lwprof.reports.console import Column, OutputFormat
from lwprof.runtime.settings import RunSettings


def device_rows(settings: RunSettings, backends: list[str], refresh: bool,
                targets: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.roofline import load_or_measure

    device, threads = settings.device, settings.threads
    rows = []
    for name, precision in targets or [(b, settings.precision) for b in backends]:
        reason = get_backend(name).unavailable_reason(device)
        if reason is not None:
            output.warn(f"{name}: skipped ({reason})")
            continue
        with output.stderr.status(f"{name}: measuring peak {precision} GEMM and copy bandwidth on {device} ({threads} threads)"):
            peaks, cached = load_or_measure(name, settings.but(precision=precision), refresh=refresh)
        rows.append(
            {
                "backend": name,
                "precision": precision,
                "device": device,
                "threads": threads,
                "peak_flops_per_s": peaks.peak_flops_per_s,
                "bandwidth_bytes_per_s": peaks.bandwidth_bytes_per_s,
                "ridge_intensity_flops_per_byte": peaks.ridge_intensity,
                "gemm_kernel": peaks.gemm.get("kernel"),
                "copy_kernel": peaks.copy.get("kernel"),
                "source": "cached" if cached else "measured",
                "measured_at": peaks.measured_at,
                "fingerprint": peaks.fingerprint,
            }
        )
    return rows


def run_device(*, settings: RunSettings, backends: str | None, refresh: bool, fmt: OutputFormat, precisions: str | None = None) -> None:
    chosen = start(settings, backends)
    rows = device_rows(settings, chosen, refresh, precision_targets(chosen, precisions, explicit=backends is not None))
    columns = [
        Column("backend", "backend"),
        Column("precision", "precision"),
        Column("device", "device"),
        Column("threads", "threads", str, "right"),
        Column("peak_flops_per_s", "peak GFLOP/s", lambda v: f"{v / 1e9:.1f}", "right"),
        Column("bandwidth_bytes_per_s", "bandwidth GB/s", lambda v: f"{v / 1e9:.1f}", "right"),
        Column("ridge_intensity_flops_per_byte", "ridge FLOP/byte", lambda v: f"{v:.2f}", "right"),
        Column("source", "source"),
        Column("measured_at", "measured at"),
        Column("fingerprint", "fingerprint"),
    ]
    if fmt is OutputFormat.csv:
        columns = [Column(k, k) for k in rows[0]] if rows else columns
    output.emit(rows, columns, fmt, title=f"roofline of {settings.device}")
