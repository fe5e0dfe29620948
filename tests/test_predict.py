"""Latency prediction's foundation: a model split into its runtime's kernels
(exact features), the per-type regressor recovering a synthetic ground
truth, and the calibration file's exact round trip and clear refusals."""

import csv
import io
import json
import math
import random

import pytest
import torch
from torch import nn

from lwprof.core.errors import LwprofError
from lwprof.counting.engine import profile_module
from lwprof.predict.calibration import FORMAT, Calibration
from lwprof.predict.kernels import FEATURES, FusionRules, decompose, kernel_type, kernel_types
from lwprof.predict.regressor import Linear, PowerLaw, load_regressor
from lwprof.predict.samplers import sampled_types


class ConvBlock(nn.Module):
    """Pointwise conv -> BN -> ReLU, depthwise 3x3 stride 2 -> BN, then a
    global average pool: three kernels on a runtime that fuses."""

    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(16, 32, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(32)
        self.act = nn.ReLU()
        self.dw = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False)
        self.dw_bn = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.dw_bn(self.dw(self.act(self.pw_bn(self.pw(x))))))


def test_a_block_splits_into_the_kernels_a_fusing_runtime_runs():
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)))
    assert [(k.type, k.layers) for k in kernels] == [
        ("conv_pointwise", ("pw", "pw_bn", "act")),
        ("conv_depthwise", ("dw", "dw_bn")),
        ("reduction", ("pool",)),  # a global average pool is a mean over the spatial axes
    ]
    pointwise, depthwise, pool = kernels
    assert pointwise.features["in_channels"] == 16 and pointwise.features["out_channels"] == 32
    assert pointwise.features["kernel_area"] == 1 and pointwise.features["stride"] == 1
    assert pointwise.features["fused_ops"] == 2  # BatchNorm and ReLU
    # 28*28*16*32 = 401,408 MACs: 802,816 FLOPs for the convolution; the fused BatchNorm and ReLU
    # add their element-wise FLOPs, as the analytic table counts them.
    profile = profile_module(ConvBlock(), (1, 16, 28, 28))
    layer_flops = {layer.name: layer.flops for layer in profile.layers}
    assert pointwise.features["flops"] == layer_flops["pw"] + layer_flops["pw_bn"] + layer_flops["act"]
    assert layer_flops["pw"] == 2 * 28 * 28 * 16 * 32
    assert depthwise.features["groups"] == 32 and depthwise.features["stride"] == 2
    assert depthwise.features["kernel_area"] == 9
    assert depthwise.features["output_elements"] == 32 * 14 * 14  # 6,272
    assert pool.features["output_elements"] == 32


def test_a_runtime_that_keeps_an_op_apart_makes_it_a_kernel_of_its_own():
    rules = FusionRules(never=(("*", "aten.relu"),))
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)), rules)
    assert [k.layers for k in kernels][:2] == [("pw", "pw_bn"), ("act",)]
    assert kernels[1].type == "activation"


def test_kernel_types_are_registered_once():
    assert {"conv", "conv_depthwise", "conv_pointwise", "conv_group", "matmul", "pooling"} <= set(kernel_types())
    with pytest.raises(LwprofError, match="a kernel type for 'conv' is already registered"):
        kernel_type("conv")(lambda op: {})


def _synthetic(samples, seed=0):
    """Kernel features drawn like a lightweight network's, and a known law:
    t = 2e-9 * flops^0.8 * bytes^0.15 * out_channels^0.05 seconds."""
    rng = random.Random(seed)
    rows, seconds = [], []
    for _ in range(samples):
        features = {name: 0.0 for name in FEATURES}
        features.update(flops=rng.uniform(1e5, 1e9), memory_bytes=rng.uniform(1e4, 1e7),
                        out_channels=rng.choice([16, 24, 32, 64, 96, 128, 256, 512]), kernel_area=9, stride=1, groups=1)
        rows.append([features[name] for name in FEATURES])
        seconds.append(2e-9 * (1 + features["flops"]) ** 0.8 * (1 + features["memory_bytes"]) ** 0.15
                       * (1 + features["out_channels"]) ** 0.05)
    return rows, seconds


