"""``lwprof guidelines``: ShuffleNet V2's G1-G4 micro-benchmarks on this machine.

For every selected table, row and scale (:mod:`lwprof.models.guidelines`), the
network is counted with lwprof's engine (FLOPs, memory access) and timed on
every selected backend with the latency harness; measured throughput is put
beside the paper's, both normalised to the table's first row.

Verdicts: each guideline predicts one row faster than another (G1: 1:1 vs
1:12, G2: g=1 vs g=8, G3: 1-fragment vs 4-fragment-parallel, G4: no ReLU and
no shortcut vs both). At each scale the prediction "holds" when the 95%
confidence intervals of the two medians do not overlap in the predicted
direction, "does not hold" when they do not overlap the other way, and is
"inconclusive" when they overlap. Over the scales, a guideline holds on a
backend when at least one scale holds and none contradicts it, does not hold
when at least one contradicts and none holds, and is inconclusive otherwise.

Results are appended to ``results.jsonl`` as each configuration finishes; a
run with ``--out`` pointing at an earlier run's folder skips what that folder
already holds (same settings), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwprof.reports import console as output
from lwprof.core.errors import LwprofError
from lwprof.runtime.allocator import variants
from lwprof.runtime.measure import Budget, Measurement, Stats
from lwprof.runtime.settings import RunSettings, budget_from_options

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

FULL_BUDGET = Budget(warmup=3, min_time_s=1.0, max_time_s=4.0)
QUICK_BUDGET = Budget(warmup=2, warmup_time_s=0.1, min_time_s=0.3, max_time_s=1.0, min_samples=5)


# ---------------------------------------------------------------------------
# Verdicts (pure functions of statistics)


@dataclass(frozen=True)
class Comparison:
    """The predicted-faster row against the predicted-slower row at one scale."""

    scale: int
    faster_row: str
    slower_row: str
    faster_median_s: float
    faster_ci: tuple[float, float]
    slower_median_s: float
    slower_ci: tuple[float, float]
    verdict: str
    faster_faults_per_pass: float | None = None
    slower_faults_per_pass: float | None = None

    @property
    def allocator_decides(self) -> bool:
        """The two rows' processes landed in different page-fault states (one
        significant, the other under a third of it): the comparison measures
        glibc's malloc as much as the networks."""
        from lwprof.runtime.allocator import significant

        a, b = self.faster_faults_per_pass, self.slower_faults_per_pass
        if a is None or b is None or not (significant(a) or significant(b)):
            return False
        return min(a, b) < max(a, b) / 3

    @property
    def speedup(self) -> float:
        """How much faster the predicted-faster row ran (1.0: equal)."""
        return self.slower_median_s / self.faster_median_s if self.faster_median_s else float("nan")

    def describe(self) -> str:
        return (
            f"x{self.scale}: {self.faster_row} {self.faster_median_s * 1e3:.3f} ms "
            f"[{self.faster_ci[0] * 1e3:.3f}, {self.faster_ci[1] * 1e3:.3f}] vs {self.slower_row} "
            f"{self.slower_median_s * 1e3:.3f} ms [{self.slower_ci[0] * 1e3:.3f}, {self.slower_ci[1] * 1e3:.3f}]"
            f" -> {self.speedup:.2f}x, {self.verdict}"
            + (
                f" (page faults per pass {self.faster_faults_per_pass:,.0f} vs {self.slower_faults_per_pass:,.0f}: "
                "the allocator decides this one; compare with --allocator tuned)"
                if self.allocator_decides
                else ""
            )
        )


def compare(
    faster: Stats,
    slower: Stats,
    scale: int,
    faster_row: str,
    slower_row: str,
    faults: tuple[float | None, float | None] = (None, None),
) -> Comparison:
    """Latency statistics of the row predicted faster and of the row predicted
    slower (and, when known, their processes' page faults per pass)."""
    if faster.ci95_high < slower.ci95_low:
        verdict = HOLDS
    elif faster.ci95_low > slower.ci95_high:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return Comparison(
        scale,
        faster_row,
        slower_row,
        faster.median,
        (faster.ci95_low, faster.ci95_high),
        slower.median,
        (slower.ci95_low, slower.ci95_high),
        verdict,
        *faults,
    )


def overall(verdicts: list[str]) -> str:
    held = HOLDS in verdicts
    failed = FAILS in verdicts
    if held and not failed:
        return HOLDS
    if failed and not held:
        return FAILS
    return INCONCLUSIVE


# ---------------------------------------------------------------------------
# The run


def _settings_key(config: Any, backend: str, settings: RunSettings, merge: str) -> str:
    return f"{config.key}|{backend}|{settings.device}|threads{settings.threads}|merge-{merge}|allocator-{settings.allocator}"


