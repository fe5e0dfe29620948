"""Every latency measurement runs in a fresh worker process.

Why: what ran earlier in a process changes how fast a model runs in it. The
clearest case is glibc's malloc (:mod:`lwprof.runtime.allocator`): after a large
block is freed (measuring the roofline peaks, exporting ONNX, counting the
model, timing another backend), activations stay in the heap instead of
being page-faulted in on every pass, and the same model times 20-30% faster.
A user's own process has none of that history, so lwprof's figure must not
either: the parent process counts, exports and measures peaks; each
(backend, allocator setting, batch size) is timed in a process that has done
nothing but import the runtimes, build the model and run it.

How: each worker is a new interpreter (multiprocessing's "spawn"), which
imports lwprof's measuring code, the runtime it measures and the model, and
nothing of the parent's state. Not a fork of a prepared process, although that
would start faster: a process's page-fault pattern depends on its heap layout,
which everything imported or allocated before the model shapes (and Python's
hash randomization varies from process to process), so a fork of a process
that imported more than a user's would is not a user's process.

Protocol, child to parent over a one-way pipe (plain picklable tuples)::

    ("status", text)                  a phase started
    ("timing", label, max_time_s)     end-to-end timing started
    ("sample", count, elapsed_s)      progress, at most 10 a second
    ("result", MeasureReply)          the last message

Ctrl-C: a terminal's SIGINT reaches both processes, a signal sent to the
parent alone is forwarded; the child acts on the first one only (timing stops
and keeps its samples, as in one process) and still sends its reply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line

if TYPE_CHECKING:
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.settings import RunSettings

START_METHOD = "spawn"
# Recorded with each measurement: which of these the timed process had loaded.
RUNTIMES = ("torch", "onnxruntime", "openvino", "executorch")
PROGRESS_INTERVAL_S = 0.1
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class MeasureRequest:
    """One measurement: which backend, which model (as it travels: an ONNX
    file or a recipe), the run's settings, and what this worker times."""

    backend: str
    model: "LoadedModel"
    settings: "RunSettings"
    allocator: str = "default"
    layer_runs: int = 0
    want_outputs: bool = True
    want_fingerprint: bool = False
    label: str = ""


@dataclass
class MeasureReply:
    """What a worker measured: raw samples and everything needed to read them."""

    samples_s: tuple[float, ...] = ()
    interrupted: bool = False
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    process: dict[str, Any] = field(default_factory=dict)
    outputs: list[Any] | None = None
    layer_rows: list[Any] = field(default_factory=list)
    layer_pass_s: float | None = None
    layer_error: str | None = None
    minor_page_faults_per_pass: float | None = None
    fingerprint: str | None = None
    prepare_s: float = 0.0
    measure_s: float = 0.0
    layers_s: float = 0.0


def pooled(replies: list[MeasureReply]) -> MeasureReply:
    """Several fresh processes' replies for one figure as one: the first's
    outputs, layer times and settings; every process's samples, in order;
    page faults per pass over all their passes; and each process's own
    figures under ``process["workers"]``."""
    first = replies[0]
    if len(replies) == 1:
        return first
    passes = sum(len(r.samples_s) for r in replies)
    faults = None
    if passes and all(r.minor_page_faults_per_pass is not None for r in replies):
        faults = sum(r.minor_page_faults_per_pass * len(r.samples_s) for r in replies) / passes
    workers = [
        {"pid": r.process.get("pid"), "n": len(r.samples_s), "median_s": statistics.median(r.samples_s) if r.samples_s else None,
         "minor_page_faults_per_pass": r.minor_page_faults_per_pass}
        for r in replies
    ]
    return replace(
        first,
        samples_s=tuple(sample for r in replies for sample in r.samples_s),
        interrupted=any(r.interrupted for r in replies),
        minor_page_faults_per_pass=faults,
        process={**first.process, "workers": workers},
        prepare_s=sum(r.prepare_s for r in replies),
        measure_s=sum(r.measure_s for r in replies),
        layers_s=sum(r.layers_s for r in replies),
    )


class WorkerFailed(LwprofError):
    """The worker process ended without a reply (crashed, killed)."""


# ---------------------------------------------------------------------------
# The measurement itself (runs in the worker)


def measure(request: MeasureRequest, send: Callable[[tuple[Any, ...]], None], reply: MeasureReply | None = None) -> MeasureReply:
    """Build, check, time and (optionally) time layer by layer, filling
    ``reply`` as it goes (so an interruption keeps what was measured);
    nothing is printed."""
    from lwprof.runtime.allocator import TUNED, FaultCounter, allocator_environment, apply_tuned
    from lwprof.runtime.backends import BackendSkipped, get_backend
    from lwprof.runtime.export_cache import module_fingerprint
    from lwprof.runtime.measure import run_timed
    from lwprof.runtime.outputs import example_input

    settings = request.settings
    reply = reply if reply is not None else MeasureReply()
    reply.process = {
        "pid": os.getpid(),
        "start_method": _start_method(),
        "allocator": request.allocator,
        "allocator_environment": allocator_environment(),
    }
    # First, before anything allocates: as the environment variables would at process start.
    if request.allocator == TUNED:
        reply.process["allocator_tuning"] = apply_tuned()

    started = time.perf_counter()
    send(("status", f"{request.backend}: preparing {request.model.name}"))
    try:
        model = request.model.materialize()
        x = example_input(model.input_shape)
        session = get_backend(request.backend).prepare(model, x, settings)
    except BackendSkipped as exc:
        reply.skipped = str(exc)
        reply.prepare_s = time.perf_counter() - started
        return reply
    try:
        reply.info = dict(session.info)
        if request.want_outputs:
            reply.outputs = session.outputs()
        reply.prepare_s = time.perf_counter() - started
        faults = FaultCounter()
        last = [0.0]

        def on_sample(count: int, elapsed: float) -> None:
            now = time.perf_counter()
            if now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                send(("sample", count, elapsed))

        send(("timing", request.label, settings.budget.max_time_s))
        started = time.perf_counter()
        samples, interrupted = run_timed(session.run, settings.budget, session.timer, on_sample, faults.start)
        faults.stop()
        reply.measure_s = time.perf_counter() - started
        reply.samples_s, reply.interrupted = tuple(samples), interrupted
        if settings.device == "cpu":
            reply.minor_page_faults_per_pass = faults.per(len(samples))
        if request.layer_runs > 0 and not interrupted:
            _time_layers(session, request, reply, send)
        if request.want_fingerprint and model.module is not None:
            reply.fingerprint = module_fingerprint(model.module)
        reply.process["runtimes_loaded"] = [name for name in RUNTIMES if name in sys.modules]
    finally:
        session.close()
    return reply