def test_the_regressor_recovers_a_synthetic_ground_truth():
    rows, seconds = _synthetic(200)
    law = PowerLaw.fit(FEATURES, rows, seconds, ridge=0.0)
    held_rows, held_seconds = _synthetic(50, seed=1)
    errors = [abs(law.predict(row) / truth - 1) for row, truth in zip(held_rows, held_seconds)]
    assert max(errors) < 1e-9  # the law is in the model's family: recovered exactly
    weights = dict(zip(FEATURES, (w / s for w, s in zip(law.weights, law.scale))))
    assert weights["flops"] == pytest.approx(0.8, abs=1e-9) and weights["memory_bytes"] == pytest.approx(0.15, abs=1e-9)


def test_the_linear_regressor_recovers_a_roofline_like_ground_truth():
    # t = 4 us + flops / 200 GFLOP/s + bytes / 25 GB/s: each term non-negative, as a kernel's costs are.
    rng = random.Random(3)
    rows, seconds = [], []
    for _ in range(60):
        features = {name: 1.0 for name in FEATURES}
        features.update(flops=rng.uniform(1e5, 1e9), memory_bytes=rng.uniform(1e4, 1e8), output_elements=rng.uniform(1e3, 1e6))
        rows.append([features[name] for name in FEATURES])
        seconds.append(4e-6 + features["flops"] / 2e11 + features["memory_bytes"] / 2.5e10)
    fitted = Linear.fit(FEATURES, rows, seconds)
    assert fitted.intercept == pytest.approx(4e-6, rel=1e-6)
    assert dict(zip(fitted.terms, fitted.coefficients)) == pytest.approx(
        {"flops": 5e-12, "memory_bytes": 4e-11, "output_elements": 0.0}, abs=1e-18)
    assert load_regressor(fitted.to_dict()) == fitted


def test_the_linear_regressor_never_goes_negative():
    # Time that falls with FLOPs (noise, a cache effect) gets coefficient 0, not a negative cost.
    rows = [[f, 1e6] + [1.0] * (len(FEATURES) - 2) for f in (1e6, 2e6, 3e6, 4e6)]
    fitted = Linear.fit(FEATURES, rows, [4e-5, 3e-5, 2e-5, 1e-5])
    assert all(c >= 0 for c in fitted.coefficients) and fitted.intercept >= 0


def test_the_regressor_refuses_timings_it_cannot_fit():
    with pytest.raises(LwprofError, match="positive and finite"):
        PowerLaw.fit(["flops"], [[1.0], [2.0]], [1e-3, 0.0])
    with pytest.raises(LwprofError, match="as many timings as feature rows"):
        PowerLaw.fit(["flops"], [[1.0]], [1e-3, 2e-3])


def _calibration():
    rows, seconds = _synthetic(100)
    law = PowerLaw.fit(FEATURES, rows, seconds)
    return Calibration(device={"fingerprint": "abc123", "cpu": "test CPU"}, backend="onnxruntime", runtime_version="1.31.1",
                       precision="fp32", rules=FusionRules(never=(("conv_pointwise", "aten.hardswish"),), evidence={"how": "probe"}),
                       regressors={"conv_pointwise": law, "conv_depthwise": law}, overhead_s=2.5e-5,
                       validation={"conv_pointwise": {"samples": 100, "regressor": "power_law",
                                                      "median_relative_error": 0.03}},
                       created="2026-12-06", lwprof_version="0.1.0",
                       samples=({"kernel_type": "conv_pointwise", "index": 0, "features": rows[0], "seconds": seconds[0],
                                 "measured_s": seconds[0] + 2.5e-5},))


def test_a_calibration_file_round_trips_exactly(tmp_path):
    calibration = _calibration()
    calibration.save(tmp_path / "cal.json")
    loaded = Calibration.load(tmp_path / "cal.json")
    assert loaded == calibration
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)))
    assert [loaded.predict_kernel(k) for k in kernels] == [calibration.predict_kernel(k) for k in kernels]
    assert json.loads((tmp_path / "cal.json").read_text())["format"] == FORMAT


