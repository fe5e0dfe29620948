"""Measurements in fresh worker processes: isolation from the parent's history,
page faults per pass, the --allocator choice and the run settings object.

No timing is asserted: what is checked is which process measured, which
allocator setting it ran with, and the page-fault counts, which are exact
properties of glibc's malloc rather than of the machine's speed."""

import csv
import json
import mmap
import os

import pytest
import torch
from typer.testing import CliRunner

from lwprof.cli import app
from lwprof.core.errors import LwprofError
from lwprof.runtime import allocator, roofline
from lwprof.runtime.allocator import FaultCounter, significant, variants
from lwprof.runtime.backends import get_backend
from lwprof.runtime.export_cache import module_fingerprint
from lwprof.runtime.loader import load_model
from lwprof.runtime.measure import Budget
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.settings import RunSettings, budget_from_options
from lwprof.runtime.worker import MeasureRequest, run_in_this_process, run_in_worker

GLIBC = allocator.tuning_unavailable() is None
SHORT = Budget(warmup=2, warmup_time_s=0.0, min_time_s=0.0, max_time_s=0.3, min_samples=5)


def request_for(spec, tmp_path, backend="torch", **changes):
    loaded = load_model(spec)
    settings = RunSettings(device="cpu", threads=1, budget=SHORT, cache_dir=tmp_path / "cache")
    staged = get_backend(backend).stage(loaded, loaded.input_shape, settings)
    return MeasureRequest(backend=backend, model=staged.model, settings=settings, label=spec, **changes)


# ---------------------------------------------------------------- page faults


def test_fault_counter_counts_every_fresh_page():
    pages = 512
    region = mmap.mmap(-1, pages * mmap.PAGESIZE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)  # one fault per 4 KiB page, not per 2 MiB
    counter = FaultCounter()
    counter.start()
    for page in range(pages):
        region[page * mmap.PAGESIZE] = 1  # the first write to a page faults it in
    counted = counter.stop()
    region.close()
    assert counted >= pages  # 512 pages touched once each; other activity can only add
    assert counter.per(pages) == counted / pages


def test_significance_threshold():
    assert significant(100.0) and significant(2_650.5)
    assert not significant(99.9) and not significant(0.0) and not significant(None)


def test_allocator_choices():
    assert variants("auto") == ("default",)  # tuned is added only when faults are significant
    assert variants("default") == ("default",)
    assert variants("tuned") == ("tuned",)
    assert variants("both") == ("default", "tuned")
    with pytest.raises(LwprofError, match="expected one of auto, default, tuned, both"):
        variants("jemalloc")


def test_tuned_environment_matches_what_mallopt_sets():
    # MALLOC_MMAP_THRESHOLD_ = 32 MiB = 33,554,432 (glibc's 64-bit maximum); trim threshold twice that
    assert allocator.TUNED_ENVIRONMENT == {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}
    assert allocator.deployment_hint() == "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864"


# ---------------------------------------------------------------- the worker process


def test_worker_measures_in_another_process_and_returns_everything(tmp_path):
    reply = run_in_worker(request_for("pplcnet_025", tmp_path, layer_runs=2, want_fingerprint=True))
    assert reply.skipped is None and not reply.interrupted
    assert reply.process["pid"] != os.getpid()
    assert reply.process["start_method"] == "spawn"
    assert reply.process["allocator"] == "default" and "allocator_tuning" not in reply.process
    assert len(reply.samples_s) >= 5 and min(reply.samples_s) > 0
    assert reply.minor_page_faults_per_pass is not None and reply.minor_page_faults_per_pass >= 0
    assert reply.layer_rows and all(len(row.samples_s) == 2 for row in reply.layer_rows)
    assert reply.info["threads"]["intra_op"] == 1
    # the worker rebuilt the same weights this process has (seeded by the name), and ran them on the same input
    here = load_model("pplcnet_025").module.eval()
    assert reply.fingerprint == module_fingerprint(here)
    [output] = reply.outputs
    with torch.inference_mode():
        expected = here(torch.from_numpy(example_input((1, 3, 224, 224)))).numpy()
    assert compare_outputs([expected], [output]).allclose


