"""A comparison of many models: its rows, the proxy correlations, its plots and summary.

Each row is one model's counts and, per backend, its measured latency; the
correlations are Spearman's rho of measured latency with each proxy (MACs,
params, memory access eager and fused, roofline bound), per backend. The
plots and ``summary.md`` are rendered from a compare folder's saved files
only, so ``lwprof report`` re-renders them without measuring.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from lwprof.core.stats import spearman
from lwprof.reports.console import cell as fmt
from lwprof.reports.profile_run import layer_table, summary_rows

PROXIES = ("macs", "params", "memory_bytes", "memory_bytes_fused", "roofline_bound_s", "predicted_s")
PROXY_TITLES = {
    "predicted_s": "predicted (calibration)",
    "macs": "MACs",
    "params": "params",
    "memory_bytes": "memory access (eager)",
    "memory_bytes_fused": "memory access (fused)",
    "roofline_bound_s": "roofline bound",
}
# Op classes grouped for the "FLOPs are not latency" bars.
CLASS_GROUPS = {
    "conv": "regular conv",
    "conv_depthwise": "depthwise conv",
    "conv_pointwise": "pointwise conv",
    "matmul": "matmul / linear",
    "elementwise": "element-wise",
    "normalization": "normalization / activation",
    "activation": "normalization / activation",
    "data_movement": "data movement",
    "view": "data movement",
    "pooling": "pooling / reduction",
    "reduction": "pooling / reduction",
    "conversion": "precision conversion",
}
GROUP_ORDER = [
    "regular conv", "depthwise conv", "pointwise conv", "matmul / linear", "element-wise",
    "normalization / activation", "data movement", "pooling / reduction", "precision conversion", "other",
]


def model_row(job: Any, spec: str) -> dict[str, Any]:
    """One comparison row from a finished (or interrupted) job."""
    profile = next(iter(job.profiles.values()), None)
    row: dict[str, Any] = {"model": job.model_name, "spec": spec, "family": "", "published_top1_percent": None}
    try:
        from lwprof.models import get_model_info

        info = get_model_info(job.model_name)
        row["family"] = info.family
        row["published_top1_percent"] = info.published.imagenet_top1
    except Exception:
        pass  # not a zoo model
    if profile is not None:
        totals = profile.totals
        row.update({k: totals[k] for k in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused")})
        row["arithmetic_intensity_flops_per_byte"] = totals["arithmetic_intensity"]
        row["input_shape"] = "x".join(map(str, profile.input_shape))
    layers = layer_table(job)
    for summary, result in zip(summary_rows(job), job.results):
        backend = result.key
        if summary.get("median_s") is None:
            row[f"{backend}_skipped"] = summary.get("skipped")
            continue
        for key in ("median_s", "iqr_s", "p99_s", "throughput_items_per_s", "roofline_bound_s", "roofline_efficiency", "bound_by",
                    "allocator", "minor_page_faults_per_pass", "tuned_median_s", "allocator_tax", "predicted_s",
                    "predicted_error"):
            row[f"{backend}_{key}"] = summary.get(key)
        row[f"{backend}_noisy"] = summary.get("noisy")
        if result.precision != "fp32":
            row.update(_precision_columns(backend, summary, result, layers))
    return row


def _precision_columns(key: str, summary: dict[str, Any], result: Any, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Speedup over fp32, how much smaller the model is, the share of time in
    precision conversions, and the agreement with fp32."""
    import os

    columns = {f"{key}_{name}": summary.get(name) for name in
               ("speedup_vs_fp32", "relative_error_vs_fp32", "cosine_vs_fp32", "top1_agreement", "outputs_meaningful", "float_layers",
                "memory_bytes_at_precision", "memory_ratio_vs_fp32")}
    record = result.info.get("quantization") or {}
    paths = record.get("fp32_onnx_path"), record.get("int8_onnx_path")
    if all(paths) and all(os.path.exists(p) for p in paths):
        columns[f"{key}_size_ratio"] = os.path.getsize(paths[0]) / os.path.getsize(paths[1])
    elif result.precision in ("bf16", "fp16"):
        columns[f"{key}_size_ratio"] = 2.0  # every float parameter from 4 bytes to 2
    times = [(r.get(f"{key}_time_s") or 0.0, r.get(f"{key}_ran_in")) for r in layers]
    total = sum(t for t, _ in times)
    columns[f"{key}_conversion_time_share"] = sum(t for t, kind in times if kind == "conversion") / total if total else None
    return columns


