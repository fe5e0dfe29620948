"""The inductor backend (torch.compile): a clean skip without a compiler,
compile time apart from measurement, inductor's settings recorded, its
outputs those of eager torch, and per-layer rows from its kernels, named
like the analytic table (with and without freezing)."""

import importlib.util
import sys

import pytest
import torch

from lwprof.core.errors import LwprofError
from lwprof.runtime.backends import BackendSkipped, get_backend
from lwprof.runtime.backends import inductor as inductor_backend
from lwprof.runtime.loader import load_model
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.settings import RunSettings
from small_models import Residual


def test_without_a_cpp_compiler_it_is_a_clean_skip(monkeypatch):
    monkeypatch.setattr(inductor_backend.shutil, "which", lambda name: None)
    assert get_backend("inductor").unavailable_reason("cpu") == (
        "inductor generates C++ for the CPU and finds no compiler (g++, c++ or clang++) on PATH"
    )


def test_int8_without_torchao_is_refused_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e.quantize_pt2e", None)  # import fails
    with pytest.raises(BackendSkipped, match="inductor int8 needs torchao's PT2E flow and torchao is not importable"):
        get_backend("inductor").prepare(load_model("pplcnet_025"), example_input((1, 3, 224, 224)),
                                        RunSettings(device="cpu", precision="int8"))


def test_fp16_is_refused_with_the_reason():
    assert get_backend("inductor").precision_problem("fp16").startswith(
        "inductor does not run fp16: inductor's CPU code has no fp16 vector kernels")


# torchao comes with the executorch extra (`make test-executorch` runs this).
@pytest.mark.executorch
@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is not installed (the executorch extra)")
@pytest.mark.skipif(get_backend("inductor").unavailable_reason("cpu") is not None, reason="inductor cannot run here")
def test_int8_runs_onednn_integer_kernels_named_by_layer(tmp_path, monkeypatch):
    from lwprof.runtime.precision import ran_in
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.precision import Int8Recipe

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    torch.manual_seed(0)
    model = LoadedModel("residual", "torch", Residual().eval(), None, (1, 3, 16, 16), "file")
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="int8", int8=Int8Recipe(calibration_inputs=4))
    with get_backend("inductor").prepare(model, example_input((1, 3, 16, 16)), settings) as session:
        rows = {row.layer: row for row in session.layer_timings(1)}
        info = session.info
    # The recipe's freezing is on for this compile only, and said so.
    assert info["inductor_config"]["freezing"] is True and info["inductor_config_set_by_precision"] == {"freezing": True}
    assert info["quantization"]["calibration"] == "4 inputs (the int8 recipe's)"
    assert 0.9 < info["quantization"]["agreement"]["worst_cosine"] <= 1.0
    for conv in ("stem.0", "project.0"):
        assert ran_in(rows[conv].ops, "int8") == "int8", rows[conv].ops  # oneDNN's qconv, in its layer's row


def test_fingerprint_is_torchs_version_under_its_own_name(tmp_path):
    from lwprof.runtime.roofline import device_fingerprint

    assert get_backend("inductor").runtime_version() == torch.__version__.split("+")[0] or torch.__version__.startswith(
        get_backend("inductor").runtime_version())
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    assert device_fingerprint(settings, "inductor") != device_fingerprint(settings, "torch")


