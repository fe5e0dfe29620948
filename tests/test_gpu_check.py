"""The GPU readiness script's rehearsal: ``GPU_CHECK_DRY_RUN=1`` runs every
step of ``benchmarks/gpu_check.sh`` on the CPU (install from the working
tree and the carried wheels, each step within its budget, the results
packed for the trip back), so a lease of a GPU machine finds it working."""

import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["install", "environment", "cuda_tests", "device", "profile_fp32", "profile_half", "guidelines", "compare",
         "timer_check"]


def carried_wheel(folder: Path) -> Path:
    """A wheel as the lease carries one (ultralytics-thop there): a one-module
    package built here without the network."""
    source = folder / "source"
    (source / "gpu_check_carried").mkdir(parents=True)
    (source / "gpu_check_carried" / "__init__.py").write_text("CARRIED = True\n")
    (source / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "gpu-check-carried"
        version = "1.0"
        """))
    wheels = folder / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(source)], check=True, capture_output=True)
    return wheels


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    environment = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_PYTHON": sys.executable, "OUT": str(out),
                   "GPU_CHECK_WHEELS": str(carried_wheel(tmp_path)), **env}
    environment.pop("PYTHONPATH", None)
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gpu-check")
    return tmp_path, run_check(tmp_path)


def test_dry_run_passes_every_step_and_packs_its_results(dry_run):
    tmp_path, done = dry_run
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary[:-1]] == STEPS
    assert all(line.split()[1] == "ok" for line in summary[:-1]), summary
    assert summary[-1].startswith("gpu_check: all steps passed")
    # What comes back from a lease: at most 8 files, each under 16 MiB.
    files = sorted(path.name for path in out.iterdir())
    assert files == ["gpu_check.tar.gz", "summary.txt"]
    assert (out / "gpu_check.tar.gz").stat().st_size < 16 * 2**20
    with tarfile.open(out / "gpu_check.tar.gz") as packed:
        names = packed.getnames()
    assert {f"gpu_check/{step}.log" for step in STEPS} <= set(names)
    assert "gpu_check/timer_check.json" in names
    assert any(name.startswith("gpu_check/compare/") and name.endswith("compare.csv") for name in names)


def test_dry_run_installs_lwprof_and_the_carried_wheel_without_the_network(dry_run):
    tmp_path, done = dry_run
    with tarfile.open(tmp_path / "out" / "gpu_check.tar.gz") as packed:
        log = packed.extractfile("gpu_check/install.log").read().decode()
    # lwprof imported from the folder the script installed into, not from this checkout's install.
    assert "lwprof " in log and "/site/lwprof/" in log, log


def test_a_failing_step_is_named_and_the_others_still_run(tmp_path):
    done = run_check(tmp_path, GPU_CHECK_MODELS="no_such_model", GPU_CHECK_ONLY="install compare")
    assert done.returncode == 1
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    status = {line.split()[0]: line.split()[1] for line in summary[:-1]}
    assert status == {"install": "ok", "environment": "skipped", "cuda_tests": "skipped", "device": "skipped",
                      "profile_fp32": "skipped", "profile_half": "skipped", "guidelines": "skipped",
                      "compare": "failed", "timer_check": "skipped"}
    assert summary[-1].startswith("gpu_check: FAILED compare")
