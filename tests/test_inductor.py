"""The inductor backend (torch.compile): a clean skip without a compiler,
compile time apart from measurement, inductor's settings recorded, its
outputs those of eager torch, and no per-layer rows, said plainly."""

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


def test_int8_is_refused_with_the_reason():
    with pytest.raises(BackendSkipped, match="int8 on inductor needs torchao's PT2E flow"):
        get_backend("inductor").prepare(load_model("pplcnet_025"), example_input((1, 3, 224, 224)),
                                        RunSettings(device="cpu", precision="int8"))


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
        with pytest.raises(LwprofError, match="inductor gives no per-layer times"):
            session.layer_timings(1)
    assert check.allclose, check.describe()
    assert info["compile_s"] > 0  # the first inference compiled, inside prepare
    assert info["inductor_cache_dir"] == str(tmp_path / "inductor") and any((tmp_path / "inductor").iterdir())
    assert info["inductor_config"]["freezing"] is False  # inductor's default, as a user's torch.compile(model) gets
