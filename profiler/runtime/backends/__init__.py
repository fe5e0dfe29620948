"""Runtime backends: the same model, input and thread count on each runtime.

A backend (:class:`Backend`) knows whether it can run here
(:meth:`Backend.unavailable_reason`) and turns a
:class:`~lwprof.runtime.loader.LoadedModel` plus one fixed input into a
:class:`BackendSession`: one inference per :meth:`BackendSession.run` (what
the harness times), the outputs on the host (what :func:`compare_outputs`
checks against the other backends before anything is timed), and per-layer
times delegated to :mod:`lwprof.runtime.backends._torch_layers` / :mod:`lwprof.runtime.backends._ort_layers`.
Backends live in a registry, so a third runtime (``torch.compile``, say) is
one registered class.

Fair comparison. Every backend gets the same numpy input
(:func:`example_input`), batch size and dtype, and on the CPU the same number
of intra-op threads (default: one per physical core). A backend that cannot
run a model raises :class:`BackendSkipped` with the reason, and the caller
reports it and goes on with the other backends.

Timing. On the CPU each run is a synchronous call timed with a host clock
(:class:`~lwprof.runtime.measure.HostTimer`). On CUDA the torch backend only launches
the forward pass in :meth:`~BackendSession.run`, and
:class:`~lwprof.runtime.measure.CudaEventTimer` brackets it with CUDA events and
synchronizes, so the kernels are counted rather than their launch. ONNX
Runtime's ``session.run`` with numpy inputs and outputs returns only when its
outputs are back on the host, so the same event timer measures the whole
call there.

ONNX exports of PyTorch models are cached under ``<cache dir>/onnx/``, one
file per :func:`~lwprof.counting.onnx_export.export_cache_key` (model, input shape,
opset, torch version). The key alone cannot tell two models of the same name
apart, nor the same architecture with other weights (zoo models are randomly
initialised on every build), so each file also records a fingerprint of the
module's code, structure and weights, and a file whose fingerprint differs is
exported again rather than trusted.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import inspect
import math
import numbers
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from lwprof.core.errors import LwprofError

if TYPE_CHECKING:
    import numpy as np

    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.measure import CudaEventTimer, HostTimer
    from lwprof.core.timing import LayerTiming

__all__ = [
    "Backend",
    "BackendSession",
    "BackendSkipped",
    "OnnxRuntimeBackend",
    "OutputCheck",
    "Staged",
    "TorchBackend",
    "backend_names",
    "cached_onnx_export",
    "check_device",
    "compare_outputs",
    "default_cache_dir",
    "example_input",
    "get_backend",
    "module_fingerprint",
    "onnx_cache_path",
    "register_backend",
]

DEVICES = ("cpu", "cuda")
FINGERPRINT_KEY = "lwprof.fingerprint"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
GRAPH_OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"
RELATIVE_FLOOR = 1e-3  # of an output's largest magnitude, for max_rel_diff

# ONNX tensor element types a numpy input can be fed as.
_ONNX_INPUT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


class BackendSkipped(LwprofError):
    """This backend cannot run this model here; the message says why (one line)
    and the other backends still run."""


# ---------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, type["Backend"]] = {}


def register_backend(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator adding a :class:`Backend` subclass under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise LwprofError(f"backend class {cls.__qualname__} has no name")
    if name in _REGISTRY:
        raise LwprofError(f"a backend named '{name}' is already registered ({_REGISTRY[name].__qualname__})")
    _REGISTRY[name] = cls
    return cls


def get_backend(name: str) -> "Backend":
    """The backend registered as ``name``; an unknown name is a one-line error
    naming the closest backends."""
    cls = _REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LwprofError(f"unknown backend '{name}'{hint} (backends: {', '.join(_REGISTRY)})")
    return cls()


def backend_names() -> list[str]:
    """Registered backend names, in registration order."""
    return list(_REGISTRY)


# ---------------------------------------------------------------------------
# Devices, inputs, cache


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


def example_input(shape: Sequence[int], dtype: Any = "float32", seed: int = 0) -> "np.ndarray":
    """A standard-normal input with a fixed seed: every backend is fed the very
    same values, so their outputs can be compared."""
    import numpy as np

    dims = tuple(shape)
    if not dims or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        raise LwprofError(f"input shape {list(dims)} must be positive integers")
    # By name: whether numpy knows "bfloat16" depends on whether onnx (ml_dtypes) was imported.
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    if name not in ("float16", "float32", "float64"):
        raise LwprofError(f"input dtype {name} is not supported; use float32, float16 or float64")
    target = np.dtype(name)
    generator = np.random.default_rng(seed)
    values = generator.standard_normal(dims, dtype=np.float64 if target == np.float64 else np.float32)
    return values.astype(target, copy=False)


def default_cache_dir() -> Path:
    """``$LWPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/lwprof``, else ``~/.cache/lwprof``."""
    explicit = os.environ.get("LWPROF_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "lwprof"
    return Path.home() / ".cache" / "lwprof"


def onnx_cache_path(cache_dir: Path, model_name: str, input_shape: Sequence[int]) -> Path:
    """Where the export of ``model_name`` on ``input_shape`` is cached."""
    from lwprof.counting.onnx_export import export_cache_key

    return Path(cache_dir) / "onnx" / f"{export_cache_key(model_name, input_shape)}.onnx"


def module_fingerprint(module: Any) -> str:
    """A digest of what an export depends on besides the cache key: the
    module's structure (its repr), the source of its non-torch classes (or the
    TorchScript code) and every parameter and buffer, bytes included."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    scripted = isinstance(module, torch.jit.ScriptModule)
    if not scripted:
        digest.update(repr(module).encode())
    for path, submodule in module.named_modules():
        digest.update(path.encode() + b"\0")
        digest.update(_module_code(submodule, scripted).encode() + b"\0")
    for key, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            digest.update(f"{key}={value!r}".encode())
            continue
        tensor = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(value.shape)}".encode())
        try:
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        except (RuntimeError, TypeError):  # quantized and other exotic tensors
            digest.update(repr(tensor.tolist()).encode())
    return digest.hexdigest()


