"""Precisions: selection, int8 quantization and its per-layer mapping, agreement with fp32."""

import json
import math
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lwprof.cli import app
from lwprof.commands.common import precision_targets
from lwprof.core.errors import LwprofError
from lwprof.runtime.backends import backend_names, get_backend
from lwprof.runtime.backends._ort_layers import layer_timings
from lwprof.runtime.backends._ort_quantize import precision_report, quantized_onnx
from lwprof.runtime.export_cache import cached_onnx_export
from lwprof.runtime.outputs import example_input
from lwprof.runtime.precision import PRECISIONS, Int8Recipe, agreement, calibration_inputs, parse_precisions
from lwprof.runtime.settings import RunSettings
from small_models import Residual

runner = CliRunner()


@pytest.fixture(scope="module")
def residual_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = Residual().eval()
    folder = tmp_path_factory.mktemp("cache")
    return cached_onnx_export(model, "residual", (1, 3, 16, 16), folder).path, folder


# ---------------------------------------------------------------- selection


def test_parse_precisions_keeps_order_and_drops_duplicates():
    assert parse_precisions("int8, fp32,int8") == ["int8", "fp32"]
    assert parse_precisions(None) == ["fp32"]
    with pytest.raises(LwprofError, match="unknown precision 'int4'; choose from fp32, bf16, fp16, int8"):
        parse_precisions("fp32,int4")


@pytest.mark.parametrize("name", backend_names())
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_backend_declares_each_precision_or_says_why_not(name, precision):
    backend = get_backend(name)
    assert "fp32" in backend.precisions
    problem = backend.precision_problem(precision)
    if precision in backend.precisions:
        # A declared precision may still need the CPU's own support (OpenVINO's fp16 needs FP16 in its plugin's list)
        # or an optional package (inductor's int8 needs torchao), and then says how to install it.
        assert (problem is None
                or problem.startswith(f"{name} does not run {precision} natively on this CPU")
                or (problem.startswith(f"{name} {precision} needs ") and "pip install" in problem))
    else:
        assert problem.startswith(f"{name} does not run {precision}: ")


def test_a_named_backend_that_would_measure_nothing_is_an_error():
    with pytest.raises(LwprofError, match="torch does not run int8: eager PyTorch runs int8 through reference"):
        precision_targets(["torch"], "int8", explicit=True)
    with pytest.raises(LwprofError, match="torch does not run int8"):
        precision_targets(["torch", "onnxruntime"], "int8", explicit=True)  # onnxruntime runs it; torch would run nothing


def test_named_backends_measure_each_precision_they_run_the_rest_left_out():
    assert precision_targets(["torch", "onnxruntime"], "fp32,int8", explicit=True) == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]


def test_a_precision_no_backend_runs_is_an_error_naming_each_reason():
    with pytest.raises(LwprofError, match="no backend of inductor, executorch runs fp16: inductor does not run fp16: .*; "
                                          "executorch does not run fp16"):
        precision_targets(["inductor", "executorch"], "fp32,fp16", explicit=False)


def test_default_backends_measure_only_what_each_runs():
    assert precision_targets(["torch", "onnxruntime"], "fp32,int8", explicit=False) == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]


def test_cli_refuses_torch_int8_with_one_line_and_exit_2():
    result = runner.invoke(app, ["profile", "mobilenet_v2_100", "--precision", "int8", "--backend", "torch"])
    assert result.exit_code == 2
    assert "torch does not run int8" in result.output and "Traceback" not in result.output


def test_cli_refuses_precision_on_analytic():
    result = runner.invoke(app, ["profile", "mobilenet_v2_100", "--analytic", "--precision", "int8"])
    assert result.exit_code == 2 and "--precision applies to measurements" in result.output


# ---------------------------------------------------------------- agreement


