"""A calibration file: what one device and runtime taught about its kernels,
and the prediction it makes.

The file is JSON, never a pickle, with a format name and version: a file
from another lwprof loads as long as the format version is one this lwprof
reads, and otherwise fails with one line saying which version it is and
which this lwprof reads. It records the device fingerprint, the backend,
its runtime version and precision, the fusion rules, one regressor per
kernel type, and how well the calibration predicted kernels it held out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.core.records import ModelProfile
from lwprof.predict.kernels import FEATURES, FusionRules, Kernel, decompose
from lwprof.predict.regressor import PowerLaw

FORMAT = "lwprof-calibration"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


@dataclass(frozen=True)
class Calibration:
    device: dict[str, Any]  # fingerprint and description of the calibrated device
    backend: str
    runtime_version: str
    precision: str
    rules: FusionRules
    regressors: dict[str, PowerLaw]
    # The runtime's time per call around the kernels, added once per model.
    overhead_s: float = 0.0
    # Held-out kernels: their count and relative errors (median, p90) per type.
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    lwprof_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "lwprof_version": self.lwprof_version,
                "created": self.created, "device": self.device, "backend": self.backend,
                "runtime_version": self.runtime_version, "precision": self.precision,
                "fusion_rules": self.rules.to_dict(), "features": list(FEATURES), "overhead_s": self.overhead_s,
                "regressors": {name: regressor.to_dict() for name, regressor in sorted(self.regressors.items())},
                "validation": self.validation}

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
                       {name: PowerLaw.from_dict(value) for name, value in data["regressors"].items()},
                       float(data.get("overhead_s", 0.0)), dict(data.get("validation", {})), str(data.get("created", "")),
                       str(data.get("lwprof_version", "")))
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

    # -----------------------------------------------------------------------

    def predict_kernel(self, kernel: Kernel) -> float | None:
        """Seconds for ``kernel``; None for a type this calibration never saw."""
        regressor = self.regressors.get(kernel.type)
        return None if regressor is None else regressor.predict(kernel.vector())

    def predict(self, profile: ModelProfile) -> "Prediction":
        kernels = decompose(profile, self.rules)
        return Prediction(kernels, [self.predict_kernel(kernel) for kernel in kernels], self)


@dataclass(frozen=True)
class Prediction:
    """Each kernel's predicted seconds (None: a type calibration never saw,
    flagged, never counted as zero)."""

    kernels: list[Kernel]
    seconds: list[float | None]
    calibration: Calibration

    @property
    def unseen_types(self) -> list[str]:
        return sorted({kernel.type for kernel, s in zip(self.kernels, self.seconds) if s is None})

    @property
    def total_s(self) -> float:
        """The predicted latency: the runtime's per-call overhead and the sum
        of the kernels predicted (with :attr:`unseen_types` empty, the whole
        model)."""
        return self.calibration.overhead_s + sum(s for s in self.seconds if s is not None)

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
