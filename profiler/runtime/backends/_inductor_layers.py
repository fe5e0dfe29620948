"""Per-layer times for the inductor backend: inductor's generated kernels,
timed by the profiler and named after the layers they came from.

Inductor fuses most of a network into generated C++ kernels and leaves
convolutions and GEMMs to calls into oneDNN/ATen ("extern" kernels). Two of
inductor's own debugging switches make those kernels nameable, and lwprof
turns them on only for the compile that times layers, never for the
end-to-end figure:

- ``cpp.enable_kernel_profile`` wraps every generated C++ kernel in a
  profiler record named after the kernel (``graph_0_cpp_fused_hardswish_1``);
  extern kernels are ATen ops the profiler records anyway;
- ``trace.provenance_tracking_level = 1`` makes inductor emit, as a
  structured-trace artifact (what ``tlparse`` reads), which post-grad graph
  nodes each kernel computes (``cppCodeToPost``; kernels are keyed
  ``name:handle``, handles in the order the wrapper calls them) and which
  pre-grad nodes each post-grad node came from (``postToPre``).

The graph nodes carry the module stack dynamo recorded, so a kernel's layers
are the modules of its nodes, named as the analytic table names them. A
kernel covering several layers is one row under its first layer, the others
as ``fused_layers`` (as ONNX Runtime's fused nodes are).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

from lwprof.core.timing import LayerTiming
from lwprof.runtime.backends._layer_names import LayerNamer

if TYPE_CHECKING:
    import torch

# The profiler record of one compiled graph's call, parent of its kernels.
GRAPH_CALL_PREFIX = "## Call CompiledFxGraph"
_CPP_KERNEL = re.compile(r"^graph_\d+_(cpp_.+)$")
_DYNAMO_ROOT = re.compile(r"^L\[['\"][^'\"]+['\"]\]")
# Pre-grad (torch-level) calls that only move or reinterpret data: no analytic row.
_PRE_GRAD_LAYOUT = ("getitem", "getattr", "size", "view", "reshape", "flatten", "permute", "transpose", "contiguous",
                    "squeeze", "unsqueeze", "chunk", "split", "expand")
# Python operators in a pre-grad graph, by the ATen op the analytic table names.
_PYTHON_OPERATORS = {"iadd": "add", "imul": "mul", "isub": "sub", "truediv": "div", "itruediv": "div"}
_INDEX = re.compile(r"(?:\._modules)?\[['\"]?([^'\"\]]+)['\"]?\]")


class NodeRecord(NamedTuple):
    """A graph node as lwprof keeps it: module path, op (None: no analytic row)
    and the nodes it reads."""

    path: str | None
    op: str | None
    inputs: tuple[str, ...] = ()


@dataclass
class CompiledGraph:
    """What one graph's compile told about its kernels: each kernel (in call
    order) with its post-grad nodes, and each node's module path and op."""

    kernels: list[tuple[str, list[str]]] = field(default_factory=list)  # ("cpp_fused_x_1", nodes) / ("extern_kernels.mm", …)
    post_to_pre: dict[str, list[str]] = field(default_factory=dict)
    post_nodes: dict[str, NodeRecord] = field(default_factory=dict)
    pre_nodes: dict[str, NodeRecord] = field(default_factory=dict)


@dataclass
class KernelLayers:
    """One kernel of a compiled graph: its name, whether inductor generated it
    (C++) or calls it (extern), and the layers it computes, in graph order."""

    name: str
    generated: bool
    layers: tuple[str, ...]
    adopted: bool = False  # no node of its own had a layer: it runs for the layer it names

    @property
    def op(self) -> str:
        return "inductor C++ kernel" if self.generated else f"inductor extern {extern_op(self.name)}"


def module_path(stack: dict[str, Any] | None) -> str | None:
    """The innermost module of a dynamo ``nn_module_stack`` as a module path
    (``L['self'].features[0]._modules['conv']`` -> ``features.0.conv``); None
    for a node outside every module."""
    if not stack:
        return None
    value = list(stack.values())[-1]
    path = value[0] if isinstance(value, tuple) else str(value)
    path = _DYNAMO_ROOT.sub("", path)
    path = _INDEX.sub(lambda match: "." + match.group(1), path)
    return path.strip(".")