def test_agreement_of_identical_scaled_and_orthogonal_outputs():
    reference = [[np.array([[3.0, 4.0]])], [np.array([[1.0, 0.0]])]]  # two inputs, one output each
    same = agreement(reference, reference)
    assert (same.relative_error, same.cosine, same.top1_agreement) == (0.0, 1.0, 1.0)
    # Twice the reference: |2y - y| / |y| = 1, same direction, same top-1.
    doubled = agreement(reference, [[2 * o for o in outputs] for outputs in reference])
    assert doubled.relative_error == pytest.approx(1.0) and doubled.cosine == pytest.approx(1.0)
    assert doubled.top1_agreement == 1.0
    # [4, 3] against [3, 4]: |(1, -1)| / 5 = sqrt(2)/5; cosine 24/25; the top-1 flips.
    flipped = agreement(reference[:1], [[np.array([[4.0, 3.0]])]])
    assert flipped.relative_error == pytest.approx(math.sqrt(2) / 5)
    assert flipped.cosine == pytest.approx(24 / 25) and flipped.top1_agreement == 0.0
    assert flipped.meaningful
    orthogonal = agreement(reference[1:], [[np.array([[0.0, 1.0]])]])
    assert orthogonal.cosine == 0.0 and not orthogonal.meaningful


def test_agreement_without_a_classifier_output_has_no_top1():
    segmentation = [[np.ones((1, 3, 4, 4))]]
    assert agreement(segmentation, segmentation).top1_agreement is None


def test_calibration_inputs_are_seeded_and_not_the_timing_input():
    inputs = calibration_inputs(Int8Recipe(calibration_inputs=3), (1, 3, 4, 4))
    assert len(inputs) == 3 and all(x.shape == (1, 3, 4, 4) for x in inputs)
    assert not np.array_equal(inputs[0], example_input((1, 3, 4, 4)))
    assert np.array_equal(inputs[0], calibration_inputs(Int8Recipe(calibration_inputs=1), (1, 3, 4, 4))[0])


def test_calibration_data_from_npy_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.save(tmp_path / "b.npy", np.ones((2, 3, 4, 4), np.float32))  # a stack of two inputs
    inputs = calibration_inputs(Int8Recipe(calibration_dir=tmp_path), (1, 3, 4, 4))
    assert [float(x.mean()) for x in inputs] == [0.0, 1.0, 1.0]
    np.save(tmp_path / "c.npy", np.ones((3, 5), np.float32))
    with pytest.raises(LwprofError, match="c.npy has shape 3x5, not 1x3x4x4"):
        calibration_inputs(Int8Recipe(calibration_dir=tmp_path), (1, 3, 4, 4))
    with pytest.raises(LwprofError, match="no such folder"):
        Int8Recipe(calibration_dir=tmp_path / "missing")


# ---------------------------------------------------------------- int8 on ONNX Runtime


def test_quantized_model_is_cached_and_keyed_on_the_recipe(residual_onnx):
    path, cache = residual_onnx
    recipe = Int8Recipe(calibration_inputs=2)
    first, info = quantized_onnx(path, (1, 3, 16, 16), recipe, cache)
    again, info_again = quantized_onnx(path, (1, 3, 16, 16), recipe, cache)
    assert first == again and not info["quantize_cached"] and info_again["quantize_cached"]
    assert info["format"] == "QDQ" and info["activation_type"] == "uint8" and info["per_channel"] is True
    other, _ = quantized_onnx(path, (1, 3, 16, 16), Int8Recipe(scheme="s8s8", calibration_inputs=2), cache)
    assert other != first


