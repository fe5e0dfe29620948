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
input for lwprof and the reference: lwprof torch (``TorchSession.run``
through ``run_timed`` with the default budget) against ``Timer`` running
``model(x)`` inside ``torch.inference_mode`` exactly as ``TorchSession.run``
does (``blocked_autorange`` for the budget's minimum time); lwprof ONNX
Runtime (``OnnxRuntimeSession`` through ``run_timed``) against a second
``InferenceSession`` on the same cached export with the same options, timed
in a bare ``perf_counter`` loop. After an untimed warm-up, each round times
the two pairs, each pair back to back (which pair first, and which member of
a pair first, alternate between rounds). A model's deviation is the median
over rounds of (lwprof median / reference median - 1) within a round.

This machine's speed changes in steps (up to 1.6x for tens of seconds, with
nothing else running in the VM and nothing in ``/proc/stat``), so a ratio is
only trusted when the machine kept its speed during the pair: a 0.3 s plain
loop of the model just before and just after the pair (the sentinel) must
agree within ``--steady-max``, and other processes must have used at most
``--quiet-max`` of the CPU meanwhile. Other rounds are kept in the JSON but
not used, and more rounds run, up to ``--max-rounds``.

Method for 2 and 3: ``python -m lwprof profile MODEL --device cpu --format
json --no-plots`` in a subprocess, ``--cli-runs`` times back to back (default
9: three groups of three); wall time of each, each backend's median from its
JSON. Before the first run and after each, a reference run in a fresh process
of its own (``--reference-run MODEL``: ``Timer.blocked_autorange`` and a bare
``session.run`` loop on the same model, input and ONNX file): the spread of
those references is what the machine allows a fresh process meanwhile, so a
spread caused by the machine can be told from one caused by lwprof.

Results go to ``reports/benchmarks/latency/`` (results.csv, results.json with
every raw figure and the environment, summary.md). Timings are never asserted
in tests.
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
from typing import Any, Callable

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
TARGET_MODELS = 5
TARGET_SPREAD = 0.05
TARGET_WALL_S = 60.0
WARMUP_S = 0.5  # untimed, per measurer, before the first round
SENTINEL_S = 0.3  # the plain loop before and after each pair that detects a change of machine speed
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "latency"
# The code whose measurements are checked; their hashes go into the environment.
MEASURED_SOURCES = [
    "profiler/measure.py",
    "profiler/backends.py",
    "profiler/latency_command.py",
    "profiler/torch_layers.py",
    "profiler/ort_layers.py",
    "profiler/roofline.py",
]
MEASURERS = ("lwprof_torch", "torch_timer", "lwprof_ort", "ort_bare")
LABELS = {
    "lwprof_torch": "lwprof torch",
    "torch_timer": "Timer.blocked_autorange",
    "lwprof_ort": "lwprof ONNX Runtime",
    "ort_bare": "bare session.run",
}
PAIRS = {"torch": ("lwprof_torch", "torch_timer"), "ort": ("lwprof_ort", "ort_bare")}


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _rotated(items: list[Any], shift: int) -> list[Any]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def bare_loop(fn: Callable[[], Any], min_time_s: float, warmup: int, warmup_time_s: float, min_samples: int) -> list[float]:
    """What a user would write: warm up as lwprof's budget does, then time each
    call with ``perf_counter`` for at least ``min_time_s`` and ``min_samples``."""
    warm_start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - warm_start < warmup_time_s:
        fn()
        done += 1
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time_s or len(samples) < min_samples:
        begin = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - begin)
    return samples


def bare_ort_session(onnx_path: Path, threads: int) -> Any:
    """An ``InferenceSession`` built by hand with the options
    ``OnnxRuntimeSession`` sets, one by one: the reference a user would write."""
    import onnxruntime as ort

    from lwprof.backends import GRAPH_OPTIMIZATION_LEVEL

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVEL)
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _figures(samples: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(samples), "mean_s": statistics.fmean(samples), "n": len(samples), "calls": len(samples)}


