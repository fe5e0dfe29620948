"""ONNX Runtime per-layer latency: ORT's own node times, named by lwprof layer.

:func:`layer_timings` runs a graph in an ONNX Runtime session with the
profiler on and turns its trace into :class:`~lwprof.core.timing.LayerTiming`
rows named like ``lwprof profile --analytic`` rows. The trace has one
``Node`` event per kernel call (``<node name>_kernel_time``, ``dur`` in whole
microseconds, ``args.op_name``, ``args.provider``) and one ``Session`` event
per ``run`` (``model_run``, its ``ts``/``dur`` range); a row's sample for a
timed run is the sum of its nodes' kernel times inside that run's range, so
each row has exactly one sample per timed run and the warm-up runs are left
out. Time between kernels (the executor's own bookkeeping) is in no row.

ORT times the graph it optimized, not the exported one, so each node of the
optimized graph (``SessionOptions.optimized_model_filepath``, written by the
profiled session itself: the names ORT gives the nodes it inserts,
``ReorderOutput_token_213``, change from session to session) is mapped back:

- its *covers*: the exported (reference) nodes it computes, found by walking
  the reference graph backwards from the node's outputs to its inputs. ORT
  keeps the names of the tensors that survive optimization, so the walk
  starts at the reference tensors the node's outputs stand for and stops at
  every tensor that still exists in the optimized graph, at constants
  (initializers, ``Constant``, anything computed from them only, ``Shape``)
  and at graph inputs. A ``FusedConv`` that absorbed Conv+BatchNorm+ReLU thus
  covers three layers; a ``ReorderInput`` covers none.
- its *row*: the first covered layer, with ``covers`` listing them all when
  there are several (one ``LayerTiming`` for the fused node). A node that
  covers nothing (a layout conversion, a node whose outputs ORT renamed and
  nothing ties back) is placed by :func:`lwprof.counting.onnx_export.node_scopes`,
  which follows names and neighbours. Nodes with the same row and the same
  covers share a ``LayerTiming``; its ``ops`` are ORT's op types.

Tensors ORT renames. The NCHWc layout transformer (``ORT_ENABLE_ALL`` on x86)
replaces each convolution and pooling by a ``com.microsoft.nchwc`` node named
``<original output>_nchwc`` whose output is a fresh ``reorder_token_N``,
fuses activations and residual adds into the convolution as well
(``activation="HardSwish"``, a fourth ``Sum`` input), and converts back
through ``ReorderOutput`` (whose output keeps the original name) only where
an NCHW consumer needs it. A renamed tensor is tied to the reference tensor
it stands for by, in order: a ``ReorderInput``/``ReorderOutput`` on either
side (same tensor, other layout); the first input of a consumer whose
reference node is known (the NCHWc convolution named after
``features.1.dw.act``'s output replaced the ``Conv`` found by walking back
from that output, so its input is that ``Conv``'s input); and, last, the
name of an NCHWc node (its output stands for ``<original output>``, which
misses the epilogue it fused).

Unnamed nodes. ORT names the nodes it creates by inlining a function
(``HardSwish`` -> ``HardSigmoid`` + ``Mul``, which the CPU provider has no
kernel for) with an empty name in the optimized file and ``<op>_<index>`` in
the trace. Kernel events come in the order of the file's nodes (checked on
the zoo at every optimizing level: sequential execution runs the same
topological order the file is written in), so such an event is the next
unnamed node of its op type after the last node matched. An event that
matches no node of the file is a row of its own, named after the node.

Times are what ORT's profiler reports: whole microseconds per kernel, with
the profiler's own small overhead. On the CPU provider a kernel's time is
its computation; on an asynchronous provider (CUDA) it is the host-side
launch.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.core.timing import LayerTiming
from lwprof.runtime.backends._ort_trace import EventMatcher, KernelEvent, read_trace
from lwprof.runtime.backends._ort_conversions import Conversions
from lwprof.runtime.precision import INT8_KERNELS
from lwprof.counting.onnx_scopes import node_scopes
from lwprof.counting.onnx_graph import load_onnx, session_options

if TYPE_CHECKING:
    import numpy as np
    import onnx

WARMUP_RUNS = 3

NCHWC_DOMAIN = "com.microsoft.nchwc"
LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput"})  # NCHWc <-> NCHW, same tensor
NCHWC_SUFFIX = "_nchwc"

# Op types that stand for one another when ORT replaces a node by a fused or
# re-laid-out version of it (input 0 is the data input in all of them).
_OP_FAMILIES = {
    "FusedConv": "Conv",
    "FusedGemm": "Gemm",
    "MatMul": "Gemm",
    "FusedMatMul": "Gemm",
}
_GENERATED_SUFFIX = re.compile(r"_token_\d+$")  # Graph::GenerateNodeName's de-duplication


@dataclass(frozen=True)
class NodeRow:
    """The row one optimized-graph node's time goes to."""

    layer: str
    covers: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.layer, self.covers


