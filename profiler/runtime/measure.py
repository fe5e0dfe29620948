"""The measurement harness: warm-up, adaptive repetition within a time budget,
raw samples kept, statistics derived.

A :class:`Measurement` is immutable: the raw per-iteration samples, what was
measured, and the environment it was measured in. Statistics are computed
from the samples (median, mean, std, IQR, p90, p99, min, max, n and a
distribution-free 95% confidence interval of the median) and flag noise when
IQR/median exceeds 10%.

Timing: on the CPU each iteration is timed with a monotonic host clock around
a synchronous call. On CUDA, host timers around asynchronous work would time
the launch, not the kernels: :class:`CudaEventTimer` records CUDA events on
the stream and synchronizes before reading them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

NOISE_THRESHOLD = 0.10  # IQR / median


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of sorted values, q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def median_confidence_interval(sorted_values: Sequence[float], z: float = 1.959964) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics: the samples of
    rank n/2 ∓ z·√n/2 (normal approximation of the binomial), clamped to the data."""
    n = len(sorted_values)
    half_width = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return sorted_values[low], sorted_values[high]


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    mean: float
    std: float
    iqr: float
    p90: float
    p99: float
    min: float
    max: float
    ci95_low: float
    ci95_high: float

    @property
    def relative_iqr(self) -> float:
        return self.iqr / self.median if self.median else math.inf

    @property
    def noisy(self) -> bool:
        return self.relative_iqr > NOISE_THRESHOLD

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Stats":
        values = sorted(samples)
        n = len(values)
        if n == 0:
            raise ValueError("statistics of no samples")
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        low, high = median_confidence_interval(values)
        return cls(
            n=n,
            median=percentile(values, 50),
            mean=mean,
            std=std,
            iqr=percentile(values, 75) - percentile(values, 25),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            min=values[0],
            max=values[-1],
            ci95_low=low,
            ci95_high=high,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median_s": self.median,
            "mean_s": self.mean,
            "std_s": self.std,
            "iqr_s": self.iqr,
            "p90_s": self.p90,
            "p99_s": self.p99,
            "min_s": self.min,
            "max_s": self.max,
            "ci95_low_s": self.ci95_low,
            "ci95_high_s": self.ci95_high,
            "relative_iqr": self.relative_iqr,
            "noisy": self.noisy,
        }


@dataclass(frozen=True)
class Measurement:
    """Raw samples (seconds per iteration) of one thing measured, and where."""

    label: str
    samples_s: tuple[float, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    partial: bool = False

    @cached_property
    def stats(self) -> Stats:
        return Stats.of(self.samples_s)

    def warnings(self) -> list[str]:
        notes = []
        if self.stats.noisy:
            notes.append(
                f"{self.label}: noisy measurement, IQR is {self.stats.relative_iqr:.0%} of the median "
                f"(threshold {NOISE_THRESHOLD:.0%}); close other programs or raise --min-time"
            )
        if self.partial:
            notes.append(f"{self.label}: interrupted, {self.stats.n} samples kept")
        return notes


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
