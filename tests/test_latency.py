"""The measured profile: per-layer torch timing, joining time with counts, run directories."""

import datetime

import pytest
import torch
from torch import nn

import lwprof
from lwprof.commands.common import parse_batch_sizes, run_directory
from lwprof.core.errors import LwprofError
from lwprof.core.timing import LayerTiming
from lwprof.models import create_model
from lwprof.reports.profile_run import BackendResult, join_layers
from lwprof.runtime.backends.torch_eager import layer_timings


def small_net():
    return nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())


@pytest.mark.parametrize("name", ["mobilenet_v3_small_075", "shufflenet_v2_050", "ghostnet_050"])
def test_torch_layer_rows_are_the_analytic_rows(name):
    model = create_model(name)
    model.train()  # the timing pass runs in eval mode and restores this
    x = torch.randn(1, 3, 64, 64)
    rows = layer_timings(model, x, runs=3)
    profile = lwprof.analyze(model, input_shape=(1, 3, 64, 64))
    assert [r.layer for r in rows] == [layer.name for layer in profile.layers]
    assert all(len(r.samples_s) == 3 and min(r.samples_s) >= 0 for r in rows)
    assert all(m.training for m in model.modules())
    assert not torch.nn.modules.module._global_forward_pre_hooks
    assert not torch.nn.modules.module._global_forward_hooks


def test_join_puts_fused_time_on_the_first_covered_layer():
    profile = lwprof.analyze(small_net(), input_shape=(1, 8, 4, 4))
    conv, bn, relu = (layer.name for layer in profile.layers)
    assert (conv, bn, relu) == ("0", "1", "2")
    torch_result = BackendResult(
        backend="torch",
        batch_size=1,
        layer_rows=[
            LayerTiming("0", (0.003, 0.003, 0.003)),
            LayerTiming("1", (0.002, 0.002, 0.002)),
            LayerTiming("2", (0.001, 0.001, 0.001)),
        ],
    )
    ort_result = BackendResult(
        backend="onnxruntime",
        batch_size=1,
        layer_rows=[LayerTiming("0", (0.004, 0.004), covers=("0", "1", "2"), ops=("FusedConv",))],
    )
    rows = join_layers(profile, [torch_result, ort_result], peaks={}, batch_size=1)
    by_name = {r["layer"]: r for r in rows}
    flops = [layer.flops for layer in profile.layers]
    # conv 4*4*16*8 = 2,048 MACs -> 4,096 FLOPs; BN and ReLU add per-element work
    assert flops[0] == 4_096
    assert by_name["0"]["flops_share"] == flops[0] / sum(flops)
    assert by_name["0"]["torch_time_share"] == pytest.approx(0.5)  # 3 of 6 ms
    assert by_name["2"]["torch_time_s"] == pytest.approx(0.001)
    assert by_name["0"]["torch_achieved_flops_per_s"] == pytest.approx(flops[0] / 0.003)
    # ONNX Runtime: one fused row, its counts are the three layers' sums
    assert by_name["0"]["onnxruntime_time_s"] == pytest.approx(0.004)
    assert by_name["0"]["onnxruntime_fused_layers"] == "1 2"
    assert by_name["1"]["onnxruntime_fused_into"] == "0" and by_name["2"]["onnxruntime_fused_into"] == "0"
    assert "onnxruntime_time_s" not in by_name["1"]
    assert by_name["0"]["onnxruntime_achieved_flops_per_s"] == pytest.approx(sum(flops) / 0.004)
    fused_bytes = sum(layer.memory_bytes_fused for layer in profile.layers)
    assert by_name["0"]["onnxruntime_achieved_bytes_per_s"] == pytest.approx(fused_bytes / 0.004)


def test_join_keeps_unknown_timing_rows():
    profile = lwprof.analyze(small_net(), input_shape=(1, 8, 4, 4))
    result = BackendResult(backend="onnxruntime", batch_size=1, layer_rows=[LayerTiming("reorder_7", (0.001,), ops=("ReorderOutput",))])
    rows = join_layers(profile, [result], peaks={}, batch_size=1)
    assert rows[-1]["layer"] == "reorder_7" and rows[-1]["onnxruntime_time_s"] == pytest.approx(0.001)
    assert rows[-1]["onnxruntime_achieved_flops_per_s"] == 0.0  # it counts nothing