# ---------------------------------------------------------------------------
# Public API


def layer_timings(
    onnx_path: str | Path,
    feed: Mapping[str, "np.ndarray"],
    threads: int,
    providers: Sequence[str],
    runs: int,
    reference_path: str | Path | None = None,
    optimization_level: str = "ORT_ENABLE_ALL",
    warmup: int = WARMUP_RUNS,
) -> list[LayerTiming]:
    """Per-layer ONNX Runtime latency of ``onnx_path``: one row per layer (or
    fused group of layers), one sample in seconds per timed run, rows in
    execution order.

    The session is set up like a timing session (``threads`` intra-op
    threads, one inter-op thread, sequential execution, errors-only logging)
    with the profiler on; ``warmup`` untimed runs come first. Layer names come
    from ``reference_path`` (the exported graph, default ``onnx_path``).
    """
    if runs < 1:
        raise LwprofError(f"need at least one timed run, got {runs}")
    if warmup < 0:
        raise LwprofError(f"warm-up runs must be 0 or more, got {warmup}")
    path, reference = _load_pair(onnx_path, reference_path)
    with tempfile.TemporaryDirectory(prefix="lwprof-ort-profile-") as folder:
        optimized_path = Path(folder) / "optimized.onnx"
        options = session_options(threads=threads, level=optimization_level, optimized_path=optimized_path,
                                  profile_prefix=os.path.join(folder, "profile"))
        session = _session(path, options, providers)
        trace_path = None
        try:
            for _ in range(warmup + runs):
                session.run(None, dict(feed))
        except Exception as exc:
            raise LwprofError(f"ONNX Runtime cannot run {path}: {one_line(exc)}") from None
        finally:
            trace_path = session.end_profiling()
        optimized = _load_optimized(optimized_path, path)
        events = read_trace(trace_path, warmup, runs)
    return _timings(events, optimized, reference, runs)


def row_names(
    onnx_path: str | Path,
    reference_path: str | Path | None = None,
    optimization_level: str = "ORT_ENABLE_ALL",
) -> list[tuple[str, tuple[str, ...]]]:
    """The (layer, covers) of every row :func:`layer_timings` can give, in
    graph order, without running the graph (one per distinct row of the
    nodes of ORT's optimized graph, on the CPU provider)."""
    path, reference = _load_pair(onnx_path, reference_path)
    with tempfile.TemporaryDirectory(prefix="lwprof-ort-rows-") as folder:
        optimized_path = Path(folder) / "optimized.onnx"
        _session(path, session_options(level=optimization_level, optimized_path=optimized_path), ["CPUExecutionProvider"])
        optimized = _load_optimized(optimized_path, path)
    return list(dict.fromkeys(row.key for row in node_rows(optimized, reference)))