def _module_code(module: Any, scripted: bool) -> str:
    if scripted:
        try:
            return f"{getattr(module, 'original_name', '')}\n{module.code}"
        except Exception:  # a scripted submodule without forward
            return getattr(module, "original_name", type(module).__qualname__)
    return _class_source(type(module))


_class_sources: dict[type, str] = {}


def _class_source(cls: type) -> str:
    """A class's qualified name and, for code outside torch (whose version is
    in the cache key already), its source."""
    if cls not in _class_sources:
        # Not __module__: the loader imports each user file under a fresh
        # private module name, which must not make the same model look new.
        name = cls.__qualname__
        source = ""
        if not cls.__module__.startswith("torch."):
            try:
                source = inspect.getsource(cls)
            except (OSError, TypeError):  # defined interactively
                pass
        _class_sources[cls] = f"{name}\n{source}"
    return _class_sources[cls]


@dataclass(frozen=True)
class CachedExport:
    """Where an export lies, whether it came from the cache, and the seconds
    the export itself took (0 when cached)."""

    path: Path
    cached: bool
    export_s: float


def cached_onnx_export(module: Any, model_name: str, input_shape: Sequence[int], cache_dir: Path) -> CachedExport:
    """Export ``module`` to the cache, or reuse the cached file when its
    recorded shape, opset, torch version, exporter and fingerprint all match.

    The export is written to a temporary file beside its final name and moved
    into place with ``os.replace``, so an interrupted export or two processes
    exporting at once never leave a half-written file under the cache name.
    Raises :class:`BackendSkipped` with the exporter's one-line error.
    """
    import onnx
    import torch

    from lwprof.counting.onnx_export import DEFAULT_OPSET, EXPORTER, export_info, export_onnx, one_line

    shape = tuple(int(d) for d in input_shape)
    path = onnx_cache_path(cache_dir, model_name, shape)
    fingerprint = module_fingerprint(module)
    expected = {
        "input_shape": "x".join(map(str, shape)),
        "opset": str(DEFAULT_OPSET),
        "torch": torch.__version__,
        "exporter": EXPORTER,
        FINGERPRINT_KEY.removeprefix("lwprof."): fingerprint,
    }
    if path.is_file():
        try:
            recorded = export_info(path)
        except Exception:  # unreadable: export again
            recorded = {}
        if all(recorded.get(key) == value for key, value in expected.items()):
            return CachedExport(path, True, 0.0)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial")
        os.close(handle)
    except OSError as exc:
        raise BackendSkipped(f"cannot write the ONNX export cache {path.parent}: {one_line(exc)}") from None
    temporary = Path(temporary_name)
    started = time.perf_counter()
    try:
        export_onnx(module, shape, temporary)
        exported = onnx.load(str(temporary))
        onnx.helper.set_model_props(exported, {**{p.key: p.value for p in exported.metadata_props}, FINGERPRINT_KEY: fingerprint})
        onnx.save(exported, str(temporary))
        os.replace(temporary, path)
    except LwprofError as exc:
        raise BackendSkipped(str(exc)) from None
    except Exception as exc:
        raise BackendSkipped(f"ONNX export of {model_name} failed: {one_line(exc)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return CachedExport(path, False, time.perf_counter() - started)


# ---------------------------------------------------------------------------
# Output comparison


@dataclass(frozen=True)
class OutputCheck:
    """How one backend's outputs compare with the reference backend's.

    ``allclose`` is numpy's test with the absolute tolerance scaled by the
    output's largest magnitude: a fixed ``atol`` would pass any outputs far
    smaller than it (randomly initialised networks often end in logits of 1e-9
    or less). ``max_rel_diff`` is the scale-free figure: each element's
    difference relative to the reference element, the
    denominator floored at :data:`RELATIVE_FLOOR` of that output's largest
    magnitude so near-zero elements do not turn a rounding difference into an
    enormous ratio. Both maxima are infinite when the shapes differ or when one
    side is NaN/Inf where the other is not.
    """

    allclose: bool
    max_abs_diff: float
    max_rel_diff: float
    nonfinite: bool
    shapes_match: bool
    reference_shapes: tuple[tuple[int, ...], ...] = ()
    other_shapes: tuple[tuple[int, ...], ...] = ()
    rtol: float = 1e-3
    atol: float = 1e-4

    def describe(self) -> str:
        if not self.shapes_match:
            text = f"output shapes differ: {_shapes_text(self.reference_shapes)} vs {_shapes_text(self.other_shapes)}"
        else:
            verdict = "agree" if self.allclose else "differ"
            text = (
                f"outputs {verdict} (rtol {self.rtol:g}, atol {self.atol:g}): "
                f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}"
            )
        return text + ("; outputs contain NaN or Inf" if self.nonfinite else "")


