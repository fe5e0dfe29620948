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

import csv
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from lwprof.reports import console as output
from lwprof.core.errors import LwprofError
from lwprof.commands.profile import csv_text
from lwprof.reports.console import Column, OutputFormat
from lwprof.runtime.settings import RunSettings

PROXIES = ("macs", "params", "memory_bytes", "memory_bytes_fused", "roofline_bound_s")
PROXY_TITLES = {
    "macs": "MACs",
    "params": "params",
    "memory_bytes": "memory access (eager)",
    "memory_bytes_fused": "memory access (fused)",
    "roofline_bound_s": "roofline bound",
}
# Op classes grouped for the "FLOPs are not latency" bars.
CLASS_GROUPS = {
    "conv": "regular conv",
    "conv_depthwise": "depthwise conv",
    "conv_pointwise": "pointwise conv",
    "matmul": "matmul / linear",
    "elementwise": "element-wise",
    "normalization": "normalization / activation",
    "activation": "normalization / activation",
    "data_movement": "data movement",
    "view": "data movement",
    "pooling": "pooling / reduction",
    "reduction": "pooling / reduction",
}
GROUP_ORDER = [
    "regular conv", "depthwise conv", "pointwise conv", "matmul / linear", "element-wise",
    "normalization / activation", "data movement", "pooling / reduction", "other",
]


