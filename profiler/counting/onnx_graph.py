"""ONNX files and ONNX Runtime sessions, as every part of lwprof opens them.

One loader (:func:`load_onnx`) with one set of messages for a missing,
unreadable, invalid or empty file, and one builder of ONNX Runtime
``SessionOptions`` (:func:`session_options`): counting uses it to read the
optimized graph, the onnxruntime backend to time and profile, and the
roofline to time its peak kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line

if TYPE_CHECKING:
    import onnx

OPTIMIZATION_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_LAYOUT", "ORT_ENABLE_ALL")


def load_onnx(path: str | Path, *, external_data: bool = True, check: bool = False) -> "onnx.ModelProto":
    """The model in ``path``; ``check`` runs onnx's checker too (an op it has
    no schema for is still accepted: lwprof counts it as unsupported).
    Without ``external_data`` the weights stored beside the file are not read
    (shapes and names do not need them)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise LwprofError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:
        raise LwprofError(f"{path} is not a valid ONNX model: {one_line(exc)}") from None
    return checked(model, str(path), check)


def checked(model: "onnx.ModelProto", label: str, check: bool = True) -> "onnx.ModelProto":
    """``model``, after onnx's checker (when ``check``) and the one test every
    use needs: a graph with nodes."""
    import onnx

    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:
            if not str(exc).startswith("No Op registered for"):
                raise LwprofError(f"{label} is not a valid ONNX model: {one_line(exc)}") from None
    if not model.graph.node:
        raise LwprofError(f"{label} is not a valid ONNX model: its graph has no nodes")
    return model


def session_options(
    *,
    threads: int = 1,
    level: str = "ORT_ENABLE_ALL",
    optimized_path: Path | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """``SessionOptions`` as lwprof always sets them: ``threads`` intra-op
    threads, one inter-op thread, sequential execution, errors only in the
    log (failures surface as one-line errors), optionally writing the
    optimized graph or a profiling trace."""
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
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options
