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

import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lwprof.counting import ops as op_table
from lwprof.core.errors import LwprofError
from lwprof.counting.fusion import apply_fusion
from lwprof.counting.onnx_export import NodeScope, export_info, node_scopes, one_line
from lwprof.counting.onnx_ops import OnnxCall, is_argument_input, is_free_op, onnx_formula_for, onnx_op_name
from lwprof.core.records import LayerCost, ModelProfile, OpRecord

if TYPE_CHECKING:
    import onnx

ORT_OPTIMIZATION_LEVEL = "ORT_ENABLE_EXTENDED"

# BatchNormalization inputs 3 and 4 are the running mean and variance.
_RUNNING_STATISTICS = {("BatchNormalization", 3), ("BatchNormalization", 4)}
_FOUR_BIT_TYPES = {"INT4", "UINT4", "FLOAT4E2M1"}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    elem_type: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


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
    fixed, shapes = _fix_inputs(source, input_shape, label)
    counted = _ort_optimized(fixed, label) if optimized else fixed
    scopes = node_scopes(counted, reference=fixed if optimized else None)
    tensors = _tensor_infos(counted, label)
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
        dtype=_dtype_name(_input_elem_type(fixed, first_input)),
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
    else:
        path = Path(path_or_model)
        label = str(path)
        if not path.is_file():
            raise LwprofError(f"{path}: no such ONNX file")
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise LwprofError(f"{path} is not a valid ONNX model: {one_line(exc)}") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        # An op the checker has no schema for is still counted (as unsupported).
        if not str(exc).startswith("No Op registered for"):
            raise LwprofError(f"{label} is not a valid ONNX model: {one_line(exc)}") from None
    if not model.graph.node:
        raise LwprofError(f"{label} is not a valid ONNX model: its graph has no nodes")
    return model, label


def _graph_inputs(model: "onnx.ModelProto") -> list[Any]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _declared_dims(value: Any) -> list[int | str | None]:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return []
    dims: list[int | str | None] = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(dim.dim_value)
        else:
            dims.append(dim.dim_param or None)
    return dims


def _fix_inputs(
    model: "onnx.ModelProto",
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None,
    label: str,
) -> tuple["onnx.ModelProto", dict[str, tuple[int, ...]]]:
    """A copy of ``model`` whose graph inputs all have static shapes."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inputs = _graph_inputs(fixed)
    if not inputs:
        raise LwprofError(f"{label} has no graph input to feed")
    if input_shape is None:
        wanted: dict[str, Sequence[int]] = {}
    elif isinstance(input_shape, Mapping):
        wanted = dict(input_shape)
        unknown = set(wanted) - {value.name for value in inputs}
        if unknown:
            names = [v.name for v in inputs]
            raise LwprofError(f"{label} has no input named {sorted(unknown)[0]!r}; its inputs are {names}")
    else:
        wanted = {inputs[0].name: input_shape}

    shapes: dict[str, tuple[int, ...]] = {}
    for value in inputs:
        declared = _declared_dims(value)
        if value.name in wanted:
            shape = tuple(int(d) for d in wanted[value.name])
            if any(d <= 0 for d in shape):
                raise LwprofError(f"input shape {_fmt(shape)} for '{value.name}' must be positive integers")
            if declared and (
                len(declared) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(declared, shape))
            ):
                shown = "x".join(str(d) if d is not None else "?" for d in declared)
                raise LwprofError(
                    f"input shape {_fmt(shape)} does not fit input '{value.name}' of {label}, which is {shown}"
                )
        else:
            if not declared:
                raise LwprofError(f"input '{value.name}' of {label} declares no shape; pass input_shape")
            # A symbolic leading (batch) dimension counts as 1, as in the loader.
            dims = [1 if i == 0 and not isinstance(d, int) else d for i, d in enumerate(declared)]
            if not all(isinstance(d, int) for d in dims):
                shown = "x".join(str(d) if d is not None else "?" for d in declared)
                raise LwprofError(f"input '{value.name}' of {label} has dynamic dimensions ({shown}); pass input_shape")
            shape = tuple(int(d) for d in dims)
        shapes[value.name] = shape
        tensor_shape = value.type.tensor_type.shape
        tensor_shape.ClearField("dim")
        for d in shape:
            tensor_shape.dim.add().dim_value = d
    return fixed, shapes


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _input_elem_type(model: "onnx.ModelProto", name: str) -> int:
    for value in model.graph.input:
        if value.name == name:
            return value.type.tensor_type.elem_type
    return 0


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "unknown"


# ---------------------------------------------------------------------------
# ONNX Runtime: the optimized graph, and shapes inference cannot give


def _session_options(level: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3  # errors only: failures surface as LwprofError
    options.intra_op_num_threads = 1  # a count, not a benchmark
    return options


def _ort_optimized(model: "onnx.ModelProto", label: str) -> "onnx.ModelProto":
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="lwprof-ort-") as folder:
        target = Path(folder) / "optimized.onnx"
        options = _session_options(ORT_OPTIMIZATION_LEVEL)
        options.optimized_model_filepath = str(target)
        try:
            # From bytes, so weights stored beside the file end up inline.
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return onnx.load(str(target))
        except Exception as exc:
            raise LwprofError(f"ONNX Runtime cannot optimize {label}: {one_line(exc)}") from None


def _random_feed(model: "onnx.ModelProto") -> dict[str, Any]:
    import numpy as np
    import onnx

    generator = np.random.default_rng(0)
    feed = {}
    for value in _graph_inputs(model):
        tensor = value.type.tensor_type
        shape = [d.dim_value for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.floating):
            feed[value.name] = generator.standard_normal(shape).astype(dtype)
        else:
            feed[value.name] = np.zeros(shape, dtype=dtype)  # valid indices for any table
    return feed


def _measure(model: "onnx.ModelProto", names: list[str], label: str) -> dict[str, TensorInfo]:
    """Shapes of ``names`` from one ONNX Runtime run with them as graph outputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        session = ort.InferenceSession(
            probe.SerializeToString(), _session_options("ORT_DISABLE_ALL"), providers=["CPUExecutionProvider"]
        )
        values = session.run(names, _random_feed(model))
    except Exception as exc:
        producer = next((n for n in model.graph.node if names[0] in n.output), None)
        where = ""
        if producer is not None:
            where = f" (output of {onnx_op_name(producer.op_type, producer.domain)} node '{producer.name}')"
        raise LwprofError(
            f"cannot determine the shape of tensor '{names[0]}'{where} in {label}: ONNX shape inference "
            f"does not know it and ONNX Runtime cannot run the graph ({one_line(exc)}); add its value_info"
        ) from None
    measured = {}
    for name, value in zip(names, values):
        array = np.asarray(value)
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
        measured[name] = TensorInfo(tuple(int(d) for d in array.shape), elem_type)
    return measured


