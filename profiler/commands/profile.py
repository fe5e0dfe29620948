"""``lwprof profile MODEL --device cpu|cuda``: the main job.

Count the model (the analytic table), measure its end-to-end latency on every
selected backend, time it layer by layer, place layers and model on the
device's roofline, and write a run directory::

    reports/<model>-<device>-<timestamp>/
        layers.csv     analytic counts joined with per-layer time per backend
        latency.csv    raw end-to-end samples (one row per timed run)
        profile.json   totals, statistics, output checks, peaks, environment
        time_share.png/.svg, roofline.png/.svg

Files are rewritten after every backend finishes, so Ctrl-C leaves what was
measured so far, marked ``"partial": true`` (and a ``PARTIAL`` file).

Joining rows: torch rows carry the analytic layer names already. An ONNX
Runtime node that fused several layers is one timing row; its time is shown
on the first layer it covers, the others name it in
``onnxruntime_fused_into``, and its achieved rates and roofline use the sum of
the covered layers' counts. Roofline bytes: eager memory access for torch
(every op goes through memory), fused memory access for ONNX Runtime (its
fused kernels keep the intermediate tensors out of memory).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwprof.reports import console as output
from lwprof.core.errors import LwprofError
from lwprof.runtime.allocator import DEFAULT, TUNED, significant, variants
from lwprof.runtime.measure import Measurement
from lwprof.reports.console import Column, OutputFormat
from lwprof.runtime.settings import RunSettings

DEFAULT_BACKENDS = ("torch", "onnxruntime")
DEFAULT_REPORTS_DIR = Path("reports")
EXIT_INTERRUPTED = 130


@dataclass
class AllocatorRun:
    """The same backend timed once more with the other allocator setting."""

    allocator: str
    measurement: Measurement | None
    minor_page_faults_per_pass: float | None
    process: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class BackendResult:
    """Everything one backend produced for one batch size."""

    backend: str
    batch_size: int
    skipped: str | None = None
    measurement: Measurement | None = None
    output_check: dict[str, Any] | None = None
    layer_rows: list[Any] = field(default_factory=list)
    layer_pass_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    allocator: str = DEFAULT
    minor_page_faults_per_pass: float | None = None
    process: dict[str, Any] = field(default_factory=dict)
    allocator_check: AllocatorRun | None = None

    @property
    def layer_sum_s(self) -> float | None:
        return sum(row.stats.median for row in self.layer_rows) if self.layer_rows else None


def parse_backends(text: str | None) -> list[str]:
    from lwprof.runtime.backends import get_backend

    names = [part.strip() for part in (text or ",".join(DEFAULT_BACKENDS)).split(",") if part.strip()]
    if not names:
        raise LwprofError("--backend needs at least one backend name")
    for name in names:
        get_backend(name)  # raises with suggestions
    return list(dict.fromkeys(names))


def parse_batch_sizes(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise LwprofError(f"--batch-size '{text}' must be positive integers separated by commas, e.g. 1,8,32")
        sizes.append(int(part))
    return list(dict.fromkeys(sizes))


def run_directory(reports_dir: Path, model: str, device: str, now: datetime.datetime | None = None) -> Path:
    """A new directory ``<model>-<device>-<timestamp>``; never an existing one."""
    now = now or datetime.datetime.now()
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", model).strip("_") or "model"
    base = reports_dir / f"{safe}-{device}-{now.strftime('%Y%m%d-%H%M%S')}"
    candidate, suffix = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = base.with_name(f"{base.name}-{suffix}")


def _claim_out_dir(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LwprofError(f"--out {out} already exists and is not empty: a run directory is never overwritten")
    out.mkdir(parents=True, exist_ok=True)
    return out


class LatencyJob:
    """One ``lwprof profile --device`` run; state is written as it grows.

    This process counts the model, exports it and measures the roofline;
    every timing runs in a fresh worker process (:mod:`lwprof.runtime.worker`), so
    none of that work changes a measured figure.
    """

    def __init__(
        self,
        spec: str,
        *,
        settings: RunSettings,
        backends: list[str],
        batch_sizes: list[int | None],
        input_shape: tuple[int, ...] | None,
        reports_dir: Path,
        out: Path | None,
    ):
        self.spec = spec
        self.settings = settings
        self.backends = backends
        self.batch_sizes = batch_sizes
        self.input_shape = input_shape
        self.reports_dir = reports_dir
        self.out = out
        self.run_dir: Path | None = None
        self.model_name = spec
        self.profiles: dict[int, Any] = {}  # batch size -> ModelProfile
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.results: list[BackendResult] = []
        self.peaks: dict[str, Any] = {}
        self.peak_notes: dict[str, str] = {}
        self.environment: dict[str, Any] = {}
        self.partial = False
        self.timings: dict[str, float] = {
            "load_s": 0.0, "analysis_s": 0.0, "peaks_s": 0.0, "prepare_s": 0.0, "worker_start_s": 0.0, "measure_s": 0.0, "layers_s": 0.0,
        }

    @property
    def device(self) -> str:
        return self.settings.device

    @property
    def threads(self) -> int:
        return self.settings.threads

    # -- the job -------------------------------------------------------------

    def run(self) -> None:
        from lwprof.runtime.backends import check_device
        from lwprof.runtime.environment import capture_environment

        check_device(self.device)
        from lwprof.runtime.loader import load_model

        first = True
        try:
            for batch_size in self.batch_sizes:
                started = time.perf_counter()
                loaded = load_model(self.spec, input_shape=self.input_shape, batch_size=batch_size)
                self.timings["load_s"] += time.perf_counter() - started
                if first:
                    self.model_name = loaded.name
                    self.run_dir = _claim_out_dir(self.out) if self.out else run_directory(self.reports_dir, loaded.name, self.device)
                    output.info(f"run directory: {self.run_dir}")
                    self._set_threads()
                    self.environment = capture_environment()
                    self._measure_peaks()
                    first = False
                size = loaded.input_shape[0]
                self.shapes[size] = loaded.input_shape
                started = time.perf_counter()
                output.info(f"counting {loaded.name} on input {'x'.join(map(str, loaded.input_shape))}")
                self.profiles[size] = _analyze(loaded)
                self.timings["analysis_s"] += time.perf_counter() - started
                self._measure_backends(loaded, size)
                self.write()
                if self.partial:
                    break
        except KeyboardInterrupt:
            self.partial = True
        if self.run_dir is not None:
            self.write()

    def _set_threads(self) -> None:
        import torch

        if self.device == "cpu":
            torch.set_num_threads(self.threads)

    def _measure_peaks(self) -> None:
        from lwprof.runtime.roofline import load_or_measure

        started = time.perf_counter()
        for backend in self.backends:
            if _backend_unavailable(backend, self.device) is not None:
                continue
            try:
                with output.stderr.status(f"measuring {backend} peak compute and bandwidth on {self.device}"):
                    peaks, cached = load_or_measure(backend, self.device, self.threads, cache_dir=self.settings.cache_dir)
            except LwprofError as exc:
                self.peak_notes[backend] = str(exc)
                output.warn(f"{backend}: no roofline ({exc})")
                continue
            self.peaks[backend] = peaks
            self.peak_notes[backend] = "cached" if cached else "measured"
        self.timings["peaks_s"] += time.perf_counter() - started

    def _measure_backends(self, loaded: Any, batch_size: int) -> None:
        from lwprof.runtime.backends import BackendSkipped, compare_outputs, get_backend

        reference: tuple[str, list[Any]] | None = None
        fingerprint: list[str] = []  # of this process's module, computed when a worker reports one
        for name in self.backends:
            result = BackendResult(backend=name, batch_size=batch_size)
            self.results.append(result)
            reason = _backend_unavailable(name, self.device)
            if reason is not None:
                result.skipped = reason
                output.warn(f"{name}: skipped ({reason})")
                continue
            started = time.perf_counter()
            try:
                with output.stderr.status(f"{name}: preparing {loaded.name} (batch {batch_size})"):
                    staged = get_backend(name).stage(loaded, loaded.input_shape, self.settings.cache_dir)
            except BackendSkipped as exc:
                result.skipped = str(exc)
                output.warn(f"{name}: skipped ({exc})")
                continue
            finally:
                self.timings["prepare_s"] += time.perf_counter() - started
            primary, *more = variants(self.settings.allocator)
            reply = self._measure_in_worker(name, staged, batch_size, primary, layer_runs=self.settings.layer_runs, outputs=True)
            if reply is None:
                result.skipped = "interrupted before timing"
                return
            if reply.skipped:
                result.skipped = reply.skipped
                output.warn(f"{name}: skipped ({reply.skipped})")
                continue
            result.info = {**reply.info, **staged.info}
            result.process = reply.process
            result.allocator = primary
            result.minor_page_faults_per_pass = reply.minor_page_faults_per_pass
            result.measurement = self._measurement(reply, result, loaded.name, primary)
            result.layer_rows = reply.layer_rows
            result.layer_pass_s = reply.layer_pass_s
            if reply.layer_error:
                result.warnings.append(f"{name}: no per-layer times ({reply.layer_error})")
            if reply.fingerprint is not None and loaded.module is not None:
                if not fingerprint:
                    from lwprof.runtime.backends import module_fingerprint

                    fingerprint.append(module_fingerprint(loaded.module))
                if reply.fingerprint != fingerprint[0]:
                    result.warnings.append(
                        f"{name}: the model its worker rebuilt has other weights than this process's (the model's code draws "
                        "random numbers outside torch's seeded generator), so its outputs are not compared"
                    )
                    reply.outputs = None
            if reply.outputs is not None:
                if reference is None:
                    reference = (name, reply.outputs)
                    check = compare_outputs(reply.outputs, reply.outputs)
                    result.output_check = {"reference": name, **_check_dict(check)}
                else:
                    check = compare_outputs(reference[1], reply.outputs)
                    result.output_check = {"reference": reference[0], **_check_dict(check)}
                    if not check.allclose:
                        result.warnings.append(f"{name}: outputs differ from {reference[0]}: {check.describe()}")
                if check.nonfinite:
                    result.warnings.append(f"{name}: the model's outputs contain NaN or Inf")
            if reply.interrupted:
                self.partial = True
            elif self.device == "cpu" and (more or (self.settings.allocator == "auto" and significant(reply.minor_page_faults_per_pass))):
                result.allocator_check = self._allocator_check(name, staged, result, loaded.name, TUNED)
            for note in result.warnings + (result.measurement.warnings() if result.measurement else []):
                output.warn(note)
            self.write()
            if self.partial:
                return

    def _allocator_check(self, name: str, staged: Any, result: BackendResult, model: str, allocator: str) -> AllocatorRun:
        from lwprof.runtime.allocator import tuning_unavailable

        reason = tuning_unavailable() if allocator == TUNED else None
        if reason is not None:
            return AllocatorRun(allocator, None, None, skipped=reason)
        reply = self._measure_in_worker(name, staged, result.batch_size, allocator, layer_runs=0, outputs=False)
        if reply is None or reply.skipped:
            return AllocatorRun(allocator, None, None, skipped=(reply.skipped if reply else "interrupted"))
        if reply.interrupted:
            self.partial = True
        run = AllocatorRun(allocator, self._measurement(reply, result, model, allocator), reply.minor_page_faults_per_pass, reply.process)
        if run.measurement is not None and result.measurement is not None:
            output.info(
                f"{result.backend} with the {allocator} allocator: median {run.measurement.stats.median * 1e3:.3f} ms, "
                f"{_faults_text(run.minor_page_faults_per_pass)} minor page faults per pass"
            )
        return run

    def _measure_in_worker(self, name: str, staged: Any, batch_size: int, allocator: str, *, layer_runs: int, outputs: bool) -> Any:
        """One worker's reply; None when Ctrl-C came before the worker could reply."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from lwprof.runtime.worker import MeasureRequest, WorkerFailed, run_in_worker

        label = f"{name} {self.device} batch {batch_size}" + ("" if allocator == DEFAULT else f" ({allocator} allocator)")
        request = MeasureRequest(
            backend=name,
            model=staged.model,
            settings=self.settings,
            allocator=allocator,
            layer_runs=layer_runs,
            want_outputs=outputs,
            want_fingerprint=outputs and staged.model.kind == "torch",
            label=label,
        )
        max_time = self.settings.budget.max_time_s
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[samples]} runs"),
            TimeElapsedColumn(),
            console=output.stderr,
            transient=True,
        ) as progress:
            task = progress.add_task(f"{name}: starting a worker process", total=max_time, samples=0)

            def on_message(message: tuple[Any, ...]) -> None:
                kind = message[0]
                if kind == "status":
                    progress.update(task, description=message[1])
                elif kind == "timing":
                    progress.update(task, description=f"timing {message[1]}", completed=0)
                    if not output.stderr.is_terminal:
                        output.info(f"timing {message[1]}")
                elif kind == "sample":
                    progress.update(task, completed=min(message[2], max_time), samples=message[1])

            started = time.perf_counter()
            try:
                reply = run_in_worker(request, on_message)
            except WorkerFailed as exc:
                from lwprof.runtime.worker import MeasureReply

                reply = MeasureReply(skipped=str(exc))
        # Starting the interpreter and importing the runtime: the price of a fresh process.
        self.timings["worker_start_s"] += time.perf_counter() - started - reply.prepare_s - reply.measure_s - reply.layers_s
        self.timings["prepare_s"] += reply.prepare_s
        self.timings["measure_s"] += reply.measure_s
        self.timings["layers_s"] += reply.layers_s
        if reply.interrupted and not reply.samples_s:
            self.partial = True
            return None if not reply.skipped else reply
        return reply

    def _measurement(self, reply: Any, result: BackendResult, model: str, allocator: str) -> Measurement | None:
        if not reply.samples_s:
            return None
        label = f"{result.backend} {self.device} batch {result.batch_size}" + ("" if allocator == DEFAULT else f" ({allocator} allocator)")
        measurement = Measurement(
            label=label,
            samples_s=tuple(reply.samples_s),
            metadata={"model": model, "backend": result.backend, "device": self.device, "batch_size": result.batch_size,
                      "threads": self.threads, "allocator": allocator,
                      "minor_page_faults_per_pass": reply.minor_page_faults_per_pass},
            environment=self.environment,
            partial=reply.interrupted,
        )
        stats = measurement.stats
        output.info(f"{label}: median {stats.median * 1e3:.3f} ms over {stats.n} runs")
        return measurement

    # -- results -------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for result in self.results:
            row: dict[str, Any] = {"backend": result.backend, "device": self.device, "batch_size": result.batch_size}
            if result.measurement is None:
                row["skipped"] = result.skipped or ("interrupted before timing" if self.partial else "not measured")
                rows.append(row)
                continue
            stats = result.measurement.stats
            row.update(stats.as_dict())
            row["throughput_items_per_s"] = result.batch_size / stats.median if stats.median else None
            profile = self.profiles.get(result.batch_size)
            if profile is not None:
                totals = profile.totals
                memory = _roofline_bytes(result.backend, totals["memory_bytes"], totals["memory_bytes_fused"])
                row.update(_roofline_columns(totals["flops"], memory, stats.median, self.peaks.get(result.backend), prefix=""))
            row["layer_sum_s"] = result.layer_sum_s
            row["layer_sum_vs_end_to_end"] = result.layer_sum_s / stats.median if result.layer_sum_s and stats.median else None
            row["layer_pass_overhead"] = result.layer_pass_s / stats.median if result.layer_pass_s and stats.median else None
            check = result.output_check
            if check is not None and check["reference"] != result.backend:
                row["outputs_vs"] = check["reference"]
                row["max_abs_diff"] = check["max_abs_diff"]
                row["max_rel_diff"] = check["max_rel_diff"]
                row["outputs_allclose"] = check["allclose"]
            elif check is not None:
                row["outputs_vs"] = "(reference)"
            row.update(_allocator_columns(result))
            row["skipped"] = ""
            rows.append(row)
        return rows

    def layer_table(self) -> list[dict[str, Any]]:
        table = []
        for batch_size, profile in self.profiles.items():
            results = [r for r in self.results if r.batch_size == batch_size and r.layer_rows]
            table.extend(join_layers(profile, results, self.peaks, batch_size))
        return table

    def payload(self) -> dict[str, Any]:
        first = next(iter(self.profiles.values()), None)
        return {
            "model": self.model_name,
            "spec": self.spec,
            "device": self.device,
            "backends": self.backends,
            "batch_sizes": list(self.profiles) or [b for b in self.batch_sizes if b],
            "input_shapes": {str(b): list(s) for b, s in self.shapes.items()},
            "threads": self.threads,
            "budget": {
                "min_time_s": self.settings.budget.min_time_s,
                "max_time_s": self.settings.budget.max_time_s,
                "warmup": self.settings.budget.warmup,
                "layer_runs": self.settings.layer_runs,
            },
            "settings": self.settings.to_dict(),
            "partial": self.partial,
            "totals": first.totals if first is not None else None,
            "totals_by_batch_size": {str(b): p.totals for b, p in self.profiles.items()},
            "unsupported_ops": dict(first.unsupported_ops) if first is not None else {},
            "results": [
                {
                    **row,
                    "info": result.info,
                    "process": result.process,
                    "allocator_comparison": _allocator_comparison(result),
                    "output_check": result.output_check,
                    "warnings": result.warnings + (result.measurement.warnings() if result.measurement else []),
                }
                for row, result in zip(self.summary(), self.results)
            ],
            "roofline": {
                backend: {**peaks.to_dict(), "source": self.peak_notes.get(backend)} for backend, peaks in self.peaks.items()
            },
            "roofline_notes": {b: n for b, n in self.peak_notes.items() if b not in self.peaks},
            "wall_time_split_s": dict(self.timings),
            "environment": self.environment,
        }

    def write(self) -> list[Path]:
        if self.run_dir is None:
            return []
        run_dir = self.run_dir
        written = [run_dir / "profile.json", run_dir / "latency.csv", run_dir / "layers.csv"]
        _atomic_write(run_dir / "profile.json", json.dumps(self.payload(), indent=2, default=_json_default) + "\n")
        lines = ["backend,device,batch_size,allocator,run,latency_s"]
        for result in self.results:
            timed = [(result.allocator, result.measurement)]
            if result.allocator_check is not None:
                timed.append((result.allocator_check.allocator, result.allocator_check.measurement))
            for allocator, measurement in timed:
                if measurement is not None:
                    for index, seconds in enumerate(measurement.samples_s):
                        lines.append(f"{result.backend},{self.device},{result.batch_size},{allocator},{index},{seconds!r}")
        _atomic_write(run_dir / "latency.csv", "\n".join(lines) + "\n")
        layer_rows = self.layer_table()
        _atomic_write(run_dir / "layers.csv", csv_text(layer_rows))
        marker = run_dir / "PARTIAL"
        if self.partial:
            marker.write_text("This run was interrupted: the files hold what was measured before Ctrl-C.\n")
            written.append(marker)
        elif marker.exists():
            marker.unlink()
        return written

    def plot(self) -> list[Path]:
        if self.run_dir is None or not self.profiles:
            return []
        from lwprof.reports.plots import plot_roofline, plot_time_vs_flop_share

        batch_size = next(iter(self.profiles))
        rows = [r for r in self.layer_table() if r["batch_size"] == batch_size]
        timed = [b for b in self.backends if any(f"{b}_time_s" in r for r in rows)]
        if not timed:
            return []
        share_rows = [
            {
                "layer": r["layer"],
                "flops": r.get("flops") or 0,  # runtime-only rows count nothing
                "memory_bytes": r.get("memory_bytes") or 0,
                "time_s": {b: r.get(f"{b}_time_s") for b in timed},
            }
            for r in rows
        ]
        title = f"{self.model_name} on {self.device} (batch {batch_size})"
        written = list(plot_time_vs_flop_share(share_rows, self.run_dir / "time_share", title))
        points = [
            {
                "layer": r["layer"],
                "intensity": r[f"{b}_intensity_flops_per_byte"],
                "achieved_flops_per_s": r[f"{b}_achieved_flops_per_s"],
                "backend": b,
                "op_class": r.get("op_class") or "",
            }
            for b in timed
            for r in rows
            if r.get(f"{b}_achieved_flops_per_s") and r.get(f"{b}_intensity_flops_per_byte")
        ]
        peaks = {b: p for b, p in self.peaks.items() if b in timed}
        if points and peaks:
            written += list(plot_roofline(points, peaks, self.run_dir / "roofline", f"{title}: layers on the roofline"))
        return written


