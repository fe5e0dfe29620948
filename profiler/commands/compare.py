"""``lwprof compare``: which network is really fastest here, and which proxy to trust.

Each model runs the main job (:class:`lwprof.commands.profile.LatencyJob`,
analytic counts + latency per backend + per-layer times) into
``<out>/models/<model>/``; the comparison table, the Spearman rank
correlations of measured latency with each proxy (MACs, params, memory access
eager and fused, roofline bound), per backend, and the plots are rewritten
after every model, so Ctrl-C keeps what was measured.

``lwprof report RUN_DIR`` re-renders the plots and ``summary.md`` of a compare
directory or of a single ``lwprof profile`` run from its saved files, without
measuring anything.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from lwprof.commands.common import EXIT_INTERRUPTED, claim_out_dir, precision_targets, start
from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.compare_report import PROXY_TITLES, correlations, model_row, render, safe_name, shown_proxies
from lwprof.reports.console import Column, OutputFormat
from lwprof.reports.console import cell as _fmt
from lwprof.reports.files import csv_text, json_text
from lwprof.runtime.precision import PRECISIONS, result_key
from lwprof.runtime.settings import RunSettings

# ---------------------------------------------------------------------------
# The comparison run


def select_models(models: Sequence[str], all_models: bool, family: str | None) -> list[str]:
    from lwprof.models import get_model_info, list_models, resolve_name

    chosen: list[str] = []
    if all_models:
        chosen += list_models()
    if family:
        names = [n for n in list_models() if get_model_info(n).family == family or n.startswith(family)]
        if not names:
            families = sorted({get_model_info(n).family for n in list_models()})
            raise LwprofError(f"no zoo family '{family}' (families: {', '.join(families)})")
        chosen += names
    for spec in models:
        try:
            chosen.append(resolve_name(spec))
        except Exception:
            chosen.append(spec)  # a file or hub spec: the loader resolves or rejects it
    if not chosen:
        raise LwprofError("name models to compare, or use --all or --family NAME")
    return list(dict.fromkeys(chosen))


class CompareRun:
    def __init__(self, specs: list[str], *, settings: RunSettings, backends: list[str], batch_size: int | None, out: Path,
                 targets: list[tuple[str, str]] | None = None, calibrations: list[Any] | None = None):
        self.specs = specs
        self.calibrations = calibrations or []
        self.settings = settings
        self.targets = targets or [(backend, settings.precision) for backend in backends]
        # Column prefixes: a backend, or backend_precision for a precision other than fp32.
        self.backends = list(dict.fromkeys(result_key(b, p) for b, p in self.targets))
        self.batch_size = batch_size
        self.out = out
        self.rows: list[dict[str, Any]] = []
        self.partial = False
        self.environment: dict[str, Any] = {}
        self.wall: dict[str, float] = {}
        self.failures: dict[str, str] = {}

    @property
    def device(self) -> str:
        return self.settings.device

    def run(self) -> None:
        from lwprof.commands.profile_job import LatencyJob
        from lwprof.reports.progress import progress as progress_bar
        from lwprof.runtime.environment import capture_environment

        started = time.perf_counter()
        with progress_bar() as progress:
            task = progress.add_task("compare", total=len(self.specs))
            for index, spec in enumerate(self.specs):
                progress.update(task, description=f"model {index + 1} of {len(self.specs)}: {spec}")
                job = LatencyJob(
                    spec, settings=self.settings, backends=list(dict.fromkeys(b for b, _ in self.targets)),
                    batch_sizes=[self.batch_size], input_shape=None, reports_dir=self.out,
                    out=self.out / "models" / safe_name(spec), precisions=self.targets, calibrations=self.calibrations,
                )
                try:
                    job.run()
                except LwprofError as exc:
                    self.failures[spec] = str(exc)
                    output.warn(f"{spec}: {exc}")
                    progress.update(task, completed=index + 1)
                    continue
                if not self.environment:
                    self.environment = job.environment
                for key, seconds in job.timings.items():
                    self.wall[key] = self.wall.get(key, 0.0) + seconds
                if job.profiles:
                    self.rows.append(model_row(job, spec))
                self.wall["total_s"] = time.perf_counter() - started
                self.write()
                progress.update(task, completed=index + 1)
                if job.partial:
                    self.partial = True
                    break
        if not self.environment:
            self.environment = capture_environment()
        self.wall["total_s"] = time.perf_counter() - started
        self.write()

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "lwprof compare",
            "models": [r["model"] for r in self.rows],
            "device": self.device,
            "backends": self.backends,
            "precisions": sorted({p for _, p in self.targets}, key=PRECISIONS.index),
            "batch_size": self.batch_size,
            "threads": self.settings.threads,
            "budget": {"min_time_s": self.settings.budget.min_time_s, "max_time_s": self.settings.budget.max_time_s,
                       "layer_runs": self.settings.layer_runs},
            "settings": self.settings.to_dict(),
            "partial": self.partial,
            "failures": self.failures,
            "calibrations": {c.result_key: c.describe() for c in self.calibrations},
            "correlations": correlations(self.rows, self.backends),
            "wall_time_split_s": self.wall,
            "rows": self.rows,
            "environment": self.environment,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "compare.json").write_text(json_text(self.payload()))
        (self.out / "compare.csv").write_text(csv_text(self.rows))
        if self.partial:
            (self.out / "PARTIAL").write_text("Interrupted: the files hold the models measured before Ctrl-C.\n")


# ---------------------------------------------------------------------------
# Commands


def run_compare(*, models: list[str], all_models: bool, family: str | None, settings: RunSettings, backends: str | None,
                batch_size: int | None, sort: str, fmt: OutputFormat, out: Path | None, plots: bool,
                precisions: str | None = None, calibrations: list[Path] | None = None) -> int:
    from lwprof.commands.profile import load_calibrations

    chosen = start(settings, backends)
    targets = precision_targets(chosen, precisions, explicit=backends is not None)
    loaded = load_calibrations(calibrations, targets)
    specs = select_models(models, all_models, family)
    target = out or Path("reports") / f"compare-{settings.device}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    claim_out_dir(target, "a comparison")
    run = CompareRun(specs, settings=settings, backends=chosen, batch_size=batch_size, out=target, targets=targets,
                     calibrations=loaded)
    try:
        run.run()
    except KeyboardInterrupt:
        run.partial = True
        run.write()
    if plots and run.rows:
        render(target)
    if run.rows:
        from lwprof.reports.html_report import write_compare_report

        write_compare_report(target)
    print_compare(run.payload(), fmt, sort)
    output.info(f"wrote {target}" + (" (partial: interrupted)" if run.partial else ""))
    if not run.rows and not run.partial:
        raise LwprofError("no model could be measured: " + "; ".join(f"{k}: {v}" for k, v in run.failures.items()))
    return EXIT_INTERRUPTED if run.partial else 0


def print_compare(payload: dict[str, Any], fmt: OutputFormat, sort: str) -> None:
    rows = list(payload["rows"])
    backends = payload["backends"]
    if sort != "order":
        key = sort if sort in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused") else f"{backends[0]}_median_s"
        if sort.endswith("_median_s") or sort in backends:
            key = f"{sort.removesuffix('_median_s')}_median_s"
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key) or 0))
    if fmt is OutputFormat.json:
        sys.stdout.write(json_text({**payload, "rows": rows}))
        return
    if fmt is OutputFormat.csv:
        sys.stdout.write(csv_text(rows))
        return

    def ms(value: Any) -> str:
        return "" if value is None else f"{value * 1e3:.2f}"

    columns = [
        Column("model", "model"),
        Column("params", "params M", lambda v: _fmt(v, 1e6), "right"),
        Column("macs", "MACs M", lambda v: _fmt(v, 1e6, 1), "right"),
        Column("memory_bytes", "mem eager MB", lambda v: _fmt(v, 1e6, 1), "right"),
        Column("memory_bytes_fused", "mem fused MB", lambda v: _fmt(v, 1e6, 1), "right"),
        Column("arithmetic_intensity_flops_per_byte", "FLOP/B", lambda v: _fmt(v), "right"),
    ]
    for b in backends:
        columns += [
            Column(f"{b}_median_s", f"{b} ms", ms, "right"),
            Column(f"{b}_iqr_s", "IQR", ms, "right"),
            Column(f"{b}_throughput_items_per_s", "items/s", lambda v: _fmt(v, 1, 1), "right"),
            Column(f"{b}_roofline_efficiency", "roof eff.", lambda v: _fmt(v, 0.01, 1, "%"), "right"),
            Column(f"{b}_minor_page_faults_per_pass", "faults/pass", lambda v: _fmt(v, 1, 0), "right"),
            # Shown only where some model has them (--calibration, a tuned figure, a precision beside fp32): emit
            # leaves out columns empty in every row
            Column(f"{b}_predicted_s", "predicted ms", ms, "right"),
            Column(f"{b}_predicted_error", "pred. error", lambda v: _fmt(v, 0.01, 1, "%"), "right"),
            Column(f"{b}_tuned_median_s", "tuned ms", ms, "right"),
            Column(f"{b}_speedup_vs_fp32", "vs fp32", lambda v: _fmt(v, 1, 2, "x"), "right"),
            Column(f"{b}_cosine_vs_fp32", "cosine", lambda v: _fmt(v, 1, 3), "right"),
        ]
    columns.append(Column("published_top1_percent", "top-1 %", lambda v: _fmt(v, 1, 1), "right"))
    output.emit(rows, columns, OutputFormat.table, title=f"compare on {payload['device']} ({payload['threads']} threads)")
    correlation_columns = [Column("backend", "Spearman ρ of latency with"), Column("models", "models", str, "right")]
    correlation_columns += [Column(f"rho_{p}", PROXY_TITLES[p], lambda v: _fmt(v, 1, 3), "right")
                            for p in shown_proxies(payload["correlations"])]
    output.emit(payload["correlations"], correlation_columns, OutputFormat.table)
