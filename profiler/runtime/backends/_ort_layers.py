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

import bisect
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from lwprof.core.errors import LwprofError
from lwprof.counting.onnx_export import node_scopes, one_line
from lwprof.core.timing import LayerTiming

if TYPE_CHECKING:
    import numpy as np
    import onnx

WARMUP_RUNS = 3
OPTIMIZATION_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_LAYOUT", "ORT_ENABLE_ALL")

NCHWC_DOMAIN = "com.microsoft.nchwc"
LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput"})  # NCHWc <-> NCHW, same tensor
NCHWC_SUFFIX = "_nchwc"
KERNEL_SUFFIX = "_kernel_time"

# Op types that stand for one another when ORT replaces a node by a fused or
# re-laid-out version of it (input 0 is the data input in all of them).
_OP_FAMILIES = {
    "FusedConv": "Conv",
    "FusedGemm": "Gemm",
    "MatMul": "Gemm",
    "FusedMatMul": "Gemm",
}
_GENERATED_SUFFIX = re.compile(r"_token_\d+$")  # Graph::GenerateNodeName's de-duplication
_UNNAMED_EVENT = re.compile(r"^(.+)_(\d+)$")  # the trace's name for an unnamed node: <op>_<index>


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
        options = _session_options(threads, optimization_level, optimized_path)
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
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
        events = _read_trace(trace_path, warmup, runs)
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
        _session(path, _session_options(1, optimization_level, optimized_path), ["CPUExecutionProvider"])
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
    for node, anchor, scope in zip(optimized.graph.node, anchors, placed):
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
    return path, _load_onnx(Path(reference_path) if reference_path is not None else path)


def _load_onnx(path: Path) -> "onnx.ModelProto":
    import onnx

    if not path.is_file():
        raise LwprofError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise LwprofError(f"{path} is not a valid ONNX model: {one_line(exc)}") from None
    if not model.graph.node:
        raise LwprofError(f"{path} is not a valid ONNX model: its graph has no nodes")
    return model


def _load_optimized(optimized_path: Path, source: Path) -> "onnx.ModelProto":
    import onnx

    try:
        return onnx.load(str(optimized_path), load_external_data=False)
    except Exception as exc:
        raise LwprofError(f"ONNX Runtime wrote no readable optimized graph of {source}: {one_line(exc)}") from None


def _session_options(threads: int, level: str, optimized_path: Path) -> Any:
    import onnxruntime as ort

    if level not in OPTIMIZATION_LEVELS or not hasattr(ort.GraphOptimizationLevel, level):
        raise LwprofError(f"unknown ONNX Runtime optimization level {level!r}; use one of {', '.join(OPTIMIZATION_LEVELS)}")
    if threads < 1:
        raise LwprofError(f"need at least one thread, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: failures surface as LwprofError
    options.optimized_model_filepath = str(optimized_path)
    return options


def _session(path: Path, options: Any, providers: Sequence[str]) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:
        raise LwprofError(f"ONNX Runtime cannot load {path}: {one_line(exc)}") from None


# ---------------------------------------------------------------------------
# The trace


@dataclass(frozen=True)
class KernelEvent:
    run: int  # index of the timed run, from 0
    node: str  # the node name as the trace gives it
    op_type: str
    microseconds: int


def _read_trace(trace_path: str, warmup: int, runs: int) -> list[KernelEvent]:
    """The kernel events of the timed runs, in time order."""
    try:
        with open(trace_path, encoding="utf-8") as handle:
            events = json.load(handle)
    except Exception as exc:
        raise LwprofError(f"cannot read ONNX Runtime's profile {trace_path}: {one_line(exc)}") from None
    model_runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if len(model_runs) != warmup + runs:
        raise LwprofError(
            f"ONNX Runtime's profile has {len(model_runs)} model_run events for {warmup + runs} runs; "
            "cannot split kernel times per run"
        )
    starts = [start for start, _ in model_runs]
    kernels = []
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        ts = int(event["ts"])
        run = bisect.bisect_right(starts, ts) - 1
        if run < warmup or ts > model_runs[run][1]:
            continue  # a warm-up run's, or outside every run
        args = event.get("args", {})
        kernels.append((ts, KernelEvent(run - warmup, name[: -len(KERNEL_SUFFIX)], args.get("op_name", ""), int(event["dur"]))))
    kernels.sort(key=lambda item: item[0])
    return [event for _, event in kernels]


def _timings(
    events: list[KernelEvent], optimized: "onnx.ModelProto", reference: "onnx.ModelProto", runs: int
) -> list[LayerTiming]:
    rows = node_rows(optimized, reference)
    matcher = _EventMatcher(list(optimized.graph.node))
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


class _EventMatcher:
    """Trace node names -> optimized-graph node indices.

    A named node is found by name. An unnamed one appears in the trace as
    ``<op>_<index>`` and is matched, within a run, to the next unnamed node
    of that op type after the last node matched (events follow file order);
    the match is kept for the later runs.
    """

    def __init__(self, nodes: list[Any]):
        self.nodes = nodes
        self.by_name: dict[str, int] = {}
        for index, node in enumerate(nodes):
            if node.name:
                self.by_name.setdefault(node.name, index)
        self.matched: dict[str, int | None] = {}
        self.claimed: set[int] = set()
        self.cursor = -1

    def new_run(self) -> None:
        self.cursor = -1

    def node_index(self, name: str, op_type: str) -> int | None:
        index = self.by_name.get(name)
        if index is None:
            if name not in self.matched:
                self.matched[name] = self._unnamed(name, op_type)
            index = self.matched[name]
        if index is not None:
            self.cursor = index
        return index

    def _unnamed(self, name: str, op_type: str) -> int | None:
        match = _UNNAMED_EVENT.match(name)
        if match is None or match.group(1) != op_type:
            return None
        candidates = [
            i
            for i, node in enumerate(self.nodes)
            if not node.name and node.op_type == op_type and i not in self.claimed
        ]
        after = [i for i in candidates if i > self.cursor]
        chosen = (after or candidates or [None])[0]
        if chosen is not None:
            self.claimed.add(chosen)
        return chosen


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