def _minor_page_faults() -> int | None:
    """Minor page faults of this process so far (all threads; None off Unix).
    Per forward pass they show whether the allocator handed activations back
    to the kernel between calls, which costs time on every call."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _pair_order(index: int) -> list[str]:
    """Which pair a round measures first: swapped every other round, so that
    with the lwprof/reference order inside a pair (swapped every round) four
    rounds see every arrangement."""
    pairs = list(PAIRS)
    return pairs if (index // 2) % 2 == 0 else pairs[::-1]


def _usable(rounds: list[dict[str, Any]], pair: str) -> int:
    return sum(r["pairs"][pair]["usable"] for r in rounds)


def measure_model(
    name: str, threads: int, rounds: int, max_rounds: int, cache_dir: Path, quiet_max: float, steady_max: float
) -> dict[str, Any]:
    """All rounds of one model: raw per-round figures, nothing derived.

    A round measures each pair (lwprof and its reference) back to back,
    bracketed by a short plain loop of the same model (the sentinel): when
    the sentinel's median after the pair differs from the one before by more
    than ``steady_max``, the machine changed speed during the pair and the
    pair's ratio of that round is not used. Rounds go on until every pair has
    ``rounds`` usable ones (quiet and steady), at most ``max_rounds``."""
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
    bare = bare_ort_session(ort_session.onnx_path, threads)
    feed = ort_session.feed  # the very arrays lwprof feeds
    module, tensor = torch_session.module, torch_session.x

    def run_bare() -> None:
        bare.run(None, feed)

    def lwprof_torch() -> dict[str, Any]:
        samples, _ = run_timed(torch_session.run, budget, torch_session.timer)
        return _figures(samples)

    def torch_timer() -> dict[str, Any]:
        # TorchSession.run enters inference_mode on every call: so does the statement.
        timer = Timer(
            stmt="with torch.inference_mode():\n    model(x)",
            globals={"model": module, "x": tensor, "torch": torch},
            num_threads=threads,
        )
        measurement = timer.blocked_autorange(min_run_time=budget.min_time_s)
        return {
            "median_s": measurement.median,
            "mean_s": measurement.mean,
            "n": len(measurement.times),
            "number_per_run": measurement.number_per_run,
            "calls": len(measurement.times) * measurement.number_per_run,
        }

    def lwprof_ort() -> dict[str, Any]:
        samples, _ = run_timed(ort_session.run, budget, ort_session.timer)
        return _figures(samples)

    def ort_bare() -> dict[str, Any]:
        return _figures(bare_loop(run_bare, budget.min_time_s, budget.warmup, budget.warmup_time_s, budget.min_samples))

    measurers = {"lwprof_torch": lwprof_torch, "torch_timer": torch_timer, "lwprof_ort": lwprof_ort, "ort_bare": ort_bare}
    result: dict[str, Any] = {
        "model": name,
        "input_shape": list(loaded.input_shape),
        "threads": threads,
        "torch_info": dict(torch_session.info),
        "onnxruntime_info": dict(ort_session.info),
        "rounds": [],
    }
    try:
        # Untimed: the first timing after loading, exporting and building
        # sessions is slower for whichever measurer comes first (first-touch
        # page faults, cold caches), which would bias round 1.
        torch.set_num_threads(threads)
        for fn in (torch_session.run, ort_session.run, run_bare):
            bare_loop(fn, WARMUP_S, 1, 0.0, 1)
        sentinels = {"torch": torch_session.run, "ort": run_bare}
        index = 0
        while index < max_rounds and min(_usable(result["rounds"], pair) for pair in PAIRS) < rounds:
            figures: dict[str, Any] = {"order": [], "pairs": {}}
            for pair in _pair_order(index):
                lwprof_key, reference_key = PAIRS[pair]
                keys = [lwprof_key, reference_key] if index % 2 == 0 else [reference_key, lwprof_key]
                begin = cpu_snapshot()
                before = statistics.median(bare_loop(sentinels[pair], SENTINEL_S, 1, 0.0, 5))
                for key in keys:
                    faults = _minor_page_faults()
                    figures[key] = measurers[key]()
                    if faults is not None:
                        # warm-up calls included: an estimate per call, not an exact count
                        figures[key]["minor_page_faults_per_call"] = (_minor_page_faults() - faults) / figures[key]["calls"]
                after = statistics.median(bare_loop(sentinels[pair], SENTINEL_S, 1, 0.0, 5))
                share = foreign_cpu_share(begin, cpu_snapshot())
                quiet = share is None or share <= quiet_max
                steady = abs(after / before - 1) <= steady_max
                figures["order"] += keys
                figures["pairs"][pair] = {
                    "foreign_cpu_share": share,
                    "quiet": quiet,
                    "sentinel_before_s": before,
                    "sentinel_after_s": after,
                    "speed_change": after / before - 1,
                    "steady": steady,
                    "usable": quiet and steady,
                }
            result["rounds"].append(figures)
            index += 1
            notes = []
            for pair, (lwprof_key, reference_key) in PAIRS.items():
                state = figures["pairs"][pair]
                flag = "" if state["usable"] else (" not quiet" if not state["quiet"] else "") + (
                    f" speed changed {state['speed_change']:+.0%}" if not state["steady"] else ""
                )
                notes.append(
                    f"{pair} {figures[lwprof_key]['median_s'] * 1e3:.3f} vs {figures[reference_key]['median_s'] * 1e3:.3f} ms "
                    f"({figures[lwprof_key]['median_s'] / figures[reference_key]['median_s'] - 1:+.1%}{flag})"
                )
            print(f"  round {index}: " + "; ".join(notes), file=sys.stderr, flush=True)
    finally:
        torch_session.close()
        ort_session.close()
    return result


def _rounds_used(rounds: list[dict[str, Any]], pair: str) -> list[dict[str, Any]]:
    """A pair's usable rounds; else its quiet ones; else all of them."""
    return (
        [r for r in rounds if r["pairs"][pair]["usable"]]
        or [r for r in rounds if r["pairs"][pair]["quiet"]]
        or rounds
    )


