"""Does ``lwprof profile`` report the latency a user's own process sees?

Targets (issue "Latency a user can reproduce", README "How it measures"):

1. On at least 7 zoo models, both backends: lwprof's median within ±5% of
   the reference median, taken as the median of per-pair ratios over
   alternating pairs, with the spread of those ratios stated. The reference
   is ``reference_latency.py`` in a fresh process per backend: the zoo model
   timed by ``torch.utils.benchmark.Timer.blocked_autorange`` under
   ``inference_mode``, or a bare ``InferenceSession`` loop; it imports nothing
   of lwprof but ``lwprof.models``.
2. lwprof's tuned-allocator figure against the same reference run with
   ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` in its environment:
   the deployment recipe lwprof prints must give the figure lwprof reports.
3. A run that measures the roofline (and exports ONNX) first and one that
   reads both from the cache agree within noise.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_latency.py
    .venv/bin/python benchmarks/bench_latency.py --models pplcnet_100 --pairs 3 --roofline-pairs 0

Method: per model, one untimed ``lwprof profile`` run warms the ONNX export
and roofline caches (and names the ONNX file the reference runs). Then
``--pairs`` pairs. A pair is, per backend, one ``lwprof profile MODEL
--device cpu --backend B --layer-runs 0 --no-plots --format json`` run (its
default ``--allocator auto``) and that backend's reference runs (torch: plain
and with the tuned environment; ONNX Runtime: the bare loop), every one a
process of its own, back to back; which side goes first alternates from pair
to pair, so the machine's drift does not always favour one side. A pair's
ratio is lwprof's median over the reference's median; a model's deviation is
the median of its pairs' ratios, minus 1. Each step records the share of the
CPU other processes used meanwhile (only a hint: the host's own load on a VM
is invisible to it).

Results go to ``reports/benchmarks/latency/`` (results.csv, results.json with
every raw figure and the environment, summary.md). Timings are never asserted
in tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import REPO_ROOT, capture_environment, format_environment, timed_step

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
TARGET_MODELS = 7
REFERENCE = Path(__file__).resolve().parent / "reference_latency.py"
# The deployment recipe lwprof prints for its tuned figure (lwprof.runtime.allocator.TUNED_ENVIRONMENT),
# written out here so the reference side shares no code with lwprof.
TUNED_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "latency"
MEASURED_SOURCES = [
    "profiler/runtime/measure.py",
    "profiler/runtime/worker.py",
    "profiler/runtime/allocator.py",
    "profiler/runtime/backends/__init__.py",
    "profiler/runtime/backends/torch_eager.py",
    "profiler/runtime/backends/onnx_runtime.py",
    "profiler/commands/profile_job.py",
    "benchmarks/reference_latency.py",
]
# pair name -> (lwprof figure, reference step)
PAIRS = {
    "torch": (("torch", "median_s"), "torch"),
    "torch_tuned": (("torch", "tuned_median_s"), "torch_tuned"),
    "onnxruntime": (("onnxruntime", "median_s"), "onnxruntime"),
    "torch_loop": (("torch", "median_s"), "torch_loop"),
}
PAIR_TITLES = {"torch": "torch", "torch_tuned": "torch, tuned allocator", "onnxruntime": "ONNX Runtime",
               "torch_loop": "torch against the hand-written loop"}
# The target's comparisons; torch_loop is context: where a second user's script lands
TARGET_PAIRS = ("torch", "torch_tuned", "onnxruntime")


def lwprof_run(model: str, cache_dir: Path, reports: Path, backends: str = "torch,onnxruntime") -> dict[str, Any]:
    command = [sys.executable, "-m", "lwprof", "profile", model, "--device", "cpu", "--backend", backends,
               "--layer-runs", "0", "--no-plots", "--format", "json", "--reports-dir", str(reports), "--cache-dir", str(cache_dir)]
    step = timed_step(command)
    payload = step.pop("output")
    if payload is not None:
        step["results"] = {
            r["backend"]: {key: r.get(key) for key in ("median_s", "mean_s", "iqr_s", "n", "tuned_median_s", "minor_page_faults_per_pass",
                                                       "tuned_minor_page_faults_per_pass", "allocator_tax", "skipped")}
            for r in payload["results"]
        }
        step["onnx_path"] = next((r["info"].get("onnx_path") for r in payload["results"] if r["backend"] == "onnxruntime"), None)
        step["roofline_sources"] = {b: p.get("source") for b, p in payload.get("roofline", {}).items()}
        step["wall_time_split_s"] = payload.get("wall_time_split_s")
    return step


def reference_run(step: str, model: str, threads: int, min_time: float, onnx_path: str | None) -> dict[str, Any]:
    backend = "onnxruntime" if step == "onnxruntime" else "torch"
    command = [sys.executable, str(REFERENCE), backend, model, "--threads", str(threads), "--min-time", str(min_time)]
    if backend == "onnxruntime":
        command += ["--onnx", str(onnx_path)]
    if step == "torch_loop":
        command += ["--harness", "loop"]
    env = dict(os.environ)
    for key in TUNED_ENVIRONMENT:
        env.pop(key, None)
    if step == "torch_tuned":
        env.update(TUNED_ENVIRONMENT)
    result = timed_step(command, env)
    result["figures"] = result.pop("output")
    return result


def _describe(step: dict[str, Any], key: str) -> str:
    figures = step.get("figures") or {}
    return f"{key} {figures['median_s'] * 1e3:.3f} ms" if figures.get("median_s") else f"{key} failed"


# Each backend is paired on its own, so the lwprof run and the reference runs
# it is compared with lie within seconds of each other (the machine's speed
# drifts by 10-20% over tens of seconds).
BACKEND_STEPS = {"torch": ["torch", "torch_loop", "torch_tuned"], "onnxruntime": ["onnxruntime"]}


def measure_model(model: str, pairs: int, threads: int, min_time: float, cache_dir: Path, reports: Path) -> dict[str, Any]:
    """Every pair of one model, raw figures only. A pair is, per backend,
    ``lwprof profile --backend B`` and that backend's reference runs, lwprof
    first in odd pairs and last in even ones."""
    warm = lwprof_run(model, cache_dir, reports)  # untimed: fills the export and roofline caches
    result: dict[str, Any] = {"model": model, "warm_up": warm, "pairs": []}
    if "results" not in warm or not warm.get("onnx_path"):
        result["error"] = warm.get("error") or "the warm-up run gave no ONNX file"
        return result
    for index in range(pairs):
        lwprof_first = index % 2 == 0
        pair: dict[str, Any] = {"lwprof_first": lwprof_first, "lwprof": {"results": {}}, "lwprof_runs": {}, "reference": {}}
        for backend, steps in BACKEND_STEPS.items():
            order = steps if lwprof_first else steps[::-1]
            if lwprof_first:
                pair["lwprof_runs"][backend] = lwprof_run(model, cache_dir, reports, backend)
            for step in order:
                pair["reference"][step] = reference_run(step, model, threads, min_time, warm["onnx_path"])
            if not lwprof_first:
                pair["lwprof_runs"][backend] = lwprof_run(model, cache_dir, reports, backend)
            pair["lwprof"]["results"].update(pair["lwprof_runs"][backend].get("results") or {})
        result["pairs"].append(pair)
        figures = []
        for name, ((backend, key), reference) in PAIRS.items():
            mine = (pair["lwprof"]["results"].get(backend) or {}).get(key)
            theirs = (pair["reference"].get(reference, {}).get("figures") or {}).get("median_s")
            if mine and theirs:
                figures.append(f"{name} {mine * 1e3:.3f} vs {theirs * 1e3:.3f} ms ({mine / theirs - 1:+.1%})")
        print(f"  pair {index + 1}: " + "; ".join(figures), file=sys.stderr, flush=True)
    return result


def roofline_check(model: str, pairs: int, cache_dir: Path, reports: Path) -> dict[str, Any]:
    """``pairs`` alternating runs with an empty cache (roofline peaks measured
    and ONNX exported in the lwprof process before timing) and with the warm
    cache (both read from files)."""
    runs = []
    for index in range(pairs):
        order = ["cold", "warm"] if index % 2 == 0 else ["warm", "cold"]
        pair = {}
        for kind in order:
            if kind == "cold":
                with tempfile.TemporaryDirectory(prefix="lwprof-cold-cache-") as empty:
                    pair[kind] = lwprof_run(model, Path(empty), reports)
            else:
                pair[kind] = lwprof_run(model, cache_dir, reports)
        runs.append({"order": order, **pair})
        cold, warm = pair["cold"].get("results") or {}, pair["warm"].get("results") or {}
        notes = [f"{b} cold {cold[b]['median_s'] * 1e3:.3f} / warm {warm[b]['median_s'] * 1e3:.3f} ms"
                 for b in ("torch", "onnxruntime") if (cold.get(b) or {}).get("median_s") and (warm.get(b) or {}).get("median_s")]
        print(f"  roofline pair {index + 1}: " + "; ".join(notes), file=sys.stderr, flush=True)
    return {"model": model, "pairs": runs}


# ---------------------------------------------------------------------------
# Derived figures (pure: --rerender rebuilds them from results.json)


def _ratios(result: dict[str, Any], name: str, statistic: str = "median_s") -> list[float]:
    """Per pair: lwprof's figure over the reference's (``statistic``: median_s,
    or mean_s as a cross-check: a Timer block of several calls has a mean, not
    a per-call median)."""
    (backend, key), reference = PAIRS[name]
    if statistic == "mean_s":
        key = {"median_s": "mean_s", "tuned_median_s": None}[key]
        if key is None:
            return []  # lwprof keeps only the tuned run's median and IQR in its summary
    ratios = []
    for pair in result.get("pairs", []):
        mine = ((pair["lwprof"].get("results") or {}).get(backend) or {}).get(key)
        theirs = (pair["reference"].get(reference, {}).get("figures") or {}).get(statistic)
        if mine and theirs:
            ratios.append(mine / theirs)
    return ratios


def _median_of(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def model_row(result: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"model": result["model"], "pairs": len(result.get("pairs", [])), "error": result.get("error", "")}
    if row["error"]:
        return row
    pairs = result["pairs"]
    row["quiet_pairs"] = sum(
        all((step.get("foreign_cpu_share") or 0) <= 0.05 for step in [*pair["lwprof_runs"].values(), *pair["reference"].values()])
        for pair in pairs
    )
    for name, ((backend, key), reference) in PAIRS.items():
        ratios = _ratios(result, name)
        row[f"{name}_lwprof_median_s"] = _median_of([((p["lwprof"].get("results") or {}).get(backend) or {}).get(key) for p in pairs])
        row[f"{name}_reference_median_s"] = _median_of([(p["reference"].get(reference, {}).get("figures") or {}).get("median_s") for p in pairs])
        row[f"{name}_pairs_used"] = len(ratios)
        row[f"{name}_deviation"] = statistics.median(ratios) - 1 if ratios else None
        row[f"{name}_deviation_min"] = min(ratios) - 1 if ratios else None
        row[f"{name}_deviation_max"] = max(ratios) - 1 if ratios else None
        row[f"{name}_within_target"] = bool(ratios) and abs(statistics.median(ratios) - 1) <= TARGET_DEVIATION
        for side, values in (("lwprof", [((p["lwprof"].get("results") or {}).get(backend) or {}).get(key) for p in pairs]),
                             ("reference", [(p["reference"].get(reference, {}).get("figures") or {}).get("median_s") for p in pairs])):
            present = [v for v in values if v]
            # How much the same measurement moved from pair to pair: the noise a pair's ratio carries
            row[f"{name}_{side}_spread"] = (max(present) - min(present)) / statistics.median(present) if len(present) > 1 else None
        means = _ratios(result, name, "mean_s")
        row[f"{name}_mean_deviation"] = statistics.median(means) - 1 if means else None
    lwprof = [p["lwprof"].get("results") or {} for p in pairs]
    row["torch_minor_page_faults_per_pass"] = _median_of([(r.get("torch") or {}).get("minor_page_faults_per_pass") for r in lwprof])
    row["torch_tuned_minor_page_faults_per_pass"] = _median_of([(r.get("torch") or {}).get("tuned_minor_page_faults_per_pass") for r in lwprof])
    row["onnxruntime_minor_page_faults_per_pass"] = _median_of([(r.get("onnxruntime") or {}).get("minor_page_faults_per_pass") for r in lwprof])
    row["torch_allocator_tax"] = _median_of([(r.get("torch") or {}).get("allocator_tax") for r in lwprof])
    for step in ("torch", "torch_tuned", "torch_loop"):
        row[f"reference_{step}_minor_page_faults_per_call"] = _median_of(
            [(p["reference"].get(step, {}).get("figures") or {}).get("minor_page_faults_per_call") for p in pairs]
        )
    row.update(_between_user_processes(pairs))
    reference_tax = [
        (p["reference"]["torch"].get("figures") or {}).get("median_s", 0) / t
        for p in pairs if (t := (p["reference"]["torch_tuned"].get("figures") or {}).get("median_s"))
    ]
    row["reference_allocator_tax"] = statistics.median(reference_tax) - 1 if reference_tax else None
    for backend in BACKEND_STEPS:
        row[f"lwprof_{backend}_wall_s_median"] = _median_of([p["lwprof_runs"][backend].get("wall_s") for p in pairs])
    return row


def _fault_states_match(a: float | None, b: float | None) -> bool:
    # The same heap state: within 5% (or 50 faults, for counts near zero) of each other
    return a is not None and b is not None and abs(a - b) <= max(50.0, 0.05 * max(a, b))


def _between_user_processes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Two plain scripts against each other, in the same pairs: the
    hand-written loop's median over the Timer's; and how often lwprof's worker
    and the Timer's process landed in the same page-fault state, with lwprof's
    deviation over those pairs alone."""
    loop_ratios, matched = [], []
    for pair in pairs:
        timer = pair["reference"].get("torch", {}).get("figures") or {}
        loop = pair["reference"].get("torch_loop", {}).get("figures") or {}
        if timer.get("median_s") and loop.get("median_s"):
            loop_ratios.append(loop["median_s"] / timer["median_s"])
        mine = (pair["lwprof"].get("results") or {}).get("torch") or {}
        if mine.get("median_s") and timer.get("median_s") and _fault_states_match(
                mine.get("minor_page_faults_per_pass"), timer.get("minor_page_faults_per_call")):
            matched.append(mine["median_s"] / timer["median_s"])
    row: dict[str, Any] = {"loop_vs_timer_pairs_used": len(loop_ratios), "torch_same_fault_state_pairs": len(matched)}
    row["loop_vs_timer_deviation"] = statistics.median(loop_ratios) - 1 if loop_ratios else None
    row["loop_vs_timer_deviation_min"] = min(loop_ratios) - 1 if loop_ratios else None
    row["loop_vs_timer_deviation_max"] = max(loop_ratios) - 1 if loop_ratios else None
    row["loop_vs_timer_within_target"] = bool(loop_ratios) and abs(statistics.median(loop_ratios) - 1) <= TARGET_DEVIATION
    row["torch_same_fault_state_deviation"] = statistics.median(matched) - 1 if matched else None
    return row