def _shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "scalar" for s in shapes) + "]"


def compare_outputs(
    reference: Sequence["np.ndarray"],
    other: Sequence["np.ndarray"],
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> OutputCheck:
    """Compare two backends' flattened outputs element by element:
    ``|other - reference| <= atol * max|reference| + rtol * |reference|``
    everywhere, NaN equal to NaN (a NaN is reported through ``nonfinite``
    instead)."""
    import numpy as np

    refs = [np.asarray(a, dtype=np.float64) for a in reference]
    others = [np.asarray(a, dtype=np.float64) for a in other]
    ref_shapes = tuple(tuple(a.shape) for a in refs)
    other_shapes = tuple(tuple(a.shape) for a in others)
    nonfinite = any(not np.isfinite(a).all() for a in others)
    shapes_match = ref_shapes == other_shapes
    if not shapes_match:
        return OutputCheck(False, math.inf, math.inf, nonfinite, False, ref_shapes, other_shapes, rtol, atol)

    allclose = True
    max_abs = max_rel = 0.0
    for ref, out in zip(refs, others):
        if ref.size == 0:
            continue
        ref, out = ref.reshape(-1), out.reshape(-1)  # 0-d outputs too
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(out - ref)
        same = (out == ref) | (np.isnan(out) & np.isnan(ref))
        diff[same] = 0.0
        diff[np.isnan(diff)] = math.inf  # NaN against a number, Inf against a number
        magnitude = np.abs(np.nan_to_num(ref, nan=0.0, posinf=0.0, neginf=0.0))
        floor = max(float(magnitude.max()) * RELATIVE_FLOOR, np.finfo(np.float64).tiny)
        relative = diff / np.maximum(magnitude, floor)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(relative.max()))
        # atol is relative to the output's scale: randomly initialised networks
        # often end in logits of 1e-9, which any absolute tolerance would pass.
        scale = float(magnitude.max()) or 1.0
        allclose = allclose and bool(np.allclose(out, ref, rtol=rtol, atol=atol * scale, equal_nan=True))
    return OutputCheck(allclose, max_abs, max_rel, nonfinite, True, ref_shapes, other_shapes, rtol, atol)


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
    """One runtime. Subclasses set ``name``, ``package`` (the import name) and
    ``install_hint``, and implement :meth:`_device_problem` and
    :meth:`_open`."""

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = DEVICES

    def unavailable_reason(self, device: str) -> str | None:
        """None when this backend can run on ``device`` here, else why not and
        what to install (one line)."""
        if device not in self.devices:
            return f"{self.name} does not run on device '{device}' (it runs on {', '.join(self.devices)})"
        problem = self._package_problem()
        if problem is not None:
            return problem
        return self._device_problem(device)

    def prepare(
        self,
        model: "LoadedModel",
        x: "np.ndarray",
        device: str,
        threads: int | None,
        cache_dir: Path,
    ) -> BackendSession:
        """Load ``model`` on this runtime with input ``x`` and check that one
        inference runs; raises :class:`BackendSkipped` when it cannot.
        ``threads`` None means one per physical core."""
        if threads is None:
            from lwprof.runtime.environment import physical_cores

            threads = physical_cores()
        if not isinstance(threads, int) or threads < 1:
            raise LwprofError(f"threads must be a positive integer, got {threads!r}")
        reason = self.unavailable_reason(device)
        if reason is not None:
            raise BackendSkipped(reason)
        session = self._open(model, x, device, threads, Path(cache_dir))
        try:
            session.outputs()  # fails here, not in the middle of the timing loop
        except BaseException as exc:
            session.close()
            if isinstance(exc, LwprofError) or not isinstance(exc, Exception):
                raise
            raise BackendSkipped(f"{self.name} cannot run {model.name} on {device}: {_one_line(exc)}") from None
        return session

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], cache_dir: Path) -> "Staged":
        """What a worker process needs to open ``model`` on this runtime,
        prepared here, in the parent process: heavy work whose result is a file
        (an export) belongs here, so it neither runs once per worker nor leaves
        its traces in the process that is timed. Raises
        :class:`BackendSkipped` when this runtime cannot take the model."""
        return Staged(model.portable())

    def _package_problem(self) -> str | None:
        try:
            importlib.import_module(self.package)
        except ModuleNotFoundError as exc:
            if exc.name != self.package:
                return f"{self.package} is installed but failed to import: {_one_line(exc)}"
            return f"{self.package} is not installed: {self.install_hint}"
        except Exception as exc:
            return f"{self.package} is installed but failed to import ({_one_line(exc)}): {self.install_hint}"
        return None

    def _device_problem(self, device: str) -> str | None:
        return None

    def _open(self, model: "LoadedModel", x: "np.ndarray", device: str, threads: int, cache_dir: Path) -> BackendSession:
        raise NotImplementedError


