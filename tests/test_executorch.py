"""The ExecuTorch (XNNPACK) backend: a clean skip without the package, the
match of XNNPACK's runtime operators to the delegate's nodes, layer names
from torch.export's module stack, and (with executorch installed, the
``executorch`` marker) the exported program, its cache, its outputs and its
per-layer rows named like the analytic table."""

import importlib.util

import pytest
import torch
from torch import nn

from lwprof.runtime.backends import get_backend
from lwprof.runtime.backends._executorch_export import LayerNamer, _op_name, node_layers
from lwprof.runtime.backends._xnnpack_graph import XNode, align, can_come_from, operator_head, operator_kind
from lwprof.runtime.backends.executorch_runtime import ExecuTorchBackend, _delegate_layers, layer_rows
from lwprof.runtime.loader import LoadedModel
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.settings import RunSettings
from small_models import Residual

INSTALLED = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(not INSTALLED, reason="executorch is not installed (pip install 'lwprof[executorch]')")


# ---------------------------------------------------------------- without executorch


def test_missing_package_is_a_clean_skip_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(ExecuTorchBackend, "package", "executorch_not_installed_here")
    assert get_backend("executorch").unavailable_reason("cpu") == (
        "executorch_not_installed_here is not installed: pip install 'lwprof[executorch]' (executorch links libtorch: "
        "its version must match torch's, executorch 1.5.1 for torch 2.13)")


def test_runs_on_the_cpu_only():
    assert get_backend("executorch").unavailable_reason("cuda").startswith("executorch does not run on device 'cuda'")


def test_an_onnx_model_is_skipped_with_the_reason(tmp_path):
    from lwprof.runtime.backends import BackendSkipped

    onnx_model = LoadedModel("file", "onnx", None, tmp_path / "m.onnx", (1, 3, 8, 8), "onnx")
    with pytest.raises(BackendSkipped, match="exports a PyTorch module with torch.export; file is an ONNX file"):
        get_backend("executorch").stage(onnx_model, (1, 3, 8, 8), RunSettings(cache_dir=tmp_path))


@pytest.mark.parametrize(("operator", "head", "kind"), [
    ("Convolution (NHWC, F32) IGEMM #12", "Convolution", "Convolution (NHWC, F32) IGEMM"),
    ("Fully Connected (NC, F32) GEMM #3", "Fully Connected", "Fully Connected (NC, F32) GEMM"),
    ("Add (ND) #1", "Add", "Add (ND)"),
    ("Static Reshape (NC) #1", "Static Reshape", "Static Reshape (NC)"),
])
def test_runtime_operator_names(operator, head, kind):
    assert operator_head(operator) == head
    assert operator_kind(operator) == kind


def test_which_nodes_a_runtime_operator_can_come_from():
    assert can_come_from("Fully Connected (NC, F32) GEMM #1", "XNNConv2d")  # a 1x1 convolution on NHWC data
    assert can_come_from("Convolution (NHWC, F32) DWConv #1", "XNNDepthwiseConv2d")
    assert can_come_from("HardSwish (NC) #2", "XNNHardswish")  # by name, not listed
    assert can_come_from("Divide (ND) #1", "XNNDiv")
    assert not can_come_from("Add (ND) #1", "XNNMultiply")
    assert not can_come_from("Convolution (NHWC, F32) GEMM #1", "XNNFullyConnected")


def node(kind, handle, fused=False):
    return XNode(kind, handle, fused)


def test_alignment_fuses_dropped_nodes_and_keeps_added_operators():
    nodes = [node("XNNStaticTranspose", 65535), node("XNNConv2d", 1), node("XNNClamp", 3), node("XNNConv2d", 4),
             node("XNNAdd", 7), node("XNNClamp", 8), node("XNNClamp", 8), node("XNNDiv", 8)]
    operators = ["Transpose (ND, X32) #1", "Convolution (NHWC, F32) IGEMM #1",  # the clamp ran inside the convolution
                 "Fully Connected (NC, F32) GEMM #1", "Add (ND) #1", "Clamp (NC) #1",  # the two clamps ran as one
                 "Divide (ND) #1", "Copy (NC, X32) #1"]  # a copy XNNPACK added at run time
    assert align(operators, nodes) == [0, 1, 3, 4, 5, 7, None]


