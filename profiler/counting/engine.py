"""The counting engine: run one forward pass, see every aten op, attribute it.

The tracer (:mod:`lwprof.counting.tracer`) sees every op with its module; the
engine holds no per-op arithmetic: MACs and FLOPs come from the formula table
in :mod:`lwprof.counting.ops`; memory access is the bytes of the tensors an op
actually read and wrote. Rows are aggregated by :mod:`lwprof.counting.aggregate`.

No side effects on the model: the module hooks are global and removed on
exit, training flags are restored, and the model's parameters are untouched
(a different dtype is analysed on a copy).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

from lwprof.core.modules import eval_mode
from lwprof.core.records import ModelProfile
from lwprof.counting.aggregate import aggregate_layers, is_leaf_row
from lwprof.counting.fusion import apply_fusion
from lwprof.counting.tracer import ForwardError, ModuleStack, OpTracer

__all__ = ["ForwardError", "profile_module"]


def _layers(records: list, modules: ModuleStack, model: nn.Module) -> list:
    by_path = modules.by_path
    seen_params: set[int] = set()

    def module_type(rec) -> str:
        module = by_path.get(rec.module_path)
        return type(module).__name__ if module is not None else type(model).__name__

    def on_new_row(rec, layer) -> None:
        module = by_path.get(rec.module_path)
        if module is None or not is_leaf_row(rec):
            return
        layer.calls = modules.calls[id(module)]
        for p in module._parameters.values():
            if p is not None and id(p) not in seen_params:  # shared parameters count once
                seen_params.add(id(p))
                layer.params += p.numel()

    def on_record(rec, layer) -> None:
        if not is_leaf_row(rec):
            layer.calls += 1  # a container's functional op: one call per record

    return aggregate_layers(records, module_type, on_new_row, on_record)


def _prepare_input(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(input_shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def profile_module(
    model: nn.Module,
    input_shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> ModelProfile:
    """Analyse ``model`` on one random input of ``input_shape`` (eval mode, no grad)."""
    first_float = next((p for p in model.parameters() if p.is_floating_point()), None)
    if first_float is not None and first_float.dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    x = _prepare_input(model, tuple(input_shape), dtype)
    modules = ModuleStack(model)
    with eval_mode(modules.by_path.values()), torch.no_grad(), modules, OpTracer(modules) as tracer:
        model(x)
    apply_fusion(tracer.records, tracer.inputs_from)
    layers = _layers(tracer.records, modules, model)
    unsupported = Counter(rec.op for rec in tracer.records if not rec.supported)
    # Each parameter tensor once, even when modules share it.
    unique = {id(p): p for m in modules.by_path.values() for p in m._parameters.values() if p is not None}
    params = sum(p.numel() for p in unique.values())
    return ModelProfile(
        model=name or type(model).__name__,
        input_shape=tuple(input_shape),
        dtype=str(dtype).removeprefix("torch."),
        params=params,
        layers=layers,
        ops=tracer.records,
        unsupported_ops=dict(sorted(unsupported.items())),
    )