def node_record(node: Any) -> NodeRecord:
    """A graph node's module path, op name (``aten.add.Tensor`` -> ``add``;
    None when it has no analytic row of its own: a view, an allocation, or no
    ATen op at all, as inductor's pattern fusions) and inputs."""
    import torch

    from lwprof.counting.tracer import COUNTED, op_info

    target = node.target
    op = None
    if isinstance(target, torch._ops.OpOverload):
        op = target._opname if target.namespace == "aten" and op_info(target).kind == COUNTED else None
    elif _torch_level(target) and target.__name__ not in _PRE_GRAD_LAYOUT:
        op = _PYTHON_OPERATORS.get(target.__name__, target.__name__)
    return NodeRecord(module_path(node.meta.get("nn_module_stack")), op, tuple(arg.name for arg in node.all_input_nodes))


def _torch_level(target: Any) -> bool:
    """A pre-grad graph's call: a Python operator or a public torch function
    (not an inductor lowering, whose node stands for a fused pattern)."""
    module = getattr(target, "__module__", None) or ""
    return bool(getattr(target, "__name__", None)) and (
        module == "_operator" or (module.startswith("torch") and not module.startswith("torch._")))


def extern_op(kernel: str) -> str:
    """An extern kernel's op: ``extern_kernels.convolution`` -> ``convolution``,
    ``torch.ops.mkldnn._convolution_pointwise.binary`` -> ``_convolution_pointwise``;
    and a profiler record's: ``mkldnn::_convolution_pointwise`` -> the same."""
    if "::" in kernel:
        return kernel.split("::")[-1]
    parts = kernel.split(".")
    if parts[0] == "torch" and len(parts) >= 4:  # torch.ops.<namespace>.<op>[.<overload>]
        return parts[3]
    return parts[-1]


def kernel_layers(graph: CompiledGraph, namer: LayerNamer) -> list[KernelLayers]:
    """Each kernel's layers. A node in a leaf module is that module's row; one
    in a container, its ``path (op)`` row when the op is counted analytically
    (views and layout ops have no row). A kernel none of whose nodes has a
    module takes its nodes' pre-grad nodes' modules.

    An extern convolution or GEMM none of whose nodes is one (with freezing or
    int8, inductor replaces conv -> BatchNorm -> activation, or the quantized
    pattern, by one oneDNN call whose node keeps the activation's module, or
    none) runs the next convolution (or linear layer) of the pre-grad graph
    that no kernel before it ran: inductor calls them in graph order. The
    layers between that one and the kernel's own nodes are its fused layers."""
    order = {node: index for index, node in enumerate(graph.post_nodes)}
    sources = {kind: [node for node, record in graph.pre_nodes.items() if _weighted_kind(record.op) == kind and record.path]
               for kind in ("conv", "gemm")}
    ran: set[str] = set()  # weighted layers a kernel ran
    result = []
    for key, nodes in graph.kernels:
        name = key.rsplit(":", 1)[0]
        ordered = sorted(nodes, key=lambda node: order.get(node, len(order)))
        pre = [pre_node for node in ordered for pre_node in graph.post_to_pre.get(node, [])]
        layers = _layers_of(ordered, graph.post_nodes, namer)
        if not layers:
            layers = _layers_of(pre, graph.pre_nodes, namer)
        own = [node for node in ordered if _weighted_kind(_op(graph.post_nodes, node))] + \
              [node for node in pre if _weighted_kind(_op(graph.pre_nodes, node))]
        kind = _weighted_kind(extern_op(name)) if _is_extern(name) else None
        if kind and not own:
            source = next((node for node in sources[kind] if _layers_of([node], graph.pre_nodes, namer)[0] not in ran), None)
            if source is not None:
                chain = [source, *_path_back(pre, source, graph.pre_nodes), *pre]
                if "binary" not in name:  # a unary call cannot run the add its pattern node may name
                    chain = [node for node in chain if _op(graph.pre_nodes, node) not in _BINARY_OPS]
                leaf = [layer for layer in _layers_of(ordered, graph.post_nodes, namer) if namer.is_leaf(layer)]
                layers = list(dict.fromkeys([*_layers_of(chain, graph.pre_nodes, namer), *leaf]))
                ran.add(layers[0])
        elif own:
            ran.update(_layers_of(own, {**graph.pre_nodes, **graph.post_nodes}, namer))
        result.append(KernelLayers(name, not _is_extern(name), tuple(layers)))
    # A kernel of no layer's nodes (a copy into the layout the next kernel reads)
    # joins the next kernel's row, or the last one's at the end.
    for index, kernel in enumerate(result):
        if not kernel.layers:
            donor = next((other for other in [*result[index + 1:], *reversed(result[:index])] if other.layers and not other.adopted),
                         None)
            if donor is not None:
                kernel.layers, kernel.adopted = donor.layers[:1], True
    return result