@pytest.mark.parametrize("scheme", ["u8s8", "s8s8"])
def test_every_node_of_a_quantized_graph_is_named_by_a_layer(residual_onnx, scheme):
    path, cache = residual_onnx
    int8, _ = quantized_onnx(path, (1, 3, 16, 16), Int8Recipe(scheme=scheme, calibration_inputs=2), cache)
    x = example_input((1, 3, 16, 16))
    import onnx

    feed = {onnx.load(str(int8)).graph.input[0].name: x}
    rows = layer_timings(int8, feed, threads=1, providers=["CPUExecutionProvider"], runs=1)
    layers = [row.layer for row in rows]
    modules = {"stem.0", "stem.1", "stem.2", "project.0", "project.1", "pool", "fc", "<root> (add)", "<root> (flatten)", "input"}
    conversion = re.compile(r" \((?:quantize|dequantize|transpose|cast)\)$|, (?:quantize|dequantize|transpose|cast)(?=\)$)")
    for layer in layers:
        assert conversion.sub("", layer) in modules, layer
    # With U8S8 the convolutions run as int8 kernels under their own names; S8S8 keeps this residual pattern in float.
    kernel = "QLinearConv" if scheme == "u8s8" else "Conv"
    assert any(row.layer == "stem.0" and kernel in row.ops for row in rows), [(row.layer, row.ops) for row in rows]
    assert any(layer.endswith("(quantize)") for layer in layers)


def test_precision_report_lists_the_layers_left_in_float(residual_onnx):
    path, cache = residual_onnx
    u8, _ = quantized_onnx(path, (1, 3, 16, 16), Int8Recipe(calibration_inputs=2), cache)
    s8, _ = quantized_onnx(path, (1, 3, 16, 16), Int8Recipe(scheme="s8s8", calibration_inputs=2), cache)
    u8_report = precision_report(u8, 1, ["CPUExecutionProvider"])
    s8_report = precision_report(s8, 1, ["CPUExecutionProvider"])
    assert u8_report["float_layers"] == [] and u8_report["int8_layers"] >= 3
    floats = {entry["layer"]: entry for entry in s8_report["float_layers"]}
    assert "project.0" in floats, s8_report
    assert "no int8 kernel for this Conv pattern" in floats["project.0"]["reason"]
    assert s8_report["conversion_nodes"]["DequantizeLinear"] > u8_report["conversion_nodes"].get("DequantizeLinear", 0)


def test_onnxruntime_int8_stage_records_what_was_done_and_the_agreement(tmp_path):
    from lwprof.runtime.loader import load_model

    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="int8", int8=Int8Recipe(calibration_inputs=4))
    staged = get_backend("onnxruntime").stage(load_model("mobilenet_v3_small_075"), (1, 3, 224, 224), settings)
    assert staged.model.precision == "int8" and staged.model.onnx_path.name.endswith(".onnx")
    record = staged.info["quantization"]
    assert record["scheme"] == "u8s8" and record["calibration"] == "4 standard-normal inputs, seeds 1-4"
    assert record["agreement"]["inputs"] == 4 and record["agreement"]["meaningful"]
    assert 0.9 <= record["agreement"]["cosine"] <= 1.0


def test_torch_bf16_runs_a_cast_copy_and_agrees_with_fp32():
    from lwprof.runtime.loader import load_model

    model = load_model("mobilenet_v3_small_075")
    settings = RunSettings(device="cpu", threads=1, precision="bf16", int8=Int8Recipe(calibration_inputs=2))
    backend = get_backend("torch")
    staged = backend.stage(model, model.input_shape, settings)
    assert staged.info["precision"] == "bf16" and staged.info["quantization"]["agreement"]["cosine"] > 0.9
    with backend.prepare(model, example_input(model.input_shape), settings) as session:
        assert session.info["dtype"] == "bfloat16"
        assert session.outputs()[0].shape == (1, 1000)
    assert next(model.module.parameters()).dtype == torch.float32  # the caller's module is untouched


