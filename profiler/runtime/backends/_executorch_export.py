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

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.runtime.backends._layer_names import LayerNamer as BaseLayerNamer
from lwprof.runtime.backends._xnnpack_graph import DATA_MOVEMENT, XNode

# Written beside each cached program; a program whose record is missing or differs is exported again.
RECORD_VERSION = "7"
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


def cached_program(module: Any, model_name: str, input_shape: tuple[int, ...], precision: str, cache_dir: Path,
                   quantization: "Quantization | None" = None) -> CachedProgram:
    """The ``.pte`` of ``module`` lowered to XNNPACK (int8 when
    ``quantization`` is given), from the cache when its record (fingerprint,
    shape, precision, quantization recipe, torch and executorch versions)
    matches, else exported again. The record (``.json`` beside it) also holds
    what is needed to name per-layer times: each delegate's XNNPACK nodes with
    their layers, and the instructions left outside XNNPACK."""
    import torch

    from lwprof.runtime.environment import package_version
    from lwprof.runtime.export_cache import module_fingerprint

    path = program_cache_path(cache_dir, model_name, input_shape, precision)
    record_path = path.with_suffix(".json")
    expected = {"record_version": RECORD_VERSION, "fingerprint": module_fingerprint(module), "input_shape": list(input_shape),
                "precision": precision, "quantization": quantization.record if quantization else None,
                "torch": torch.__version__, "executorch": package_version("executorch")}
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
        program, layers = lower_to_xnnpack(module, x, name_layers=True, quantization=quantization)
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


@dataclass(frozen=True)
class Quantization:
    """How an int8 program is made: torchao's PT2E flow with executorch's
    ``XNNPACKQuantizer`` (its symmetric config: int8 weights, per output
    channel unless ``per_channel`` is off, int8 activations with observers
    calibrated on ``calibration``), then lowered like fp32. ``record`` is what
    the cache is keyed on: the recipe and a digest of the calibration inputs."""

    per_channel: bool
    calibration: tuple[Any, ...]  # numpy arrays, one model input each

    @property
    def record(self) -> dict[str, Any]:
        digest = hashlib.blake2b(digest_size=8)
        for array in self.calibration:
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        return {"quantizer": "XNNPACKQuantizer, get_symmetric_quantization_config", "per_channel": self.per_channel,
                "calibration_inputs": len(self.calibration), "calibration_digest": digest.hexdigest()}


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


def lower_to_xnnpack(module: Any, x: Any, name_layers: bool = False,
                     quantization: Quantization | None = None) -> tuple[Any, dict[str, Any]]:
    """torch.export (then PT2E int8 with ``quantization``) -> XNNPACK ->
    ExecuTorch program, and (``name_layers``) the layers of its instructions
    (:func:`graph_layers`, :func:`instruction_layers`)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from lwprof.core.modules import eval_mode

    with eval_mode(module.modules()), torch.no_grad():
        exported = torch.export.export(module, (x,))
        if quantization is not None:
            exported = quantized_export(exported, x, quantization)
    collisions = batch_norm_name_collisions(exported)
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    # Read before to_executorch, which rewrites this graph in place (out variants, new debug handles).
    layers = graph_layers(edge.exported_program().graph_module, module) if name_layers else None
    program = edge.to_executorch()
    if layers is None:
        return program, {}
    return program, {**instruction_layers(*layers, program.debug_handle_map.get("forward", {}),
                                          set(program.delegate_map.get("forward", {}))),
                     "batch_norm_name_collisions": collisions}


def batch_norm_name_collisions(exported: Any) -> list[list[str]]:
    """BatchNorms XNNPACK turns into depthwise convolutions whose constants get
    one name: ExecuTorch's ``DecomposeBatchNorm`` (1.5) names them after the
    BatchNorm's weight with dots made underscores, so ``level2_0.bn.weight``
    and ``level2.0.bn.weight`` collide and one BatchNorm runs with the other's
    scale and shift. A BatchNorm is decomposed when no convolution of its own
    takes it (its input is not a convolution read by it alone); each group of
    such weights sharing a name is returned."""
    parameters = exported.graph_signature.inputs_to_parameters
    by_name: dict[str, list[str]] = {}
    for node in exported.graph.nodes:
        if node.op != "call_function" or "batch_norm" not in _op_name(node.target) or len(node.args) < 2:
            continue
        source = node.args[0]
        fused = (getattr(source, "op", None) == "call_function" and "conv" in _op_name(source.target)
                 and len(source.users) == 1)
        weight = parameters.get(getattr(node.args[1], "name", ""))
        if weight is not None and not fused:
            by_name.setdefault(weight.replace(".", "_"), []).append(weight)
    return [sorted(set(names)) for names in by_name.values() if len(set(names)) > 1]


_QUANTIZE_OPS = frozenset({"quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel"})


def quantized_export(exported: Any, x: Any, quantization: Quantization) -> Any:
    """``exported`` through PT2E with XNNPACK's quantizer, calibrated, and
    exported again, its nodes given the module stacks of the fp32 graph."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=quantization.per_channel))
    prepared = prepare_pt2e(exported.module(), quantizer)
    for sample in quantization.calibration:
        prepared(torch.from_numpy(sample))
    quantized = torch.export.export(convert_pt2e(prepared), (x,))
    carry_module_stacks(exported.graph, quantized.graph)
    return quantized


