"""`lwprof diff RUN_A RUN_B`: two saved runs side by side, from their files alone."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from lwprof.cli import app
from lwprof.reports.diff import diff_runs, ratio_interval


def write_profile(folder, model, medians, layers, samples):
    """A profile run directory as lwprof writes it: profile.json, layers.csv, latency.csv."""
    folder.mkdir()
    results = [{"backend": b, "precision": "fp32", "batch_size": 1, "median_s": m} for b, m in medians.items()]
    (folder / "profile.json").write_text(json.dumps({"model": model, "device": "cpu", "backends": list(medians),
                                                     "results": results}))
    columns = ["batch_size", "layer", "op_class", "flops", "memory_bytes", *[f"{b}_time_s" for b in medians]]
    with (folder / "layers.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in layers:
            writer.writerow({"batch_size": 1, **row})
    lines = ["backend,precision,device,batch_size,allocator,run,latency_s"]
    lines += [f"{b},fp32,cpu,1,default,{i},{s!r}" for b, values in samples.items() for i, s in enumerate(values)]
    (folder / "latency.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def two_runs(tmp_path):
    a = write_profile(tmp_path / "a", "net", {"torch": 0.010}, [
        {"layer": "conv", "op_class": "conv", "flops": 1000, "memory_bytes": 100, "torch_time_s": 0.006},
        {"layer": "fc", "op_class": "matmul", "flops": 50, "memory_bytes": 10, "torch_time_s": 0.002},
        {"layer": "old", "op_class": "activation", "flops": 5, "memory_bytes": 10, "torch_time_s": 0.001},
    ], {"torch": [0.010, 0.0101, 0.0099, 0.0100, 0.0102]})
    b = write_profile(tmp_path / "b", "net", {"torch": 0.005}, [
        {"layer": "conv", "op_class": "conv", "flops": 1000, "memory_bytes": 100, "torch_time_s": 0.003},
        {"layer": "fc", "op_class": "matmul", "flops": 100, "memory_bytes": 20, "torch_time_s": 0.002},
        {"layer": "new", "op_class": "activation", "flops": 5, "memory_bytes": 10, "torch_time_s": 0.0005},
    ], {"torch": [0.0050, 0.0051, 0.0049, 0.0050, 0.0052]})
    return a, b


def test_profile_runs_per_backend_and_per_layer(two_runs):
    a, b = two_runs
    result = diff_runs(a, b)
    (end_to_end,) = result["end_to_end"]
    assert end_to_end["ratio"] == pytest.approx(0.5)  # 5 ms / 10 ms
    # Both runs' samples are tight: the interval holds 0.5 and excludes no change.
    assert end_to_end["ci95_low"] <= 0.5 <= end_to_end["ci95_high"] < 1
    by_layer = {row["layer"]: row for row in result["layers"]}
    assert by_layer["conv"]["torch_ratio"] == pytest.approx(0.5) and by_layer["conv"]["counts_changed"] is False
    assert by_layer["fc"]["torch_ratio"] == pytest.approx(1.0) and by_layer["fc"]["counts_changed"] is True
    assert result["only_in_a"] == ["old"] and result["only_in_b"] == ["new"]


def test_the_ratio_interval_is_reproducible_and_brackets_the_ratio():
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.2, 1.8, 2.1, 1.9]
    low, high = ratio_interval(a, b)
    assert (low, high) == ratio_interval(a, b)  # seeded
    assert low <= 2.0 <= high


def test_compare_folders_per_model(tmp_path):
    for name, times in (("a", {"m1": 0.010, "m2": 0.020}), ("b", {"m1": 0.011, "m3": 0.030})):
        (tmp_path / name).mkdir()
        rows = [{"model": m, "flops": 1, "memory_bytes": 1, "torch_median_s": t} for m, t in times.items()]
        (tmp_path / name / "compare.json").write_text(json.dumps({"backends": ["torch"], "rows": rows}))
    result = diff_runs(tmp_path / "a", tmp_path / "b")
    assert [(m["model"], m["torch_ratio"]) for m in result["models"]] == [("m1", pytest.approx(1.1))]
    (summary,) = result["summary"]
    assert summary["within_10"] == 1.0  # 1.1 is within ±10% (to rounding)
    assert result["only_in_a"] == ["m2"] and result["only_in_b"] == ["m3"]


def test_cli_writes_tables_csv_json_and_the_plot(two_runs, tmp_path):
    a, b = two_runs
    runner = CliRunner()
    table = runner.invoke(app, ["diff", str(a), str(b), "--out", str(tmp_path / "d")], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "0.50x" in table.stdout and "only in A: old" in table.stderr
    assert (tmp_path / "d" / "diff.png").stat().st_size > 0 and json.loads((tmp_path / "d" / "diff.json").read_text())["kind"] == "profile"
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["diff", str(a), str(b), "--format", "csv"]).stdout)))
    assert [r["layer"] for r in rows] == ["conv", "fc"]
    assert json.loads(runner.invoke(app, ["diff", str(a), str(b), "--format", "json"]).stdout)["backends"] == ["torch"]


def test_runs_of_two_kinds_are_one_line_exit_2(two_runs, tmp_path):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text(json.dumps({"backends": [], "rows": []}))
    result = CliRunner().invoke(app, ["diff", str(two_runs[0]), str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "diff compares two of the same kind" in result.output
    result = CliRunner().invoke(app, ["diff", str(two_runs[0]), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not an lwprof run directory" in result.output
