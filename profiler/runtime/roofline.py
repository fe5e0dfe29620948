"""The device's roofline: peak compute and memory bandwidth, per backend.

``lwprof device`` measures, for each backend on a device, the arithmetic
peak (a large fp32 GEMM, in FLOP/s) and the memory bandwidth (a large copy,
bytes read + written per second), each from its fastest run (a ceiling is
what the device can reach, not its typical speed), and caches them in
``<cache>/device/<fingerprint>.json``. The fingerprint covers what changes
the answer: CPU model and cores, GPU, thread count, backend and the runtime's
version, so a cached ceiling is never reused on another machine or setting.

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
from lwprof.runtime.measure import Budget, Stats

# Work sizes: a GEMM large enough to reach the arithmetic peak, a copy far
# beyond the last-level cache so it measures memory, not cache.
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30}
PEAK_BUDGET = Budget(warmup=2, warmup_time_s=0.1, min_time_s=0.5, max_time_s=2.0, min_samples=5)


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


def device_fingerprint(device: str, threads: int, backend: str) -> str:
    from lwprof.runtime.environment import cpu_model, gpu_info, package_version, physical_cores, usable_cores

    runtime = package_version("onnxruntime", "onnxruntime-gpu") if backend == "onnxruntime" else package_version("torch")
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
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_or_measure(
    backend: str,
    device: str,
    threads: int,
    cache_dir: Path | None = None,
    refresh: bool = False,
    budget: Budget = PEAK_BUDGET,
) -> tuple[DevicePeaks, bool]:
    """Cached peaks for this device and setting, measured when missing (or ``refresh``)."""
    from lwprof.runtime.backends import default_cache_dir

    fingerprint = device_fingerprint(device, threads, backend)
    path = (cache_dir or default_cache_dir()) / "device" / f"{fingerprint}.json"
    if path.is_file() and not refresh:
        try:
            return DevicePeaks.from_dict(json.loads(path.read_text())), True
        except (ValueError, TypeError, KeyError):
            pass  # unreadable: measure again
    peaks = measure_peaks(backend, device, threads, budget)
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


def measure_peaks(backend: str, device: str, threads: int, budget: Budget = PEAK_BUDGET) -> DevicePeaks:
    from lwprof.runtime.backends import check_device

    check_device(device)
    if backend == "torch":
        gemm, copy = _torch_kernels(device, threads, budget)
    elif backend == "onnxruntime":
        gemm, copy = _onnxruntime_kernels(device, threads, budget)
    else:
        raise LwprofError(f"no roofline measurement for backend '{backend}' (torch, onnxruntime)")
    return DevicePeaks(
        backend=backend,
        device=device,
        threads=threads,
        peak_flops_per_s=gemm["flops"] / gemm["best_s"],
        bandwidth_bytes_per_s=copy["bytes"] / copy["best_s"],
        gemm=gemm,
        copy=copy,
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _timed(fn: Any, budget: Budget, timer: Any) -> Stats:
    from lwprof.runtime.measure import run_timed

    samples, interrupted = run_timed(fn, budget, timer)
    if interrupted:
        raise KeyboardInterrupt
    return Stats.of(samples)


def _summary(stats: Stats, **what: Any) -> dict[str, Any]:
    # A ceiling is what the device can reach: the fastest run, not the typical one.
    return {**what, "best_s": stats.min, "median_s": stats.median, "iqr_s": stats.iqr, "n": stats.n}


def _torch_kernels(device: str, threads: int, budget: Budget) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    from lwprof.runtime.measure import CudaEventTimer, HostTimer

    previous = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(threads)
    try:
        n = GEMM_SIZE[device]
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        timer = CudaEventTimer() if device == "cuda" else HostTimer()
        with torch.inference_mode():
            gemm = _timed(lambda: torch.mm(a, b, out=out), budget, timer)
            elements = COPY_BYTES[device] // 4
            src = torch.randn(elements, device=device)
            dst = torch.empty_like(src)
            copy = _timed(lambda: dst.copy_(src), budget, timer)
    finally:
        torch.set_num_threads(previous)
    return (
        _summary(gemm, kernel=f"torch.mm {n}x{n} fp32", size=n, flops=2 * n**3),
        # a copy reads every byte once and writes it once
        _summary(copy, kernel=f"Tensor.copy_ of {COPY_BYTES[device] // 2**20} MiB fp32", bytes=2 * COPY_BYTES[device]),
    )


def _onnxruntime_kernels(device: str, threads: int, budget: Budget) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lwprof.runtime.measure import HostTimer

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    generator = np.random.default_rng(0)

    def session(graph: Any) -> Any:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)

    n = GEMM_SIZE[device]
    weight = numpy_helper.from_array(generator.standard_normal((n, n)).astype(np.float32), "w")
    gemm_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [weight],
    )
    x = generator.standard_normal((n, n)).astype(np.float32)
    gemm = _timed(_bound_run(session(gemm_graph), {"x": x}, "y", device), budget, HostTimer())

    # Not Identity: whether it copies or aliases its input is up to the graph
    # optimizer and the runtime version. Neg must read and write every element,
    # with one trivial op per element, so it runs at memory speed (on this
    # project's 2-core CPU it ran within 20% of an Identity that did copy).
    elements = COPY_BYTES[device] // 4
    copy_graph = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["b"])],
        "copy",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [elements])],
    )
    source = generator.standard_normal(elements).astype(np.float32)
    copy = _timed(_bound_run(session(copy_graph), {"a": source}, "b", device), budget, HostTimer())
    return (
        _summary(gemm, kernel=f"MatMul {n}x{n} fp32", size=n, flops=2 * n**3),
        _summary(copy, kernel=f"Neg over {COPY_BYTES[device] // 2**20} MiB fp32", bytes=2 * COPY_BYTES[device]),
    )


def _bound_run(session: Any, inputs: dict[str, Any], output_name: str, device: str) -> Any:
    """A run whose input and output live on the device, preallocated once, so
    only the kernel is timed: no allocation per run, and on CUDA no copy over
    PCIe (an output left unbound would come back to the host every run)."""
    import numpy as np
    import onnxruntime as ort

    binding = session.io_binding()
    # Held by the closure: a CPU OrtValue borrows its numpy array's memory.
    values = {name: ort.OrtValue.ortvalue_from_numpy(array, device, 0) for name, array in inputs.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    (output,) = [o for o in session.get_outputs() if o.name == output_name]
    values[output_name] = ort.OrtValue.ortvalue_from_shape_and_type(output.shape, np.float32, device, 0)
    binding.bind_ortvalue_output(output_name, values[output_name])

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # a no-op on the CPU; waits for the GPU's stream on CUDA

    run.bound_values = values  # type: ignore[attr-defined]  # the buffers live as long as the run
    return run