@pytest.mark.skipif(get_backend("inductor").unavailable_reason("cpu") is not None, reason="inductor cannot run here")
def test_compiled_session_agrees_with_eager_and_records_what_it_did(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_FREEZING", raising=False)
    from lwprof.runtime.loader import LoadedModel

    torch.manual_seed(0)
    model = LoadedModel("residual", "torch", Residual().eval(), None, (1, 3, 16, 16), "file")
    x = example_input((1, 3, 16, 16))
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    with get_backend("torch").prepare(model, x, settings) as session:
        expected = session.outputs()
    with get_backend("inductor").prepare(model, x, settings) as session:
        check = compare_outputs(expected, session.outputs())
        info = session.info
    assert check.allclose, check.describe()
    assert info["compile_s"] > 0  # the first inference compiled, inside prepare
    assert info["inductor_cache_dir"] == str(tmp_path / "inductor") and any((tmp_path / "inductor").iterdir())
    assert info["inductor_config"]["freezing"] is False  # inductor's default, as a user's torch.compile(model) gets


@pytest.mark.skipif(get_backend("inductor").unavailable_reason("cpu") is not None, reason="inductor cannot run here")
@pytest.mark.parametrize("freezing", [False, True])
def test_layer_rows_name_every_weighted_layer_of_a_small_model(tmp_path, monkeypatch, freezing):
    from torch._inductor import config

    from lwprof.counting.engine import profile_module
    from lwprof.runtime.loader import LoadedModel

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    torch.manual_seed(0)
    model = LoadedModel("residual", "torch", Residual().eval(), None, (1, 3, 16, 16), "file")
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    with config.patch(freezing=freezing), get_backend("inductor").prepare(model, example_input((1, 3, 16, 16)), settings) as session:
        rows = session.layer_timings(2)
        info = session.info
    analytic = {layer.name for layer in profile_module(Residual(), (1, 3, 16, 16)).layers}
    covered = {layer for row in rows for layer in row.layers}
    assert covered <= analytic, covered - analytic  # every name is an analytic row
    # Each convolution ran in a kernel of its own row (a fused pattern carries its
    # BatchNorm and activation as fused layers); the tiny linear layer may be C++
    # inductor generated with the pooling, but it is timed somewhere.
    assert {"stem.0", "project.0"} <= {row.layer for row in rows}
    assert {"stem.1", "stem.2", "project.1", "pool", "fc"} <= covered
    assert all(len(row.samples_s) == 2 and all(s >= 0 for s in row.samples_s) for row in rows)
    # A kernel none of whose nodes has a layer (freezing copies a weight's layout) joins the next layer's row.
    assert set(info["layer_mapping"]["kernels_without_layer"].values()) <= analytic
    assert info["layer_compile_s"] > 0


def test_dynamo_module_paths_become_module_names():
    from lwprof.runtime.backends._inductor_layers import module_path

    assert module_path({"a": ("L['self'].features[0]._modules['conv']", object)}) == "features.0.conv"
    assert module_path({"a": ("L['self'].stem", object), "b": ("L['self'].stem.0", object)}) == "stem.0"
    assert module_path({"a": ("L['m'].blocks.3.dw", object)}) == "blocks.3.dw"
    assert module_path({}) is None


@pytest.mark.parametrize("kernel, op", [
    ("extern_kernels.convolution", "convolution"),
    ("extern_kernels.addmm", "addmm"),
    ("torch.ops.mkldnn._convolution_pointwise.binary", "_convolution_pointwise"),
    ("torch.ops.mkldnn._convolution_pointwise_.binary", "_convolution_pointwise_"),
    ("mkldnn::_convolution_pointwise", "_convolution_pointwise"),
    ("aten::convolution", "convolution"),
])
def test_extern_kernel_ops(kernel, op):
    from lwprof.runtime.backends._inductor_layers import extern_op

    assert extern_op(kernel) == op


def _residual_graph(freezing):
    """What inductor reports for Residual (stem conv-bn-relu, project conv-bn,
    add, pool, fc): the default's decomposed nodes, or freezing's oneDNN
    pattern nodes that keep only the activation's (or no) module."""
    from lwprof.runtime.backends._inductor_layers import CompiledGraph, NodeRecord

    pre = {
        "conv2d": NodeRecord("stem.0", "conv2d", ("l_x_",)),
        "batch_norm": NodeRecord("stem.1", "batch_norm", ("conv2d",)),
        "relu": NodeRecord("stem.2", "relu", ("batch_norm",)),
        "conv2d_1": NodeRecord("project.0", "conv2d", ("relu",)),
        "batch_norm_1": NodeRecord("project.1", "batch_norm", ("conv2d_1",)),
        "add": NodeRecord(None, "add", ("relu", "batch_norm_1")),
        "adaptive_avg_pool2d": NodeRecord("pool", "adaptive_avg_pool2d", ("add",)),
        "flatten": NodeRecord(None, None, ("adaptive_avg_pool2d",)),
        "linear": NodeRecord("fc", "linear", ("flatten",)),
    }
    if freezing:
        post = {
            "fn_1": NodeRecord("stem.2", None, ()),
            "fn": NodeRecord(None, None, ()),
            "mean": NodeRecord("pool", "mean", ()),
            "addmm": NodeRecord("fc", "addmm", ()),
        }
        kernels = [("torch.ops.mkldnn._convolution_pointwise.default:1", ["fn_1"]),
                   ("torch.ops.mkldnn._convolution_pointwise_.binary:2", ["fn"]),
                   ("cpp_fused_mean_0:3", ["mean"]), ("extern_kernels.addmm:4", ["addmm"])]
        to_pre = {"fn_1": ["relu"], "fn": ["add"], "mean": ["adaptive_avg_pool2d"], "addmm": ["linear"]}
    else:
        post = {
            "convolution": NodeRecord("stem.0", "convolution", ()),
            "mul": NodeRecord("stem.1", "mul", ()),
            "relu": NodeRecord("stem.2", "relu", ()),
            "convolution_1": NodeRecord("project.0", "convolution", ()),
            "mul_1": NodeRecord("project.1", "mul", ()),
            "add_1": NodeRecord(None, "add", ()),
            "view": NodeRecord(None, None, ()),
            "mean": NodeRecord("pool", "mean", ()),
            "addmm": NodeRecord("fc", "addmm", ()),
        }
        kernels = [("extern_kernels.convolution:1", ["convolution"]), ("cpp_fused_relu_0:2", ["relu", "mul"]),
                   ("extern_kernels.convolution:3", ["convolution_1"]),
                   ("cpp_fused_add_mean_1:4", ["mul_1", "add_1", "mean", "view"]), ("extern_kernels.addmm:5", ["addmm"])]
        to_pre = {"convolution": ["conv2d"], "convolution_1": ["conv2d_1"], "addmm": ["linear"]}
    return CompiledGraph(kernels=kernels, post_to_pre=to_pre, post_nodes=post, pre_nodes=pre)


@pytest.mark.parametrize("freezing, expected", [
    (False, [("convolution", False, ("stem.0",)), ("cpp_fused_relu_0", True, ("stem.1", "stem.2")),
             ("convolution", False, ("project.0",)), ("cpp_fused_add_mean_1", True, ("project.1", "<root> (add)", "pool")),
             ("addmm", False, ("fc",))]),
    # A pattern node keeps the activation's module or none: the convolution it starts
    # from is found back in the pre-grad graph (the earliest unclaimed one).
    (True, [("_convolution_pointwise", False, ("stem.0", "stem.1", "stem.2")),
            ("_convolution_pointwise_", False, ("project.0", "project.1", "<root> (add)")),
            ("cpp_fused_mean_0", True, ("pool",)), ("addmm", False, ("fc",))]),
])
def test_kernels_get_the_layers_their_nodes_came_from(freezing, expected):
    from lwprof.runtime.backends._inductor_layers import extern_op, kernel_layers
    from lwprof.runtime.backends._layer_names import LayerNamer

    kernels = kernel_layers(_residual_graph(freezing), LayerNamer(Residual()))
    assert [(kernel.name if kernel.generated else extern_op(kernel.name), kernel.generated, kernel.layers)
            for kernel in kernels] == expected


def test_profiled_records_become_rows_per_pass():
    from lwprof.runtime.backends._inductor_layers import kernel_layers, layer_rows
    from lwprof.runtime.backends._layer_names import LayerNamer

    graph = _residual_graph(False)
    kernels = [kernel_layers(graph, LayerNamer(Residual()))]
    one_pass = [("aten::convolution", 4e-6), ("graph_0_cpp_fused_relu_0", 1e-6), ("aten::empty", 5e-7),
                ("aten::convolution", 3e-6), ("graph_0_cpp_fused_add_mean_1", 2e-6), ("aten::addmm", 1e-6)]
    second = [(name, seconds * 2) for name, seconds in one_pass]
    rows, notes = layer_rows([one_pass, second], [graph], kernels, runs=2)
    by_layer = {row.layer: row for row in rows}
    assert list(by_layer) == ["stem.0", "stem.1", "project.0", "project.1", "fc"]
    assert by_layer["stem.0"].samples_s == (4e-6, 8e-6)
    assert by_layer["project.1"].covers == ("project.1", "<root> (add)", "pool")
    assert by_layer["project.1"].ops == ("inductor C++ kernel",)
    assert by_layer["fc"].ops == ("inductor extern addmm",)
    # The wrapper's own allocation matches no kernel: left out, and counted.
    assert notes["unmatched_records_s_per_pass"] == pytest.approx((5e-7 + 1e-6) / 2)


def test_a_compile_error_is_quoted_past_its_introduction():
    from lwprof.core.text import one_line

    error = RuntimeError("backend='inductor' raised:\nRuntimeError: Attempting to broadcast a dimension\n\nSet TORCHDYNAMO_VERBOSE=1")
    assert one_line(error) == "backend='inductor' raised: RuntimeError: Attempting to broadcast a dimension"
