"""The device's roofline: peak compute and memory bandwidth, per backend.

``lwprof device`` measures, for each backend on a device, the arithmetic
peak (a large GEMM in the run's precision, fp32 by default, in FLOP/s) and the memory bandwidth (a large copy,
bytes read + written per second), each from its fastest run (a ceiling is
what the device can reach, not its typical speed), and caches them in
``<cache>/device/<fingerprint>.json``. The fingerprint covers what changes
the answer: CPU model and cores, GPU, thread count, backend, precision and
the runtime's version, so a cached ceiling is never reused on another machine or setting.

A layer or a model is then placed on the roofline: its bound time is
``max(FLOPs / peak, bytes / bandwidth)``; it is compute-bound when the first
term is larger (its arithmetic intensity is past the ridge point
``peak / bandwidth``) and memory-bound otherwise; efficiency is the bound time
over the measured time (1.0: runs at the roofline).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.runtime.measure import PEAK_BUDGET
from lwprof.runtime.settings import RunSettings


@dataclass(frozen=True)
class DevicePeaks:
    backend: str
    device: str
    threads: int
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    gemm: dict[str, Any] = field(default_factory=dict)
    copy: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    measured_at: str = ""
    precision: str = "fp32"  # of the GEMM: the compute roof a layer run in this precision meets

    @property
    def ridge_intensity(self) -> float:
        """FLOP per byte where the memory roof meets the compute roof."""
        return self.peak_flops_per_s / self.bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ridge_intensity_flops_per_byte": self.ridge_intensity}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DevicePeaks":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class RooflinePoint:
    bound_s: float
    compute_s: float
    memory_s: float
    limit: str  # "compute" | "memory"
    intensity: float | None
    ridge_intensity: float


def roofline_bound(flops: int, memory_bytes: int, peaks: DevicePeaks) -> RooflinePoint:
    compute = flops / peaks.peak_flops_per_s
    memory = memory_bytes / peaks.bandwidth_bytes_per_s
    return RooflinePoint(
        bound_s=max(compute, memory),
        compute_s=compute,
        memory_s=memory,
        limit="compute" if compute >= memory else "memory",
        intensity=flops / memory_bytes if memory_bytes else None,
        ridge_intensity=peaks.ridge_intensity,
    )


def efficiency(bound_s: float, measured_s: float | None) -> float | None:
    return bound_s / measured_s if measured_s else None


# ---------------------------------------------------------------------------
# Fingerprint and cache


def device_fingerprint(settings: RunSettings, backend: str) -> str:
    device, threads = settings.device, settings.threads
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.environment import cpu_model, gpu_info, physical_cores, usable_cores

    runtime = get_backend(backend).runtime_version()
    gpu = gpu_info() if device == "cuda" else None
    identity = {
        "cpu": cpu_model(),
        "usable_cores": usable_cores(),
        "physical_cores": physical_cores(),
        "gpu": gpu["name"] if gpu else None,
        "device": device,
        "threads": threads,
        "backend": backend,
        "runtime": runtime,
    }
    if settings.precision != "fp32":  # fp32's key stays what it was, so its caches stay valid
        identity["precision"] = settings.precision
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_or_measure(backend: str, settings: RunSettings, refresh: bool = False) -> tuple[DevicePeaks, bool]:
    """Cached peaks for this device and thread count (from ``settings``),
    measured when missing (or ``refresh``) with :data:`PEAK_BUDGET`."""
    fingerprint = device_fingerprint(settings, backend)
    path = Path(settings.cache_dir) / "device" / f"{fingerprint}.json"
    if path.is_file() and not refresh:
        try:
            return DevicePeaks.from_dict(json.loads(path.read_text())), True
        except (ValueError, TypeError, KeyError):
            pass  # unreadable: measure again
    peaks = measure_peaks(backend, settings.but(budget=PEAK_BUDGET))
    peaks = DevicePeaks(**{**asdict(peaks), "fingerprint": fingerprint})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        temporary.write_text(json.dumps(peaks.to_dict(), indent=2) + "\n")
        temporary.replace(path)
    except OSError as exc:
        raise LwprofError(f"cannot write the device cache {path.parent}: {exc}") from None
    return peaks, False


# ---------------------------------------------------------------------------
# Measurement


def measure_peaks(backend: str, settings: RunSettings) -> DevicePeaks:
    """The two ceilings of ``backend`` on the settings' device and threads, within their budget."""
    device, threads = settings.device, settings.threads
    from lwprof.runtime.backends import check_device, get_backend

    check_device(device)
    gemm, copy = get_backend(backend).peak_kernels(settings)
    return DevicePeaks(
        backend=backend,
        device=device,
        threads=threads,
        precision=settings.precision,
        peak_flops_per_s=gemm["flops"] / gemm["best_s"],
        bandwidth_bytes_per_s=copy["bytes"] / copy["best_s"],
        gemm=gemm,
        copy=copy,
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