def _one_line(exc: BaseException) -> str:
    from lwprof.counting.onnx_export import one_line

    return one_line(exc)


def _timer(device: str) -> "HostTimer | CudaEventTimer":
    from lwprof.runtime.measure import CudaEventTimer, HostTimer

    return CudaEventTimer() if device == "cuda" else HostTimer()


# -- torch ------------------------------------------------------------------


@register_backend
class TorchBackend(Backend):
    """PyTorch eager (or TorchScript) under ``torch.inference_mode``."""

    name = "torch"
    package = "torch"
    install_hint = "pip install torch (see https://pytorch.org for the CUDA builds)"

    def _device_problem(self, device: str) -> str | None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device: install a CUDA build of torch, or use --device cpu"
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], cache_dir: Path) -> Staged:
        self._check_kind(model)
        return Staged(model.portable())

    def _open(self, model: "LoadedModel", x: "np.ndarray", device: str, threads: int, cache_dir: Path) -> BackendSession:
        self._check_kind(model)
        if model.module is None:
            raise BackendSkipped(f"{model.name} has no module to run")
        return TorchSession(model.module, x, device, threads, model.source)

    @staticmethod
    def _check_kind(model: "LoadedModel") -> None:
        if model.kind != "torch":
            where = f" ({model.onnx_path})" if model.onnx_path else ""
            raise BackendSkipped(
                f"the torch backend needs a PyTorch model; {model.name} is an ONNX file{where}: use the onnxruntime backend"
            )