# -- joining analytic rows with timing rows ------------------------------------


def _roofline_bytes(backend: str, eager: int, fused: int) -> int:
    return fused if backend == "onnxruntime" else eager


def _roofline_columns(flops: int, memory_bytes: int, seconds: float | None, peaks: Any, prefix: str) -> dict[str, Any]:
    columns: dict[str, Any] = {
        f"{prefix}achieved_flops_per_s": flops / seconds if seconds else None,
        f"{prefix}achieved_bytes_per_s": memory_bytes / seconds if seconds else None,
        f"{prefix}intensity_flops_per_byte": flops / memory_bytes if memory_bytes else None,
        f"{prefix}roofline_bound_s": None,
        f"{prefix}roofline_efficiency": None,
        f"{prefix}bound_by": None,
    }
    if peaks is not None and (flops or memory_bytes):
        from lwprof.runtime.roofline import efficiency, roofline_bound

        point = roofline_bound(flops, memory_bytes, peaks)
        columns[f"{prefix}roofline_bound_s"] = point.bound_s
        columns[f"{prefix}roofline_efficiency"] = efficiency(point.bound_s, seconds) if seconds else None
        columns[f"{prefix}bound_by"] = point.limit
    return columns


def join_layers(profile: Any, results: list[BackendResult], peaks: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """Analytic rows (execution order) with each backend's per-layer time."""
    rows = [{"batch_size": batch_size, **row} for row in profile.layer_rows()]
    by_name = {row["layer"]: row for row in rows}
    total_flops = sum(row["flops"] for row in rows) or None
    for row in rows:
        row["flops_share"] = row["flops"] / total_flops if total_flops else None
    extra_rows: list[dict[str, Any]] = []
    for result in results:
        name = result.backend
        groups: dict[str, dict[str, Any]] = {}  # head layer -> time and members
        for timing in result.layer_rows:
            members = [layer for layer in timing.layers if layer in by_name]
            head = members[0] if members else timing.layer
            group = groups.setdefault(head, {"time": 0.0, "members": [], "ops": set(), "known": bool(members)})
            group["time"] += timing.stats.median
            group["ops"].update(timing.ops)
            for member in members:
                if member not in group["members"]:
                    group["members"].append(member)
        total_time = sum(group["time"] for group in groups.values()) or None
        for head, group in groups.items():
            if not group["known"]:
                row = {"batch_size": batch_size, "layer": head, "module_type": "", "op_class": "", "ops": " ".join(sorted(group["ops"]))}
                extra_rows.append(row)
                by_name[head] = row
                members = []
            else:
                row = by_name[head]
                members = group["members"]
            flops = sum(by_name[m]["flops"] for m in members)
            memory = _roofline_bytes(name, sum(by_name[m]["memory_bytes"] for m in members), sum(by_name[m]["memory_bytes_fused"] for m in members))
            row[f"{name}_time_s"] = group["time"]
            row[f"{name}_time_share"] = group["time"] / total_time if total_time else None
            row.update(_roofline_columns(flops, memory, group["time"], peaks.get(name), prefix=f"{name}_"))
            if len(members) > 1:
                row[f"{name}_fused_layers"] = " ".join(members[1:])
                for member in members[1:]:
                    by_name[member][f"{name}_fused_into"] = head
    return rows + extra_rows


# -- the allocator's share ---------------------------------------------------------


def _faults_text(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _allocator_columns(result: BackendResult) -> dict[str, Any]:
    """Page faults per pass, and the tuned allocator's figures beside the
    default's when both were timed (``allocator_tax``: how much slower the
    default allocator made the median)."""
    columns: dict[str, Any] = {
        "allocator": result.allocator,
        "minor_page_faults_per_pass": result.minor_page_faults_per_pass,
        "tuned_median_s": None,
        "tuned_iqr_s": None,
        "tuned_minor_page_faults_per_pass": None,
        "allocator_tax": None,
    }
    check = result.allocator_check
    if check is not None and check.measurement is not None and result.measurement is not None:
        tuned, default = check.measurement.stats, result.measurement.stats
        columns.update(
            tuned_median_s=tuned.median,
            tuned_iqr_s=tuned.iqr,
            tuned_minor_page_faults_per_pass=check.minor_page_faults_per_pass,
            allocator_tax=default.median / tuned.median - 1 if tuned.median else None,
        )
    elif result.allocator == TUNED:
        columns.update(tuned_median_s=result.measurement.stats.median if result.measurement else None,
                       tuned_minor_page_faults_per_pass=result.minor_page_faults_per_pass)
    return columns


def _allocator_comparison(result: BackendResult) -> dict[str, Any] | None:
    from lwprof.runtime.allocator import SIGNIFICANT_FAULTS_PER_PASS, TUNED_ENVIRONMENT

    if result.measurement is None:
        return None
    runs = {result.allocator: (result.measurement, result.minor_page_faults_per_pass, result.process)}
    check = result.allocator_check
    if check is not None and check.measurement is not None:
        runs[check.allocator] = (check.measurement, check.minor_page_faults_per_pass, check.process)
    comparison: dict[str, Any] = {
        allocator: {
            "median_s": measurement.stats.median,
            "iqr_s": measurement.stats.iqr,
            "n": measurement.stats.n,
            "minor_page_faults_per_pass": faults,
            "tuning": process.get("allocator_tuning"),
        }
        for allocator, (measurement, faults, process) in runs.items()
    }
    comparison["significant_faults_per_pass"] = SIGNIFICANT_FAULTS_PER_PASS
    if check is not None and check.skipped:
        comparison["tuned_skipped"] = check.skipped
    if DEFAULT in runs and TUNED in runs:
        comparison["default_vs_tuned"] = runs[DEFAULT][0].stats.median / runs[TUNED][0].stats.median
    if TUNED in runs:
        comparison["how_to_get_tuned"] = (
            "set " + " ".join(f"{k}={v}" for k, v in TUNED_ENVIRONMENT.items())
            + " in the deployed process's environment, or LD_PRELOAD jemalloc or tcmalloc"
        )
    return comparison


def allocator_notes(summary: list[dict[str, Any]]) -> list[str]:
    """One sentence per backend whose plain process page-faulted significantly."""
    from lwprof.runtime.allocator import deployment_hint

    notes = []
    for row in summary:
        faults, tax = row.get("minor_page_faults_per_pass"), row.get("allocator_tax")
        if row.get("allocator") != DEFAULT or not significant(faults):
            continue
        text = (
            f"{row['backend']} (batch {row['batch_size']}): {faults:,.0f} minor page faults per pass: glibc returns "
            "the activations' memory to the kernel after each pass and faults it in again."
        )
        if tax is not None:
            text += (
                f" With the allocator tuned: median {row['tuned_median_s'] * 1e3:.3f} ms against "
                f"{row['median_s'] * 1e3:.3f} ms ({tax:+.1%} for the default)."
            )
        text += f" In deployment: {deployment_hint()} (or LD_PRELOAD jemalloc/tcmalloc); --allocator tuned times that."
        notes.append(text)
    return notes


# -- helpers -------------------------------------------------------------------


def _analyze(loaded: Any):
    if loaded.kind == "onnx":
        from lwprof.counting.onnx_count import analyze_onnx

        return analyze_onnx(loaded.onnx_path, input_shape=loaded.input_shape, name=loaded.name)
    from lwprof.counting.engine import profile_module

    return profile_module(loaded.module, loaded.input_shape, name=loaded.name)


def _backend_unavailable(name: str, device: str) -> str | None:
    from lwprof.runtime.backends import get_backend

    return get_backend(name).unavailable_reason(device)


def _default_cache_dir() -> Path:
    from lwprof.runtime.backends import default_cache_dir

    return default_cache_dir()


def _check_dict(check: Any) -> dict[str, Any]:
    return {
        "allclose": check.allclose,
        "max_abs_diff": check.max_abs_diff,
        "max_rel_diff": check.max_rel_diff,
        "nonfinite": check.nonfinite,
        "shapes_match": check.shapes_match,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV, the union of their keys as columns (first-seen order), None as empty."""
    import io

    keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in keys:
                keys.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k in keys])
    return buffer.getvalue()


# -- the command -----------------------------------------------------------------


def _ms(value: Any) -> str:
    return "" if value is None else f"{value * 1e3:.3f}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{value:.1%}"


def run_latency_profile(
    spec: str,
    *,
    settings: RunSettings,
    backends: str | None,
    batch_sizes: str | None,
    input_shape: str | None,
    top: int,
    fmt: OutputFormat,
    out: Path | None,
    reports_dir: Path,
    plots: bool,
) -> int:
    """Run the job and print its summary; returns the exit code."""
    from lwprof.runtime.loader import parse_shape

    shape = parse_shape(input_shape) if input_shape is not None else None
    job = LatencyJob(
        spec,
        settings=settings,
        backends=parse_backends(backends),
        batch_sizes=parse_batch_sizes(batch_sizes),
        input_shape=shape,
        reports_dir=reports_dir,
        out=out,
    )
    job.run()
    if plots and job.profiles:
        try:
            job.plot()
        except KeyboardInterrupt:
            job.partial = True
            job.write()
    _print_summary(job, fmt, top)
    if job.run_dir is not None:
        output.info(f"wrote {job.run_dir}" + (" (partial: interrupted)" if job.partial else ""))
    if not any(r.measurement for r in job.results) and not job.partial:
        reasons = "; ".join(f"{r.backend}: {r.skipped}" for r in job.results if r.skipped)
        raise LwprofError(f"no backend could measure {job.model_name} ({reasons})")
    return EXIT_INTERRUPTED if job.partial else 0


def _print_summary(job: LatencyJob, fmt: OutputFormat, top: int) -> None:
    from lwprof.core.units import format_bytes, format_count

    summary = job.summary()
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(job.payload(), indent=2, default=_json_default) + "\n")
        return
    columns = [
        Column("backend", "backend"),
        Column("batch_size", "batch", str, "right"),
        Column("median_s", "median ms", _ms, "right"),
        Column("iqr_s", "IQR ms", _ms, "right"),
        Column("p99_s", "p99 ms", _ms, "right"),
        Column("n", "runs", lambda v: "" if v is None else str(v), "right"),
        Column("throughput_items_per_s", "items/s", lambda v: "" if v is None else f"{v:.1f}", "right"),
        Column("roofline_bound_s", "roofline ms", _ms, "right"),
        Column("roofline_efficiency", "efficiency", _pct, "right"),
        Column("bound_by", "bound by"),
        Column("layer_sum_vs_end_to_end", "layers/e2e", _pct, "right"),
        Column("outputs_vs", "outputs vs"),
        Column("max_rel_diff", "max rel diff", lambda v: "" if v is None else f"{v:.1e}", "right"),
        Column("minor_page_faults_per_pass", "faults/pass", lambda v: "" if v is None else f"{v:,.0f}", "right"),
        Column("tuned_median_s", "tuned ms", _ms, "right"),
        Column("skipped", "skipped"),
    ]
    if fmt is OutputFormat.csv:
        keys = ["backend", "device", "batch_size", "n", "median_s", "mean_s", "std_s", "iqr_s", "p90_s", "p99_s", "min_s", "max_s",
                "ci95_low_s", "ci95_high_s", "relative_iqr", "noisy", "throughput_items_per_s", "roofline_bound_s",
                "roofline_efficiency", "bound_by", "layer_sum_s", "layer_sum_vs_end_to_end", "layer_pass_overhead",
                "outputs_vs", "max_abs_diff", "max_rel_diff", "outputs_allclose", "allocator", "minor_page_faults_per_pass",
                "tuned_median_s", "tuned_iqr_s", "tuned_minor_page_faults_per_pass", "allocator_tax", "skipped"]
        output.emit(summary, [Column(k, k) for k in keys], fmt)
        return
    profile = next(iter(job.profiles.values()), None)
    if profile is not None:
        totals = profile.totals
        shape = "x".join(map(str, profile.input_shape))
        output.stdout.print(
            f"[bold]{job.model_name}[/bold] on {job.device} ({job.threads} threads), input {shape}: "
            f"{format_count(totals['params'])} params, {format_count(totals['macs'])} MACs, {format_count(totals['flops'])} FLOPs, "
            f"memory access {format_bytes(totals['memory_bytes'])} eager / {format_bytes(totals['memory_bytes_fused'])} fused",
            highlight=False,
        )
    output.emit(summary, columns, OutputFormat.table, title="end-to-end latency")
    for note in allocator_notes(summary):
        output.stdout.print(note, highlight=False, soft_wrap=True)
    rows = [r for r in job.layer_table() if r["batch_size"] == (next(iter(job.profiles), None))]
    for backend in job.backends:
        key = f"{backend}_time_s"
        timed = sorted((r for r in rows if r.get(key)), key=lambda r: -r[key])[:top]
        if not timed:
            continue
        layer_columns = [
            Column("layer", "layer"),
            Column("op_class", "class"),
            Column(key, "ms", _ms, "right"),
            Column(f"{backend}_time_share", "time share", _pct, "right"),
            Column("flops_share", "FLOP share", _pct, "right"),
            Column(f"{backend}_achieved_flops_per_s", "GFLOP/s", lambda v: "" if v is None else f"{v / 1e9:.2f}", "right"),
            Column(f"{backend}_achieved_bytes_per_s", "GB/s", lambda v: "" if v is None else f"{v / 1e9:.2f}", "right"),
            Column(f"{backend}_roofline_efficiency", "efficiency", _pct, "right"),
            Column(f"{backend}_bound_by", "bound by"),
            Column(f"{backend}_fused_layers", "also covers", lambda v: v or ""),
        ]
        output.emit(timed, layer_columns, OutputFormat.table, title=f"top {len(timed)} layers by {backend} time")
