"""All command output goes through here: results to stdout, diagnostics to stderr.

A result is a list of flat records plus column specs. ``table`` renders it with
rich (human display, scaled units); ``csv`` and ``json`` write the raw values
at full precision with no decoration, so they pipe cleanly.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.table import Table

from lwprof.reports.files import csv_text

# Piped tables are not cut to the 80 columns rich assumes off a terminal.
_PIPE_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
stdout = Console(soft_wrap=False, width=_PIPE_WIDTH)
# Diagnostics stay one line each, whatever the terminal width.
stderr = Console(stderr=True, soft_wrap=True)


class OutputFormat(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


@dataclass(frozen=True)
class Column:
    """``key`` names the field (and the CSV/JSON header, with its unit);
    ``title`` and ``display`` are for the human table only."""

    key: str
    title: str
    display: Callable[[Any], str] = str
    justify: str = "left"
    no_wrap: bool = False


def info(message: str) -> None:
    stderr.print(message, style="dim", highlight=False)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def error(message: str) -> None:
    stderr.print(f"[bold red]error:[/bold red] {message}", highlight=False)


def emit(
    records: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    json_records: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Write ``records`` to stdout in ``fmt``. JSON may carry richer records."""
    if fmt is OutputFormat.json:
        payload = list(json_records if json_records is not None else records)
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif fmt is OutputFormat.csv:
        sys.stdout.write(csv_text(records, [c.key for c in columns]))
    else:
        if not records:
            return
        cells = [[column.display(record.get(column.key)) for column in columns] for record in records]
        # A column empty in every row (no fp32 baseline, nothing skipped) only narrows the others
        shown = [index for index in range(len(columns)) if any(row[index] != "" for row in cells)]
        table = Table(title=title, header_style="bold")
        for index in shown:
            column = columns[index]
            table.add_column(column.title, justify=column.justify, no_wrap=column.no_wrap, overflow="fold")
        for row in cells:
            table.add_row(*(row[index] for index in shown))
        stdout.print(table)


def cell(value: Any, scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    """A number for a table cell: divided by ``scale``, ``digits`` decimals."""
    if value is None or value == "":
        return ""
    return f"{float(value) / scale:.{digits}f}{suffix}"


def milliseconds(value: Any) -> str:
    """Seconds shown as milliseconds, 3 decimals ('' for unknown)."""
    return "" if value is None else f"{value * 1e3:.3f}"


def percent(value: Any) -> str:
    """A fraction shown as a percentage, 1 decimal ('' for unknown)."""
    return "" if value is None else f"{value:.1%}"
