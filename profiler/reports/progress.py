"""Progress on stderr, one look for every long job (transient: gone when done)."""

from __future__ import annotations

from typing import Any


def progress(counter: str = "done") -> Any:
    """A rich ``Progress`` on stderr: description, bar, a counter and elapsed
    time. ``counter``: ``done`` (k of n) or ``runs`` (samples timed, from the
    task's ``samples`` field)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lwprof.reports.console import stderr

    count = MofNCompleteColumn() if counter == "done" else TextColumn("{task.fields[samples]} runs")
    return Progress(TextColumn("{task.description}"), BarColumn(), count, TimeElapsedColumn(), console=stderr, transient=True)
