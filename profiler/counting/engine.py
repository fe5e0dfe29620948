"""The counting engine: run one forward pass, see every aten op, attribute it.

Ops are captured at the TorchDispatchMode level (below autograd, after
composite ops are decomposed), as PyTorch's own FlopCounterMode does, and
each op is attributed to the innermost module running when it executed. The
engine holds no per-op arithmetic: MACs and FLOPs come from the formula
table in :mod:`lwprof.counting.ops`; memory access is the bytes of the tensors an op
actually read and wrote.

No side effects on the model: the module hooks are global and removed on
exit, training flags are restored, and the model's parameters are untouched
(a different dtype is analysed on a copy).
"""

from __future__ import annotations

import copy
import weakref
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lwprof.counting import ops as op_table
from lwprof.core.errors import LwprofError
from lwprof.counting.fusion import apply_fusion
from lwprof.core.records import LayerCost, ModelProfile, OpRecord


class ForwardError(LwprofError):
    """The model's forward pass failed; names the layer, the op and the shapes."""


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


# What the tracer needs to know about an op overload, looked up once per
# overload: the dispatch hook runs for every op of every forward, so its cost
# is the engine's overhead.
_VIEW, _ALLOCATION, _COUNTED = 0, 1, 2


class _OpInfo:
    __slots__ = ("kind", "name", "short_name", "formula")

    def __init__(self, func: Any):
        if op_table.is_view_op(func):
            self.kind = _VIEW
        elif op_table.is_allocation_op(func):
            self.kind = _ALLOCATION
        else:
            self.kind = _COUNTED
        self.name = op_table.op_name(func)
        self.short_name = self.name.removeprefix("aten.")
        self.formula = op_table.formula_for(func)


_op_infos: dict[Any, _OpInfo] = {}


def _op_info(func: Any) -> _OpInfo:
    info = _op_infos.get(func)
    if info is None:
        info = _op_infos[func] = _OpInfo(func)
    return info


