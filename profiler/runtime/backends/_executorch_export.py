"""The ExecuTorch backend's staging, in the lwprof process: a module lowered
to XNNPACK, its ``.pte`` cached, and the record that names per-layer times.

The export is ExecuTorch's own recipe: ``torch.export.export`` ->
``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` ->
``to_executorch()``. The record (a ``.json`` beside the ``.pte``) holds what
the cache is keyed on (module fingerprint, input shape, precision, torch and
executorch versions) and, for each program instruction, what it runs: a
delegate call with the delegate's XNNPACK nodes and their layers, or one
portable kernel with its layer and op. Layers are named from the module
stack ``torch.export`` records, as the analytic table names them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.runtime.backends._xnnpack_graph import INSERTED_HANDLE, XNode

# Written beside each cached program; a program whose record is missing or differs is exported again.
RECORD_VERSION = "3"
_PROGRAM_OPS = {"executorch_call_delegate", "getitem", "alloc"}


@dataclass(frozen=True)
class CachedProgram:
    """Where a program lies, its record, whether it came from the cache, and
    the seconds the export took (0 when cached)."""

    path: Path
    record: dict[str, Any]
    cached: bool
    export_s: float


def program_cache_path(cache_dir: Path, model_name: str, input_shape: Sequence[int], precision: str) -> Path:
    shape = "x".join(str(int(d)) for d in input_shape)
    return Path(cache_dir) / "executorch" / f"{re.sub(r'[^0-9A-Za-z._-]+', '_', model_name)}-{shape}-{precision}.pte"


def cached_program(module: Any, model_name: str, input_shape: tuple[int, ...], precision: str, cache_dir: Path) -> CachedProgram:
    """The ``.pte`` of ``module`` lowered to XNNPACK, from the cache when its
    record (fingerprint, shape, precision, torch and executorch versions)
    matches, else exported again. The record (``.json`` beside it) also holds
    what is needed to name per-layer times: each delegate's XNNPACK nodes with
    their layers, and the instructions left outside XNNPACK."""
    import torch
    from lwprof.runtime.environment import package_version
    from lwprof.runtime.export_cache import module_fingerprint

    path = program_cache_path(cache_dir, model_name, input_shape, precision)
    record_path = path.with_suffix(".json")
    expected = {"record_version": RECORD_VERSION, "fingerprint": module_fingerprint(module), "input_shape": list(input_shape),
                "precision": precision, "torch": torch.__version__, "executorch": package_version("executorch")}
    if path.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        if all(record.get(key) == value for key, value in expected.items()):
            return CachedProgram(path, record, True, 0.0)
    started = time.perf_counter()
    try:
        x = torch.from_numpy(_example(input_shape))
        program, layers = lower_to_xnnpack(module, x, name_layers=True)
        buffer = program.buffer
    except Exception as exc:
        raise LwprofError(f"ExecuTorch export of {model_name} failed: {one_line(exc)}") from None
    export_s = time.perf_counter() - started
    record = {**expected, **layers, "export_s": export_s}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, buffer)
        _write_atomically(record_path, json.dumps(record, indent=1).encode())
    except OSError as exc:
        raise LwprofError(f"cannot write the ExecuTorch program cache {path.parent}: {one_line(exc)}") from None
    return CachedProgram(path, record, False, export_s)


def _example(input_shape: Sequence[int]) -> Any:
    from lwprof.runtime.outputs import example_input

    return example_input(tuple(input_shape))


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def lower_to_xnnpack(module: Any, x: Any, name_layers: bool = False) -> tuple[Any, dict[str, Any]]:
    """torch.export -> XNNPACK -> ExecuTorch program, and (``name_layers``)
    the layers of its instructions (:func:`graph_layers`, :func:`instruction_layers`)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower
    from lwprof.core.modules import eval_mode

    with eval_mode(module.modules()), torch.no_grad():
        exported = torch.export.export(module, (x,))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    # Read before to_executorch, which rewrites this graph in place (out variants, new debug handles).
    layers = graph_layers(edge.exported_program().graph_module, module) if name_layers else None
    program = edge.to_executorch()
    if layers is None:
        return program, {}
    return program, instruction_layers(*layers, program.debug_handle_map.get("forward", {}),
                                       set(program.delegate_map.get("forward", {})))