def test_profile_int8_writes_per_layer_precision_and_float_layers(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "profile", "mobilenet_v3_small_075", "--backend", "onnxruntime", "--precision", "fp32,int8",
        "--int8-scheme", "s8s8", "--calibration-inputs", "2", "--min-time", "0.05", "--max-time", "0.2",
        "--layer-runs", "2", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-plots", "--format", "json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "profile.json").read_text())
    assert saved["measured"] == ["onnxruntime", "onnxruntime_int8"]
    int8 = saved["results"][1]
    assert int8["precision"] == "int8" and int8["speedup_vs_fp32"] > 0
    layers = int8["info"]["quantization"]["layers"]["float_layers"]
    assert layers and all(entry["reason"] and entry["layer"] for entry in layers)
    import csv

    rows = list(csv.DictReader((out / "layers.csv").open()))
    ran_in = {row["onnxruntime_int8_ran_in"] for row in rows if row.get("onnxruntime_int8_time_s")}
    assert {"int8", "fp32", "conversion"} <= ran_in
    assert all(row["op_class"] == "conversion" for row in rows if row.get("onnxruntime_int8_ran_in") == "conversion"
               and row["layer"].endswith(("quantize)", "dequantize)", "transpose)")))
    assert "backend,precision,device,batch_size,allocator,process,run,latency_s" == (out / "latency.csv").read_text().splitlines()[0]


