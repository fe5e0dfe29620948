"""``report.html``: a profile run or a compare folder as one file to send.

Self-contained: the plots are inline SVG, the CSS and the small script that
sorts and filters the tables are inline, nothing is fetched. It holds the
summary, the end-to-end table, a sortable and filterable per-layer table
(every model's layers for a compare folder), the plots with how to read each,
and the environment. Built from the saved files only (``profile.json`` or
``compare.json``, ``layers.csv``, the plots' ``.svg``), so ``lwprof report``
writes it again without measuring; a plot whose SVG is not on disk is left out.
The page is laid out by a Jinja2 template (``templates/report.html.j2``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lwprof.core.units import format_bytes, format_count
from lwprof.reports.compare_report import PROXY_TITLES, safe_name, shown_proxies
from lwprof.reports.console import milliseconds, percent
from lwprof.reports.files import atomic_write
from lwprof.reports.profile_run import read_layer_rows

REPORT_NAME = "report.html"
TEMPLATE = "report.html.j2"

# Each plot lwprof writes, in the order a reader wants them, with what its
# title promises and how to read it (README's "Reading the plots").
PLOT_GUIDE: dict[str, tuple[str, str]] = {
    "time_share": (
        "Where the time goes, layer by layer",
        "Per layer, its share of end-to-end time on each backend beside its share of FLOPs and of memory access "
        "(the 20 layers that take most time, the rest summed). A time bar far longer than the FLOPs bar marks a "
        "layer that costs more than its arithmetic says: depthwise convolutions, element-wise work, data movement.",
    ),
    "roofline": (
        "Layers on the roofline",
        "Achieved FLOP/s against arithmetic intensity (FLOPs per byte moved), log-log, under each backend's "
        "ceilings. Left of the dotted ridge a layer can at best reach the sloped memory roof, right of it the flat "
        "compute roof; the distance below its roof is efficiency lost to everything but arithmetic and DRAM "
        "traffic (per-call overhead, poor kernels, cache misses).",
    ),
    "latency_vs_macs": (
        "Latency against MACs",
        "One point per model, log-log, one colour per family, one panel per backend, Spearman's rho in the title. "
        "Points on a rising diagonal mean MACs rank the models as latency does; a cloud means they do not.",
    ),
    "latency_vs_memory": (
        "Latency against fused memory access",
        "As the MACs plot, with memory access as a fusing runtime moves it. Compare the two rho values: on most "
        "CPUs memory access ranks lightweight networks better than MACs.",
    ),
    "accuracy_vs_latency": (
        "Accuracy against latency",
        "Published ImageNet top-1 (from the papers, not measured) against latency measured here. The step line is "
        "this device's Pareto frontier: the models no other model beats on both. Deploy from the frontier.",
    ),
    "time_vs_flops_by_class": (
        "Time against FLOPs by op class",
        "Per model and backend, the time share of each op class (plain bars) beside its FLOP share (hatched). "
        "Where the plain bar is taller, that class costs more time than its FLOPs say: typically depthwise "
        "convolutions, element-wise work and data movement.",
    ),
    "roofline_models": (
        "Models on the roofline",
        "Each model's achieved FLOP/s against its arithmetic intensity under each backend's ceilings; the "
        "distance below the roof is what the runtime loses to everything but arithmetic and memory traffic.",
    ),
    "precision_speedup": (
        "What lower precision buys",
        "Per model, latency in fp32 over latency in the lower precision on the same backend: right of 1 is "
        "faster. Whether int8 pays depends on which layers the runtime has int8 kernels for.",
    ),
}

_SVG_PROLOGUE = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.S)


@dataclass(frozen=True)
class Column:
    """A table column: the record key, its heading, and how its numbers read
    (text, count, bytes, ms for seconds, percent for a fraction, ratio)."""

    key: str
    title: str
    kind: str = "text"
    help: str = ""

    @property
    def css(self) -> str:
        return "text" if self.kind == "text" else ""


_DISPLAY: dict[str, Callable[[float], str]] = {
    "count": format_count,
    "bytes": format_bytes,
    "ms": milliseconds,
    "percent": percent,
    "ratio": lambda v: f"{v:.2f}",
}


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str
    css: str = ""
    exact: str = ""


def cell(value: Any, kind: str) -> Cell:
    """A value as the page shows it, its sort key and its exact figure."""
    value = _clean(value)
    if value is None:
        return Cell("", "", "empty" if kind != "text" else "text empty")
    if kind == "text":
        return Cell(str(value), str(value), "text")
    number = float(value)
    exact = f"{int(number):,}" if kind in ("count", "bytes") and number.is_integer() else ""
    return Cell(_DISPLAY[kind](number), repr(number), "", exact)


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str = ""

    @property
    def cells(self) -> list[list[Cell]]:
        return [[cell(row.get(c.key), c.kind) for c in self.columns] for row in self.rows]


def _clean(value: Any) -> Any:
    """None for what a cell cannot show (empty, NaN, infinite)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------