def test_an_activation_xnnpack_runs_apart_from_its_node_joins_that_nodes_row():
    nodes = [{"type": "XNNAdd", "debug_handle": 5, "fused_clamp": True, "layers": ["block (add)", "block.act"]},
             {"type": "XNNConv2d", "debug_handle": 7, "fused_clamp": False, "layers": ["next.conv"]}]
    operators = ["Add (ND) #1", "Clamp (NC) #1", "Convolution (NHWC, F32) IGEMM #1"]  # the add's ReLU as its own operator
    assert [layers for layers, _ in _delegate_layers(operators, nodes)] == [
        ("block (add)", "block.act"), ("block (add)", "block.act"), ("next.conv",)]


def test_delegate_rows_name_fused_nodes_and_layout_operators():
    nodes = [
        {"type": "XNNStaticTranspose", "debug_handle": 65535, "fused_clamp": False, "layers": []},
        {"type": "XNNConv2d", "debug_handle": 1, "fused_clamp": True, "layers": ["stem.0", "stem.1", "stem.2"]},
        {"type": "XNNClamp", "debug_handle": 4, "fused_clamp": True, "layers": ["act"]},
        {"type": "XNNConv2d", "debug_handle": 5, "fused_clamp": False, "layers": ["project.0", "project.1"]},
    ]
    operators = ["Transpose (ND, X32) #1", "Convolution (NHWC, F32) IGEMM #1", "Fully Connected (NC, F32) GEMM #1"]
    assert _delegate_layers(operators, nodes) == [
        (("stem.0 (layout)",), "XNNPACK Transpose (ND, X32)"),  # named after the layer it feeds
        (("stem.0", "stem.1", "stem.2", "act"), "XNNPACK Convolution (NHWC, F32) IGEMM"),  # the clamp XNNPACK fused
        (("project.0", "project.1"), "XNNPACK Fully Connected (NC, F32) GEMM"),
    ]


def test_layer_rows_sum_a_layers_operators_per_run_and_name_portable_instructions():
    record = {
        "delegates": [{"instruction": 1, "nodes": [
            {"type": "XNNConv2d", "debug_handle": 1, "fused_clamp": False, "layers": ["conv", "bn"]},
            {"type": "XNNAdd", "debug_handle": 3, "fused_clamp": False, "layers": ["block (add)"]},
            {"type": "XNNClamp", "debug_handle": 3, "fused_clamp": True, "layers": ["block (add)"]},
        ]}],
        "operators": [{"instruction": 0, "debug_handles": [7], "layer": "gate", "op": "_to_dim_order_copy"}],
    }
    events = [
        {"name": "OPERATOR_CALL", "delegated": False, "instruction": 0, "samples": [1e-6, 2e-6]},
        {"name": "Convolution (NHWC, F32) IGEMM #1", "delegated": True, "instruction": 1, "samples": [10e-6, 12e-6]},
        {"name": "Add (ND) #1", "delegated": True, "instruction": 1, "samples": [3e-6, 3e-6]},
        {"name": "Clamp (NC) #1", "delegated": True, "instruction": 1, "samples": [1e-6, 2e-6]},
    ]
    rows = {row.layer: row for row in layer_rows(events, record, runs=2)}
    assert list(rows) == ["gate", "conv", "block (add)"]
    assert rows["gate"].ops == ("ExecuTorch _to_dim_order_copy (not delegated)",)
    assert rows["conv"].covers == ("conv", "bn")
    assert rows["block (add)"].samples_s == pytest.approx((4e-6, 5e-6))  # add + clamp, run by run
    assert rows["block (add)"].ops == ("XNNPACK Add (ND)", "XNNPACK Clamp (NC)")