class TorchSession(BackendSession):
    """Eval mode and inference mode; on the CPU ``threads`` intra-op threads
    (the previous count is restored on close); on CUDA a copy of the module,
    so the caller's CPU module stays where it is."""

    backend = "torch"

    def __init__(self, module: Any, x: "np.ndarray", device: str, threads: int, source: str = ""):
        import numpy as np
        import torch

        self.torch = torch
        self.device = device
        self.timer = _timer(device)
        self._previous_threads: int | None = None
        if device == "cuda":
            try:
                module = copy.deepcopy(module).to("cuda")
            except Exception as exc:
                raise BackendSkipped(f"cannot move the model to CUDA: {_one_line(exc)}") from None
        # A copy, not a view of the caller's array: that array is every
        # backend's input, and a model may write into its input in place.
        tensor = torch.from_numpy(np.array(x, copy=True))
        dtype = _floating_dtype(module) or tensor.dtype
        self.x = tensor.to(device=device, dtype=dtype)
        self._training = {m: m.training for m in module.modules()}
        module.eval()
        self.module = module
        if device == "cpu":
            self._previous_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
        self.info = {
            "torch_version": torch.__version__,
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "dtype": str(dtype).removeprefix("torch."),
            "input_shape": list(self.x.shape),
            "grad_mode": "inference_mode",
            "module_kind": "torchscript" if isinstance(module, torch.jit.ScriptModule) or source == "torchscript" else "eager",
        }
        if device == "cuda":
            self.info["cuda_device"] = torch.cuda.get_device_name()
            self.info["cuda_version"] = torch.version.cuda

    def run(self) -> None:
        with self.torch.inference_mode():
            self.module(self.x)

    def outputs(self) -> list["np.ndarray"]:
        with self.torch.inference_mode():
            result = self.module(self.x)
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return [_as_float_array(t) for t in _flatten(result, self.torch.Tensor)]

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        from lwprof.runtime.backends._torch_layers import layer_timings

        return layer_timings(self.module, self.x, runs, self.device)

    def close(self) -> None:
        if self._previous_threads is not None:
            self.torch.set_num_threads(self._previous_threads)
            self._previous_threads = None
        for module, training in self._training.items():
            module.training = training
        self._training = {}


def _floating_dtype(module: Any) -> Any:
    """The dtype of the module's first floating parameter or buffer (None when
    it has none): a half-precision model gets a half-precision input."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _flatten(value: Any, tensor_type: type) -> list[Any]:
    """Tensors of a nested output in order: tuples, lists, dict values; None
    left out; Python numbers kept as numbers."""
    if isinstance(value, tensor_type):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _flatten(item, tensor_type)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flatten(item, tensor_type)]
    if value is None:
        return []
    if isinstance(value, numbers.Number):
        return [value]
    raise BackendSkipped(f"the model returned {type(value).__name__}, which is not a tensor or a tuple/list/dict of tensors")


def _as_float_array(value: Any) -> "np.ndarray":
    """A host numpy array: float32 for float32 and narrower floats, float64 for
    everything else (integer and boolean outputs included)."""
    import numpy as np

    # Not imported for ONNX Runtime alone: its worker process stays a process that never loaded torch.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu")
        if tensor.is_floating_point() and tensor.element_size() <= 4:
            return tensor.float().numpy()
        return tensor.double().numpy()
    array = np.asarray(value)
    return array.astype(np.float32 if array.dtype.kind == "f" and array.dtype.itemsize <= 4 else np.float64, copy=False)


# -- ONNX Runtime -------------------------------------------------------------


@register_backend
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: a session like the plain ``session.run`` loop a user would
    write (all graph optimizations, sequential execution, ``threads`` intra-op
    threads, one inter-op thread)."""

    name = "onnxruntime"
    package = "onnxruntime"
    install_hint = "pip install onnxruntime (onnxruntime-gpu for CUDA)"

    def _device_problem(self, device: str) -> str | None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda" and CUDA_PROVIDER not in available:
            return (
                f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (providers: {', '.join(available)}): "
                "pip install onnxruntime-gpu in place of onnxruntime"
            )
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], cache_dir: Path) -> Staged:
        if model.kind == "onnx":
            return Staged(model, {"exported": False, "export_cached": None, "export_s": 0.0})
        if model.module is None:
            raise BackendSkipped(f"{model.name} has neither a module nor an ONNX file")
        shape = tuple(int(d) for d in input_shape)
        export = cached_onnx_export(model.module, model.name, shape, cache_dir)
        exported = replace(model, kind="onnx", module=None, onnx_path=export.path, input_shape=shape)
        return Staged(exported, {"exported": True, "export_cached": export.cached, "export_s": export.export_s})

    def _open(self, model: "LoadedModel", x: "np.ndarray", device: str, threads: int, cache_dir: Path) -> BackendSession:
        export_info: dict[str, Any]
        if model.kind == "onnx":
            if model.onnx_path is None:
                raise BackendSkipped(f"{model.name} names no ONNX file")
            path = Path(model.onnx_path)
            export_info = {"exported": False, "export_cached": None, "export_s": 0.0}
        elif model.module is not None:
            export = cached_onnx_export(model.module, model.name, tuple(x.shape), cache_dir)
            path = export.path
            export_info = {"exported": True, "export_cached": export.cached, "export_s": export.export_s}
        else:
            raise BackendSkipped(f"{model.name} has neither a module nor an ONNX file")
        return OnnxRuntimeSession(path, x, device, threads, export_info)