def node_rows(optimized: "onnx.ModelProto", reference: "onnx.ModelProto") -> list[NodeRow]:
    """The row of every node of ``optimized`` (ORT's graph of ``reference``), in graph order."""
    ref_nodes = list(reference.graph.node)
    ref_layers = [scope.layer_name(node.op_type) for node, scope in zip(ref_nodes, node_scopes(reference))]
    producer = {output: index for index, node in enumerate(ref_nodes) for output in node.output if output}
    anchors = _anchors(optimized, reference, producer)
    equivalent = _equivalents(optimized, reference, anchors)
    materialized = set(equivalent.values())
    stops = materialized | _static_values(reference) | {value.name for value in reference.graph.input}
    owned = {anchor for anchor in anchors if anchor is not None}

    rows = []
    placed = node_scopes(optimized, reference=reference)
    conversions = Conversions(reference, ref_layers, producer)
    for node, anchor, scope in zip(optimized.graph.node, anchors, placed):
        kind = conversions.kind(node)
        if kind is not None:
            layer = conversions.layer(node) or scope.layer_name(node.op_type)
            # A container's functional op "features.3 (add)" converted: "features.3 (add, quantize)".
            rows.append(NodeRow(f"{layer[:-1]}, {kind})" if layer.endswith(")") else f"{layer} ({kind})"))
            continue
        starts = [equivalent[o] for o in node.output if o in equivalent]
        inputs = {equivalent[i] for i in node.input if i in equivalent}
        covered = _walk_back(
            starts=[s for s in starts if s not in inputs],
            stops=(stops - set(starts)) | inputs,
            producer=producer,
            nodes=ref_nodes,
            foreign=owned - {anchor},
        )
        layers = tuple(dict.fromkeys(ref_layers[index] for index in sorted(covered)))
        if anchor is not None and node.op_type in INT8_KERNELS:
            # The walk back through a QDQ graph also passes the Q/DQ pairs of the inputs:
            # the layer is the op the int8 kernel replaced.
            head = ref_layers[anchor]
            layers = (head, *(layer for layer in layers if layer != head))
        if layers:
            rows.append(NodeRow(layers[0], layers if len(layers) > 1 else ()))
        else:
            rows.append(NodeRow(scope.layer_name(node.op_type)))
    return rows


# ---------------------------------------------------------------------------
# Sessions and files


def _load_pair(onnx_path: str | Path, reference_path: str | Path | None) -> tuple[Path, "onnx.ModelProto"]:
    path = Path(onnx_path)
    if not path.is_file():
        raise LwprofError(f"{path}: no such ONNX file")
    return path, load_onnx(Path(reference_path) if reference_path is not None else path, external_data=False)


def _load_optimized(optimized_path: Path, source: Path) -> "onnx.ModelProto":
    import onnx

    try:
        return onnx.load(str(optimized_path), load_external_data=False)
    except Exception as exc:
        raise LwprofError(f"ONNX Runtime wrote no readable optimized graph of {source}: {one_line(exc)}") from None


def _session(path: Path, options: Any, providers: Sequence[str]) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:
        raise LwprofError(f"ONNX Runtime cannot load {path}: {one_line(exc)}") from None


# ---------------------------------------------------------------------------
# The trace


def _timings(
    events: list[KernelEvent], optimized: "onnx.ModelProto", reference: "onnx.ModelProto", runs: int
) -> list[LayerTiming]:
    rows = node_rows(optimized, reference)
    matcher = EventMatcher(list(optimized.graph.node))
    microseconds: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    ops: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    current_run = -1
    for event in events:
        if event.run != current_run:
            current_run = event.run
            matcher.new_run()
        index = matcher.node_index(event.node, event.op_type)
        key = rows[index].key if index is not None else (event.node, ())
        microseconds.setdefault(key, [0] * runs)[event.run] += event.microseconds
        ops.setdefault(key, set()).add(event.op_type)
    return [
        LayerTiming(layer, tuple(us / 1e6 for us in samples), covers, tuple(sorted(ops[(layer, covers)])))
        for (layer, covers), samples in microseconds.items()
    ]


# ---------------------------------------------------------------------------
# Optimized graph -> reference graph


def _family(node: Any) -> str:
    return _OP_FAMILIES.get(node.op_type, node.op_type)


def _is_layout(node: Any) -> bool:
    return node.domain == NCHWC_DOMAIN and node.op_type in LAYOUT_OPS


def _nchwc_origin(name: str) -> str | None:
    """``/a/bn/BatchNormalization_output_0_nchwc`` -> the tensor it was named after."""
    base = _GENERATED_SUFFIX.sub("", name)
    return base[: -len(NCHWC_SUFFIX)] if base.endswith(NCHWC_SUFFIX) else None