class DenseBlock(nn.Module):
    """A stem convolution whose output a BatchNorm-ReLU-conv branch reads and
    a concatenation keeps: the BatchNorm cannot fold into the stem (two
    users), so XNNPACK runs it as a depthwise convolution of its own."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.stem(x)
        return torch.cat([y, self.conv(self.act(self.norm(y)))], 1)


def exported_nodes(module, handles, shape=(1, 3, 8, 8)):
    """The op nodes of ``module``'s exported graph, numbered as debug handles in order."""
    graph = [n for n in torch.export.export(module.eval(), (torch.randn(shape),)).graph.nodes
             if n.op == "call_function" and _op_name(n.target) != "getitem"]
    for graph_node, handle in zip(graph, handles):
        graph_node.meta["debug_handle"] = handle
    return graph


def test_a_batchnorm_xnnpack_rewrote_goes_to_its_own_node_and_a_folded_one_to_its_convolution():
    graph = exported_nodes(DenseBlock(), [1, 2, 3, 4, 5])  # stem, norm, act, conv, cat
    # The rewritten BatchNorm carries the handle of an inserted node, as XNNPACK 1.5 gives it.
    nodes = [node("XNNConv2d", 1), node("XNNStaticTranspose", 65535), node("XNNDepthwiseConv2d", 65535), node("XNNConv2d", 4),
             node("XNNConcatenate2", 5)]
    name_of = LayerNamer(DenseBlock())
    assert node_layers(nodes, graph, name_of) == [["stem"], [], ["norm", "act"], ["conv"], ["<root> (cat)"]]
    folded = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    nodes = [node("XNNStaticTranspose", 65535), node("XNNConv2d", 1, fused=True), node("XNNConv2d", 4)]
    assert node_layers(nodes, exported_nodes(folded, [1, 2, 3, 4]), LayerNamer(folded)) == [[], ["0", "1", "2"], ["3"]]


def test_a_batchnorm_after_a_concatenation_is_not_folded_into_it():
    """ESPNet: BatchNorm-PReLU on a concatenation's output. Nothing folds into
    a concatenation; the BatchNorm is XNNPACK's depthwise convolution."""

    class Concat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)
            self.norm, self.act = nn.BatchNorm2d(4), nn.PReLU(4)

        def forward(self, x):
            return self.act(self.norm(torch.cat([self.a(x), self.b(x)], 1)))

    module = Concat()
    graph = exported_nodes(module, [1, 2, 3, 4, 5])  # a, b, cat, norm, act
    nodes = [node("XNNConv2d", 1), node("XNNConv2d", 2), node("XNNConcatenate2", 3), node("XNNDepthwiseConv2d", 65535),
             node("XNNPReLU", 5)]
    assert node_layers(nodes, graph, LayerNamer(module)) == [["a"], ["b"], ["<root> (cat)"], ["norm"], ["act"]]


@pytest.mark.parametrize(("target", "name"), [
    (torch.ops.aten.add.Tensor, "add"),
    (torch.ops.aten.convolution.default, "convolution"),
    ("dim_order_ops._to_dim_order_copy.default", "_to_dim_order_copy"),
    ("executorch_call_delegate", "executorch_call_delegate"),
])
def test_op_names(target, name):
    assert _op_name(target) == name


def test_layer_names_follow_the_analytic_rows():
    from lwprof.counting.engine import profile_module

    torch.manual_seed(0)
    module = Residual().eval()
    exported = torch.export.export(module, (torch.randn(1, 3, 8, 8),))
    name_of = LayerNamer(module)
    names = [name_of(n) for n in exported.graph_module.graph.nodes if n.op == "call_function"
             and _op_name(n.target) not in ("getitem", "view", "flatten")]
    analytic = {row["layer"] for row in profile_module(module, (1, 3, 8, 8), name="residual").layer_rows()}
    assert "<root> (add)" in names  # the residual add is the root module's own op, as in the analytic table
    assert set(names) <= analytic