def test_an_unseen_kernel_type_is_flagged_not_zero():
    prediction = _calibration().predict(profile_module(ConvBlock(), (1, 16, 28, 28)))
    assert prediction.unseen_types == ["reduction"]
    assert prediction.seconds[2] is None and prediction.layer_seconds()["pool"] is None
    assert prediction.total_s == pytest.approx(2.5e-5 + sum(prediction.seconds[:2]))  # the per-call overhead once
    assert math.isfinite(prediction.layer_seconds()["pw"])


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="something-else"), "is not an lwprof calibration file"),
    (lambda d: d.update(format_version=99, lwprof_version="9.0"),
     r"is calibration format version 99 \(written by lwprof 9.0\); this lwprof reads version 2"),
    (lambda d: d.update(features=["flops"]), "was fitted on features"),
    (lambda d: d["regressors"]["conv_pointwise"].update(kind="forest"), "unknown regressor kind 'forest'"),
    (lambda d: d.pop("backend"), "lacks 'backend'"),
])
def test_a_file_this_lwprof_cannot_read_fails_with_one_clear_line(tmp_path, edit, message):
    data = _calibration().to_dict()
    edit(data)
    (tmp_path / "cal.json").write_text(json.dumps(data))
    with pytest.raises(LwprofError, match=message):
        Calibration.load(tmp_path / "cal.json")


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(LwprofError, match="no such file"):
        Calibration.load(tmp_path / "missing.json")



@pytest.mark.parametrize("kernel_type", sampled_types())
def test_every_sampler_builds_one_kernel_of_its_type(kernel_type):
    from lwprof.predict.samplers import configurations

    draws = configurations(kernel_type, seed=7)
    for _ in range(12):  # enough draws to reach each sampler's branches (attention, tokens, shuffle, ...)
        module, shape = next(draws)
        assert [k.type for k in decompose(profile_module(module, shape))] == [kernel_type]


def test_each_type_draws_from_its_own_stream():
    from lwprof.predict.samplers import configurations

    def shapes(kernel_type, n):
        draws = configurations(kernel_type, seed=0)
        return [next(draws)[1] for _ in range(n)]

    # More samples of one type (an adaptive round) leave the first ones, and every other type's, as they were.
    assert shapes("conv_pointwise", 5)[:3] == shapes("conv_pointwise", 3)
    assert shapes("elementwise", 4) == shapes("elementwise", 4)


def _settings(tmp_path):
    from lwprof.runtime.measure import Budget
    from lwprof.runtime.settings import RunSettings

    return RunSettings(device="cpu", threads=1, cache_dir=tmp_path, budget=Budget(min_time_s=0.01, max_time_s=0.02))


def test_calibrating_fits_each_type_and_cross_validates(tmp_path):
    from lwprof.predict.calibrate import Journal, collect, fit

    journal = Journal(None, {})
    samples = collect("torch", _settings(tmp_path), {"conv_pointwise": range(6), "elementwise": range(6)}, journal)
    assert journal.overhead > 0 and [s.kernel_type for s in samples] == ["conv_pointwise", "elementwise"] * 6  # in turn
    regressors, validation = fit(samples)
    assert set(regressors) == {"conv_pointwise", "elementwise"}
    assert validation["conv_pointwise"]["samples"] == 6
    # Both kinds were cross-validated; the one kept is the one with the smaller median error.
    kinds = validation["conv_pointwise"]["kinds"]
    assert set(kinds) == {"linear", "power_law"}
    assert validation["conv_pointwise"]["regressor"] == min(kinds, key=lambda kind: kinds[kind]["median_relative_error"])
    # No timing is asserted: only that the fit predicts a positive time for each sample.
    assert all(regressors[s.kernel_type].predict(s.features) > 0 for s in samples)


def test_a_spent_budget_times_nothing_more(tmp_path):
    import time

    from lwprof.predict.calibrate import Journal, collect

    journal = Journal(None, {})
    assert collect("torch", _settings(tmp_path), {"elementwise": range(3)}, journal, deadline=time.monotonic() - 1) == []
    assert not journal.samples


