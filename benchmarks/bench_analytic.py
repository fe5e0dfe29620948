"""What analytic profiling costs, against a plain forward pass and other counters.

The target (README, "Performance"): analysing a model costs at most 3x one
plain forward pass of it, and the whole zoo is analysed in under 60 s on 2
cores. This benchmark measures that, and the same figures for PyTorch's
``FlopCounterMode``, thop and fvcore's ``FlopCountAnalysis`` (when fvcore is
installed; it is not a dependency of lwprof) on the same models in the same
run, plus each counter's MAC total so their disagreements are visible.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_analytic.py
    .venv/bin/python benchmarks/bench_analytic.py --models 'mobilenet_v3*' pplcnet_100 --repeats 5

Method, per model (built once, eval mode, no grad, fixed torch threads):
one warm-up call of every counter (which also yields its counts), then
rounds; each round times every counter once with ``time.perf_counter``,
right after an untimed call of the same counter (warm caches, as timeit), in
an order rotated per round so that slow drift of a shared machine does not
always hit the same counter. Rounds during which other processes used more
than ``--quiet-max`` of the CPU do not count (see benchmarks/README.md). A
counter's time is the median over its rounds; its ratio is the median over
the rounds of (its time / the plain forward's time in the same round), which
cancels drift of the machine's speed between rounds. Model construction is never inside a per-model timing; thop's
deepcopy (thop leaves buffers on the model) is made before its timer starts.

Whole zoo: each counter in one loop over the selected models *including*
model construction (``--zoo-repeats`` rounds, median reported), and
lwprof once more in a fresh Python process (interpreter start, imports and
``lwprof.analyze(name)`` for every model), which is what a user waits for.

Timings are never asserted in tests; the results of a reference run are
committed under ``reports/benchmarks/analytic/`` with the environment.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from _env import (
    NOT_INSTALLED,
    REPO_ROOT,
    capture_environment,
    cpu_snapshot,
    foreign_cpu_share,
    format_environment,
)
from torch import nn

TARGET_RATIO = 3.0
TARGET_ZOO_SECONDS = 60.0
DEFAULT_OUT = REPO_ROOT / "reports" / "benchmarks" / "analytic"
# The code whose speed is measured; their hashes go into the environment.
MEASURED_SOURCES = [
    "profiler/counting/engine.py",
    "profiler/counting/tracer.py",
    "profiler/counting/aggregate.py",
    "profiler/counting/ops.py",
    "profiler/counting/fusion.py",
    "profiler/core/records.py",
    "profiler/counting/analysis.py",
]


@dataclass(frozen=True)
class CounterSpec:
    """One way of processing a model whose wall time is measured.

    ``run`` is the timed call; ``counts`` turns its result into integer
    totals (outside the timer); ``needs_copy``: ``run`` leaves state on the
    model, so each call gets a fresh deepcopy made before the timer starts.
    """

    name: str
    label: str
    run: Callable[[nn.Module, torch.Tensor], Any]
    counts: Callable[[Any], dict[str, Any]]
    needs_copy: bool = False


def _forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def _lwprof(model: nn.Module, x: torch.Tensor) -> Any:
    from lwprof.counting.engine import profile_module

    return profile_module(model, tuple(x.shape))


def _lwprof_counts(profile: Any) -> dict[str, Any]:
    totals = profile.totals
    return {
        "macs": int(totals["macs"]),
        "flops": int(totals["flops"]),
        "op_records": len(profile.ops),
        "unsupported_ops": sum(profile.unsupported_ops.values()),
    }


def _flop_counter_mode(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _flop_counter_mode_counts(flops: int) -> dict[str, Any]:
    # FlopCounterMode counts only convolutions and matrix products, at 2 FLOPs per MAC.
    return {"flops": flops, "macs": flops // 2}


def _thop(model: nn.Module, x: torch.Tensor) -> float:
    import thop

    with torch.no_grad():
        macs, _params = thop.profile(model, inputs=(x,), verbose=False)
    return macs


def _thop_counts(macs: float) -> dict[str, Any]:
    return {"macs": int(round(float(macs)))}


def _fvcore(model: nn.Module, x: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    # fvcore traces with torch.jit and logs every op it has no handle for;
    # the warnings are silenced so that no counter pays for printing.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())


def _fvcore_counts(total: int) -> dict[str, Any]:
    # fvcore's "flop" is one multiply-add, and it also counts BatchNorm,
    # upsampling and adaptive pooling: a MAC-like total, not pure MACs.
    return {"count": total}


def thop_available() -> str | None:
    try:
        import thop  # noqa: F401
    except ImportError:
        return NOT_INSTALLED
    return None


def fvcore_available() -> str | None:
    try:
        from fvcore.nn import FlopCountAnalysis  # noqa: F401
    except ImportError:
        return NOT_INSTALLED
    return None


FORWARD = CounterSpec("forward", "plain forward", _forward, lambda _: {})
COUNTERS: list[CounterSpec] = [
    FORWARD,
    CounterSpec("lwprof", "lwprof profile_module", _lwprof, _lwprof_counts),
    CounterSpec("flop_counter_mode", "torch FlopCounterMode", _flop_counter_mode, _flop_counter_mode_counts),
    CounterSpec("thop", "thop.profile", _thop, _thop_counts, needs_copy=True),
    CounterSpec("fvcore", "fvcore FlopCountAnalysis", _fvcore, _fvcore_counts),
]
UNAVAILABLE_CHECKS = {"thop": thop_available, "fvcore": fvcore_available}


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _model_input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def _timed_call(counter: CounterSpec, model: nn.Module, x: torch.Tensor) -> tuple[float, Any]:
    target = copy.deepcopy(model) if counter.needs_copy else model
    gc.collect()  # start every timing with no garbage pending (cheap: see gc.freeze below)
    start = time.perf_counter()
    result = counter.run(target, x)
    return time.perf_counter() - start, result


def _rotated(items: list[Any], shift: int) -> list[Any]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def _percent_diff(value: int | None, reference: int | None) -> float | None:
    if value is None or not reference:
        return None
    return 100.0 * (value - reference) / reference


def _is_quiet(share: float | None, quiet_max: float) -> bool:
    # Without /proc (not Linux) every round counts as quiet: plain medians.
    return share is None or share <= quiet_max


def benchmark_model(
    name: str,
    counters: list[CounterSpec],
    unavailable: dict[str, str],
    repeats: int,
    max_rounds: int,
    quiet_max: float,
) -> dict[str, Any]:
    """Per-counter wall-time samples and counts for one zoo model.

    Rounds continue until ``repeats`` of them were quiet (other processes used
    at most ``quiet_max`` of the machine's CPU during the round) or
    ``max_rounds`` were run.
    """
    from lwprof.models import create_model, get_model_info

    shape = tuple(get_model_info(name).input_shape)
    start = time.perf_counter()
    model = create_model(name).eval()
    build_seconds = time.perf_counter() - start
    x = _model_input(shape)

    results: dict[str, dict[str, Any]] = {}
    active: list[CounterSpec] = []
    for counter in counters:
        entry: dict[str, Any] = {"samples_s": [], "counts": {}, "error": unavailable.get(counter.name)}
        results[counter.name] = entry
        if entry["error"]:
            continue
        try:  # warm-up: first-call costs (lazy imports, allocator, caches) stay out of the samples
            _, result = _timed_call(counter, model, x)
            entry["counts"] = counter.counts(result)
            active.append(counter)
        except Exception as exc:  # a counter that cannot handle this model is a result, not a crash
            entry["error"] = _error_text(exc)
    # Everything alive now (torch, the model) leaves the collector's view, so the
    # gc.collect() before each timing is cheap and no counter pays for another's garbage.
    gc.freeze()

    round_shares: list[float | None] = []
    quiet_rounds = 0
    while len(round_shares) < max_rounds and quiet_rounds < repeats:
        begin = cpu_snapshot()
        for counter in _rotated(active, len(round_shares)):
            # An untimed call first: every counter is timed with caches warm from
            # its own work (as timeit does), not from the previous counter's. The
            # forward pass, mostly memory traffic, is the most sensitive to that:
            # timed cold it looks slower and every ratio looks better than it is.
            _timed_call(counter, model, x)
            seconds, _ = _timed_call(counter, model, x)
            results[counter.name]["samples_s"].append(seconds)
        share = foreign_cpu_share(begin, cpu_snapshot())
        round_shares.append(share)
        quiet_rounds += _is_quiet(share, quiet_max)
    return {
        "model": name,
        "input_shape": list(shape),
        "build_s": build_seconds,
        "round_foreign_cpu_share": round_shares,
        "round_is_quiet": [_is_quiet(s, quiet_max) for s in round_shares],
        "counters": results,
    }


def whole_zoo(
    names: list[str],
    counters: list[CounterSpec],
    unavailable: dict[str, str],
    repeats: int,
    max_rounds: int,
    quiet_max: float,
) -> dict[str, Any]:
    """Each counter in one loop over ``names`` including model construction,
    until ``repeats`` of its loops were quiet or ``max_rounds`` rounds ran."""
    from lwprof.models import create_model, get_model_info

    active = [c for c in counters if c.name not in unavailable]
    totals: dict[str, dict[str, Any]] = {
        c.name: {"samples_s": [], "foreign_cpu_share": [], "failed_models": []} for c in active
    }

    def quiet_loops(counter: CounterSpec) -> int:
        return sum(_is_quiet(s, quiet_max) for s in totals[counter.name]["foreign_cpu_share"])

    for round_index in range(max_rounds):
        pending = [c for c in active if quiet_loops(c) < repeats]
        if not pending:
            break
        for counter in _rotated(pending, round_index):
            print(f"  {counter.name} (round {round_index + 1})", file=sys.stderr, flush=True)
            failed = []
            gc.collect()
            begin = cpu_snapshot()
            start = time.perf_counter()
            for name in names:
                try:
                    model = create_model(name).eval()
                    counter.run(model, _model_input(tuple(get_model_info(name).input_shape)))
                except Exception:
                    failed.append(name)
            totals[counter.name]["samples_s"].append(time.perf_counter() - start)
            totals[counter.name]["foreign_cpu_share"].append(foreign_cpu_share(begin, cpu_snapshot()))
            totals[counter.name]["failed_models"] = failed
    return totals


_COLD_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
import lwprof
for name in json.loads(sys.argv[2]):
    lwprof.analyze(name)
"""


def cold_zoo(names: list[str], threads: int, attempts: int, quiet_max: float) -> dict[str, Any]:
    """Wall time of a fresh Python process that imports lwprof and analyses
    ``names``; retried (up to ``attempts`` runs) until one ran on a quiet machine."""
    runs: dict[str, Any] = {"samples_s": [], "foreign_cpu_share": []}
    for _ in range(attempts):
        begin = cpu_snapshot()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _COLD_SCRIPT, str(threads), json.dumps(names)], check=True)
        runs["samples_s"].append(time.perf_counter() - start)
        share = foreign_cpu_share(begin, cpu_snapshot())  # the child's CPU counts as ours
        runs["foreign_cpu_share"].append(share)
        if _is_quiet(share, quiet_max):
            break
    return runs