# Element-wise ops of two tensors, which only a oneDNN "binary" call fuses.
_BINARY_OPS = frozenset({"add", "add_", "mul", "mul_", "sub", "div"})


def _op(records: dict[str, NodeRecord], node: str) -> str | None:
    record = records.get(node)
    return record.op if record else None


def _weighted_kind(op: str | None) -> str | None:
    """``conv`` for a convolution, ``gemm`` for a linear layer or matrix
    product, None otherwise (by op name, ATen's or oneDNN's)."""
    if not op:
        return None
    if "conv" in op:
        return "conv"
    if "linear" in op or op.endswith("mm") or "matmul" in op:
        return "gemm"
    return None


def _path_back(starts: list[str], source: str, records: dict[str, NodeRecord], limit: int = 64) -> list[str]:
    """The nodes from ``source`` (excluded) to the first of ``starts`` that
    reads it, following inputs back, in graph order; empty when none does
    within ``limit`` nodes. Stops at other convolutions and GEMMs."""
    for start in starts:
        previous: dict[str, str | None] = {start: None}
        queue = [start]
        while queue and len(previous) < limit:
            node = queue.pop(0)
            record = records.get(node)
            for parent in record.inputs if record else ():
                if parent in previous:
                    continue
                previous[parent] = node
                if parent == source:
                    path, step = [], previous[parent]
                    while step is not None:
                        path.append(step)
                        step = previous[step]
                    return path
                if not _weighted_kind(_op(records, parent)):
                    queue.append(parent)
    return []


def _is_extern(kernel: str) -> bool:
    return not kernel.startswith("cpp_")


def _layers_of(nodes: list[str], records: dict[str, NodeRecord], namer: LayerNamer) -> list[str]:
    layers: list[str] = []
    for node in nodes:
        record = records.get(node)
        if record is None:
            continue
        path, op = record.path, record.op
        if path is not None and namer.is_leaf(path):
            layer = path
        elif op is not None:
            layer = namer.name(path or "", op)
        else:
            continue
        if layer not in layers:
            layers.append(layer)
    return layers


def layer_rows(calls: list[list[tuple[str, float]]], graphs: list[CompiledGraph], kernels: list[list[KernelLayers]],
               runs: int) -> tuple[list[LayerTiming], dict[str, Any]]:
    """Rows from the profiled graph calls: ``calls`` holds, per graph call in
    execution order (``runs`` passes of ``len(graphs)`` calls each), the
    call's direct child records as (name, seconds). Generated kernels match
    their records by name, extern kernels the next record of their op; a
    record neither matches (an allocation the wrapper made) is left out and
    counted in the returned notes."""
    per_run = len(graphs)
    samples: dict[str, list[float]] = {}
    covers: dict[str, list[str]] = {}
    ops: dict[str, set[str]] = {}
    unmatched_s = 0.0
    unnamed: dict[str, str] = {}
    for index, records in enumerate(calls):
        run, graph = divmod(index, per_run) if per_run else (0, 0)
        if run >= runs:
            break
        pending = list(kernels[graph])
        for record, seconds in records:
            kernel = _match(record, pending)
            if kernel is None:
                unmatched_s += seconds
                continue
            layers = kernel.layers or (f"<inductor {kernel.name}>",)
            if kernel.adopted or not kernel.layers:
                unnamed[kernel.name] = layers[0]
            head = layers[0]
            samples.setdefault(head, [0.0] * runs)[run] += seconds
            members = covers.setdefault(head, [])
            members.extend(layer for layer in layers if layer not in members)
            ops.setdefault(head, set()).add(kernel.op)
    rows = [LayerTiming(head, tuple(values), tuple(covers[head]) if len(covers[head]) > 1 else (), tuple(sorted(ops[head])))
            for head, values in samples.items()]
    notes = {"unmatched_records_s_per_pass": unmatched_s / max(runs, 1), "kernels_without_layer": unnamed}
    return rows, notes


