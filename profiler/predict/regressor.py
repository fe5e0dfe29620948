"""One regressor per kernel type: latency as a power law of the kernel's
features, fitted in log space by ridge least squares.

``log t = w0 + sum_i w_i * log(1 + x_i)``: a kernel's time grows as a
product of powers of its FLOPs, bytes and shape (a roofline is such a law
with exponents 0 or 1 and a max), and fitting logarithms weighs every
kernel by its *relative* error, the error latency prediction is judged by.
Why not a tree ensemble (nn-Meter's random forests): its pickles break with
newer scikit-learn (nn-Meter #131), while these few coefficients are plain
JSON, identical after a round trip in any version, and need nothing beyond
numpy. ``ridge`` keeps the fit stable when a feature barely varies among a
type's samples (stride among depthwise convolutions, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from lwprof.core.errors import LwprofError


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

    @classmethod
    def fit(cls, features: Sequence[str], rows: Sequence[Sequence[float]], seconds: Sequence[float],
            ridge: float = 1e-6) -> "PowerLaw":
        import numpy as np

        if len(rows) != len(seconds) or not rows:
            raise LwprofError(f"a fit needs as many timings as feature rows, and at least one ({len(rows)} vs {len(seconds)})")
        if any(not (t > 0 and math.isfinite(t)) for t in seconds):
            raise LwprofError("kernel timings must be positive and finite")
        design = np.log1p(np.asarray(rows, dtype=np.float64))
        center = design.mean(axis=0)
        scale = design.std(axis=0)
        varies = scale > 0  # a constant feature among these samples keeps weight 0
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
                   intercept, len(rows))

    def predict(self, row: Sequence[float]) -> float:
        if len(row) != len(self.features):
            raise LwprofError(f"expected {len(self.features)} features ({', '.join(self.features)}), got {len(row)}")
        total = self.intercept
        for value, center, scale, weight in zip(row, self.center, self.scale, self.weights):
            total += weight * (math.log1p(float(value)) - center) / scale
        return math.exp(total)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "power_law", "features": list(self.features), "center": list(self.center),
                "scale": list(self.scale), "weights": list(self.weights), "intercept": self.intercept,
                "samples": self.samples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PowerLaw":
        if data.get("kind") != "power_law":
            raise LwprofError(f"unknown regressor kind {data.get('kind')!r} (this lwprof reads power_law)")
        try:
            return cls(tuple(data["features"]), tuple(map(float, data["center"])), tuple(map(float, data["scale"])),
                       tuple(map(float, data["weights"])), float(data["intercept"]), int(data["samples"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LwprofError(f"a power-law regressor is malformed: {exc}") from None
