"""Plots of measured runs (matplotlib, Agg backend, PNG and SVG).

Each function takes plain records (what the run files hold), so a report can
be re-drawn from saved CSV/JSON without measuring again. Every figure carries
its title, axis units and legend: it must read without the terminal output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OTHER = "other layers"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})  # reproducible SVG
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _compact(value: float) -> str:
    """A short tick label: 2, 50, 300k, 20M, 1.5G."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _readable_log_axis(axis: Any) -> None:
    """Ticks at 1, 2 and 5 times powers of ten (powers of ten alone past three
    decades) with short labels, the minor ones unlabelled: matplotlib's
    default labels minor ticks on a short log axis, and they run into each
    other."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.autoscale_view()
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else 10.0
    # 1-2-5 over up to about three decades; beyond, powers of ten alone still fit a narrow panel.
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value)))
    axis.set_minor_formatter(NullFormatter())


def _label_without_overlap(ax: Any, labels: list[tuple[str, float, float]]) -> int:
    """Label the points in the order given (most telling first), leaving out
    any label whose box would overlap one already placed or a plot edge;
    returns how many were placed."""
    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for text, x, y in labels:
        # Above right of the point, else above left, below right, below left.
        for dx, dy, align in ((3, 3, "left"), (-3, 3, "right"), (3, -9, "left"), (-3, -9, "right")):
            label = ax.annotate(text, (x, y), fontsize=6, xytext=(dx, dy), textcoords="offset points", ha=align)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
    return len(placed)


def _by_residual(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Points ordered by how far each lies from the log-log least-squares
    line through all of them: the outliers first."""
    import numpy as np

    if len(points) < 2:
        return points
    xs, ys = np.log([x for _, x, _ in points]), np.log([y for _, _, y in points])
    slope, intercept = np.polyfit(xs, ys, 1) if np.ptp(xs) else (0.0, ys.mean())
    residual = np.abs(ys - slope * xs - intercept)
    return [points[i] for i in np.argsort(-residual, kind="stable")]


