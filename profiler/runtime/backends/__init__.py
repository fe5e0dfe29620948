"""Runtime backends: the same model, input and thread count on each runtime.

A backend (:class:`Backend`) is one class in one file of this package (or of
another installed package, found through the ``lwprof.backends`` entry-point
group), and it owns everything lwprof needs to know about its runtime:

- whether it can run here (:meth:`Backend.unavailable_reason`: package,
  device, install hint) and its version (:meth:`Backend.runtime_version`,
  part of every cache fingerprint);
- staging in the lwprof process (:meth:`Backend.stage`: an export, say) and
  the session a worker process times (:meth:`Backend.prepare`): one inference
  per :meth:`BackendSession.run`, the outputs for the agreement check,
  per-layer times named like the analytic table;
- its memory view (:attr:`Backend.memory_view`: ``eager`` when every op goes
  through memory, ``fused`` when its kernels keep intermediates out of it),
  which the roofline and the reports use;
- its roofline kernels (:meth:`Backend.peak_kernels`).

Every backend gets the same numpy input, batch size and dtype, and on the CPU
the same number of intra-op threads. A backend that cannot run a model raises
:class:`BackendSkipped` with the reason, and the caller reports it and goes on
with the other backends.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line

if TYPE_CHECKING:
    import numpy as np

    from lwprof.core.timing import LayerTiming
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.measure import CudaEventTimer, HostTimer
    from lwprof.runtime.settings import RunSettings

__all__ = [
    "Backend",
    "BackendSession",
    "BackendSkipped",
    "ENTRY_POINT_GROUP",
    "Staged",
    "backend_names",
    "check_device",
    "default_backends",
    "get_backend",
    "register_backend",
]

DEVICES = ("cpu", "cuda")
ENTRY_POINT_GROUP = "lwprof.backends"
# Shipped with lwprof, imported before the entry points are read.
BUILT_IN = (
    "lwprof.runtime.backends.torch_eager",
    "lwprof.runtime.backends.onnx_runtime",
    "lwprof.runtime.backends.openvino_runtime",
    "lwprof.runtime.backends.inductor",
    "lwprof.runtime.backends.executorch_runtime",
)


class BackendSkipped(LwprofError):
    """This backend cannot run this model here; the message says why (one line)
    and the other backends still run."""


# ---------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, type["Backend"]] = {}
_discovered = False


def register_backend(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator adding a :class:`Backend` subclass under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise LwprofError(f"backend class {cls.__qualname__} has no name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise LwprofError(f"a backend named '{name}' is already registered ({_REGISTRY[name].__qualname__})")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    """The built-in backends, then every ``lwprof.backends`` entry point (its
    name is the backend's name, its value the class), once per process."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in BUILT_IN:
        importlib.import_module(module)
    # Built-ins first, in BUILT_IN's order, whichever module was imported first.
    rank = {module: index for index, module in enumerate(BUILT_IN)}
    ordered = sorted(_REGISTRY.items(), key=lambda item: rank.get(item[1].__module__, len(BUILT_IN)))
    _REGISTRY.clear()
    _REGISTRY.update(ordered)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        known = _REGISTRY.get(entry.name)
        if known is not None and entry.value == f"{known.__module__}:{known.__qualname__}":
            continue  # a built-in, listed in lwprof's own metadata too
        try:
            cls = entry.load()
        except Exception as exc:
            raise LwprofError(f"the backend entry point '{entry.name} = {entry.value}' failed to load: {one_line(exc)}") from None
        if not (isinstance(cls, type) and issubclass(cls, Backend)) or cls.name != entry.name:
            raise LwprofError(
                f"the backend entry point '{entry.name} = {entry.value}' must name a Backend subclass whose name is '{entry.name}'"
            )
        register_backend(cls)


def get_backend(name: str) -> "Backend":
    """The backend registered as ``name``; an unknown name is a one-line error
    naming the closest backends."""
    _discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LwprofError(f"unknown backend '{name}'{hint} (backends: {', '.join(_REGISTRY)})")
    return cls()


def backend_names() -> list[str]:
    """Registered backend names, in registration order."""
    _discover()
    return list(_REGISTRY)


def default_backends() -> list[str]:
    """The backends measured when ``--backend`` is not given."""
    _discover()
    return [name for name, cls in _REGISTRY.items() if cls.default]


def memory_view(name: str) -> str:
    """``eager`` or ``fused`` for a backend by name (``eager`` for one not
    installed here, as for a saved run from another machine)."""
    _discover()
    cls = _REGISTRY.get(name)
    return cls.memory_view if cls is not None else "eager"


# ---------------------------------------------------------------------------
# Devices


def check_device(device: str) -> None:
    """Fail early, in one line, for a device this machine does not have."""
    if device == "cpu":
        return
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise LwprofError(
                f"--device cuda: no CUDA device is available here (torch {torch.__version__} sees none); use --device cpu"
            )
        return
    if isinstance(device, str) and device.startswith("cuda:"):
        raise LwprofError(f"--device {device}: use --device cuda and pick the GPU with CUDA_VISIBLE_DEVICES")
    raise LwprofError(f"--device {device}: unknown device; use cpu or cuda")


# ---------------------------------------------------------------------------
# Backends and sessions


@dataclass(frozen=True)
class Staged:
    """A model as it travels to a worker (an ONNX file, or a module's recipe),
    and what staging it recorded (export time, whether it was cached)."""

    model: "LoadedModel"
    info: dict[str, Any] = field(default_factory=dict)


class BackendSession:
    """One model loaded on one runtime with one fixed input, ready to time."""

    backend: str
    device: str
    timer: "HostTimer | CudaEventTimer"
    info: dict[str, Any]

    def run(self) -> None:
        """One inference on the fixed input (on CUDA possibly only launched)."""
        raise NotImplementedError

    def outputs(self) -> list["np.ndarray"]:
        """Run once, synchronized, and return every output as a float array on
        the host, nested outputs flattened in order."""
        raise NotImplementedError

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        raise NotImplementedError

    def close(self) -> None:
        """Undo what the session changed (threads, training flags); idempotent."""

    def __enter__(self) -> "BackendSession":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class Backend:
    """One runtime. Subclasses set ``name``, ``package`` (the import name),
    ``install_hint``, ``memory_view`` and ``default``, and implement
    :meth:`_open`; :meth:`_device_problem`, :meth:`stage` and
    :meth:`peak_kernels` when the runtime has something to say there."""

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = DEVICES
    memory_view: ClassVar[str] = "eager"
    default: ClassVar[bool] = False  # measured when --backend is not given
    # Precision -> how this runtime gets there; only these are measured.
    precisions: ClassVar[dict[str, str]] = {"fp32": "the model as it is"}
    # Precision -> why this runtime does not run it (shown instead of a generic line).
    unsupported_precisions: ClassVar[dict[str, str]] = {}

    def precision_problem(self, precision: str) -> str | None:
        """None when this backend really runs ``precision``, else why not (one line)."""
        if precision in self.precisions:
            return None
        why = self.unsupported_precisions.get(precision, "no way to run it is known to lwprof")
        return f"{self.name} does not run {precision}: {why} ({self.name} runs {', '.join(self.precisions)})"

    def runtime_version(self) -> str:
        """The runtime's version, part of every fingerprint of what it measured."""
        from lwprof.runtime.environment import package_version

        return package_version(self.package)

    def unavailable_reason(self, device: str) -> str | None:
        """None when this backend can run on ``device`` here, else why not and
        what to install (one line)."""
        if device not in self.devices:
            return f"{self.name} does not run on device '{device}' (it runs on {', '.join(self.devices)})"
        problem = self._package_problem()
        if problem is not None:
            return problem
        return self._device_problem(device)

    def prepare(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        """Load ``model`` on this runtime with input ``x`` (device and threads
        from ``settings``) and check that one inference runs; raises
        :class:`BackendSkipped` when it cannot."""
        reason = self.unavailable_reason(settings.device) or self.precision_problem(settings.precision)
        if reason is not None:
            raise BackendSkipped(reason)
        session = self._open(model, x, settings)
        try:
            session.outputs()  # fails here, not in the middle of the timing loop
        except BaseException as exc:
            session.close()
            if isinstance(exc, BackendSkipped) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, LwprofError):
                raise BackendSkipped(str(exc)) from None
            raise BackendSkipped(f"{self.name} cannot run {model.name} on {settings.device}: {one_line(exc)}") from None
        return session

    def peak_kernels(self, settings: "RunSettings") -> tuple[dict[str, Any], dict[str, Any]]:
        """The roofline's two ceilings on this runtime, on the settings' device
        and threads within their budget: a large GEMM (``flops``, ``best_s``)
        and a copy far beyond the caches (``bytes``, ``best_s``), each as
        :func:`~lwprof.runtime.measure.ceiling` records."""
        raise LwprofError(f"the {self.name} backend has no roofline kernels")

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> "Staged":
        """What a worker process needs to open ``model`` on this runtime in
        ``settings.precision``, prepared here, in the parent process: heavy work
        whose result is a file (an export, a quantized model) belongs here, so it
        neither runs once per worker nor leaves its traces in the process that is
        timed. Raises :class:`BackendSkipped` when this runtime cannot take the
        model."""
        return Staged(model.portable())

    def _package_problem(self) -> str | None:
        try:
            importlib.import_module(self.package)
        except ModuleNotFoundError as exc:
            if exc.name != self.package:
                return f"{self.package} is installed but failed to import: {one_line(exc)}"
            return f"{self.package} is not installed: {self.install_hint}"
        except Exception as exc:
            return f"{self.package} is installed but failed to import ({one_line(exc)}): {self.install_hint}"
        return None

    def _device_problem(self, device: str) -> str | None:
        return None

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        raise NotImplementedError


def session_timer(device: str) -> "HostTimer | CudaEventTimer":
    """The timer a session on ``device`` is timed with."""
    from lwprof.runtime.measure import CudaEventTimer, HostTimer

    return CudaEventTimer() if device == "cuda" else HostTimer()
