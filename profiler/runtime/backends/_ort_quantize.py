"""ONNX Runtime int8: static QDQ quantization, cached, and what the runtime made of it.

:func:`quantized_onnx` turns an fp32 ONNX file into the int8 model a user
would make with ONNX Runtime's own tools: ``quant_pre_process`` (shape
inference and graph optimization, as the quantization docs ask), then
``quantize_static`` in QDQ format with the :class:`~lwprof.runtime.precision.Int8Recipe`
(weight and activation types, per-channel weights, MinMax calibration on the
recipe's inputs). The result is cached beside the fp32 export, keyed on the
fp32 file's bytes, the recipe (calibration files' bytes included) and the
onnxruntime version, so a second run reuses it.

A QDQ graph says what *may* run in int8; ORT's optimizer decides what does,
by fusing DequantizeLinear -> op -> QuantizeLinear into an int8 kernel
(``QLinearConv``, ``QLinearAdd``, ...) where it has one for the pattern.
:func:`precision_report` reads ORT's optimized graph of the int8 model and
lists which layers ran in int8 and which stayed in float, with the reason
the graph shows.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.runtime.precision import CONVERSION_OPS, INT8_KERNELS

if TYPE_CHECKING:
    import onnx

    from lwprof.runtime.precision import Int8Recipe

# Nodes that move data without computing: neither a float layer nor an int8 one.
_DATA_MOVEMENT = frozenset({
    "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Gather", "Slice", "Concat", "Split",
    "Identity", "ReorderInput", "ReorderOutput", "Constant", "Expand", "Pad", "MaxPool", "Resize", "DepthToSpace",
    "SpaceToDepth", "Tile",
})


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quantized_onnx(fp32_path: Path, input_shape: Sequence[int], recipe: "Int8Recipe", cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The int8 model of ``fp32_path`` (cached), and the record of how it was made."""
    import onnxruntime as ort

    from lwprof.runtime.precision import calibration_inputs

    fp32_path = Path(fp32_path)
    key = hashlib.blake2b(f"{_file_digest(fp32_path)}|{recipe.digest()}|{ort.__version__}".encode(), digest_size=8).hexdigest()
    folder = Path(cache_dir) / "onnx"
    target = folder / f"{fp32_path.stem}.int8-{recipe.scheme}-{key}.onnx"
    info = {
        "quantizer": f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__})",
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
        "format": "QDQ",
        **recipe.to_dict(),
        "calibration": (f"{len(recipe.calibration_files())} .npy files in {recipe.calibration_dir}" if recipe.calibration_dir
                        else f"{recipe.calibration_inputs} standard-normal inputs, seeds 1-{recipe.calibration_inputs}"),
        "fp32_onnx_path": str(fp32_path),
        "int8_onnx_path": str(target),
    }
    if target.is_file():
        return target, {**info, "quantize_cached": True, "quantize_s": 0.0}
    started = time.perf_counter()
    inputs = calibration_inputs(recipe, input_shape)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lwprof-quantize-", dir=folder) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        written = Path(scratch) / "int8.onnx"
        try:
            _quantize(fp32_path, prepared, written, inputs, recipe)
        except LwprofError:
            raise
        except Exception as exc:
            raise LwprofError(f"ONNX Runtime cannot quantize {fp32_path.name}: {one_line(exc)}") from None
        os.replace(written, target)
    return target, {**info, "quantize_cached": False, "quantize_s": time.perf_counter() - started}


def _quantize(source: Path, prepared: Path, written: Path, inputs: list[Any], recipe: "Int8Recipe") -> None:
    import logging

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lwprof.counting.onnx_graph import load_onnx

    input_name = load_onnx(source, external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(inputs)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.pending, None)
            return None if x is None else {input_name: x}

    # The quantizer logs a warning per model ("Please consider to run pre-processing"
    # even after it): the run records what was done instead.
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared), str(written), Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8 if recipe.activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=recipe.per_channel,
        calibrate_method=getattr(CalibrationMethod, recipe.method),
    )


def optimized_graph(onnx_path: Path, threads: int, providers: Sequence[str]) -> "onnx.ModelProto":
    """ONNX Runtime's optimized graph of ``onnx_path`` as a timing session builds it."""
    import onnx
    import onnxruntime as ort

    from lwprof.counting.onnx_graph import session_options

    with tempfile.TemporaryDirectory(prefix="lwprof-ort-optimized-") as folder:
        written = Path(folder) / "optimized.onnx"
        options = session_options(threads=threads, level="ORT_ENABLE_ALL", optimized_path=written)
        try:
            ort.InferenceSession(str(onnx_path), options, providers=list(providers))
            return onnx.load(str(written), load_external_data=False)
        except Exception as exc:
            raise LwprofError(f"ONNX Runtime cannot optimize {Path(onnx_path).name}: {one_line(exc)}") from None