def test_onnxruntime_worker_runs_the_staged_export(tmp_path):
    request = request_for("pplcnet_025", tmp_path, backend="onnxruntime")
    assert request.model.kind == "onnx" and request.model.onnx_path.is_file() and request.model.module is None
    reply = run_in_worker(request)
    assert reply.skipped is None and reply.info["onnx_path"] == str(request.model.onnx_path)


def test_a_skip_in_the_worker_comes_back_as_a_reason(tmp_path):
    request = request_for("pplcnet_025", tmp_path)
    request = MeasureRequest(**{**request.__dict__, "settings": request.settings.but(device="cuda")})
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    reply = run_in_worker(request)
    assert reply.samples_s == () and "CUDA" in reply.skipped


@pytest.mark.skipif(not GLIBC, reason="page-fault behaviour of glibc's malloc")
def test_this_process_history_does_not_reach_the_worker(tmp_path):
    """Freeing one large block raises this process's mmap threshold, after
    which a model's activations stay in the heap here; a worker does not
    inherit that, and page-faults them in every pass as a fresh process does."""
    block = torch.empty(32 * 2**20 - 4096, dtype=torch.uint8)
    del block
    request = request_for("mobilenet_v2_100", tmp_path)
    here = run_in_this_process(request)
    there = run_in_worker(request)
    # mobilenet_v2 at 224x224 in a fresh process: about 2,650 faults per pass on this project's machines
    assert there.minor_page_faults_per_pass >= 100
    assert here.minor_page_faults_per_pass < there.minor_page_faults_per_pass / 10


@pytest.mark.skipif(not GLIBC, reason="the tuned allocator sets glibc's malloc")
def test_tuned_worker_sets_the_thresholds_and_stops_the_faults(tmp_path):
    default = run_in_worker(request_for("mobilenet_v2_100", tmp_path))
    tuned = run_in_worker(request_for("mobilenet_v2_100", tmp_path, allocator="tuned", want_outputs=False))
    assert tuned.process["allocator"] == "tuned"
    assert tuned.process["allocator_tuning"]["mmap_threshold_bytes"] == 33_554_432
    assert tuned.process["allocator_tuning"]["deployment_equivalent"] == allocator.deployment_hint()
    assert tuned.outputs is None
    assert default.minor_page_faults_per_pass >= 100
    assert tuned.minor_page_faults_per_pass < default.minor_page_faults_per_pass / 10


def test_a_model_rebuilt_with_other_weights_is_not_compared(tmp_path, fixed_roofline):
    """A factory drawing from Python's own random generator builds other
    weights in every process: its outputs cannot be compared across backends."""
    path = tmp_path / "unseeded.py"
    path.write_text(
        "import random\nimport torch\n\n"
        "def build():\n"
        "    net = torch.nn.Conv2d(3, 4, 3)\n"
        "    with torch.no_grad():\n"
        "        net.weight.fill_(random.random())\n"
        "    return net\n"
    )
    result = CliRunner().invoke(
        app,
        ["profile", f"{path}:build", "--input-shape", "1,3,16,16", "--min-time", "0", "--max-time", "0.05", "--layer-runs", "0",
         "--allocator", "default", "--no-plots", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
         "--format", "json"],
    )
    assert result.exit_code == 0, result.stderr
    by_backend = {r["backend"]: r for r in json.loads(result.stdout)["results"]}
    assert by_backend["torch"]["output_check"] is None
    assert any("other weights" in w for w in by_backend["torch"]["warnings"])
    assert by_backend["onnxruntime"]["outputs_vs"] == "(reference)"  # the first backend whose outputs count


# ---------------------------------------------------------------- --allocator on the command line


@pytest.fixture
def fixed_roofline(monkeypatch):
    monkeypatch.setattr(roofline, "measure_peaks", lambda b, s: roofline.DevicePeaks(b, s.device, s.threads, 1e11, 1e10, measured_at="test"))


def profile_json(tmp_path, spec, *args):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["profile", spec, "--backend", "torch", "--min-time", "0", "--max-time", "0.3", "--warmup", "2", "--layer-runs", "0",
         "--no-plots", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *args],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads((out / "profile.json").read_text())
    with (out / "latency.csv").open() as handle:
        samples = list(csv.DictReader(handle))
    return payload, samples, result