def _anchors(optimized: "onnx.ModelProto", reference: "onnx.ModelProto", producer: dict[str, int]) -> list[int | None]:
    """The reference node each optimized node replaced, where its name tells it:
    the same name (a kept or fused-into node), ``<name>/<Fusion>/`` (a node an
    ORT fusion created), or ``<tensor>_nchwc`` (an NCHWc node: the first node of
    its own op type walking back from that tensor along first inputs)."""
    ref_nodes = list(reference.graph.node)
    by_name = {node.name: index for index, node in enumerate(ref_nodes) if node.name}
    anchors: list[int | None] = []
    for node in optimized.graph.node:
        anchor = by_name.get(node.name) if node.name else None
        if anchor is None and node.name and node.op_type in INT8_KERNELS:
            # QLinearConv "/features/features.3/dw/conv/Conv_token_127" replaced that Conv.
            anchor = by_name.get(_GENERATED_SUFFIX.sub("", node.name))
        if anchor is None and node.name:
            origin = _nchwc_origin(node.name) if node.domain == NCHWC_DOMAIN else None
            if origin is not None:
                anchor = _walk_to_family(origin, _family(node), ref_nodes, producer)
            elif "/" in node.name:
                prefix = node.name
                while anchor is None and "/" in prefix:
                    prefix = prefix.rsplit("/", 1)[0]
                    anchor = by_name.get(prefix)
        anchors.append(anchor)
    return anchors


def _walk_to_family(value: str, family: str, ref_nodes: list[Any], producer: dict[str, int]) -> int | None:
    seen: set[int] = set()
    index = producer.get(value)
    while index is not None and index not in seen:
        seen.add(index)
        node = ref_nodes[index]
        if _family(node) == family:
            return index
        index = producer.get(node.input[0]) if node.input else None
    return None


def _equivalents(
    optimized: "onnx.ModelProto", reference: "onnx.ModelProto", anchors: list[int | None]
) -> dict[str, str]:
    """Optimized tensor name -> the reference tensor it stands for, where known."""
    ref_values = {value.name for value in reference.graph.input}
    ref_values |= {init.name for init in reference.graph.initializer}
    ref_values |= {output for node in reference.graph.node for output in node.output if output}
    ref_nodes = list(reference.graph.node)
    nodes = list(optimized.graph.node)

    values = {value.name for value in optimized.graph.input} | {init.name for init in optimized.graph.initializer}
    values |= {name for node in nodes for name in [*node.input, *node.output] if name}
    equivalent = {name: name for name in values if name in ref_values}

    changed = True
    while changed:
        changed = False
        for node, anchor in zip(nodes, anchors):
            pairs: list[tuple[str, str]] = []
            if _is_layout(node) and node.input and node.output:
                pairs += [(node.input[0], node.output[0]), (node.output[0], node.input[0])]
            if anchor is not None and node.input and ref_nodes[anchor].input and _family(node) == _family(ref_nodes[anchor]):
                if node.input[0] and node.input[0] not in equivalent:
                    equivalent[node.input[0]] = ref_nodes[anchor].input[0]
                    changed = True
            for known, unknown in pairs:
                if known in equivalent and unknown and unknown not in equivalent:
                    equivalent[unknown] = equivalent[known]
                    changed = True
        if not changed:
            # Last resort: an NCHWc node's output stands for the tensor it is named after.
            for node in nodes:
                origin = _nchwc_origin(node.name) if node.domain == NCHWC_DOMAIN and node.name else None
                if origin in ref_values and node.output and node.output[0] not in equivalent:
                    equivalent[node.output[0]] = origin
                    changed = True
    return equivalent


def _static_values(reference: "onnx.ModelProto") -> set[str]:
    """Reference tensors known before the first inference (ORT folds what computes them)."""
    static = {init.name for init in reference.graph.initializer}
    for node in reference.graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type in ("Constant", "Shape", "Size") or (inputs and all(name in static for name in inputs)):
            static.update(output for output in node.output if output)
    return static


def _walk_back(
    starts: Iterable[str], stops: set[str], producer: dict[str, int], nodes: list[Any], foreign: set[int]
) -> set[int]:
    """Reference nodes between ``starts`` and the ``stops`` (exclusive), never
    entering a node another optimized node replaced (``foreign``)."""
    covered: set[int] = set()
    pending = list(starts)
    first = True
    while pending:
        batch, pending = pending, []
        for value in batch:
            if not first and (not value or value in stops):
                continue
            index = producer.get(value)
            if index is None or index in covered or index in foreign:
                continue
            covered.add(index)
            pending.extend(nodes[index].input)
        first = False
    return covered
