"""Regressors of one kernel type's latency, each a few JSON coefficients.

Two kinds, registered by name (:func:`regressor`), and a calibration keeps,
per kernel type, the one that predicts its held-out samples better:

- ``linear``: ``t = c0 + c_flops * flops + c_bytes * memory_bytes + c_out *
  output_elements`` with every coefficient non-negative, fitted by weighted
  least squares on relative error. A roofline-like cost (a fixed launch,
  time per FLOP, per byte, per element written) that extrapolates safely:
  a kernel twice as large never costs less.
- ``power_law``: ``log t = w0 + sum w_i log(1 + x_i)`` over every feature,
  fitted by ridge least squares in log space: it catches efficiencies that
  change with shape (narrow channels, small maps), but extrapolates badly.

Why not a tree ensemble (nn-Meter's random forests): its pickles break with
newer scikit-learn (nn-Meter #131), trees cannot extrapolate past the
largest sampled kernel, and a few hundred samples per device are too few
for them. These coefficients are plain JSON, identical after a round trip
in any version, and need nothing beyond numpy.
"""

from __future__ import annotations

import math
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.registry import Registry

_KINDS: Registry[Any] = Registry("regressor kind")


def regressor(kind: str) -> Callable:
    """Register a regressor class under ``kind`` (its ``to_dict`` writes it)."""
    return _KINDS.register(kind)


def regressor_kinds() -> list[str]:
    return _KINDS.names()


def fit_regressor(kind: str, features: Sequence[str], rows: Sequence[Sequence[float]], seconds: Sequence[float],
                  measured: Sequence[float] | None = None) -> Any:
    """A ``kind`` regressor of ``seconds`` (each kernel's own time); ``measured``:
    what each one-kernel model took end to end, the scale its error is judged
    on (default ``seconds``)."""
    return _KINDS.get(kind).fit(features, rows, seconds, measured)


def load_regressor(data: dict[str, Any]) -> Any:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise LwprofError(f"unknown regressor kind {kind!r} (this lwprof reads {', '.join(_KINDS.names())})")
    return _KINDS.get(kind).from_dict(data)


def _check(rows: Sequence[Sequence[float]], seconds: Sequence[float]) -> None:
    if len(rows) != len(seconds) or not len(rows):
        raise LwprofError(f"a fit needs as many timings as feature rows, and at least one ({len(rows)} vs {len(seconds)})")
    if any(not (t > 0 and math.isfinite(t)) for t in seconds):
        raise LwprofError("kernel timings must be positive and finite")


@regressor("power_law")
@dataclass(frozen=True)
class PowerLaw:
    """A fitted kernel type: feature names, their means and scales (the
    design is standardized before the ridge), and the coefficients."""

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    samples: int
    # The sampled range of each log feature: a prediction extrapolates at most one sampled range past it,
    # since a law fitted on lightweight kernels says little about one a hundred times larger.
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @classmethod
    def fit(cls, features: Sequence[str], rows: Sequence[Sequence[float]], seconds: Sequence[float],
            measured: Sequence[float] | None = None, ridge: float = 1e-2) -> "PowerLaw":
        import numpy as np

        _check(rows, seconds)
        design = np.log1p(np.asarray(rows, dtype=np.float64))
        center = design.mean(axis=0)
        scale = design.std(axis=0)
        # A feature constant among these samples (to rounding) keeps weight 0: dividing by a scale of
        # 1e-16 would turn a different value at prediction time into an overflow.
        varies = scale > 1e-9
        scale[~varies] = 1.0
        z = (design - center) / scale
        target = np.log(np.asarray(seconds, dtype=np.float64))
        intercept = float(target.mean())
        weights = np.zeros(z.shape[1])
        if varies.any():
            used = z[:, varies]
            gram = used.T @ used + ridge * len(rows) * np.eye(used.shape[1])
            weights[varies] = np.linalg.lstsq(gram, used.T @ (target - intercept), rcond=None)[0]
        return cls(tuple(features), tuple(map(float, center)), tuple(map(float, scale)), tuple(map(float, weights)),
                   intercept, len(rows), tuple(map(float, design.min(axis=0))), tuple(map(float, design.max(axis=0))))

    def predict(self, row: Sequence[float]) -> float:
        if len(row) != len(self.features):
            raise LwprofError(f"expected {len(self.features)} features ({', '.join(self.features)}), got {len(row)}")
        total = self.intercept
        for index, (value, center, scale, weight) in enumerate(zip(row, self.center, self.scale, self.weights)):
            logged = math.log1p(float(value))
            if self.low and self.high:
                reach = self.high[index] - self.low[index]
                logged = min(max(logged, self.low[index] - reach), self.high[index] + reach)
            total += weight * (logged - center) / scale
        return math.exp(min(total, 700.0))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "power_law", "features": list(self.features), "center": list(self.center),
                "scale": list(self.scale), "weights": list(self.weights), "intercept": self.intercept,
                "samples": self.samples, "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PowerLaw":
        try:
            return cls(tuple(data["features"]), tuple(map(float, data["center"])), tuple(map(float, data["scale"])),
                       tuple(map(float, data["weights"])), float(data["intercept"]), int(data["samples"]),
                       tuple(map(float, data.get("low", ()))), tuple(map(float, data.get("high", ()))))
        except (KeyError, TypeError, ValueError) as exc:
            raise LwprofError(f"a power-law regressor is malformed: {exc}") from None


