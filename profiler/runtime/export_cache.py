"""The ONNX export cache: one export per model, shape, opset, torch version and fingerprint.

ONNX exports of PyTorch models are cached under ``<cache dir>/onnx/``, one
file per :func:`~lwprof.counting.onnx_export.export_cache_key` (model, input
shape, opset, torch version). The key alone cannot tell two models of the
same name apart, nor the same architecture with other weights, so each file
also records a fingerprint of the module's code, structure and weights, and a
file whose fingerprint differs is exported again rather than trusted.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line

FINGERPRINT_KEY = "lwprof.fingerprint"


class ExportFailed(LwprofError):
    """The export could not be made or cached; the message says why (one line)."""


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
    Raises :class:`ExportFailed` with the exporter's one-line error.
    """
    import onnx
    import torch

    from lwprof.counting.onnx_export import DEFAULT_OPSET, EXPORTER, export_info, export_onnx
    from lwprof.counting.onnx_scopes import LAYER_NAMES_VERSION

    shape = tuple(int(d) for d in input_shape)
    path = onnx_cache_path(cache_dir, model_name, shape)
    fingerprint = module_fingerprint(module)
    expected = {
        "input_shape": "x".join(map(str, shape)),
        "opset": str(DEFAULT_OPSET),
        "torch": torch.__version__,
        "exporter": EXPORTER,
        "layer_names": LAYER_NAMES_VERSION,
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
        raise ExportFailed(f"cannot write the ONNX export cache {path.parent}: {one_line(exc)}") from None
    temporary = Path(temporary_name)
    started = time.perf_counter()
    try:
        export_onnx(module, shape, temporary)
        exported = onnx.load(str(temporary))
        onnx.helper.set_model_props(exported, {**{p.key: p.value for p in exported.metadata_props}, FINGERPRINT_KEY: fingerprint})
        onnx.save(exported, str(temporary))
        os.replace(temporary, path)
    except LwprofError as exc:
        raise ExportFailed(str(exc)) from None
    except Exception as exc:
        raise ExportFailed(f"ONNX export of {model_name} failed: {one_line(exc)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return CachedExport(path, False, time.perf_counter() - started)
