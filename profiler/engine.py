"""The counting engine: run one forward pass, see every aten op, attribute it.

Ops are captured at the TorchDispatchMode level (below autograd, after
composite ops are decomposed), as PyTorch's own FlopCounterMode does, and
each op is attributed to the innermost module running when it executed. The
engine holds no per-op arithmetic: MACs and FLOPs come from the formula
table in :mod:`lwprof.ops`; memory access is the bytes of the tensors an op
actually read and wrote.

No side effects on the model: the module hooks are global and removed on
exit, training flags are restored, and the model's parameters are untouched
(a different dtype is analysed on a copy).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from lwprof import ops as op_table
from lwprof.errors import LwprofError
from lwprof.fusion import apply_fusion
from lwprof.records import LayerCost, ModelProfile, OpRecord


class ForwardError(LwprofError):
    """The model's forward pass failed; names the layer, the op and the shapes."""


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _bytes(tensors: list[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


class _ModuleStack:
    """Names of the modules currently executing, innermost last."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.leaf = {id(m): not any(True for _ in m.children()) for m in model.modules()}
        self.types = {id(m): type(m).__name__ for m in model.modules()}
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


class _OpTracer(TorchDispatchMode):
    """Records every op with its cost, and which earlier op produced each input."""

    def __init__(self, modules: _ModuleStack):
        super().__init__()
        self.modules = modules
        self.records: list[OpRecord] = []
        # op index that produced each live tensor; views map to their base's producer
        self.producer = WeakIdKeyDictionary()
        self.inputs_from: list[list[int | None]] = []

    def _layer_of(self, module_id: int | None, op: str) -> tuple[str, str]:
        if module_id is None:
            return f"<root> ({op.removeprefix('aten.')})", ""
        path = self.modules.names[module_id]
        if self.modules.leaf[module_id]:
            return path or "<root>", path
        return f"{path or '<root>'} ({op.removeprefix('aten.')})", path

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = op_table.tensors_in(args) + op_table.tensors_in(list(kwargs.values()))
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self._fail(func, inputs, exc)
        outputs = op_table.tensors_in(result if isinstance(result, (tuple, list)) else [result])
        if op_table.is_view_op(func) or op_table.is_allocation_op(func):
            source = self.producer.get(inputs[0]) if inputs else None
            if op_table.is_view_op(func) and source is not None:
                for out in outputs:
                    self.producer[out] = source
            return result

        name = op_table.op_name(func)
        formula = op_table.formula_for(func)
        if formula is not None:
            cost = formula(op_table.OpCall(tuple(args), kwargs, tuple(outputs)))
        else:
            cost = op_table.OpCost(0, 0, op_table.UNSUPPORTED)
        module_id = self.modules.current()
        layer, path = self._layer_of(module_id, name)
        index = len(self.records)
        # An in-place op's output is its first input: read once, written once.
        written = _bytes(outputs)
        record = OpRecord(
            index=index,
            op=name,
            layer=layer,
            module_path=path,
            op_class=cost.op_class,
            macs=int(cost.macs),
            flops=int(cost.flops),
            bytes_read=_bytes(inputs),
            bytes_written=written,
            supported=formula is not None,
            input_shapes=tuple(_shape(t) for t in inputs),
            output_shapes=tuple(_shape(t) for t in outputs),
        )
        record.memory_bytes_fused = record.memory_bytes
        self.records.append(record)
        self.inputs_from.append([self.producer.get(t) for t in inputs])
        for out in outputs:
            self.producer[out] = index
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
    by_path = {name: m for name, m in model.named_modules()}
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
                for p in module.parameters(recurse=False):
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
    float_params = [p for p in model.parameters() if p.is_floating_point()]
    if float_params and float_params[0].dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    x = _prepare_input(model, tuple(input_shape), dtype)
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), _ModuleStack(model) as modules, _OpTracer(modules) as tracer:
            model(x)
    finally:
        for module, flag in training.items():
            module.training = flag
    apply_fusion(tracer.records, tracer.inputs_from)
    layers = _aggregate(tracer.records, modules, model)
    unsupported = Counter(rec.op for rec in tracer.records if not rec.supported)
    params = sum(p.numel() for p in model.parameters())
    return ModelProfile(
        model=name or type(model).__name__,
        input_shape=tuple(input_shape),
        dtype=str(dtype).removeprefix("torch."),
        params=params,
        layers=layers,
        ops=tracer.records,
        unsupported_ops=dict(sorted(unsupported.items())),
    )
