"""Is lwprof's latency measurement right, stable and fast enough?

Targets (issue "Real latency", README "Measured profile"):

1. For at least 5 zoo models, in the same run: lwprof's torch median within
   ±5% of ``torch.utils.benchmark.Timer(...).blocked_autorange()`` at the same
   thread count, and lwprof's ONNX Runtime median within ±5% of a bare
   ``session.run`` loop on a session built by hand with the same options.
2. The medians of three back-to-back ``lwprof profile`` runs of one model
   spread by at most 5% (per backend).
3. ``lwprof profile mobilenetv3 --device cpu`` with default budgets takes under
   60 s of wall time on 2 cores.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_latency.py
    .venv/bin/python benchmarks/bench_latency.py --models pplcnet_100 ghostnet_100 --rounds 2 --cli-runs 0

Method for 1: per model, one process, the same module object and the same
input for lwprof and the reference. Each round measures, in an order rotated
per round, lwprof torch (``TorchSession.run`` through ``run_timed`` with the
default budget), the torch reference (``Timer("model(x)")`` inside
``torch.inference_mode``, as lwprof's session runs, ``blocked_autorange`` for
at least the same minimum time), lwprof ONNX Runtime (``OnnxRuntimeSession``
through ``run_timed``) and the ORT reference (a fresh ``InferenceSession`` on
the same cached export with the same options, a bare timed ``session.run``
loop of the same length). A model's deviation is the median over rounds of
(lwprof median / reference median - 1), which cancels drift of a shared
machine between rounds. Rounds in which other processes used more than
``--quiet-max`` of the CPU are recorded and flagged.

Results go to ``reports/benchmarks/latency/`` (results.csv, results.json with
every raw figure and the environment, summary.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import REPO_ROOT, capture_environment, cpu_snapshot, foreign_cpu_share, format_environment

DEFAULT_MODELS = [
    "mobilenet_v3_large_100",
    "mobilenet_v2_100",
    "shufflenet_v2_100",
    "ghostnet_100",
    "pplcnet_100",
    "mobilenet_v3_small_100",
    "squeezenet_1_1",
]
TARGET_DEVIATION = 0.05
TARGET_SPREAD = 0.05
TARGET_WALL_S = 60.0
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "latency"
MEASURED_SOURCES = ["profiler/measure.py", "profiler/backends.py", "profiler/latency_command.py", "profiler/torch_layers.py", "profiler/ort_layers.py"]


def _median_of_loop(fn: Any, seconds: float, warmup: int = 3) -> tuple[float, int]:
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(samples) < 10:
        begin = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples), len(samples)


def measure_model(name: str, threads: int, rounds: int, cache_dir: Path, quiet_max: float) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    from torch.utils.benchmark import Timer

    from lwprof.backends import example_input, get_backend
    from lwprof.loader import load_model
    from lwprof.measure import Budget, run_timed

    loaded = load_model(name)
    x = example_input(loaded.input_shape)
    budget = Budget()
    torch_session = get_backend("torch").prepare(loaded, x, "cpu", threads, cache_dir)
    ort_session = get_backend("onnxruntime").prepare(loaded, x, "cpu", threads, cache_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    bare = ort.InferenceSession(str(ort_session.onnx_path), options, providers=["CPUExecutionProvider"])
    feed = dict(ort_session.feed)
    module, tensor = torch_session.module, torch_session.x

    def torch_reference() -> float:
        timer = Timer(
            stmt="with torch.inference_mode(): model(x)",
            globals={"model": module, "x": tensor, "torch": torch},
            num_threads=threads,
        )
        return timer.blocked_autorange(min_run_time=budget.min_time_s).median

    def ort_reference() -> float:
        return _median_of_loop(lambda: bare.run(None, feed), budget.min_time_s)[0]

    def lwprof_torch() -> float:
        return statistics.median(run_timed(torch_session.run, budget, torch_session.timer)[0])

    def lwprof_ort() -> float:
        return statistics.median(run_timed(ort_session.run, budget, ort_session.timer)[0])

    measurers = {"lwprof_torch": lwprof_torch, "torch_timer": torch_reference, "lwprof_ort": lwprof_ort, "ort_bare": ort_reference}
    order = list(measurers)
    per_round = []
    try:
        for r in range(rounds):
            begin = cpu_snapshot()
            figures = {}
            for key in order[r % len(order):] + order[: r % len(order)]:
                figures[key] = measurers[key]()
            foreign = foreign_cpu_share(begin, cpu_snapshot())
            figures["foreign_cpu_share"] = foreign
            figures["quiet"] = foreign is None or foreign <= quiet_max
            figures["torch_deviation"] = figures["lwprof_torch"] / figures["torch_timer"] - 1
            figures["ort_deviation"] = figures["lwprof_ort"] / figures["ort_bare"] - 1
            per_round.append(figures)
            print(
                f"  {name} round {r + 1}: torch {figures['lwprof_torch'] * 1e3:.3f} vs Timer {figures['torch_timer'] * 1e3:.3f} ms "
                f"({figures['torch_deviation']:+.1%}); ORT {figures['lwprof_ort'] * 1e3:.3f} vs bare {figures['ort_bare'] * 1e3:.3f} ms "
                f"({figures['ort_deviation']:+.1%})",
                file=sys.stderr,
            )
    finally:
        torch_session.close()
        ort_session.close()
    quiet = [f for f in per_round if f["quiet"]] or per_round
    row = {"model": name, "input_shape": "x".join(map(str, loaded.input_shape)), "threads": threads, "rounds": len(per_round), "quiet_rounds": sum(f["quiet"] for f in per_round)}
    for key in ("lwprof_torch", "torch_timer", "lwprof_ort", "ort_bare"):
        row[f"{key}_median_s"] = statistics.median(f[key] for f in quiet)
    for key in ("torch_deviation", "ort_deviation"):
        row[key] = statistics.median(f[key] for f in quiet)
        row[f"{key}_within_target"] = abs(row[key]) <= TARGET_DEVIATION
    row["per_round"] = per_round
    return row


def cli_runs(model: str, runs: int, cache_dir: Path) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="lwprof-bench-") as folder:
        for i in range(runs):
            command = [sys.executable, "-m", "lwprof", "profile", model, "--device", "cpu", "--format", "json",
                       "--reports-dir", folder, "--cache-dir", str(cache_dir)]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                results.append({"run": i, "wall_s": wall, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            payload = json.loads(done.stdout)
            medians = {r["backend"]: r.get("median_s") for r in payload["results"]}
            results.append({"run": i, "wall_s": wall, "medians_s": medians, "wall_time_split_s": payload["wall_time_split_s"]})
            print(f"  cli run {i + 1}: {wall:.1f} s wall, medians " + ", ".join(f"{b} {m * 1e3:.3f} ms" for b, m in medians.items() if m), file=sys.stderr)
    spreads = {}
    for backend in ("torch", "onnxruntime"):
        values = [r["medians_s"][backend] for r in results if "medians_s" in r and r["medians_s"].get(backend)]
        if len(values) >= 2:
            spreads[backend] = (max(values) - min(values)) / statistics.median(values)
    walls = [r["wall_s"] for r in results]
    return {
        "model": model,
        "runs": results,
        "spread": spreads,
        "spread_within_target": {b: s <= TARGET_SPREAD for b, s in spreads.items()},
        "max_wall_s": max(walls) if walls else None,
        "wall_within_target": bool(walls) and max(walls) <= TARGET_WALL_S,
    }


def write_results(out: Path, rows: list[dict[str, Any]], cli: dict[str, Any] | None, environment: dict[str, Any], settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k in rows[0] if k != "per_round"] if rows else []
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(keys)
        for row in rows:
            writer.writerow([row[k] for k in keys])
    (out / "results.json").write_text(json.dumps({"settings": settings, "models": rows, "cli": cli, "environment": environment}, indent=2) + "\n")
    lines = [
        "# Latency measurement: accuracy, stability, wall time",
        "",
        "Generated by `benchmarks/bench_latency.py`; raw figures per round and the environment in `results.json`.",
        "",
        "## Environment",
        "",
        *format_environment(environment),
        f"- Settings: {json.dumps(settings)}",
        "",
        "## lwprof vs reference timers (median over rounds of lwprof / reference - 1; target within ±5%)",
        "",
        "| model | lwprof torch ms | Timer.blocked_autorange ms | deviation | lwprof ORT ms | bare session.run ms | deviation | quiet rounds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['lwprof_torch_median_s'] * 1e3:.3f} | {row['torch_timer_median_s'] * 1e3:.3f} | {row['torch_deviation']:+.1%} | "
            f"{row['lwprof_ort_median_s'] * 1e3:.3f} | {row['ort_bare_median_s'] * 1e3:.3f} | {row['ort_deviation']:+.1%} | {row['quiet_rounds']}/{row['rounds']} |"
        )
    within = sum(r["torch_deviation_within_target"] and r["ort_deviation_within_target"] for r in rows)
    lines += ["", f"{within} of {len(rows)} models within ±5% on both backends.", ""]
    if cli:
        lines += ["## Three back-to-back `lwprof profile` runs", "", f"Model: {cli['model']}, default budgets.", "", "| run | wall s | torch median ms | onnxruntime median ms |", "|---|---|---|---|"]
        for run in cli["runs"]:
            medians = run.get("medians_s", {})
            lines.append(
                f"| {run['run'] + 1} | {run['wall_s']:.1f} | "
                + " | ".join(f"{medians[b] * 1e3:.3f}" if medians.get(b) else str(run.get("error", "")) for b in ("torch", "onnxruntime"))
                + " |"
            )
        spread = ", ".join(f"{b} {s:.1%}" for b, s in cli["spread"].items())
        lines += ["", f"Spread of the medians ((max - min) / median): {spread} (target ≤ 5%). Longest wall time {cli['max_wall_s']:.1f} s (target < 60 s).", ""]
    (out / "summary.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS, help="zoo models (default: 7 lightweight ones)")
    parser.add_argument("--threads", type=int, help="threads for every backend (default: physical cores)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per model (default 3)")
    parser.add_argument("--cli-model", default="mobilenet_v3_large_100", help="model of the back-to-back CLI runs")
    parser.add_argument("--cli-runs", type=int, default=3, help="back-to-back `lwprof profile` runs (0 skips)")
    parser.add_argument("--quiet-max", type=float, default=0.05, help="largest CPU share of other processes in a quiet round")
    parser.add_argument("--cache-dir", type=Path, help="ONNX export cache (default: lwprof's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    from lwprof.backends import default_cache_dir
    from lwprof.environment import physical_cores

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    cache_dir = args.cache_dir or default_cache_dir()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {"threads": threads, "rounds": args.rounds, "quiet_max": args.quiet_max, "cli_model": args.cli_model, "cli_runs": args.cli_runs}
    rows = []
    for i, name in enumerate(args.models, 1):
        print(f"[{i}/{len(args.models)}] {name}", file=sys.stderr)
        rows.append(measure_model(name, threads, args.rounds, cache_dir, args.quiet_max))
    cli = cli_runs(args.cli_model, args.cli_runs, cache_dir) if args.cli_runs else None
    write_results(args.out, rows, cli, environment, settings)
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
