"""Two saved runs side by side: ``lwprof diff RUN_A RUN_B``.

Both are profile run directories (``profile.json``, ``layers.csv``,
``latency.csv``) or both compare folders (``compare.json``). Everything is
read from the saved files; nothing is measured.

- Per backend (a backend, or backend_precision), end to end: the ratio of
  B's median to A's, with a 95% confidence interval of that ratio from both
  runs' raw samples (a seeded bootstrap of the two medians); a compare
  folder keeps no raw samples, so its ratios have none.
- Per layer, matched by name (layers of one run only are listed): each
  backend's time in A and in B, their ratio, and whether the layer's counts
  (FLOPs, memory access) changed or only its time did.
- Per model, for compare folders: each backend's ratio.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.reports.profile_run import read_layer_rows
from lwprof.runtime.precision import result_key

BOOTSTRAP_ROUNDS = 2000


def kind_of(run: Path) -> str:
    if (run / "compare.json").is_file():
        return "compare"
    if (run / "profile.json").is_file() and (run / "layers.csv").is_file():
        return "profile"
    raise LwprofError(f"{run} holds neither compare.json nor profile.json + layers.csv: not an lwprof run directory")


def ratio_interval(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(b) / median(a)."""
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(b, k=len(b))) / statistics.median(rng.choices(a, k=len(a)))
                    for _ in range(BOOTSTRAP_ROUNDS))
    return ratios[int(0.025 * BOOTSTRAP_ROUNDS)], ratios[int(0.975 * BOOTSTRAP_ROUNDS) - 1]


def _samples(run: Path) -> dict[str, list[float]]:
    """Raw end-to-end samples per backend key (default allocator, first batch size)."""
    path = run / "latency.csv"
    result: dict[str, list[float]] = {}
    if path.is_file():
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        first = rows[0]["batch_size"] if rows else None
        for row in rows:
            if row["batch_size"] == first and row.get("allocator", "default") in ("default", ""):
                key = result_key(row["backend"], row.get("precision", "fp32"))
                result.setdefault(key, []).append(float(row["latency_s"]))
    return result


def _layers(run: Path) -> list[dict[str, Any]]:
    """The layer rows of the run's first batch size, numbers as numbers."""
    rows = read_layer_rows(run / "layers.csv")
    first = rows[0]["batch_size"] if rows else None
    return [r for r in rows if r["batch_size"] == first]


def _medians(saved: dict[str, Any]) -> dict[str, float]:
    return {result_key(r["backend"], r.get("precision", "fp32")): r["median_s"] for r in saved["results"] if r.get("median_s")}


def diff_profiles(a: Path, b: Path) -> dict[str, Any]:
    saved_a, saved_b = (json.loads((run / "profile.json").read_text()) for run in (a, b))
    medians_a, medians_b = _medians(saved_a), _medians(saved_b)
    keys = [k for k in medians_a if k in medians_b]
    if not keys:
        raise LwprofError(f"{a} and {b} have no measured backend in common ({', '.join(medians_a) or 'none'} vs "
                          f"{', '.join(medians_b) or 'none'})")
    samples_a, samples_b = _samples(a), _samples(b)
    end_to_end = []
    for key in keys:
        row = {"backend": key, "a_median_s": medians_a[key], "b_median_s": medians_b[key],
               "ratio": medians_b[key] / medians_a[key], "ci95_low": None, "ci95_high": None}
        if samples_a.get(key) and samples_b.get(key):
            row["ci95_low"], row["ci95_high"] = ratio_interval(samples_a[key], samples_b[key])
        end_to_end.append(row)
    layers_a, layers_b = _layers(a), _layers(b)
    by_name_b = {r["layer"]: r for r in layers_b}
    names_a = {r["layer"] for r in layers_a}
    layers = []
    for row_a in layers_a:
        row_b = by_name_b.get(row_a["layer"])
        if row_b is None:
            continue
        counts_changed = any(row_a.get(c) != row_b.get(c) for c in ("flops", "memory_bytes"))
        entry: dict[str, Any] = {"layer": row_a["layer"], "op_class": row_a.get("op_class", ""),
                                 "counts_changed": counts_changed}
        for key in keys:
            time_a, time_b = row_a.get(f"{key}_time_s"), row_b.get(f"{key}_time_s")
            entry[f"{key}_a_s"], entry[f"{key}_b_s"] = time_a, time_b
            entry[f"{key}_ratio"] = time_b / time_a if time_a and time_b else None
            entry[f"{key}_change_s"] = (time_b or 0.0) - (time_a or 0.0) if time_a or time_b else None
        layers.append(entry)
    return {"kind": "profile", "a": str(a), "b": str(b), "model_a": saved_a["model"], "model_b": saved_b["model"],
            "backends": keys, "end_to_end": end_to_end, "layers": layers,
            "only_in_a": [r["layer"] for r in layers_a if r["layer"] not in by_name_b],
            "only_in_b": [r["layer"] for r in layers_b if r["layer"] not in names_a]}