class _ModuleStack:
    """Names of the modules currently executing, innermost last."""

    def __init__(self, model: nn.Module):
        # One walk of the module tree serves every lookup the engine makes.
        self.by_path: dict[str, nn.Module] = {}
        self.names: dict[int, str] = {}
        self.leaf: dict[int, bool] = {}
        self.types: dict[int, str] = {}
        for name, module in model.named_modules():
            self.by_path[name] = module
            self.names[id(module)] = name
            self.leaf[id(module)] = not module._modules
            self.types[id(module)] = type(module).__name__
        self.stack: list[int] = []
        self.calls: Counter = Counter()
        self._handles: list[Any] = []

    def __enter__(self) -> "_ModuleStack":
        hooks = torch.nn.modules.module
        self._handles = [
            hooks.register_module_forward_pre_hook(self._push),
            hooks.register_module_forward_hook(self._pop, always_call=True),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _push(self, module: nn.Module, args: Any) -> None:
        if id(module) in self.names:
            self.stack.append(id(module))
            self.calls[id(module)] += 1

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.stack and self.stack[-1] == id(module):
            self.stack.pop()

    def current(self) -> int | None:
        return self.stack[-1] if self.stack else None


def _flat_tensors(values: Any, found: list[torch.Tensor]) -> None:
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            _flat_tensors(value, found)


class _OpTracer(TorchDispatchMode):
    """Records every op with its cost, and which earlier op produced each input."""

    def __init__(self, modules: _ModuleStack):
        super().__init__()
        self.modules = modules
        self.records: list[OpRecord] = []
        # id(tensor) -> (weak reference, index of the op that produced it);
        # views map to their base's producer. The weak reference tells a live
        # tensor from a freed one whose id was reused.
        self.producer: dict[int, tuple[Any, int]] = {}
        self.inputs_from: list[list[int | None]] = []
        self._layers: dict[tuple[int | None, str], tuple[str, str]] = {}

    def _producer_of(self, t: torch.Tensor) -> int | None:
        entry = self.producer.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def _layer_of(self, module_id: int | None, op: str) -> tuple[str, str]:
        key = (module_id, op)
        cached = self._layers.get(key)
        if cached is not None:
            return cached
        if module_id is None:
            layer = (f"<root> ({op})", "")
        else:
            path = self.modules.names[module_id]
            if self.modules.leaf[module_id]:
                layer = (path or "<root>", path)
            else:
                layer = (f"{path or '<root>'} ({op})", path)
        self._layers[key] = layer
        return layer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs: list[torch.Tensor] = []
        _flat_tensors(args, inputs)
        if kwargs:
            _flat_tensors(kwargs.values(), inputs)
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self._fail(func, inputs, exc)
        info = _op_infos.get(func) or _op_info(func)
        if isinstance(result, torch.Tensor):
            outputs = [result]
        else:
            outputs = []
            if isinstance(result, (tuple, list)):
                _flat_tensors(result, outputs)
        if info.kind != _COUNTED:
            if info.kind == _VIEW and inputs:
                source = self._producer_of(inputs[0])
                if source is not None:
                    for out in outputs:
                        self.producer[id(out)] = (weakref.ref(out), source)
            return result

        formula = info.formula
        if formula is not None:
            cost = formula(op_table.OpCall(tuple(args), kwargs, tuple(outputs)))
        else:
            cost = op_table.OpCost(0, 0, op_table.UNSUPPORTED)
        layer, path = self._layer_of(self.modules.current(), info.short_name)
        index = len(self.records)
        # One pass over the inputs: bytes (each tensor once), shapes, producers.
        seen: set[int] = set()
        read = 0
        input_shapes = []
        sources: list[int | None] = []
        for t in inputs:
            key = id(t)
            if key not in seen:
                seen.add(key)
                read += t.numel() * t.element_size()
            input_shapes.append(tuple(t.shape))
            entry = self.producer.get(key)
            sources.append(entry[1] if entry is not None and entry[0]() is t else None)
        # An in-place op's output is its first input: read once, written once.
        written = 0
        output_shapes = []
        seen.clear()
        for out in outputs:
            key = id(out)
            if key not in seen:
                seen.add(key)
                written += out.numel() * out.element_size()
            output_shapes.append(tuple(out.shape))
            self.producer[key] = (weakref.ref(out), index)
        record = OpRecord(
            index=index,
            op=info.name,
            layer=layer,
            module_path=path,
            op_class=cost.op_class,
            macs=int(cost.macs),
            flops=int(cost.flops),
            bytes_read=read,
            bytes_written=written,
            supported=formula is not None,
            input_shapes=tuple(input_shapes),
            output_shapes=tuple(output_shapes),
            memory_bytes_fused=read + written,
        )
        self.records.append(record)
        self.inputs_from.append(sources)
        return result

    def _fail(self, func: Any, inputs: list[torch.Tensor], exc: Exception) -> None:
        module_id = self.modules.current()
        where = "the model's forward"
        if module_id is not None:
            where = f"layer '{self.modules.names[module_id] or '<root>'}' ({self.modules.types[module_id]})"
        shapes = ", ".join(str(list(_shape(t))) for t in inputs)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForwardError(
            f"forward pass failed in {where} at {op_table.op_name(func)} with input shapes {shapes}: {first_line}"
        ) from exc


def _is_leaf_row(rec: OpRecord) -> bool:
    """A leaf module's row carries the module's path; a container's functional
    ops get ``path (op)`` rows."""
    return rec.layer == (rec.module_path or "<root>")


def _aggregate(records: list[OpRecord], modules: _ModuleStack, model: nn.Module) -> list[LayerCost]:
    by_path = modules.by_path
    layers: dict[str, LayerCost] = {}
    class_weight: dict[str, dict[str, tuple[int, int]]] = {}
    seen_params: set[int] = set()
    for rec in records:
        layer = layers.get(rec.layer)
        if layer is None:
            module = by_path.get(rec.module_path)
            module_type = type(module).__name__ if module is not None else type(model).__name__
            is_leaf_row = module is not None and _is_leaf_row(rec)
            layer = LayerCost(
                name=rec.layer,
                module_path=rec.module_path,
                module_type=module_type,
                input_shape=rec.input_shapes[0] if rec.input_shapes else (),
                output_shape=rec.output_shapes[0] if rec.output_shapes else (),
            )
            if is_leaf_row:
                layer.calls = modules.calls[id(module)]
                for p in module._parameters.values():
                    if p is None:
                        continue
                    if id(p) not in seen_params:
                        seen_params.add(id(p))
                        layer.params += p.numel()
            layers[rec.layer] = layer
        if not _is_leaf_row(rec):
            layer.calls += 1
        layer.ops[rec.op] += 1
        if not rec.supported:
            layer.unsupported_ops[rec.op] += 1
        layer.macs += rec.macs
        layer.flops += rec.flops
        layer.memory_bytes += rec.memory_bytes
        layer.memory_bytes_fused += rec.memory_bytes_fused
        layer.output_shape = rec.output_shapes[0] if rec.output_shapes else layer.output_shape
        # The row's class is that of its costliest op class (by FLOPs, then by bytes).
        weights = class_weight.setdefault(rec.layer, {})
        flops, moved = weights.get(rec.op_class, (0, 0))
        weights[rec.op_class] = (flops + rec.flops, moved + rec.memory_bytes)
    for layer in layers.values():
        layer.op_class = max(class_weight[layer.name].items(), key=lambda item: item[1])[0]
    return list(layers.values())


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
    modules = _ModuleStack(model)
    # eval() for the pass, touching (and restoring) only modules in training.
    training = [m for m in modules.by_path.values() if m.training]
    for module in training:
        module.training = False
    try:
        with torch.no_grad(), modules, _OpTracer(modules) as tracer:
            model(x)
    finally:
        for module in training:
            module.training = True
    apply_fusion(tracer.records, tracer.inputs_from)
    layers = _aggregate(tracer.records, modules, model)
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
