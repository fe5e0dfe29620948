"""Runtime backends: registry, devices, fair inputs, output agreement, the
ONNX export cache, the entry-point discovery and every way a backend is skipped."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lwprof.core.errors import LwprofError
from lwprof.core.timing import LayerTiming
from lwprof.runtime import backends
from lwprof.runtime.backends import (
    Backend,
    BackendSkipped,
    backend_names,
    check_device,
    get_backend,
    onnx_runtime,
    register_backend,
    torch_eager,
)
from lwprof.runtime.export_cache import default_cache_dir, module_fingerprint, onnx_cache_path
from lwprof.runtime.loader import LoadedModel, load_model
from lwprof.runtime.measure import CudaEventTimer, HostTimer
from lwprof.runtime.outputs import OutputCheck, compare_outputs, example_input
from lwprof.runtime.settings import RunSettings

CUDA = torch.cuda.is_available()


class Toy(nn.Module):
    """Conv + BatchNorm returning a nested output: a tensor, a dict holding a
    tensor and a list, and a 0-d tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y.relu(), {"mean": y.mean((2, 3)), "parts": [y.amax((1, 2, 3))]}, y.sum()


class Eigenvalues(nn.Module):
    """Runs in PyTorch; the ONNX exporter has no linalg_eigvals."""

    def forward(self, x):
        return torch.linalg.eigvals(x[0, 0]).real


class Logarithm(nn.Module):
    """NaN wherever the input is negative, on every runtime."""

    def forward(self, x):
        return torch.log(x)


def toy_model(module=None, shape=(1, 3, 8, 8), name="toy"):
    torch.manual_seed(0)
    return LoadedModel(name, "torch", module if module is not None else Toy(), None, shape, "file")


def settings(cache_dir, device="cpu", threads=1):
    return RunSettings(device=device, threads=threads, cache_dir=cache_dir)


def prepare(name, model, cache_dir, device="cpu", threads=1):
    return get_backend(name).prepare(model, example_input(model.input_shape), settings(cache_dir, device, threads))


# ---------------------------------------------------------------- registry


def test_backend_names_in_registration_order():
    assert backend_names() == ["torch", "onnxruntime", "openvino", "inductor", "executorch"]


def test_registering_a_duplicate_name_fails(monkeypatch):
    backend_names()  # the built-ins are registered
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))

    @register_backend
    class Compiled(Backend):
        name = "torch_compile"
        package = "torch"
        install_hint = "pip install torch"

    assert backend_names() == ["torch", "onnxruntime", "openvino", "inductor", "executorch", "torch_compile"]
    assert isinstance(get_backend("torch_compile"), Compiled)

    class Again(Backend):
        name = "torch"

    with pytest.raises(LwprofError, match="a backend named 'torch' is already registered"):
        register_backend(Again)


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [("onnxrutime", "did you mean onnxruntime?"), ("tourch", "did you mean torch, executorch?"),
     ("Torch", "did you mean torch, executorch?")],
)
def test_unknown_backend_suggests_close_names(typo, suggested):
    with pytest.raises(LwprofError) as caught:
        get_backend(typo)
    assert str(caught.value) == f"unknown backend '{typo}'; {suggested} (backends: torch, onnxruntime, openvino, inductor, executorch)"


def test_unknown_backend_without_close_name_lists_backends():
    with pytest.raises(LwprofError) as caught:
        get_backend("tensorrt")
    assert str(caught.value) == "unknown backend 'tensorrt' (backends: torch, onnxruntime, openvino, inductor, executorch)"


# ---------------------------------------------------------------- devices, inputs, cache dir


def test_cpu_device_is_accepted():
    assert check_device("cpu") is None


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_a_one_line_error():
    with pytest.raises(LwprofError) as caught:
        check_device("cuda")
    assert str(caught.value) == (
        f"--device cuda: no CUDA device is available here (torch {torch.__version__} sees none); use --device cpu"
    )


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "--device tpu: unknown device; use cpu or cuda"),
        ("cuda:1", "--device cuda:1: use --device cuda and pick the GPU with CUDA_VISIBLE_DEVICES"),
    ],
)
def test_other_devices_are_errors(device, message):
    with pytest.raises(LwprofError) as caught:
        check_device(device)
    assert str(caught.value) == message


def test_example_input_is_seeded_standard_normal():
    first = example_input((2, 3, 4, 5))
    assert first.shape == (2, 3, 4, 5) and first.dtype == np.float32
    np.testing.assert_array_equal(first, example_input((2, 3, 4, 5)))
    assert not np.array_equal(first, example_input((2, 3, 4, 5), seed=1))
    np.testing.assert_array_equal(example_input((4,), "float16"), first.reshape(-1)[:4].astype(np.float16))
    assert abs(float(example_input((100_000,)).std()) - 1.0) < 0.01