def roofline_summary(check: dict[str, Any] | None) -> dict[str, Any] | None:
    if not check:
        return None
    summary: dict[str, Any] = {"model": check["model"], "pairs": len(check["pairs"])}
    for backend in ("torch", "onnxruntime"):
        ratios = []
        for pair in check["pairs"]:
            cold = ((pair["cold"].get("results") or {}).get(backend) or {}).get("median_s")
            warm = ((pair["warm"].get("results") or {}).get(backend) or {}).get("median_s")
            if cold and warm:
                ratios.append(cold / warm)
        summary[f"{backend}_cold_vs_warm"] = statistics.median(ratios) - 1 if ratios else None
        summary[f"{backend}_cold_vs_warm_min"] = min(ratios) - 1 if ratios else None
        summary[f"{backend}_cold_vs_warm_max"] = max(ratios) - 1 if ratios else None
        for kind in ("cold", "warm"):
            summary[f"{backend}_{kind}_minor_page_faults_per_pass"] = _median_of(
                [((p[kind].get("results") or {}).get(backend) or {}).get("minor_page_faults_per_pass") for p in check["pairs"]]
            )
    summary["cold_sources"] = sorted({s for p in check["pairs"] for s in (p["cold"].get("roofline_sources") or {}).values() if s})
    summary["warm_sources"] = sorted({s for p in check["pairs"] for s in (p["warm"].get("roofline_sources") or {}).values() if s})
    summary["cold_wall_s"] = _median_of([p["cold"].get("wall_s") for p in check["pairs"]])
    summary["warm_wall_s"] = _median_of([p["warm"].get("wall_s") for p in check["pairs"]])
    return summary