def model_row(result: dict[str, Any]) -> dict[str, Any]:
    """One CSV row from a model's raw rounds: per pair, medians over the
    rounds used (see :func:`_rounds_used`) and the deviations."""
    if "error" in result:
        return {"model": result["model"], "error": result["error"]}
    rounds = result["rounds"]
    row: dict[str, Any] = {
        "model": result["model"],
        "input_shape": "x".join(map(str, result["input_shape"])),
        "threads": result["threads"],
        "rounds": len(rounds),
    }
    for pair, (lwprof_key, reference_key) in PAIRS.items():
        used = _rounds_used(rounds, pair)
        row[f"{pair}_usable_rounds"] = _usable(rounds, pair)
        row[f"{pair}_quiet_rounds"] = sum(r["pairs"][pair]["quiet"] for r in rounds)
        for key in (lwprof_key, reference_key):
            row[f"{key}_median_s"] = statistics.median(r[key]["median_s"] for r in used)
        per_round = [r[lwprof_key]["median_s"] / r[reference_key]["median_s"] - 1 for r in used]
        row[f"{pair}_deviation"] = statistics.median(per_round)
        row[f"{pair}_deviation_min"] = min(per_round)
        row[f"{pair}_deviation_max"] = max(per_round)
        row[f"{pair}_within_target"] = abs(row[f"{pair}_deviation"]) <= TARGET_DEVIATION
        # Cross-checks: the same ratio of means (Timer's samples are blocks of
        # number_per_run calls), and over every round, usable or not.
        row[f"{pair}_mean_deviation"] = statistics.median(r[lwprof_key]["mean_s"] / r[reference_key]["mean_s"] - 1 for r in used)
        row[f"{pair}_deviation_all_rounds"] = statistics.median(
            r[lwprof_key]["median_s"] / r[reference_key]["median_s"] - 1 for r in rounds
        )
        # The noise floor: how much the very same plain loop changed across
        # one pair's few seconds, over the quiet rounds (all when none was).
        quiet = [r for r in rounds if r["pairs"][pair]["quiet"]] or rounds
        row[f"{pair}_median_speed_change"] = statistics.median(abs(r["pairs"][pair]["speed_change"]) for r in quiet)
        row[f"{pair}_largest_speed_change"] = max((r["pairs"][pair]["speed_change"] for r in rounds), key=abs)
        row[f"{lwprof_key}_minor_page_faults_per_call"] = statistics.median(
            r[lwprof_key].get("minor_page_faults_per_call", float("nan")) for r in used
        )
        row[f"{reference_key}_minor_page_faults_per_call"] = statistics.median(
            r[reference_key].get("minor_page_faults_per_call", float("nan")) for r in used
        )
    row["timer_number_per_run"] = max(r["torch_timer"]["number_per_run"] for r in rounds)
    row["error"] = ""
    return row


REFERENCE_FLAG = "--reference-run"