# ---------------------------------------------------------------- with executorch


def residual_model():
    torch.manual_seed(0)
    return LoadedModel("residual", "torch", Residual().eval(), None, (1, 3, 16, 16), "file")


@needs_executorch
@pytest.mark.executorch
def test_fingerprint_carries_executorchs_own_version(tmp_path):
    from importlib.metadata import version

    from lwprof.runtime.roofline import device_fingerprint

    assert get_backend("executorch").runtime_version() == version("executorch")
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    assert device_fingerprint(settings, "executorch") != device_fingerprint(settings, "torch")


@needs_executorch
@pytest.mark.executorch
def test_program_is_cached_outputs_agree_and_every_layer_is_timed(tmp_path):
    from lwprof.counting.engine import profile_module

    model = residual_model()
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    backend = get_backend("executorch")
    staged = backend.stage(model, model.input_shape, settings)
    again = backend.stage(model, model.input_shape, settings)
    assert staged.info["export_cached"] is False and staged.info["export_s"] > 0
    assert again.info["export_cached"] is True and again.model.program_path == staged.model.program_path
    assert staged.model.kind == "executorch" and staged.model.module is None  # what travels to the worker
    assert staged.info["delegation"]["not_delegated"] == []  # conv, BN, ReLU, add, pool, linear: all XNNPACK's

    x = example_input(model.input_shape)
    with get_backend("torch").prepare(model, x, settings) as session:
        expected = session.outputs()
    with backend.prepare(staged.model, x, settings) as session:
        check = compare_outputs(expected, session.outputs())
        assert session.info["threadpool"]["threads"] == 1
        rows = session.layer_timings(3)
    assert check.allclose, check.describe()
    assert all(len(row.samples_s) == 3 for row in rows)
    analytic = {row["layer"] for row in profile_module(model.module, model.input_shape, name="residual").layer_rows()}
    covered = {layer for row in rows for layer in row.layers}
    # XNNPACK's own work: NCHW->NHWC for the stem, then back and a reshape for torch.flatten (a view, no analytic row).
    assert {row.layer for row in rows} - analytic == {"stem.0 (layout)", "<root> (view, layout)", "<root> (view)"}
    # Every convolution and the linear layer has a row; each BatchNorm is folded into its convolution.
    assert {"stem.0", "project.0", "fc"} <= {row.layer for row in rows}
    assert {"stem.1", "project.1"} <= covered
    assert next(row for row in rows if row.layer == "stem.0").covers[:2] == ("stem.0", "stem.1")


@needs_executorch
@pytest.mark.executorch
def test_a_changed_model_is_exported_again(tmp_path):
    model = residual_model()
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path)
    first = get_backend("executorch").stage(model, model.input_shape, settings)
    with torch.no_grad():
        model.module.fc.bias.add_(1.0)
    second = get_backend("executorch").stage(model, model.input_shape, settings)
    assert first.info["export_cached"] is False and second.info["export_cached"] is False


@needs_executorch
@pytest.mark.executorch
def test_zoo_model_lists_what_xnnpack_left_out_and_names_every_row(tmp_path):
    """MobileNetV3's hard-sigmoid gates leave two dim-order copies each outside
    XNNPACK; every XNNPACK operator still lands on a layer of the table."""
    from lwprof.counting.engine import profile_module
    from lwprof.runtime.loader import load_model

    model = load_model("mobilenet_v3_small_100")
    settings = RunSettings(device="cpu", threads=2, cache_dir=tmp_path)
    staged = get_backend("executorch").stage(model, model.input_shape, settings)
    left_out = staged.info["delegation"]["not_delegated"]
    assert {entry["op"] for entry in left_out} == {"_to_dim_order_copy"}
    assert {entry["layer"] for entry in left_out} == {f"features.{i}.se.gate" for i in (1, 4, 5, 6, 7, 8, 9, 10, 11)}
    with get_backend("executorch").prepare(staged.model, example_input(model.input_shape), settings) as session:
        rows = session.layer_timings(2)
    analytic = profile_module(model.module, model.input_shape, name=model.name).layer_rows()
    names = {row["layer"] for row in analytic}
    convolutions = {row["layer"] for row in analytic if row["module_type"] == "Conv2d"}
    assert convolutions <= {row.layer for row in rows}
    strays = {row.layer for row in rows if row.layer not in names and not row.layer.endswith("layout)")}
    assert strays == {"head.flatten"}  # nn.Flatten: a view (no analytic row), a reshape in XNNPACK


