"""One ``lwprof profile --device`` run: count, stage, time in workers, write as it grows.

This process loads and counts the model, exports it where a backend needs a
file, and measures (or reads) the roofline; every timing runs in a fresh
worker process (:mod:`lwprof.runtime.worker`), so none of that work changes
a measured figure. The run directory is rewritten after every backend
(:func:`lwprof.reports.profile_run.write_run`), so Ctrl-C leaves what was
measured so far, marked ``"partial": true``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from lwprof.commands.common import claim_out_dir, count, measure_in_worker, run_directory
from lwprof.core.errors import LwprofError
from lwprof.core.stats import Measurement
from lwprof.reports import console
from lwprof.reports.allocator_report import faults_text
from lwprof.reports.profile_run import AllocatorRun, BackendResult, check_record, plot_run, write_run
from lwprof.runtime.allocator import DEFAULT, TUNED, significant, variants
from lwprof.runtime.precision import result_key
from lwprof.runtime.settings import RunSettings

WALL_TIME_PARTS = ("load_s", "analysis_s", "peaks_s", "prepare_s", "worker_start_s", "measure_s", "layers_s")


class LatencyJob:
    def __init__(self, spec: str, *, settings: RunSettings, backends: list[str], batch_sizes: list[int | None],
                 input_shape: tuple[int, ...] | None, reports_dir: Path, out: Path | None,
                 precisions: list[tuple[str, str]] | None = None, calibrations: Sequence[Any] = ()):
        self.spec = spec
        self.settings = settings
        self.backends = backends
        # (backend, precision) in measuring order; default: each backend at the settings' precision.
        self.targets = precisions or [(backend, settings.precision) for backend in backends]
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
        self.timings: dict[str, float] = dict.fromkeys(WALL_TIME_PARTS, 0.0)
        # Latency calibrations (lwprof.predict.calibration.Calibration): each predicts the result of its
        # backend and precision, per batch size, from the counted profile alone.
        self.calibrations = list(calibrations)
        self.predictions: dict[int, dict[str, Any]] = {}  # batch size -> result key -> Prediction

    @property
    def device(self) -> str:
        return self.settings.device

    # -- the job -------------------------------------------------------------

    def run(self) -> None:
        from lwprof.runtime.backends import check_device
        from lwprof.runtime.loader import load_model
        from lwprof.runtime.threads import torch_threads

        check_device(self.device)
        try:
            # This process counts with the run's threads too (the environment records them).
            with torch_threads(self.settings.threads if self.device == "cpu" else None):
                for batch_size in self.batch_sizes:
                    started = time.perf_counter()
                    loaded = load_model(self.spec, input_shape=self.input_shape, batch_size=batch_size)
                    self.timings["load_s"] += time.perf_counter() - started
                    if self.run_dir is None:
                        self._start(loaded)
                    size = loaded.input_shape[0]
                    self.shapes[size] = loaded.input_shape
                    started = time.perf_counter()
                    console.info(f"counting {loaded.name} on input {'x'.join(map(str, loaded.input_shape))}")
                    self.profiles[size] = count(loaded)
                    self.predictions[size] = {calibration.result_key: calibration.predict(self.profiles[size])
                                              for calibration in self.calibrations}
                    self.timings["analysis_s"] += time.perf_counter() - started
                    self._measure_backends(loaded, size)
                    self.write()
                    if self.partial:
                        break
        except KeyboardInterrupt:
            self.partial = True
        if self.run_dir is not None:
            self.write()

    def _start(self, loaded: Any) -> None:
        from lwprof.runtime.environment import capture_environment

        self.model_name = loaded.name
        self.run_dir = claim_out_dir(self.out) if self.out else run_directory(self.reports_dir, loaded.name, self.device)
        console.info(f"run directory: {self.run_dir}")
        self.environment = capture_environment()
        self._measure_peaks()

    def _measure_peaks(self) -> None:
        from lwprof.runtime.backends import get_backend
        from lwprof.runtime.roofline import load_or_measure

        started = time.perf_counter()
        # fp32's roof for every backend (the float layers of any model), and each other precision's own.
        wanted = dict.fromkeys([(b, "fp32") for b in self.backends] + list(self.targets))
        for backend, precision in wanted:
            key = result_key(backend, precision)
            if get_backend(backend).unavailable_reason(self.device) is not None:
                continue
            try:
                with console.stderr.status(f"measuring {backend} {precision} peak compute and bandwidth on {self.device}"):
                    peaks, cached = load_or_measure(backend, self.settings.but(precision=precision))
            except LwprofError as exc:
                self.peak_notes[key] = str(exc)
                console.warn(f"{key}: no roofline ({exc})")
                continue
            self.peaks[key] = peaks
            self.peak_notes[key] = "cached" if cached else "measured"
        self.timings["peaks_s"] += time.perf_counter() - started

    def _measure_backends(self, loaded: Any, batch_size: int) -> None:
        from lwprof.runtime.backends import BackendSkipped, get_backend

        checker = _OutputChecker(loaded)
        for name, precision in self.targets:
            settings = self.settings.but(precision=precision)
            result = BackendResult(backend=name, batch_size=batch_size, precision=precision)
            self.results.append(result)
            backend = get_backend(name)
            started = time.perf_counter()
            try:
                reason = backend.unavailable_reason(self.device) or backend.precision_problem(precision)
                if reason is not None:
                    raise BackendSkipped(reason)
                what = "" if precision == "fp32" else f" in {precision}"
                with console.stderr.status(f"{name}: preparing {loaded.name}{what} (batch {batch_size})"):
                    staged = backend.stage(loaded, loaded.input_shape, settings)
            except BackendSkipped as exc:
                result.skipped = str(exc)
                console.warn(f"{name}: skipped ({exc})")
                continue
            finally:
                self.timings["prepare_s"] += time.perf_counter() - started
            primary, *more = variants(self.settings.allocator)
            result.info = dict(staged.info)
            for note in [*result.info.get("notes", ()), *_precision_notes(result)]:
                result.warnings.append(note)
                console.warn(note)
            shown = len(result.warnings)  # said once, before the timing
            reply = self._timed(result, staged, primary, layer_runs=self.settings.layer_runs, outputs=True)
            if reply is None:
                result.skipped = "interrupted before timing"
                return
            if reply.skipped:
                result.skipped = reply.skipped
                console.warn(f"{name}: skipped ({reply.skipped})")
                continue
            self._record(result, reply, staged, loaded.name, primary)
            checker.check(result, reply)
            if reply.interrupted:
                self.partial = True
            elif self.device == "cpu" and (more or (self.settings.allocator == "auto" and significant(reply.minor_page_faults_per_pass))):
                result.allocator_check = self._allocator_check(staged, result, loaded.name, TUNED)
            for note in result.warnings[shown:] + (result.measurement.warnings() if result.measurement else []):
                console.warn(note)
            self.write()
            if self.partial:
                return

    def _record(self, result: BackendResult, reply: Any, staged: Any, model: str, allocator: str) -> None:
        result.info = {**reply.info, **staged.info}
        result.process = reply.process
        result.allocator = allocator
        result.minor_page_faults_per_pass = reply.minor_page_faults_per_pass
        result.measurement = self._measurement(reply, result, model, allocator)
        result.layer_rows = reply.layer_rows
        result.layer_pass_s = reply.layer_pass_s
        if reply.layer_error:
            result.warnings.append(f"{result.backend}: no per-layer times ({reply.layer_error})")

    def _allocator_check(self, staged: Any, result: BackendResult, model: str, allocator: str) -> AllocatorRun:
        from lwprof.runtime.allocator import tuning_unavailable

        reason = tuning_unavailable() if allocator == TUNED else None
        if reason is not None:
            return AllocatorRun(allocator, None, None, skipped=reason)
        reply = self._timed(result, staged, allocator, layer_runs=0, outputs=False)
        if reply is None or reply.skipped:
            return AllocatorRun(allocator, None, None, skipped=(reply.skipped if reply else "interrupted"))
        if reply.interrupted:
            self.partial = True
        run = AllocatorRun(allocator, self._measurement(reply, result, model, allocator), reply.minor_page_faults_per_pass, reply.process)
        if run.measurement is not None:
            console.info(f"{result.backend} with the {allocator} allocator: median {run.measurement.stats.median * 1e3:.3f} ms, "
                         f"{faults_text(run.minor_page_faults_per_pass)} minor page faults per pass")
        return run

    def _timed(self, result: BackendResult, staged: Any, allocator: str, *, layer_runs: int, outputs: bool) -> Any:
        """One figure timed in ``settings.processes`` fresh workers, their
        replies pooled (the first also returns outputs and times layers);
        None when Ctrl-C came before anything was timed."""
        from lwprof.runtime.worker import pooled

        count = self.settings.processes
        replies = [self._in_worker(result, staged, allocator, layer_runs=layer_runs, outputs=outputs, process=(1, count))]
        if replies[0] is None or replies[0].skipped:
            return replies[0]
        while len(replies) < count and not replies[-1].interrupted:
            more = self._in_worker(result, staged, allocator, layer_runs=0, outputs=False, process=(len(replies) + 1, count))
            if more is None:  # Ctrl-C before this one timed anything: the processes timed so far are kept
                replies[-1].interrupted = True
            if more is None or more.skipped:
                break
            replies.append(more)
        return pooled(replies)

    def _in_worker(self, result: BackendResult, staged: Any, allocator: str, *, layer_runs: int, outputs: bool,
                   process: tuple[int, int] = (1, 1)) -> Any:
        """One worker's reply; None when Ctrl-C came before the worker could time anything."""
        from lwprof.runtime.worker import MeasureRequest

        index, count = process
        request = MeasureRequest(backend=result.backend, model=staged.model, settings=self.settings.but(precision=result.precision),
                                 allocator=allocator, layer_runs=layer_runs, want_outputs=outputs,
                                 want_fingerprint=outputs and staged.model.kind == "torch",
                                 label=_label(result, self.device, allocator) + (f" (process {index} of {count})" if count > 1 else ""))
        started = time.perf_counter()
        reply = measure_in_worker(request)
        # Starting the interpreter and importing the runtime: the price of a fresh process.
        self.timings["worker_start_s"] += time.perf_counter() - started - reply.prepare_s - reply.measure_s - reply.layers_s
        self.timings["prepare_s"] += reply.prepare_s
        self.timings["measure_s"] += reply.measure_s
        self.timings["layers_s"] += reply.layers_s
        if reply.interrupted and not reply.samples_s:
            self.partial = True
            return reply if reply.skipped else None
        return reply

    def _measurement(self, reply: Any, result: BackendResult, model: str, allocator: str) -> Measurement | None:
        if not reply.samples_s:
            return None
        label = _label(result, self.device, allocator)
        measurement = Measurement(
            label=label,
            samples_s=tuple(reply.samples_s),
            metadata={"model": model, "backend": result.backend, "precision": result.precision, "device": self.device,
                      "batch_size": result.batch_size,
                      "threads": self.settings.threads, "allocator": allocator,
                      "minor_page_faults_per_pass": reply.minor_page_faults_per_pass,
                      "samples_per_process": [w["n"] for w in reply.process.get("workers", ())] or [len(reply.samples_s)]},
            environment=self.environment,
            partial=reply.interrupted,
        )
        console.info(f"{label}: median {measurement.stats.median * 1e3:.3f} ms over {measurement.stats.n} runs")
        return measurement

    # -- files -----------------------------------------------------------------

    def write(self) -> list[Path]:
        return write_run(self)

    def plot(self) -> list[Path]:
        return plot_run(self)