@pytest.mark.parametrize("dtype", ["int64", "bfloat16", "complex64"])
def test_example_input_rejects_other_dtypes(dtype):
    with pytest.raises(LwprofError, match=f"input dtype {dtype} is not supported"):
        example_input((1, 3), dtype)


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LWPROF_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("LWPROF_CACHE_DIR", "")
    assert default_cache_dir() == tmp_path / "xdg" / "lwprof"
    monkeypatch.delenv("LWPROF_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "lwprof"


def test_exports_are_cached_under_onnx(tmp_path):
    path = onnx_cache_path(tmp_path, "mobilenet_v2_100", (1, 3, 224, 224))
    torch_version = torch.__version__.replace("+", "_")
    assert path == tmp_path / "onnx" / f"mobilenet_v2_100-1x3x224x224-opset17-torch{torch_version}.onnx"


# ---------------------------------------------------------------- output comparison


def test_compare_outputs_exact_values():
    check = compare_outputs([np.array([1.0, 2.0, -4.0])], [np.array([1.0, 2.001, -4.0])])
    assert check.allclose and check.shapes_match and not check.nonfinite
    assert check.max_abs_diff == pytest.approx(0.001)
    assert check.max_rel_diff == pytest.approx(0.0005)
    assert check.describe() == "outputs agree (rtol 0.001, atol 0.001): max abs diff 0.001, max rel diff 0.0005"


def test_compare_outputs_relative_to_output_scale():
    # Outputs far below atol still differ by 10%: atol is scaled to the output.
    check = compare_outputs([np.array([1e-9, 2e-9])], [np.array([1.1e-9, 2e-9])])
    assert not check.allclose
    assert check.max_rel_diff == pytest.approx(0.1)
    # 1e-9 * (1e-3 + 1e-3): within tolerance at this scale
    assert compare_outputs([np.array([1e-9, 2e-9])], [np.array([1.0005e-9, 2e-9])]).allclose
    # Near-zero elements are measured against 1/1000 of the output's scale.
    check = compare_outputs([np.array([0.0, 1.0])], [np.array([1e-6, 1.0])])
    assert check.max_rel_diff == pytest.approx(1e-3)


def test_compare_outputs_differences_and_shapes():
    check = compare_outputs([np.zeros(3), np.ones((2, 2))], [np.zeros(3), np.full((2, 2), 1.5)])
    assert not check.allclose and check.shapes_match
    assert check.max_abs_diff == 0.5 and check.max_rel_diff == 0.5
    assert check.describe().startswith("outputs differ (rtol 0.001, atol 0.001)")

    check = compare_outputs([np.zeros(2)], [np.zeros(3), np.zeros(())])
    assert check == OutputCheck(False, math.inf, math.inf, False, False, ((2,),), ((3,), ()))
    assert check.describe() == "output shapes differ: [2] vs [3, scalar]"


def test_compare_outputs_flags_nonfinite_values():
    reference = [np.array([1.0, 2.0, 3.0])]
    check = compare_outputs(reference, [np.array([1.0, np.nan, 3.0])])
    assert check.nonfinite and not check.allclose
    assert check.max_abs_diff == math.inf
    assert check.describe().endswith("; outputs contain NaN or Inf")
    # NaN where the reference has NaN too: the outputs agree, the NaN is still reported.
    check = compare_outputs([np.array([np.nan, np.inf, 1.0])], [np.array([np.nan, np.inf, 1.0])])
    assert check.allclose and check.nonfinite and check.max_abs_diff == 0.0
    assert not compare_outputs([np.array([np.nan])], [np.array([1.0])]).nonfinite


# ---------------------------------------------------------------- torch and ONNX Runtime agree


@pytest.mark.parametrize("name", ["mobilenet_v3_small_075", "shufflenet_v2_050", "pplcnet_025"])
def test_torch_and_onnxruntime_agree_on_zoo_models(name, tmp_path):
    model = load_model(name, input_shape=(1, 3, 64, 64))
    x = example_input(model.input_shape)
    sessions = [get_backend(b).prepare(model, x, settings(tmp_path, threads=2)) for b in ("torch", "onnxruntime")]
    try:
        torch_out, ort_out = (s.outputs() for s in sessions)
        check = compare_outputs(torch_out, ort_out)
        assert check.allclose and check.shapes_match and not check.nonfinite, check.describe()
        # Zoo logits can be far below atol; the relative difference is the real test.
        assert check.max_rel_diff < 1e-2, check.describe()
        assert [o.shape for o in torch_out] == [(1, 1000)] and torch_out[0].dtype == np.float32
        for session in sessions:
            assert isinstance(session.timer, HostTimer)
            assert session.run() is None
            assert session.info["threads"]["intra_op"] == 2
            assert session.info["input_shape"] == [1, 3, 64, 64]
    finally:
        for session in sessions:
            session.close()
    info = sessions[1].info
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["threads"] == {"intra_op": 2, "inter_op": 1}
    assert info["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert info["execution_mode"] == "ORT_SEQUENTIAL"
    assert info["exported"] is True and info["export_cached"] is False and info["export_s"] > 0
    assert info["onnx_path"] == str(onnx_cache_path(tmp_path, name, (1, 3, 64, 64)))


def test_nested_outputs_are_flattened_in_order(tmp_path):
    model = toy_model()
    with prepare("torch", model, tmp_path) as torch_session, prepare("onnxruntime", model, tmp_path) as ort_session:
        torch_out, ort_out = torch_session.outputs(), ort_session.outputs()
    assert [o.shape for o in torch_out] == [(1, 4, 6, 6), (1, 4), (1,), ()]
    assert all(o.dtype == np.float32 for o in torch_out)
    check = compare_outputs(torch_out, ort_out)
    assert check.allclose and check.max_rel_diff < 1e-3, check.describe()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_module_runs_on_both_backends(tmp_path):
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).relu()

    torch.manual_seed(0)
    model = LoadedModel("scripted", "torch", torch.jit.script(Plain()), None, (1, 3, 8, 8), "torchscript")
    with prepare("torch", model, tmp_path) as torch_session, prepare("onnxruntime", model, tmp_path) as ort_session:
        assert torch_session.info["module_kind"] == "torchscript"
        check = compare_outputs(torch_session.outputs(), ort_session.outputs())
    assert check.allclose and check.max_rel_diff < 1e-3, check.describe()


def test_torch_session_fixes_threads_and_restores_them(tmp_path):
    model = toy_model()
    model.module.train()
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    session = prepare("torch", model, tmp_path, threads=wanted)
    assert torch.get_num_threads() == wanted
    assert session.info["threads"]["intra_op"] == wanted
    assert not model.module.training
    session.close()
    session.close()  # idempotent
    assert torch.get_num_threads() == before
    assert model.module.training and model.module.bn.training


def test_threads_default_to_physical_cores(tmp_path):
    from lwprof.runtime.environment import physical_cores

    model = toy_model()
    with get_backend("onnxruntime").prepare(model, example_input(model.input_shape), RunSettings.build(device="cpu", cache_dir=tmp_path)) as session:
        assert session.info["threads"] == {"intra_op": physical_cores(), "inter_op": 1}


def test_a_model_that_fails_to_run_is_skipped(tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("no kernel for this input\nsecond line")

    before = torch.get_num_threads()
    with pytest.raises(BackendSkipped) as caught:
        prepare("torch", toy_model(Broken(), name="broken"), tmp_path, threads=before % 2 + 1)
    assert str(caught.value) == "torch cannot run broken on cpu: no kernel for this input"
    assert torch.get_num_threads() == before


def test_thread_count_must_be_positive(tmp_path):
    with pytest.raises(LwprofError, match="threads must be a positive integer"):
        settings(tmp_path, threads=0)


def test_torch_backend_gets_the_input_values_not_the_array(tmp_path):
    class InPlace(nn.Module):
        def forward(self, x):
            return x.mul_(2)

    model = toy_model(InPlace(), shape=(1, 3))
    x = example_input(model.input_shape)
    original = x.copy()
    with get_backend("torch").prepare(model, x, settings(tmp_path)) as session:
        session.run()
    np.testing.assert_array_equal(x, original)


# ---------------------------------------------------------------- ONNX export cache


def test_second_prepare_reuses_the_cached_export(tmp_path):
    model = toy_model()
    with prepare("onnxruntime", model, tmp_path) as first:
        assert first.info["export_cached"] is False
    path = onnx_cache_path(tmp_path, "toy", (1, 3, 8, 8))
    mtime = path.stat().st_mtime_ns
    with prepare("onnxruntime", model, tmp_path) as second:
        assert second.info["export_cached"] is True and second.info["export_s"] == 0.0
        assert second.info["onnx_path"] == str(path)
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [path.name]  # no temporary files left


def test_changed_weights_are_exported_again(tmp_path):
    model = toy_model()
    fingerprint = module_fingerprint(model.module)
    assert module_fingerprint(model.module) == fingerprint
    prepare("onnxruntime", model, tmp_path).close()
    with torch.no_grad():
        model.module.conv.weight.add_(1.0)
    assert module_fingerprint(model.module) != fingerprint
    with prepare("onnxruntime", model, tmp_path) as ort_session, prepare("torch", model, tmp_path) as torch_session:
        assert ort_session.info["export_cached"] is False
        check = compare_outputs(torch_session.outputs(), ort_session.outputs())
    assert check.allclose and check.max_rel_diff < 1e-3, check.describe()


def test_export_failure_skips_onnxruntime_and_torch_still_runs(tmp_path, capfd):
    model = toy_model(Eigenvalues(), shape=(1, 1, 4, 4), name="eigenvalues")
    with pytest.raises(BackendSkipped) as caught:
        prepare("onnxruntime", model, tmp_path)
    assert str(caught.value) == (
        "ONNX export of Eigenvalues (input 1x1x4x4, opset 17) failed: "
        "Exporting the operator 'aten::linalg_eigvals' to ONNX opset version 17 is not supported"
    )
    assert isinstance(caught.value, LwprofError)
    assert list((tmp_path / "onnx").iterdir()) == []  # no half-written export
    assert capfd.readouterr().out == ""  # the exporter's graph dump stays off stdout
    with prepare("torch", model, tmp_path) as session:
        outputs = session.outputs()
    assert [o.shape for o in outputs] == [(4,)] and np.isfinite(outputs[0]).all()


# ---------------------------------------------------------------- ONNX files, skips and warnings


def test_onnx_file_runs_on_onnxruntime_and_skips_torch(tmp_path):
    from lwprof.counting.onnx_export import export_onnx

    torch.manual_seed(0)
    path = export_onnx(Toy(), (1, 3, 8, 8), tmp_path / "toy.onnx")
    model = load_model(str(path))
    assert model.kind == "onnx"
    with prepare("onnxruntime", model, tmp_path / "cache") as session:
        assert session.info["exported"] is False and session.info["export_cached"] is None
        assert session.info["onnx_path"] == str(path)
        assert [o.shape for o in session.outputs()] == [(1, 4, 6, 6), (1, 4), (1,), ()]
    assert not (tmp_path / "cache").exists()
    with pytest.raises(BackendSkipped) as caught:
        prepare("torch", model, tmp_path)
    assert str(caught.value) == (
        f"the torch backend needs a PyTorch model; toy is an ONNX file ({path}): use the onnxruntime backend"
    )

    wrong = LoadedModel("toy", "onnx", None, path, (1, 3, 16, 16), "onnx")
    with pytest.raises(BackendSkipped, match=r"toy.onnx takes input 1x3x8x8, not 1x3x16x16"):
        prepare("onnxruntime", wrong, tmp_path)


def test_nonfinite_outputs_are_detected_on_both_backends(tmp_path):
    model = toy_model(Logarithm(), shape=(1, 8), name="logarithm")
    with prepare("torch", model, tmp_path) as torch_session, prepare("onnxruntime", model, tmp_path) as ort_session:
        torch_out, ort_out = torch_session.outputs(), ort_session.outputs()
    assert np.isnan(torch_out[0]).any()
    check = compare_outputs(torch_out, ort_out)
    assert check.nonfinite and check.allclose  # both NaN in the same places
    assert "NaN or Inf" in check.describe()


def test_missing_package_is_skipped_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    backend = get_backend("onnxruntime")
    reason = "onnxruntime is not installed: pip install onnxruntime (onnxruntime-gpu for CUDA)"
    assert backend.unavailable_reason("cpu") == reason
    with pytest.raises(BackendSkipped) as caught:
        prepare("onnxruntime", toy_model(), tmp_path)
    assert str(caught.value) == reason
    assert get_backend("torch").unavailable_reason("cpu") is None


def test_unsupported_device_reason():
    assert get_backend("torch").unavailable_reason("tpu") == "torch does not run on device 'tpu' (it runs on cpu, cuda)"


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_reasons_without_cuda():
    import onnxruntime

    assert get_backend("torch").unavailable_reason("cuda").startswith(f"torch {torch.__version__} sees no CUDA device")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        reason = get_backend("onnxruntime").unavailable_reason("cuda")
        assert reason.startswith(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider")
        assert reason.endswith("pip install onnxruntime-gpu in place of onnxruntime")


# ---------------------------------------------------------------- per-layer delegation


def test_layer_timings_delegate_with_the_session_input(monkeypatch, tmp_path):
    calls = {}
    row = LayerTiming("conv", (1e-3,))

    def fake_torch(module, x, runs, device):
        calls["torch"] = (module, x, runs, device)
        return [row]

    def fake_ort(onnx_path, feed, threads, providers, runs, reference_path):
        calls["onnxruntime"] = (onnx_path, feed, threads, providers, runs, reference_path)
        return [row]

    monkeypatch.setattr(torch_eager, "layer_timings", fake_torch)
    monkeypatch.setattr(onnx_runtime, "layer_timings", fake_ort)
    model = toy_model()
    with prepare("torch", model, tmp_path) as torch_session, prepare("onnxruntime", model, tmp_path, threads=2) as ort_session:
        assert torch_session.layer_timings(3) == [row]
        assert ort_session.layer_timings(4) == [row]
    module, x, runs, device = calls["torch"]
    assert module is model.module and runs == 3 and device == "cpu"
    assert torch.equal(x, torch.from_numpy(example_input((1, 3, 8, 8))))
    onnx_path, feed, threads, providers, runs, reference_path = calls["onnxruntime"]
    assert onnx_path == reference_path == onnx_cache_path(tmp_path, "toy", (1, 3, 8, 8))
    assert list(feed) == ["input"] and threads == 2 and providers == ["CPUExecutionProvider"] and runs == 4
    np.testing.assert_array_equal(feed["input"], example_input((1, 3, 8, 8)))


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_torch_on_cuda_uses_a_copy_and_cuda_events(tmp_path):
    check_device("cuda")
    model = toy_model()
    with prepare("torch", model, tmp_path, device="cuda") as session:
        assert isinstance(session.timer, CudaEventTimer)
        assert next(session.module.parameters()).is_cuda
        assert not next(model.module.parameters()).is_cuda
        assert session.timer.time(session.run) > 0
        cuda_out = session.outputs()
    with prepare("torch", model, tmp_path) as session:
        cpu_out = session.outputs()
    check = compare_outputs(cpu_out, cuda_out)
    assert check.allclose and check.max_rel_diff < 1e-2, check.describe()


def skip_unless_available_on_cuda(name):
    """A CUDA machine may still lack a backend's CUDA build (onnxruntime-gpu): skip with its reason."""
    reason = get_backend(name).unavailable_reason("cuda")
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_onnxruntime_on_cuda(tmp_path):
    skip_unless_available_on_cuda("onnxruntime")
    model = toy_model()
    with prepare("onnxruntime", model, tmp_path, device="cuda") as session:
        assert session.info["providers"][0] == "CUDAExecutionProvider"
        assert isinstance(session.timer, CudaEventTimer)
        assert session.timer.time(session.run) > 0
        cuda_out = session.outputs()
    with prepare("torch", model, tmp_path) as session:
        check = compare_outputs(session.outputs(), cuda_out)
    assert check.allclose and check.max_rel_diff < 1e-2, check.describe()


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_per_layer_cuda_events_time_every_layer(tmp_path):
    from lwprof.counting.engine import profile_module

    model = toy_model()
    with prepare("torch", model, tmp_path, device="cuda") as session:
        rows = session.layer_timings(3)
    analytic = {layer.name for layer in profile_module(Toy(), (1, 3, 8, 8)).layers}
    assert {row.layer for row in rows} == analytic  # every layer, one CUDA event pair per op
    assert all(len(row.samples_s) == 3 and all(s > 0 for s in row.samples_s) for row in rows)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_roofline_kernels_run_on_the_gpu(tmp_path):
    from lwprof.runtime.measure import Budget

    gemm, copy = get_backend("torch").peak_kernels(
        RunSettings(device="cuda", threads=1, cache_dir=tmp_path, budget=Budget(min_time_s=0.05, max_time_s=0.2)))
    # A GPU's GEMM runs past 1 TFLOP/s and its copy past 100 GB/s; a CPU's does neither.
    assert gemm["flops"] / gemm["best_s"] > 1e12, gemm
    assert copy["bytes"] / copy["best_s"] > 1e11, copy


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_inductor_on_cuda_is_end_to_end_and_says_so(tmp_path):
    skip_unless_available_on_cuda("inductor")
    with prepare("inductor", toy_model(), tmp_path, device="cuda") as session:
        assert isinstance(session.timer, CudaEventTimer) and session.timer.time(session.run) > 0
        with pytest.raises(LwprofError, match="on CUDA .* end to end only"):
            session.layer_timings(1)