def precision_report(int8_path: Path, threads: int, providers: Sequence[str]) -> dict[str, Any]:
    """Which layers of the int8 model ran in int8 and which stayed in float.

    Read from ORT's optimized graph, each computing node's row named as the
    per-layer times name it: int8 when it is one of :data:`INT8_KERNELS`,
    float otherwise, with the reason the graph shows: the quantizer put no
    QuantizeLinear/DequantizeLinear around the op (it does not quantize that
    op type), or it did and ORT kept the op in float (no int8 kernel for that
    pattern on this provider). Conversion nodes (the tax) are counted apart."""
    from lwprof.counting.onnx_graph import load_onnx
    from lwprof.runtime.backends._ort_layers import node_rows

    reference = load_onnx(int8_path, external_data=False)
    optimized = optimized_graph(int8_path, threads, providers)
    quantized_in_qdq = _qdq_wrapped_nodes(reference)
    rows = node_rows(optimized, reference)
    int8_layers: dict[str, str] = {}
    float_layers: dict[str, dict[str, str]] = {}
    conversions: dict[str, int] = {}
    for node, row in zip(optimized.graph.node, rows):
        if node.op_type in CONVERSION_OPS:
            conversions[node.op_type] = conversions.get(node.op_type, 0) + 1
        elif node.op_type in INT8_KERNELS:
            int8_layers.setdefault(row.layer, node.op_type)
        elif node.op_type not in _DATA_MOVEMENT and not node.domain.endswith("nchwc"):
            if row.layer in float_layers or row.layer in int8_layers:
                continue
            if node.name in quantized_in_qdq or _base_name(node.name) in quantized_in_qdq:
                reason = (f"quantized in the QDQ graph, but ONNX Runtime has no int8 kernel for this {node.op_type} "
                          f"pattern on {providers[0]}: it dequantizes, runs {node.op_type} in float and quantizes again")
            else:
                reason = f"the quantizer left {node.op_type} in float (no QuantizeLinear/DequantizeLinear around it)"
            float_layers[row.layer] = {"op": node.op_type, "reason": reason}
    for layer in int8_layers:
        float_layers.pop(layer, None)
    return {
        "int8_layers": len(int8_layers),
        "float_layers": [{"layer": layer, **detail} for layer, detail in float_layers.items()],
        "conversion_nodes": conversions,
        "optimized_op_counts": _op_counts(optimized),
    }


def _base_name(name: str) -> str:
    from lwprof.runtime.backends._ort_layers import _GENERATED_SUFFIX

    return _GENERATED_SUFFIX.sub("", name)


def _qdq_wrapped_nodes(graph: "onnx.ModelProto") -> set[str]:
    """Names of the QDQ graph's nodes whose data input comes from a DequantizeLinear."""
    dequantized = {node.output[0] for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    return {node.name for node in graph.graph.node
            if node.op_type not in CONVERSION_OPS and node.input and node.input[0] in dequantized}


def _op_counts(graph: "onnx.ModelProto") -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def half_onnx(fp32_path: Path, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The fp16 model of ``fp32_path`` (cached): every float initializer and
    tensor in fp16 by ``onnxruntime.transformers.float16``, the graph's inputs
    and outputs kept fp32 (so it is fed and compared like the fp32 model)."""
    import onnx
    import onnxruntime as ort

    fp32_path = Path(fp32_path)
    key = hashlib.blake2b(f"{_file_digest(fp32_path)}|fp16|{ort.__version__}".encode(), digest_size=8).hexdigest()
    target = Path(cache_dir) / "onnx" / f"{fp32_path.stem}.fp16-{key}.onnx"
    info = {"converter": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
            "fp32_onnx_path": str(fp32_path), "fp16_onnx_path": str(target)}
    if target.is_file():
        return target, {**info, "convert_cached": True, "convert_s": 0.0}
    from onnxruntime.transformers.float16 import convert_float_to_float16

    started = time.perf_counter()
    try:
        converted = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    except Exception as exc:
        raise LwprofError(f"cannot convert {fp32_path.name} to fp16: {one_line(exc)}") from None
    _sort_topologically(converted.graph)  # the converter appends the input casts after their consumers
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    onnx.save(converted, str(partial))
    os.replace(partial, target)
    return target, {**info, "convert_cached": False, "convert_s": time.perf_counter() - started}


def _sort_topologically(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable otherwise)."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise LwprofError("the fp16 graph has a cycle or an input nothing produces")
        chosen = set(map(id, ready))
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if id(node) not in chosen]
    del graph.node[:]
    graph.node.extend(ordered)


def half_report(fp16_path: Path, threads: int, providers: Sequence[str]) -> dict[str, Any]:
    """Which layers of the fp16 model ran in fp16: a computing node of ORT's
    optimized graph fed by a Cast the runtime inserted (to fp32, for an op its
    provider has no fp16 kernel for) ran in fp32."""
    from onnx import TensorProto

    from lwprof.counting.onnx_graph import load_onnx
    from lwprof.runtime.backends._ort_layers import node_rows

    reference = load_onnx(fp16_path, external_data=False)
    optimized = optimized_graph(fp16_path, threads, providers)
    own = {node.name for node in reference.graph.node if node.name}
    to_float = {node.output[0] for node in optimized.graph.node
                if node.op_type == "Cast" and node.name not in own
                and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)}
    rows = node_rows(optimized, reference)
    half_layers: set[str] = set()
    float_layers: dict[str, dict[str, str]] = {}
    inserted = 0
    for node, row in zip(optimized.graph.node, rows):
        if node.op_type == "Cast" and node.name not in own:
            inserted += 1
        elif node.op_type not in _DATA_MOVEMENT and node.op_type not in CONVERSION_OPS and not node.domain.endswith("nchwc"):
            if any(name in to_float for name in node.input):
                float_layers.setdefault(row.layer, {"op": node.op_type, "reason": (
                    f"{providers[0]} has no fp16 kernel for {node.op_type}: ONNX Runtime casts its inputs to fp32, "
                    "runs it in fp32 and casts back")})
            else:
                half_layers.add(row.layer)
    half_layers -= set(float_layers)
    return {
        "fp16_layers": len(half_layers),
        "float_layers": [{"layer": layer, **detail} for layer, detail in float_layers.items()],
        "conversion_nodes": {"Cast": inserted},
        "optimized_op_counts": _op_counts(optimized),
        "precision_really_used": len(half_layers) >= len(float_layers),
    }