def _match(record: str, pending: list[KernelLayers]) -> KernelLayers | None:
    """The pending kernel a profiler record ran (removed from ``pending``)."""
    generated = _CPP_KERNEL.match(record)
    for index, kernel in enumerate(pending):
        if generated and kernel.generated and kernel.name == generated.group(1):
            return pending.pop(index)
        if not generated and not kernel.generated and extern_op(kernel.name) == extern_op(record):
            return pending.pop(index)
    return None


# ---------------------------------------------------------------------------
# Capturing what a compile tells


class _ArtifactHandler(logging.Handler):
    """Keeps the provenance artifacts of inductor's structured trace."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.mappings: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        metadata = getattr(record, "metadata", None)
        artifact = metadata.get("artifact") if isinstance(metadata, dict) else None
        if isinstance(artifact, dict) and artifact.get("name") == "inductor_provenance_tracking_node_mappings":
            try:
                self.mappings.append(json.loads(getattr(record, "payload", "") or "{}"))
            except ValueError:
                self.mappings.append({})


@contextlib.contextmanager
def provenance_capture() -> Iterator[list[CompiledGraph]]:
    """Compiles inside this block (one fresh ``torch.compile``'d call) record
    their kernels: yields the list the compiled graphs are appended to, in
    compile order. Inductor's compiled-graph cache is off inside, since a
    cached graph is not compiled and tells nothing."""
    from torch._inductor import config
    from torch._inductor.custom_graph_pass import CustomGraphPass
    from torch._logging._internal import trace_log

    class _RecordNodes(CustomGraphPass):
        """Records each call node's module path and op, after running the pass
        the user had configured in this place, if any."""

        def __init__(self, user_pass: Any) -> None:
            self.user_pass = user_pass
            self.graphs: list[dict[str, NodeRecord]] = []

        def __call__(self, graph: "torch.fx.Graph") -> None:
            if self.user_pass is not None:
                self.user_pass(graph)
            self.graphs.append({node.name: node_record(node) for node in graph.nodes if node.op == "call_function"})

        def uuid(self) -> Any:
            # Unique, so no cache ever holds a graph compiled with these passes (the
            # compiled-graph cache is off here anyway: a cached graph records nothing).
            return f"lwprof-layer-capture-{id(self)}-{time.time_ns()}"

    pre_pass, post_pass = _RecordNodes(config.pre_grad_custom_pass), _RecordNodes(config.post_grad_custom_post_pass)

    handler = _ArtifactHandler()
    graphs: list[CompiledGraph] = []
    level = trace_log.level
    trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)
    try:
        with config.patch({"cpp.enable_kernel_profile": True, "trace.provenance_tracking_level": 1, "fx_graph_cache": False,
                           "pre_grad_custom_pass": pre_pass, "post_grad_custom_post_pass": post_pass}):
            yield graphs
    finally:
        trace_log.removeHandler(handler)
        trace_log.setLevel(level)
        for index, mapping in enumerate(handler.mappings):
            code_to_post = mapping.get("cppCodeToPost") or {}
            kernels = sorted(code_to_post.items(), key=lambda item: _handle(item[0]))
            graphs.append(CompiledGraph(
                kernels=[(key, list(nodes)) for key, nodes in kernels],
                post_to_pre={key: list(value) for key, value in (mapping.get("postToPre") or {}).items()},
                post_nodes=post_pass.graphs[index] if index < len(post_pass.graphs) else {},
                pre_nodes=pre_pass.graphs[index] if index < len(pre_pass.graphs) else {},
            ))


def _handle(key: str) -> int:
    tail = key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def graph_calls(events: list[Any]) -> list[list[tuple[str, float]]]:
    """Each compiled-graph call among profiler events, in order, as its direct
    children's (name, seconds)."""
    calls: dict[int, list[tuple[str, float]]] = {}
    order: list[int] = []
    for event in events:
        if event.name.startswith(GRAPH_CALL_PREFIX):
            calls[id(event)] = []
            order.append(id(event))
    for event in events:
        parent = getattr(event, "cpu_parent", None)
        if parent is not None and id(parent) in calls:
            calls[id(parent)].append((event.name, event.time_range.elapsed_us() / 1e6))
    return [calls[key] for key in order]
