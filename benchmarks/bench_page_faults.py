"""Does the process lwprof times page-fault as a user's own process does?

With glibc's default malloc, a torch CPU forward pass page-faults its
activations in again and again (``lwprof.runtime.allocator``), and how often
depends on the process's heap layout: on one machine mobilenet_v3_large_100
takes about 1,700 minor faults per pass in one fresh process and 2,300 in the
next, which moves its latency by several percent. This benchmark counts the
faults per pass in many fresh processes of three kinds, per model:

- ``lwprof``: ``lwprof profile MODEL --backend torch --allocator default``,
  the worker process lwprof times (its ``minor_page_faults_per_pass``);
- ``loop``: ``reference_latency.py torch MODEL --harness loop``, a fresh
  process with the zoo model and a hand-written ``perf_counter`` loop;
- ``timer``: ``reference_latency.py torch MODEL`` with
  ``torch.utils.benchmark.Timer.blocked_autorange``, the reference of
  ``bench_latency.py``.

Fault counts, unlike timings, do not depend on how busy the machine is, so
this check holds on a noisy machine. The medians in milliseconds are recorded
too, as a hint only.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_page_faults.py
    .venv/bin/python benchmarks/bench_page_faults.py --models mobilenet_v2_100 --processes 4

Method: ``--processes`` rounds per model; a round runs one process of each
kind, the order rotating from round to round. Results go to
``reports/benchmarks/page-faults/`` (results.csv, one row per process;
results.json with the environment; summary.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import REPO_ROOT, capture_environment, format_environment, timed_step
from bench_latency import DEFAULT_MODELS

HARNESSES = ("lwprof", "loop", "timer")
REFERENCE = Path(__file__).resolve().parent / "reference_latency.py"
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "page-faults"
MEASURED_SOURCES = ["profiler/runtime/worker.py", "profiler/runtime/allocator.py", "profiler/runtime/backends/torch_eager.py",
                    "benchmarks/reference_latency.py"]


def run_process(harness: str, model: str, threads: int, seconds: float, cache_dir: Path, reports: Path) -> dict[str, Any]:
    """One fresh process of ``harness``: its faults per pass and median."""
    if harness == "lwprof":
        command = [sys.executable, "-m", "lwprof", "profile", model, "--device", "cpu", "--backend", "torch", "--threads", str(threads),
                   "--allocator", "default", "--layer-runs", "0", "--min-time", str(seconds), "--max-time", str(seconds),
                   "--no-plots", "--format", "json", "--reports-dir", str(reports), "--cache-dir", str(cache_dir)]
    else:
        command = [sys.executable, str(REFERENCE), "torch", model, "--threads", str(threads), "--min-time", str(seconds),
                   "--harness", harness]
    step = timed_step(command)
    output = step.pop("output")
    row = {"model": model, "harness": harness, "faults_per_pass": None, "median_s": None,
           "wall_s": step["wall_s"], "foreign_cpu_share": step["foreign_cpu_share"], "error": step.get("error")}
    if output is not None and harness == "lwprof":
        [result] = output["results"]
        row.update(faults_per_pass=result["minor_page_faults_per_pass"], median_s=result["median_s"])
    elif output is not None:
        row.update(faults_per_pass=output["minor_page_faults_per_call"], median_s=output["median_s"])
    return row


def measure(models: list[str], processes: int, threads: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lwprof-faults-") as scratch:
        cache_dir, reports = Path(scratch) / "cache", Path(scratch) / "reports"
        for index, model in enumerate(models, 1):
            print(f"[{index}/{len(models)}] {model}", file=sys.stderr, flush=True)
            for round_number in range(processes):
                shift = round_number % len(HARNESSES)
                for harness in HARNESSES[shift:] + HARNESSES[:shift]:
                    row = run_process(harness, model, threads, seconds, cache_dir, reports)
                    rows.append({**row, "round": round_number})
                    faults = row["faults_per_pass"]
                    print(f"  round {round_number + 1}: {harness} {'failed' if faults is None else f'{faults:,.0f} faults/pass'}",
                          file=sys.stderr, flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Per model and harness: faults per pass and median over the processes."""
    summary = []
    for model in models:
        entry: dict[str, Any] = {"model": model}
        for harness in HARNESSES:
            faults = [r["faults_per_pass"] for r in rows if r["model"] == model and r["harness"] == harness and r["faults_per_pass"] is not None]
            medians = [r["median_s"] for r in rows if r["model"] == model and r["harness"] == harness and r["median_s"] is not None]
            entry[harness] = {
                "processes": len(faults),
                "faults_median": statistics.median(faults) if faults else None,
                "faults_min": min(faults) if faults else None,
                "faults_max": max(faults) if faults else None,
                "median_s": statistics.median(medians) if medians else None,
            }
        summary.append(entry)
    return summary


def _faults(figures: dict[str, Any]) -> str:
    if figures["faults_median"] is None:
        return "—"
    return f"{figures['faults_median']:,.0f} ({figures['faults_min']:,.0f} … {figures['faults_max']:,.0f})"


