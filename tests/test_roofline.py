"""The roofline: bound arithmetic, fingerprint, cache, peak measurement, `lwprof device` (plots: test_plots.py)."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from lwprof.cli import app
from lwprof.runtime import measure, roofline
from lwprof.runtime.measure import Budget
from lwprof.runtime.roofline import DevicePeaks, device_fingerprint, efficiency, load_or_measure, roofline_bound
from lwprof.runtime.settings import RunSettings

PEAKS = DevicePeaks("torch", "cpu", 2, peak_flops_per_s=1e11, bandwidth_bytes_per_s=1e10)
TINY_BUDGET = Budget(warmup=1, warmup_time_s=0.0, min_time_s=0.0, max_time_s=0.05, min_samples=2)


def test_bound_is_the_slower_of_compute_and_memory():
    point = roofline_bound(2_000_000_000, 100_000_000, PEAKS)
    assert point.compute_s == pytest.approx(0.02)  # 2e9 FLOPs / 1e11 FLOP/s
    assert point.memory_s == pytest.approx(0.01)  # 1e8 bytes / 1e10 B/s
    assert point.bound_s == pytest.approx(0.02) and point.limit == "compute"
    assert point.intensity == 20.0 and point.ridge_intensity == 10.0  # 1e11 / 1e10
    low = roofline_bound(1_000_000, 1_000_000, PEAKS)  # intensity 1 < ridge 10
    assert low.limit == "memory" and low.bound_s == pytest.approx(1e-4)
    assert efficiency(0.02, 0.04) == 0.5 and efficiency(0.02, None) is None


def test_fingerprint_is_stable_and_tracks_the_setting():
    two, one = RunSettings(threads=2), RunSettings(threads=1)
    assert device_fingerprint(two, "torch") == device_fingerprint(two, "torch")
    assert device_fingerprint(one, "torch") != device_fingerprint(two, "torch")
    assert device_fingerprint(two, "onnxruntime") != device_fingerprint(two, "torch")


def test_cache_measures_once(tmp_path, monkeypatch):
    calls = []

    def fake(backend, settings):
        calls.append(backend)
        return DevicePeaks(backend, settings.device, settings.threads, 1e11, 1e10, measured_at="now")

    monkeypatch.setattr(roofline, "measure_peaks", fake)
    settings = RunSettings(device="cpu", threads=2, cache_dir=tmp_path)
    first, cached = load_or_measure("torch", settings)
    assert not cached and first.fingerprint == device_fingerprint(settings, "torch")
    again, cached = load_or_measure("torch", settings)
    assert cached and again == first and calls == ["torch"]
    load_or_measure("torch", settings, refresh=True)
    assert calls == ["torch", "torch"]
    stored = json.loads((tmp_path / "device" / f"{first.fingerprint}.json").read_text())
    assert stored["ridge_intensity_flops_per_byte"] == 10.0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_peaks_are_measured(backend, monkeypatch):
    monkeypatch.setitem(measure.GEMM_SIZE, "cpu", 64)
    monkeypatch.setitem(measure.COPY_BYTES, "cpu", 2**20)
    threads = torch.get_num_threads()
    peaks = roofline.measure_peaks(backend, RunSettings(device="cpu", threads=1, budget=TINY_BUDGET))
    assert torch.get_num_threads() == threads  # restored
    assert math.isfinite(peaks.peak_flops_per_s) and peaks.peak_flops_per_s > 0
    assert math.isfinite(peaks.bandwidth_bytes_per_s) and peaks.bandwidth_bytes_per_s > 0
    assert peaks.gemm["flops"] == 2 * 64**3 and peaks.copy["bytes"] == 2 * 2**20


def test_device_command_json_and_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(roofline, "measure_peaks", lambda b, s: DevicePeaks(b, s.device, s.threads, 2e11, 4e10, measured_at="x"))
    runner = CliRunner()
    args = ["device", "--threads", "2", "--cache-dir", str(tmp_path), "--format", "json"]
    first = json.loads(runner.invoke(app, args).stdout)
    assert [(r["backend"], r["source"]) for r in first] == [("torch", "measured"), ("onnxruntime", "measured")]
    assert first[0]["ridge_intensity_flops_per_byte"] == 5.0  # 2e11 / 4e10
    second = json.loads(runner.invoke(app, args).stdout)
    assert {r["source"] for r in second} == {"cached"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_exit_2():
    result = CliRunner().invoke(app, ["device", "--device", "cuda"])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0

