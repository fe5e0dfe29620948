"""`lwprof profile --analytic` end to end through the CLI."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from lwprof.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["profile", *args], env={"COLUMNS": "250"})


def test_json_totals_use_the_documented_keys():
    result = invoke("mobilenet_v2_100", "--analytic", "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    totals = payload["totals"]
    assert totals["params"] == 3_504_872
    assert totals["macs"] == 300_774_272
    assert totals["flops"] > 2 * totals["macs"]  # element-wise work on top of 2*MACs
    assert totals["memory_bytes"] > totals["memory_bytes_fused"] > 0
    assert payload["unsupported_ops"] == {}
    assert payload["input_shape"] == [1, 3, 224, 224]


def test_csv_is_full_precision_and_units_in_headers():
    result = invoke("shufflenet_v2_050", "--analytic", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"macs", "flops", "memory_bytes", "memory_bytes_fused", "arithmetic_intensity_flops_per_byte"} <= set(rows[0])
    assert sum(int(r["macs"]) for r in rows) == 40_476_448
    assert rows[0]["layer"] == "features.stem.conv"  # execution order: the stem runs first


def test_out_dir_files_are_byte_identical_across_runs(tmp_path):
    for run in ("a", "b"):
        result = invoke("ghostnet_050", "--analytic", "--out", str(tmp_path / run), "--format", "json")
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a" / "layers.csv").read_bytes() == (tmp_path / "b" / "layers.csv").read_bytes()
    saved = json.loads((tmp_path / "a" / "profile.json").read_text())
    assert saved["totals"]["macs"] == 42_328_152


def test_depth_rolls_up_without_double_counting():
    flat = json.loads(invoke("mobilenet_v3_small_100", "--analytic", "--format", "json").stdout)
    rolled = json.loads(invoke("mobilenet_v3_small_100", "--analytic", "--depth", "1", "--format", "json").stdout)
    assert {row["layer"] for row in rolled["layers"]} == {"features", "head"}
    for key in ("macs", "flops", "memory_bytes", "memory_bytes_fused", "params"):
        assert sum(row[key] for row in rolled["layers"]) == sum(row[key] for row in flat["layers"]), key


def test_sort_and_top():
    result = invoke("mobilenet_v2_100", "--analytic", "--sort", "memory_bytes", "--top", "5", "--format", "json")
    layers = json.loads(result.stdout)["layers"]
    assert len(layers) == 5
    assert [r["memory_bytes"] for r in layers] == sorted((r["memory_bytes"] for r in layers), reverse=True)


def test_table_output_names_totals_and_spells_out_memory_access():
    result = invoke("squeezenet", "--analytic", "--top", "3")
    assert result.exit_code == 0, result.stderr
    assert "squeezenet_1_1" in result.stdout
    assert "memory access, eager" in result.stdout and "memory access, fused" in result.stdout


def test_crosscheck_shows_what_each_counter_misses():
    result = invoke("mobilenet_v3_small_100", "--analytic", "--crosscheck", "--format", "json")
    assert result.exit_code == 0, result.stderr
    checks = json.loads(result.stdout)["crosscheck"]
    assert checks["flop_counter_mode"]["macs"] == checks["lwprof"]["macs"] == 56_510_400
    assert checks["thop"]["params"] == 2_542_856
    # FlopCounterMode sees only convolutions and matrix products
    assert set(k for k, v in checks["flop_counter_mode"]["flops_by_class"].items() if v) <= {
        "conv", "conv_pointwise", "conv_depthwise", "matmul"
    }
    assert checks["lwprof"]["flops_by_class"]["activation"] > 0


def test_unknown_model_is_one_line_exit_2():
    result = invoke("mobilenet_v3_lage_100", "--analytic")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1  # one line for the failure; the rest is the progress note
    assert "did you mean mobilenet_v3_large_100" in errors[0]
    assert "Traceback" not in result.stderr


def test_wrong_input_shape_is_exit_2_naming_the_layer():
    result = invoke("mobilenet_v2_100", "--analytic", "--input-shape", "1,1,224,224")
    assert result.exit_code == 2
    assert "features.0.conv" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["1,3,x,224", "0,3,224,224", ""])
def test_bad_input_shape_text_is_exit_2(bad):
    result = invoke("mobilenet_v2_100", "--analytic", "--input-shape", bad)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_batch_size_scales_activation_counts():
    one = json.loads(invoke("mobilenet_v3_small_100", "--analytic", "--format", "json").stdout)["totals"]
    four = json.loads(invoke("mobilenet_v3_small_100", "--analytic", "--batch-size", "4", "--format", "json").stdout)["totals"]
    assert four["macs"] == 4 * one["macs"]
    assert four["params"] == one["params"]