def correlations(rows: list[dict[str, Any]], backends: Sequence[str]) -> list[dict[str, Any]]:
    """Per backend, Spearman's rho of measured latency with each proxy."""
    result = []
    for backend in backends:
        timed = [r for r in rows if r.get(f"{backend}_median_s")]
        entry: dict[str, Any] = {"backend": backend, "models": len(timed)}
        for proxy in PROXIES:
            source = f"{backend}_{proxy}" if proxy in ("roofline_bound_s", "predicted_s") else proxy
            entry[f"rho_{proxy}"] = spearman([r.get(source) for r in timed], [r[f"{backend}_median_s"] for r in timed])
        result.append(entry)
    return result


def shown_proxies(correlations_: list[dict[str, Any]]) -> list[str]:
    """The proxies to show: the predictor only when a run had a --calibration."""
    return [p for p in PROXIES if p != "predicted_s" or any(c.get("rho_predicted_s") is not None for c in correlations_)]


def safe_name(spec: str) -> str:
    """A model's folder name under ``<out>/models/``."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in spec).strip("_") or "model"


# ---------------------------------------------------------------------------
# Rendering from saved files (shared by compare and report)


def _op_class_shares(model_dir: Path, backend: str) -> dict[str, dict[str, float]] | None:
    path = model_dir / "layers.csv"
    if not path.exists():
        return None
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows or f"{backend}_time_s" not in rows[0]:
        return None
    first_batch = rows[0]["batch_size"]
    time_by: dict[str, float] = {}
    flops_by: dict[str, float] = {}
    for row in rows:
        if row["batch_size"] != first_batch:
            continue
        # A row without a class is a runtime-only kernel (ORT's Split/Slice/
        # Flatten/ReorderOutput, free views in eager torch): data movement.
        group = CLASS_GROUPS.get(row.get("op_class") or "view", "other")
        time_by[group] = time_by.get(group, 0.0) + float(row.get(f"{backend}_time_s") or 0.0)
        flops_by[group] = flops_by.get(group, 0.0) + float(row.get("flops") or 0.0)
    total_time, total_flops = sum(time_by.values()), sum(flops_by.values())
    if not total_time:
        return None
    return {
        "time": {g: v / total_time for g, v in time_by.items()},
        "flops": {g: v / total_flops for g, v in flops_by.items()} if total_flops else {},
    }


def render(out: Path) -> list[Path]:
    """Plots and summary.md of a compare directory, from its saved files only."""
    from lwprof.reports.plots import (plot_accuracy_vs_latency, plot_class_shares, plot_models_roofline, plot_precision_speedup,
                                      plot_proxy_scatter)
    from lwprof.runtime.roofline import DevicePeaks

    payload = json.loads((out / "compare.json").read_text())
    rows, backends = payload["rows"], payload["backends"]
    correlation = {c["backend"]: c for c in payload["correlations"]}
    written: list[Path] = []
    timed_backends = [b for b in backends if any(r.get(f"{b}_median_s") for r in rows)]
    # Fused memory access: the proxy README argues for (what a fusing runtime moves), not eager's.
    for proxy, stem in (("macs", "latency_vs_macs"), ("memory_bytes_fused", "latency_vs_memory")):
        if timed_backends:
            written += plot_proxy_scatter(rows, timed_backends, proxy, PROXY_TITLES[proxy], correlation, out / stem, payload["device"])
    if timed_backends:
        written += plot_accuracy_vs_latency(rows, timed_backends, out / "accuracy_vs_latency", payload["device"])
    shares = {}
    for row in rows:
        for backend in timed_backends:
            found = _op_class_shares(out / "models" / safe_name(row["spec"]), backend)
            if found:
                shares[(row["model"], backend)] = found
    if shares:
        written += plot_class_shares(shares, GROUP_ORDER, out / "time_vs_flops_by_class", payload["device"])
    peaks = {}
    for row in rows:
        profile_path = out / "models" / safe_name(row["spec"]) / "profile.json"
        if profile_path.exists():
            for backend, data in json.loads(profile_path.read_text()).get("roofline", {}).items():
                peaks.setdefault(backend, DevicePeaks.from_dict(data))
    if peaks and timed_backends:
        written += plot_models_roofline(rows, [b for b in timed_backends if b in peaks], peaks, out / "roofline_models",
                                        payload["device"])
    lowered = precision_keys(payload)
    if lowered:
        written += plot_precision_speedup(rows, lowered, out / "precision_speedup", payload["device"])
    summary = out / "summary.md"
    summary.write_text(summary_markdown(payload, [p for p in written if p.suffix == ".png"]))
    return written + [summary]


def precision_keys(payload: dict[str, Any]) -> list[str]:
    """The columns measured in a precision other than fp32 (``onnxruntime_int8``)."""
    return [k for k in payload["backends"] if any(r.get(f"{k}_speedup_vs_fp32") for r in payload["rows"])]


def _precision_markdown(payload: dict[str, Any]) -> list[str]:
    keys = precision_keys(payload)
    if not keys:
        return []
    lines = ["", "Lower precision against fp32 on the same backend (speedup: fp32 latency / this latency; size: the fp32 "
             "model file over this one; memory: fp32's memory access over this one's, counted on the graph it runs; conversions: share of per-layer time in quantize/dequantize/cast/layout nodes; "
             "agreement on the calibration inputs):", "",
             "| model | " + " | ".join(f"{k} speedup | size | memory | conversions | cosine | top-1 agree | float layers" for k in keys) + " |",
             "|---|" + "---|---|---|---|---|---|---|" * len(keys)]
    for r in payload["rows"]:
        cells = [r["model"]]
        for k in keys:
            meaningful = r.get(f"{k}_outputs_meaningful")
            cells += [fmt(r.get(f"{k}_speedup_vs_fp32"), 1, 2, "x"), fmt(r.get(f"{k}_size_ratio"), 1, 1, "x"),
                      fmt(r.get(f"{k}_memory_ratio_vs_fp32"), 1, 1, "x"),
                      fmt(r.get(f"{k}_conversion_time_share"), 0.01, 1, "%"),
                      fmt(r.get(f"{k}_cosine_vs_fp32"), 1, 3) + (" (meaningless)" if meaningful in (False, "False") else ""),
                      fmt(r.get(f"{k}_top1_agreement"), 0.01, 0, "%"), fmt(r.get(f"{k}_float_layers"), 1, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_markdown(payload: dict[str, Any], plots: list[Path]) -> str:
    backends = payload["backends"]
    env = payload.get("environment") or {}
    lines = [
        f"# lwprof compare on {payload['device']}",
        "",
        f"{len(payload['rows'])} models, threads {payload['threads']}, batch {payload['batch_size'] or 'model default'}"
        + (" — **partial (interrupted)**" if payload.get("partial") else "")
        + f". CPU: {env.get('cpu_model', '?')}; torch {env.get('versions', {}).get('torch', '?')}, "
        f"onnxruntime {env.get('versions', {}).get('onnxruntime', '?')}; {env.get('date_utc', '')}.",
        "",
        "| model | params M | MACs M | memory eager MB | memory fused MB | FLOP/byte | "
        + " | ".join(f"{b} ms (IQR) | {b} roofline eff. | {b} page faults per pass (tuned-allocator ms)" for b in backends)
        + " | top-1 % (published) |",
        "|---|---|---|---|---|---|" + "---|---|---|" * len(backends) + "---|",
    ]
    for r in payload["rows"]:
        cells = [
            r["model"], fmt(r.get("params"), 1e6), fmt(r.get("macs"), 1e6, 1), fmt(r.get("memory_bytes"), 1e6, 1),
            fmt(r.get("memory_bytes_fused"), 1e6, 1), fmt(r.get("arithmetic_intensity_flops_per_byte")),
        ]
        for b in backends:
            if r.get(f"{b}_median_s"):
                cells.append(f"{float(r[f'{b}_median_s']) * 1e3:.2f} ({float(r[f'{b}_iqr_s']) * 1e3:.2f})")
                cells.append(fmt(r.get(f"{b}_roofline_efficiency"), 0.01, 1, "%"))
                tuned = r.get(f"{b}_tuned_median_s")
                cells.append(fmt(r.get(f"{b}_minor_page_faults_per_pass"), 1, 0) + (f" ({float(tuned) * 1e3:.2f})" if tuned else ""))
            else:
                cells += ["skipped", "", ""]
        cells.append(fmt(r.get("published_top1_percent"), 1, 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Spearman rank correlation of measured latency with each proxy (1: ranks the models exactly as latency does):", ""]
    shown = shown_proxies(payload["correlations"])
    lines.append("| backend | models | " + " | ".join(PROXY_TITLES[p] for p in shown) + " |")
    lines.append("|---|---|" + "---|" * len(shown))
    for c in payload["correlations"]:
        lines.append(f"| {c['backend']} | {c['models']} | " + " | ".join(fmt(c.get(f'rho_{p}'), 1, 3) for p in shown) + " |")
    lines += _precision_markdown(payload)
    wall = payload.get("wall_time_split_s") or {}
    if wall:
        lines += ["", "Wall time: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in wall.items())]
    for plot in plots:
        lines += ["", f"![{plot.stem}]({plot.name})"]
    return "\n".join(lines) + "\n"


