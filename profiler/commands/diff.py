"""``lwprof diff RUN_A RUN_B``: two saved runs side by side, measuring nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lwprof.reports import console as output
from lwprof.reports.console import Column, OutputFormat, milliseconds
from lwprof.reports.files import json_text


def _ratio(value: Any) -> str:
    return "" if value is None else f"{value:.2f}x"


def run_diff(a: Path, b: Path, *, top: int, fmt: OutputFormat, out: Path | None) -> None:
    from lwprof.reports.diff import diff_runs, plot_diff

    result = diff_runs(a, b)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "diff.json").write_text(json_text(result))
        output.info(f"wrote {out / 'diff.json'}, {plot_diff(result, out / 'diff.png')}")
    if fmt is OutputFormat.json:
        sys.stdout.write(json_text(result))
        return
    rows = result["layers"] if result["kind"] == "profile" else result["models"]
    name = "layer" if result["kind"] == "profile" else "model"
    if fmt is OutputFormat.csv:
        output.emit(rows, [Column(key, key) for key in rows[0]] if rows else [], fmt)
        return
    output.stdout.print(f"A: {a}" + (f" ({result['model_a']})" if result["kind"] == "profile" else ""), highlight=False)
    output.stdout.print(f"B: {b}" + (f" ({result['model_b']})" if result["kind"] == "profile" else ""), highlight=False)
    if result["kind"] == "profile":
        shown = [{**row, "ci95": None if row["ci95_low"] is None else f"{row['ci95_low']:.2f}x-{row['ci95_high']:.2f}x"}
                 for row in result["end_to_end"]]
        output.emit(shown, [
            Column("backend", "backend"), Column("a_median_s", "A ms", milliseconds, "right"),
            Column("b_median_s", "B ms", milliseconds, "right"), Column("ratio", "B / A", _ratio, "right"),
            Column("ci95", "95% CI of B / A", lambda v: v or "no raw samples", "right"),
        ], OutputFormat.table, title="end to end (medians)")
    else:
        output.emit(result["summary"], [
            Column("backend", "backend"), Column("models", "models", str, "right"),
            Column("median_ratio", "median B / A", _ratio, "right"),
            Column("within_10", "within ±10%", lambda v: f"{v:.0%}", "right"),
            Column("min_ratio", "min", _ratio, "right"), Column("max_ratio", "max", _ratio, "right"),
        ], OutputFormat.table, title="per model, end to end (medians)")
    for key in result["backends"]:
        moved = sorted((r for r in rows if r.get(f"{key}_a_s") or r.get(f"{key}_b_s")),
                       key=lambda r: -abs((r.get(f"{key}_b_s") or 0.0) - (r.get(f"{key}_a_s") or 0.0)))[:top]
        output.emit(moved, [
            Column(name, name), Column(f"{key}_a_s", "A ms", milliseconds, "right"),
            Column(f"{key}_b_s", "B ms", milliseconds, "right"),
            Column(f"{key}_ratio", "B / A", _ratio, "right"),
            Column("counts_changed", "counts changed", lambda v: "yes" if v else "no (time only)"),
        ], OutputFormat.table, title=f"{key}: the {len(moved)} {name}s whose time moved most")
    for side in ("a", "b"):
        if result[f"only_in_{side}"]:
            output.info(f"only in {side.upper()}: " + ", ".join(result[f"only_in_{side}"]))