# The per-layer table


def layer_columns(header: Sequence[str], rows: list[dict[str, Any]], with_model: bool) -> list[Column]:
    """The columns of the per-layer table, for the result keys a ``layers.csv``
    header holds (``<key>_time_s`` per backend and precision); the batch size
    only where ``rows`` hold more than one."""
    columns = [Column("model", "model")] if with_model else []
    if len({row.get("batch_size") for row in rows}) > 1:
        columns.append(Column("batch_size", "batch", "text"))
    columns += [
        Column("layer", "layer"), Column("module_type", "module"),
        Column("op_class", "op class"), Column("params", "params", "count"), Column("macs", "MACs", "count"),
        Column("flops", "FLOPs", "count"), Column("memory_bytes", "memory access", "bytes", "every op reads and writes memory"),
        Column("memory_bytes_fused", "memory, fused", "bytes", "what a runtime that fuses conv+BN+activation moves"),
        Column("arithmetic_intensity_flops_per_byte", "FLOP/byte", "ratio"),
    ]
    keys = [name.removesuffix("_time_s") for name in header if name.endswith("_time_s")]
    for key in keys:
        columns += [
            Column(f"{key}_time_s", f"{key} ms", "ms", f"{key}: median time of the layer (its fused kernel)"),
            Column(f"{key}_time_share", f"{key} share", "percent", f"{key}: share of the summed layer times"),
            Column(f"{key}_roofline_efficiency", f"{key} roofline eff.", "percent",
                   f"{key}: roofline bound over measured time"),
            Column(f"{key}_bound_by", f"{key} bound by"),
        ]
        if f"{key}_fused_into" in header:
            columns.append(Column(f"{key}_fused_into", f"{key} fused into", help=f"{key}: the kernel that runs this layer"))
        if f"{key}_predicted_s" in header:
            columns.append(Column(f"{key}_predicted_s", f"{key} predicted ms", "ms", "from the --calibration file"))
    return columns


