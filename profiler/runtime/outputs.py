"""The same input for every backend, and whether their outputs agree.

Every backend is fed the very same numpy values (:func:`example_input`), and
before anything is timed each backend's outputs are compared with the first
backend's (:func:`compare_outputs`), relative to the outputs' own scale.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.errors import LwprofError

if TYPE_CHECKING:
    import numpy as np

RELATIVE_FLOOR = 1e-3  # of an output's largest magnitude, for max_rel_diff


class UnsupportedOutput(LwprofError):
    """A model output that is not a tensor or a nest of tensors."""


def example_input(shape: Sequence[int], dtype: Any = "float32", seed: int = 0) -> "np.ndarray":
    """A standard-normal input with a fixed seed: every backend is fed the very
    same values, so their outputs can be compared."""
    import numpy as np

    dims = tuple(shape)
    if not dims or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        raise LwprofError(f"input shape {list(dims)} must be positive integers")
    # By name: whether numpy knows "bfloat16" depends on whether onnx (ml_dtypes) was imported.
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    if name not in ("float16", "float32", "float64"):
        raise LwprofError(f"input dtype {name} is not supported; use float32, float16 or float64")
    target = np.dtype(name)
    generator = np.random.default_rng(seed)
    values = generator.standard_normal(dims, dtype=np.float64 if target == np.float64 else np.float32)
    return values.astype(target, copy=False)


@dataclass(frozen=True)
class OutputCheck:
    """How one backend's outputs compare with the reference backend's.

    ``allclose`` is numpy's test with the absolute tolerance scaled by the
    output's largest magnitude: a fixed ``atol`` would pass any outputs far
    smaller than it (randomly initialised networks often end in logits of 1e-9
    or less). ``max_rel_diff`` is the scale-free figure: each element's
    difference relative to the reference element, the
    denominator floored at :data:`RELATIVE_FLOOR` of that output's largest
    magnitude so near-zero elements do not turn a rounding difference into an
    enormous ratio. Both maxima are infinite when the shapes differ or when one
    side is NaN/Inf where the other is not.
    """

    allclose: bool
    max_abs_diff: float
    max_rel_diff: float
    nonfinite: bool
    shapes_match: bool
    reference_shapes: tuple[tuple[int, ...], ...] = ()
    other_shapes: tuple[tuple[int, ...], ...] = ()
    rtol: float = 1e-3
    # Of the output's largest magnitude: fp32 rounding through inception_v4's 12 GMACs
    # moves its logits by 4e-4 of their scale between torch and ONNX Runtime.
    atol: float = 1e-3

    def describe(self) -> str:
        if not self.shapes_match:
            text = f"output shapes differ: {_shapes_text(self.reference_shapes)} vs {_shapes_text(self.other_shapes)}"
        else:
            verdict = "agree" if self.allclose else "differ"
            text = (
                f"outputs {verdict} (rtol {self.rtol:g}, atol {self.atol:g}): "
                f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}"
            )
        return text + ("; outputs contain NaN or Inf" if self.nonfinite else "")


def _shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "scalar" for s in shapes) + "]"


def compare_outputs(
    reference: Sequence["np.ndarray"],
    other: Sequence["np.ndarray"],
    rtol: float = 1e-3,
    atol: float = 1e-3,
) -> OutputCheck:
    """Compare two backends' flattened outputs element by element:
    ``|other - reference| <= atol * max|reference| + rtol * |reference|``
    everywhere, NaN equal to NaN (a NaN is reported through ``nonfinite``
    instead)."""
    import numpy as np

    refs = [np.asarray(a, dtype=np.float64) for a in reference]
    others = [np.asarray(a, dtype=np.float64) for a in other]
    ref_shapes = tuple(tuple(a.shape) for a in refs)
    other_shapes = tuple(tuple(a.shape) for a in others)
    nonfinite = any(not np.isfinite(a).all() for a in others)
    shapes_match = ref_shapes == other_shapes
    if not shapes_match:
        return OutputCheck(False, math.inf, math.inf, nonfinite, False, ref_shapes, other_shapes, rtol, atol)

    allclose = True
    max_abs = max_rel = 0.0
    for ref, out in zip(refs, others):
        if ref.size == 0:
            continue
        ref, out = ref.reshape(-1), out.reshape(-1)  # 0-d outputs too
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(out - ref)
        same = (out == ref) | (np.isnan(out) & np.isnan(ref))
        diff[same] = 0.0
        diff[np.isnan(diff)] = math.inf  # NaN against a number, Inf against a number
        magnitude = np.abs(np.nan_to_num(ref, nan=0.0, posinf=0.0, neginf=0.0))
        floor = max(float(magnitude.max()) * RELATIVE_FLOOR, np.finfo(np.float64).tiny)
        relative = diff / np.maximum(magnitude, floor)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(relative.max()))
        # atol is relative to the output's scale: randomly initialised networks
        # often end in logits of 1e-9, which any absolute tolerance would pass.
        scale = float(magnitude.max()) or 1.0
        allclose = allclose and bool(np.allclose(out, ref, rtol=rtol, atol=atol * scale, equal_nan=True))
    return OutputCheck(allclose, max_abs, max_rel, nonfinite, True, ref_shapes, other_shapes, rtol, atol)


def flatten_outputs(value: Any, tensor_type: type) -> list[Any]:
    """Tensors of a nested output in order: tuples, lists, dict values; None
    left out; Python numbers kept as numbers."""
    if isinstance(value, tensor_type):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in flatten_outputs(item, tensor_type)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten_outputs(item, tensor_type)]
    if value is None:
        return []
    if isinstance(value, numbers.Number):
        return [value]
    raise UnsupportedOutput(f"the model returned {type(value).__name__}, which is not a tensor or a tuple/list/dict of tensors")


def as_float_array(value: Any) -> "np.ndarray":
    """A host numpy array: float32 for float32 and narrower floats, float64 for
    everything else (integer and boolean outputs included)."""
    import numpy as np

    # Not imported for ONNX Runtime alone: its worker process stays a process that never loaded torch.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu")
        if tensor.is_floating_point() and tensor.element_size() <= 4:
            return tensor.float().numpy()
        return tensor.double().numpy()
    array = np.asarray(value)
    return array.astype(np.float32 if array.dtype.kind == "f" and array.dtype.itemsize <= 4 else np.float64, copy=False)
