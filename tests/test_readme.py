"""Every `lwprof` command shown in README.md runs, in order, in a scratch folder.

Measurement is stubbed so the whole README runs in seconds: end-to-end
timing returns fixed samples, layer timing one pass, device ceilings fixed
figures, and ONNX Runtime is reported unavailable (so no model is exported).
What is checked is that the documented commands and options exist, parse,
and succeed: the behaviour behind them is tested in the other test files.
"""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lwprof.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("lwprof "):
                commands.append(line)
    return commands


def test_readme_shows_every_command():
    shown = {shlex.split(c)[1] for c in readme_commands() if not shlex.split(c)[1].startswith("-")}
    assert shown == {"zoo", "profile", "device", "guidelines", "compare", "report", "diff", "calibrate", "predict"}


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    import lwprof.runtime.backends.torch_eager as torch_layers
    import lwprof.runtime.measure as measure
    import lwprof.runtime.worker as worker
    from lwprof.runtime import roofline
    from lwprof.runtime.backends.onnx_runtime import OnnxRuntimeBackend

    # Measurements run here, not in worker processes, so the stubs reach them.
    monkeypatch.setattr(worker, "run_in_worker", worker.run_in_this_process)

    monkeypatch.setattr(measure, "run_timed", lambda fn, budget=None, timer=None, on_sample=None, on_timing_start=None: ([0.002, 0.0021, 0.0019], False))
    real_layers = torch_layers.layer_timings
    monkeypatch.setattr(torch_layers, "layer_timings", lambda module, x, runs, device="cpu", warmup=1: real_layers(module, x, 1, device, 0))
    monkeypatch.setattr(roofline, "measure_peaks", lambda b, s: roofline.DevicePeaks(b, s.device, s.threads, 1e11, 1e10, measured_at="test"))
    monkeypatch.setattr(OnnxRuntimeBackend, "unavailable_reason", lambda self, device: "stubbed out in the README test")
    monkeypatch.setenv("LWPROF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    from lwprof.counting.onnx_export import export_onnx

    export_onnx("pplcnet_025", (1, 3, 224, 224), tmp_path / "model.onnx")  # the README's model.onnx


def test_every_readme_command_runs(stubbed):
    runner = CliRunner()
    for command in readme_commands():
        words = shlex.split(command)[1:]
        target = None
        if ">" in words:  # shell redirection: check the output that would be written
            target = words[words.index(">") + 1]
            words = words[: words.index(">")]
        result = runner.invoke(app, words, env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{command}\n{result.stderr}"
        if target:
            Path(target).write_text(result.stdout)
            assert result.stdout.startswith("layer,")
    assert Path("reports/four/summary.md").exists() and Path("runs/onnx-model/layers.csv").exists()
