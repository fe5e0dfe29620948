"""`lwprof compare` and `lwprof report`: rank correlation, Pareto frontier, files, re-rendering."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

import lwprof
from lwprof.cli import app
from lwprof.core.stats import pareto_front, ranks, spearman
from lwprof.runtime import roofline


def test_ranks_average_ties():
    assert ranks([10, 30, 20, 20]) == [1.0, 4.0, 2.5, 2.5]


def test_spearman_exact():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # ranks x 1,2,3,4,5 and y 2,1,4,3,5: d^2 = 1+1+1+1+0 = 4, rho = 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2], [1, 2]) is None  # too few
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant
    assert spearman([1, None, 3, 4], [1, 5, 3, 4]) == 1.0  # missing pairs dropped


def test_pareto_front():
    points = [("a", 1.0, 60.0), ("b", 2.0, 70.0), ("c", 3.0, 65.0), ("d", 2.5, 75.0), ("e", 1.0, 55.0)]
    # c is beaten by b (faster and more accurate); e by a (as fast, more accurate)
    assert pareto_front(points) == ["a", "b", "d"]


@pytest.fixture
def fixed_roofline(monkeypatch):
    monkeypatch.setattr(roofline, "measure_peaks", lambda b, s: roofline.DevicePeaks(b, s.device, s.threads, 1e11, 1e10, measured_at="test"))


MODELS = ["pplcnet_025", "shufflenet_v2_050", "mobilenet_v3_small_075"]
TINY = ["--min-time", "0", "--max-time", "0.05", "--layer-runs", "1"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison for the tests that read it (each model is measured in worker processes)."""
    from calibration_files import known_calibration

    folder = tmp_path_factory.mktemp("compare")
    out = folder / "cmp"
    known_calibration("onnxruntime").save(folder / "cal.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(roofline, "measure_peaks", lambda b, s: roofline.DevicePeaks(b, s.device, s.threads, 1e11, 1e10, measured_at="test"))
        result = CliRunner().invoke(
            app, ["compare", *MODELS, *TINY, "--out", str(out), "--cache-dir", str(folder / "cache"), "--format", "csv",
                  "--calibration", str(folder / "cal.json")]
        )
    assert result.exit_code == 0, result.stderr
    return out, result


def test_compare_writes_expected_files_and_columns(compared):
    from calibration_files import known_calibration

    out, result = compared
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["model"] for r in rows] == MODELS
    for column in ("params", "macs", "flops", "memory_bytes", "memory_bytes_fused", "arithmetic_intensity_flops_per_byte",
                   "torch_median_s", "torch_iqr_s", "torch_throughput_items_per_s", "torch_roofline_bound_s",
                   "torch_roofline_efficiency", "onnxruntime_median_s", "published_top1_percent", "family",
                   "torch_minor_page_faults_per_pass", "torch_allocator", "torch_tuned_median_s"):
        assert column in rows[0], column
    assert int(rows[0]["macs"]) == lwprof.analyze("pplcnet_025").totals["macs"]
    payload = json.loads((out / "compare.json").read_text())
    assert {c["backend"] for c in payload["correlations"]} == {"torch", "onnxruntime"}
    assert all(set(c) >= {"rho_macs", "rho_params", "rho_memory_bytes", "rho_memory_bytes_fused", "rho_roofline_bound_s"} for c in payload["correlations"])
    # The calibration predicts ONNX Runtime's latency from the counted model: a proxy in the footer beside the others.
    for row in rows:
        expected = known_calibration("onnxruntime").predict(lwprof.analyze(row["model"])).total_s
        assert float(row["onnxruntime_predicted_s"]) == pytest.approx(expected, rel=1e-12) and not row["torch_predicted_s"]
    by_backend = {c["backend"]: c for c in payload["correlations"]}
    assert by_backend["onnxruntime"]["rho_predicted_s"] is not None and by_backend["torch"]["rho_predicted_s"] is None
    assert "predicted (calibration)" in (out / "summary.md").read_text()
    assert payload["environment"]["cpu_model"]
    assert set(payload["wall_time_split_s"]) >= {"analysis_s", "prepare_s", "measure_s", "total_s"}
    for stem in ("latency_vs_macs", "latency_vs_memory", "accuracy_vs_latency", "time_vs_flops_by_class", "roofline_models"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.svg").stat().st_size > 0
    assert "| pplcnet_025 |" in (out / "summary.md").read_text()
    assert all((out / "models" / m / "layers.csv").exists() for m in MODELS)


def test_report_rerenders_without_measuring(compared, monkeypatch):
    out, _ = compared
    for stem in ("latency_vs_macs", "summary", "report"):
        for path in out.glob(f"{stem}.*"):
            path.unlink()
    import lwprof.runtime.backends
    import lwprof.runtime.measure

    def forbidden(*args, **kwargs):
        raise AssertionError("report must not measure")

    monkeypatch.setattr(lwprof.runtime.backends, "get_backend", forbidden)
    monkeypatch.setattr(lwprof.runtime.measure, "run_timed", forbidden)
    monkeypatch.setattr(roofline, "measure_peaks", forbidden)
    result = CliRunner().invoke(app, ["report", str(out), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert (out / "latency_vs_macs.png").exists() and (out / "summary.md").exists() and (out / "report.html").exists()
    assert [r["model"] for r in json.loads(result.stdout)["rows"]] == MODELS
    # a single profile run directory re-renders too
    run_dir = out / "models" / "pplcnet_025"
    written = (run_dir / "trace.json").read_text()
    for name in ("time_share.png", "trace.json", "report.html"):
        (run_dir / name).unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "time_share.png").exists() and (run_dir / "summary.md").exists() and (run_dir / "report.html").exists()
    # trace.json from the saved files: the same timeline the run wrote (numbers read back from layers.csv).
    rewritten = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
    assert [(e["pid"], e["name"]) for e in rewritten] == [(e["pid"], e["name"]) for e in json.loads(written)["traceEvents"]]


def test_report_of_a_non_run_directory_is_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not an lwprof run directory" in result.stderr


def test_compare_needs_models():
    result = CliRunner().invoke(app, ["compare"])
    assert result.exit_code == 2 and "--all or --family" in result.stderr


def test_ctrl_c_keeps_the_models_measured(tmp_path):
    from test_latency import cache_with_fixed_roofline, interrupt_after

    out = tmp_path / "cmp"
    args = ["compare", *MODELS, "--min-time", "2", "--max-time", "2", "--layer-runs", "1", "--allocator", "default",
            "--no-plots", "--out", str(out), "--cache-dir", str(cache_with_fixed_roofline(tmp_path / "cache"))]
    code, _, stderr = interrupt_after(args, 3, tmp_path)  # while timing the second model's torch
    assert code == 130, stderr
    payload = json.loads((out / "compare.json").read_text())
    assert payload["partial"] is True and (out / "PARTIAL").exists()
    assert [r["model"] for r in payload["rows"]] == MODELS[:2]
    assert payload["rows"][0]["onnxruntime_median_s"] > 0 and payload["rows"][1]["torch_median_s"] > 0
    assert "onnxruntime_median_s" not in payload["rows"][1]