def _quiet_samples(samples: list[float], shares: list[float | None], quiet_max: float, minimum: int) -> list[float]:
    """The samples taken while the machine was quiet; all of them when fewer than ``minimum`` were."""
    quiet = [s for s, share in zip(samples, shares) if _is_quiet(share, quiet_max)]
    return quiet if len(quiet) >= minimum else samples


def _median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def _paired_ratio(samples: list[float], forward: list[float], rounds: list[int]) -> float | None:
    """Median over ``rounds`` of (this counter's time / the forward pass's time
    in the same round). Pairing within a round cancels drift of the machine's
    speed between rounds, which a ratio of two medians would mix."""
    ratios = [samples[i] / forward[i] for i in rounds if i < len(samples) and i < len(forward) and forward[i]]
    return statistics.median(ratios) if ratios else None


MIN_QUIET_ROUNDS = 3


def per_model_row(result: dict[str, Any], quiet_max: float) -> dict[str, Any]:
    """One CSV row: medians, minima, ratios to the forward pass, counts, disagreement."""
    counters = result["counters"]
    shares = result["round_foreign_cpu_share"]
    quiet = [i for i, flag in enumerate(result["round_is_quiet"]) if flag]
    all_rounds = list(range(len(shares)))
    rounds_used = quiet if len(quiet) >= MIN_QUIET_ROUNDS else all_rounds
    known_shares = [s for s in shares if s is not None]
    forward_all = counters["forward"]["samples_s"]
    forward = [forward_all[i] for i in rounds_used if i < len(forward_all)]
    forward_median = _median(forward)
    row: dict[str, Any] = {
        "model": result["model"],
        "input_shape": "x".join(str(d) for d in result["input_shape"]),
        "build_s": result["build_s"],
        "rounds": len(shares),
        "quiet_rounds": len(quiet),
        "timings_from": "quiet rounds" if rounds_used is quiet else "all rounds (noisy)",
        "foreign_cpu_median_percent": 100.0 * statistics.median(known_shares) if known_shares else None,
        "forward_median_s": forward_median,
        "forward_min_s": min(forward_all) if forward_all else None,
        # (max - min) / median of the forward samples used: how noisy this model's timings were
        "forward_spread_percent": 100.0 * (max(forward) - min(forward)) / forward_median if forward_median else None,
    }
    for name, entry in counters.items():
        if name == "forward":
            continue
        samples = entry["samples_s"]
        row[f"{name}_median_s"] = _median([samples[i] for i in rounds_used if i < len(samples)])
        row[f"{name}_min_s"] = min(samples) if samples else None
        row[f"{name}_to_forward_ratio"] = _paired_ratio(samples, forward_all, rounds_used)
        row[f"{name}_error"] = entry["error"] or ""
    lw = counters["lwprof"]["counts"]
    fcm = counters["flop_counter_mode"]["counts"]
    # Cross-checks of the headline (paired) ratio: a ratio of the two medians,
    # the paired ratio over every round (quiet or not), and the ratio of the fastest samples.
    row["lwprof_median_to_forward_median_ratio"] = _ratio(row["lwprof_median_s"], forward_median)
    row["lwprof_to_forward_ratio_all_rounds"] = _paired_ratio(counters["lwprof"]["samples_s"], forward_all, all_rounds)
    row["lwprof_min_to_forward_min_ratio"] = _ratio(row["lwprof_min_s"], row["forward_min_s"])
    row["lwprof_op_records"] = lw.get("op_records")
    # Time lwprof adds over the forward pass, per recorded op: the tracer's per-op cost.
    row["lwprof_overhead_per_op_us"] = (
        1e6 * (row["lwprof_median_s"] - forward_median) / lw["op_records"]
        if lw.get("op_records") and row["lwprof_median_s"] and forward_median
        else None
    )
    row["lwprof_unsupported_ops"] = lw.get("unsupported_ops")
    row["lwprof_macs"] = lw.get("macs")
    row["lwprof_flops"] = lw.get("flops")
    row["flop_counter_mode_flops"] = fcm.get("flops")
    row["flop_counter_mode_macs"] = fcm.get("macs")
    row["thop_macs"] = counters["thop"]["counts"].get("macs")
    row["fvcore_count"] = counters["fvcore"]["counts"].get("count")
    for column in ("flop_counter_mode_macs", "thop_macs", "fvcore_count"):
        row[f"{column}_vs_lwprof_macs_percent"] = _percent_diff(row[column], row["lwprof_macs"])
    return row