def test_samples_follow_the_learned_rules(tmp_path):
    from lwprof.predict.calibrate import Journal, collect

    # A runtime that runs BatchNorm and every activation apart (eager PyTorch) is calibrated on bare
    # convolutions: draws with a BatchNorm or an activation are passed over, not timed as one kernel.
    rules = FusionRules(never=tuple((head, op) for head in ("conv_pointwise",)
                                    for op in ("aten.native_batch_norm", "aten.relu", "aten.relu_", "aten.hardtanh",
                                               "aten.hardtanh_", "aten.hardswish", "aten.hardswish_")))
    samples = collect("torch", _settings(tmp_path), {"conv_pointwise": range(3)}, Journal(None, {}), rules=rules)
    assert [s.index for s in samples] == [0, 1, 2]
    assert all(dict(zip(FEATURES, s.features))["fused_ops"] == 0 for s in samples)


def test_an_interrupted_calibration_resumes_from_its_journal(tmp_path):
    from lwprof.predict.calibrate import Journal, collect

    path, plan, notes = tmp_path / "cal.json.samples.jsonl", {"backend": "torch", "seed": 0}, []
    first = collect("torch", _settings(tmp_path), {"elementwise": range(2)}, Journal(path, plan))
    with path.open("a") as handle:
        handle.write('{"kernel_type": "elementw')  # the line being written when Ctrl-C came
    resumed = Journal(path, plan, note=notes.append)
    assert notes == [f"resuming from {path}: 2 samples already timed"]
    again = collect("torch", _settings(tmp_path), {"elementwise": range(3)}, resumed)
    assert again[:2] == first  # not timed again
    # The torn line is cut off before anything is appended: header, overhead, 2 samples, 1 new.
    assert len(path.read_text().splitlines()) == 1 + 1 + 2 + 1
    assert all(json.loads(line) for line in path.read_text().splitlines())
    other = Journal(path, {**plan, "seed": 1}, note=notes.append)
    assert not other.samples and "from another calibration run" in notes[-1]


def test_eager_torch_keeps_every_op_apart_learned_from_its_layer_rows(tmp_path):
    from lwprof.predict.rules import PROBES, learn_rules

    rules = learn_rules("torch", _settings(tmp_path), overhead=1e-5)
    assert set(rules.evidence) == {probe.name for probe in PROBES}
    assert not any(seen["fused"] for seen in rules.evidence.values())
    # Eager PyTorch runs the BatchNorm after a convolution as its own kernel: predicted as one.
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)), rules)
    assert [k.layers for k in kernels][:3] == [("pw",), ("pw_bn",), ("act",)]


def test_onnx_runtime_fuses_batch_norm_and_relu_into_its_convolution(tmp_path):
    from lwprof.predict.rules import learn_rules

    rules = learn_rules("onnxruntime", _settings(tmp_path), overhead=1e-5)
    # FusedConv (or the NCHWc convolution's activation) covers both: ORT's own optimized graph says so.
    assert rules.evidence["conv+batch_norm"]["fused"] and rules.evidence["conv+relu"]["fused"]
    assert [k.layers for k in decompose(profile_module(ConvBlock(), (1, 16, 28, 28)), rules)][0] == ("pw", "pw_bn", "act")