def guideline_model(table: int, kwargs: dict[str, Any], shape: tuple[int, ...], name: str) -> Any:
    """One configuration's network as a :class:`~lwprof.runtime.loader.LoadedModel`,
    seeded by its name; importable, so a worker process rebuilds it exactly."""
    import functools

    from lwprof.models.guidelines import get_table
    from lwprof.runtime.loader import LoadedModel, seeded

    with seeded(name):
        net = get_table(table).build(**kwargs)
    recipe = functools.partial(guideline_model, table, kwargs, shape, name)
    return LoadedModel(name, "torch", net, None, tuple(shape), "lwprof guidelines", recipe)


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
        import torch

        from lwprof.runtime.environment import capture_environment
        from lwprof.models.guidelines import configs

        self.out.mkdir(parents=True, exist_ok=True)
        self.load_previous()
        previous_threads = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        try:
            self.environment = capture_environment()
        finally:
            torch.set_num_threads(previous_threads)  # the timing runs in workers, with their own
        plan = [cfg for table in self.tables for cfg in configs(table, self.config, self.scales)]
        total = len(plan) * len(self.backends)
        done = 0
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=output.stderr,
                transient=True,
            ) as progress:
                task = progress.add_task("guidelines", total=total)
                for cfg in plan:
                    analytic = None
                    for backend in self.backends:
                        key = _settings_key(cfg, backend, self.settings, self.merge)
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
            "key": _settings_key(cfg, backend_name, self.settings, self.merge),
            "table": cfg.table,
            "row": cfg.row,
            "config": cfg.config,
            "scale": cfg.scale,
            "widths": cfg.widths,
            "input_shape": list(analytic["shape"]),
            "backend": backend_name,
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
            staged = backend.stage(model, model.input_shape, self.settings.cache_dir)
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

    def table_rows(self, table: int) -> list[dict[str, Any]]:
        from lwprof.models.guidelines import configs

        rows = []
        for cfg in configs(table, self.config, self.scales):
            for backend in self.backends:
                record = self.records.get(_settings_key(cfg, backend, self.settings, self.merge))
                if record is None or record.get("skipped"):
                    continue
                rows.append(dict(record))
        # normalise to the table's first row at the same scale and backend
        first_row = configs(table, self.config, (self.scales[0],))[0].row
        for row in rows:
            anchor = next(
                (r for r in rows if r["row"] == first_row and r["scale"] == row["scale"] and r["backend"] == row["backend"]),
                None,
            )
            row["measured_normalized"] = (
                row["throughput_per_s"] / anchor["throughput_per_s"] if anchor and anchor.get("throughput_per_s") else None
            )
            row["paper_normalized"] = (
                row["paper_throughput"] / anchor["paper_throughput"] if anchor and anchor.get("paper_throughput") else None
            )
            row["flops_vs_first_row"] = row["flops"] / anchor["flops"] if anchor and anchor["flops"] else None
            row["memory_vs_first_row"] = row["memory_bytes"] / anchor["memory_bytes"] if anchor and anchor["memory_bytes"] else None
        return rows

    def verdicts(self, table: int) -> list[dict[str, Any]]:
        from lwprof.models.guidelines import get_table

        spec = get_table(table)
        faster_row, slower_row = spec.prediction
        rows = self.table_rows(table)
        result = []
        for backend in self.backends:
            comparisons = []
            for scale in self.scales:
                faster = next((r for r in rows if r["backend"] == backend and r["scale"] == scale and r["row"] == faster_row), None)
                slower = next((r for r in rows if r["backend"] == backend and r["scale"] == scale and r["row"] == slower_row), None)
                if faster is None or slower is None:
                    continue
                comparisons.append(
                    compare(_stats(faster), _stats(slower), scale, faster_row, slower_row,
                            (faster.get("minor_page_faults_per_pass"), slower.get("minor_page_faults_per_pass")))
                )
            if not comparisons:
                continue
            result.append(
                {
                    "table": table,
                    "guideline": spec.guideline,
                    "claim": spec.claim,
                    "backend": backend,
                    "device": self.device,
                    "verdict": overall([c.verdict for c in comparisons]),
                    "evidence": "; ".join(c.describe() for c in comparisons),
                    "comparisons": [c.__dict__ | {"speedup": c.speedup, "allocator_decides": c.allocator_decides} for c in comparisons],
                }
            )
        return result

    def write_files(self) -> list[Path]:
        from lwprof.models.guidelines import ASSUMPTIONS

        written = []
        for table in self.tables:
            rows = self.table_rows(table)
            path = self.out / f"table{table}.csv"
            path.write_text(_csv(rows, TABLE_CSV_KEYS))
            written.append(path)
        payload = {
            "tables": self.tables,
            "device": self.device,
            "backends": self.backends,
            "config": self.config,
            "scales": list(self.scales),
            "threads": self.threads,
            "settings": self.settings.to_dict(),
            "merge": self.merge,
            "budget": {"min_time_s": self.budget.min_time_s, "max_time_s": self.budget.max_time_s, "warmup": self.budget.warmup},
            "assumptions": list(ASSUMPTIONS),
            "partial": self.partial,
            "skipped_backends": self.skips,
            "verdicts": [v for table in self.tables for v in self.verdicts(table)],
            "results": [
                {k: v for k, v in r.items() if k != "samples_s"} for table in self.tables for r in self.table_rows(table)
            ],
            "environment": self.environment,
        }
        path = self.out / "guidelines.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        written.append(path)
        return written

    def plot(self) -> list[Path]:
        from lwprof.reports.plots import plot_guideline_table

        written = []
        for table in self.tables:
            rows = self.table_rows(table)
            if rows:
                written += plot_guideline_table(table, rows, self.out / f"table{table}", self.config, self.device)
        return written


