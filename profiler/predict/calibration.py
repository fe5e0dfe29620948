"""A calibration file: what one device and runtime taught about its kernels,
and the prediction it makes.

The file is JSON, never a pickle, with a format name and version: a file
from another lwprof loads as long as the format version is one this lwprof
reads, and otherwise fails with one line saying which version it is and
which this lwprof reads. It records the device fingerprint, the backend,
its runtime version and precision, the fusion rules learned from the
runtime (and how), one regressor per kernel type, how well each predicted
kernels it did not see, and the raw timed kernels.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.core.records import ModelProfile
from lwprof.predict.kernels import FEATURES, FusionRules, Kernel, decompose
from lwprof.predict.networks import Context
from lwprof.predict.regressor import load_regressor

FORMAT = "lwprof-calibration"
FORMAT_VERSION = 2
READABLE_VERSIONS = (2,)


@dataclass(frozen=True)
class Calibration:
    device: dict[str, Any]  # fingerprint and description of the calibrated device
    backend: str
    runtime_version: str
    precision: str
    rules: FusionRules
    regressors: dict[str, Any]  # kernel type -> a registered regressor (lwprof.predict.regressor)
    # The runtime's time per call around the kernels, added once per model.
    overhead_s: float = 0.0
    # The runtime's dispatch per kernel, for the record: it is inside every kernel's samples and predictions.
    dispatch_s: float = 0.0
    # Held-out kernels: their count and relative errors (median, p90) per type.
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    lwprof_version: str = ""
    # The raw timed kernels (lwprof.predict.calibrate.Sample.to_dict): a later lwprof can refit from them.
    samples: tuple[dict[str, Any], ...] = ()
    # The device's roofline peaks on this runtime (lwprof.runtime.roofline.DevicePeaks.to_dict), for roofline baselines.
    peaks: dict[str, Any] = field(default_factory=dict)
    # How kernels timed alone cost inside a network, fitted on synthetic networks (identity: none fitted).
    context: Context = field(default_factory=Context)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "lwprof_version": self.lwprof_version,
                "created": self.created, "device": self.device, "backend": self.backend,
                "runtime_version": self.runtime_version, "precision": self.precision,
                "fusion_rules": self.rules.to_dict(), "features": list(FEATURES), "overhead_s": self.overhead_s,
                "dispatch_s": self.dispatch_s,
                "regressors": {name: regressor.to_dict() for name, regressor in sorted(self.regressors.items())},
                "validation": self.validation, "samples": list(self.samples), "peaks": self.peaks,
                "context": self.context.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "calibration") -> "Calibration":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LwprofError(f"{source} is not an lwprof calibration file (no \"format\": \"{FORMAT}\")")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise LwprofError(f"{source} is calibration format version {version} (written by lwprof "
                              f"{data.get('lwprof_version') or '?'}); this lwprof reads version "
                              f"{', '.join(map(str, READABLE_VERSIONS))}: calibrate again with this lwprof")
        if list(data.get("features", [])) != list(FEATURES):
            raise LwprofError(f"{source} was fitted on features {data.get('features')}, this lwprof computes "
                              f"{list(FEATURES)}: calibrate again with this lwprof")
        try:
            return cls(dict(data["device"]), str(data["backend"]), str(data["runtime_version"]), str(data["precision"]),
                       FusionRules.from_dict(data.get("fusion_rules", {})),
                       {name: load_regressor(value) for name, value in data["regressors"].items()},
                       float(data.get("overhead_s", 0.0)), float(data.get("dispatch_s", 0.0)),
                       dict(data.get("validation", {})), str(data.get("created", "")),
                       str(data.get("lwprof_version", "")), tuple(data.get("samples", ())),
                       dict(data.get("peaks", {})), Context.from_dict(data.get("context", {})))
        except KeyError as exc:
            raise LwprofError(f"{source} lacks {exc}: the file is incomplete") from None

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LwprofError(f"--calibration {path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise LwprofError(f"--calibration {path}: not readable JSON ({exc})") from None
        return cls.from_dict(data, f"--calibration {path}")

    @property
    def result_key(self) -> str:
        """The column prefix of the measurement this calibration predicts
        (the backend, with its precision when not fp32, as a profile's)."""
        from lwprof.runtime.precision import result_key

        return result_key(self.backend, self.precision)

    def describe(self) -> str:
        """One line: what was calibrated, and how well it predicted kernels it did not see."""
        errors = sorted(v["median_relative_error"] for v in self.validation.values() if "median_relative_error" in v)
        line = (f"calibration: {self.backend} {self.runtime_version} {self.precision} on {self.device.get('cpu')} "
                f"({self.device.get('threads')} threads), {self.created or 'undated'}")
        if errors:
            line += (f"; held-out kernel error (cross-validated): median over types {statistics.median(errors):.1%}, "
                     f"worst type {errors[-1]:.1%}")
        if self.context.error_in_context is not None:
            line += (f"; {self.context.networks} synthetic networks predicted within {self.context.error_in_context:.1%} "
                     f"(median, cross-validated; kernels alone: {self.context.error_alone:.1%})")
        return line

    # -----------------------------------------------------------------------

    def predict_kernel(self, kernel: Kernel, in_context: bool = True) -> float | None:
        """Seconds for ``kernel`` inside a network (``in_context``) or alone;
        None for a type this calibration never saw."""
        regressor = self.regressors.get(kernel.type)
        if regressor is None:
            return None
        alone = regressor.predict(kernel.vector())
        return self.context.adjust(kernel.type, alone) if in_context else alone

    def predict(self, profile: ModelProfile, in_context: bool = True) -> "Prediction":
        kernels = decompose(profile, self.rules)
        return Prediction(kernels, [self.predict_kernel(kernel, in_context) for kernel in kernels], self, self.overhead_s)


@dataclass(frozen=True)
class Prediction:
    """Each kernel's predicted seconds (None: a type calibration never saw,
    flagged, never counted as zero)."""

    kernels: list[Kernel]
    seconds: list[float | None]
    calibration: Calibration
    once_s: float  # paid once per model: the runtime's per-call overhead

    @property
    def unseen_types(self) -> list[str]:
        return sorted({kernel.type for kernel, s in zip(self.kernels, self.seconds) if s is None})

    @property
    def total_s(self) -> float:
        """The predicted latency: what the model pays once (the per-call
        overhead) and the sum of the kernels predicted (with :attr:`unseen_types` empty, the whole
        model)."""
        return self.once_s + sum(s for s in self.seconds if s is not None)

    def summary(self, measured_s: float | None = None) -> dict[str, Any]:
        """The total, the kernel types not calibrated and, beside a
        measurement, the error (predicted / measured - 1): a profile's columns."""
        result: dict[str, Any] = {"predicted_s": self.total_s, "predicted_not_calibrated": " ".join(self.unseen_types)}
        if measured_s:
            result["predicted_error"] = self.total_s / measured_s - 1
        return result

    def layer_seconds(self) -> dict[str, float | None]:
        """Per analytic layer: a kernel's time goes to its first layer (the
        others are its fused layers, as a measured runtime's rows)."""
        result: dict[str, float | None] = {}
        for kernel, seconds in zip(self.kernels, self.seconds):
            head = kernel.layers[0]
            if seconds is None:
                result.setdefault(head, None)
            elif result.get(head) is None:
                result[head] = seconds
            else:
                result[head] = result[head] + seconds  # type: ignore[operator]
        return result
