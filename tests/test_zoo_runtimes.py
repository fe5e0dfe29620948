"""Every zoo model on every runtime lwprof ships: exported to ONNX, counted on
the ONNX graph with no unsupported operator, and run by ONNX Runtime with the
outputs torch gives, on the model's own default input; then by OpenVINO, every
row of its per-layer profile named by a layer of the graph. Parametrized over
the registry, so a new model is covered with no new test code."""

import numpy as np
import pytest

from lwprof.counting.onnx_count import analyze_onnx
from lwprof.models import get_model_info, list_models
from lwprof.runtime.backends import get_backend
from lwprof.runtime.loader import load_model
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.precision import agreement
from lwprof.runtime.settings import RunSettings


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    """One export cache for the module: OpenVINO runs the file the ONNX Runtime test exported."""
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_exports_counts_and_agrees_on_onnxruntime(name, zoo_cache):
    info = get_model_info(name)
    model = load_model(name)
    assert model.input_shape == info.input_shape
    x = example_input(model.input_shape)
    settings = RunSettings(device="cpu", threads=2, cache_dir=zoo_cache)
    sessions = [get_backend(backend).prepare(model, x, settings) for backend in ("torch", "onnxruntime")]
    try:
        torch_out, ort_out = (session.outputs() for session in sessions)
        onnx_path = sessions[1].info["onnx_path"]
    finally:
        for session in sessions:
            session.close()
    assert [o.shape for o in torch_out] == [info.output_shape]
    check = compare_outputs(torch_out, ort_out)
    assert check.allclose and check.shapes_match and not check.nonfinite, check.describe()
    # Scale-free too: the outputs' relative error as a whole (float rounding through a deep
    # network moves single near-zero logits by more than 1% of themselves; a wrong export
    # moves the whole output).
    assert agreement([torch_out], [ort_out]).relative_error < 1e-3, check.describe()
    assert np.isfinite(torch_out[0]).all()
    assert analyze_onnx(onnx_path).unsupported_ops == {}


# Models whose export OpenVINO's ONNX frontend cannot read, and why: the skip must say so.
OPENVINO_CANNOT_READ = {"addernet_resnet20": "Conversion is failed for: Conv-17, Reshape-17"}  # ReduceL1 shape inference


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_runs_on_openvino_with_every_row_named_by_a_layer(name, zoo_cache):
    pytest.importorskip("openvino")
    from lwprof.counting.onnx_graph import load_onnx
    from lwprof.counting.onnx_scopes import node_scopes
    from lwprof.runtime.backends import BackendSkipped

    model = load_model(name)
    x = example_input(model.input_shape)
    settings = RunSettings(device="cpu", threads=2, cache_dir=zoo_cache)
    with get_backend("onnxruntime").prepare(model, x, settings) as session:
        expected, onnx_path = session.outputs(), session.info["onnx_path"]
    if name in OPENVINO_CANNOT_READ:
        with pytest.raises(BackendSkipped, match=OPENVINO_CANNOT_READ[name]):
            get_backend("openvino").prepare(model, x, settings)
        return
    with get_backend("openvino").prepare(model, x, settings) as session:
        check = compare_outputs(expected, session.outputs())
        rows = session.layer_timings(1)
    assert check.allclose, check.describe()
    graph = load_onnx(onnx_path, external_data=False)
    layers = {scope.layer_name(node.op_type): node.op_type for node, scope in zip(graph.graph.node, node_scopes(graph))}
    covered = set()
    for row in rows:
        # A layout or precision conversion OpenVINO inserted is "<layer> (reorder)" after the layer it feeds.
        base = row.layer.rsplit(" (", 1)[0] if row.layer.rsplit(" (", 1)[0] in layers else row.layer
        assert base in layers or base in ("input", "output"), f"{row.layer} ({', '.join(row.ops)}) is no layer of {name}"
        covered.update((row.layer, *row.layers))
    # Every convolution is timed somewhere (matmuls on constants, Mobile-Former's tokens, OpenVINO computes at compile time).
    assert {layer for layer, op in layers.items() if op == "Conv"} <= covered