def summarize(rows: list[dict[str, Any]], roofline: dict[str, Any] | None) -> dict[str, Any]:
    measured = [r for r in rows if not r["error"]]
    summary: dict[str, Any] = {"models": len(rows), "measured": len(measured)}
    for name in PAIRS:
        within = [r["model"] for r in measured if r[f"{name}_within_target"]]
        deviations = [r[f"{name}_deviation"] for r in measured if r[f"{name}_deviation"] is not None]
        summary[f"{name}_models_within_target"] = within
        summary[f"{name}_deviation_range"] = [min(deviations), max(deviations)] if deviations else None
        summary[f"{name}_models_compared"] = len(deviations)
    looped = [r for r in measured if r.get("loop_vs_timer_deviation") is not None]
    summary["loop_vs_timer_models_compared"] = len(looped)
    summary["loop_vs_timer_models_within_target"] = [r["model"] for r in looped if r["loop_vs_timer_within_target"]]
    summary["loop_vs_timer_deviation_range"] = (
        [min(r["loop_vs_timer_deviation"] for r in looped), max(r["loop_vs_timer_deviation"] for r in looped)] if looped else None
    )
    both = [r["model"] for r in measured if r["torch_within_target"] and r["onnxruntime_within_target"]]
    summary["models_within_target_on_both"] = both
    summary["target_met"] = len(both) >= TARGET_MODELS
    summary["roofline"] = roofline_summary(roofline)
    return summary


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None or value == "" else format(value, spec)