def reference_run(model: str, threads: int, cache_dir: Path) -> dict[str, Any]:
    """The machine's speed for a fresh process, measured without lwprof's timing.

    Runs in a child process of its own (``bench_latency.py --reference-run
    MODEL``), as a ``lwprof profile`` run does, because a long-lived process
    is no sentinel for a fresh one: with seven models' sessions alive in the
    benchmark's process, its plain torch loop ran 1-17% slower than the fresh
    CLI process beside it, by an amount that changed from run to run
    (2026-12-01), which made a spread "with the machine's speed taken out"
    larger than the raw one. Torch: the model as
    the zoo builds it, in eval mode, ``Timer.blocked_autorange`` under
    ``inference_mode``; ONNX Runtime: a bare ``session.run`` loop on the same
    cached export with the options ``OnnxRuntimeSession`` sets. Nothing of
    lwprof's measurement code is used; the model, input and ONNX file are
    lwprof's, so both measure the same work.
    """
    import numpy as np
    import torch
    from torch.utils.benchmark import Timer

    from lwprof.backends import _settle_allocator, cached_onnx_export, example_input
    from lwprof.loader import load_model
    from lwprof.measure import Budget

    budget = Budget()
    torch.set_num_threads(threads)
    loaded = load_model(model)
    x = example_input(loaded.input_shape)
    module = loaded.module.eval()
    tensor = torch.from_numpy(np.array(x, copy=True))
    # As TorchSession does: without it glibc page-faults every pass's
    # activations in a fresh process (+15-25%), which would make this a
    # sentinel of the allocator, not of the machine.
    _settle_allocator(torch)
    timer = Timer(
        stmt="with torch.inference_mode():\n    model(x)",
        globals={"model": module, "x": tensor, "torch": torch},
        num_threads=threads,
    )
    for _ in range(budget.warmup):
        timer.timeit(1)
    measurement = timer.blocked_autorange(min_run_time=budget.min_time_s)
    figures = {"torch": {"median_s": measurement.median, "n": len(measurement.times)}}

    export = cached_onnx_export(loaded.module, loaded.name, tuple(x.shape), cache_dir)
    session = bare_ort_session(export.path, threads)
    feed = {session.get_inputs()[0].name: x}
    samples = bare_loop(lambda: session.run(None, feed), budget.min_time_s, budget.warmup, budget.warmup_time_s, budget.min_samples)
    figures["onnxruntime"] = {"median_s": statistics.median(samples), "n": len(samples)}
    return figures


