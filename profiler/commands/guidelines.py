"""``lwprof guidelines``: ShuffleNet V2's G1-G4 micro-benchmarks on this machine.

For every selected table, row and scale (:mod:`lwprof.models.guidelines`), the
network is counted with lwprof's engine (FLOPs, memory access) and timed on
every selected backend with the latency harness; measured throughput is put
beside the paper's, both normalised to the table's first row.

Verdicts and files: :mod:`lwprof.reports.guideline_report`.

Results are appended to ``results.jsonl`` as each configuration finishes; a
run with ``--out`` pointing at an earlier run's folder skips what that folder
already holds (same settings), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lwprof.commands.common import EXIT_INTERRUPTED, parse_int_list, precision_targets, start
from lwprof.core.errors import LwprofError
from lwprof.core.stats import Measurement
from lwprof.reports import console as output
from lwprof.reports.guideline_report import plot, print_tables, settings_key, write_files
from lwprof.runtime.allocator import variants
from lwprof.runtime.measure import Budget
from lwprof.runtime.settings import RunSettings, budget_from_options

FULL_BUDGET = Budget(warmup=3, min_time_s=1.0, max_time_s=4.0)
QUICK_BUDGET = Budget(warmup=2, warmup_time_s=0.1, min_time_s=0.3, max_time_s=1.0, min_samples=5)


# ---------------------------------------------------------------------------
# The run


def guideline_model(table: int, kwargs: dict[str, Any], shape: tuple[int, ...], name: str) -> Any:
    """One configuration's network as a :class:`~lwprof.runtime.loader.LoadedModel`,
    seeded by its name; importable, so a worker process rebuilds it exactly."""
    import functools

    from lwprof.models.guidelines import get_table
    from lwprof.runtime.loader import LoadedModel, seeded

    with seeded(name):
        net = get_table(table).build(**kwargs)
    recipe = functools.partial(guideline_model, table, kwargs, shape, name)
    return LoadedModel(name, "torch", net, None, tuple(shape), "lwprof guidelines", recipe=recipe)


class GuidelinesRun:
    def __init__(
        self,
        *,
        tables: list[int],
        settings: RunSettings,
        backends: list[str],
        config: str,
        scales: tuple[int, ...],
        out: Path,
        merge: str,
    ):
        self.tables = tables
        self.settings = settings
        self.device = settings.device
        self.threads = settings.threads
        self.budget = settings.budget
        self.backends = backends
        self.config = config
        self.scales = scales
        self.out = out
        self.merge = merge
        self.records: dict[str, dict[str, Any]] = {}
        self.skips: dict[str, str] = {}
        self.partial = False
        self.environment: dict[str, Any] = {}
        self.resumed = 0

    @property
    def results_path(self) -> Path:
        return self.out / "results.jsonl"

    def load_previous(self) -> None:
        if not self.results_path.exists():
            return
        for line in self.results_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            self.records[record["key"]] = record
        self.resumed = len(self.records)

    def _append(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        with self.results_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def run(self) -> None:
        from lwprof.models.guidelines import configs
        from lwprof.reports.progress import progress as progress_bar
        from lwprof.runtime.environment import capture_environment
        from lwprof.runtime.threads import torch_threads

        self.out.mkdir(parents=True, exist_ok=True)
        self.load_previous()
        with torch_threads(self.threads if self.device == "cpu" else None):  # recorded as the workers will use them
            self.environment = capture_environment()
        plan = [cfg for table in self.tables for cfg in configs(table, self.config, self.scales)]
        total = len(plan) * len(self.backends)
        done = 0
        try:
            with progress_bar() as progress:
                task = progress.add_task("guidelines", total=total)
                for cfg in plan:
                    analytic = None
                    for backend in self.backends:
                        key = settings_key(cfg, backend, self.settings, self.merge)
                        if key in self.records:
                            done += 1
                            progress.update(task, completed=done)
                            continue
                        progress.update(task, description=f"table {cfg.table} {cfg.row} x{cfg.scale} on {backend}")
                        if analytic is None:
                            analytic = self._count(cfg)
                        record = self._measure(cfg, backend, analytic)
                        if record is not None:
                            self._append(record)
                        done += 1
                        progress.update(task, completed=done)
                        if self.partial:
                            return
        except KeyboardInterrupt:
            self.partial = True

    def _model(self, cfg: Any) -> Any:
        kwargs = cfg.build_kwargs()
        if cfg.table == 3 and kwargs.get("layout") == "parallel":
            kwargs["merge"] = self.merge
        safe_row = "".join(ch if ch.isalnum() else "_" for ch in cfg.row)
        name = f"guideline-t{cfg.table}-{safe_row}-{cfg.config}-x{cfg.scale}-{self.merge}"
        return guideline_model(cfg.table, kwargs, cfg.input_shape(), name)

    def _count(self, cfg: Any) -> dict[str, Any]:
        from lwprof.counting.engine import profile_module

        model = self._model(cfg)
        profile = profile_module(model.module, model.input_shape, name=cfg.key)
        totals = profile.totals
        return {"model": model, "shape": model.input_shape, "totals": totals, "convs": sum(1 for layer in profile.layers if layer.macs)}

    def _measure(self, cfg: Any, backend_name: str, analytic: dict[str, Any]) -> dict[str, Any] | None:
        from lwprof.runtime.backends import BackendSkipped, get_backend
        from lwprof.runtime.worker import MeasureRequest, WorkerFailed, run_in_worker

        backend = get_backend(backend_name)
        reason = backend.unavailable_reason(self.device)
        base = {
            "key": settings_key(cfg, backend_name, self.settings, self.merge),
            "table": cfg.table,
            "row": cfg.row,
            "config": cfg.config,
            "scale": cfg.scale,
            "widths": cfg.widths,
            "input_shape": list(analytic["shape"]),
            "backend": backend_name,
            "precision": self.settings.precision,
            "device": self.device,
            "threads": self.threads,
            "allocator": self.allocator,
            "paper_throughput": cfg.paper_throughput,
            **{k: analytic["totals"][k] for k in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused")},
        }
        if reason is not None:
            self.skips[backend_name] = reason
            return None
        model = analytic["model"]
        try:
            staged = backend.stage(model, model.input_shape, self.settings)
            request = MeasureRequest(backend=backend_name, model=staged.model, settings=self.settings,
                                     allocator=self.allocator, want_outputs=False, label=model.name)
            reply = run_in_worker(request)
        except (BackendSkipped, WorkerFailed) as exc:
            self.skips[backend_name] = str(exc)
            return {**base, "skipped": str(exc)}
        if reply.skipped:
            self.skips[backend_name] = reply.skipped
            return {**base, "skipped": reply.skipped}
        if reply.interrupted:
            self.partial = True
            return None  # an interrupted configuration is measured again on resume
        measurement = Measurement(label=model.name, samples_s=tuple(reply.samples_s), metadata=base)
        stats = measurement.stats
        return {
            **base,
            "skipped": None,
            "stats": stats.as_dict(),
            # GPU config: batches/s (one batch per run); ARM config: images/s at batch 1. Both are runs/s.
            "throughput_per_s": 1.0 / stats.median if stats.median else None,
            "minor_page_faults_per_pass": reply.minor_page_faults_per_pass,
            "samples_s": list(samples) if (samples := reply.samples_s) else [],
            "warnings": measurement.warnings(),
        }

    @property
    def allocator(self) -> str:
        return variants(self.settings.allocator)[0]

    # -- results ---------------------------------------------------------------

# ---------------------------------------------------------------------------
# The command


def guideline_budget(quick: bool, min_time: float | None, max_time: float | None) -> Budget:
    return budget_from_options(QUICK_BUDGET if quick else FULL_BUDGET, min_time_s=min_time, max_time_s=max_time)


def run_guidelines(
    *,
    tables: str | None,
    settings: RunSettings,
    backends: str | None,
    config: str | None,
    scales: str | None,
    quick: bool,
    out: Path | None,
    merge: str,
    fmt: Any,
    plots: bool,
) -> int:
    from lwprof.models.guidelines import SCALES, table_numbers

    chosen = start(settings, backends)
    precision_targets(chosen, settings.precision, explicit=True)  # every backend must run the precision
    if settings.allocator not in ("default", "tuned"):
        raise LwprofError(f"--allocator {settings.allocator}: guidelines time each network once, with the default or the tuned allocator")
    selected_tables = parse_int_list(tables, "--tables", tuple(table_numbers()))
    selected_scales = (1,) if quick and scales is None else parse_int_list(scales, "--scales", SCALES)
    hardware = config or ("gpu" if settings.device == "cuda" else "arm")
    run = GuidelinesRun(
        tables=list(selected_tables),
        settings=settings,
        backends=chosen,
        config=hardware,
        scales=selected_scales,
        out=out or Path("reports") / f"guidelines-{settings.device}",
        merge=merge,
    )
    from lwprof.models.guidelines import ASSUMPTIONS

    for assumption in ASSUMPTIONS:
        output.info(f"assumption: {assumption}")
    started = time.perf_counter()
    run.run()
    if run.resumed:
        output.info(f"resumed: {run.resumed} measurements reused from {run.results_path}")
    for backend, reason in run.skips.items():
        output.warn(f"{backend}: skipped ({reason})")
    write_files(run)
    if plots:
        plot(run)
    print_tables(run, fmt)
    output.info(f"wrote {run.out} in {time.perf_counter() - started:.0f} s" + (" (partial: interrupted, run again to resume)" if run.partial else ""))
    return EXIT_INTERRUPTED if run.partial else 0


