"""``lwprof calibrate`` and ``lwprof predict``: a device's kernels timed once,
then any model's latency predicted from the file, without the device."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from lwprof.commands.common import start
from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.console import Column, OutputFormat, milliseconds, percent
from lwprof.runtime.precision import result_key
from lwprof.runtime.settings import RunSettings

QUICK_SAMPLES = 6
FULL_SAMPLES = 40
QUICK_NETWORKS = 6
FULL_NETWORKS = 24


def run_calibrate(*, settings: RunSettings, backend: str, quick: bool, samples: int | None, out: Path,
                  fmt: OutputFormat, types: list[str] | None = None, seed: int = 0, budget_min: float | None = None) -> int:
    """Learn the runtime's fusion rules, time ``samples`` kernels of each type
    (then half as many again of each type the first round predicts worse
    than ±10%), fit, time synthetic networks to fit how kernels cost in
    context, and write ``out``. Samples are journaled next to ``out``
    as they are timed: after Ctrl-C the same command resumes. ``budget_min``:
    minutes for timing kernels (types in turn, so a spent budget leaves each
    with about as many samples); the networks are timed after it."""
    from lwprof import __version__
    from lwprof.commands.common import EXIT_INTERRUPTED
    from lwprof.predict.calibrate import Journal, fit, fit_in_context, needs_more, time_networks
    from lwprof.predict.calibration import Calibration
    from lwprof.predict.rules import learn_rules
    from lwprof.predict.samplers import sampled_types
    from lwprof.reports.progress import progress as progress_bar
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.environment import cpu_model
    from lwprof.runtime.roofline import device_fingerprint, load_or_measure

    names = start(settings, backend)
    if len(names) != 1:
        raise LwprofError(f"calibrate takes one backend, not {', '.join(names)}: a calibration describes one runtime")
    name = names[0]
    runtime = get_backend(name)
    reason = runtime.unavailable_reason(settings.device) or runtime.precision_problem(settings.precision)
    if reason is not None:
        raise LwprofError(f"{name} cannot be calibrated here: {reason}")
    per_type = samples or (QUICK_SAMPLES if quick else FULL_SAMPLES)
    kernel_types = types or sampled_types()
    fingerprint = device_fingerprint(settings, name)
    plan = {"backend": name, "device": fingerprint, "precision": settings.precision, "threads": settings.threads,
            "budget": [settings.budget.min_time_s, settings.budget.max_time_s], "seed": seed}
    journal_path = out.with_name(out.name + ".samples.jsonl")
    journal = Journal(journal_path, plan, note=output.info)
    wanted = {kernel_type: range(per_type) for kernel_type in kernel_types}
    deadline = time.monotonic() + budget_min * 60 if budget_min is not None else None
    try:
        with progress_bar() as progress:
            task = progress.add_task(f"{name}: per-call and per-kernel overhead", total=None)
            journal.measure_overhead(name, settings)
            if journal.rules is None:
                journal.set_rules(learn_rules(name, settings, journal.overhead or 0.0,
                                              progress=lambda line: progress.update(task, description=f"{name}: {line}")))
            rules = journal.rules
            progress.update(task, total=per_type * len(kernel_types), completed=0)
            timed = _timed_round(name, settings, wanted, journal, seed, progress, task, deadline)
            regressors, validation = fit(timed, seed)
            spent = deadline is not None and time.monotonic() > deadline
            if spent:
                output.info(f"--budget spent: {len(timed)} of {per_type * len(kernel_types)} kernels timed")
            again = [] if quick or spent else needs_more(validation)
            if again:
                extra = max(per_type // 2, 2)
                output.info(f"adaptive round: {extra} more samples of {', '.join(again)} (over ±10% held out)")
                wanted.update({t: range(per_type + extra) for t in again})
                progress.update(task, total=sum(len(r) for r in wanted.values()))
                timed = _timed_round(name, settings, wanted, journal, seed, progress, task, deadline)
                regressors, validation = fit(timed, seed)
            assert journal.overhead is not None
            alone = Calibration(device={}, backend=name, runtime_version="", precision=settings.precision, rules=rules,
                                regressors=regressors, overhead_s=journal.overhead)
            count = QUICK_NETWORKS if quick else FULL_NETWORKS
            progress.update(task, total=count, completed=0, description=f"{name}: synthetic networks")
            networks = time_networks(name, settings, count, journal, seed,
                                     progress=lambda index: progress.update(task, completed=index + 1))
            context = fit_in_context(alone, networks)
    except KeyboardInterrupt:
        output.warn(f"interrupted: {len(journal.samples)} kernels and {len(journal.networks)} networks timed are kept "
                    f"in {journal_path}; the same command resumes from them")
        return EXIT_INTERRUPTED
    with output.stderr.status(f"{name}: device peaks (cached after the first run)"):
        peaks, _ = load_or_measure(name, settings)
    calibration = Calibration(
        device={"fingerprint": fingerprint, "device": settings.device, "cpu": cpu_model(), "threads": settings.threads},
        backend=name, runtime_version=runtime.runtime_version(), precision=settings.precision, rules=rules,
        regressors=regressors, overhead_s=journal.overhead, dispatch_s=journal.dispatch or 0.0, validation=validation,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), lwprof_version=__version__,
        samples=tuple(sample.to_dict() for sample in timed), peaks=peaks.to_dict(), context=context)
    calibration.save(out)
    journal_path.unlink(missing_ok=True)  # its samples are in the calibration file now
    output.info(f"wrote {out}")
    kept_apart = sorted({probe for probe, seen in rules.evidence.items() if not seen["fused"]})
    output.info(f"{name} keeps apart: {', '.join(kept_apart) or 'nothing'} (learned from its layer rows)")
    output.info(f"in a network: convolutions x{context.conv_factor:.2f}, other kernels x{context.other_factor:.2f}, "
                f"+{context.per_kernel_s * 1e6:.1f} us per kernel; {context.networks} synthetic networks within "
                f"{context.error_in_context if context.error_in_context is not None else float('nan'):.1%} "
                f"(median, cross-validated; kernels alone {context.error_alone:.1%})")
    rows = [{"kernel_type": kernel_type, **figures} for kernel_type, figures in sorted(validation.items())]
    output.emit(rows, [
        Column("kernel_type", "kernel type"),
        Column("samples", "samples", str, "right"),
        Column("regressor", "regressor"),
        Column("median_relative_error", "median error", percent, "right"),
        Column("p90_relative_error", "p90 error", percent, "right"),
    ] if fmt is OutputFormat.table else [Column(key, key) for key in ("kernel_type", "samples", "regressor",
                                                                         "median_relative_error", "p90_relative_error")],
        fmt, title=f"{name} on {settings.device}: kernel fits, errors cross-validated "
                   f"(overhead {journal.overhead * 1e6:.1f} us per call, {(journal.dispatch or 0) * 1e6:.1f} us per kernel)")
    return 0


def _timed_round(name: str, settings: RunSettings, wanted: dict[str, range], journal: Any, seed: int,
                 progress: Any, task: Any, deadline: float | None) -> list[Any]:
    from lwprof.predict.calibrate import collect

    done = 0

    def advance(kernel_type: str, sample: Any) -> None:
        nonlocal done
        done += 1
        progress.update(task, completed=done,
                        description=f"{name}: {kernel_type} {sample.measured_s * 1e3:.3f} ms")

    return collect(name, settings, wanted, journal, seed, progress=advance, rules=journal.rules, deadline=deadline)


def run_predict(*, spec: str, calibration_path: Path, input_shape: str | None, fmt: OutputFormat, top: int = 10) -> None:
    """Print the prediction in a measured profile's layout: the end-to-end row
    (table, or ``--format csv``), then the layers that take most predicted
    time; ``--format json`` prints ``profile.json``'s keys with every layer row."""
    import sys

    from lwprof.commands.common import count
    from lwprof.core.units import format_bytes, format_count
    from lwprof.predict.calibration import Calibration
    from lwprof.reports.files import csv_text, json_text
    from lwprof.reports.prediction_report import predicted_payload
    from lwprof.runtime.loader import load_model, parse_shape

    calibration = Calibration.load(calibration_path)
    loaded = load_model(spec, parse_shape(input_shape) if input_shape is not None else None)
    if loaded.module is None:
        raise LwprofError(f"predict splits a PyTorch module into kernels; {loaded.name} has no module")
    profile = count(loaded)
    prediction = calibration.predict(profile)
    for kernel_type in prediction.unseen_types:
        output.warn(f"kernel type '{kernel_type}' was never calibrated: its kernels are not predicted (listed as such)")
    output.info(calibration.describe())
    payload = predicted_payload(profile, prediction, spec, str(calibration_path))
    if fmt is OutputFormat.json:
        sys.stdout.write(json_text(payload))
        return
    if fmt is OutputFormat.csv:
        sys.stdout.write(csv_text(payload["layers"]))  # every key any row has, in first-seen order
        return
    totals = payload["totals"]
    output.stdout.print(
        f"[bold]{loaded.name}[/bold] predicted for {calibration.backend} {calibration.precision} on "
        f"{calibration.device.get('cpu') or calibration.device.get('device')} ({calibration.device.get('threads')} threads), "
        f"input {'x'.join(map(str, profile.input_shape))}: {format_count(totals['params'])} params, "
        f"{format_count(totals['macs'])} MACs, memory access {format_bytes(totals['memory_bytes'])} eager / "
        f"{format_bytes(totals['memory_bytes_fused'])} fused; nothing was timed", highlight=False)
    output.emit(payload["results"], [
        Column("backend", "backend"),
        Column("precision", "precision"),
        Column("batch_size", "batch", str, "right"),
        Column("predicted_s", "predicted ms", milliseconds, "right"),
        Column("predicted_kernels", "kernels", str, "right"),
        Column("predicted_overhead_s", "per-call overhead ms", milliseconds, "right"),
        Column("predicted_not_calibrated", "not calibrated"),
    ], OutputFormat.table, title="end-to-end latency, predicted")
    key = result_key(calibration.backend, calibration.precision)
    ranked = sorted((r for r in payload["layers"] if r.get(f"{key}_predicted_s") is not None),
                    key=lambda r: -r[f"{key}_predicted_s"])[:top]
    unpredicted = [r for r in payload["layers"] if f"{key}_predicted_s" in r and r[f"{key}_predicted_s"] is None]
    output.emit(ranked + unpredicted, [
        Column("layer", "layer"),
        Column("op_class", "class"),
        Column(f"{key}_predicted_kernel_type", "kernel type"),
        Column(f"{key}_predicted_s", "predicted ms", lambda v: "not calibrated" if v is None else milliseconds(v), "right"),
        Column(f"{key}_predicted_share", "predicted share", percent, "right"),
        Column("flops_share", "FLOP share", percent, "right"),
        Column(f"{key}_predicted_fused_layers", "also covers", lambda v: v or ""),
    ], OutputFormat.table, title=f"top {len(ranked)} layers by {key} predicted time"
                                 + (f", and the {len(unpredicted)} not predicted" if unpredicted else ""))