def test_predict_cli_prints_a_profiles_schema_with_predicted_figures(tmp_path):
    from typer.testing import CliRunner

    from lwprof.cli import app

    path = tmp_path / "cal.json"
    _calibration().save(path)
    result = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # profile.json's keys, nothing measured: the result row has predicted_s where a measurement has median_s.
    assert payload["predicted"] is True and payload["model"] == "pplcnet_025" and payload["backends"] == ["onnxruntime"]
    (summary,) = payload["results"]
    assert summary["backend"] == "onnxruntime" and summary["precision"] == "fp32" and "median_s" not in summary
    layers = payload["layers"]
    predicted = [row["onnxruntime_predicted_s"] for row in layers if row.get("onnxruntime_predicted_s") is not None]
    assert summary["predicted_s"] == pytest.approx(2.5e-5 + sum(predicted))  # the per-call overhead once
    assert sum(row.get("onnxruntime_predicted_share") or 0 for row in layers) == pytest.approx(1.0)
    # Kernel types the file never saw: named in the summary and left None on their layers, never zero.
    unseen = {row["onnxruntime_predicted_kernel_type"] for row in layers if "onnxruntime_predicted_s" in row
              and row["onnxruntime_predicted_s"] is None}
    assert unseen and summary["predicted_not_calibrated"] == " ".join(sorted(unseen))
    # A fused kernel as a measured runtime's rows: time on its first layer, the others point to it.
    heads = {row["layer"]: row["onnxruntime_predicted_fused_layers"].split() for row in layers
             if row.get("onnxruntime_predicted_fused_layers")}
    assert heads
    by_name = {row["layer"]: row for row in layers}
    for head, others in heads.items():
        assert all(by_name[o]["onnxruntime_predicted_fused_into"] == head and "onnxruntime_predicted_s" not in by_name[o]
                   for o in others)
    # The same layer rows as CSV, the counts exact.
    csv_result = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(path), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(csv_result.stdout)))
    assert [r["layer"] for r in rows] == [r["layer"] for r in layers]
    assert [int(r["macs"]) for r in rows] == [r["macs"] for r in layers]
    table = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(path), "--top", "3"],
                               env={"COLUMNS": "250"})
    assert "end-to-end latency, predicted" in table.stdout and "top 3 layers by onnxruntime predicted time" in table.stdout


def test_predict_without_a_calibration_file_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from lwprof.cli import app

    result = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_the_context_fit_recovers_known_factors():
    from lwprof.predict.networks import fit_context

    # Networks whose time is 10 us + 0.8 * conv kernels alone + 1.5 * the others + 3 us per kernel.
    rng = random.Random(5)
    parts = [(rng.uniform(1e-4, 1e-2), rng.uniform(1e-5, 1e-3), rng.randint(10, 200)) for _ in range(24)]
    measured = [1e-5 + 0.8 * conv + 1.5 * other + 3e-6 * count for conv, other, count in parts]
    assert fit_context(parts, measured, once=1e-5) == pytest.approx((0.8, 1.5, 3e-6), rel=1e-9)
    # Too few networks for three terms: one factor for every kernel (here the data's own, 2).
    few = [(c, o, n) for c, o, n in parts[:6]]
    assert fit_context(few, [1e-5 + 2 * (c + o) for c, o, _ in few], once=1e-5) == pytest.approx((2.0, 2.0, 0.0))


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_networks_run_and_split_into_calibrated_kernels(seed):
    from lwprof.predict.networks import synthetic_network
    from lwprof.predict.samplers import sampled_types

    rng = random.Random(f"{seed}:networks")
    for _ in range(3):
        module, shape = synthetic_network(rng)
        with torch.no_grad():
            assert module(torch.randn(shape)).shape == (1, 1000)
        # Every kernel of a synthetic network is of a type calibration samples: the context fit sees no gaps.
        assert {k.type for k in decompose(profile_module(module, shape))} <= set(sampled_types())


def test_a_prediction_in_context_scales_each_kernel_group():
    import dataclasses

    from lwprof.predict.networks import Context

    calibration = dataclasses.replace(_calibration(), context=Context(conv_factor=0.5, other_factor=2.0, per_kernel_s=1e-6))
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)))
    pointwise = kernels[0]
    assert calibration.predict_kernel(pointwise) == pytest.approx(0.5 * calibration.predict_kernel(pointwise, False) + 1e-6)
    loaded = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert loaded.context == calibration.context


def test_registries_refuse_duplicates_and_suggest_close_names():
    from lwprof.predict.regressor import fit_regressor, regressor
    from lwprof.predict.samplers import sampler

    with pytest.raises(LwprofError, match="a regressor kind 'linear' is already registered"):
        regressor("linear")(Linear)
    with pytest.raises(LwprofError, match="a sampler for kernel type 'conv' is already registered"):
        sampler("conv")(lambda rng: None)
    with pytest.raises(LwprofError, match="unknown regressor kind 'linaer'; did you mean linear"):
        fit_regressor("linaer", FEATURES, [[1.0] * len(FEATURES)], [1e-3])
