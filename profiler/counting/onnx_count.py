"""Analytic counts of an ONNX graph, with the conventions of the PyTorch count.

:func:`analyze_onnx` returns the same :class:`~lwprof.core.records.ModelProfile`
as ``lwprof.analyze``: one :class:`~lwprof.core.records.OpRecord` per executed
node (MACs and FLOPs from the formula table :mod:`lwprof.counting.onnx_ops`; bytes
read = every data input, initializers included, bytes written = every
output, each at its element size), the fused view from the same rule
(:func:`lwprof.counting.fusion.apply_fusion`), rows per PyTorch layer where the
exporter's name scopes tell it (:mod:`lwprof.counting.onnx_export`), else per node.
Kernel arguments are not data: the inputs ``lwprof.counting.onnx_ops.ARGUMENT_INPUTS``
lists (a Clip's bounds, a Slice's ends, a Resize's scales) and rank-0
constants (a scale), which eager PyTorch passes as Python numbers.

Shapes come from ONNX shape inference after the graph inputs are fixed to
``input_shape``; a tensor it leaves unknown (an ONNX Runtime contrib op, a
custom op with no schema) is measured by running the graph once in ONNX
Runtime with every intermediate tensor as an output.

What runs per inference, and so what is counted:

- ``Constant`` nodes, initializers, and every node whose inputs are all
  known before the first inference (``Shape`` of a fixed-shape tensor and
  the integer arithmetic after it, a transpose of a weight) are folded by
  the runtime when it loads the model: no record, no cost;
- ``lwprof.counting.onnx_ops.FREE_OPS`` (Reshape, Flatten, Squeeze, ...) alias their
  input: no record, like eager views;
- every other node is a record; one without a formula is *unsupported*
  (listed in ``unsupported_ops``, its memory traffic still counted).

``params`` counts the weights the graph stores: floating-point initializers
read by a counted node, excluding BatchNormalization running statistics
(buffers, not parameters, in PyTorch). An initializer the TorchScript exporter
de-duplicated by value (``Identity`` of another initializer) is a parameter of
its own, as it was in PyTorch. On the ORT-optimized graph it counts what ORT
keeps: BatchNorm folded into the convolutions' weights and biases.

``optimized=True`` counts the graph ONNX Runtime writes out
(``SessionOptions.optimized_model_filepath``, CPUExecutionProvider) at
``ORT_ENABLE_EXTENDED``: constant folding, Conv+BatchNorm folding,
Conv/Gemm + activation fusion (``com.microsoft.FusedConv``), SiLU ->
``QuickGelu``, MatMul + Add -> Gemm, MatMul + scale -> ``FusedMatMul``,
Add + LayerNorm -> ``SkipLayerNormalization``. ``ORT_ENABLE_ALL`` adds the
NCHWc layout transformer, whose graph depends on the host's SIMD width (ORT
warns that such a model "should only be used in the same environment"), so
its counts would change from machine to machine; EXTENDED is the highest
level whose graph is the same on every CPU.

Agreement with the PyTorch count (``lwprof.analyze``), measured once on all
44 zoo models exported by :func:`lwprof.counting.onnx_export.export_onnx` (batch 1,
default inputs, opset 17; torch 2.13, onnx 1.23, onnxruntime 1.31):

- MACs (conv + Gemm + MatMul), FLOPs and params: identical on every model,
  and per layer: every PyTorch row exists in the ONNX count under the same
  name with the same MACs, FLOPs, params and module type.
- memory access, eager column, ONNX / PyTorch: 0.9586 (squeezenet_1_0) to
  1.4290 (mobilevit_s); identical to the byte on 20 models (mobilenet v1/v2/
  v3, mnasnet, mobilenext, pplcnet). Fused column: 0.9387 to 2.3076. The
  tests allow 0.95-1.45 for the eager column.
- On 41 of the 44 models the difference is *exactly* the sum of the first
  three reasons below; on mobilevit_xxs/xs/s the fourth leaves 4.4-6.3 %.
- ORT-optimized graph: the same MACs on every model; memory access 0.38
  (mobilenet_v1_025) to 0.88 (mobilenet_v3_small_100) of the exported
  graph's, except pplcnet (1.12-1.14: more). ONNX Runtime's CPU provider has
  no HardSwish kernel and inlines it, at every optimization level, as
  HardSigmoid + Mul, which re-reads the input; pplcnet's 28 hard-swishes cost
  more than its BatchNorm folding saves (mobilenet_v3 pays the same toll).

The gap is the graphs, not the counting:

1. Max-pooling: eager ``max_pool2d_with_indices`` also writes int64 indices
   (8 bytes per output element); ONNX ``MaxPool`` writes the values only
   (squeezenet -4.1 %, resnet, shufflenet_v1, xception).
2. SiLU: no ONNX op before opset 24 (Swish), so it exports as Sigmoid + Mul, three
   more tensor passes than eager ``silu`` (efficientnet_b0 +35 %, mobilevit).
3. ``chunk`` and channel slicing are free views in eager PyTorch, ``Split``/
   ``Slice`` copies in ONNX (ghostnet +16 %; shufflenet_v2 +7 to +12 %, net
   of its max-pool).
4. mobilevit only: a Linear on token tensors exports as MatMul + Add (the
   bias add is a second pass over the output, where eager ``addmm`` adds it
   in the product); the attention's ``Split`` of q, k, v; three Transposes
   against eager's four clones; eager ``native_layer_norm`` also writes its
   mean and reciprocal deviation.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.records import LayerCost, ModelProfile, OpRecord
from lwprof.core.text import one_line
from lwprof.counting import ops as op_table
from lwprof.counting.aggregate import aggregate_layers
from lwprof.counting.fusion import apply_fusion
from lwprof.counting import onnx_int8_ops  # noqa: F401  (registers the int8 formulas)
from lwprof.counting.onnx_export import export_info
from lwprof.counting.onnx_scopes import NodeScope, node_scopes
from lwprof.counting.onnx_graph import checked, load_onnx
from lwprof.counting.onnx_ops import OnnxCall, is_argument_input, is_free_op, onnx_formula_for, onnx_op_name
from lwprof.counting.onnx_shapes import (
    TensorInfo,
    dtype_name,
    fix_inputs,
    input_elem_type,
    is_float,
    nbytes,
    ort_optimized,
    shape_text,
    tensor_infos,
)

if TYPE_CHECKING:
    import onnx


# BatchNormalization inputs 3 and 4 are the running mean and variance.
_RUNNING_STATISTICS = {("BatchNormalization", 3), ("BatchNormalization", 4)}
def analyze_onnx(
    path_or_model: "str | Path | onnx.ModelProto",
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    name: str | None = None,
    optimized: bool = False,
) -> ModelProfile:
    """Per-layer FLOPs, MACs, params and memory access of an ONNX graph.

    ``input_shape`` fixes the first graph input (or, as a mapping, inputs by
    name); without it the graph's own static shape is used, a symbolic
    leading (batch) dimension counting as 1. ``optimized=True`` counts the
    graph ONNX Runtime optimizes it into (see the module docstring).
    """
    source, label = _load(path_or_model)
    fixed, shapes = fix_inputs(source, input_shape, label)
    counted = ort_optimized(fixed, label) if optimized else fixed
    scopes = node_scopes(counted, reference=fixed if optimized else None)
    tensors = tensor_infos(counted, label)
    records, inputs_from, claims = _records(counted, tensors, scopes, label)
    for record in records:
        record.memory_bytes_fused = record.memory_bytes
    apply_fusion(records, inputs_from)
    module_types = {scope.module_path: scope.module_type for scope in scopes if not scope.row}
    layers = _aggregate(records, claims, module_types)
    unsupported = Counter(rec.op for rec in records if not rec.supported)
    first_input = next(iter(shapes))
    return ModelProfile(
        model=name or export_info(source).get("model") or _stem(path_or_model) or source.graph.name or "onnx",
        input_shape=shapes[first_input],
        dtype=dtype_name(input_elem_type(fixed, first_input)),
        params=sum(sum(weights.values()) for weights in claims.values()),
        layers=layers,
        ops=records,
        unsupported_ops=dict(sorted(unsupported.items())),
    )


# ---------------------------------------------------------------------------
# Loading and input shapes


def _stem(path_or_model: Any) -> str | None:
    return Path(path_or_model).stem if isinstance(path_or_model, (str, Path)) else None


def _load(path_or_model: Any) -> tuple["onnx.ModelProto", str]:
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(path_or_model)
        label = f"ONNX model '{model.graph.name}'"
        return checked(model, label), label
    return load_onnx(path_or_model, check=True), str(Path(path_or_model))


# ---------------------------------------------------------------------------
# Records


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}


def _records(
    model: "onnx.ModelProto",
    tensors: dict[str, TensorInfo],
    scopes: list[NodeScope],
    label: str,
) -> tuple[list[OpRecord], list[list[int | None]], dict[int, dict[str, int]]]:
    """One record per executed node, the producer of each runtime input, and
    the weights (name -> elements) each record is the first to read."""
    initializers = {init.name for init in model.graph.initializer}
    # Rank-0 floats are constant operands (a scale, a bound), not weight tensors.
    weights = {name for name in initializers if is_float(tensors[name].elem_type) and tensors[name].shape}
    static = set(initializers)  # known before the first inference
    origins: dict[str, set[str]] = {name: {name} for name in weights}  # static value -> weights behind it
    producer: dict[str, int] = {}
    records: list[OpRecord] = []
    inputs_from: list[list[int | None]] = []
    claims: dict[int, dict[str, int]] = {}
    claimed: set[str] = set()

    for node, scope in zip(model.graph.node, scopes):
        inputs = [name for name in node.input if name]
        outputs = [name for name in node.output if name]
        is_default_domain = node.domain in ("", "ai.onnx")
        if is_default_domain and node.op_type in ("Shape", "Size") and inputs and inputs[0] in tensors:
            static.update(outputs)  # the shape is fixed: folded at load time
            continue
        if (is_default_domain and node.op_type == "Constant") or (inputs and all(i in static for i in inputs)):
            static.update(outputs)
            behind = set().union(*(origins.get(i, set()) for i in inputs)) if inputs else set()
            for output in outputs:
                if is_default_domain and node.op_type == "Identity" and inputs[0] in weights:
                    # The exporter's de-duplication of equal-valued parameters.
                    weights.add(output)
                    origins[output] = {output}
                    tensors.setdefault(output, tensors[inputs[0]])
                elif behind:
                    origins[output] = behind
            continue
        runtime_inputs = [name for name in inputs if name not in static]
        if is_free_op(node.op_type, node.domain):
            source = producer.get(runtime_inputs[0]) if runtime_inputs else None
            if source is not None:
                for output in outputs:
                    producer[output] = source
            continue

        op = onnx_op_name(node.op_type, node.domain)
        missing = next((name for name in inputs + outputs if name not in tensors), None)
        if missing is not None:
            raise LwprofError(f"{label}: tensor '{missing}' of {op} node '{node.name}' has no known shape")
        formula = onnx_formula_for(node.op_type, node.domain)
        input_shapes = tuple(tensors[name].shape if name else None for name in node.input)
        output_shapes = tuple(tensors[name].shape for name in outputs)
        if formula is None:
            cost = op_table.OpCost(0, 0, op_table.UNSUPPORTED)
        else:
            call = OnnxCall(node.op_type, node.domain, _attributes(node), input_shapes, output_shapes)
            try:
                cost = formula(call)
            except Exception as exc:
                shapes = ", ".join(shape_text(s) if s is not None else "-" for s in input_shapes)
                raise LwprofError(
                    f"cannot cost {op} node '{node.name}' with input shapes {shapes}: {one_line(exc)}"
                ) from None

        # Data inputs: what the kernel reads from memory. Argument inputs
        # (a Clip's bounds, a Slice's ends) and rank-0 constants (a scale) are
        # kernel arguments, as the Python scalars they were in eager PyTorch.
        data_inputs = [
            (position, name)
            for position, name in enumerate(node.input)
            if name
            and not is_argument_input(op, position)
            and not (name in static and not tensors[name].shape)
        ]
        index = len(records)
        mine: dict[str, int] = {}
        for position, name in data_inputs:
            if is_default_domain and (node.op_type, position) in _RUNNING_STATISTICS:
                continue
            for weight in origins.get(name, set()):
                if weight not in claimed:
                    claimed.add(weight)
                    mine[weight] = tensors[weight].numel
        if mine:
            claims[index] = mine
        read = list(dict.fromkeys(name for _, name in data_inputs))
        record = OpRecord(
            index=index,
            op=op,
            layer=scope.layer_name(node.op_type),
            module_path=scope.module_path,
            op_class=cost.op_class,
            macs=int(cost.macs),
            flops=int(cost.flops),
            bytes_read=sum(nbytes(tensors[name]) for name in read),
            bytes_written=sum(nbytes(tensors[name]) for name in dict.fromkeys(outputs)),
            supported=formula is not None,
            input_shapes=tuple(tensors[name].shape for _, name in data_inputs),
            output_shapes=output_shapes,
        )
        records.append(record)
        # Fusion follows runtime tensors only: weights and folded constants
        # (a Clip's bounds) are not producers.
        inputs_from.append([producer.get(name) for _, name in data_inputs if name not in static])
        for output in outputs:
            producer[output] = index
    return records, inputs_from, claims


# ---------------------------------------------------------------------------
# Layers


def _aggregate(
    records: list[OpRecord],
    claims: dict[int, dict[str, int]],
    module_types: dict[str, str],
) -> list[LayerCost]:
    def on_record(rec: OpRecord, layer: LayerCost) -> None:
        layer.params += sum(claims.get(rec.index, {}).values())

    layers = aggregate_layers(records, lambda rec: module_types.get(rec.module_path, ""), on_record=on_record)
    for layer in layers:
        # A leaf module run k times runs each of its ops k times.
        layer.calls = max(layer.ops.values()) if layer.name == (layer.module_path or "<root>") else sum(layer.ops.values())
    return layers
