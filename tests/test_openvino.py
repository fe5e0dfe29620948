"""The OpenVINO backend: explicit precision, layer names, fingerprint, a clean skip without the package."""

import numpy as np
import pytest
import torch

from lwprof.runtime.backends import get_backend
from lwprof.runtime.backends.openvino_runtime import OpenVinoBackend
from lwprof.runtime.export_cache import cached_onnx_export
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.settings import RunSettings
from small_models import Residual


def test_missing_package_is_a_clean_skip_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(OpenVinoBackend, "package", "openvino_not_installed_here")
    reason = get_backend("openvino").unavailable_reason("cpu")
    assert reason == "openvino_not_installed_here is not installed: pip install openvino"


def test_runs_on_the_cpu_only():
    assert get_backend("openvino").unavailable_reason("cuda").startswith("openvino does not run on device 'cuda'")


openvino = pytest.importorskip("openvino")


def test_fingerprint_carries_openvinos_own_version(tmp_path):
    from lwprof.runtime.roofline import device_fingerprint

    backend = get_backend("openvino")
    assert backend.runtime_version() == openvino.__version__.split("-")[0] or openvino.__version__.startswith(backend.runtime_version())
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    assert device_fingerprint(settings, "openvino") != device_fingerprint(settings, "onnxruntime")


def test_every_executed_node_is_named_by_a_layer_and_fusions_cover_their_layers(tmp_path):
    from lwprof.runtime.backends.openvino_runtime import layer_timings

    torch.manual_seed(0)
    path = cached_onnx_export(Residual().eval(), "block", (1, 3, 16, 16), tmp_path).path
    rows = layer_timings(openvino.Core(), path, example_input((1, 3, 16, 16)), RunSettings(device="cpu", threads=1), runs=2)
    modules = {"stem.0", "stem.1", "stem.2", "project.0", "project.1", "pool", "fc", "<root> (add)", "<root> (flatten)"}
    for row in rows:
        base = row.layer.rsplit(" (", 1)[0] if row.layer.endswith(("(reorder)", "(cast)")) else row.layer
        assert base in modules | {"input", "output"}, row.layer
        assert len(row.samples_s) == 2
    by_layer = {row.layer: row for row in rows}
    # The convolution carries its folded BatchNorm and its ReLU.
    assert {"stem.0", "stem.1", "stem.2"} <= set(by_layer["stem.0"].layers)


def test_a_precision_the_cpu_plugin_does_not_run_natively_is_refused(monkeypatch):
    from lwprof.runtime.backends import openvino_runtime

    monkeypatch.setattr(openvino_runtime, "cpu_capabilities", lambda: ["FP32", "INT8"])
    backend = get_backend("openvino")
    assert backend.precision_problem("fp16") == (
        "openvino does not run fp16 natively on this CPU (its CPU plugin reports FP32, INT8; fp16 needs FP16)"
    )
    assert backend.precision_problem("int8") is None and backend.precision_problem("fp32") is None


@pytest.mark.parametrize("precision,hint", [("fp32", "f32"), ("bf16", "bf16"), ("fp16", "f16")])
def test_precision_is_an_explicit_hint_and_recorded(tmp_path, precision, hint):
    from lwprof.runtime.loader import load_model

    if get_backend("openvino").precision_problem(precision):
        pytest.skip(get_backend("openvino").precision_problem(precision))

    model = load_model("mobilenet_v3_small_075")
    x = example_input(model.input_shape)
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision=precision)
    with get_backend("openvino").prepare(model, x, settings) as session:
        assert session.info["requested"]["INFERENCE_PRECISION_HINT"] == hint
        assert session.info["compiled_properties"]["INFERENCE_PRECISION_HINT"] == hint
        outputs = session.outputs()
    with get_backend("torch").prepare(model, x, RunSettings(device="cpu", threads=1)) as session:
        expected = session.outputs()
    if precision == "fp32":
        check = compare_outputs(expected, outputs)
        assert check.allclose, check.describe()
    else:  # bf16 keeps 8 bits of mantissa (fp16 11): the same direction, not the same digits
        a, b = expected[0].ravel(), outputs[0].ravel()
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98


def test_a_lower_precision_carries_openvinos_own_agreement_with_its_fp32(tmp_path):
    from lwprof.runtime.loader import load_model
    from lwprof.runtime.precision import Int8Recipe

    model = load_model("mobilenet_v3_small_075")
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="int8", int8=Int8Recipe(calibration_inputs=2))
    staged = get_backend("openvino").stage(model, model.input_shape, settings)
    record = staged.info["quantization"]
    assert ".int8-u8s8-" in staged.model.onnx_path.name  # ONNX Runtime's QDQ file, the same for both runtimes
    assert record["agreement"]["inputs"] == 2 and record["agreement"]["cosine"] > 0.9
    assert "layers" not in record  # which layers ORT left in float says nothing about OpenVINO
    ort = get_backend("onnxruntime").stage(model, model.input_shape, settings).info["quantization"]["agreement"]
    assert record["agreement"] != ort


def test_a_crash_of_openvinos_compiler_costs_the_backend_not_the_run():
    import os

    from lwprof.runtime.backends import BackendSkipped
    from lwprof.runtime.backends.openvino_runtime import in_own_process

    with pytest.raises(BackendSkipped, match=r"OpenVINO crashed compiling model.int8.onnx \(its process died\)"):
        in_own_process("model.int8.onnx", os.abort)
    assert in_own_process("model.onnx", max, 2, 3) == 3
