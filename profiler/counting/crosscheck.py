"""``--crosscheck``: lwprof's totals beside thop's and PyTorch's FlopCounterMode,
with which op classes each one actually counted on this model, so a user sees
why the numbers differ.

What each counter saw is derived from its own output on this model, not from
a description: FlopCounterMode's per-op table gives the aten ops it counted,
thop's per-module ``total_ops`` buffers give the modules it counted; both are
mapped to lwprof's op classes through lwprof's own records of the same run.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import torch
from torch import nn

from lwprof.core.modules import eval_mode
from lwprof.core.records import ModelProfile


def _op_classes_by_name(profile: ModelProfile) -> dict[str, str]:
    return {rec.op: rec.op_class for rec in profile.ops}


def _flop_counter(model: nn.Module, x: torch.Tensor, profile: ModelProfile) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    classes = _op_classes_by_name(profile)
    per_class: dict[str, int] = defaultdict(int)
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        per_class[classes.get(f"aten.{op.__name__}", f"aten.{op.__name__}")] += int(flops)
    total = int(counter.get_total_flops())
    return {"macs": total // 2, "flops": total, "params": None, "flops_by_class": dict(per_class)}


def _thop(model: nn.Module, x: torch.Tensor, profile: ModelProfile) -> dict[str, Any]:
    try:
        import thop
    except ImportError:
        return {"error": "thop is not installed (pip install ultralytics-thop)"}
    # thop leaves total_ops/total_params buffers on every module: count a copy.
    counted = copy.deepcopy(model)
    with torch.no_grad():
        macs, params = thop.profile(counted, inputs=(x,), verbose=False)
    path_class = {layer.module_path: layer.op_class for layer in profile.layers if layer.name == (layer.module_path or "<root>")}
    per_class: dict[str, int] = defaultdict(int)
    for path, module in counted.named_modules():
        ops = getattr(module, "total_ops", None)
        if ops is not None and not any(True for _ in module.children()) and float(ops) > 0:
            per_class[path_class.get(path, type(module).__name__)] += int(ops)
    # thop reports multiply-accumulates as "ops"
    return {"macs": int(macs), "flops": 2 * int(macs), "params": int(params), "flops_by_class": {k: 2 * v for k, v in per_class.items()}}


def crosscheck(model: nn.Module, profile: ModelProfile) -> dict[str, Any]:
    """Totals and per-op-class FLOPs of lwprof, FlopCounterMode and thop on the same input."""
    x = torch.randn(profile.input_shape, generator=torch.Generator().manual_seed(0))
    with eval_mode(model.modules()):
        flop_counter = _flop_counter(model, x, profile)
        thop_result = _thop(model, x, profile)
    lwprof_by_class: dict[str, int] = defaultdict(int)
    for rec in profile.ops:
        lwprof_by_class[rec.op_class] += rec.flops
    totals = profile.totals
    return {
        "lwprof": {
            "macs": totals["macs"],
            "flops": totals["flops"],
            "params": totals["params"],
            "memory_bytes": totals["memory_bytes"],
            "flops_by_class": dict(lwprof_by_class),
        },
        "flop_counter_mode": flop_counter,
        "thop": thop_result,
    }


def crosscheck_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per counter: totals, and the op classes it counted (non-zero FLOPs)."""
    rows = []
    lwprof_classes = set(result["lwprof"]["flops_by_class"])
    for counter, data in result.items():
        if "error" in data:
            rows.append({"counter": counter, "macs": None, "flops": None, "params": None, "counts": data["error"], "misses": ""})
            continue
        counted = {c for c, v in data["flops_by_class"].items() if v}
        rows.append(
            {
                "counter": counter,
                "macs": data["macs"],
                "flops": data["flops"],
                "params": data["params"],
                "counts": " ".join(sorted(counted)),
                "misses": " ".join(sorted(c for c in lwprof_classes - counted if result["lwprof"]["flops_by_class"].get(c))),
            }
        )
    return rows