def plot_time_vs_flop_share(rows: list[dict[str, Any]], stem: Path, title: str, top: int = 20) -> list[Path]:
    """Horizontal bars per layer: share of time (per backend) next to share of
    FLOPs and of memory access; the top layers by time, the rest summed."""
    plt = _pyplot()
    backends = sorted({b for r in rows for b, t in r["time_s"].items() if t})
    total_time = {b: sum(r["time_s"].get(b) or 0.0 for r in rows) or 1.0 for b in backends}
    total_flops = sum(r["flops"] for r in rows) or 1
    total_bytes = sum(r["memory_bytes"] for r in rows) or 1
    key = backends[0] if backends else None
    ranked = sorted(rows, key=lambda r: -(r["time_s"].get(key) or 0.0)) if key else list(rows)
    shown, rest = ranked[:top], ranked[top:]
    labels = [r["layer"] for r in shown]
    series: dict[str, list[float]] = {}
    for b in backends:
        series[f"time, {b}"] = [(r["time_s"].get(b) or 0.0) / total_time[b] for r in shown]
    series["FLOPs"] = [r["flops"] / total_flops for r in shown]
    series["memory access"] = [r["memory_bytes"] / total_bytes for r in shown]
    if rest:
        labels.append(f"{OTHER} ({len(rest)})")
        for b in backends:
            series[f"time, {b}"].append(sum(r["time_s"].get(b) or 0.0 for r in rest) / total_time[b])
        series["FLOPs"].append(sum(r["flops"] for r in rest) / total_flops)
        series["memory access"].append(sum(r["memory_bytes"] for r in rest) / total_bytes)

    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5))
    for i, (name, values) in enumerate(series.items()):
        positions = [j + i * height for j in range(len(labels))]
        ax.barh(positions, [v * 100 for v in values], height=height, label=name)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the model total (%)")
    ax.set_title(f"{title}\nwhere time goes vs where FLOPs and memory access go (top {len(shown)} layers by time)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, stem)


def plot_roofline(points: list[dict[str, Any]], peaks_by_backend: dict[str, Any], stem: Path, title: str) -> list[Path]:
    """Layers on the roofline: achieved FLOP/s against arithmetic intensity,
    log-log, with each backend's ceiling min(peak, bandwidth x intensity)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    intensities = [p["intensity"] for p in points if p["intensity"]]
    low = min(intensities + [0.1]) / 2
    high = max(intensities + [100.0]) * 2
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for i, (backend, peaks) in enumerate(sorted(peaks_by_backend.items())):
        xs = [low * (high / low) ** (k / 200) for k in range(201)]
        ys = [min(peaks.peak_flops_per_s, peaks.bandwidth_bytes_per_s * x) for x in xs]
        ax.plot(xs, ys, linestyle="-" if i == 0 else "--", color="black", linewidth=1.2,
                label=f"{backend} roof: {peaks.peak_flops_per_s / 1e9:.0f} GFLOP/s, {peaks.bandwidth_bytes_per_s / 1e9:.1f} GB/s")
        ax.axvline(peaks.ridge_intensity, color="grey", linestyle=":", linewidth=0.8)
    from matplotlib.lines import Line2D

    classes = sorted({p["op_class"] or "other" for p in points})
    colors = {c: plt.cm.tab20(i % 20) for i, c in enumerate(classes)}
    backends = sorted({p["backend"] for p in points})
    for bi, backend in enumerate(backends):
        for op_class in classes:
            chosen = [p for p in points if p["backend"] == backend and (p["op_class"] or "other") == op_class]
            if chosen:
                ax.scatter([p["intensity"] for p in chosen], [p["achieved_flops_per_s"] for p in chosen],
                           color=colors[op_class], marker=markers[bi % len(markers)], s=22, alpha=0.8)
    # One legend entry per colour and one per marker, not one per (colour, marker): a zoo on four
    # backends would list a hundred pairs over the plot.
    handles = [Line2D([], [], linestyle="", marker="o", color=colors[c], label=c) for c in classes]
    handles += [Line2D([], [], linestyle="", marker=markers[i % len(markers)], color="grey", label=f"marker: {b}")
                for i, b in enumerate(backends)]
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_axis(ax.xaxis)
    _readable_log_axis(ax.yaxis)
    ax.set_xlabel("arithmetic intensity (FLOP / byte of memory access)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"{title}\n(dotted: ridge points; below the slope: memory-bound, under the flat roof: compute-bound)")
    roofs, _ = ax.get_legend_handles_labels()
    entries = roofs + handles
    ax.legend(handles=entries, fontsize=7, ncol=1 if len(entries) <= 24 else 2, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.grid(which="both", alpha=0.2)
    return _save(fig, stem)


def plot_guideline_table(table: int, rows: list[dict[str, Any]], stem: Path, config: str, device: str) -> list[Path]:
    """Measured vs paper throughput, both normalised to the table's first row,
    one group of bars per configuration and scale."""
    plt = _pyplot()
    backends = sorted({r["backend"] for r in rows})
    keys = list(dict.fromkeys((r["row"], r["scale"]) for r in rows))
    labels = [f"{row} x{scale}" for row, scale in keys]
    series: dict[str, list[float]] = {f"paper ({config})": []}
    for b in backends:
        series[f"measured, {b} on {device}"] = []
    for row, scale in keys:
        matching = [r for r in rows if r["row"] == row and r["scale"] == scale]
        series[f"paper ({config})"].append(matching[0].get("paper_normalized") or 0.0)
        for b in backends:
            found = next((r for r in matching if r["backend"] == b), None)
            series[f"measured, {b} on {device}"].append((found or {}).get("measured_normalized") or 0.0)
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(labels) + 2), 5))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(labels))], values, width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("throughput relative to the table's first row (same scale)")
    ax.set_title(f"ShuffleNet V2 Table {table}: measured vs paper, normalised")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


# ---------------------------------------------------------------------------
# Comparisons of models (``lwprof compare`` / ``lwprof report``)


def _family_styles(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One scatter style per family. Ten colours times marker shapes, so the
    whole zoo's 26 families never share a look (tab20's paired shades do)."""
    import matplotlib.pyplot as plt

    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    families = sorted({r.get("family") or r["model"] for r in rows})
    return {f: {"color": plt.cm.tab10(i % 10), "marker": markers[(i // 10) % len(markers)]} for i, f in enumerate(families)}


def _family_legend(axes: Any) -> None:
    """One legend for all panels, right of the last one: with the whole zoo a
    legend inside a panel covers its points."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    axes[-1].legend(list(entries.values()), list(entries), fontsize=6, ncol=1 if len(entries) <= 22 else 2,
                    loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def plot_proxy_scatter(rows: list[dict[str, Any]], backends: list[str], proxy: str, proxy_title: str,
                       correlation: dict[str, dict[str, Any]], stem: Path, device: str) -> list[Path]:
    """Latency against one proxy (MACs, memory access), log axes, one panel per
    backend, labelled points, one colour per family, Spearman rho in the title."""
    plt = _pyplot()
    styles = _family_styles(rows)
    fig, axes = plt.subplots(1, len(backends), figsize=(7 * len(backends) + 2, 6), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        seen = set()
        points = []
        for r in rows:
            latency = r.get(f"{backend}_median_s")
            if not latency or not r.get(proxy):
                continue
            family = r.get("family") or r["model"]
            ax.scatter(float(r[proxy]), float(latency) * 1e3, s=30, **styles[family],
                       label=family if family not in seen else None)
            seen.add(family)
            points.append((r["model"], float(r[proxy]), float(latency) * 1e3))
        rho = correlation.get(backend, {}).get(f"rho_{proxy}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _readable_log_axis(ax.xaxis)
        _readable_log_axis(ax.yaxis)
        # The models furthest from the trend first; a label that would overlap another is left out.
        _label_without_overlap(ax, _by_residual(points))
        ax.set_xlabel(f"{proxy_title} ({'bytes' if 'memory' in proxy else 'count'}, log)")
        ax.set_ylabel(f"measured latency on {device}, {backend} (ms, log)")
        ax.set_title(f"{backend}: latency vs {proxy_title}, Spearman ρ = {'n/a' if rho is None else f'{rho:.2f}'}")
        ax.grid(which="both", alpha=0.2)
    _family_legend(axes[0])
    return _save(fig, stem)


def plot_accuracy_vs_latency(rows: list[dict[str, Any]], backends: list[str], stem: Path, device: str) -> list[Path]:
    """Published ImageNet top-1 against measured latency, with this device's
    Pareto frontier (no model both faster and more accurate)."""
    from lwprof.core.stats import pareto_front

    plt = _pyplot()
    styles = _family_styles(rows)
    fig, axes = plt.subplots(1, len(backends), figsize=(7 * len(backends) + 2, 6), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        points = [(r["model"], float(r[f"{backend}_median_s"]) * 1e3, float(r["published_top1_percent"]), r.get("family") or r["model"])
                  for r in rows if r.get(f"{backend}_median_s") and r.get("published_top1_percent") not in (None, "")]
        seen = set()
        for name, latency, top1, family in points:
            ax.scatter(latency, top1, s=30, **styles[family], label=family if family not in seen else None)
            seen.add(family)
        front = pareto_front([(n, lat, acc) for n, lat, acc, _ in points])
        by_name = {n: (lat, acc) for n, lat, acc, _ in points}
        if front:
            ax.step([by_name[n][0] for n in front], [by_name[n][1] for n in front], where="post", color="black",
                    linewidth=1, label="Pareto frontier on this device")
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis)
        # The frontier's models first, then the rest from fastest; a label that would overlap is left out.
        rest = sorted((p for p in points if p[0] not in front), key=lambda p: p[1])
        _label_without_overlap(ax, [(n, *by_name[n]) for n in front] + [(n, lat, acc) for n, lat, acc, _ in rest])
        ax.set_xlabel(f"measured latency on {device}, {backend} (ms, log)")
        ax.set_ylabel("ImageNet top-1 (%), as published in each paper (not measured)")
        ax.set_title(f"{backend}: accuracy vs latency")
        ax.grid(alpha=0.2)
    _family_legend(axes[0])
    return _save(fig, stem)


def plot_precision_speedup(rows: list[dict[str, Any]], keys: list[str], stem: Path, device: str) -> list[Path]:
    """Per model, the latency speedup of each precision over fp32 on the same
    backend (bars; 1 = no gain), models in the rows' order, the size ratio named."""
    plt = _pyplot()
    models = [r for r in rows if any(r.get(f"{k}_speedup_vs_fp32") for k in keys)]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(models) * len(keys) + 1.5))
    height = 0.8 / len(keys)
    for index, key in enumerate(keys):
        positions = [i + index * height for i in range(len(models))]
        values = [float(r.get(f"{key}_speedup_vs_fp32") or 0) for r in models]
        ax.barh(positions, values, height=height, label=key.replace("_", " "), color=plt.cm.tab10(index % 10))
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], [r["model"] for r in models], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"speedup over fp32 on the same backend, {device} (measured; > 1: faster)")
    ax.set_title("What lower precision buys each model here")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, stem)


