"""Rows of ``lwprof zoo``: the registry's metadata, flattened for display and export."""

from __future__ import annotations

import dataclasses
from typing import Any

from lwprof.core.units import format_count
from lwprof.reports.console import Column


def matching_models(pattern: str) -> list[str]:
    """Names for a zoo pattern: a shell glob, or plain text matching names
    that contain it; an alias always matches its target.

    A glob that matches nothing is an empty result; plain text that matches
    nothing is taken as a mistyped name and raises UnknownModelError with
    suggestions."""
    from lwprof.models import list_aliases, list_models, resolve_name

    pattern = pattern.strip().lower()
    if any(ch in pattern for ch in "*?["):
        return list_models(pattern)
    names = set(list_models(f"*{pattern}*"))
    aliases = list_aliases()
    if pattern in aliases:
        names.add(aliases[pattern])
    if not names:
        resolve_name(pattern)
    return sorted(names)


def zoo_records(pattern: str = "*") -> list[dict[str, Any]]:
    from lwprof.models import get_model_info, list_aliases

    aliases_of: dict[str, list[str]] = {}
    for alias, target in sorted(list_aliases().items()):
        aliases_of.setdefault(target, []).append(alias)

    records = []
    for name in matching_models(pattern):
        info = get_model_info(name)
        params = info.count_params()
        reference = info.reference or None
        shape = "x".join(str(d) for d in info.input_shape[1:])
        table_row = {
            "name": name,
            "family": info.family,
            "params": params,
            "reference_macs": reference.macs if reference else None,
            "published_macs": info.published.macs,
            "published_top1_percent": info.published.top1,
            "published_top1_dataset": info.published.top1_dataset if info.published.top1 is not None else None,
            "input_shape": shape,
            "paper_year": info.paper.year,
            "paper_arxiv": info.paper.arxiv,
            "paper_title": info.paper.title,
        }
        json_row = {
            "name": name,
            "family": info.family,
            "variant": info.variant,
            "aliases": aliases_of.get(name, []),
            "params": params,
            "input_shape": list(info.input_shape),
            "output_shape": list(info.output_shape),
            "reference": dataclasses.asdict(reference) if reference else None,
            "approximate": dataclasses.asdict(info.approximate) if info.approximate else None,
            "published": dataclasses.asdict(info.published),
            "paper": {**dataclasses.asdict(info.paper), "url": info.paper.url},
            "mirrors": info.mirrors,
            "notes": info.notes,
        }
        records.append({"table": table_row, "json": json_row})
    return records


def _top1(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _dataset(value: Any) -> str:
    return "-" if value is None else value


def zoo_columns() -> list[Column]:
    return [
        Column("name", "model", no_wrap=True),
        Column("family", "family", no_wrap=True),
        Column("params", "params", format_count, "right"),
        Column("reference_macs", "ref. MACs", format_count, "right"),
        Column("published_macs", "paper MACs", format_count, "right"),
        Column("published_top1_percent", "paper top-1", _top1, "right"),
        Column("published_top1_dataset", "on", _dataset, no_wrap=True),
        Column("input_shape", "input", no_wrap=True),
        Column("paper_arxiv", "arXiv", no_wrap=True),
    ]