def test_run_directories_are_never_reused(tmp_path):
    now = datetime.datetime(2026, 11, 24, 2, 30, 0)
    first = run_directory(tmp_path, "mobilenet_v3_large_100", "cpu", now)
    second = run_directory(tmp_path, "mobilenet_v3_large_100", "cpu", now)
    assert first.name == "mobilenet_v3_large_100-cpu-20261124-023000"
    assert second.name == "mobilenet_v3_large_100-cpu-20261124-023000-2"
    assert run_directory(tmp_path, "dir/with:odd chars", "cpu", now).name == "dir_with_odd_chars-cpu-20261124-023000"


def test_batch_size_lists():
    assert parse_batch_sizes("1,8,32") == [1, 8, 32]
    assert parse_batch_sizes(" 8, 8 ") == [8]
    assert parse_batch_sizes(None) == [None]
    for bad in ("0", "1,,2", "a", "-1"):
        with pytest.raises(LwprofError, match="--batch-size"):
            parse_batch_sizes(bad)


# ---------------------------------------------------------------------------
# `lwprof profile MODEL --device cpu` end to end, on a tiny input and budget

import csv  # noqa: E402
import json  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from lwprof.cli import app  # noqa: E402
from lwprof.runtime import roofline  # noqa: E402
from lwprof.runtime.settings import RunSettings  # noqa: E402
from lwprof.runtime.backends.onnx_runtime import OnnxRuntimeBackend  # noqa: E402

TINY = ["--input-shape", "1,3,64,64", "--min-time", "0", "--max-time", "0.05", "--warmup", "1", "--layer-runs", "2"]


@pytest.fixture
def fixed_roofline(monkeypatch):
    """Known ceilings (100 GFLOP/s, 10 GB/s) instead of measuring them."""

    def fake(backend, settings):
        return roofline.DevicePeaks(backend, settings.device, settings.threads, 1e11, 1e10, measured_at="test")

    monkeypatch.setattr(roofline, "measure_peaks", fake)


