"""What every command shares: its preamble, the list options, run directories, exit codes.

A command's preamble (:func:`start`) checks the device and the backends
before anything is loaded, so a mistake costs one line and exit 2 at once.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError

EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
DEFAULT_REPORTS_DIR = Path("reports")


def start(settings: Any, backends: str | None) -> list[str]:
    """Check ``settings.device`` and return the parsed ``--backend`` list."""
    from lwprof.runtime.backends import check_device

    check_device(settings.device)
    return parse_backends(backends)


def parse_backends(text: str | None) -> list[str]:
    """``--backend`` as a list of registered names (default: the default
    backends); an unknown name is an error naming the close ones."""
    from lwprof.runtime.backends import default_backends, get_backend

    names = [part.strip() for part in (text or ",".join(default_backends())).split(",") if part.strip()]
    if not names:
        raise LwprofError("--backend needs at least one backend name")
    for name in names:
        get_backend(name)  # raises with suggestions
    return list(dict.fromkeys(names))


def precision_targets(backends: list[str], precisions: str | None, *, explicit: bool) -> list[tuple[str, str]]:
    """Every (backend, precision) to measure, by precision then backend. A
    combination a backend cannot run is left out with one line; it is an
    error when nothing would measure that precision, or, when the user named
    the backends, when a named backend would measure nothing (``--backend
    torch --precision int8``)."""
    from lwprof.reports import console
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.precision import parse_precisions

    chosen = parse_precisions(precisions)
    problems = {(name, precision): get_backend(name).precision_problem(precision) for precision in chosen for name in backends}
    for precision in chosen:
        if all(problems[name, precision] is not None for name in backends):
            raise LwprofError(problems[backends[0], precision] if len(backends) == 1 else
                              f"no backend of {', '.join(backends)} runs {precision}: "
                              + "; ".join(problems[name, precision] for name in backends))
    if explicit:
        for name in backends:
            if all(problems[name, precision] is not None for precision in chosen):
                raise LwprofError(problems[name, chosen[0]])
    targets = []
    for precision in chosen:
        for name in backends:
            if problems[name, precision] is not None:
                console.info(f"{problems[name, precision]}; not measured")
        targets += [(name, precision) for name in backends if problems[name, precision] is None]
    return targets


def parse_batch_sizes(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise LwprofError(f"--batch-size '{text}' must be positive integers separated by commas, e.g. 1,8,32")
        sizes.append(int(part))
    return list(dict.fromkeys(sizes))


def parse_int_list(text: str | None, option: str, allowed: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return allowed
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in allowed:
            raise LwprofError(f"{option} '{text}': expected a comma-separated subset of {', '.join(map(str, allowed))}")
        values.append(int(part))
    return tuple(dict.fromkeys(values))


def run_directory(reports_dir: Path, model: str, device: str, now: datetime.datetime | None = None) -> Path:
    """A new directory ``<model>-<device>-<timestamp>``; never an existing one."""
    now = now or datetime.datetime.now()
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", model).strip("_") or "model"
    base = reports_dir / f"{safe}-{device}-{now.strftime('%Y%m%d-%H%M%S')}"
    candidate, suffix = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = base.with_name(f"{base.name}-{suffix}")


def claim_out_dir(out: Path, what: str = "a run directory") -> Path:
    """``--out``: a new or empty directory, never one with results in it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LwprofError(f"--out {out} already exists and is not empty: {what} is never overwritten")
    out.mkdir(parents=True, exist_ok=True)
    return out


def count(loaded: Any, dtype: str = "float32") -> Any:
    """The analytic profile of a loaded model: the engine for a PyTorch
    module, the ONNX counter for an ONNX file."""
    if loaded.kind == "onnx":
        from lwprof.counting.onnx_count import analyze_onnx

        if dtype != "float32":
            raise LwprofError("--dtype applies to PyTorch models; an ONNX graph keeps the element types it was exported with")
        return analyze_onnx(loaded.onnx_path, input_shape=loaded.input_shape, name=loaded.name)
    import torch

    from lwprof.counting.engine import profile_module

    return profile_module(loaded.module, loaded.input_shape, dtype=getattr(torch, dtype), name=loaded.name)


def measure_in_worker(request: Any) -> Any:
    """Run ``request`` in a fresh worker process with a progress bar on
    stderr (and, when stderr is not a terminal, one line as timing starts);
    a worker that dies is a reply that says so."""
    from lwprof.reports import console
    from lwprof.reports.progress import progress
    from lwprof.runtime.worker import MeasureReply, WorkerFailed, run_in_worker

    max_time = request.settings.budget.max_time_s
    with progress("runs") as bar:
        task = bar.add_task(f"{request.backend}: starting a worker process", total=max_time, samples=0)

        def on_message(message: tuple[Any, ...]) -> None:
            kind = message[0]
            if kind == "status":
                bar.update(task, description=message[1])
            elif kind == "timing":
                bar.update(task, description=f"timing {message[1]}", completed=0)
                if not console.stderr.is_terminal:
                    console.info(f"timing {message[1]}")
            elif kind == "sample":
                bar.update(task, completed=min(message[2], max_time), samples=message[1])

        try:
            return run_in_worker(request, on_message)
        except WorkerFailed as exc:
            return MeasureReply(skipped=str(exc))
