"""ONNX Runtime per-layer timing: node times mapped back to the analytic layer names."""

import pytest

import lwprof
from lwprof.counting.onnx_export import export_onnx
from lwprof.models import create_model
from lwprof.runtime.backends._ort_layers import layer_timings
from lwprof.runtime.outputs import example_input

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort-layers")
    return lambda name: export_onnx(name, SHAPE, folder / f"{name}.onnx")


@pytest.mark.parametrize("name", ["mobilenet_v3_small_075", "shufflenet_v2_050", "ghostnet_050", "pplcnet_025", "mobilenet_v2_100"])
@pytest.mark.parametrize("level", ["ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED"])
def test_every_conv_layer_is_covered(exported, name, level):
    path = exported(name)
    rows = layer_timings(path, {"input": example_input(SHAPE)}, threads=1, providers=["CPUExecutionProvider"], runs=2, optimization_level=level)
    assert all(len(r.samples_s) == 2 and min(r.samples_s) >= 0 for r in rows)
    profile = lwprof.analyze(name, input_shape=SHAPE)
    names = {layer.name for layer in profile.layers}
    covered = {layer for r in rows for layer in r.layers}
    convs = {layer.name for layer in profile.layers if layer.op_class.startswith("conv")}
    assert convs <= covered, sorted(convs - covered)
    # A row outside the analytic table is a runtime-only kernel: what eager
    # torch does as a free view (flatten, split, slice) or ORT's layout
    # conversion back from NCHWc; it is still placed under its module's path.
    extra = [r for r in rows if r.layer not in names]
    assert {op for r in extra for op in r.ops} <= {"Flatten", "Split", "Slice", "ReorderOutput"}
    paths = {path for path, _ in create_model(name).named_modules()}
    assert all(r.layer.split(" (")[0] in paths for r in extra), [r.layer for r in extra]


def test_fused_conv_row_names_the_layers_it_covers(exported):
    path = exported("pplcnet_025")
    rows = layer_timings(path, {"input": example_input(SHAPE)}, threads=1, providers=["CPUExecutionProvider"], runs=1)
    stem = next(r for r in rows if r.layer.endswith(".conv") and r.covers)
    prefix = stem.layer.removesuffix(".conv")
    # ONNX Runtime folds the BatchNorm and the activation into the convolution
    assert stem.covers[0] == stem.layer and f"{prefix}.bn" in stem.covers