LINEAR_TERMS = ("flops", "memory_bytes", "output_elements")


@regressor("linear")
@dataclass(frozen=True)
class Linear:
    """``t = intercept + sum coefficient_i * x_i`` over :data:`LINEAR_TERMS`,
    every coefficient >= 0: the non-negative least squares of relative error
    (each kernel's equation divided by its time, or by its model's measured
    time), solved exactly over the subsets of terms (there are 16)."""

    features: tuple[str, ...]
    terms: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    samples: int

    @classmethod
    def fit(cls, features: Sequence[str], rows: Sequence[Sequence[float]], seconds: Sequence[float],
            measured: Sequence[float] | None = None) -> "Linear":
        import numpy as np

        _check(rows, seconds)
        columns = [list(features).index(term) for term in LINEAR_TERMS]
        design = np.column_stack([np.ones(len(rows)), np.asarray(rows, dtype=np.float64)[:, columns]])
        # Each kernel's error relative to what its model took end to end: a kernel whose own time is a
        # sliver of the call's overhead does not pull the fit towards fitting that sliver exactly.
        weights = 1.0 / np.asarray(measured if measured is not None else seconds, dtype=np.float64)
        weighted, target = design * weights[:, None], np.asarray(seconds, dtype=np.float64) * weights
        scale = np.abs(weighted).max(axis=0)
        scale[scale == 0] = 1.0
        best, best_residual = np.zeros(design.shape[1]), math.inf
        for size in range(1, design.shape[1] + 1):
            for subset in itertools.combinations(range(design.shape[1]), size):
                solution = np.linalg.lstsq(weighted[:, subset] / scale[list(subset)], target, rcond=None)[0]
                solution = solution / scale[list(subset)]
                if (solution < 0).any():
                    continue
                residual = float(np.sum((weighted[:, subset] @ solution - target) ** 2))
                if residual < best_residual:
                    best_residual, best = residual, np.zeros(design.shape[1])
                    best[list(subset)] = solution
        return cls(tuple(features), LINEAR_TERMS, tuple(map(float, best[1:])), float(best[0]), len(rows))

    def predict(self, row: Sequence[float]) -> float:
        if len(row) != len(self.features):
            raise LwprofError(f"expected {len(self.features)} features ({', '.join(self.features)}), got {len(row)}")
        values = dict(zip(self.features, row))
        return self.intercept + sum(c * float(values[term]) for term, c in zip(self.terms, self.coefficients))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "linear", "features": list(self.features), "terms": list(self.terms),
                "coefficients": list(self.coefficients), "intercept": self.intercept, "samples": self.samples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Linear":
        try:
            return cls(tuple(data["features"]), tuple(data["terms"]), tuple(map(float, data["coefficients"])),
                       float(data["intercept"]), int(data["samples"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LwprofError(f"a linear regressor is malformed: {exc}") from None