def diff_compares(a: Path, b: Path) -> dict[str, Any]:
    saved_a, saved_b = (json.loads((run / "compare.json").read_text()) for run in (a, b))
    keys = [k for k in saved_a["backends"] if k in saved_b["backends"]]
    rows_b = {r["model"]: r for r in saved_b["rows"]}
    models = []
    for row_a in saved_a["rows"]:
        row_b = rows_b.get(row_a["model"])
        if row_b is None:
            continue
        entry: dict[str, Any] = {"model": row_a["model"],
                                 "counts_changed": any(row_a.get(c) != row_b.get(c) for c in ("flops", "memory_bytes"))}
        for key in keys:
            median_a, median_b = row_a.get(f"{key}_median_s"), row_b.get(f"{key}_median_s")
            entry[f"{key}_a_s"], entry[f"{key}_b_s"] = median_a, median_b
            entry[f"{key}_ratio"] = median_b / median_a if median_a and median_b else None
        models.append(entry)
    if not models:
        raise LwprofError(f"{a} and {b} have no model in common")
    names_a = {r["model"] for r in saved_a["rows"]}
    summary = []
    for key in keys:
        ratios = [m[f"{key}_ratio"] for m in models if m[f"{key}_ratio"]]
        if ratios:
            summary.append({"backend": key, "models": len(ratios), "median_ratio": statistics.median(ratios),
                            "within_10": sum(abs(r - 1) <= 0.10 for r in ratios) / len(ratios),
                            "min_ratio": min(ratios), "max_ratio": max(ratios)})
    return {"kind": "compare", "a": str(a), "b": str(b), "backends": keys, "summary": summary, "models": models,
            "only_in_a": [r["model"] for r in saved_a["rows"] if r["model"] not in rows_b],
            "only_in_b": [r["model"] for r in saved_b["rows"] if r["model"] not in names_a]}


def diff_runs(a: Path, b: Path) -> dict[str, Any]:
    kinds = kind_of(a), kind_of(b)
    if kinds[0] != kinds[1]:
        raise LwprofError(f"{a} is a {kinds[0]} run and {b} a {kinds[1]} run: diff compares two of the same kind")
    return diff_profiles(a, b) if kinds[0] == "profile" else diff_compares(a, b)


def plot_diff(result: dict[str, Any], path: Path) -> Path:
    """Per-layer (or per-model) time of A against B, log-log, one colour per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["layers"] if result["kind"] == "profile" else result["models"]
    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    points: list[float] = []
    for key in result["backends"]:
        pairs = [(r[f"{key}_a_s"] * 1e3, r[f"{key}_b_s"] * 1e3) for r in rows if r.get(f"{key}_a_s") and r.get(f"{key}_b_s")]
        if pairs:
            axes.loglog([p[0] for p in pairs], [p[1] for p in pairs], "o", markersize=3, alpha=0.7, label=key)
            points += [v for p in pairs for v in p]
    if points:
        low, high = min(points) * 0.8, max(points) * 1.25
        axes.plot([low, high], [low, high], "k-", linewidth=0.8)
    unit = "layer" if result["kind"] == "profile" else "model"
    axes.set_xlabel(f"A: {result['a']} (ms per {unit})", fontsize=8)
    axes.set_ylabel(f"B: {result['b']} (ms per {unit})", fontsize=8)
    axes.set_title(f"per-{unit} time, B against A", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
