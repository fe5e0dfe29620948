"""The shapes and element types of every tensor of an ONNX graph, and its optimized form.

Input shapes are fixed first (a symbolic leading dimension counts as 1, as in
the loader). Shape inference gives most tensors; the rest, and the graph ONNX
Runtime optimizes the model into, come from ONNX Runtime itself (one run on a
random input, CPUExecutionProvider).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.counting.onnx_graph import session_options
from lwprof.counting.onnx_ops import onnx_op_name

if TYPE_CHECKING:
    import onnx

ORT_OPTIMIZATION_LEVEL = "ORT_ENABLE_EXTENDED"
_FOUR_BIT_TYPES = {"INT4", "UINT4", "FLOAT4E2M1"}




@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    elem_type: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


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


def fix_inputs(
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
                raise LwprofError(f"input shape {shape_text(shape)} for '{value.name}' must be positive integers")
            if declared and (
                len(declared) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(declared, shape))
            ):
                shown = "x".join(str(d) if d is not None else "?" for d in declared)
                raise LwprofError(
                    f"input shape {shape_text(shape)} does not fit input '{value.name}' of {label}, which is {shown}"
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


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def input_elem_type(model: "onnx.ModelProto", name: str) -> int:
    for value in model.graph.input:
        if value.name == name:
            return value.type.tensor_type.elem_type
    return 0


def dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "unknown"


# ---------------------------------------------------------------------------
# ONNX Runtime: the optimized graph, and shapes inference cannot give


def ort_optimized(model: "onnx.ModelProto", label: str) -> "onnx.ModelProto":
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="lwprof-ort-") as folder:
        target = Path(folder) / "optimized.onnx"
        options = session_options(level=ORT_OPTIMIZATION_LEVEL)
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
            probe.SerializeToString(), session_options(level="ORT_DISABLE_ALL"), providers=["CPUExecutionProvider"]
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


def tensor_infos(model: "onnx.ModelProto", label: str) -> dict[str, TensorInfo]:
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


def element_bits(elem_type: int) -> int:
    import onnx

    if onnx.TensorProto.DataType.Name(elem_type) in _FOUR_BIT_TYPES:
        return 4
    try:
        return 8 * onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:
        return 0  # strings and other non-numeric tensors: no fixed size to count


def nbytes(info: TensorInfo) -> int:
    return (info.numel * element_bits(info.elem_type) + 7) // 8


def is_float(elem_type: int) -> bool:
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type)
    return "FLOAT" in name or name == "DOUBLE"  # FLOAT16, BFLOAT16, FLOAT8E4M3FN, ...