def profile_cli(tmp_path, *args):
    return CliRunner().invoke(
        app, ["profile", *args, "--cache-dir", str(tmp_path / "cache")], env={"COLUMNS": "250"}
    )


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_profile_writes_a_run_directory(tmp_path, fixed_roofline):
    result = profile_cli(tmp_path, "pplcnet_025", *TINY, "--reports-dir", str(tmp_path / "reports"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert run_dir.name.startswith("pplcnet_025-cpu-")
    assert {p.name for p in run_dir.iterdir()} == {
        "layers.csv", "latency.csv", "profile.json", "trace.json", "time_share.png", "time_share.svg", "roofline.png",
        "roofline.svg", "report.html"
    }
    payload = json.loads(result.stdout)
    assert payload == json.loads((run_dir / "profile.json").read_text())
    assert payload["partial"] is False
    by_backend = {r["backend"]: r for r in payload["results"]}
    assert set(by_backend) == {"torch", "onnxruntime"}
    for row in by_backend.values():
        assert row["n"] >= 1 and row["median_s"] > 0 and row["skipped"] == ""
        # roofline bound = max(FLOPs / 1e11, bytes / 1e10) from the fixed ceilings
        totals = payload["totals"]
        memory = totals["memory_bytes_fused" if row["backend"] == "onnxruntime" else "memory_bytes"]
        assert row["roofline_bound_s"] == pytest.approx(max(totals["flops"] / 1e11, memory / 1e10))
        assert row["roofline_efficiency"] == pytest.approx(row["roofline_bound_s"] / row["median_s"])
    assert by_backend["onnxruntime"]["outputs_vs"] == "torch" and by_backend["onnxruntime"]["outputs_allclose"] is True
    env = payload["environment"]
    assert env["cpu_model"] and env["versions"]["onnxruntime"] and env["torch_num_threads"] == payload["threads"]
    assert by_backend["onnxruntime"]["info"]["graph_optimization_level"] == "ORT_ENABLE_ALL"

    # The per-layer times as a timeline: one process per backend, its timed rows end to end.
    events = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
    processes = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert [name.split(" batch")[0] for name in processes] == ["torch", "onnxruntime"]
    torch_rows = [r for r in read_csv(run_dir / "layers.csv") if r["torch_time_s"]]
    assert [e["name"] for e in events if e["ph"] == "X" and e["pid"] == 1] == [r["layer"] for r in torch_rows]

    samples = read_csv(run_dir / "latency.csv")
    assert len([s for s in samples if s["backend"] == "torch"]) == by_backend["torch"]["n"]
    layers = read_csv(run_dir / "layers.csv")
    analytic = lwprof.analyze("pplcnet_025", input_shape=(1, 3, 64, 64))
    assert [r["layer"] for r in layers[: len(analytic.layers)]] == [layer.name for layer in analytic.layers]
    convs = [r for r in layers if r["op_class"].startswith("conv")]
    assert convs and all(r["torch_time_s"] for r in convs)
    # every conv has an ONNX Runtime time, or names the fused node that has it
    assert all(r["onnxruntime_time_s"] or r["onnxruntime_fused_into"] for r in convs)


def test_batch_size_list_and_csv_summary(tmp_path, fixed_roofline):
    result = profile_cli(
        tmp_path, "shufflenet_v2_050", *TINY, "--batch-size", "1,2", "--backend", "torch", "--no-plots",
        "--out", str(tmp_path / "run"), "--format", "csv",
    )
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [(r["backend"], r["batch_size"]) for r in rows] == [("torch", "1"), ("torch", "2")]
    assert float(rows[1]["throughput_items_per_s"]) == pytest.approx(2 / float(rows[1]["median_s"]))
    layers = read_csv(tmp_path / "run" / "layers.csv")
    assert {r["batch_size"] for r in layers} == {"1", "2"}
    assert not list((tmp_path / "run").glob("*.png"))


def test_a_calibration_predicts_beside_the_measurement(tmp_path, fixed_roofline):
    from calibration_files import known_calibration

    known_calibration("torch").save(tmp_path / "cal.json")
    result = profile_cli(tmp_path, "shufflenet_v2_050", *TINY, "--batch-size", "1,2", "--backend", "torch", "--no-plots",
                         "--calibration", str(tmp_path / "cal.json"), "--out", str(tmp_path / "run"), "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert "predicting torch from" in result.stderr and "held-out kernel error" in result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    for row, batch_size in zip(rows, (1, 2)):
        # Predicted from the counted profile alone, per batch size, exactly as `lwprof predict` would.
        profile = lwprof.analyze("shufflenet_v2_050", input_shape=(batch_size, 3, 64, 64))  # TINY's input
        predicted = known_calibration("torch").predict(profile)
        assert float(row["predicted_s"]) == pytest.approx(predicted.total_s, rel=1e-12)
        assert float(row["predicted_error"]) == pytest.approx(predicted.total_s / float(row["median_s"]) - 1, rel=1e-9)
    layers = [r for r in read_csv(tmp_path / "run" / "layers.csv") if r["batch_size"] == "1"]
    per_layer = known_calibration("torch").predict(lwprof.analyze("shufflenet_v2_050", input_shape=(1, 3, 64, 64))).layer_seconds()
    assert {r["layer"]: float(r["torch_predicted_s"]) for r in layers if r["torch_predicted_s"]} == pytest.approx(
        {layer: s for layer, s in per_layer.items() if s is not None}, rel=1e-12)
    payload = json.loads((tmp_path / "run" / "profile.json").read_text())
    assert payload["predictions"]["1"]["torch"]["predicted_s"] == pytest.approx(float(rows[0]["predicted_s"]))
    assert "held-out kernel error" in payload["predictions"]["1"]["torch"]["calibration"]


def test_a_calibration_of_a_backend_not_measured_is_one_line_exit_2(tmp_path):
    from calibration_files import known_calibration

    known_calibration("onnxruntime").save(tmp_path / "cal.json")
    result = profile_cli(tmp_path, "pplcnet_025", "--backend", "torch", "--calibration", str(tmp_path / "cal.json"))
    assert result.exit_code == 2
    assert "predicts onnxruntime fp32, which this run does not measure (torch fp32)" in result.output


def test_run_directory_is_never_overwritten(tmp_path, fixed_roofline):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = profile_cli(tmp_path, "pplcnet_025", *TINY, "--out", str(out))
    assert result.exit_code == 2
    assert "never overwritten" in result.stderr and result.stderr.strip().count("\n") == 0
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def cache_with_fixed_roofline(cache_dir, threads=None):
    """A cache folder whose device ceilings (100 GFLOP/s, 10 GB/s) are already
    there, for runs in another process, where monkeypatching cannot reach."""
    from lwprof.runtime.environment import physical_cores

    threads = threads or physical_cores()
    for backend in ("torch", "onnxruntime"):
        fingerprint = roofline.device_fingerprint(RunSettings(device="cpu", threads=threads), backend)
        peaks = roofline.DevicePeaks(backend, "cpu", threads, 1e11, 1e10, fingerprint=fingerprint, measured_at="test")
        path = cache_dir / "device" / f"{fingerprint}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(peaks.to_dict()))
    return cache_dir


def interrupt_after(args, timing_lines, tmp_path, signal_group=False, settle_s=0.5):
    """Run ``python -m lwprof ARGS`` and send it SIGINT once its stderr has
    announced ``timing_lines`` timings (each worker's timing is one such line
    when stderr is not a terminal), as Ctrl-C would: to the process alone, or
    to its whole process group as a terminal does."""
    import os
    import signal
    import subprocess
    import sys
    import time

    # SIGINT at its default in the child, as in a terminal: a suite started as a background job
    # (`make test &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen(
        [sys.executable, "-m", "lwprof", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen, lines = 0, []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("timing "):
            seen += 1
            if seen == timing_lines:
                time.sleep(settle_s)  # well inside that timing's budget
                (os.killpg if signal_group else os.kill)(process.pid, signal.SIGINT)
                break
    stdout, rest = process.communicate(timeout=120)
    return process.returncode, stdout, "".join(lines) + rest


@pytest.mark.parametrize("signal_group", [False, True], ids=["to-the-process", "to-the-group"])
def test_ctrl_c_keeps_what_was_measured(tmp_path, signal_group):
    out = tmp_path / "run"
    args = ["profile", "pplcnet_025", "--input-shape", "1,3,64,64", "--min-time", "3", "--max-time", "3", "--warmup", "1",
            "--layer-runs", "2", "--allocator", "default", "--no-plots", "--out", str(out),
            "--cache-dir", str(cache_with_fixed_roofline(tmp_path / "cache"))]
    code, _, stderr = interrupt_after(args, 2, tmp_path, signal_group)  # while timing onnxruntime
    assert code == 130, stderr
    payload = json.loads((out / "profile.json").read_text())
    assert payload["partial"] is True and (out / "PARTIAL").exists()
    measured = {r["backend"]: r for r in payload["results"] if r.get("n")}
    assert list(measured) == ["torch", "onnxruntime"]
    assert measured["onnxruntime"]["max_s"] < 3  # stopped early, samples kept
    assert any("interrupted" in w for w in measured["onnxruntime"]["warnings"])
    samples = read_csv(out / "latency.csv")
    assert sum(s["backend"] == "onnxruntime" for s in samples) == measured["onnxruntime"]["n"]


def test_ctrl_c_in_a_later_process_keeps_every_process_timed(tmp_path):
    out = tmp_path / "run"
    args = ["profile", "pplcnet_025", "--backend", "torch", "--input-shape", "1,3,64,64", "--min-time", "3", "--max-time", "3",
            "--warmup", "1", "--layer-runs", "0", "--allocator", "default", "--processes", "3", "--no-plots", "--out", str(out),
            "--cache-dir", str(cache_with_fixed_roofline(tmp_path / "cache"))]
    code, _, stderr = interrupt_after(args, 2, tmp_path)  # while process 2 of 3 times
    assert code == 130, stderr
    payload = json.loads((out / "profile.json").read_text())
    [row] = payload["results"]
    assert payload["partial"] is True and any("interrupted" in w for w in row["warnings"])
    workers = row["process"]["workers"]
    assert len(workers) == 2 and workers[0]["n"] > 0 and workers[1]["n"] > 0  # the third never started
    processes = [s["process"] for s in read_csv(out / "latency.csv")]
    assert [processes.count("0"), processes.count("1")] == [w["n"] for w in workers] and len(processes) == row["n"]


def test_missing_backend_package_is_skipped_with_a_hint(tmp_path, fixed_roofline, monkeypatch):
    monkeypatch.setattr(OnnxRuntimeBackend, "package", "onnxruntime_not_here")
    result = profile_cli(tmp_path, "pplcnet_025", *TINY, "--no-plots", "--out", str(tmp_path / "run"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    skipped = {r["backend"]: r["skipped"] for r in payload["results"]}
    assert skipped["torch"] == ""
    assert skipped["onnxruntime"].startswith("onnxruntime_not_here is not installed: ")
    assert "onnxruntime: skipped" in result.stderr


def test_onnx_file_runs_on_onnxruntime_only(tmp_path, fixed_roofline):
    from lwprof.counting.onnx_export import export_onnx

    path = export_onnx("pplcnet_025", (1, 3, 64, 64), tmp_path / "net.onnx")
    result = profile_cli(tmp_path, str(path), *TINY, "--no-plots", "--out", str(tmp_path / "run"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    skipped = {r["backend"]: r["skipped"] for r in json.loads(result.stdout)["results"]}
    assert "needs a PyTorch model" in skipped["torch"] and skipped["onnxruntime"] == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path):
    result = profile_cli(tmp_path, "pplcnet_025", "--device", "cuda", "--reports-dir", str(tmp_path / "reports"))
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no CUDA device" in result.stderr
    assert not (tmp_path / "reports").exists()
