"""Statistics of raw samples: derived, never stored.

A :class:`Measurement` is immutable: the raw per-iteration samples, what was
measured, and the environment it was measured in. Statistics are computed
from the samples (median, mean, std, IQR, p90, p99, min, max, n and a
distribution-free 95% confidence interval of the median) and flag noise when
IQR/median exceeds 10%. Rank statistics for comparisons across models
(Spearman's rho, the Pareto frontier) live here too: pure functions of
numbers, with no runtime behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence

NOISE_THRESHOLD = 0.10  # IQR / median
# Per-process medians of one figure (--processes) spread wider than this share
# of the pooled median: the process decides the figure, not only the noise.
PROCESS_SPREAD_THRESHOLD = 0.05


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
        spread = self.process_spread()
        if spread is not None and spread[0] > PROCESS_SPREAD_THRESHOLD:
            count = len(self.metadata["samples_per_process"])
            notes.append(
                f"{self.label}: the medians of its {count} processes differ by {spread[0]:.0%} of the pooled one "
                f"({spread[1] * 1e3:.3f} … {spread[2] * 1e3:.3f} ms): the process it runs in (its allocator's state) "
                "or the machine's drift moves this figure"
            )
        if self.partial:
            notes.append(f"{self.label}: interrupted, {self.stats.n} samples kept")
        return notes

    def process_spread(self) -> tuple[float, float, float] | None:
        """(max - min) / pooled median of the per-process medians, min, max;
        None when the samples come from one process (``metadata
        ["samples_per_process"]``: how many samples each process gave, in order)."""
        counts = self.metadata.get("samples_per_process") or ()
        if len([n for n in counts if n]) < 2 or not self.stats.median:
            return None
        medians, start = [], 0
        for n in counts:
            if n:
                medians.append(Stats.of(self.samples_s[start:start + n]).median)
            start += n
        return (max(medians) - min(medians)) / self.stats.median, min(medians), max(medians)


# ---------------------------------------------------------------------------
# Rank statistics across models


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the average of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None with fewer
    than 3 pairs or a constant side."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(pairs) < 3:
        return None
    rx, ry = ranks([a for a, _ in pairs]), ranks([b for _, b in pairs])
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry))
    var_x = sum((a - mean_x) ** 2 for a in rx)
    var_y = sum((b - mean_y) ** 2 for b in ry)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points (name, latency, accuracy) no other point beats on
    both: lower-or-equal latency and higher-or-equal accuracy, one strictly.
    In order of increasing latency."""
    front = []
    best = -math.inf
    for name, latency, accuracy in sorted(points, key=lambda p: (p[1], -p[2])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front
