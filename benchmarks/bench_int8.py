"""Does ``lwprof profile --precision fp32,int8`` report the int8 speedup a user gets?

Target (issue "Precision"): lwprof's ONNX Runtime int8 speedup over fp32 within
±15% of a bare ``onnxruntime`` loop's on a model quantized by hand with the
same settings (``reference_int8.py``: lwprof's fp32 export quantized by hand
with ``quant_pre_process`` + ``quantize_static`` U8S8 per-channel MinMax on the
same seeded inputs, fp32 and int8 each timed by a bare loop in a fresh
process, back to back).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_int8.py [--models mobilenet_v2_100 ...] [--pairs 3]

Method: per model, one untimed lwprof run fills the export and quantization
caches; then ``--pairs`` pairs of (lwprof run, reference run), the side that
goes first alternating. A pair's figure is lwprof's speedup over the
reference's; a model's deviation is the median over its pairs, minus 1.
Results: ``reports/benchmarks/int8/`` (results.json with every raw figure and
the environment, summary.md). Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _env import REPO_ROOT, capture_environment, format_environment, timed_step

DEFAULT_MODELS = ["mobilenet_v2_100", "mobilenet_v3_large_100", "shufflenet_v2_100", "resnet18"]
TARGET_DEVIATION = 0.15
REFERENCE = Path(__file__).resolve().parent / "reference_int8.py"
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "int8"
MEASURED_SOURCES = [
    "profiler/runtime/precision.py",
    "profiler/runtime/backends/_ort_quantize.py",
    "profiler/runtime/backends/onnx_runtime.py",
    "profiler/commands/profile_job.py",
    "benchmarks/reference_int8.py",
]


def _op_counts(path: Path) -> dict[str, int]:
    import collections

    import onnx

    return dict(collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node))


def lwprof_run(model: str, cache: Path, reports: Path, threads: int) -> dict[str, Any]:
    step = timed_step([sys.executable, "-m", "lwprof", "profile", model, "--backend", "onnxruntime", "--precision", "fp32,int8",
                 "--threads", str(threads), "--layer-runs", "0", "--no-plots", "--format", "json",
                 "--reports-dir", str(reports), "--cache-dir", str(cache)])
    payload = step.pop("output")
    if payload is not None:
        results = {r["precision"]: r for r in payload["results"]}
        step["fp32_median_s"] = results["fp32"].get("median_s")
        step["int8_median_s"] = results["int8"].get("median_s")
        step["speedup"] = results["int8"].get("speedup_vs_fp32")
        step["cosine_vs_fp32"] = results["int8"].get("cosine_vs_fp32")
        step["float_layers"] = results["int8"].get("float_layers")
        record = (results["int8"].get("info") or {}).get("quantization") or {}
        step["fp32_onnx_path"] = record.get("fp32_onnx_path")
        step["int8_onnx_path"] = record.get("int8_onnx_path")
    return step


def reference_run(model: str, folder: Path, threads: int, min_time: float) -> dict[str, Any]:
    """fp32 then int8, each a fresh process timing one file; the speedup is their ratio."""
    step: dict[str, Any] = {}
    for precision in ("fp32", "int8"):
        timed = timed_step([sys.executable, str(REFERENCE), "time", model, str(folder / f"{precision}.onnx"),
                      "--threads", str(threads), "--min-time", str(min_time)])
        output = timed.pop("output")
        step[precision] = timed
        if output is None:
            return step
        step[f"{precision}_median_s"] = output["median_s"]
    step["speedup"] = step["fp32_median_s"] / step["int8_median_s"]
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as scratch:
        cache, reports = Path(scratch) / "cache", Path(scratch) / "reports"
        for model in args.models:
            print(f"{model}: warming the caches, quantizing the reference by hand", file=sys.stderr, flush=True)
            warm = lwprof_run(model, cache, reports, args.threads)
            folder = Path(scratch) / "reference" / model
            made = timed_step([sys.executable, str(REFERENCE), "quantize", model, str(folder), "--onnx", str(warm.get("fp32_onnx_path"))])
            if made.get("output") is None:
                results[model] = {"error": made.get("error")}
                continue
            same_graph = _op_counts(folder / "int8.onnx") == _op_counts(Path(warm["int8_onnx_path"]))
            pairs = []
            for index in range(args.pairs):
                order = ("lwprof", "reference") if index % 2 == 0 else ("reference", "lwprof")
                pair = {}
                for side in order:
                    pair[side] = lwprof_run(model, cache, reports, args.threads) if side == "lwprof" else reference_run(model, folder, args.threads, args.min_time)
                if pair["lwprof"].get("speedup") and pair["reference"].get("speedup"):
                    pair["ratio"] = pair["lwprof"]["speedup"] / pair["reference"]["speedup"]
                print(f"  pair {index + 1}: lwprof {pair['lwprof'].get('speedup')}, reference {pair['reference'].get('speedup')}",
                      file=sys.stderr, flush=True)
                pairs.append(pair)
            ratios = [p["ratio"] for p in pairs if "ratio" in p]
            results[model] = {
                "same_int8_graph": same_graph,  # the hand-quantized file has lwprof's node counts
                "pairs": pairs,
                "deviation": statistics.median(ratios) - 1 if ratios else None,
                "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "lwprof_speedup_median": statistics.median(p["lwprof"]["speedup"] for p in pairs if p["lwprof"].get("speedup")),
                "reference_speedup_median": statistics.median(p["reference"]["speedup"] for p in pairs if p["reference"].get("speedup")),
            }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"target_deviation": TARGET_DEVIATION, "models": results,
                                                        "environment": environment}, indent=2) + "\n")
    lines = ["# int8 speedup: lwprof against a hand-quantized bare ONNX Runtime loop", "",
             f"Target: lwprof's int8/fp32 speedup within ±{TARGET_DEVIATION:.0%} of the reference's "
             f"(median over {args.pairs} alternating pairs per model).", "",
             "| model | lwprof speedup | reference speedup | deviation | pair ratios | within target | same int8 graph |",
             "|---|---|---|---|---|---|---|"]
    for model, r in results.items():
        if "error" in r:
            lines.append(f"| {model} | failed: {r['error']} | | | | | |")
            continue
        within = r["deviation"] is not None and abs(r["deviation"]) <= TARGET_DEVIATION
        lines.append(f"| {model} | {r['lwprof_speedup_median']:.2f}x | {r['reference_speedup_median']:.2f}x | "
                     f"{r['deviation']:+.1%} | {r['ratio_min']:.2f}-{r['ratio_max']:.2f} | {'yes' if within else 'no'} | "
                     f"{'yes' if r['same_int8_graph'] else 'no'} |")
    lines += ["", "Environment:", *format_environment(environment), ""]
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