def _reference_in_child(model: str, threads: int, cache_dir: Path) -> dict[str, Any] | None:
    command = [sys.executable, str(Path(__file__).resolve()), REFERENCE_FLAG, model,
               "--threads", str(threads), "--cache-dir", str(cache_dir)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    try:
        figures = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        figures = None
    if figures is None:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  reference run failed: {reason}", file=sys.stderr, flush=True)
        return None
    return {backend: f["median_s"] for backend, f in figures.items()}


def run_cli(model: str, runs: int, cache_dir: Path | None, threads: int, quiet_max: float, steady_max: float) -> dict[str, Any]:
    """``lwprof profile MODEL --device cpu`` ``runs`` times back to back, as a
    user runs it, each run bracketed by fresh-process reference runs
    (:func:`reference_run`; a reference between two CLI runs serves both)."""
    from lwprof.backends import default_cache_dir

    reference_cache = cache_dir or default_cache_dir()
    results = []
    references = [_reference_in_child(model, threads, reference_cache)] if runs else []
    with tempfile.TemporaryDirectory(prefix="lwprof-bench-") as folder:
        for index in range(runs):
            command = [sys.executable, "-m", "lwprof", "profile", model, "--device", "cpu", "--format", "json",
                       "--reports-dir", folder, "--no-plots"]
            if cache_dir is not None:
                command += ["--cache-dir", str(cache_dir)]
            begin = cpu_snapshot()
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
            wall = time.perf_counter() - start
            share = foreign_cpu_share(begin, cpu_snapshot())
            references.append(_reference_in_child(model, threads, reference_cache))
            before, after = references[-2], references[-1]
            run: dict[str, Any] = {"run": index + 1, "wall_s": wall, "foreign_cpu_share": share,
                                   "quiet": share is None or share <= quiet_max, "returncode": done.returncode,
                                   "sentinel_before_s": before, "sentinel_after_s": after}
            if before and after:
                run["speed_change"] = {b: after[b] / before[b] - 1 for b in before}
                run["steady"] = all(abs(change) <= steady_max for change in run["speed_change"].values())
            try:
                payload = json.loads(done.stdout) if done.returncode == 0 else None
            except json.JSONDecodeError as exc:
                payload, run["error"] = None, f"unreadable JSON on stdout: {_error_text(exc)}"
            if payload is None:
                run.setdefault("error", (done.stderr.strip().splitlines() or ["no output"])[-1])
                print(f"  cli run {index + 1}: failed after {wall:.1f} s: {run['error']}", file=sys.stderr, flush=True)
            else:
                run["medians_s"] = {r["backend"]: r.get("median_s") for r in payload["results"]}
                run["samples"] = {r["backend"]: r.get("n") for r in payload["results"]}
                run["wall_time_split_s"] = payload.get("wall_time_split_s")
                run["roofline_sources"] = {b: p.get("source") for b, p in payload.get("roofline", {}).items()}
                medians = ", ".join(f"{b} {m * 1e3:.3f} ms" for b, m in run["medians_s"].items() if m)
                plain = ""
                if before and after:
                    plain = "; reference runs " + ", ".join(
                        f"{b} {before[b] * 1e3:.3f} -> {after[b] * 1e3:.3f} ms" for b in before
                    )
                print(f"  cli run {index + 1}: {wall:.1f} s wall, medians {medians}{plain}", file=sys.stderr, flush=True)
            results.append(run)
    shown = ["python", *command[1:]] if runs else []
    if shown:
        shown[shown.index("--reports-dir") + 1] = "<scratch folder>"
    return {"model": model, "command": " ".join(shown), "runs": results, "references_s": references}


def _spread(values: list[float]) -> float | None:
    return (max(values) - min(values)) / statistics.median(values) if len(values) >= 2 else None


BACKENDS = ("torch", "onnxruntime")
BACKEND_NAMES = {"torch": "torch", "onnxruntime": "ONNX Runtime"}


def _normalised(run: dict[str, Any], backend: str) -> float | None:
    """A run's median over the mean of the two fresh-process reference runs
    around it: lwprof's figure with the machine's speed at that time taken out."""
    median = run.get("medians_s", {}).get(backend)
    before, after = run.get("sentinel_before_s"), run.get("sentinel_after_s")
    if not median or not before or not after:
        return None
    return median / ((before[backend] + after[backend]) / 2)


def _group_figures(runs: list[dict[str, Any]], references: list[dict[str, float] | None]) -> dict[str, Any]:
    """Spreads of one group of runs: lwprof's medians (the target's figure),
    the reference run that followed each of them (the same count of fresh
    processes without lwprof's timing: what the machine allowed meanwhile),
    and lwprof's speed-normalised medians."""
    figures: dict[str, Any] = {"runs": [r["run"] for r in runs], "spread": {}, "reference_spread": {},
                               "speed_normalised_spread": {}, "within_target": {}}
    after = [references[r["run"]] for r in runs if references[r["run"]]]
    for backend in BACKENDS:
        values = [r["medians_s"][backend] for r in runs if r.get("medians_s", {}).get(backend)]
        normalised = [v for v in (_normalised(r, backend) for r in runs) if v is not None]
        figures["spread"][backend] = _spread(values)
        figures["reference_spread"][backend] = _spread([reference[backend] for reference in after])
        figures["speed_normalised_spread"][backend] = _spread(normalised)
        figures["within_target"][backend] = figures["spread"][backend] is not None and figures["spread"][backend] <= TARGET_SPREAD
    return figures


def cli_summary(cli: dict[str, Any]) -> dict[str, Any]:
    """Spreads over all runs and over each group of three back-to-back runs
    (1-3, 4-6, ...; the target is about three)."""
    runs = cli["runs"]
    references = cli.get("references_s") or [None] * (len(runs) + 1)
    measured = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {
        "model": cli["model"],
        "failed_runs": len(runs) - len(measured),
        "medians_s": {b: [r["medians_s"].get(b) for r in measured] for b in BACKENDS},
        "reference_medians_s": {b: [ref[b] if ref else None for ref in references] for b in BACKENDS},
        "to_reference_ratio": {b: {r["run"]: _normalised(r, b) for r in measured} for b in BACKENDS},
        "steady_runs": sum(bool(r.get("steady")) for r in measured),
        **_group_figures(measured, references),
    }
    summary["triples"] = [
        _group_figures(group, references)
        for group in (measured[i : i + 3] for i in range(0, len(measured) - len(measured) % 3, 3))
    ]
    summary["triples_within_target"] = {
        b: sum(t["within_target"][b] for t in summary["triples"]) for b in BACKENDS
    }
    walls = [r["wall_s"] for r in measured]
    summary["max_wall_s"] = max(walls) if walls else None
    summary["wall_within_target"] = bool(walls) and max(walls) <= TARGET_WALL_S
    return summary


def summarize(rows: list[dict[str, Any]], results: list[dict[str, Any]], cli: dict[str, Any] | None, steady_max: float) -> dict[str, Any]:
    measured = [r for r in rows if not r.get("error")]
    summary: dict[str, Any] = {"models": len(rows), "measured_models": len(measured)}
    for pair in PAIRS:
        within = [r["model"] for r in measured if r[f"{pair}_within_target"]]
        summary[f"{pair}_models_within_target"] = within
        summary[f"{pair}_worst_deviation"] = max((r[f"{pair}_deviation"] for r in measured), key=abs, default=None)
        changes = [
            abs(r["pairs"][pair]["speed_change"])
            for result in results
            for r in result.get("rounds", [])
            if r["pairs"][pair]["quiet"]
        ]
        summary[f"{pair}_noise_floor"] = {
            "median_speed_change": statistics.median(changes) if changes else None,
            "largest_speed_change": max(changes) if changes else None,
            "share_of_pairs_over_steady_max": sum(c > steady_max for c in changes) / len(changes) if changes else None,
        }
    both = [r["model"] for r in measured if r["torch_within_target"] and r["ort_within_target"]]
    summary["models_within_target_on_both"] = both
    summary["accuracy_target_met"] = len(both) >= TARGET_MODELS
    summary["cli"] = cli_summary(cli) if cli else None
    return summary


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None or value == "" else format(value, spec)


def markdown_summary(payload: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    summary, settings, environment = payload["summary"], payload["settings"], payload["environment"]
    measured = [r for r in rows if not r.get("error")]
    lines = [
        "# Latency measurement: accuracy, stability, wall time",
        "",
        f"Targets: for at least {TARGET_MODELS} zoo models, lwprof's torch median within ±{TARGET_DEVIATION:.0%} of "
        "`torch.utils.benchmark.Timer.blocked_autorange()` and its ONNX Runtime median within "
        f"±{TARGET_DEVIATION:.0%} of a bare `session.run` loop; three back-to-back `lwprof profile` runs whose "
        f"medians spread by at most {TARGET_SPREAD:.0%}; `lwprof profile mobilenetv3 --device cpu` under "
        f"{TARGET_WALL_S:g} s. Generated by `{settings['command']}`; every round's figures and the environment in "
        "`results.json`, full precision in `results.csv`; method in `benchmarks/README.md`.",
        "",
        "## Environment",
        "",
        *format_environment(environment),
        f"- Load average (1 min) at end: {_fmt(environment.get('load_average_1min_at_end'), '.2f')}; "
        f"benchmark wall time {_fmt(environment.get('benchmark_wall_s'), '.0f')} s",
        f"- Settings: {settings['threads']} threads for every backend; lwprof's default budget (3 warm-up runs / "
        "0.2 s, then 1-5 s until the median's 95% CI is within 1%); Timer `blocked_autorange(min_run_time=1.0)`; "
        f"bare loop 1 s after the same warm-up; {WARMUP_S:g} s untimed warm-up of each before round 1; each pair "
        f"bracketed by a {SENTINEL_S:g} s plain loop of the model (a pair is steady when the two differ by at most "
        f"{settings['steady_max']:.0%}); {settings['rounds']} usable (quiet: other processes at most "
        f"{settings['quiet_max_foreign_cpu_share']:.0%} of the CPU, and steady) rounds wanted per pair, at most "
        f"{settings['max_rounds']} rounds",
        "",
        "## Headline",
        "",
    ]
    if measured:
        lines.append(
            f"- Models within ±{TARGET_DEVIATION:.0%}: torch {len(summary['torch_models_within_target'])} of "
            f"{len(measured)}, ONNX Runtime {len(summary['ort_models_within_target'])} of {len(measured)}, both "
            f"{len(summary['models_within_target_on_both'])} of {len(measured)} (target: at least {TARGET_MODELS}: "
            f"{'met' if summary['accuracy_target_met'] else 'not met'}). Largest deviation: torch "
            f"{_fmt(summary['torch_worst_deviation'], '+.1%')}, ONNX Runtime {_fmt(summary['ort_worst_deviation'], '+.1%')}."
        )
    floors = {pair: summary[f"{pair}_noise_floor"] for pair in PAIRS}
    if all(floor["median_speed_change"] is not None for floor in floors.values()):
        lines.append(
            "- Noise floor: the same plain loop of the model, measured just before and just after a pair (a few "
            "seconds apart, in rounds other processes left quiet), changed by a median of "
            + ", ".join(f"{f['median_speed_change']:.1%} ({pair})" for pair, f in floors.items())
            + "; by more than "
            f"{settings['steady_max']:.0%} around "
            + ", ".join(f"{f['share_of_pairs_over_steady_max']:.0%} of the {pair} pairs" for pair, f in floors.items())
            + "; at most "
            + ", ".join(f"{f['largest_speed_change']:.0%} ({pair})" for pair, f in floors.items())
            + ". A deviation is only as good as this floor."
        )
    cli = summary.get("cli")
    if cli:
        def by_backend(figures: dict[str, Any]) -> str:
            return ", ".join(f"{BACKEND_NAMES[b]} {_fmt(figures[b], '.1%')}" for b in BACKENDS)

        failed = f"; {cli['failed_runs']} runs failed" if cli["failed_runs"] else ""
        triples = cli["triples"]
        within = cli["triples_within_target"]
        lines.append(
            f"- {len(payload['cli']['runs'])} back-to-back `lwprof profile {cli['model']}` runs, "
            f"{len(triples)} group{'s' if len(triples) != 1 else ''} of three: groups whose medians spread by at most "
            f"{TARGET_SPREAD:.0%}: " + ", ".join(f"{BACKEND_NAMES[b]} {within[b]} of {len(triples)}" for b in BACKENDS)
            + f". Over all runs: lwprof spread {by_backend(cli['spread'])}; the fresh-process reference runs "
            f"between them (no lwprof timing code: the machine alone) {by_backend(cli['reference_spread'])}; "
            f"lwprof over its two neighbouring references {by_backend(cli['speed_normalised_spread'])}. "
            f"Longest wall time {_fmt(cli['max_wall_s'], '.1f')} s (target < {TARGET_WALL_S:g} s){failed}."
        )
    lines += [
        "",
        "## lwprof against the reference timers",
        "",
        "Deviation: median over the usable rounds of lwprof's median / the reference's median in the same round, "
        "minus 1 (range over those rounds in parentheses; ✗: outside ±5%). Milliseconds: median over the same rounds. "
        "Rounds: usable / run; the largest change of machine speed seen around a pair is in `results.csv`.",
        "",
        "| model | lwprof torch ms | Timer ms | torch deviation | rounds | lwprof ORT ms | bare session.run ms | ORT deviation | rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | failed: {r['error']} | | | | | | | |")
            continue
        cells = []
        for pair, (lwprof_key, reference_key) in PAIRS.items():
            mark = "" if r[f"{pair}_within_target"] else " ✗"
            cells += [
                f"{r[f'{lwprof_key}_median_s'] * 1e3:.3f}",
                f"{r[f'{reference_key}_median_s'] * 1e3:.3f}",
                f"{r[f'{pair}_deviation']:+.1%}{mark} ({r[f'{pair}_deviation_min']:+.1%} … {r[f'{pair}_deviation_max']:+.1%})",
                f"{r[f'{pair}_usable_rounds']}/{r['rounds']}",
            ]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    if cli:
        lines += [
            "",
            "## Back-to-back `lwprof profile` runs",
            "",
            f"`{payload['cli']['command']}` (default budgets), run after run. Before the first run and after each, "
            f"a reference run in a fresh process (`bench_latency.py {REFERENCE_FLAG} MODEL`: the same model, input "
            "and ONNX file, timed by `Timer.blocked_autorange` and a bare `session.run` loop, 1 s each): the "
            "machine's speed for a fresh process at that time. Spreads are (max - min) / median.",
            "",
            "| runs | torch spread | reference torch spread | torch / reference spread | ONNX Runtime spread "
            "| reference ORT spread | ORT / reference spread |",
            "|---|---|---|---|---|---|---|",
        ]
        overall = [{**cli, "runs": ["all"]}] if len(cli["runs"]) > 3 else []
        for group in [*cli["triples"], *overall]:
            cells = []
            for backend in BACKENDS:
                mark = "" if group["spread"][backend] is None or group["spread"][backend] <= TARGET_SPREAD else " ✗"
                cells += [
                    _fmt(group["spread"][backend], ".1%") + mark,
                    _fmt(group["reference_spread"][backend], ".1%"),
                    _fmt(group["speed_normalised_spread"][backend], ".1%"),
                ]
            label = "all" if group["runs"] == ["all"] else f"{group['runs'][0]}-{group['runs'][-1]}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| run | wall s | torch median ms | reference torch before → after ms | ONNX Runtime median ms "
            "| reference ORT before → after ms | roofline peaks | other processes' CPU |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in payload["cli"]["runs"]:
            if "error" in run:
                lines.append(f"| {run['run']} | {run['wall_s']:.1f} | failed: {run['error']} | | | | | |")
                continue
            cells = []
            for backend in BACKENDS:
                median = run["medians_s"].get(backend)
                cells.append(_fmt(median * 1e3 if median else None, ".3f"))
                before, after = run.get("sentinel_before_s"), run.get("sentinel_after_s")
                cells.append(f"{before[backend] * 1e3:.3f} → {after[backend] * 1e3:.3f}" if before and after else "—")
            sources = ", ".join(sorted(set(filter(None, run.get("roofline_sources", {}).values())))) or "—"
            lines.append(
                f"| {run['run']} | {run['wall_s']:.1f} | " + " | ".join(cells) + f" | {sources} | {_fmt(run['foreign_cpu_share'], '.0%')} |"
            )
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        # csv writes floats with repr(): full precision; None becomes an empty cell
        writer.writerows(rows)


def write_results(out: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Derive rows and summary from the raw figures in ``payload``; write the three result files."""
    rows = [model_row(result) for result in payload["models"]]
    payload["summary"] = summarize(rows, payload["models"], payload.get("cli"), payload["settings"]["steady_max"])
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        _write_csv(out / "results.csv", rows)
    ordered = {key: payload.get(key) for key in ("environment", "settings", "summary", "models", "cli")}
    (out / "results.json").write_text(json.dumps(ordered, indent=2) + "\n")
    (out / "summary.md").write_text(markdown_summary(payload, rows))
    return payload["summary"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS, help="zoo models (default: 7 lightweight ones)")
    parser.add_argument("--threads", type=int, help="threads for every backend (default: one per physical core, as lwprof)")
    parser.add_argument("--rounds", type=int, default=3, help="quiet rounds wanted per model (default 3)")
    parser.add_argument("--max-rounds", type=int, help="most rounds per model, quiet or not (default 2x --rounds)")
    parser.add_argument("--cli-model", default="mobilenet_v3_large_100", help="model of the back-to-back CLI runs")
    parser.add_argument(
        "--cli-runs", type=int, default=9,
        help="back-to-back `lwprof profile` runs, judged in groups of three (default 9; 0 skips)",
    )
    parser.add_argument(
        "--quiet-max", type=float, default=0.05,
        help="largest share of the machine's CPU other processes may use during a quiet round (default 0.05)",
    )
    parser.add_argument(
        "--steady-max", type=float, default=0.05,
        help="largest change of the model's plain-loop time across a pair for its round to count (default 0.05)",
    )
    parser.add_argument("--cache-dir", type=Path, help="ONNX export and roofline cache (default: lwprof's)")
    parser.add_argument(
        "--rerender", action="store_true",
        help="time nothing: rebuild results.csv, the summary and summary.md from the raw figures in OUT/results.json",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    parser.add_argument(
        REFERENCE_FLAG, metavar="MODEL",
        help="time nothing of lwprof's: print one fresh-process reference run of MODEL as JSON (what the CLI runs are bracketed by)",
    )
    args = parser.parse_args(argv)
    args.max_rounds = args.max_rounds or 2 * args.rounds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        write_results(args.out, json.loads((args.out / "results.json").read_text()))
        print(f"re-rendered {args.out} from its results.json", file=sys.stderr)
        return 0

    import torch

    from lwprof.backends import default_cache_dir
    from lwprof.environment import physical_cores

    threads = args.threads or physical_cores()
    if args.reference_run:
        print(json.dumps(reference_run(args.reference_run, threads, args.cache_dir or default_cache_dir())))
        return 0
    torch.set_num_threads(threads)
    cache_dir = args.cache_dir or default_cache_dir()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {
        "command": " ".join(["benchmarks/bench_latency.py", *(argv if argv is not None else sys.argv[1:])]),
        "models": args.models,
        "threads": threads,
        "rounds": args.rounds,
        "max_rounds": args.max_rounds,
        "quiet_max_foreign_cpu_share": args.quiet_max,
        "steady_max": args.steady_max,
        "cli_model": args.cli_model,
        "cli_runs": args.cli_runs,
        "cache_dir": str(cache_dir),
    }
    started = time.perf_counter()
    results = []
    for index, name in enumerate(args.models, 1):
        print(f"[{index}/{len(args.models)}] {name}", file=sys.stderr, flush=True)
        try:
            results.append(measure_model(name, threads, args.rounds, args.max_rounds, cache_dir, args.quiet_max, args.steady_max))
        except Exception as exc:  # one model that cannot run must not lose the others
            print(f"  failed: {_error_text(exc)}", file=sys.stderr, flush=True)
            results.append({"model": name, "error": _error_text(exc)})
    cli = None
    if args.cli_runs > 0:
        print(f"{args.cli_runs} back-to-back `lwprof profile {args.cli_model}` runs", file=sys.stderr, flush=True)
        cli = run_cli(args.cli_model, args.cli_runs, args.cache_dir, threads, args.quiet_max, args.steady_max)
    environment["load_average_1min_at_end"] = capture_environment()["load_average_1min"]
    environment["benchmark_wall_s"] = time.perf_counter() - started

    payload = {"environment": environment, "settings": settings, "models": results, "cli": cli}
    write_results(args.out, payload)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