def plot_class_shares(shares: dict[tuple[str, str], dict[str, dict[str, float]]], groups: list[str], stem: Path, device: str) -> list[Path]:
    """Per model and backend: stacked bars of time share by op class next to the
    FLOP share of the same classes ("FLOPs are not latency")."""
    plt = _pyplot()
    keys = list(shares)
    labels = []
    time_rows, flop_rows = [], []
    for model, backend in keys:
        labels.append(f"{model}\n{backend}")
        time_rows.append([shares[(model, backend)]["time"].get(g, 0.0) for g in groups])
        flop_rows.append([shares[(model, backend)]["flops"].get(g, 0.0) for g in groups])
    colors = [plt.cm.tab10(i % 10) for i in range(len(groups))]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(keys) + 2), 6))
    width = 0.38
    for side, (rows, offset, hatch) in enumerate(((time_rows, -width / 2, ""), (flop_rows, width / 2, "//"))):
        bottoms = [0.0] * len(keys)
        for gi, group in enumerate(groups):
            values = [row[gi] * 100 for row in rows]
            ax.bar([i + offset for i in range(len(keys))], values, width, bottom=bottoms, color=colors[gi], hatch=hatch,
                   edgecolor="white", label=group if side == 0 else None)
            bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("share of the model total (%)")
    ax.set_title(f"Time share by op class (left bar, plain) vs FLOP share (right bar, hatched) on {device}")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return _save(fig, stem)


def plot_models_roofline(rows: list[dict[str, Any]], backends: list[str], peaks_by_backend: dict[str, Any], stem: Path, device: str) -> list[Path]:
    """Each model as one point per backend on that backend's roofline."""
    points = []
    for r in rows:
        for backend in backends:
            latency = r.get(f"{backend}_median_s")
            memory = r.get("memory_bytes_fused" if backend == "onnxruntime" else "memory_bytes")
            if latency and memory and r.get("flops"):
                points.append({"layer": r["model"], "intensity": float(r["flops"]) / float(memory),
                               "achieved_flops_per_s": float(r["flops"]) / float(latency), "backend": backend,
                               "op_class": r.get("family") or "model"})
    return plot_roofline(points, peaks_by_backend, stem, f"models on the roofline of {device} (colour: family)")
