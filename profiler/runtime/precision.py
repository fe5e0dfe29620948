"""Precisions a model can be measured in, and how int8 is made.

``fp32`` is the exported or loaded model as it is. ``bf16`` and ``fp16``
run the model's weights and activations in that type where the runtime has
the kernels; ``int8`` is post-training static quantization (weights and
activations, calibrated on inputs). Each backend declares which of these it
really runs (:attr:`lwprof.runtime.backends.Backend.precisions`, with how it
gets there); any other combination is refused in one line before anything is
measured, never approximated.

:class:`Int8Recipe` is everything that changes an int8 model: it is part of
the run's settings, recorded with every int8 result, and part of the key the
quantized file is cached under.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from lwprof.core.errors import LwprofError

FP32 = "fp32"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

# Activation x weight types: U8S8 (uint8 activations, int8 weights) or S8S8 (both int8).
INT8_SCHEMES = ("u8s8", "s8s8")
# On x86 with VNNI, ONNX Runtime's U8S8 QLinearConv covers every convolution of a
# residual network, while S8S8 leaves the convolutions next to a residual add in
# float (mobilenet_v2_100 on this project's AMD EPYC: 52 of 52 QLinearConv against
# 37 + 15 float Conv, and 0.47-0.52x against 1.01-1.30x of fp32's latency).
DEFAULT_INT8_SCHEME = "u8s8"
DEFAULT_CALIBRATION_INPUTS = 16
# ORT kernels that compute in integers (CPU and CUDA providers, com.microsoft included).
INT8_KERNELS = frozenset({
    "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
    "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearWhere",
    "QLinearReduceMean", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
    "QAttention", "QEmbedLayerNormalization", "MaxPool_int8",
})
# XNNPACK names a kernel by its data types ("Convolution (NHWC, QS8, QC8W) IGEMM"): these mark an integer one.
XNNPACK_INT8_TYPES = ("QS8", "QU8", "QC8", "QD8", "QC4W")
# Inductor's extern int8 kernels (oneDNN's qconv_pointwise, qlinear_pointwise, ...).
INDUCTOR_INT8_EXTERNS = ("inductor extern qconv", "inductor extern qlinear")
# Nodes that only change a tensor's type (their time is the quantization tax).
CONVERSION_OPS = {"QuantizeLinear": "quantize", "DequantizeLinear": "dequantize", "Cast": "cast",
                  "DynamicQuantizeLinear": "quantize"}
QUANTIZE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# Below this cosine similarity with the fp32 outputs a result is meaningless.
MEANINGFUL_COSINE = 0.9


def result_key(backend: str, precision: str = "fp32") -> str:
    """The column prefix of a measurement: the backend, with its precision
    when not fp32 (``onnxruntime_int8``)."""
    return backend if precision == "fp32" else f"{backend}_{precision}"


def parse_precisions(text: str | Sequence[str] | None) -> list[str]:
    """``"fp32,int8"`` -> ``["fp32", "int8"]``; an unknown name is one line
    naming the choices. Duplicates are dropped, order is kept."""
    if text is None:
        return [FP32]
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen: list[str] = []
    for part in (p.strip().lower() for p in parts):
        if not part:
            continue
        if part not in PRECISIONS:
            raise LwprofError(f"unknown precision '{part}'; choose from {', '.join(PRECISIONS)}")
        if part not in chosen:
            chosen.append(part)
    if not chosen:
        raise LwprofError(f"--precision needs at least one of {', '.join(PRECISIONS)}")
    return chosen


@dataclass(frozen=True)
class Int8Recipe:
    """How an int8 model is made: ONNX Runtime static QDQ quantization after
    ``quant_pre_process``, int8 weights (per output channel by default),
    activations in the scheme's type, MinMax calibration on
    ``calibration_inputs`` seeded standard-normal inputs or on the ``.npy``
    files of ``calibration_dir``."""

    scheme: str = DEFAULT_INT8_SCHEME
    per_channel: bool = True
    calibration_inputs: int = DEFAULT_CALIBRATION_INPUTS
    calibration_dir: Path | None = None
    method: str = "MinMax"

    def __post_init__(self) -> None:
        if self.scheme not in INT8_SCHEMES:
            raise LwprofError(f"unknown int8 scheme '{self.scheme}'; choose from {', '.join(INT8_SCHEMES)}")
        if self.calibration_inputs < 1:
            raise LwprofError(f"calibration needs at least one input, got {self.calibration_inputs}")
        if self.calibration_dir is not None and not Path(self.calibration_dir).is_dir():
            raise LwprofError(f"--calibration-data {self.calibration_dir}: no such folder")

    @property
    def activation_type(self) -> str:
        return "uint8" if self.scheme == "u8s8" else "int8"

    @property
    def weight_type(self) -> str:
        return "int8"

    def calibration_files(self) -> list[Path]:
        if self.calibration_dir is None:
            return []
        files = sorted(Path(self.calibration_dir).glob("*.npy"))
        if not files:
            raise LwprofError(f"--calibration-data {self.calibration_dir}: no .npy files in it")
        return files

    def digest(self) -> str:
        """A short key of everything that changes the quantized model, the
        calibration files' bytes included."""
        digest = hashlib.blake2b(digest_size=8)
        for key, value in sorted(self.to_dict().items()):
            digest.update(f"{key}={value}\0".encode())
        for path in self.calibration_files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["calibration_dir"] = None if self.calibration_dir is None else str(self.calibration_dir)
        data["activation_type"] = self.activation_type
        data["weight_type"] = self.weight_type
        return data


