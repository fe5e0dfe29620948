"""The machine and software a benchmark ran on, recorded next to its results.

Every benchmark under ``benchmarks/`` stores :func:`capture_environment`'s
dict in its JSON output: a timing is meaningless without the CPU, the core
and thread counts, the library versions and the date it was taken on.

The machine part is lwprof's own record (:mod:`lwprof.runtime.environment`); this
module adds the source tree's state and CPU-contention counters.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lwprof.runtime.environment import (  # noqa: F401  (re-exported for the benchmarks)
    DEFAULT_PACKAGES,
    NOT_INSTALLED,
    cpu_model,
    package_version,
    usable_cores,
)
from lwprof.runtime.environment import capture_environment as lwprof_environment

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git_state() -> dict[str, Any]:
    """Commit of the tree the benchmark ran from, and whether it had local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}


def source_state(paths: list[str]) -> dict[str, dict[str, Any]]:
    """SHA-256 of each measured source file (relative to the repository root)
    and whether it differs from the committed version: the tree is shared and
    edited while benchmarks run, so the commit alone does not say what ran."""
    state: dict[str, dict[str, Any]] = {}
    for relative in paths:
        path = REPO_ROOT / relative
        if not path.exists():
            state[relative] = {"sha256": None, "modified": None}
            continue
        try:
            porcelain = subprocess.run(
                ["git", "status", "--porcelain", "--", relative], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
            modified: bool | None = bool(porcelain)
        except (OSError, subprocess.CalledProcessError):
            modified = None
        state[relative] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "modified": modified}
    return state


def capture_environment(
    packages: dict[str, tuple[str, ...]] | None = None, source_files: list[str] | None = None
) -> dict[str, Any]:
    """lwprof's environment record plus the source tree's state.

    Call it after the benchmark has fixed torch's thread count, so the
    recorded ``torch_num_threads`` is the one the timings ran with.
    ``source_files``: repository files whose exact state matters (see
    :func:`source_state`).
    """
    environment = lwprof_environment(packages)
    environment.update(_git_state())
    if source_files:
        environment["sources"] = source_state(source_files)
    return environment


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU ticks of the whole machine and of this process (with its
    waited-for children), at one instant."""

    machine_busy: int
    machine_total: int
    own: int


def cpu_snapshot() -> CpuSnapshot | None:
    """Read the kernel's CPU counters (Linux only; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # /proc/self/stat: the command name may contain spaces, so split after its ')'
        own_fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    busy = user + nice + system + irq + softirq + steal  # steal: the hypervisor gave our cores to someone else
    # utime + stime (all threads of this process) + cutime + cstime (its finished children)
    own = sum(int(v) for v in own_fields[11:15])
    return CpuSnapshot(machine_busy=busy, machine_total=busy + idle + iowait, own=own)


def foreign_cpu_share(begin: CpuSnapshot | None, end: CpuSnapshot | None) -> float | None:
    """Fraction of the machine's CPU capacity (all cores) that *other* processes
    used between two snapshots: 0 on a quiet machine, 0.5 when another job kept
    one of two cores busy. Resolution is one clock tick (usually 10 ms), so use
    it over intervals of a second or so, not over single short timings."""
    if begin is None or end is None or end.machine_total <= begin.machine_total:
        return None
    foreign = (end.machine_busy - begin.machine_busy) - (end.own - begin.own)
    return max(0.0, foreign / (end.machine_total - begin.machine_total))


def timed_step(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one benchmark step (a process printing one JSON object) from the
    repository root: its JSON as ``output`` (None when it failed, with the
    reason in ``error``), its wall time and the CPU other processes took meanwhile."""
    begin = cpu_snapshot()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    step: dict[str, Any] = {"wall_s": time.perf_counter() - start, "foreign_cpu_share": foreign_cpu_share(begin, cpu_snapshot())}
    try:
        step["output"] = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        step["output"] = None
    if step["output"] is None:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        step["error"] = f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
        print(f"    failed: {step['error']}", file=sys.stderr, flush=True)
    return step


def format_environment(environment: dict[str, Any]) -> list[str]:
    """Markdown bullet lines describing ``environment`` (for a summary file)."""
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    threads = environment.get("torch_num_threads", "n/a")
    commit = environment.get("git_commit") or "unknown"
    dirty = " (with uncommitted changes)" if environment.get("git_dirty") else ""
    modified = [path for path, state in environment.get("sources", {}).items() if state["modified"]]
    if modified:
        dirty += f"; measured files differing from that commit: {', '.join(modified)} (hashes in the JSON)"
    return [
        f"- Date (UTC): {environment['date_utc']}",
        f"- CPU: {environment['cpu_model']} ({environment['machine']}), "
        f"{environment['usable_cores']} usable of {environment['logical_cores']} logical cores; "
        f"torch threads {threads}, capability {environment.get('torch_cpu_capability', 'n/a')}",
        f"- OS: {environment['os']}; Python {environment['python']}",
        f"- Load average (1/5/15 min) at start: {environment['load_average_1min']}, "
        f"{environment['load_average_5min']}, {environment['load_average_15min']}",
        f"- Versions: {versions}",
        f"- Source tree: {commit}{dirty}",
    ]
