"""Shaping a ModelProfile for display and export: depth roll-up, sorting, columns, files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lwprof.core.records import ModelProfile
from lwprof.core.units import format_bytes, format_count
from lwprof.reports.console import Column
from lwprof.reports.files import csv_text

SUM_KEYS = ("calls", "params", "macs", "flops", "memory_bytes", "memory_bytes_fused")
SORT_KEYS = ("order", "params", "macs", "flops", "memory_bytes", "memory_bytes_fused", "arithmetic_intensity")


def _intensity(flops: int, memory_bytes: int) -> float | None:
    return flops / memory_bytes if memory_bytes else None


def rolled_up_rows(profile: ModelProfile, depth: int | None) -> list[dict[str, Any]]:
    """Per-layer rows, or with ``depth`` the sums per module-path prefix of that
    many components (rows are exclusive, so the sums never double count)."""
    rows = profile.layer_rows()
    if depth is None:
        return rows
    groups: dict[str, dict[str, Any]] = {}
    for row, layer in zip(rows, profile.layers):
        parts = layer.module_path.split(".") if layer.module_path else []
        key = ".".join(parts[:depth]) if parts else "<root>"
        if len(parts) < depth and row["layer"] != (layer.module_path or "<root>"):
            key = row["layer"]  # shallower than the cut: a container's functional op stays its own row
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"layer": key, "module_type": "", "op_class": "", "layers": 0, **{k: 0 for k in SUM_KEYS}}
            group["input_shape"] = row["input_shape"]
            group["_classes"] = {}
        group["layers"] += 1
        for k in SUM_KEYS:
            group[k] += row[k]
        group["output_shape"] = row["output_shape"]
        group["_classes"][row["op_class"]] = group["_classes"].get(row["op_class"], 0) + row["flops"] + 1
        if key == row["layer"]:
            group["module_type"] = row["module_type"]
    result = []
    for group in groups.values():
        classes = group.pop("_classes")
        group["op_class"] = max(classes, key=classes.get) if len(classes) == 1 else "mixed"
        group["arithmetic_intensity_flops_per_byte"] = _intensity(group["flops"], group["memory_bytes"])
        result.append(group)
    return result


def sort_rows(rows: list[dict[str, Any]], key: str, top: int | None) -> list[dict[str, Any]]:
    if key != "order":
        column = "arithmetic_intensity_flops_per_byte" if key == "arithmetic_intensity" else key
        rows = sorted(rows, key=lambda r: (r[column] is None, -(r[column] or 0)))
    return rows[:top] if top else rows


def _float(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def layer_columns(rows: list[dict[str, Any]]) -> list[Column]:
    first = rows[0] if rows else {}
    columns = [Column("layer", "layer", no_wrap=True), Column("module_type", "type")]
    columns.append(Column("op_class", "class"))
    if "layers" in first:
        columns.append(Column("layers", "rows", str, "right"))
    columns += [
        Column("params", "params", format_count, "right"),
        Column("macs", "MACs", format_count, "right"),
        Column("flops", "FLOPs", format_count, "right"),
        Column("memory_bytes", "memory (eager)", format_bytes, "right"),
        Column("memory_bytes_fused", "memory (fused)", format_bytes, "right"),
        Column("arithmetic_intensity_flops_per_byte", "FLOP/B", _float, "right"),
        Column("output_shape", "output", no_wrap=True),
    ]
    return columns


def csv_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """Every field, in row order: the CSV carries everything at full precision."""
    return [Column(key, key) for key in (rows[0].keys() if rows else [])]


def totals_rows(profile: ModelProfile) -> list[dict[str, Any]]:
    totals = profile.totals
    return [
        {"quantity": "params", "value": format_count(totals["params"])},
        {"quantity": "MACs (multiply-accumulates)", "value": format_count(totals["macs"])},
        {"quantity": "FLOPs", "value": format_count(totals["flops"])},
        {"quantity": "memory access, eager", "value": format_bytes(totals["memory_bytes"])},
        {"quantity": "memory access, fused", "value": format_bytes(totals["memory_bytes_fused"])},
        {"quantity": "arithmetic intensity, eager (FLOP/byte)", "value": _float(totals["arithmetic_intensity"])},
        {"quantity": "arithmetic intensity, fused (FLOP/byte)", "value": _float(totals["arithmetic_intensity_fused"])},
    ]


def write_run_files(profile: ModelProfile, out_dir: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """``layers.csv`` (every row, full precision) and ``profile.json`` (totals,
    unsupported ops, rows). Deterministic: two runs give identical bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = profile.layer_rows()
    layers_csv = out_dir / "layers.csv"
    layers_csv.write_text(csv_text(rows))
    profile_json = out_dir / "profile.json"
    payload = profile.to_dict()
    if extra:
        payload.update(extra)
    profile_json.write_text(json.dumps(payload, indent=2) + "\n")
    return [layers_csv, profile_json]
