"""How well a calibration predicts the zoo: predicted against measured latency.

The calibrations saw synthetic kernels and synthetic networks only, so every
zoo model is held out.
The measured side is a zoo run of the same machine (``lwprof compare --all``,
its ``compare.json`` and per-layer ``models/*/layers.csv``). Beside each
calibration's predictor, four baselines:

- FLOPs-linear (kernels): ``t = once + c * FLOPs`` with ``c`` fitted on the
  same calibration kernels (it sees what the predictor sees);
- FLOPs-linear (zoo fit): least squares of latency on FLOPs over the zoo
  itself: it sees the answers, so it is an upper bound for any FLOPs proxy;
- roofline bound: each kernel at the device's measured peaks (``max(FLOPs /
  peak, bytes / bandwidth)``), summed;
- roofline x per-type efficiency: each kernel's bound divided by its type's
  median efficiency over the calibration kernels.

    .venv/bin/python benchmarks/predict_accuracy.py CALIBRATION.json [...] --run RUN_DIR --out DIR [--reference-run DIR]

Writes ``accuracy.md`` (share within ±5% and ±10%, RMSPE, Spearman ρ, the
per-layer error distribution, every model), ``accuracy.json`` and
``predicted_vs_measured.png`` (log-log, ±10% band) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from _env import capture_environment, format_environment

from lwprof.core.stats import spearman

LAYER_FLOOR_S = 20e-6  # per-layer rows below this are left out: ORT's profiler counts whole microseconds


def scores(predicted: list[float], measured: list[float]) -> dict[str, float]:
    errors = [p / m - 1 for p, m in zip(predicted, measured)]
    return {"within_5": sum(abs(e) <= 0.05 for e in errors) / len(errors),
            "within_10": sum(abs(e) <= 0.10 for e in errors) / len(errors),
            "rmspe": math.sqrt(statistics.mean(e * e for e in errors)),
            "median_error": statistics.median(errors),
            "spearman": spearman(predicted, measured)}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def layer_times(run: Path, model: str, backend: str) -> dict[str, float]:
    path = run / "models" / model / "layers.csv"
    times: dict[str, float] = {}
    if path.is_file():
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row.get(f"{backend}_time_s"):
                    times[row["layer"]] = times.get(row["layer"], 0.0) + float(row[f"{backend}_time_s"])
    return times


def evaluate(calibration: Any, profiles: dict[str, Any], measured: dict[str, float], run: Path,
             earlier: dict[str, float] | None = None) -> dict[str, Any]:
    from lwprof.predict.calibrate import Sample
    from lwprof.predict.kernels import FEATURES
    from lwprof.runtime.roofline import DevicePeaks

    backend = calibration.backend
    samples = [Sample.from_dict(s) for s in calibration.samples]
    flops_index, bytes_index = FEATURES.index("flops"), FEATURES.index("memory_bytes")
    # seconds = c * FLOPs over the calibration kernels, least squares of relative error:
    # c = sum(f / t) / sum((f / t)^2).
    ratios = [s.features[flops_index] / s.seconds for s in samples]
    per_flop = sum(ratios) / sum(r * r for r in ratios)
    peaks = DevicePeaks.from_dict(calibration.peaks) if calibration.peaks else None

    def bound(features: list[float]) -> float:
        assert peaks is not None
        return max(features[flops_index] / peaks.peak_flops_per_s, features[bytes_index] / peaks.bandwidth_bytes_per_s)

    efficiency: dict[str, float] = {}
    if peaks is not None:
        by_type: dict[str, list[float]] = {}
        for s in samples:
            by_type.setdefault(s.kernel_type, []).append(bound(s.features) / s.seconds)
        efficiency = {t: statistics.median(v) for t, v in by_type.items()}

    rows, layer_errors = [], []
    for model, seconds in measured.items():
        prediction = calibration.predict(profiles[model])
        vectors = [k.vector() for k in prediction.kernels]
        flops = sum(v[flops_index] for v in vectors)
        row = {"model": model, "measured_s": seconds, "predicted_s": prediction.total_s, "flops": flops,
               "predicted_alone_s": calibration.predict(profiles[model], in_context=False).total_s,
               "kernels": len(vectors), "not_calibrated": prediction.unseen_types,
               "flops_linear_kernels_s": prediction.once_s + per_flop * flops}
        if peaks is not None:
            row["roofline_bound_s"] = sum(bound(v) for v in vectors)
            row["roofline_efficiency_s"] = prediction.once_s + sum(
                bound(v) / efficiency[k.type] for k, v in zip(prediction.kernels, vectors) if k.type in efficiency)
        if earlier is not None:
            row["earlier_measurement_s"] = earlier.get(model)
        rows.append(row)
        measured_layers = layer_times(run, model, backend)
        for kernel, predicted in zip(prediction.kernels, prediction.seconds):
            truth = sum(measured_layers.get(layer, 0.0) for layer in kernel.layers)
            if predicted is not None and truth >= LAYER_FLOOR_S:
                layer_errors.append((kernel.type, predicted / truth - 1))
    # FLOPs-linear fitted on the zoo itself (it sees the answers).
    mean_f = statistics.mean(r["flops"] for r in rows)
    mean_t = statistics.mean(r["measured_s"] for r in rows)
    slope = (sum((r["flops"] - mean_f) * (r["measured_s"] - mean_t) for r in rows)
             / sum((r["flops"] - mean_f) ** 2 for r in rows))
    for r in rows:
        r["flops_linear_zoo_s"] = mean_t + slope * (r["flops"] - mean_f)
    truth = [r["measured_s"] for r in rows]
    predictors = {"calibration (kernels)": "predicted_s",
                  "calibration, kernels alone (no network context)": "predicted_alone_s",
                  "FLOPs-linear (kernels)": "flops_linear_kernels_s",
                  "FLOPs-linear (zoo fit, sees the answers)": "flops_linear_zoo_s"}
    if peaks is not None:
        predictors.update({"roofline bound": "roofline_bound_s", "roofline x per-type efficiency": "roofline_efficiency_s"})
    table = {name: scores([r[key] for r in rows], truth) for name, key in predictors.items()}
    if earlier is not None:
        # The same models measured again: how far the measurement itself moves bounds any predictor.
        again = [r for r in rows if r.get("earlier_measurement_s")]
        table["an earlier measurement (same machine, --reference-run)"] = scores(
            [r["earlier_measurement_s"] for r in again], [r["measured_s"] for r in again])
    by_type: dict[str, list[float]] = {}
    for kernel_type, error in layer_errors:
        by_type.setdefault(kernel_type, []).append(error)
    layers = {kernel_type: {"kernels": len(errors), "median_error": statistics.median(errors),
                            "p10": quantile(errors, 0.1), "p90": quantile(errors, 0.9),
                            "within_20": sum(abs(e) <= 0.2 for e in errors) / len(errors)}
              for kernel_type, errors in sorted(by_type.items(), key=lambda item: -len(item[1]))}
    everything = [e for _, e in layer_errors]
    layers["(all)"] = {"kernels": len(everything), "median_error": statistics.median(everything),
                       "p10": quantile(everything, 0.1), "p90": quantile(everything, 0.9),
                       "within_20": sum(abs(e) <= 0.2 for e in everything) / len(everything)}
    return {"backend": backend, "calibration": calibration.describe(), "table": table, "layers": layers, "rows": rows}


def markdown(results: list[dict[str, Any]], command: str, run: Path) -> list[str]:
    lines = ["# Latency prediction: zoo models held out", "",
             f"Generated by `{command}`. Measured side: `{run}` (`compare.json`, end to end; per-layer rows for the "
             "layer errors). Every zoo model is held out: calibration timed synthetic kernels and networks only.", ""]
    for result in results:
        lines += [f"## {result['backend']}", "", result["calibration"], "",
                  "| predictor | within ±5% | within ±10% | median error | RMSPE | Spearman ρ |",
                  "|---|---|---|---|---|---|"]
        for name, f in result["table"].items():
            lines.append(f"| {name} | {f['within_5']:.0%} | {f['within_10']:.0%} | {f['median_error']:+.1%} | "
                         f"{f['rmspe']:.1%} | {f['spearman']:.3f} |")
        lines += ["", f"Per kernel, against the runtime's per-layer rows of at least {LAYER_FLOOR_S * 1e6:.0f} us "
                      "(error = predicted / measured - 1):", "",
                  "| kernel type | kernels | median error | p10 | p90 | within ±20% |", "|---|---|---|---|---|---|"]
        for kernel_type, f in result["layers"].items():
            lines.append(f"| {kernel_type} | {f['kernels']} | {f['median_error']:+.0%} | {f['p10']:+.0%} | "
                         f"{f['p90']:+.0%} | {f['within_20']:.0%} |")
        lines += ["", "| model | measured ms | predicted ms | error | not calibrated |", "|---|---|---|---|---|"]
        for r in sorted(result["rows"], key=lambda r: r["predicted_s"] / r["measured_s"]):
            lines.append(f"| {r['model']} | {r['measured_s'] * 1e3:.3f} | {r['predicted_s'] * 1e3:.3f} | "
                         f"{r['predicted_s'] / r['measured_s'] - 1:+.1%} | {', '.join(r['not_calibrated'])} |")
        lines.append("")
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(results), figsize=(5.2 * len(results), 5.2), squeeze=False)
    for axes, result in zip(panels[0], results):
        measured = [r["measured_s"] * 1e3 for r in result["rows"]]
        predicted = [r["predicted_s"] * 1e3 for r in result["rows"]]
        low, high = min(measured + predicted) * 0.8, max(measured + predicted) * 1.25
        axes.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="gray", alpha=0.25,
                          label="±10%")
        axes.plot([low, high], [low, high], "k-", linewidth=0.8)
        axes.loglog(measured, predicted, "o", markersize=4, label="calibration (kernels)")
        figures = result["table"]["calibration (kernels)"]
        axes.set_title(f"{result['backend']}: {len(measured)} zoo models, {figures['within_10']:.0%} within ±10%, "
                       f"ρ {figures['spearman']:.3f}", fontsize=9)
        axes.set_xlabel("measured ms")
        axes.set_ylabel("predicted ms")
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibrations", type=Path, nargs="+")
    parser.add_argument("--run", type=Path, required=True, help="a `lwprof compare --all` folder of this machine")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference-run", type=Path,
                        help="an earlier `lwprof compare` of the same machine: scored as a predictor, it shows how far "
                             "the measurement itself moves between runs")
    args = parser.parse_args()

    from lwprof.counting.engine import profile_module
    from lwprof.models import create_model, get_model_info
    from lwprof.predict.calibration import Calibration

    run = json.loads((args.run / "compare.json").read_text())
    calibrations = [Calibration.load(path) for path in args.calibrations]
    needed = {row["model"] for row in run["rows"] for c in calibrations if row.get(f"{c.backend}_median_s")}
    profiles = {}
    for model in sorted(needed):
        print(f"counting {model}", file=sys.stderr)
        profiles[model] = profile_module(create_model(model).eval(), tuple(get_model_info(model).input_shape), name=model)
    results = []
    for calibration in calibrations:
        measured = {row["model"]: row[f"{calibration.backend}_median_s"] for row in run["rows"]
                    if row.get(f"{calibration.backend}_median_s")}
        earlier = None
        if args.reference_run is not None:
            reference = json.loads((args.reference_run / "compare.json").read_text())
            earlier = {row["model"]: row[f"{calibration.backend}_median_s"] for row in reference["rows"]
                       if row.get(f"{calibration.backend}_median_s")}
        results.append(evaluate(calibration, profiles, measured, args.run, earlier))
    args.out.mkdir(parents=True, exist_ok=True)
    command = ("benchmarks/predict_accuracy.py " + " ".join(map(str, args.calibrations)) + f" --run {args.run} --out {args.out}"
               + (f" --reference-run {args.reference_run}" if args.reference_run else ""))
    lines = markdown(results, command, args.run)
    lines += ["## Environment of this evaluation", "", *format_environment(capture_environment())]
    (args.out / "accuracy.md").write_text("\n".join(lines) + "\n")
    (args.out / "accuracy.json").write_text(json.dumps({"command": command, "results": results,
                                                        "environment": capture_environment()}, indent=1) + "\n")
    plot(results, args.out / "predicted_vs_measured.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