def _label(result: BackendResult, device: str, allocator: str) -> str:
    precision = "" if result.precision == "fp32" else f" {result.precision}"
    return f"{result.backend}{precision} {device} batch {result.batch_size}" + ("" if allocator == DEFAULT else f" ({allocator} allocator)")


def _precision_notes(result: BackendResult) -> list[str]:
    """Warnings when a precision's outputs no longer mean anything (their
    cosine with fp32's below the threshold on some calibration input), and
    when the runtime did not really run most of the model in it."""
    record = result.info.get("quantization") or {}
    notes = []
    agreement = record.get("agreement")
    if agreement and not agreement.get("meaningful", True):
        notes.append(f"{result.key}: outputs are meaningless against fp32 (worst cosine {agreement['worst_cosine']:.3f} < "
                     f"{agreement['meaningful_cosine']}); its latency is reported, flagged")
    layers = record.get("layers") or {}
    if layers.get("precision_really_used") is False:
        notes.append(f"{result.key}: {result.precision} was not really used: ONNX Runtime ran {len(layers['float_layers'])} "
                     f"layers in fp32 through {layers['conversion_nodes'].get('Cast', 0)} inserted casts, against "
                     f"{layers.get('fp16_layers', 0)} in {result.precision}")
    return notes


class _OutputChecker:
    """Every backend's outputs against the first backend's, once its worker
    is known to have run the very weights this process has."""

    def __init__(self, loaded: Any):
        self.loaded = loaded
        self.reference: tuple[str, list[Any]] | None = None
        self._fingerprint: str | None = None

    def check(self, result: BackendResult, reply: Any) -> None:
        from lwprof.runtime.outputs import compare_outputs

        outputs = reply.outputs
        if result.precision != "fp32":
            return  # held to fp32 by the agreement measured when it was staged
        if reply.fingerprint is not None and self.loaded.module is not None and reply.fingerprint != self._own_fingerprint():
            result.warnings.append(
                f"{result.backend}: the model its worker rebuilt has other weights than this process's (the model's code draws "
                "random numbers outside torch's seeded generator), so its outputs are not compared"
            )
            outputs = None
        if outputs is None:
            return
        if self.reference is None:
            self.reference = (result.backend, outputs)
        name, expected = self.reference
        check = compare_outputs(expected, outputs)
        result.output_check = {"reference": name, **check_record(check)}
        if not check.allclose:
            result.warnings.append(f"{result.backend}: outputs differ from {name}: {check.describe()}")
        if check.nonfinite:
            result.warnings.append(f"{result.backend}: the model's outputs contain NaN or Inf")

    def _own_fingerprint(self) -> str:
        if self._fingerprint is None:
            from lwprof.runtime.export_cache import module_fingerprint

            self._fingerprint = module_fingerprint(self.loaded.module)
        return self._fingerprint
