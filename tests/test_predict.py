"""Latency prediction's foundation: a model split into its runtime's kernels
(exact features), the per-type regressor recovering a synthetic ground
truth, and the calibration file's exact round trip and clear refusals."""

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
from lwprof.predict.regressor import PowerLaw


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
    rules = FusionRules(never=("aten.relu",))
    kernels = decompose(profile_module(ConvBlock(), (1, 16, 28, 28)), rules)
    assert [k.layers for k in kernels][:2] == [("pw", "pw_bn"), ("act",)]
    assert kernels[1].type == "activation"


def test_kernel_types_are_registered_once():
    assert {"conv", "conv_depthwise", "conv_pointwise", "conv_group", "matmul", "pooling"} <= set(kernel_types())
    with pytest.raises(LwprofError, match="a kernel type for op class 'conv' is already registered"):
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


def test_the_regressor_refuses_timings_it_cannot_fit():
    with pytest.raises(LwprofError, match="positive and finite"):
        PowerLaw.fit(["flops"], [[1.0], [2.0]], [1e-3, 0.0])
    with pytest.raises(LwprofError, match="as many timings as feature rows"):
        PowerLaw.fit(["flops"], [[1.0]], [1e-3, 2e-3])


def _calibration():
    rows, seconds = _synthetic(100)
    law = PowerLaw.fit(FEATURES, rows, seconds)
    return Calibration(device={"fingerprint": "abc123", "cpu": "test CPU"}, backend="onnxruntime", runtime_version="1.31.1",
                       precision="fp32", rules=FusionRules(never=("aten.hardswish",)),
                       regressors={"conv_pointwise": law, "conv_depthwise": law}, overhead_s=2.5e-5,
                       validation={"conv_pointwise": {"held_out": 20, "median_rel_error": 0.03}}, created="2026-12-06",
                       lwprof_version="0.1.0")


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
     r"is calibration format version 99 \(written by lwprof 9.0\); this lwprof reads version 1"),
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



@pytest.mark.parametrize("kernel_type", __import__("lwprof.predict.calibrate", fromlist=["x"]).sampled_types())
def test_every_sampler_builds_one_kernel_of_its_type(kernel_type):
    from lwprof.predict.calibrate import _SAMPLERS

    rng = random.Random(7)
    for _ in range(3):
        module, shape = _SAMPLERS[kernel_type](rng)
        assert [k.type for k in decompose(profile_module(module, shape))] == [kernel_type]


def test_calibrating_fits_each_type_and_holds_some_out(tmp_path):
    from lwprof.predict.calibrate import collect, fit
    from lwprof.runtime.measure import Budget
    from lwprof.runtime.settings import RunSettings

    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, budget=Budget(min_time_s=0.01, max_time_s=0.02))
    overhead, samples = collect("torch", settings, per_type=5, types=["conv_pointwise", "elementwise"])
    assert overhead > 0 and [s.kernel_type for s in samples] == ["conv_pointwise"] * 5 + ["elementwise"] * 5
    regressors, validation = fit(samples)
    assert set(regressors) == {"conv_pointwise", "elementwise"}
    assert validation["conv_pointwise"]["samples"] == 5 and validation["conv_pointwise"]["held_out"] == 1
    # No timing is asserted: only that the fit predicts a positive time for each sample.
    assert all(regressors[s.kernel_type].predict(s.features) > 0 for s in samples)


def test_predict_cli_prints_per_layer_and_total_predicted(tmp_path):
    from typer.testing import CliRunner

    from lwprof.cli import app

    path = tmp_path / "cal.json"
    _calibration().save(path)
    result = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[-1]["layer"] == "(total, predicted)"
    predicted = [row["predicted_time_s"] for row in rows[:-1] if row["predicted_time_s"] is not None]
    assert rows[-1]["predicted_time_s"] == pytest.approx(2.5e-5 + sum(predicted))
    assert {row["kernel_type"] for row in rows[:-1] if row["predicted_time_s"] is None}  # reductions etc.: not calibrated


def test_predict_without_a_calibration_file_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from lwprof.cli import app

    result = CliRunner().invoke(app, ["predict", "pplcnet_025", "--calibration", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "no such file" in result.output
