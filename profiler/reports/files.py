"""Result files: one CSV writer, one JSON encoder, writes that are never half done.

CSV columns are the union of the rows' keys in first-seen order (or the
given ``keys``), ``None`` is an empty cell, and numbers keep full precision
(Python's ``repr`` of floats, via :mod:`csv`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence


def csv_text(rows: Iterable[dict[str, Any]], keys: Sequence[str] | None = None) -> str:
    rows = list(rows)
    if keys is None:
        keys = []
        for row in rows:
            keys += [key for key in row if key not in keys]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(key) is None else row[key] for key in keys])
    return buffer.getvalue()


def json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot encode: non-finite floats become null, sets
    and tuples lists, paths and anything else their text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def json_text(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=json_default) + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and move it into place: an interruption
    leaves the previous file or the new one, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def number(value: Any) -> float | None:
    """A CSV cell read back: a number, or None for an empty cell."""
    return float(value) if value not in ("", None) else None