# ---------------------------------------------------------------------------
# Statistics (pure)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the average of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None with fewer
    than 3 pairs or a constant side."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(pairs) < 3:
        return None
    rx, ry = ranks([a for a, _ in pairs]), ranks([b for _, b in pairs])
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry))
    var_x = sum((a - mean_x) ** 2 for a in rx)
    var_y = sum((b - mean_y) ** 2 for b in ry)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points (name, latency, accuracy) no other point beats on
    both: lower-or-equal latency and higher-or-equal accuracy, one strictly.
    In order of increasing latency."""
    front = []
    best = -math.inf
    for name, latency, accuracy in sorted(points, key=lambda p: (p[1], -p[2])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front


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


def model_row(job: Any, spec: str) -> dict[str, Any]:
    """One comparison row from a finished (or interrupted) job."""
    profile = next(iter(job.profiles.values()), None)
    row: dict[str, Any] = {"model": job.model_name, "spec": spec, "family": "", "published_top1_percent": None}
    try:
        from lwprof.models import get_model_info

        info = get_model_info(job.model_name)
        row["family"] = info.family
        row["published_top1_percent"] = info.published.top1
    except Exception:
        pass  # not a zoo model
    if profile is not None:
        totals = profile.totals
        row.update({k: totals[k] for k in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused")})
        row["arithmetic_intensity_flops_per_byte"] = totals["arithmetic_intensity"]
        row["input_shape"] = "x".join(map(str, profile.input_shape))
    for summary in job.summary():
        backend = summary["backend"]
        if summary.get("median_s") is None:
            row[f"{backend}_skipped"] = summary.get("skipped")
            continue
        for key in ("median_s", "iqr_s", "p99_s", "throughput_items_per_s", "roofline_bound_s", "roofline_efficiency", "bound_by",
                    "allocator", "minor_page_faults_per_pass", "tuned_median_s", "allocator_tax"):
            row[f"{backend}_{key}"] = summary.get(key)
        row[f"{backend}_noisy"] = summary.get("noisy")
    return row


def correlations(rows: list[dict[str, Any]], backends: Sequence[str]) -> list[dict[str, Any]]:
    result = []
    for backend in backends:
        timed = [r for r in rows if r.get(f"{backend}_median_s")]
        entry: dict[str, Any] = {"backend": backend, "models": len(timed)}
        for proxy in PROXIES:
            source = f"{backend}_{proxy}" if proxy == "roofline_bound_s" else proxy
            entry[f"rho_{proxy}"] = spearman([r.get(source) for r in timed], [r[f"{backend}_median_s"] for r in timed])
        result.append(entry)
    return result


class CompareRun:
    def __init__(self, specs: list[str], *, settings: RunSettings, backends: list[str], batch_size: int | None, out: Path):
        self.specs = specs
        self.settings = settings
        self.backends = backends
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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from lwprof.runtime.environment import capture_environment
        from lwprof.commands.profile import LatencyJob

        started = time.perf_counter()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=output.stderr, transient=True) as progress:
            task = progress.add_task("compare", total=len(self.specs))
            for index, spec in enumerate(self.specs):
                progress.update(task, description=f"model {index + 1} of {len(self.specs)}: {spec}")
                job = LatencyJob(
                    spec, settings=self.settings, backends=self.backends, batch_sizes=[self.batch_size], input_shape=None,
                    reports_dir=self.out, out=self.out / "models" / _safe(spec),
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
            "batch_size": self.batch_size,
            "threads": self.settings.threads,
            "budget": {"min_time_s": self.settings.budget.min_time_s, "max_time_s": self.settings.budget.max_time_s,
                       "layer_runs": self.settings.layer_runs},
            "settings": self.settings.to_dict(),
            "partial": self.partial,
            "failures": self.failures,
            "correlations": correlations(self.rows, self.backends),
            "wall_time_split_s": self.wall,
            "rows": self.rows,
            "environment": self.environment,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "compare.json").write_text(json.dumps(self.payload(), indent=2, default=str) + "\n")
        (self.out / "compare.csv").write_text(csv_text(self.rows))
        if self.partial:
            (self.out / "PARTIAL").write_text("Interrupted: the files hold the models measured before Ctrl-C.\n")


def _safe(spec: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in spec).strip("_") or "model"


# ---------------------------------------------------------------------------
# Rendering from saved files (shared by compare and report)


def _op_class_shares(model_dir: Path, backend: str) -> dict[str, dict[str, float]] | None:
    path = model_dir / "layers.csv"
    if not path.exists():
        return None
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows or f"{backend}_time_s" not in rows[0]:
        return None
    first_batch = rows[0]["batch_size"]
    time_by: dict[str, float] = {}
    flops_by: dict[str, float] = {}
    for row in rows:
        if row["batch_size"] != first_batch:
            continue
        # A row without a class is a runtime-only kernel (ORT's Split/Slice/
        # Flatten/ReorderOutput, free views in eager torch): data movement.
        group = CLASS_GROUPS.get(row.get("op_class") or "view", "other")
        time_by[group] = time_by.get(group, 0.0) + float(row.get(f"{backend}_time_s") or 0.0)
        flops_by[group] = flops_by.get(group, 0.0) + float(row.get("flops") or 0.0)
    total_time, total_flops = sum(time_by.values()), sum(flops_by.values())
    if not total_time:
        return None
    return {
        "time": {g: v / total_time for g, v in time_by.items()},
        "flops": {g: v / total_flops for g, v in flops_by.items()} if total_flops else {},
    }


def render(out: Path) -> list[Path]:
    """Plots and summary.md of a compare directory, from its saved files only."""
    from lwprof.reports.plots import plot_accuracy_vs_latency, plot_class_shares, plot_models_roofline, plot_proxy_scatter
    from lwprof.runtime.roofline import DevicePeaks

    payload = json.loads((out / "compare.json").read_text())
    rows, backends = payload["rows"], payload["backends"]
    correlation = {c["backend"]: c for c in payload["correlations"]}
    written: list[Path] = []
    timed_backends = [b for b in backends if any(r.get(f"{b}_median_s") for r in rows)]
    for proxy, stem in (("macs", "latency_vs_macs"), ("memory_bytes", "latency_vs_memory")):
        if timed_backends:
            written += plot_proxy_scatter(rows, timed_backends, proxy, PROXY_TITLES[proxy], correlation, out / stem, payload["device"])
    if timed_backends:
        written += plot_accuracy_vs_latency(rows, timed_backends, out / "accuracy_vs_latency", payload["device"])
    shares = {}
    for row in rows:
        for backend in timed_backends:
            found = _op_class_shares(out / "models" / _safe(row["spec"]), backend)
            if found:
                shares[(row["model"], backend)] = found
    if shares:
        written += plot_class_shares(shares, GROUP_ORDER, out / "time_vs_flops_by_class", payload["device"])
    peaks = {}
    for row in rows:
        profile_path = out / "models" / _safe(row["spec"]) / "profile.json"
        if profile_path.exists():
            for backend, data in json.loads(profile_path.read_text()).get("roofline", {}).items():
                peaks.setdefault(backend, DevicePeaks.from_dict(data))
    if peaks and timed_backends:
        written += plot_models_roofline(rows, timed_backends, peaks, out / "roofline_models", payload["device"])
    summary = out / "summary.md"
    summary.write_text(summary_markdown(payload, [p for p in written if p.suffix == ".png"]))
    return written + [summary]


def _fmt(value: Any, scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    if value is None or value == "":
        return ""
    return f"{float(value) / scale:.{digits}f}{suffix}"


def summary_markdown(payload: dict[str, Any], plots: list[Path]) -> str:
    backends = payload["backends"]
    env = payload.get("environment") or {}
    lines = [
        f"# lwprof compare on {payload['device']}",
        "",
        f"{len(payload['rows'])} models, threads {payload['threads']}, batch {payload['batch_size'] or 'model default'}"
        + (" — **partial (interrupted)**" if payload.get("partial") else "")
        + f". CPU: {env.get('cpu_model', '?')}; torch {env.get('versions', {}).get('torch', '?')}, "
        f"onnxruntime {env.get('versions', {}).get('onnxruntime', '?')}; {env.get('date_utc', '')}.",
        "",
        "| model | params M | MACs M | memory eager MB | memory fused MB | FLOP/byte | "
        + " | ".join(f"{b} ms (IQR) | {b} roofline eff. | {b} page faults per pass (tuned-allocator ms)" for b in backends)
        + " | top-1 % (published) |",
        "|---|---|---|---|---|---|" + "---|---|---|" * len(backends) + "---|",
    ]
    for r in payload["rows"]:
        cells = [
            r["model"], _fmt(r.get("params"), 1e6), _fmt(r.get("macs"), 1e6, 1), _fmt(r.get("memory_bytes"), 1e6, 1),
            _fmt(r.get("memory_bytes_fused"), 1e6, 1), _fmt(r.get("arithmetic_intensity_flops_per_byte")),
        ]
        for b in backends:
            if r.get(f"{b}_median_s"):
                cells.append(f"{float(r[f'{b}_median_s']) * 1e3:.2f} ({float(r[f'{b}_iqr_s']) * 1e3:.2f})")
                cells.append(_fmt(r.get(f"{b}_roofline_efficiency"), 0.01, 1, "%"))
                tuned = r.get(f"{b}_tuned_median_s")
                cells.append(_fmt(r.get(f"{b}_minor_page_faults_per_pass"), 1, 0) + (f" ({float(tuned) * 1e3:.2f})" if tuned else ""))
            else:
                cells += ["skipped", "", ""]
        cells.append(_fmt(r.get("published_top1_percent"), 1, 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Spearman rank correlation of measured latency with each proxy (1: ranks the models exactly as latency does):", ""]
    lines.append("| backend | models | " + " | ".join(PROXY_TITLES[p] for p in PROXIES) + " |")
    lines.append("|---|---|" + "---|" * len(PROXIES))
    for c in payload["correlations"]:
        lines.append(f"| {c['backend']} | {c['models']} | " + " | ".join(_fmt(c[f'rho_{p}'], 1, 3) for p in PROXIES) + " |")
    wall = payload.get("wall_time_split_s") or {}
    if wall:
        lines += ["", "Wall time: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in wall.items())]
    for plot in plots:
        lines += ["", f"![{plot.stem}]({plot.name})"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Commands


def run_compare(*, models: list[str], all_models: bool, family: str | None, settings: RunSettings, backends: str | None,
                batch_size: int | None, sort: str, fmt: OutputFormat, out: Path | None, plots: bool) -> int:
    from lwprof.runtime.backends import check_device
    from lwprof.commands.profile import parse_backends

    check_device(settings.device)
    specs = select_models(models, all_models, family)
    target = out or Path("reports") / f"compare-{settings.device}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if target.exists() and any(target.iterdir()):
        raise LwprofError(f"--out {target} already exists and is not empty: a comparison is never overwritten")
    run = CompareRun(specs, settings=settings, backends=parse_backends(backends), batch_size=batch_size, out=target)
    try:
        run.run()
    except KeyboardInterrupt:
        run.partial = True
        run.write()
    if plots and run.rows:
        render(target)
    print_compare(run.payload(), fmt, sort)
    output.info(f"wrote {target}" + (" (partial: interrupted)" if run.partial else ""))
    if not run.rows and not run.partial:
        raise LwprofError("no model could be measured: " + "; ".join(f"{k}: {v}" for k, v in run.failures.items()))
    return 130 if run.partial else 0


def print_compare(payload: dict[str, Any], fmt: OutputFormat, sort: str) -> None:
    rows = list(payload["rows"])
    backends = payload["backends"]
    if sort != "order":
        key = sort if sort in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused") else f"{backends[0]}_median_s"
        if sort.endswith("_median_s") or sort in backends:
            key = f"{sort.removesuffix('_median_s')}_median_s"
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key) or 0))
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps({**payload, "rows": rows}, indent=2, default=str) + "\n")
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
        ]
        if any(r.get(f"{b}_tuned_median_s") for r in rows):
            columns.append(Column(f"{b}_tuned_median_s", "tuned ms", ms, "right"))
    columns.append(Column("published_top1_percent", "top-1 %", lambda v: _fmt(v, 1, 1), "right"))
    output.emit(rows, columns, OutputFormat.table, title=f"compare on {payload['device']} ({payload['threads']} threads)")
    correlation_columns = [Column("backend", "Spearman ρ of latency with"), Column("models", "models", str, "right")]
    correlation_columns += [Column(f"rho_{p}", PROXY_TITLES[p], lambda v: _fmt(v, 1, 3), "right") for p in PROXIES]
    output.emit(payload["correlations"], correlation_columns, OutputFormat.table)


def run_report(run_dir: Path, fmt: OutputFormat) -> None:
    """Re-render a compare directory or a profile run directory from its files."""
    if not run_dir.is_dir():
        raise LwprofError(f"{run_dir} is not a directory")
    if (run_dir / "compare.json").exists():
        written = render(run_dir)
        payload = json.loads((run_dir / "compare.json").read_text())
        print_compare(payload, fmt, "order")
    elif (run_dir / "profile.json").exists() and (run_dir / "layers.csv").exists():
        written = render_profile_run(run_dir)
    else:
        raise LwprofError(f"{run_dir} holds neither compare.json nor profile.json + layers.csv: not an lwprof run directory")
    output.info("wrote " + ", ".join(str(p) for p in written))


def render_profile_run(run_dir: Path) -> list[Path]:
    from lwprof.reports.plots import plot_roofline, plot_time_vs_flop_share
    from lwprof.runtime.roofline import DevicePeaks

    payload = json.loads((run_dir / "profile.json").read_text())
    with (run_dir / "layers.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise LwprofError(f"{run_dir / 'layers.csv'} has no rows")
    first = rows[0]["batch_size"]
    rows = [r for r in rows if r["batch_size"] == first]
    backends = [b for b in payload["backends"] if f"{b}_time_s" in rows[0]]

    def number(value: str) -> float | None:
        return float(value) if value not in ("", None) else None

    written: list[Path] = []
    title = f"{payload['model']} on {payload['device']} (batch {first})"
    if backends:
        share_rows = [
            {"layer": r["layer"], "flops": number(r.get("flops")) or 0, "memory_bytes": number(r.get("memory_bytes")) or 0,
             "time_s": {b: number(r.get(f"{b}_time_s")) for b in backends}}
            for r in rows
        ]
        written += plot_time_vs_flop_share(share_rows, run_dir / "time_share", title)
        peaks = {b: DevicePeaks.from_dict(d) for b, d in payload.get("roofline", {}).items() if b in backends}
        points = [
            {"layer": r["layer"], "intensity": number(r.get(f"{b}_intensity_flops_per_byte")),
             "achieved_flops_per_s": number(r.get(f"{b}_achieved_flops_per_s")), "backend": b, "op_class": r.get("op_class") or ""}
            for b in backends for r in rows
            if number(r.get(f"{b}_achieved_flops_per_s")) and number(r.get(f"{b}_intensity_flops_per_byte"))
        ]
        if points and peaks:
            written += plot_roofline(points, peaks, run_dir / "roofline", f"{title}: layers on the roofline")
    lines = [f"# {payload['model']} on {payload['device']}", "", "| backend | batch | median ms | IQR ms | p99 ms | runs | roofline eff. |", "|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        if r.get("median_s"):
            lines.append(f"| {r['backend']} | {r['batch_size']} | {r['median_s'] * 1e3:.3f} | {r['iqr_s'] * 1e3:.3f} | {r['p99_s'] * 1e3:.3f} | {r['n']} | {_fmt(r.get('roofline_efficiency'), 0.01, 1, '%')} |")
        else:
            lines.append(f"| {r['backend']} | {r['batch_size']} | skipped: {r.get('skipped')} | | | | |")
    lines += [f"\n![{p.stem}]({p.name})" for p in written if p.suffix == ".png"]
    summary = run_dir / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return written + [summary]
