"""Do ``lwprof profile --backend openvino``, ``inductor`` and ``executorch`` report the latency each runtime's own loop sees?

Target (issue "The runtimes people deploy with"): lwprof's median within ±5%
of a bare loop on the runtime's own API in a fresh process
(``reference_runtimes.py``: ``benchmark_app``'s latency mode by hand for
OpenVINO, a ``torch.compile``'d module under ``Timer.blocked_autorange`` for
inductor, its own ``.pte`` export and a ``Method.execute`` loop for
ExecuTorch), as for torch and ONNX Runtime in ``bench_latency.py``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_runtimes.py [--models mobilenet_v2_100 ...] [--pairs 4]

Method: per model, one untimed lwprof run fills the export cache and names
the ONNX file (and inductor's compile cache); then ``--pairs`` pairs, each one
``lwprof profile MODEL --backend B --precision P --layer-runs 0`` process per
backend and one reference process per precision (OpenVINO: f32 and bf16
hints), the side that goes first alternating. A pair's ratio is lwprof's median over the reference's; a
model's deviation is the median of its pairs' ratios, minus 1. Results:
``reports/benchmarks/runtimes/`` (results.json with every raw figure and the
environment, summary.md). Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import REPO_ROOT, capture_environment, format_environment, timed_step

DEFAULT_MODELS = ["mobilenet_v3_large_100", "mobilenet_v2_100", "shufflenet_v2_100", "ghostnet_100", "pplcnet_100",
                  "mobilenet_v3_small_100", "squeezenet_1_1"]
TARGET_DEVIATION = 0.05
REFERENCE = Path(__file__).resolve().parent / "reference_runtimes.py"
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "runtimes"
# pair name -> (lwprof backend, lwprof precision, reference runtime, reference precision argument)
PAIRS = {
    "openvino_fp32": ("openvino", "fp32", "openvino", "f32"),
    "openvino_bf16": ("openvino", "bf16", "openvino", "bf16"),
    "inductor_fp32": ("inductor", "fp32", "inductor", ""),
    "executorch_fp32": ("executorch", "fp32", "executorch", ""),
}
MEASURED_SOURCES = [
    "profiler/runtime/measure.py",
    "profiler/runtime/worker.py",
    "profiler/runtime/backends/openvino_runtime.py",
    "profiler/runtime/backends/inductor.py",
    "profiler/runtime/backends/executorch_runtime.py",
    "profiler/commands/profile_job.py",
    "benchmarks/reference_runtimes.py",
]


def lwprof_run(model: str, backend: str, precisions: list[str], cache: Path, reports: Path, threads: int) -> dict[str, Any]:
    step = timed_step([sys.executable, "-m", "lwprof", "profile", model, "--backend", backend, "--precision", ",".join(precisions),
                 "--threads", str(threads), "--layer-runs", "0", "--no-plots", "--format", "json",
                 "--reports-dir", str(reports), "--cache-dir", str(cache)])
    payload = step.pop("output")
    if payload is not None:
        step["results"] = {
            r["precision"]: {"median_s": r.get("median_s"), "iqr_s": r.get("iqr_s"), "n": r.get("n"), "skipped": r.get("skipped"),
                             "compiled_properties": (r.get("info") or {}).get("compiled_properties")}
            for r in payload["results"] if r["backend"] == backend
        }
        step["onnx_path"] = next(((r.get("info") or {}).get("onnx_path") for r in payload["results"]
                                  if r["backend"] == backend and r.get("precision") == "fp32"), None)
    return step


def reference_run(runtime: str, model: str, precision: str, onnx_path: str | None, threads: int, min_time: float,
                  scratch: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, str(REFERENCE), runtime, model, "--threads", str(threads), "--min-time", str(min_time)]
    if runtime == "openvino":
        command += ["--onnx", str(onnx_path), "--precision", precision]
    if runtime == "executorch":
        # The reference's own export, kept apart from lwprof's cache.
        command += ["--pte", str(Path(scratch or tempfile.gettempdir()) / f"reference-{model}.pte")]
    step = timed_step(command)
    step["figures"] = step.pop("output")
    return step


def measure_model(model: str, backend: str, names: list[str], pairs: int, threads: int, min_time: float,
                  cache: Path, reports: Path) -> dict[str, Any]:
    precisions = [PAIRS[name][1] for name in names]
    warm = lwprof_run(model, backend, precisions, cache, reports, threads)
    result: dict[str, Any] = {"model": model, "backend": backend, "warm_up": warm, "pairs": []}
    if warm.get("error") or (backend == "openvino" and not warm.get("onnx_path")):
        result["error"] = warm.get("error") or "the warm-up run gave no ONNX file"
        return result
    if backend == "executorch":
        # The reference exports its program in a process of its own, so no timed process has exported anything.
        result["reference_warm_up"] = reference_run("executorch", model, "", None, threads, 0.2, cache.parent)
    for index in range(pairs):
        lwprof_first = index % 2 == 0
        pair: dict[str, Any] = {"lwprof_first": lwprof_first, "reference": {}}
        if lwprof_first:
            pair["lwprof"] = lwprof_run(model, backend, precisions, cache, reports, threads)
        for name in names:
            _, _, runtime, hint = PAIRS[name]
            pair["reference"][name] = reference_run(runtime, model, hint, warm.get("onnx_path"), threads, min_time, cache.parent)
        if not lwprof_first:
            pair["lwprof"] = lwprof_run(model, backend, precisions, cache, reports, threads)
        pair["ratios"] = {}
        for name in names:
            mine = ((pair["lwprof"].get("results") or {}).get(PAIRS[name][1]) or {}).get("median_s")
            theirs = (pair["reference"][name].get("figures") or {}).get("median_s")
            if mine and theirs:
                pair["ratios"][name] = mine / theirs
        result["pairs"].append(pair)
        print(f"  pair {index + 1}: " + "; ".join(f"{n} {r - 1:+.1%}" for n, r in pair["ratios"].items()), file=sys.stderr, flush=True)
    return result


def model_row(result: dict[str, Any], name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"model": result["model"], "pair": name, "error": result.get("error", "")}
    if row["error"]:
        return row
    precision = PAIRS[name][1]
    ratios = [p["ratios"][name] for p in result["pairs"] if name in p["ratios"]]
    mine = [((p["lwprof"].get("results") or {}).get(precision) or {}).get("median_s") for p in result["pairs"]]
    theirs = [(p["reference"][name].get("figures") or {}).get("median_s") for p in result["pairs"]]
    row.update({
        "pairs_used": len(ratios),
        "lwprof_median_s": statistics.median([v for v in mine if v]) if any(mine) else None,
        "reference_median_s": statistics.median([v for v in theirs if v]) if any(theirs) else None,
        "deviation": statistics.median(ratios) - 1 if ratios else None,
        "deviation_min": min(ratios) - 1 if ratios else None,
        "deviation_max": max(ratios) - 1 if ratios else None,
    })
    row["within_target"] = row["deviation"] is not None and abs(row["deviation"]) <= TARGET_DEVIATION
    return row


def markdown(rows: list[dict[str, Any]], settings: dict[str, Any], environment: dict[str, Any]) -> str:
    lines = ["# Deployment runtimes: lwprof against each runtime's own bare loop", "",
             f"Target: lwprof's median within ±{TARGET_DEVIATION:.0%} of the reference's, as the median of per-pair ratios "
             f"over {settings['pairs']} alternating pairs. Reference: `benchmarks/reference_runtimes.py`, a fresh process on the "
             "runtime's own API (OpenVINO: `compile_model` with the precision hint, threads, one stream and the LATENCY hint, "
             f"then an `InferRequest.infer` loop for {settings['min_time_s']:g} s; inductor: `torch.compile(model)`, one call "
             f"to compile, then `Timer.blocked_autorange(min_run_time={settings['min_time_s']:g})` under `inference_mode`; "
             "ExecuTorch: its own `torch.export` -> `to_edge_transform_and_lower(XnnpackPartitioner())` -> `to_executorch` "
             f"export in a process of its own, then `load_program` and a `Method.execute` loop for {settings['min_time_s']:g} s "
             f"with XNNPACK's thread pool at the run's thread count). Generated by `{settings['command']}`.", ""]
    for name in PAIRS:
        mine = [r for r in rows if r["pair"] == name]
        if not mine:
            continue
        within = sum(r.get("within_target", False) for r in mine)
        lines += [f"## {name}: {within} of {len(mine)} within ±{TARGET_DEVIATION:.0%}", "",
                  "| model | lwprof ms | reference ms | deviation | range over pairs |", "|---|---|---|---|---|"]
        for r in mine:
            if r["error"]:
                lines.append(f"| {r['model']} | failed: {r['error']} | | | |")
                continue
            mark = "" if r["within_target"] else " ✗"
            lines.append(f"| {r['model']} | {r['lwprof_median_s'] * 1e3:.3f} | {r['reference_median_s'] * 1e3:.3f} | "
                         f"{r['deviation']:+.1%}{mark} | {r['deviation_min']:+.1%} … {r['deviation_max']:+.1%} |")
        lines.append("")
    lines += ["## Environment", "", *format_environment(environment),
              f"- Benchmark wall time {environment.get('benchmark_wall_s', 0):.0f} s; {settings['threads']} threads", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--only", nargs="+", choices=list(PAIRS), default=list(PAIRS), help="pairs to run (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {"command": " ".join(["benchmarks/bench_runtimes.py", *sys.argv[1:]]), "models": args.models, "pairs": args.pairs,
                "threads": args.threads, "min_time_s": args.min_time, "only": args.only}
    by_backend: dict[str, list[str]] = {}
    for name in args.only:
        by_backend.setdefault(PAIRS[name][0], []).append(name)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as scratch:
        cache, reports = Path(scratch) / "cache", Path(scratch) / "reports"
        for index, model in enumerate(args.models, 1):
            for backend, names in by_backend.items():
                print(f"[{index}/{len(args.models)}] {model} on {backend}", file=sys.stderr, flush=True)
                results.append(measure_model(model, backend, names, args.pairs, args.threads, args.min_time, cache, reports))
    environment["benchmark_wall_s"] = time.perf_counter() - started
    rows = [model_row(result, name) for result in results for name in by_backend[result["backend"]]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"target_deviation": TARGET_DEVIATION, "settings": settings, "rows": rows,
                                                        "models": results, "environment": environment}, indent=2) + "\n")
    text = markdown(rows, settings, environment)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