def _zoo_figure(entry: dict[str, Any], quiet_max: float) -> dict[str, Any]:
    used = _quiet_samples(entry["samples_s"], entry["foreign_cpu_share"], quiet_max, 1)
    quiet = sum(_is_quiet(s, quiet_max) for s in entry["foreign_cpu_share"])
    return {
        "median_s": _median(used),
        "samples_s": entry["samples_s"],
        "foreign_cpu_share": entry["foreign_cpu_share"],
        "quiet_runs": quiet,
        "failed_models": entry.get("failed_models", []),
    }


def summarize(rows: list[dict[str, Any]], zoo: dict[str, Any], cold: dict[str, Any] | None, quiet_max: float) -> dict[str, Any]:
    """Headline figures per counter: median and worst ratio, models over target, zoo totals."""
    summary: dict[str, Any] = {
        "target_ratio": TARGET_RATIO,
        "target_zoo_s": TARGET_ZOO_SECONDS,
        "quiet_max_foreign_cpu_share": quiet_max,
        "models": len(rows),
        "models_timed_on_all_rounds": [r["model"] for r in rows if r["quiet_rounds"] < MIN_QUIET_ROUNDS],
        "forward_median_sum_s": sum(r["forward_median_s"] for r in rows if r["forward_median_s"]),
        "counters": {},
    }
    for counter in COUNTERS[1:]:
        ratios = [(r[f"{counter.name}_to_forward_ratio"], r["model"]) for r in rows if r[f"{counter.name}_to_forward_ratio"]]
        failed = sorted(r["model"] for r in rows if r[f"{counter.name}_error"])
        entry: dict[str, Any] = {"label": counter.label, "measured_models": len(ratios), "failed_models": failed}
        errors = {r[f"{counter.name}_error"] for r in rows if r[f"{counter.name}_error"]}
        if errors == {NOT_INSTALLED}:
            entry["error"] = NOT_INSTALLED
            entry["failed_models"] = []
        if ratios:
            worst_ratio, worst_model = max(ratios)
            entry.update(
                median_ratio=statistics.median(ratio for ratio, _ in ratios),
                worst_ratio=worst_ratio,
                worst_model=worst_model,
                best_ratio=min(ratios)[0],
                models_over_target=sorted(model for ratio, model in ratios if ratio > TARGET_RATIO),
                median_sum_s=sum(r[f"{counter.name}_median_s"] for r in rows if r[f"{counter.name}_median_s"]),
            )
        if counter.name in zoo:
            entry["zoo_end_to_end"] = _zoo_figure(zoo[counter.name], quiet_max)
        summary["counters"][counter.name] = entry
    lw_rows = [r for r in rows if r["lwprof_min_to_forward_min_ratio"]]
    if lw_rows:
        summary["counters"]["lwprof"]["median_ratio_all_rounds"] = statistics.median(
            r["lwprof_to_forward_ratio_all_rounds"] for r in lw_rows
        )
        summary["counters"]["lwprof"]["median_ratio_of_medians"] = statistics.median(
            r["lwprof_median_to_forward_median_ratio"] for r in lw_rows
        )
        summary["counters"]["lwprof"]["worst_ratio_of_medians"] = max(r["lwprof_median_to_forward_median_ratio"] for r in lw_rows)
        summary["counters"]["lwprof"]["median_ratio_of_minima"] = statistics.median(r["lwprof_min_to_forward_min_ratio"] for r in lw_rows)
        summary["counters"]["lwprof"]["worst_ratio_of_minima"] = max(r["lwprof_min_to_forward_min_ratio"] for r in lw_rows)
    if "forward" in zoo:
        summary["forward_zoo_end_to_end"] = _zoo_figure(zoo["forward"], quiet_max)
    if cold is not None:
        summary["lwprof_cold_process_zoo"] = _zoo_figure(cold, quiet_max)
    spreads = [r["forward_spread_percent"] for r in rows if r["forward_spread_percent"] is not None]
    summary["forward_spread_percent_median"] = statistics.median(spreads) if spreads else None
    summary["forward_spread_percent_max"] = max(spreads) if spreads else None
    return summary


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None or value == "" else format(value, spec)


