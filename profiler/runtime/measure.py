"""The measurement harness: warm-up, adaptive repetition within a time budget.

Timing: on the CPU each iteration is timed with a monotonic host clock around
a synchronous call. On CUDA, host timers around asynchronous work would time
the launch, not the kernels: :class:`CudaEventTimer` records CUDA events on
the stream and synchronizes before reading them. The samples become a
:class:`~lwprof.core.stats.Measurement`, whose statistics are derived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from lwprof.core.stats import Stats, median_confidence_interval, percentile


class HostTimer:
    """Times a synchronous call with a monotonic clock (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock

    def time(self, fn: Callable[[], Any]) -> float:
        start = self.clock()
        fn()
        return self.clock() - start


class CudaEventTimer:
    """Times GPU work with CUDA events on the current stream, synchronizing
    before reading them, so asynchronous kernels are fully counted."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        import torch

        self.torch = torch
        self.clock = clock  # the budget is wall time, tracked on the host

    def time(self, fn: Callable[[], Any]) -> float:
        torch = self.torch
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0


@dataclass(frozen=True)
class Budget:
    """How long to measure: at least ``min_time_s`` and ``min_samples``, then
    until the median's 95% CI is within ``target_precision`` of it, never past
    ``max_time_s`` or ``max_samples``."""

    warmup: int = 3
    warmup_time_s: float = 0.2
    min_time_s: float = 1.0
    max_time_s: float = 5.0
    min_samples: int = 10
    max_samples: int = 10_000
    target_precision: float = 0.01

    def __post_init__(self) -> None:
        if self.min_time_s < 0 or self.max_time_s < self.min_time_s:
            raise ValueError(f"need 0 <= min time ({self.min_time_s}) <= max time ({self.max_time_s})")
        if self.min_samples < 1 or self.max_samples < self.min_samples:
            raise ValueError("need 1 <= min samples <= max samples")


def run_timed(
    fn: Callable[[], Any],
    budget: Budget = Budget(),
    timer: HostTimer | CudaEventTimer | None = None,
    on_sample: Callable[[int, float], None] | None = None,
    on_timing_start: Callable[[], None] | None = None,
) -> tuple[list[float], bool]:
    """Warm up, then time ``fn`` repeatedly within ``budget``.

    Returns (samples, interrupted). Ctrl-C during timing stops early and keeps
    the samples taken so far (interrupted=True); during warm-up it propagates.
    ``on_timing_start`` runs once between warm-up and the first timed call
    (where process counters such as page faults start counting).
    """
    timer = timer or HostTimer()
    clock = timer.clock
    warm_start = clock()
    done = 0
    while done < budget.warmup or clock() - warm_start < budget.warmup_time_s:
        fn()
        done += 1
        if done >= 10 * max(1, budget.warmup):
            break
    samples: list[float] = []
    if on_timing_start is not None:
        on_timing_start()
    start = clock()
    try:
        while len(samples) < budget.max_samples:
            samples.append(timer.time(fn))
            if on_sample is not None:
                on_sample(len(samples), clock() - start)
            elapsed = clock() - start
            if elapsed >= budget.max_time_s:
                break
            if elapsed >= budget.min_time_s and len(samples) >= budget.min_samples:
                ordered = sorted(samples)
                low, high = median_confidence_interval(ordered)
                middle = percentile(ordered, 50)
                if middle > 0 and (high - low) / 2 <= budget.target_precision * middle:
                    break
    except KeyboardInterrupt:
        return samples, True
    return samples, False


# ---------------------------------------------------------------------------
# Roofline kernels: every backend times its ceilings the same way.

# A GEMM large enough to reach the arithmetic peak, a copy far beyond the
# last-level cache so it measures memory, not cache.
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30}
PEAK_BUDGET = Budget(warmup=2, warmup_time_s=0.1, min_time_s=0.5, max_time_s=2.0, min_samples=5)


def time_kernel(fn: Callable[[], Any], budget: Budget, timer: HostTimer | CudaEventTimer) -> Stats:
    """Statistics of ``fn`` timed within ``budget`` (Ctrl-C propagates)."""
    samples, interrupted = run_timed(fn, budget, timer)
    if interrupted:
        raise KeyboardInterrupt
    return Stats.of(samples)


def ceiling(stats: Stats, **what: Any) -> dict[str, Any]:
    """A roofline kernel's record. A ceiling is what the device can reach: the
    fastest run (``best_s``), not the typical one."""
    return {**what, "best_s": stats.min, "median_s": stats.median, "iqr_s": stats.iqr, "n": stats.n}