def _deviation_cell(row: dict[str, Any], name: str) -> str:
    if row.get(f"{name}_deviation") is None:
        return "—"
    mark = "" if row[f"{name}_within_target"] else " ✗"
    return (f"{row[f'{name}_deviation']:+.1%}{mark} ({row[f'{name}_deviation_min']:+.1%} … {row[f'{name}_deviation_max']:+.1%}, "
            f"{row[f'{name}_pairs_used']} pairs)")


def markdown_summary(payload: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    summary, settings, environment = payload["summary"], payload["settings"], payload["environment"]
    measured = [r for r in rows if not r["error"]]
    lines = [
        "# Latency fidelity: lwprof against a user's own process",
        "",
        f"Target: on at least {TARGET_MODELS} zoo models, both backends, lwprof's median within ±{TARGET_DEVIATION:.0%} of "
        "the reference's, as the median of per-pair ratios over alternating pairs. The reference "
        "(`benchmarks/reference_latency.py`) is a fresh process per backend that imports nothing of lwprof but "
        "`lwprof.models`: `torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time="
        f"{settings['reference_min_time_s']:g})` under `inference_mode`, or a bare `InferenceSession` loop for "
        f"{settings['reference_min_time_s']:g} s. Generated by `{settings['command']}`; raw figures and the environment in "
        "`results.json`, full precision in `results.csv`; method in `benchmarks/README.md`.",
        "",
        "## Environment",
        "",
        *format_environment(environment),
        f"- Load average (1 min) at end: {_fmt(environment.get('load_average_1min_at_end'), '.2f')}; "
        f"benchmark wall time {_fmt(environment.get('benchmark_wall_s'), '.0f')} s",
        f"- Settings: {settings['threads']} threads; lwprof `profile MODEL --device cpu --backend B --layer-runs 0` with its "
        f"default budget and `--allocator auto`; {settings['pairs']} alternating pairs per model and backend (lwprof first in "
        "odd pairs, the references first in even ones)",
        "",
        "## Headline",
        "",
    ]
    if measured:
        within = {name: len(summary[f"{name}_models_within_target"]) for name in PAIRS}
        ranges = {name: summary[f"{name}_deviation_range"] for name in PAIRS}
        lines.append(
            f"- Within ±{TARGET_DEVIATION:.0%} of the reference: torch {within['torch']} of {len(measured)}, ONNX Runtime "
            f"{within['onnxruntime']} of {len(measured)}, both {len(summary['models_within_target_on_both'])} of {len(measured)} "
            f"(target: at least {TARGET_MODELS}: {'met' if summary['target_met'] else 'not met'}). Deviations: torch "
            + (f"{ranges['torch'][0]:+.1%} … {ranges['torch'][1]:+.1%}" if ranges["torch"] else "—")
            + ", ONNX Runtime "
            + (f"{ranges['onnxruntime'][0]:+.1%} … {ranges['onnxruntime'][1]:+.1%}" if ranges["onnxruntime"] else "—")
            + "."
        )
        if summary.get("loop_vs_timer_models_compared"):
            loop_range = summary["loop_vs_timer_deviation_range"]
            lines.append(
                "- Two user processes against each other, in the same pairs: a hand-written `perf_counter` loop's median "
                f"against the Timer's within ±{TARGET_DEVIATION:.0%} on {len(summary['loop_vs_timer_models_within_target'])} of "
                f"{summary['loop_vs_timer_models_compared']} models ({loop_range[0]:+.1%} … {loop_range[1]:+.1%}): how far "
                "the Timer is from a second plain script (per model below)."
            )
        if summary["torch_tuned_models_compared"]:
            lines.append(
                "- lwprof's tuned-allocator figure against the reference run with "
                + " ".join(f"`{k}={v}`" for k, v in TUNED_ENVIRONMENT.items())
                + f": {within['torch_tuned']} of {summary['torch_tuned_models_compared']} models within ±{TARGET_DEVIATION:.0%} "
                f"({ranges['torch_tuned'][0]:+.1%} … {ranges['torch_tuned'][1]:+.1%})."
            )
        spreads = {name: sorted(r[f"{name}_reference_spread"] for r in measured if r.get(f"{name}_reference_spread") is not None)
                   for name in ("torch", "onnxruntime")}
        if spreads["torch"] and spreads["onnxruntime"]:
            lines.append(
                "- The noise floor: the reference against itself, its median's spread over the pairs ((max - min) / median), "
                f"torch {spreads['torch'][0]:.1%} … {spreads['torch'][-1]:.1%} (median {statistics.median(spreads['torch']):.1%}), "
                f"ONNX Runtime {spreads['onnxruntime'][0]:.1%} … {spreads['onnxruntime'][-1]:.1%} "
                f"(median {statistics.median(spreads['onnxruntime']):.1%}). Where it is wider than ±{TARGET_DEVIATION:.0%}, "
                "a pair's ratio carries that much of the machine's own drift."
            )
        taxes = [r["torch_allocator_tax"] for r in measured if r["torch_allocator_tax"] is not None]
        faults = [r["torch_minor_page_faults_per_pass"] for r in measured if r["torch_minor_page_faults_per_pass"] is not None]
        if faults:
            lines.append(
                f"- Page faults: the plain torch process takes {min(faults):,.0f} … {max(faults):,.0f} minor page faults per pass"
                + (f"; the default allocator costs {min(taxes):+.0%} … {max(taxes):+.0%} against the tuned one" if taxes else "")
                + " (per model below)."
            )
    roofline = summary.get("roofline")
    if roofline:
        lines.append(
            f"- Roofline first or from the cache ({roofline['model']}, {roofline['pairs']} alternating pairs; cold: empty cache, "
            f"peaks {', '.join(roofline['cold_sources']) or '?'} and ONNX exported before timing; warm: "
            f"{', '.join(roofline['warm_sources']) or '?'}): cold/warm median "
            f"torch {_fmt(roofline['torch_cold_vs_warm'], '+.1%')} ({_fmt(roofline['torch_cold_vs_warm_min'], '+.1%')} … "
            f"{_fmt(roofline['torch_cold_vs_warm_max'], '+.1%')}), ONNX Runtime {_fmt(roofline['onnxruntime_cold_vs_warm'], '+.1%')} "
            f"({_fmt(roofline['onnxruntime_cold_vs_warm_min'], '+.1%')} … {_fmt(roofline['onnxruntime_cold_vs_warm_max'], '+.1%')}); "
            f"torch page faults per pass (median) {_fmt(roofline['torch_cold_minor_page_faults_per_pass'], ',.0f')} cold, "
            f"{_fmt(roofline['torch_warm_minor_page_faults_per_pass'], ',.0f')} warm; "
            f"wall time {_fmt(roofline['cold_wall_s'], '.1f')} s cold, {_fmt(roofline['warm_wall_s'], '.1f')} s warm."
        )
    lines += [
        "",
        "## Per model",
        "",
        "Deviation: median over the pairs of lwprof's median / the reference's median in the same pair, minus 1 "
        "(range over the pairs in parentheses; ✗: outside ±5%). Milliseconds: medians over the pairs.",
        "",
        "| model | lwprof torch ms | Timer ms | torch deviation | lwprof tuned ms | Timer, tuned env ms | tuned deviation "
        "| lwprof ORT ms | bare session.run ms | ORT deviation | quiet pairs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 10)
            continue
        cells = []
        for name in TARGET_PAIRS:
            cells += [
                _fmt(r[f"{name}_lwprof_median_s"] and r[f"{name}_lwprof_median_s"] * 1e3, ".3f"),
                _fmt(r[f"{name}_reference_median_s"] and r[f"{name}_reference_median_s"] * 1e3, ".3f"),
                _deviation_cell(r, name),
            ]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['quiet_pairs']}/{r['pairs']} |")
    if any(r.get("loop_vs_timer_pairs_used") for r in measured):
        lines += [
            "",
            "## Two user processes",
            "",
            "A plain process's page-fault state is one draw (README, 'a plain process is not one number'), and so is its "
            "latency: every pair also times the zoo model with a hand-written `perf_counter` loop (`reference_latency.py "
            "--harness loop`), a second script a user could have written. Loop vs Timer: median over the pairs of the "
            "loop's median / the Timer's, minus 1 (range). Same fault state: pairs where lwprof's worker and the Timer's "
            "process took page faults within 5% (or 50) of each other, and lwprof's deviation over those pairs alone. "
            "Faults per pass: medians over the pairs.",
            "",
            "| model | loop vs Timer | lwprof vs loop | lwprof faults/pass | Timer faults/call | loop faults/pass "
            "| same fault state | lwprof deviation there |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in measured:
            loop = ("—" if r.get("loop_vs_timer_deviation") is None else
                    f"{r['loop_vs_timer_deviation']:+.1%}{'' if r['loop_vs_timer_within_target'] else ' ✗'} "
                    f"({r['loop_vs_timer_deviation_min']:+.1%} … {r['loop_vs_timer_deviation_max']:+.1%})")
            lines.append(
                f"| {r['model']} | {loop} | {_deviation_cell(r, 'torch_loop')} "
                f"| {_fmt(r['torch_minor_page_faults_per_pass'], ',.0f')} | {_fmt(r['reference_torch_minor_page_faults_per_call'], ',.0f')} "
                f"| {_fmt(r['reference_torch_loop_minor_page_faults_per_call'], ',.0f')} "
                f"| {r['torch_same_fault_state_pairs']}/{r['pairs']} | {_fmt(r['torch_same_fault_state_deviation'], '+.1%')} |"
            )
    lines += [
        "",
        "## The allocator tax",
        "",
        "Minor page faults per forward pass: lwprof's count over its timed passes; the reference's per call, "
        "over `blocked_autorange` including its block-size search. Tax: the default allocator's median over the tuned "
        "one's, minus 1, in lwprof (median over the pairs) and between the two reference processes.",
        "",
        "| model | lwprof faults/pass, default | lwprof faults/pass, tuned | reference faults/call, plain | reference faults/call, tuned env "
        "| lwprof tax | reference tax | ORT faults/pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in measured:
        lines.append(
            f"| {r['model']} | {_fmt(r['torch_minor_page_faults_per_pass'], ',.0f')} | {_fmt(r['torch_tuned_minor_page_faults_per_pass'], ',.0f')} "
            f"| {_fmt(r['reference_torch_minor_page_faults_per_call'], ',.0f')} | {_fmt(r['reference_torch_tuned_minor_page_faults_per_call'], ',.0f')} "
            f"| {_fmt(r['torch_allocator_tax'], '+.1%')} | {_fmt(r['reference_allocator_tax'], '+.1%')} "
            f"| {_fmt(r['onnxruntime_minor_page_faults_per_pass'], ',.1f')} |"
        )
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)  # floats via repr(): full precision; None becomes an empty cell


def write_results(out: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Derive rows and summary from the raw figures in ``payload``; write the three result files."""
    rows = [model_row(result) for result in payload["models"]]
    payload["summary"] = summarize(rows, payload.get("roofline_check"))
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        _write_csv(out / "results.csv", rows)
    ordered = {key: payload.get(key) for key in ("environment", "settings", "summary", "models", "roofline_check")}
    (out / "results.json").write_text(json.dumps(ordered, indent=2) + "\n")
    (out / "summary.md").write_text(markdown_summary(payload, rows))
    return payload["summary"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS, help="zoo models (default: 7 lightweight ones)")
    parser.add_argument("--pairs", type=int, default=4, help="alternating lwprof/reference pairs per model (default 4)")
    parser.add_argument("--threads", type=int, help="threads (default: one per physical core, as lwprof)")
    parser.add_argument("--reference-min-time", type=float, default=3.0, help="seconds each reference times at least (default 3)")
    parser.add_argument("--roofline-model", default="mobilenet_v2_100", help="model of the roofline-first check")
    parser.add_argument("--roofline-pairs", type=int, default=3, help="cold/warm cache pairs (default 3; 0 skips)")
    parser.add_argument("--cache-dir", type=Path, help="warm ONNX export and roofline cache (default: a fresh scratch folder)")
    parser.add_argument("--rerender", action="store_true", help="time nothing: rebuild the files from OUT/results.json")
    parser.add_argument("--roofline-only", action="store_true",
                        help="run the roofline check alone and put it into OUT/results.json beside the models measured before")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        write_results(args.out, json.loads((args.out / "results.json").read_text()))
        print(f"re-rendered {args.out} from its results.json", file=sys.stderr)
        return 0
    if args.roofline_only:
        payload = json.loads((args.out / "results.json").read_text())
        with tempfile.TemporaryDirectory(prefix="lwprof-bench-") as scratch:
            cache_dir = args.cache_dir or Path(scratch) / "cache"
            lwprof_run(args.roofline_model, cache_dir, Path(scratch) / "reports")  # warms the cache
            payload["roofline_check"] = roofline_check(args.roofline_model, args.roofline_pairs, cache_dir, Path(scratch) / "reports")
        payload["settings"]["roofline_pairs"] = args.roofline_pairs
        payload["settings"]["roofline_command"] = " ".join(["benchmarks/bench_latency.py", *(argv if argv is not None else sys.argv[1:])])
        write_results(args.out, payload)
        print((args.out / "summary.md").read_text())
        return 0
    from lwprof.runtime.environment import physical_cores

    threads = args.threads or physical_cores()
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {
        "command": " ".join(["benchmarks/bench_latency.py", *(argv if argv is not None else sys.argv[1:])]),
        "models": args.models,
        "pairs": args.pairs,
        "threads": threads,
        "reference_min_time_s": args.reference_min_time,
        "tuned_environment": TUNED_ENVIRONMENT,
        "roofline_model": args.roofline_model,
        "roofline_pairs": args.roofline_pairs,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lwprof-bench-") as scratch:
        cache_dir = args.cache_dir or Path(scratch) / "cache"
        reports = Path(scratch) / "reports"
        results = []
        for index, name in enumerate(args.models, 1):
            print(f"[{index}/{len(args.models)}] {name}", file=sys.stderr, flush=True)
            results.append(measure_model(name, args.pairs, threads, args.reference_min_time, cache_dir, reports))
        roofline = None
        if args.roofline_pairs > 0:
            print(f"roofline first or cached: {args.roofline_model}", file=sys.stderr, flush=True)
            roofline = roofline_check(args.roofline_model, args.roofline_pairs, cache_dir, reports)
    environment["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    environment["benchmark_wall_s"] = time.perf_counter() - started
    payload = {"environment": environment, "settings": settings, "models": results, "roofline_check": roofline}
    write_results(args.out, payload)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