def _zoo_cell(figure: dict[str, Any] | None) -> str:
    if not figure or figure["median_s"] is None:
        return "—"
    noisy = "" if figure["quiet_runs"] else " (noisy)"
    failed = f", {len(figure['failed_models'])} models failed" if figure["failed_models"] else ""
    spread = ""
    if len(figure["samples_s"]) > 1:
        spread = f" ({min(figure['samples_s']):.2f}–{max(figure['samples_s']):.2f})"
    return f"{figure['median_s']:.2f} s{spread}{noisy}{failed}"


def markdown_summary(summary: dict[str, Any], rows: list[dict[str, Any]], environment: dict[str, Any], settings: dict[str, Any]) -> str:
    quiet_percent = 100 * summary["quiet_max_foreign_cpu_share"]
    lines = [
        "# Analytic profiling cost",
        "",
        f"Target: analysing a model costs at most {TARGET_RATIO:g}x one plain forward pass, and the whole zoo "
        f"is analysed in under {TARGET_ZOO_SECONDS:g} s on 2 cores. Generated by `{settings['command']}`; "
        "full-precision figures in `results.csv`, raw samples (every round, with the CPU other processes used "
        "during it) and the environment in `results.json`.",
        "",
        "## Environment",
        "",
        *format_environment(environment),
        f"- Settings: torch threads {settings['threads']}; per model 1 warm-up, then rounds (every counter timed once "
        f"right after an untimed call of itself, order rotated) until {settings['repeats']} were quiet (other processes used at most {quiet_percent:g}% "
        f"of the machine's CPU) or {settings['max_rounds']} ran; whole zoo: {settings['zoo_repeats']} quiet "
        f"loops per counter wanted, at most {settings['zoo_max_rounds']} rounds",
        "",
        "## Headline",
        "",
        "| counter | median x forward | worst x forward (model) | models over "
        f"{TARGET_RATIO:g}x | sum of per-model medians | whole zoo incl. construction, median (range) |",
        "|---|---|---|---|---|---|",
        f"| plain forward | 1 | 1 | — | {summary['forward_median_sum_s']:.2f} s | {_zoo_cell(summary.get('forward_zoo_end_to_end'))} |",
    ]
    for entry in summary["counters"].values():
        if "median_ratio" not in entry:
            lines.append(f"| {entry['label']} | {entry.get('error', 'no model measured')} | | | | |")
            continue
        failed = f" ({len(entry['failed_models'])} models failed)" if entry["failed_models"] else ""
        lines.append(
            f"| {entry['label']}{failed} | {entry['median_ratio']:.2f} | {entry['worst_ratio']:.2f} ({entry['worst_model']}) "
            f"| {len(entry['models_over_target'])} of {entry['measured_models']} | {entry['median_sum_s']:.2f} s "
            f"| {_zoo_cell(entry.get('zoo_end_to_end'))} |"
        )
    lw = summary["counters"]["lwprof"]
    cold = summary.get("lwprof_cold_process_zoo")
    lines += [
        "",
        f"lwprof, whole zoo ({summary['models']} models): {_fmt(lw.get('median_sum_s'), '.2f')} s of analysis alone "
        f"(sum of per-model medians); {_zoo_cell(lw.get('zoo_end_to_end'))} as one loop including model "
        f"construction; {_zoo_cell(cold)} in a fresh process including interpreter start and imports.",
    ]
    if lw.get("models_over_target"):
        lines += ["", f"lwprof over {TARGET_RATIO:g}x: {', '.join(lw['models_over_target'])}."]
    lines += [
        "",
        "## Noise",
        "",
        "The machine is shared. Every round records how much CPU other processes used meanwhile (from "
        "`/proc/stat`); a model's figures come from its quiet rounds (all rounds when fewer than "
        f"{MIN_QUIET_ROUNDS} were quiet). Even quiet rounds are not all alike: the whole machine is sometimes "
        "1.5x slower for a few rounds (visible in every counter of the round, invisible in `/proc/stat`), so "
        "a ratio is the median of per-round ratios (counter / forward pass in the same round), not a ratio of "
        "two medians that may come from different speeds. Cross-checks of the lwprof ratio (median over "
        f"models, worst in parentheses): ratio of medians {_fmt(lw.get('median_ratio_of_medians'), '.2f')} "
        f"({_fmt(lw.get('worst_ratio_of_medians'), '.2f')}); per-round ratio over all rounds, quiet or not, "
        f"{_fmt(lw.get('median_ratio_all_rounds'), '.2f')}; ratio of the fastest samples "
        f"{_fmt(lw.get('median_ratio_of_minima'), '.2f')} ({_fmt(lw.get('worst_ratio_of_minima'), '.2f')}). "
        f"The forward pass's (max - min) / median over the rounds used is {_fmt(summary['forward_spread_percent_median'], '.0f')}% "
        f"for the median model and {_fmt(summary['forward_spread_percent_max'], '.0f')}% at worst.",
        "",
        f"The whole-zoo loops are dominated by model construction ({_fmt(summary.get('build_sum_s'), '.1f')} s of "
        "random initialisation, summed over the per-model builds) and by each model's first, cold forward pass, "
        "and vary by a second or more from loop to loop: read them against the 60 s target, not against each other.",
    ]
    if summary["models_timed_on_all_rounds"]:
        lines += ["", f"Timed on all rounds (too few quiet ones): {', '.join(summary['models_timed_on_all_rounds'])}."]
    lines += [
        "",
        "## Per model",
        "",
        "Ratios: median over the rounds of the counter's time over the forward pass's time in the same round. MACs: lwprof's total, and how far each other "
        "counter's total is from it (FlopCounterMode: its FLOPs / 2; thop: its MACs; fvcore: its total, which "
        "also counts BatchNorm, upsampling and adaptive pooling).",
        "",
        "| model | forward ms | lwprof x | FlopCounterMode x | thop x | fvcore x | quiet rounds | lwprof MACs | FlopCounterMode Δ% | thop Δ% | fvcore Δ% |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fvcore_ratio = _fmt(r["fvcore_to_forward_ratio"], ".2f")
        if r["fvcore_error"] and r["fvcore_error"] != NOT_INSTALLED:
            fvcore_ratio = "failed"
        forward_ms = r["forward_median_s"] * 1e3 if r["forward_median_s"] else None
        lines.append(
            f"| {r['model']} | {_fmt(forward_ms, '.1f')} "
            f"| {_fmt(r['lwprof_to_forward_ratio'], '.2f')} | {_fmt(r['flop_counter_mode_to_forward_ratio'], '.2f')} "
            f"| {_fmt(r['thop_to_forward_ratio'], '.2f')} | {fvcore_ratio} | {r['quiet_rounds']}/{r['rounds']} "
            f"| {_fmt(r['lwprof_macs'], ',')} "
            f"| {_fmt(r['flop_counter_mode_macs_vs_lwprof_macs_percent'], '+.2f')} "
            f"| {_fmt(r['thop_macs_vs_lwprof_macs_percent'], '+.2f')} | {_fmt(r['fvcore_count_vs_lwprof_macs_percent'], '+.2f')} |"
        )
    failures = [
        f"- {r['model']}, {counter}: {r[f'{counter}_error']}"
        for r in rows
        for counter in ("lwprof", "flop_counter_mode", "thop", "fvcore")
        if r[f"{counter}_error"] and r[f"{counter}_error"] != NOT_INSTALLED
    ]
    if failures:
        lines += ["", "## Failures", "", *failures]
    return "\n".join(lines) + "\n"


def select_models(patterns: list[str] | None) -> list[str]:
    from lwprof.models import list_models
    from lwprof.reports.zoo_table import matching_models

    if not patterns:
        return list_models()
    names: list[str] = []
    for pattern in patterns:
        names += [n for n in matching_models(pattern) if n not in names]
    return names


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        # csv writes floats with repr(): full precision; None becomes an empty cell
        writer.writerows(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="zoo names, aliases or glob patterns (default: the whole zoo)")
    parser.add_argument("--repeats", type=int, default=7, help="quiet timed rounds wanted per model, after one warm-up (default 7)")
    parser.add_argument("--max-rounds", type=int, help="most rounds per model, quiet or not (default 3x --repeats)")
    parser.add_argument("--zoo-repeats", type=int, default=3, help="quiet whole-zoo loops wanted per counter (default 3; 0 skips)")
    parser.add_argument("--zoo-max-rounds", type=int, help="most whole-zoo rounds (default 2x --zoo-repeats)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2, the target's core count)")
    parser.add_argument(
        "--quiet-max", type=float, default=0.05,
        help="largest share of the machine's CPU other processes may use during a quiet round (default 0.05)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process whole-zoo run")
    parser.add_argument(
        "--rerender", action="store_true",
        help="time nothing: rebuild results.csv, the summary and summary.md from the raw samples in OUT/results.json",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    args.max_rounds = args.max_rounds or 3 * args.repeats
    args.zoo_max_rounds = args.zoo_max_rounds or 2 * args.zoo_repeats
    return args


def write_results(out: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Derive rows and summary from the raw samples in ``payload``; write the three result files."""
    quiet_max = payload["settings"]["quiet_max_foreign_cpu_share"]
    rows = [per_model_row(r, quiet_max) for r in payload["models"]]
    payload["summary"] = summarize(rows, payload["whole_zoo"], payload["cold_process"], quiet_max)
    payload["summary"]["build_sum_s"] = sum(r["build_s"] for r in payload["models"])
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", rows)
    ordered = {key: payload[key] for key in ("environment", "settings", "summary", "models", "whole_zoo", "cold_process")}
    (out / "results.json").write_text(json.dumps(ordered, indent=2) + "\n")
    (out / "summary.md").write_text(markdown_summary(payload["summary"], rows, payload["environment"], payload["settings"]))
    return payload["summary"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        write_results(args.out, json.loads((args.out / "results.json").read_text()))
        print(f"re-rendered {args.out} from its results.json", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    names = select_models(args.models)
    unavailable = {name: reason for name, check in UNAVAILABLE_CHECKS.items() if (reason := check())}
    environment = capture_environment(source_files=MEASURED_SOURCES)
    settings = {
        "command": " ".join(["benchmarks/bench_analytic.py", *(argv if argv is not None else sys.argv[1:])]),
        "models": names,
        "repeats": args.repeats,
        "max_rounds": args.max_rounds,
        "warmup": 1,
        "zoo_repeats": args.zoo_repeats,
        "zoo_max_rounds": args.zoo_max_rounds,
        "threads": args.threads,
        "quiet_max_foreign_cpu_share": args.quiet_max,
        "cold_process": not args.no_cold,
        "unavailable_counters": unavailable,
    }
    for name, reason in unavailable.items():
        print(f"{name}: {reason}", file=sys.stderr)

    started = time.perf_counter()
    results = []
    for index, name in enumerate(names, 1):
        result = benchmark_model(name, COUNTERS, unavailable, args.repeats, args.max_rounds, args.quiet_max)
        results.append(result)
        print(
            f"[{index}/{len(names)}] {name}: {sum(result['round_is_quiet'])}/{len(result['round_is_quiet'])} quiet rounds",
            file=sys.stderr,
            flush=True,
        )
    # A model timed while another job held the machine gets one more chance at
    # the end (the other job may be gone by then); the attempt with more quiet
    # rounds is kept.
    for position, result in enumerate(results):
        if sum(result["round_is_quiet"]) >= MIN_QUIET_ROUNDS:
            continue
        name = result["model"]
        print(f"retrying {name}: too few quiet rounds", file=sys.stderr, flush=True)
        retry = benchmark_model(name, COUNTERS, unavailable, args.repeats, args.max_rounds, args.quiet_max)
        retry["attempts"] = result.get("attempts", 1) + 1
        if sum(retry["round_is_quiet"]) > sum(result["round_is_quiet"]):
            results[position] = retry
        else:
            result["attempts"] = retry["attempts"]

    zoo: dict[str, Any] = {}
    if args.zoo_repeats > 0:
        print("whole zoo, including model construction:", file=sys.stderr, flush=True)
        zoo = whole_zoo(names, COUNTERS, unavailable, args.zoo_repeats, args.zoo_max_rounds, args.quiet_max)
    cold = None
    if not args.no_cold:
        print("whole zoo: lwprof in a fresh process", file=sys.stderr, flush=True)
        cold = cold_zoo(names, args.threads, attempts=3, quiet_max=args.quiet_max)
    environment["load_average_1min_at_end"] = capture_environment()["load_average_1min"]
    environment["benchmark_wall_s"] = time.perf_counter() - started

    payload = {"environment": environment, "settings": settings, "models": results, "whole_zoo": zoo, "cold_process": cold}
    summary = write_results(args.out, payload)
    rows = payload["models"]

    lw = summary["counters"]["lwprof"]
    cold_figure = summary.get("lwprof_cold_process_zoo")
    print(
        f"lwprof: median {_fmt(lw.get('median_ratio'), '.2f')}x forward, worst {_fmt(lw.get('worst_ratio'), '.2f')}x "
        f"({lw.get('worst_model')}), {len(lw.get('models_over_target', []))} of {len(rows)} over {TARGET_RATIO:g}x; "
        f"zoo {_fmt(lw.get('median_sum_s'), '.2f')} s analysis, {_zoo_cell(lw.get('zoo_end_to_end'))} with "
        f"construction, {_zoo_cell(cold_figure)} in a fresh process; results in {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
