"""The measurement harness on synthetic samples and a fake clock (no real timing)."""

import math

import pytest

from lwprof.core.stats import Measurement, Stats, median_confidence_interval, percentile
from lwprof.runtime.measure import Budget, HostTimer, run_timed


def test_stats_of_one_to_ten_exact():
    stats = Stats.of([float(v) for v in (7, 3, 10, 1, 5, 2, 9, 4, 8, 6)])
    assert stats.n == 10
    assert stats.median == 5.5
    assert stats.mean == 5.5
    assert stats.std == pytest.approx(math.sqrt(82.5 / 9))  # sum of squared deviations 82.5, n-1 = 9
    assert stats.iqr == 4.5  # p75 7.75 - p25 3.25
    assert stats.p90 == pytest.approx(9.1)
    assert stats.p99 == pytest.approx(9.91)
    assert (stats.min, stats.max) == (1.0, 10.0)
    # ranks floor(5 - 1.96*sqrt(10)/2) = 1 and ceil(5 + 3.099) - 1 = 8, zero-based
    assert (stats.ci95_low, stats.ci95_high) == (2.0, 9.0)
    assert stats.relative_iqr == pytest.approx(4.5 / 5.5)
    assert stats.noisy


def test_quiet_samples_are_not_noisy():
    stats = Stats.of([1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00])
    assert stats.median == 1.0
    assert stats.iqr == pytest.approx(0.01)  # p75 1.005 - p25 0.995
    assert not stats.noisy


def test_single_sample():
    stats = Stats.of([0.25])
    assert (stats.median, stats.std, stats.iqr, stats.ci95_low, stats.ci95_high) == (0.25, 0.0, 0.0, 0.25, 0.25)


def test_percentile_interpolates_like_numpy():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 25) == 17.5  # position 0.75 between 10 and 20


def test_median_ci_narrows_with_more_samples():
    low_small, high_small = median_confidence_interval(list(range(20)))
    low_big, high_big = median_confidence_interval(list(range(2000)))
    assert (high_small - low_small) / 20 > (high_big - low_big) / 2000


def test_measurement_warns_when_noisy_and_when_partial():
    noisy = Measurement("m", (1.0, 1.0, 2.0, 3.0), partial=True)
    notes = noisy.warnings()
    assert any("noisy" in n for n in notes) and any("interrupted" in n for n in notes)
    assert Measurement("q", (1.0,) * 5).warnings() == []


class FakeClock:
    """Time advances only when the measured function 'runs'."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self):
        return self.now

    def run(self):
        self.calls += 1
        self.now += next(self.durations)


def test_measurement_from_several_processes_warns_when_their_medians_differ():
    # process 1: 1.0, 1.0, 1.0 (median 1.0); process 2: 1.2, 1.2 (median 1.2); pooled median 1.0
    pooled = Measurement("m", (1.0, 1.0, 1.0, 1.2, 1.2), metadata={"samples_per_process": [3, 2]})
    spread, low, high = pooled.process_spread()
    assert spread == pytest.approx(0.2) and (low, high) == (1.0, 1.2)  # (1.2 - 1.0) / 1.0
    [note] = [w for w in pooled.warnings() if "processes" in w]  # beside the noisy-IQR warning
    assert "the medians of its 2 processes differ by 20%" in note and "1000.000 … 1200.000 ms" in note
    # (1.04 - 1.0) / 1.0 = 4%: within the 5% threshold
    assert Measurement("q", (1.0, 1.0, 1.04, 1.04), metadata={"samples_per_process": [2, 2]}).warnings() == []
    assert Measurement("one", (1.0, 2.0), metadata={"samples_per_process": [2]}).process_spread() is None
    assert Measurement("plain", (1.0, 2.0)).process_spread() is None


def test_harness_keeps_raw_samples_and_stops_at_min_time_when_stable():
    step = 1 / 64  # exact in binary floating point
    clock = FakeClock([0.1] * 3 + [step] * 1000)  # 3 slow warm-up iterations, then steady
    budget = Budget(warmup=3, warmup_time_s=0.0, min_time_s=0.5, max_time_s=10, min_samples=5)
    samples, interrupted = run_timed(clock.run, budget, HostTimer(clock))
    assert not interrupted
    assert samples == [step] * len(samples)  # warm-up excluded, each sample one iteration
    # stable samples: stops as soon as 0.5 s have been measured, 0.5 * 64 = 32 samples
    assert len(samples) == 32


def test_harness_respects_max_time_when_noisy():
    clock = FakeClock([0.0] * 3 + [0.01, 0.03] * 1000)
    budget = Budget(warmup=3, warmup_time_s=0.0, min_time_s=0.1, max_time_s=1.0, min_samples=5, target_precision=0.001)
    samples, _ = run_timed(clock.run, budget, HostTimer(clock))
    assert sum(samples) == pytest.approx(1.0, abs=0.03)  # never precise enough: runs to max time


def test_harness_respects_max_samples():
    clock = FakeClock([0.0] * 3 + [0.001] * 100)
    budget = Budget(warmup=3, warmup_time_s=0.0, min_time_s=5, max_time_s=10, min_samples=1, max_samples=7)
    samples, _ = run_timed(clock.run, budget, HostTimer(clock))
    assert len(samples) == 7


def test_harness_keeps_samples_on_interrupt():
    clock = FakeClock([0.0] * 3 + [0.25] * 4)

    def interrupted_after_four_samples():
        if clock.calls == 3 + 4:
            raise KeyboardInterrupt
        clock.run()

    samples, interrupted = run_timed(interrupted_after_four_samples, Budget(warmup=3, warmup_time_s=0.0), HostTimer(clock))
    assert interrupted and samples == [0.25] * 4


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError):
        Budget(min_time_s=5, max_time_s=1)
    with pytest.raises(ValueError):
        Budget(min_samples=0)