def test_compare_across_precisions_reports_speedup_size_tax_and_agreement(tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(app, [
        "compare", "mobilenet_v3_small_075", "shufflenet_v2_050", "--backend", "onnxruntime", "--precision", "fp32,int8",
        "--calibration-inputs", "2", "--min-time", "0.05", "--max-time", "0.2", "--layer-runs", "2",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "compare.json").read_text())
    assert payload["backends"] == ["onnxruntime", "onnxruntime_int8"] and payload["precisions"] == ["fp32", "int8"]
    for row in payload["rows"]:
        assert row["onnxruntime_int8_speedup_vs_fp32"] == pytest.approx(
            row["onnxruntime_median_s"] / row["onnxruntime_int8_median_s"])
        # int8 weights: a quarter of the bytes, plus scales and zero points
        assert 2.5 < row["onnxruntime_int8_size_ratio"] < 4.0
        assert 0 < row["onnxruntime_int8_conversion_time_share"] < 1
        assert 0.9 <= row["onnxruntime_int8_cosine_vs_fp32"] <= 1.0
    summary = (out / "summary.md").read_text()
    assert "onnxruntime_int8 speedup | size | memory | conversions | cosine | top-1 agree | float layers" in summary
    assert (out / "precision_speedup.png").exists()


# ---------------------------------------------------------------- bytes per precision


def _qdq_conv_graph():
    """float x -> QuantizeLinear -> QLinearConv (3->4 channels, 3x3, pad 1, per-channel int8
    weights, int32 bias) -> DequantizeLinear -> float y, on 1x3x8x8."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
        numpy_helper.from_array(rng.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8), "w"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.1, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zp"),
        numpy_helper.from_array(np.zeros(4, np.int32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="/conv/QuantizeLinear"),
        helper.make_node("QLinearConv", ["xq", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias"], ["yq"],
                         name="/conv/Conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="/conv/DequantizeLinear"),
    ]
    graph = helper.make_graph(nodes, "qconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_int8_graph_is_counted_at_one_byte_per_element_with_scales_and_zero_points():
    from lwprof.counting.onnx_count import analyze_onnx

    profile = analyze_onnx(_qdq_conv_graph())
    assert profile.unsupported_ops == {}
    by_op = {op.op: op for op in profile.ops}
    quantize, conv, dequantize = by_op["QuantizeLinear"], by_op["QLinearConv"], by_op["DequantizeLinear"]
    # Per-tensor scales and zero points are rank-0 constants: kernel arguments, as everywhere in lwprof.
    # read 192 floats (768 B), write 192 uint8 = 960 B; 2 FLOPs per element
    assert (quantize.memory_bytes, quantize.flops, quantize.op_class) == (960, 384, "conversion")
    # 192 (uint8 x) + 108 (int8 weights 4*3*3*3) + 16 (4 per-channel fp32 scales) + 4 (4 int8 zero
    # points) + 16 (4 int32 biases) + 256 (uint8 output 4*8*8) = 592 B
    assert conv.memory_bytes == 592
    # 4*8*8 outputs * 3*3*3 = 6,912 MACs; 2*6,912 + 256 bias adds + 2*256 to requantize = 14,592 FLOPs
    assert (conv.macs, conv.flops) == (6912, 14592)
    # read 256 uint8, write 256 floats (1,024 B) = 1,280 B
    assert (dequantize.memory_bytes, dequantize.flops) == (1280, 512)


def test_bf16_is_counted_at_two_bytes_per_element(tmp_path):
    from lwprof.commands.common import count
    from lwprof.runtime.loader import load_model

    model = load_model("mobilenet_v3_small_075")
    fp32 = count(model).totals
    settings = RunSettings(device="cpu", threads=1, precision="bf16", int8=Int8Recipe(calibration_inputs=1))
    analytic = get_backend("torch").stage(model, model.input_shape, settings).info["quantization"]["analytic"]
    # every tensor of the network is floating point: 2 bytes per element instead of 4
    assert analytic["memory_bytes"] * 2 == fp32["memory_bytes"]
    assert analytic["macs"] == fp32["macs"] and analytic["conversion_memory_bytes"] == 0


# ---------------------------------------------------------------- roofline and the other commands


def test_int8_roof_is_an_integer_gemm_and_its_own_cache_entry(tmp_path):
    from lwprof.runtime.measure import GEMM_SIZE, Budget
    from lwprof.runtime.roofline import device_fingerprint

    budget = Budget(warmup=1, warmup_time_s=0.0, min_time_s=0.0, max_time_s=0.0, min_samples=1)
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="int8", budget=budget)
    gemm, copy = get_backend("onnxruntime").peak_kernels(settings)
    n = GEMM_SIZE["cpu"]
    assert gemm["kernel"] == f"MatMulInteger {n}x{n} u8s8" and gemm["flops"] == 2 * n**3  # 2*2048**3 = 17,179,869,184
    assert copy["bytes"] > 0
    assert device_fingerprint(settings, "onnxruntime") != device_fingerprint(settings.but(precision="fp32"), "onnxruntime")


def test_guidelines_run_one_precision_every_named_backend_runs():
    result = runner.invoke(app, ["guidelines", "--quick", "--precision", "fp32,int8"])
    assert result.exit_code == 2 and "guidelines run one precision at a time" in result.output
    result = runner.invoke(app, ["guidelines", "--quick", "--precision", "int8", "--backend", "torch"])
    assert result.exit_code == 2 and "torch does not run int8" in result.output


def test_device_lists_each_precision_a_named_backend_runs():
    result = runner.invoke(app, ["device", "--backend", "torch", "--precision", "int8"])
    assert result.exit_code == 2 and "torch does not run int8" in result.output


def test_onnxruntime_fp16_shows_what_the_cpu_provider_ran_in_fp32(tmp_path):
    from lwprof.runtime.loader import load_model

    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="fp16", int8=Int8Recipe(calibration_inputs=2))
    staged = get_backend("onnxruntime").stage(load_model("mobilenet_v3_small_075"), (1, 3, 224, 224), settings)
    assert staged.model.precision == "fp16" and ".fp16-" in staged.model.onnx_path.name
    layers = staged.info["quantization"]["layers"]
    assert isinstance(layers["precision_really_used"], bool)
    for entry in layers["float_layers"]:
        assert "has no fp16 kernel for" in entry["reason"], entry
    if layers["float_layers"]:  # the fallback goes through casts ORT inserted
        assert layers["conversion_nodes"]["Cast"] > 0
    assert staged.info["quantization"]["agreement"]["cosine"] > 0.99  # fp16 rounding only