def layer_data(columns: list[Column], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The layer table as the page's script reads it: columns, then rows as
    lists. Counts and bytes stay exact; times and fractions keep 4
    significant digits, more than the page shows (``layers.csv`` has them all),
    which halves a whole zoo's report."""
    def value(row: dict[str, Any], column: Column) -> Any:
        found = _clean(row.get(column.key))
        if found is None or column.kind == "text":
            return None if found is None else str(found)
        number = float(found)
        if column.kind in ("count", "bytes") and number.is_integer():
            return int(number)
        return float(f"{number:.4g}")

    return {"columns": [{"title": c.title, "kind": c.kind, "help": c.help} for c in columns],
            "rows": [[value(row, c) for c in columns] for row in rows]}


def _layers_section(columns: list[Column], rows: list[dict[str, Any]], note: str) -> dict[str, Any]:
    selects = []
    for key, title in (("model", "model"), ("op_class", "op class"), ("batch_size", "batch")):
        index = next((i for i, c in enumerate(columns) if c.key == key), None)
        values = sorted({str(r.get(key)) for r in rows if _clean(r.get(key)) is not None})
        if index is not None and len(values) > 1:
            selects.append({"title": title, "key": key, "column": index, "values": values})
    return {"data": layer_data(columns, rows), "selects": selects, "note": note}


# ---------------------------------------------------------------------------
# Plots, summary and environment


def plots(folder: Path) -> list[dict[str, str]]:
    """The plots of ``folder`` that have an SVG, ready to inline."""
    found = []
    for stem, (title, how_to_read) in PLOT_GUIDE.items():
        path = folder / f"{stem}.svg"
        if path.exists():
            svg = _SVG_PROLOGUE.sub("", path.read_text(encoding="utf-8"), count=1)
            found.append({"stem": stem, "title": title, "how_to_read": how_to_read, "svg": svg})
    return found


def flatten(record: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested record as (dotted name, value) lines."""
    if isinstance(record, dict):
        lines: list[tuple[str, str]] = []
        for key, value in record.items():
            lines += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    if isinstance(record, (list, tuple)):
        text = ", ".join(str(v) for v in record)
        return [(prefix, text or "none")]
    return [(prefix, "" if record is None else str(record))]


def _render(path: Path, **context: Any) -> Path:
    import jinja2

    from lwprof import __version__

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    # Compact JSON for the layer data: a whole zoo's layers are megabytes.
    environment.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":")}
    context.setdefault("extra_tables", [])
    atomic_write(path, environment.get_template(TEMPLATE).render(version=__version__, **context))
    return path


def _totals(totals: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("params", f"{format_count(totals.get('params'))} ({totals.get('params', 0):,})"),
        ("MACs", f"{format_count(totals.get('macs'))} ({totals.get('macs', 0):,})"),
        ("FLOPs", f"{format_count(totals.get('flops'))} ({totals.get('flops', 0):,})"),
        ("memory access, eager / fused", f"{format_bytes(totals.get('memory_bytes'))} / {format_bytes(totals.get('memory_bytes_fused'))}"),
    ]


# ---------------------------------------------------------------------------
# The two kinds of report


_END_TO_END = [
    Column("backend", "backend"), Column("precision", "precision"), Column("batch_size", "batch", "text"),
    Column("median_s", "median ms", "ms"), Column("iqr_s", "IQR ms", "ms"), Column("p90_s", "p90 ms", "ms"),
    Column("p99_s", "p99 ms", "ms"), Column("n", "runs", "count"),
    Column("throughput_items_per_s", "items/s", "ratio"),
    Column("roofline_bound_s", "roofline bound ms", "ms", "the least time the device's peaks allow"),
    Column("roofline_efficiency", "roofline eff.", "percent"), Column("bound_by", "bound by"),
    Column("layer_sum_vs_end_to_end", "layers / end to end", "ratio", "summed per-layer medians over the end-to-end median"),
    Column("minor_page_faults_per_pass", "page faults/pass", "ratio", "minor page faults per timed pass"),
    Column("tuned_median_s", "tuned allocator ms", "ms", "the same model with glibc's malloc tuned"),
    Column("skipped", "skipped"),
]


def write_profile_report(run_dir: Path) -> Path:
    """``report.html`` of a profile run directory, from its saved files."""
    saved = json.loads((run_dir / "profile.json").read_text())
    rows = read_layer_rows(run_dir / "layers.csv")
    header = list(rows[0]) if rows else []
    results = saved.get("results", [])
    settings = saved.get("settings", {})
    summary = [
        ("model", f"{saved['model']} (spec {saved.get('spec', saved['model'])})"),
        ("device", saved["device"]),
        ("input shape", "; ".join(f"batch {b}: {'x'.join(map(str, s))}" for b, s in saved.get("input_shapes", {}).items())),
        ("backends measured", ", ".join(saved.get("measured", saved.get("backends", [])))),
        ("threads", str(saved.get("threads"))),
        ("allocator", str(settings.get("allocator", "default"))),
        *_totals(saved.get("totals", {})),
        ("date (UTC)", str(saved.get("environment", {}).get("date_utc", ""))),
    ]
    unsupported = saved.get("unsupported_ops") or {}
    warnings = [w for r in results for w in r.get("warnings") or []]
    if unsupported:
        warnings.append("ops without a counting formula (counted, not costed): " + ", ".join(unsupported))
    if saved.get("partial"):
        warnings.insert(0, "partial run: interrupted before every measurement finished")
    end_to_end = Table("end-to-end", "End to end", _END_TO_END, results,
                       "Medians of the raw samples in latency.csv; each backend timed in a fresh worker process.")
    layers = _layers_section(layer_columns(header, rows, False), rows,
                             "One row per layer (layers.csv); a fused runtime kernel's time sits on its first layer.")
    return _render(run_dir / REPORT_NAME, title=f"{saved['model']} on {saved['device']}",
                   subtitle=f"lwprof profile, {saved.get('environment', {}).get('cpu_model', '')}",
                   summary=summary, warnings=warnings, end_to_end=end_to_end, layers=layers, plots=plots(run_dir),
                   environment=flatten({"environment": saved.get("environment", {}), "settings": settings,
                                        "wall time (s)": saved.get("wall_time_split_s", {})}))


def write_compare_report(folder: Path) -> Path:
    """``report.html`` of a compare folder: its table and every model's layers."""
    payload = json.loads((folder / "compare.json").read_text())
    backends = payload["backends"]
    columns = [Column("model", "model"), Column("family", "family"), Column("params", "params", "count"),
               Column("macs", "MACs", "count"), Column("memory_bytes_fused", "memory, fused", "bytes"),
               Column("arithmetic_intensity_flops_per_byte", "FLOP/byte", "ratio")]
    for key in backends:
        columns += [Column(f"{key}_median_s", f"{key} ms", "ms"), Column(f"{key}_iqr_s", f"{key} IQR ms", "ms"),
                    Column(f"{key}_roofline_efficiency", f"{key} roofline eff.", "percent")]
    columns.append(Column("published_top1_percent", "top-1 % (published)", "ratio"))
    end_to_end = Table("end-to-end", "End to end", columns, payload["rows"], "Medians per model and backend.")
    shown = shown_proxies(payload["correlations"])
    correlations = Table("correlations", "Which proxy predicts latency here",
                         [Column("backend", "backend"), Column("models", "models", "count")]
                         + [Column(f"rho_{p}", PROXY_TITLES[p], "ratio") for p in shown], payload["correlations"],
                         "Spearman rank correlation of measured latency with each proxy (1: ranks the models exactly "
                         "as latency does).")
    layer_rows: list[dict[str, Any]] = []
    header: list[str] = []
    for row in payload["rows"]:
        path = folder / "models" / safe_name(row["spec"]) / "layers.csv"
        if path.exists():
            found = read_layer_rows(path)
            header += [k for k in (found[0] if found else {}) if k not in header]
            layer_rows += [{"model": row["model"], **r} for r in found]
    env = payload.get("environment") or {}
    summary = [("models", str(len(payload["rows"]))), ("device", payload["device"]), ("backends", ", ".join(backends)),
               ("threads", str(payload.get("threads"))),
               ("batch", str(payload.get("batch_size") or "each model's default")),
               ("date (UTC)", str(payload.get("date_utc", env.get("date_utc", ""))))]
    warnings = [f"{model}: {reason}" for model, reason in (payload.get("failures") or {}).items()]
    if payload.get("partial"):
        warnings.insert(0, "partial comparison: interrupted before every model was measured")
    layers = _layers_section(layer_columns(header, layer_rows, True), layer_rows,
                             "Every model's layers (models/<model>/layers.csv); pick a model to see one network.")
    return _render(folder / REPORT_NAME, title=f"lwprof compare on {payload['device']}",
                   subtitle=f"{len(payload['rows'])} models, {env.get('cpu_model', '')}", summary=summary,
                   warnings=warnings, end_to_end=end_to_end, extra_tables=[correlations], layers=layers,
                   plots=plots(folder),
                   environment=flatten({"environment": env, "settings": payload.get("settings", {}),
                                        "wall time (s)": payload.get("wall_time_split_s", {})}))