@needs_executorch
@pytest.mark.executorch
def test_int8_is_quantized_calibrated_agrees_and_keeps_layer_names(tmp_path):
    """PT2E with XNNPACK's quantizer: every convolution and the linear layer
    run as XNNPACK integer kernels under their own layer names (the quantized
    graph's lost module stacks carried over from the fp32 graph), the
    BatchNorms folded by quantization, outputs compared with the fp32
    program's on the calibration inputs."""
    from lwprof.reports.profile_run import ran_in
    from lwprof.runtime.precision import Int8Recipe

    model = residual_model()
    settings = RunSettings(device="cpu", threads=1, cache_dir=tmp_path, precision="int8",
                           int8=Int8Recipe(calibration_inputs=4))
    staged = get_backend("executorch").stage(model, model.input_shape, settings)
    record = staged.info["quantization"]
    assert staged.model.precision == "int8" and staged.info["precision"] == "int8"
    assert record["per_channel"] is True and record["calibration_inputs"] == 4
    assert set(record["agreement"]) >= {"relative_error", "cosine", "meaningful"}
    assert record["agreement"]["meaningful"] is True  # a calibrated int8 Residual still computes the same function
    with get_backend("executorch").prepare(staged.model, example_input(model.input_shape), settings) as session:
        rows = {row.layer: row for row in session.layer_timings(2)}
    for layer in ("stem.0", "project.0", "fc"):
        assert ran_in(rows[layer].ops, "int8") == "int8", rows[layer].ops
    assert rows["stem.0"].covers == ("stem.0", "stem.2")  # its ReLU; the BatchNorm (stem.1) was folded by quantization
    assert sorted(rows) == ["<root> (add)", "<root> (view)", "<root> (view, layout)", "fc", "pool", "project.0", "stem.0",
                            "stem.0 (layout)"]
    assert "fc" not in rows["project.0"].layers


class _TwoBatchNormsOneName(torch.nn.Module):
    """``block_0`` and ``block[0]``: standalone BatchNorms (after a concatenation
    and after an add) whose weights' paths differ only by a dot."""

    def __init__(self, collide: bool = True):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.fused = torch.nn.BatchNorm2d(4)  # after its own convolution: folded into it, never decomposed
        setattr(self, "block_0" if collide else "block_a", torch.nn.BatchNorm2d(8))
        self.block = torch.nn.Sequential(torch.nn.BatchNorm2d(8))

    def forward(self, x):
        first = self.block_0 if hasattr(self, "block_0") else self.block_a
        y = first(torch.cat([self.fused(self.conv(x)), x], 1))
        return self.block[0](y + 1)


@pytest.mark.parametrize("collide, expected", [(True, [["block.0.weight", "block_0.weight"]]), (False, [])])
def test_batch_norms_whose_decomposed_constants_share_a_name_are_found(collide, expected):
    # ExecuTorch 1.5.1's DecomposeBatchNorm names a standalone BatchNorm's constants after its weight
    # with dots made underscores: block_0.weight and block.0.weight collide (espnet_v1's level2_0 and
    # level2.0), and one BatchNorm runs with the other's scale and shift.
    from lwprof.runtime.backends._executorch_export import batch_norm_name_collisions

    module = _TwoBatchNormsOneName(collide).eval()
    exported = torch.export.export(module, (torch.randn(1, 4, 8, 8),))
    assert batch_norm_name_collisions(exported) == expected