def graph_layers(graph_module: Any, module: Any) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
    """The lowered graph's delegates, in execution order, with their XNNPACK
    nodes and those nodes' layers; and each other node's layer and op by its
    debug handle."""
    from lwprof.runtime.backends._xnnpack_graph import xnnpack_nodes

    name_of = LayerNamer(module)
    delegates: list[dict[str, Any]] = []
    by_handle: dict[Any, dict[str, Any]] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        op = _op_name(node.target)
        if op == "executorch_call_delegate":
            lowered = getattr(graph_module, node.args[0].target)
            delegates.append(_delegate_record(lowered, name_of, xnnpack_nodes))
        elif op not in _PROGRAM_OPS:
            by_handle.setdefault(node.meta.get("debug_handle"), {"layer": name_of(node), "op": op})
    return delegates, by_handle


def instruction_layers(delegates: list[dict[str, Any]], by_handle: dict[Any, dict[str, Any]],
                       instruction_handles: dict[int, Any], delegate_calls: set[int]) -> dict[str, Any]:
    """The program's record of what each instruction runs: the delegate calls
    (``instruction_handles``: ExecuTorch's debug handle map, instruction id ->
    the graph's debug handles; ``delegate_calls``: the instructions that call
    a delegate) take the delegates in order; every other instruction its
    layer and op."""
    delegate_instructions: list[int] = []
    operators: list[dict[str, Any]] = []
    for instruction, handles in sorted(instruction_handles.items()):
        handles = [handles] if isinstance(handles, int) else list(handles or ())
        if instruction in delegate_calls:
            delegate_instructions.append(int(instruction))
            continue
        known = next((by_handle[h] for h in handles if h in by_handle), None)
        operators.append({"instruction": int(instruction), "debug_handles": handles,
                          "layer": known["layer"] if known else f"<instruction {instruction}>",
                          "op": known["op"] if known else "?"})
    for delegate, instruction in zip(delegates, delegate_instructions):
        delegate["instruction"] = instruction
    return {"delegates": delegates, "operators": operators}


def _delegate_record(lowered: Any, name_of: "LayerNamer", read_nodes: Any) -> dict[str, Any]:
    """A delegate's XNNPACK nodes in order, each with the layers it computes:
    its own graph node's, then those of the graph nodes that have no XNNPACK
    node of their own and follow it (a folded BatchNorm, a fused ReLU)."""
    nodes: list[XNode] = read_nodes(lowered.processed_bytes) if lowered.backend_id == "XnnpackBackend" else []
    handles = {node.debug_handle for node in nodes}
    layers_of: dict[int, list[str]] = {}
    owner: int | None = None
    waiting: list[str] = []  # graph nodes before the first XNNPACK one
    for graph_node in lowered.original_module.graph.nodes:
        if graph_node.op != "call_function" or _op_name(graph_node.target) == "getitem":
            continue
        handle = graph_node.meta.get("debug_handle")
        layer = name_of(graph_node)
        if handle in handles:
            owner = handle
            layers_of.setdefault(handle, [*waiting])
            waiting = []
        if owner is None:
            waiting.append(layer)
        elif layer not in layers_of[owner]:
            layers_of[owner].append(layer)
    return {
        "backend": lowered.backend_id,
        "nodes": [{**asdict(node), "layers": [] if node.debug_handle == INSERTED_HANDLE else layers_of.get(node.debug_handle, [])}
                  for node in nodes],
    }


class LayerNamer:
    """A graph node's analytic row name, from the module stack torch.export
    recorded: a leaf module's path, or ``path (op)`` for a container's own
    functional op (as :meth:`lwprof.counting.tracer.ModuleStack.layer_of`)."""

    def __init__(self, module: Any):
        self.leaf = {path: next(iter(sub.children()), None) is None for path, sub in module.named_modules()}

    def __call__(self, node: Any) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        if path and self.leaf.get(path):
            return path
        return f"{path or '<root>'} ({_op_name(node.target).removesuffix('_copy')})"


def _op_name(target: Any) -> str:
    """An op's name without namespace and overload: an edge op's ``aten.add.Tensor``
    and an ATen overload's ``add.Tensor`` -> ``add``; ``dim_order_ops._to_dim_order_copy.default``
    -> ``_to_dim_order_copy``; ``executorch_call_delegate`` and ``getitem`` as they are."""
    parts = str(getattr(target, "__name__", None) or target).split(".")
    return parts[1] if len(parts) >= 3 else parts[0]