def calibration_inputs(recipe: Int8Recipe, input_shape: Sequence[int]) -> list[Any]:
    """The inputs calibration (and the agreement check) runs on: the user's
    ``.npy`` files (each one input of ``input_shape``, or a stack of them along
    the batch axis), else ``recipe.calibration_inputs`` standard-normal inputs
    seeded 1, 2, ... (the timing input is seed 0)."""
    import numpy as np

    from lwprof.runtime.outputs import example_input

    shape = tuple(int(d) for d in input_shape)
    files = recipe.calibration_files()
    if not files:
        return [example_input(shape, seed=seed) for seed in range(1, recipe.calibration_inputs + 1)]
    inputs = []
    for path in files:
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise LwprofError(f"--calibration-data: cannot read {path.name}: {exc}") from None
        if tuple(array.shape) == shape:
            inputs.append(array.astype(np.float32, copy=False))
        elif array.ndim == len(shape) and tuple(array.shape[1:]) == shape[1:] and array.shape[0] % shape[0] == 0:
            inputs.extend(chunk.astype(np.float32, copy=False) for chunk in np.split(array, array.shape[0] // shape[0]))
        else:
            wanted = "x".join(map(str, shape))
            raise LwprofError(f"--calibration-data: {path.name} has shape {'x'.join(map(str, array.shape))}, "
                              f"not {wanted} (or a stack of them along the first axis)")
    return inputs


@dataclass(frozen=True)
class Agreement:
    """A precision's outputs against fp32's on the same inputs: relative error
    (‖y − y_fp32‖ / ‖y_fp32‖ over all outputs), cosine similarity of the
    flattened outputs, and for a classifier (2-D output) the share of inputs
    whose top-1 class is the same. Figures are over ``inputs`` inputs; the
    worst (largest error, smallest cosine) input is reported too."""

    inputs: int
    relative_error: float
    cosine: float
    worst_relative_error: float
    worst_cosine: float
    top1_agreement: float | None

    @property
    def meaningful(self) -> bool:
        return self.worst_cosine >= MEANINGFUL_COSINE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meaningful": self.meaningful, "meaningful_cosine": MEANINGFUL_COSINE}

    def describe(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        return (f"relative error {self.relative_error:.3g}, cosine {self.cosine:.4f} (worst {self.worst_cosine:.4f})"
                f"{top1} over {self.inputs} inputs")


def agreement(reference: list[list[Any]], other: list[list[Any]]) -> Agreement:
    """:class:`Agreement` of ``other`` with ``reference``: one list of output
    arrays per input, in the same order."""
    import numpy as np

    if not reference or len(reference) != len(other):
        raise LwprofError(f"agreement needs the same inputs on both sides ({len(reference)} vs {len(other)})")
    errors, cosines, same_top1, classified = [], [], 0, True
    for expected, actual in zip(reference, other):
        a = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in expected])
        b = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in actual])
        if a.shape != b.shape:
            raise LwprofError(f"outputs differ in size: {a.size} vs {b.size} values")
        norm = np.linalg.norm(a)
        errors.append(float(np.linalg.norm(b - a) / norm) if norm else float(np.linalg.norm(b - a)))
        denominator = norm * np.linalg.norm(b)
        cosines.append(float(a @ b / denominator) if denominator else (1.0 if not a.any() and not b.any() else 0.0))
        first, first_other = np.asarray(expected[0]), np.asarray(actual[0])
        if first.ndim == 2 and first.shape[1] > 1:
            same_top1 += int((first.argmax(axis=1) == first_other.argmax(axis=1)).sum())
        else:
            classified = False
    batch = np.asarray(reference[0][0]).shape[0] if np.asarray(reference[0][0]).ndim else 1
    return Agreement(
        inputs=len(reference),
        relative_error=float(np.median(errors)),
        cosine=float(np.median(cosines)),
        worst_relative_error=float(max(errors)),
        worst_cosine=float(min(cosines)),
        top1_agreement=same_top1 / (len(reference) * batch) if classified else None,
    )


def analytic_record(profile: Any, how: str) -> dict[str, Any]:
    """A precision's analytic counts (from the graph or module it runs as):
    totals at its element sizes, the memory access of its precision
    conversions, and the ops without a formula."""
    conversion = sum(layer.memory_bytes for layer in profile.layers if layer.op_class == "conversion")
    return {
        "counted_on": how,
        **{key: profile.totals[key] for key in ("macs", "flops", "memory_bytes", "memory_bytes_fused")},
        "conversion_memory_bytes": conversion,
        "unsupported_ops": dict(profile.unsupported_ops),
        # Per layer name: [FLOPs, memory access] at this precision, for the per-layer roofline.
        "layers": {layer.name: [layer.flops, layer.memory_bytes] for layer in profile.layers},
    }


def ran_in(ops: Any, precision: str) -> str:
    """What a layer's kernels computed in: ``int8`` (an integer kernel),
    ``conversion`` (only quantize/dequantize/cast/layout nodes: the tax), else
    the float type of the run (``fp32`` for what an int8 model left in float)."""
    names = {op.split(".")[-1] for op in ops}
    # XNNPACK's "Convert (NC, F32, QS8)" only changes a tensor's type.
    xnnpack_conversions = {op for op in names if op.startswith("XNNPACK Convert")}
    computing = {op for op in names if op.startswith("XNNPACK ")} - xnnpack_conversions
    if (names & INT8_KERNELS or any(tag in op for op in computing for tag in XNNPACK_INT8_TYPES)
            or any(op.startswith(INDUCTOR_INT8_EXTERNS) for op in names)):
        return "int8"
    if names and names - xnnpack_conversions <= set(CONVERSION_OPS) | {"Transpose"}:
        return "conversion"
    return precision if precision in ("bf16", "fp16") else "fp32"