class OnnxRuntimeSession(BackendSession):
    backend = "onnxruntime"

    def __init__(self, onnx_path: Path, x: "np.ndarray", device: str, threads: int, export_info: dict[str, Any]):
        import onnxruntime as ort

        self.device = device
        self.timer = _timer(device)
        self.onnx_path = Path(onnx_path)
        self.threads = threads
        self.providers = [CUDA_PROVIDER, CPU_PROVIDER] if device == "cuda" else [CPU_PROVIDER]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVEL)
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=self.providers)
        except Exception as exc:
            raise BackendSkipped(f"ONNX Runtime cannot load {self.onnx_path}: {_one_line(exc)}") from None
        used = self.session.get_providers()
        if device == "cuda" and (not used or used[0] != CUDA_PROVIDER):
            raise BackendSkipped(
                f"ONNX Runtime fell back to {', '.join(used)}: {CUDA_PROVIDER} did not load (CUDA or cuDNN libraries missing?)"
            )
        input_name, self.input_dtype = self._graph_input(x)
        self.feed = {input_name: x.astype(self.input_dtype, copy=False)}
        self.info = {
            "onnxruntime_version": ort.__version__,
            "threads": {"intra_op": threads, "inter_op": 1},
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": GRAPH_OPTIMIZATION_LEVEL,
            "providers": list(used),
            "requested_providers": list(self.providers),
            "onnx_path": str(self.onnx_path),
            "input_name": input_name,
            "dtype": self.input_dtype,
            "input_shape": list(x.shape),
            **export_info,
        }

    def _graph_input(self, x: "np.ndarray") -> tuple[str, str]:
        """The graph's one input (name, numpy dtype), checked against ``x`` so a
        mismatch is a clear reason rather than a runtime error."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise BackendSkipped(f"{self.onnx_path.name} has {len(inputs)} inputs ({names}); lwprof feeds exactly one")
        graph_input = inputs[0]
        dtype = _ONNX_INPUT_DTYPES.get(graph_input.type)
        if dtype is None:
            raise BackendSkipped(f"{self.onnx_path.name} takes {graph_input.type}; lwprof feeds float32, float16 or float64")
        dims = list(graph_input.shape or [])
        matches = len(dims) == x.ndim and all(not isinstance(d, int) or d == n for d, n in zip(dims, x.shape))
        if not matches:
            wanted = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
            given = "x".join(map(str, x.shape))
            raise BackendSkipped(f"{self.onnx_path.name} takes input {wanted}, not {given}: pass a matching --input-shape")
        return graph_input.name, dtype

    def run(self) -> None:
        self.session.run(None, self.feed)

    def outputs(self) -> list["np.ndarray"]:
        import numpy as np

        arrays = []
        for value in _flatten(self.session.run(None, self.feed), np.ndarray):
            arrays.append(_as_float_array(value))
        return arrays

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        from lwprof.runtime.backends._ort_layers import layer_timings

        return layer_timings(self.onnx_path, self.feed, self.threads, self.providers, runs, self.onnx_path)

    def close(self) -> None:
        self.session = None  # frees the runtime's memory; the session cannot run after this