@pytest.fixture
def faults_significant_from(monkeypatch):
    """Move the significance threshold: auto's choice is under test, not how
    often this machine's malloc faults (the worker tests above measure that;
    a clean CI machine once counted 0 faults per pass through the CLI where
    the same day's workers counted thousands)."""
    return lambda threshold: monkeypatch.setattr(allocator, "SIGNIFICANT_FAULTS_PER_PASS", threshold)


@pytest.mark.skipif(not GLIBC, reason="the tuned allocator sets glibc's malloc")
def test_auto_adds_the_tuned_figure_when_faults_are_significant(tmp_path, fixed_roofline, faults_significant_from):
    faults_significant_from(0.0)  # any count, zero included, is significant
    payload, samples, result = profile_json(tmp_path, "pplcnet_025", "--input-shape", "1,3,64,64")
    assert payload["settings"]["allocator"] == "auto"
    [row] = payload["results"]
    assert row["allocator"] == "default" and row["minor_page_faults_per_pass"] >= 0
    assert row["tuned_median_s"] > 0 and row["tuned_minor_page_faults_per_pass"] >= 0
    assert row["allocator_tax"] == pytest.approx(row["median_s"] / row["tuned_median_s"] - 1)
    comparison = row["allocator_comparison"]
    assert set(comparison) >= {"default", "tuned", "default_vs_tuned", "how_to_get_tuned"}
    assert "MALLOC_MMAP_THRESHOLD_=33554432" in comparison["how_to_get_tuned"]
    assert {s["allocator"] for s in samples} == {"default", "tuned"}
    assert sum(s["allocator"] == "tuned" for s in samples) == comparison["tuned"]["n"]
    assert "minor page faults per pass" in result.stdout and "MALLOC_MMAP_THRESHOLD_=33554432" in result.stdout
    assert row["timed_processes"] == 1 and "--processes 5 pools five" in " ".join(result.stdout.split())


def test_auto_leaves_the_tuned_figure_out_when_faults_are_few(tmp_path, fixed_roofline, faults_significant_from):
    faults_significant_from(float("inf"))  # no count is significant
    payload, samples, result = profile_json(tmp_path, "pplcnet_025", "--input-shape", "1,3,64,64")
    [row] = payload["results"]
    assert row["allocator"] == "default" and row["tuned_median_s"] is None and row["allocator_tax"] is None
    assert {s["allocator"] for s in samples} == {"default"}
    assert "minor page faults per pass" not in result.stdout


def test_default_times_the_plain_process_only(tmp_path, fixed_roofline):
    payload, samples, _ = profile_json(tmp_path, "mobilenet_v2_100", "--allocator", "default")
    [row] = payload["results"]
    assert row["allocator"] == "default" and row["tuned_median_s"] is None
    assert row["process"]["allocator"] == "default" and "allocator_tuning" not in row["process"]
    assert {s["allocator"] for s in samples} == {"default"}


@pytest.mark.skipif(not GLIBC, reason="the tuned allocator sets glibc's malloc")
def test_tuned_times_the_tuned_allocator_only(tmp_path, fixed_roofline):
    payload, samples, _ = profile_json(tmp_path, "pplcnet_025", "--allocator", "tuned")
    [row] = payload["results"]
    assert payload["settings"]["allocator"] == "tuned"
    assert row["allocator"] == "tuned" and row["process"]["allocator_tuning"]["trim_threshold_bytes"] == 67_108_864
    assert row["tuned_median_s"] == row["median_s"]
    assert {s["allocator"] for s in samples} == {"tuned"}


@pytest.mark.skipif(not GLIBC, reason="the tuned allocator sets glibc's malloc")
def test_both_times_both_whatever_the_faults(tmp_path, fixed_roofline):
    payload, samples, _ = profile_json(tmp_path, "pplcnet_025", "--input-shape", "1,3,32,32", "--allocator", "both")
    [row] = payload["results"]
    assert row["allocator"] == "default" and row["tuned_median_s"] > 0
    assert {s["allocator"] for s in samples} == {"default", "tuned"}


def test_allocator_is_refused_with_analytic():
    result = CliRunner().invoke(app, ["profile", "pplcnet_025", "--analytic", "--allocator", "tuned"])
    assert result.exit_code == 2 and "--allocator applies to measurements" in result.stderr