def carry_module_stacks(source: Any, target: Any) -> None:
    """Re-exporting the quantized module loses torch.export's module stacks
    (every node sits in the export's wrapper). The compute nodes of both
    graphs run in the same order, less what quantization folded (each
    BatchNorm into its convolution): matched by op name in order, each target
    node takes its source node's stack; a quantize node takes the stack of the
    node whose output it quantizes, any other quantize/dequantize node that of
    the node it feeds."""
    import difflib

    sources = [node for node in source.nodes if node.op == "call_function"]
    targets = [node for node in target.nodes if node.op == "call_function" and _op_name(node.target) not in _QUANTIZE_OPS]
    # Nodes no fp32 node matches keep the wrapper's stack: named as the root's own ops.
    matcher = difflib.SequenceMatcher(a=[_op_name(n.target) for n in sources], b=[_op_name(n.target) for n in targets],
                                      autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            stack = sources[block.a + offset].meta.get("nn_module_stack")
            if stack:
                targets[block.b + offset].meta["nn_module_stack"] = stack
    quantize_nodes = [node for node in target.nodes if node.op == "call_function" and _op_name(node.target) in _QUANTIZE_OPS]
    for node in quantize_nodes:  # a compute node's output quantized (and dequantized again): part of that node
        producer = node.args[0] if node.args and hasattr(node.args[0], "op") else None
        if producer is None or producer.op != "call_function":
            continue
        if _op_name(producer.target) not in _QUANTIZE_OPS or producer.meta.get("lwprof_stack_set"):
            node.meta["nn_module_stack"] = producer.meta.get("nn_module_stack", node.meta.get("nn_module_stack"))
            node.meta["lwprof_stack_set"] = True
    for node in reversed(quantize_nodes):  # the rest (inputs, weights): part of what they feed, consumers first
        consumer = next(iter(node.users), None)
        if not node.meta.get("lwprof_stack_set") and consumer is not None and "nn_module_stack" in consumer.meta:
            node.meta["nn_module_stack"] = consumer.meta["nn_module_stack"]
    for node in quantize_nodes:
        node.meta.pop("lwprof_stack_set", None)


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
    """A delegate's XNNPACK nodes in order, each with the layers it computes
    (:func:`node_layers`)."""
    nodes: list[XNode] = read_nodes(lowered.processed_bytes) if lowered.backend_id == "XnnpackBackend" else []
    graph = [node for node in lowered.original_module.graph.nodes
             if node.op == "call_function" and _op_name(node.target) != "getitem"]
    layers = node_layers(nodes, graph, name_of)
    return {"backend": lowered.backend_id, "nodes": [{**asdict(node), "layers": layers[k]} for k, node in enumerate(nodes)]}


def node_layers(nodes: Sequence[XNode], graph: Sequence[Any], name_of: Callable[[Any], str]) -> list[list[str]]:
    """The layers each XNNPACK node computes, from the partition's graph nodes
    (in order) and the debug handles the XNNPACK nodes carry. A graph node
    whose handle no XNNPACK node carries was rewritten by the delegate's own
    passes: folded into the node that computes its only input (a BatchNorm
    into its convolution, a ReLU into its output range), or turned into a
    node of the delegate's own, with a handle of its own (a BatchNorm after a
    concatenation becomes a depthwise convolution, with the handle 65535 of
    an inserted node), which then takes it: the first such computing node
    between the XNNPACK nodes of the graph nodes around it. The transposes,
    reshapes and copies the delegate inserted take none."""
    owner_of_handle: dict[Any, int] = {}
    for k, node in enumerate(nodes):
        owner_of_handle.setdefault(node.debug_handle, k)
    known = {node.meta.get("debug_handle") for node in graph}
    own_handle = [node.debug_handle in known for node in nodes]
    layers: list[list[str]] = [[] for _ in nodes]
    owner_of_graph: dict[Any, int | None] = {}
    last: int | None = None
    pending: list[Any] = []

    def settle(upto: int | None) -> None:
        """Give the pending graph nodes to a rewritten node between ``last`` and ``upto``, else to ``last``."""
        start = -1 if last is None else last
        stop = len(nodes) if upto is None else upto
        rewritten = next((k for k in range(start + 1, stop) if not own_handle[k] and nodes[k].type not in DATA_MOVEMENT), None)
        target = rewritten if rewritten is not None else last if last is not None else upto
        for pending_node in pending:
            owner_of_graph[pending_node] = target
            if target is not None:
                _add(layers[target], name_of(pending_node))
        pending.clear()

    for graph_node in graph:
        k = owner_of_handle.get(graph_node.meta.get("debug_handle"))
        if k is None and _op_name(graph_node.target) in _QUANTIZE_OPS and not any(
                getattr(arg, "op", None) == "call_function" for arg in graph_node.args):
            continue  # a constant's (de)quantization, folded into the node that reads it
        if k is not None:
            if pending:
                settle(k)
            owner_of_graph[graph_node] = k
            _add(layers[k], name_of(graph_node))
            last = k if last is None else max(last, k)
            continue
        producer = next((arg for arg in graph_node.args if hasattr(arg, "users")), None)
        if last is not None and producer is not None and not pending and owner_of_graph.get(producer) == last \
                and len(producer.users) == 1 and _folds_into(_op_name(graph_node.target), nodes[last].type):
            owner_of_graph[graph_node] = last  # folded into (or fused with) what computes its only input
            _add(layers[last], name_of(graph_node))
        else:
            pending.append(graph_node)
    if pending:
        settle(None)
    # Every node of a graph node that became several (a hard-sigmoid: add, clamp, divide) computes its layers.
    return [layers[owner_of_handle[node.debug_handle]] if own_handle[k] else layers[k] for k, node in enumerate(nodes)]


# What XNNPACK's passes fold into the node before them: an activation into any node's output range, a
# BatchNorm into a convolution's or a linear layer's weights. Anything else was turned into a node of its own.
_ACTIVATIONS = frozenset({"relu", "relu_", "hardtanh", "hardtanh_", "clamp"})
_WEIGHTED = frozenset({"XNNConv2d", "XNNDepthwiseConv2d", "XNNFullyConnected", "XNNConvTranspose2d"})


def _folds_into(op: str, node_type: str) -> bool:
    return op in _ACTIVATIONS or ("batch_norm" in op and node_type in _WEIGHTED)


def _add(layers: list[str], layer: str) -> None:
    if layer not in layers:
        layers.append(layer)


class LayerNamer(BaseLayerNamer):
    """A graph node's analytic row name, from the module stack torch.export
    recorded (module paths as ``named_modules`` spells them)."""

    def __call__(self, node: Any) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        return self.name(path, _op_name(node.target).removesuffix("_copy"))


def _op_name(target: Any) -> str:
    """An op's name without namespace and overload: an edge op's ``aten.add.Tensor``
    and an ATen overload's ``add.Tensor`` -> ``add``; ``dim_order_ops._to_dim_order_copy.default``
    -> ``_to_dim_order_copy``; ``executorch_call_delegate`` and ``getitem`` as they are."""
    parts = str(getattr(target, "__name__", None) or target).split(".")
    return parts[1] if len(parts) >= 3 else parts[0]