def _tensor_infos(model: "onnx.ModelProto", label: str) -> dict[str, TensorInfo]:
    """Shape and element type of every initializer, graph input and node output."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:
        inferred = model  # what inference cannot give, ONNX Runtime measures below
    infos: dict[str, TensorInfo] = {}
    for init in inferred.graph.initializer:
        infos[init.name] = TensorInfo(tuple(int(d) for d in init.dims), init.data_type)
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.name in infos or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        if not tensor.HasField("shape") or not tensor.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if all(d >= 0 for d in dims):
            infos[value.name] = TensorInfo(tuple(dims), tensor.elem_type)
    unknown = [o for node in model.graph.node for o in node.output if o and o not in infos]
    if unknown:
        infos.update(_measure(model, list(dict.fromkeys(unknown)), label))
    return infos


def _element_bits(elem_type: int) -> int:
    import onnx

    if onnx.TensorProto.DataType.Name(elem_type) in _FOUR_BIT_TYPES:
        return 4
    try:
        return 8 * onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:
        return 0  # strings and other non-numeric tensors: no fixed size to count


def _nbytes(info: TensorInfo) -> int:
    return (info.numel * _element_bits(info.elem_type) + 7) // 8


def _is_float(elem_type: int) -> bool:
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type)
    return "FLOAT" in name or name == "DOUBLE"  # FLOAT16, BFLOAT16, FLOAT8E4M3FN, ...


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
    weights = {name for name in initializers if _is_float(tensors[name].elem_type) and tensors[name].shape}
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
                shapes = ", ".join(_fmt(s) if s is not None else "-" for s in input_shapes)
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
            bytes_read=sum(_nbytes(tensors[name]) for name in read),
            bytes_written=sum(_nbytes(tensors[name]) for name in dict.fromkeys(outputs)),
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
    layers: dict[str, LayerCost] = {}
    per_op_type: dict[str, Counter] = {}
    class_weight: dict[str, dict[str, tuple[int, int]]] = {}
    for rec in records:
        layer = layers.get(rec.layer)
        if layer is None:
            layer = LayerCost(
                name=rec.layer,
                module_path=rec.module_path,
                module_type=module_types.get(rec.module_path, ""),
                input_shape=rec.input_shapes[0] if rec.input_shapes else (),
                output_shape=rec.output_shapes[0] if rec.output_shapes else (),
            )
            layers[rec.layer] = layer
            per_op_type[rec.layer] = Counter()
        per_op_type[rec.layer][rec.op] += 1
        layer.ops[rec.op] += 1
        if not rec.supported:
            layer.unsupported_ops[rec.op] += 1
        layer.params += sum(claims.get(rec.index, {}).values())
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
        if layer.name == (layer.module_path or "<root>"):
            # A leaf module run k times runs each of its ops k times.
            layer.calls = max(per_op_type[layer.name].values())
        else:
            layer.calls = sum(per_op_type[layer.name].values())
    return list(layers.values())
