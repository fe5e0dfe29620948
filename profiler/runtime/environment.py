"""The machine and software a measurement ran on, recorded with every result.

A timing is meaningless without the CPU, the core and thread counts, the
library versions and the date it was taken on: :func:`capture_environment`
returns all of it as a JSON-ready dict. Only the standard library is imported
at module level; torch and onnxruntime are consulted when installed.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

NOT_INSTALLED = "not installed"

# Report name -> distribution names to try, first installed wins (thop ships
# as "ultralytics-thop" today and as "thop" in older releases).
DEFAULT_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "thop": ("ultralytics-thop", "thop"),
    "fvcore": ("fvcore",),
    "numpy": ("numpy",),
    "lwprof": ("lwprof",),
}


def package_version(*distributions: str) -> str:
    """Version of the first installed distribution, else ``"not installed"``."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else platform's guess)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Logical cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may use: hyper-threads of one core share its
    arithmetic units, so timing threads are one per physical core. Read from
    sysfs topology on Linux for the cores in the affinity mask; elsewhere the
    usable logical count."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return usable_cores()
        cores.add((package, core))
    return len(cores) or usable_cores()


def _torch_settings() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {}
    settings: dict[str, Any] = {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
    }
    try:
        settings["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        pass
    return settings


def gpu_info() -> dict[str, Any] | None:
    """Name, memory and driver-side versions of the current CUDA device, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "index": index,
        "memory_bytes": int(props.total_memory),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def _onnxruntime_settings() -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError:
        return {}
    return {"onnxruntime_providers": onnxruntime.get_available_providers()}


def capture_environment(packages: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """Everything needed to interpret a timing taken on this machine, now.

    Call it after torch's thread count is fixed, so the recorded
    ``torch_num_threads`` is the one the timings ran with.
    """
    load_1min, load_5min, load_15min = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    environment: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "physical_cores": physical_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "load_average_1min": load_1min,
        "load_average_5min": load_5min,
        "load_average_15min": load_15min,
        "gpu": gpu_info(),
    }
    environment.update(_torch_settings())
    environment.update(_onnxruntime_settings())
    environment["versions"] = {
        name: package_version(*dists) for name, dists in (packages or DEFAULT_PACKAGES).items()
    }
    return environment