def test_replies_of_several_processes_pool_into_one():
    from lwprof.runtime.worker import MeasureReply, pooled

    first = MeasureReply(samples_s=(1.0, 2.0, 3.0), minor_page_faults_per_pass=10.0, process={"pid": 1}, outputs=["y"], measure_s=1.0)
    second = MeasureReply(samples_s=(4.0, 5.0), minor_page_faults_per_pass=20.0, process={"pid": 2}, interrupted=True, measure_s=2.0)
    reply = pooled([first, second])
    assert reply.samples_s == (1.0, 2.0, 3.0, 4.0, 5.0) and reply.interrupted and reply.outputs == ["y"]
    assert reply.minor_page_faults_per_pass == 14.0  # (10*3 + 20*2) / 5 passes
    assert reply.measure_s == 3.0 and reply.process["pid"] == 1
    assert reply.process["workers"] == [
        {"pid": 1, "n": 3, "median_s": 2.0, "minor_page_faults_per_pass": 10.0},
        {"pid": 2, "n": 2, "median_s": 4.5, "minor_page_faults_per_pass": 20.0},
    ]
    assert pooled([first]) is first
    assert pooled([first, MeasureReply(samples_s=(4.0,), process={"pid": 3})]).minor_page_faults_per_pass is None  # one not counted


def test_processes_time_each_figure_in_that_many_workers(tmp_path, fixed_roofline):
    payload, samples, _ = profile_json(tmp_path, "pplcnet_025", "--input-shape", "1,3,32,32", "--allocator", "default", "--processes", "2")
    assert payload["settings"]["processes"] == 2
    [row] = payload["results"]
    workers = row["process"]["workers"]
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2 and sum(w["n"] for w in workers) == row["n"]
    assert row["timed_processes"] == 2
    assert [sum(s["process"] == str(index) for s in samples) for index in (0, 1)] == [w["n"] for w in workers]


def test_the_allocator_note_calls_one_process_one_draw():
    from lwprof.reports.allocator_report import allocator_notes

    row = {"backend": "torch", "batch_size": 1, "allocator": "default", "minor_page_faults_per_pass": 1_700.0, "timed_processes": 1}
    [single] = allocator_notes([row])
    [pooled] = allocator_notes([{**row, "timed_processes": 5}])
    assert "1,700 minor page faults per pass" in single and "--processes 5 pools five" in single
    assert "1,700 minor page faults per pass" in pooled and "--processes" not in pooled
    assert allocator_notes([{**row, "minor_page_faults_per_pass": 3.0}]) == []  # below the significance threshold


def test_processes_are_refused_with_analytic_and_below_one():
    result = CliRunner().invoke(app, ["profile", "pplcnet_025", "--analytic", "--processes", "2"])
    assert result.exit_code == 2 and "--processes applies to measurements" in result.stderr
    assert CliRunner().invoke(app, ["profile", "pplcnet_025", "--processes", "0"]).exit_code == 2
    with pytest.raises(LwprofError, match="processes must be a positive integer"):
        RunSettings(processes=0)


# ---------------------------------------------------------------- the settings object


def test_settings_are_built_once_with_defaults(monkeypatch, tmp_path):
    from lwprof.runtime.environment import physical_cores

    monkeypatch.setenv("LWPROF_CACHE_DIR", str(tmp_path))
    settings = RunSettings.build(device="cpu")
    assert settings.threads == physical_cores() and settings.cache_dir == tmp_path and settings.allocator == "auto"
    assert settings.to_dict()["cache_dir"] == str(tmp_path) and settings.to_dict()["budget"]["max_time_s"] == 5.0
    assert settings.but(threads=3).threads == 3 and settings.threads == physical_cores()
    with pytest.raises(LwprofError, match="threads must be a positive integer"):
        RunSettings(threads=0)
    with pytest.raises(LwprofError, match="--allocator"):
        RunSettings(allocator="mimalloc")


def test_budget_options_keep_what_was_not_given():
    base = Budget(warmup=2, min_time_s=0.3, max_time_s=1.0, min_samples=5)
    assert budget_from_options(base, min_time_s=None, max_time_s=2.0) == Budget(warmup=2, min_time_s=0.3, max_time_s=2.0, min_samples=5)
    with pytest.raises(LwprofError, match="measurement budget"):
        budget_from_options(min_time_s=3.0, max_time_s=1.0)