def _within(entry: dict[str, Any], other: str) -> bool | None:
    """Whether lwprof's median count lies within ``other``'s range over its
    processes, in whole faults (as the table shows them)."""
    value, figures = entry["lwprof"]["faults_median"], entry[other]
    if value is None or figures["faults_median"] is None:
        return None
    return round(figures["faults_min"]) <= round(value) <= round(figures["faults_max"])


def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


def headline(summary: list[dict[str, Any]]) -> list[str]:
    counted = [e for e in summary if all(e[h]["faults_median"] is not None for h in HARNESSES)]
    within = {other: sum(bool(_within(e, other)) for e in counted) for other in ("loop", "timer")}
    spans = [(e[h]["faults_max"] - e[h]["faults_min"], e["model"], h) for e in counted for h in HARNESSES]
    widest, model, harness = max(spans) if spans else (0, "—", "—")
    return [
        f"- lwprof's median fault count lies within the range of the hand-written loop's processes on {within['loop']} of "
        f"{len(counted)} models, within the Timer processes' on {within['timer']} of {len(counted)}.",
        f"- Between fresh processes of one kind the count moves by up to {widest:,.0f} faults per pass ({model}, {harness}): "
        "the state glibc's heap lands in differs from process to process, whoever runs the model.",
    ]


def markdown_summary(payload: dict[str, Any]) -> str:
    settings, summary = payload["settings"], payload["summary"]
    lines = [
        "# Page faults per pass: lwprof's timed process against a user's own",
        "",
        "glibc's default malloc page-faults a torch CPU model's activations in on every pass, as often as the process's heap "
        "layout makes it. Each cell counts the minor page faults per forward pass in fresh processes: lwprof's worker "
        "(`lwprof profile MODEL --backend torch --allocator default`), a hand-written `perf_counter` loop and "
        "`torch.utils.benchmark.Timer.blocked_autorange` (`benchmarks/reference_latency.py --harness loop|timer`). "
        f"Generated by `{settings['command']}`; every process in `results.csv`; method in `benchmarks/README.md`.",
        "",
        "## Environment",
        "",
        *format_environment(payload["environment"]),
        f"- Settings: {settings['threads']} threads; {settings['processes']} processes per model and kind, "
        f"{settings['seconds']} s of timing each; benchmark wall time {payload['environment']['benchmark_wall_s']:.0f} s",
        "",
        "## Headline",
        "",
        *headline(summary),
        "",
        "## Per model",
        "",
        "Faults per pass: median over the processes (min … max). In range: whether lwprof's median count lies within the "
        "loop's and the Timer's range. Milliseconds: median over the processes of each process's median, a hint only (the machine's load moves it).",
        "",
        "| model | lwprof faults/pass | loop faults/pass | Timer faults/pass | in the loop's range | in the Timer's range "
        "| lwprof ms | loop ms | Timer ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary:
        lw, loop, timer = entry["lwprof"], entry["loop"], entry["timer"]
        ms = [f"{f['median_s'] * 1e3:.2f}" if f["median_s"] else "—" for f in (lw, loop, timer)]
        lines.append(
            f"| {entry['model']} | {_faults(lw)} | {_faults(loop)} | {_faults(timer)} "
            f"| {_yes_no(_within(entry, 'loop'))} | {_yes_no(_within(entry, 'timer'))} "
            f"| {' | '.join(ms)} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out: Path, payload: dict[str, Any]) -> None:
    payload["summary"] = summarize(payload["processes"], payload["settings"]["models"])
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["model", "harness", "round", "faults_per_pass", "median_s", "wall_s",
                                                    "foreign_cpu_share", "error"])
        writer.writeheader()
        writer.writerows(payload["processes"])  # floats via repr(): full precision
    ordered = {key: payload[key] for key in ("environment", "settings", "summary", "processes")}
    (out / "results.json").write_text(json.dumps(ordered, indent=2) + "\n")
    (out / "summary.md").write_text(markdown_summary(payload))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS, help="zoo models (default: bench_latency.py's 7)")
    parser.add_argument("--processes", type=int, default=8, help="fresh processes per model and kind (default 8)")
    parser.add_argument("--threads", type=int, help="threads (default: one per physical core, as lwprof)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds each process times (default 1)")
    parser.add_argument("--rerender", action="store_true", help="time nothing: rebuild the files from OUT/results.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    if args.rerender:
        write_results(args.out, json.loads((args.out / "results.json").read_text()))
        return 0
    from lwprof.runtime.environment import physical_cores

    threads = args.threads or physical_cores()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {"command": " ".join(["benchmarks/bench_page_faults.py", *(argv if argv is not None else sys.argv[1:])]),
                "models": args.models, "processes": args.processes, "threads": threads, "seconds": args.seconds}
    started = time.perf_counter()
    rows = measure(args.models, args.processes, threads, args.seconds)
    environment["benchmark_wall_s"] = time.perf_counter() - started
    write_results(args.out, {"environment": environment, "settings": settings, "processes": rows})
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
