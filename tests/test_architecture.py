"""The package's shape: layers import downward only, the zoo stands alone,
modules stay small, and a backend from another package plugs in by entry point."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lwprof.cli import app
from lwprof.core.errors import LwprofError
from lwprof.runtime import backends, roofline

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts: core <- counting <- runtime
    <- reports <- commands <- cli, and no cycle inside any layer."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("*.py")), ids=lambda p: p.name)
def test_the_zoo_imports_nothing_of_the_engine(path):
    engine = [name for name in _imports(path) if name.startswith("lwprof") and not name.startswith("lwprof.models")]
    assert engine == [], f"{path.name} imports {engine}"


def test_no_module_is_longer_than_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("profiler/**/*.py"), *ROOT.glob("models/*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# ---------------------------------------------------------------- a backend from another package


THEIRS = '''
from lwprof.runtime.backends.torch_eager import TorchBackend


class TheirsBackend(TorchBackend):
    """Eager PyTorch under another name: a package of its own adds it."""

    name = "theirs"
    default = False


class NotABackend:
    name = "broken"
'''


def _install(folder: Path, entry_points: str) -> None:
    """A distribution on sys.path that lwprof never heard of: a module and its metadata."""
    (folder / "lwprof_theirs.py").write_text(THEIRS)
    info = folder / "lwprof_theirs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lwprof-theirs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lwprof.backends]\n{entry_points}\n")


@pytest.fixture
def rediscover(monkeypatch):
    """The registry as a fresh process finds it, restored afterwards."""
    backends.backend_names()
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_discovered", False)


def test_a_backend_from_another_package_works_in_every_command(tmp_path, monkeypatch, rediscover):
    _install(tmp_path, "theirs = lwprof_theirs:TheirsBackend")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert backends.backend_names() == ["torch", "onnxruntime", "openvino", "inductor", "executorch", "theirs"]
    assert backends.default_backends() == ["torch", "onnxruntime"]  # it is not measured unless asked for
    monkeypatch.setattr(roofline, "measure_peaks", lambda b, s: roofline.DevicePeaks(b, s.device, s.threads, 1e11, 1e10, measured_at="test"))
    result = CliRunner().invoke(app, [
        "profile", "pplcnet_025", "--backend", "theirs", "--input-shape", "1,3,32,32", "--min-time", "0", "--max-time", "0.05",
        "--layer-runs", "1", "--allocator", "default", "--no-plots", "--out", str(tmp_path / "run"),
        "--cache-dir", str(tmp_path / "cache"), "--format", "json",
    ])
    assert result.exit_code == 0, result.stderr
    [row] = json.loads(result.stdout)["results"]
    assert row["backend"] == "theirs" and row["n"] >= 1 and row["skipped"] == ""
    assert row["process"]["start_method"] == "spawn"  # its worker process found the entry point too
    layers = (tmp_path / "run" / "layers.csv").read_text().splitlines()[0]
    assert "theirs_time_s" in layers
    device = CliRunner().invoke(app, ["device", "--backend", "theirs", "--cache-dir", str(tmp_path / "cache"), "--format", "json"])
    assert device.exit_code == 0, device.stderr
    assert [r["backend"] for r in json.loads(device.stdout)] == ["theirs"]


def test_an_entry_point_that_is_not_a_backend_is_one_clear_error(tmp_path, monkeypatch, rediscover):
    _install(tmp_path, "broken = lwprof_theirs:NotABackend")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LwprofError, match=r"'broken = lwprof_theirs:NotABackend' must name a Backend subclass"):
        backends.backend_names()
