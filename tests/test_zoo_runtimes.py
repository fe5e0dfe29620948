"""Every zoo model on every runtime lwprof ships: exported to ONNX, counted on
the ONNX graph with no unsupported operator, and run by ONNX Runtime with the
outputs torch gives, on the model's own default input. Parametrized over the
registry, so a new model is covered with no new test code."""

import numpy as np
import pytest

from lwprof.counting.onnx_count import analyze_onnx
from lwprof.models import get_model_info, list_models
from lwprof.runtime.backends import get_backend
from lwprof.runtime.loader import load_model
from lwprof.runtime.outputs import compare_outputs, example_input
from lwprof.runtime.precision import agreement
from lwprof.runtime.settings import RunSettings


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_exports_counts_and_agrees_on_onnxruntime(name, tmp_path):
    info = get_model_info(name)
    model = load_model(name)
    assert model.input_shape == info.input_shape
    x = example_input(model.input_shape)
    settings = RunSettings(device="cpu", threads=2, cache_dir=tmp_path)
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