def _time_layers(session: Any, request: MeasureRequest, reply: MeasureReply, send: Callable[[tuple[Any, ...]], None]) -> None:
    send(("status", f"{request.backend}: timing layers ({request.layer_runs} runs)"))
    started = time.perf_counter()
    try:
        reply.layer_rows = list(session.layer_timings(request.layer_runs))
        # Each layer-timed pass, warm-up included, against one plain pass (a compile
        # made only to time layers, as inductor's, is not a pass).
        compile_s = session.info.get("layer_compile_s", 0.0)
        reply.layer_pass_s = (time.perf_counter() - started - compile_s) / (request.layer_runs + 1)
    except KeyboardInterrupt:
        reply.interrupted = True
    except LwprofError as exc:
        reply.layer_error = str(exc)
    finally:
        reply.layers_s = time.perf_counter() - started
        reply.info = {**reply.info, **session.info}  # what timing layers recorded (a second compile, its mapping)


# ---------------------------------------------------------------------------
# The worker process


_interrupted = False


def _interrupt_once(signum: int, frame: Any) -> None:
    global _interrupted
    if _interrupted:
        return  # the terminal's SIGINT and the parent's forwarded one: act once
    _interrupted = True
    raise KeyboardInterrupt


def _child_main(request: MeasureRequest, connection: Any) -> None:
    import warnings

    signal.signal(signal.SIGINT, _interrupt_once)

    def send(message: tuple[Any, ...]) -> None:
        # A KeyboardInterrupt between the writes of one message would leave
        # half a message in the pipe: SIGINT waits until the message is out.
        if not hasattr(signal, "pthread_sigmask"):
            connection.send(message)
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            connection.send(message)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    reply = MeasureReply()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            measure(request, send, reply)
        except KeyboardInterrupt:
            reply.interrupted = True
        except LwprofError as exc:
            reply.skipped = str(exc)
        except Exception as exc:  # reported, not raised: the parent goes on with the other backends
            reply.skipped = f"{request.backend} failed in its worker process: {one_line(exc)}"
            reply.info["worker_traceback"] = traceback.format_exc()
    if caught:
        reply.info["python_warnings"] = sorted({f"{w.category.__name__}: {one_line(w.message)}" for w in caught})
    try:
        send(("result", reply))
    finally:
        connection.close()


_context: Any = None


def _start_method() -> str:
    return START_METHOD


def worker_context() -> Any:
    """The multiprocessing context workers start from."""
    global _context
    if _context is None:
        import multiprocessing

        _context = multiprocessing.get_context(START_METHOD)
    return _context


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a worker without the calling script: multiprocessing would
    otherwise run the ``__main__`` file again in every worker (a user's script
    calling lwprof at module level would recurse). A worker needs lwprof and
    the model's recipe, never the caller's script."""
    import types

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def run_in_worker(request: MeasureRequest, on_message: Callable[[tuple[Any, ...]], None] | None = None) -> MeasureReply:
    """Measure ``request`` in a fresh worker process; progress messages go to
    ``on_message`` as they arrive. Ctrl-C here is passed on to the worker,
    whose reply (with the samples taken so far) is still returned."""
    context = worker_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(request, sender), name=f"lwprof-{request.backend}", daemon=True)
    with _main_module_hidden():
        process.start()
    sender.close()  # the child holds the writing end; EOF here when it exits
    reply: MeasureReply | None = None
    forwarded = False
    try:
        while reply is None:
            try:
                if not receiver.poll(0.2):
                    if not process.is_alive() and not receiver.poll(0):
                        break
                    continue
                message = receiver.recv()
                if message[0] == "result":
                    reply = message[1]
                elif on_message is not None:
                    on_message(message)
            except EOFError:
                break
            except KeyboardInterrupt:
                forwarded = True
                if process.is_alive():
                    try:
                        os.kill(process.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
    finally:
        process.join(JOIN_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
    if reply is None:
        raise WorkerFailed(f"the {request.backend} worker process ended without a result ({_exit_text(process.exitcode)})")
    if forwarded and not reply.interrupted:
        reply.interrupted = True  # Ctrl-C came after its timing: the run as a whole stops here
    return reply


def run_in_this_process(request: MeasureRequest, on_message: Callable[[tuple[Any, ...]], None] | None = None) -> MeasureReply:
    """The same measurement in the calling process, for tests and debugging
    (a debugger, a monkeypatched harness): its figures carry this process's
    history, which is exactly what :func:`run_in_worker` exists to avoid."""
    reply = MeasureReply()
    try:
        measure(request, on_message or (lambda message: None), reply)
    except LwprofError as exc:
        reply.skipped = str(exc)
    reply.process["in_this_process"] = True
    return reply


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