TABLE_CSV_KEYS = [
    "table", "row", "config", "scale", "backend", "device", "threads", "input_shape", "macs", "flops", "memory_bytes",
    "memory_bytes_fused", "flops_vs_first_row", "memory_vs_first_row", "paper_throughput", "paper_normalized",
    "throughput_per_s", "measured_normalized", "allocator", "minor_page_faults_per_pass",
]


def _stats(record: dict[str, Any]) -> Stats:
    return Stats.of(record["samples_s"])


def _csv(rows: list[dict[str, Any]], keys: list[str]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        values = []
        for key in keys:
            value = row.get(key)
            if key == "input_shape" and value is not None:
                value = "x".join(map(str, value))
            values.append("" if value is None else value)
        writer.writerow(values)
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# The command


def parse_int_list(text: str | None, option: str, allowed: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return allowed
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in allowed:
            raise LwprofError(f"{option} '{text}': expected a comma-separated subset of {', '.join(map(str, allowed))}")
        values.append(int(part))
    return tuple(dict.fromkeys(values))


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
    from lwprof.runtime.backends import check_device
    from lwprof.models.guidelines import SCALES, table_numbers
    from lwprof.commands.profile import parse_backends

    check_device(settings.device)
    if settings.allocator not in ("default", "tuned"):
        raise LwprofError(f"--allocator {settings.allocator}: guidelines time each network once, with the default or the tuned allocator")
    selected_tables = parse_int_list(tables, "--tables", tuple(table_numbers()))
    selected_scales = (1,) if quick and scales is None else parse_int_list(scales, "--scales", SCALES)
    hardware = config or ("gpu" if settings.device == "cuda" else "arm")
    run = GuidelinesRun(
        tables=list(selected_tables),
        settings=settings,
        backends=parse_backends(backends),
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
    run.write_files()
    if plots:
        run.plot()
    _print(run, fmt)
    output.info(f"wrote {run.out} in {time.perf_counter() - started:.0f} s" + (" (partial: interrupted, run again to resume)" if run.partial else ""))
    return 130 if run.partial else 0


def _print(run: GuidelinesRun, fmt: Any) -> None:
    from lwprof.models.guidelines import THROUGHPUT_UNIT, get_table
    from lwprof.reports.console import Column, OutputFormat, emit

    if fmt is OutputFormat.json:
        sys.stdout.write((run.out / "guidelines.json").read_text())
        return
    if fmt is OutputFormat.csv:
        rows = [r for table in run.tables for r in run.table_rows(table)]
        emit(rows, [Column(k, k) for k in TABLE_CSV_KEYS], fmt)
        return
    unit = THROUGHPUT_UNIT[run.config]

    def ratio(value: Any) -> str:
        return "" if value is None else f"{value:.2f}"

    for table in run.tables:
        spec = get_table(table)
        rows = run.table_rows(table)
        columns = [
            Column("row", "configuration"),
            Column("scale", "scale", lambda v: f"x{v}", "right"),
            Column("backend", "backend"),
            Column("flops_vs_first_row", "FLOPs vs row 1", ratio, "right"),
            Column("memory_vs_first_row", "memory vs row 1", ratio, "right"),
            Column("paper_throughput", f"paper {unit}", lambda v: "" if v is None else f"{v:g}", "right"),
            Column("throughput_per_s", f"measured {unit}", lambda v: "" if v is None else f"{v:.1f}", "right"),
            Column("paper_normalized", "paper norm.", ratio, "right"),
            Column("measured_normalized", "measured norm.", ratio, "right"),
            Column("minor_page_faults_per_pass", "faults/pass", lambda v: "" if v is None else f"{v:,.0f}", "right"),
        ]
        emit(rows, columns, OutputFormat.table, title=f"Table {table} ({spec.guideline}: {spec.claim}), {run.config} config on {run.device}")
        verdicts = run.verdicts(table)
        emit(
            verdicts,
            [Column("guideline", "guideline"), Column("backend", "backend"), Column("verdict", "verdict"), Column("evidence", "deciding figures (median latency, 95% CI)")],
            OutputFormat.table,
        )
