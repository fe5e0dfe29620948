"""ShuffleNet V2's guidelines on this machine: verdicts, tables, files and plots.

Verdicts: each guideline predicts one row faster than another (G1: 1:1 vs
1:12, G2: g=1 vs g=8, G3: 1-fragment vs 4-fragment-parallel, G4: no ReLU and
no shortcut vs both). At each scale the prediction "holds" when the 95%
confidence intervals of the two medians do not overlap in the predicted
direction, "does not hold" when they do not overlap the other way, and is
"inconclusive" when they overlap. Over the scales, a guideline holds on a
backend when at least one scale holds and none contradicts it, does not hold
when at least one contradicts and none holds, and is inconclusive otherwise.

The functions take the run (its records, tables, scales and settings) and
read nothing else, so the files can be re-written from ``results.jsonl``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwprof.core.stats import Stats
from lwprof.reports.files import csv_text

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

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
# Tables and files


def settings_key(config: Any, backend: str, settings: Any, merge: str) -> str:
    """What a measurement of one configuration is keyed on in results.jsonl (so a resume never mixes settings)."""
    key = f"{config.key}|{backend}|{settings.device}|threads{settings.threads}|merge-{merge}|allocator-{settings.allocator}"
    if settings.precision != "fp32":  # fp32 keys stay what they were, so earlier results still resume
        key += f"|{settings.precision}" + (f"-{settings.int8.digest()}" if settings.precision == "int8" else "")
    return key


TABLE_CSV_KEYS = [
    "table", "row", "config", "scale", "backend", "precision", "device", "threads", "input_shape", "macs", "flops", "memory_bytes",
    "memory_bytes_fused", "flops_vs_first_row", "memory_vs_first_row", "paper_throughput", "paper_normalized",
    "throughput_per_s", "measured_normalized", "allocator", "minor_page_faults_per_pass",
]


def table_rows(run: Any, table: int) -> list[dict[str, Any]]:
    from lwprof.models.guidelines import configs

    rows = []
    for cfg in configs(table, run.config, run.scales):
        for backend in run.backends:
            record = run.records.get(settings_key(cfg, backend, run.settings, run.merge))
            if record is None or record.get("skipped"):
                continue
            rows.append(dict(record))
    # normalise to the table's first row at the same scale and backend
    first_row = configs(table, run.config, (run.scales[0],))[0].row
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


def verdicts(run: Any, table: int) -> list[dict[str, Any]]:
    from lwprof.models.guidelines import get_table

    spec = get_table(table)
    faster_row, slower_row = spec.prediction
    rows = table_rows(run, table)
    result = []
    for backend in run.backends:
        comparisons = []
        for scale in run.scales:
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
                "device": run.device,
                "verdict": overall([c.verdict for c in comparisons]),
                "evidence": "; ".join(c.describe() for c in comparisons),
                "comparisons": [c.__dict__ | {"speedup": c.speedup, "allocator_decides": c.allocator_decides} for c in comparisons],
            }
        )
    return result


def write_files(run: Any) -> list[Path]:
    """``table<N>.csv`` per table and ``guidelines.json`` (verdicts, assumptions, settings, environment)."""
    from lwprof.models.guidelines import ASSUMPTIONS

    written = []
    for table in run.tables:
        rows = table_rows(run, table)
        path = run.out / f"table{table}.csv"
        path.write_text(csv_text([{**r, "input_shape": "x".join(map(str, r["input_shape"]))} for r in rows], TABLE_CSV_KEYS))
        written.append(path)
    payload = {
        "tables": run.tables,
        "device": run.device,
        "backends": run.backends,
        "config": run.config,
        "scales": list(run.scales),
        "threads": run.threads,
        "settings": run.settings.to_dict(),
        "merge": run.merge,
        "budget": {"min_time_s": run.budget.min_time_s, "max_time_s": run.budget.max_time_s, "warmup": run.budget.warmup},
        "assumptions": list(ASSUMPTIONS),
        "partial": run.partial,
        "skipped_backends": run.skips,
        "verdicts": [v for table in run.tables for v in verdicts(run, table)],
        "results": [
            {k: v for k, v in r.items() if k != "samples_s"} for table in run.tables for r in table_rows(run, table)
        ],
        "environment": run.environment,
    }
    path = run.out / "guidelines.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    written.append(path)
    return written


def plot(run: Any) -> list[Path]:
    """One plot per table: measured against the paper, both normalised to the first row."""
    from lwprof.reports.plots import plot_guideline_table

    written = []
    for table in run.tables:
        rows = table_rows(run, table)
        if rows:
            written += plot_guideline_table(table, rows, run.out / f"table{table}", run.config, run.device)
    return written


def _stats(record: dict[str, Any]) -> Stats:
    return Stats.of(record["samples_s"])


def print_tables(run: Any, fmt: Any) -> None:
    """The tables and verdicts on stdout (or the rows as CSV, the JSON as written)."""
    from lwprof.models.guidelines import THROUGHPUT_UNIT, get_table
    from lwprof.reports.console import Column, OutputFormat, emit

    if fmt is OutputFormat.json:
        sys.stdout.write((run.out / "guidelines.json").read_text())
        return
    if fmt is OutputFormat.csv:
        rows = [r for table in run.tables for r in table_rows(run, table)]
        emit(rows, [Column(k, k) for k in TABLE_CSV_KEYS], fmt)
        return
    unit = THROUGHPUT_UNIT[run.config]

    def ratio(value: Any) -> str:
        return "" if value is None else f"{value:.2f}"

    for table in run.tables:
        spec = get_table(table)
        rows = table_rows(run, table)
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
        found = verdicts(run, table)
        emit(
            found,
            [Column("guideline", "guideline"), Column("backend", "backend"), Column("verdict", "verdict"), Column("evidence", "deciding figures (median latency, 95% CI)")],
            OutputFormat.table,
        )
