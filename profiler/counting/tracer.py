"""The tracer: every aten op of one forward pass, attributed to its layer.

Ops are captured at the TorchDispatchMode level (below autograd, after
composite ops are decomposed), as PyTorch's own FlopCounterMode does, and
each op is attributed to the innermost module running when it executed
(:class:`ModuleStack`). The counting engine (:mod:`lwprof.counting.engine`)
records each op's cost with :class:`OpTracer`; the torch backend times each
op's kernel under the very same layer names with the same pieces.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lwprof.core.errors import LwprofError
from lwprof.core.records import OpRecord
from lwprof.core.text import one_line
from lwprof.counting import ops as op_table


class ForwardError(LwprofError):
    """The model's forward pass failed; names the layer, the op and the shapes."""


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


# What the tracer needs to know about an op overload, looked up once per
# overload: the dispatch hook runs for every op of every forward, so its cost
# is the engine's overhead.
VIEW, ALLOCATION, COUNTED = 0, 1, 2


class OpInfo:
    __slots__ = ("kind", "name", "short_name", "formula")

    def __init__(self, func: Any):
        if op_table.is_view_op(func):
            self.kind = VIEW
        elif op_table.is_allocation_op(func):
            self.kind = ALLOCATION
        else:
            self.kind = COUNTED
        self.name = op_table.op_name(func)
        self.short_name = self.name.removeprefix("aten.")
        self.formula = op_table.formula_for(func)


_op_infos: dict[Any, OpInfo] = {}


def op_info(func: Any) -> OpInfo:
    info = _op_infos.get(func)
    if info is None:
        info = _op_infos[func] = OpInfo(func)
    return info


class ModuleStack:
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
        self._layers: dict[tuple[int | None, str], tuple[str, str]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "ModuleStack":
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

    def layer_of(self, module_id: int | None, op: str) -> tuple[str, str]:
        """The analytic row (layer name, module path) an op belongs to: a leaf
        module's own row, or ``path (op)`` for a container's functional ops."""
        key = (module_id, op)
        cached = self._layers.get(key)
        if cached is not None:
            return cached
        if module_id is None:
            layer = (f"<root> ({op})", "")
        else:
            path = self.names[module_id]
            if self.leaf[module_id]:
                layer = (path or "<root>", path)
            else:
                layer = (f"{path or '<root>'} ({op})", path)
        self._layers[key] = layer
        return layer


def _flat_tensors(values: Any, found: list[torch.Tensor]) -> None:
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            _flat_tensors(value, found)


class OpTracer(TorchDispatchMode):
    """Records every op with its cost, and which earlier op produced each input."""

    def __init__(self, modules: ModuleStack):
        super().__init__()
        self.modules = modules
        self.records: list[OpRecord] = []
        # id(tensor) -> (weak reference, index of the op that produced it);
        # views map to their base's producer. The weak reference tells a live
        # tensor from a freed one whose id was reused.
        self.producer: dict[int, tuple[Any, int]] = {}
        self.inputs_from: list[list[int | None]] = []

    def _producer_of(self, t: torch.Tensor) -> int | None:
        entry = self.producer.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None


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
        info = _op_infos.get(func) or op_info(func)
        if isinstance(result, torch.Tensor):
            outputs = [result]
        else:
            outputs = []
            if isinstance(result, (tuple, list)):
                _flat_tensors(result, outputs)
        if info.kind != COUNTED:
            if info.kind == VIEW and inputs:
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
        layer, path = self.modules.layer_of(self.modules.current(), info.short_name)
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
        raise ForwardError(
            f"forward pass failed in {where} at {op_table.op_name(func)} with input shapes {shapes}: {one_line(exc)}"
        ) from exc
