"""Turn a model SPEC from the command line into something the counters can run.

A SPEC is one of, tried in this order:

- an existing ``.onnx`` file;
- an existing file ``torch.jit.load`` accepts (TorchScript);
- ``torchvision:NAME`` or ``timm:NAME`` (built with random weights);
- ``path/to/file.py:attr`` or ``package.module:attr``, where ``attr`` is an
  ``nn.Module`` instance or a callable with no required arguments returning
  one (a class counts);
- a zoo name or alias (:mod:`lwprof.models`).

Nothing is ever downloaded. Every failure the user can fix is a one-line
:class:`~lwprof.core.errors.LwprofError`, except an unknown zoo name, which stays the
registry's :class:`~lwprof.models.UnknownModelError` so the CLI can print its
suggestions.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line, with_article
from lwprof.runtime.loaded import DEFAULT_INPUT_SHAPE, LoadedModel, seeded
from lwprof.runtime.user_code import IDENTIFIER_PATH, load_from_file, load_from_module

__all__ = ["DEFAULT_INPUT_SHAPE", "LoadedModel", "load_model", "parse_shape", "seeded"]


# Suffixes that make a missing SPEC read as a mistyped path rather than an
# unknown zoo name.
_MODEL_FILE_SUFFIXES = {".onnx", ".pt", ".pth", ".ts", ".torchscript", ".jit", ".py", ".pkl", ".bin", ".ckpt"}



def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` or ``"1x3x224x224"`` (brackets and spaces allowed) -> ``(1, 3, 224, 224)``."""
    cleaned = text.strip().strip("()[]").replace(" ", "")
    parts = re.split(r"[,xX]", cleaned) if cleaned else []
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise LwprofError(f"input shape '{text}' is not a shape: expected positive integers like 1,3,224,224 or 1x3x224x224")
    return tuple(int(p) for p in parts)


def load_model(
    spec: str,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int | None = None,
) -> LoadedModel:
    """Resolve ``spec`` (see the module docstring). ``input_shape`` replaces the
    default input shape; ``batch_size`` then replaces its first dimension."""
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if not input_shape or not all(isinstance(d, int) and d > 0 for d in input_shape):
            raise LwprofError(f"input shape {input_shape} must be positive integers")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise LwprofError(f"batch size must be a positive integer, got {batch_size!r}")

    building = contextlib.nullcontext() if spec.strip().lower().endswith(".onnx") else seeded(spec.strip())
    with building:
        loaded = _resolve(spec.strip())
    shape = input_shape or loaded.input_shape
    if batch_size is not None:
        shape = (batch_size, *shape[1:])
    recipe = functools.partial(_rebuild, spec, str(Path.cwd()), input_shape, batch_size)
    return replace(loaded, input_shape=shape, recipe=recipe)


def _rebuild(spec: str, cwd: str, input_shape: tuple[int, ...] | None, batch_size: int | None) -> LoadedModel:
    """:func:`load_model` as it ran in directory ``cwd`` (a worker process's recipe)."""
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return load_model(spec, input_shape=input_shape, batch_size=batch_size)
    finally:
        os.chdir(previous)


def _resolve(spec: str) -> LoadedModel:
    if not spec:
        raise LwprofError("empty model spec: pass a zoo name, a model file, or file.py:factory")
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return _load_onnx(path)
        if path.suffix.lower() == ".py":
            raise LwprofError(
                f"{spec} is a Python file: name what to profile in it, as {spec}:NAME "
                "(an nn.Module instance, a class, or a function returning a model)"
            )
        return _load_torchscript(path)
    if path.is_dir() and _looks_like_path(spec) or spec in (".", ".."):
        # A bare word naming a folder in the current directory stays a zoo name.
        raise LwprofError(f"{spec} is a directory, not a model file")

    hub, _, hub_name = spec.partition(":")
    if hub in _HUB_LOADERS:
        if not hub_name:
            raise LwprofError(f"'{spec}' names no model: write {hub}:NAME")
        return _HUB_LOADERS[hub](hub_name)

    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        if _looks_like_path(target):
            return load_from_file(target, attr)
        if IDENTIFIER_PATH.match(target):
            return load_from_module(target, attr)
        raise LwprofError(
            f"cannot read spec '{spec}': expected path/file.py:NAME, package.module:NAME, torchvision:NAME or timm:NAME"
        )
    if _looks_like_path(spec):
        raise LwprofError(f"no such file: {spec}")
    return _load_zoo(spec)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix.lower() in _MODEL_FILE_SUFFIXES


# ---------------------------------------------------------------- zoo


def _load_zoo(name: str) -> LoadedModel:
    from lwprof.models import get_model_info

    info = get_model_info(name)  # UnknownModelError (with suggestions) propagates
    # Seeded by the canonical name, so an alias builds the same weights.
    with seeded(info.name):
        module = info.builder()
    return LoadedModel(info.name, "torch", module, None, info.input_shape, "zoo")


# ---------------------------------------------------------------- ONNX


def _load_onnx(path: Path) -> LoadedModel:
    from lwprof.counting.onnx_graph import load_onnx

    # The graph only; weights stored beside it are not needed for shapes.
    graph = load_onnx(path, external_data=False).graph
    return LoadedModel(path.stem, "onnx", None, path, _onnx_input_shape(graph) or DEFAULT_INPUT_SHAPE, "onnx")


def _onnx_input_shape(graph: Any) -> tuple[int, ...] | None:
    """Shape of the first graph input that is not an initializer, when static.
    A symbolic leading (batch) dimension alone counts as 1; any other symbolic
    dimension means the graph does not say, and the caller falls back."""
    initializers = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]
        if not dims:
            return None
        if dims[0] is None:
            dims[0] = 1
        return tuple(dims) if all(d is not None for d in dims) else None
    return None


# ---------------------------------------------------------------- TorchScript and other files


def _load_torchscript(path: Path) -> LoadedModel:
    import torch

    try:
        # torch 2.9+ deprecates TorchScript; the user chose the format, so no nagging.
        with _warnings_silenced(DeprecationWarning):
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise LwprofError(_describe_non_torchscript(path)) from None
    return LoadedModel(path.stem, "torch", module, None, DEFAULT_INPUT_SHAPE, "torchscript")


_PASS_INSTEAD = (
    "pass the code that builds the model as file.py:factory, or save a TorchScript model "
    "with torch.jit.save(torch.jit.script(model), PATH)"
)


def _describe_non_torchscript(path: Path) -> str:
    """Say what a file torch.jit.load rejected actually holds, without running
    any pickled code."""
    import torch

    with _warnings_silenced():
        try:
            content = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:
            content = _NOT_LOADED
    if content is _NOT_LOADED:
        pickled = _pickled_globals(path)
        if pickled:
            shown = pickled[0]
            return (
                f"{path} is a pickled Python object ({shown}; torch.save of a whole model?), which lwprof "
                f"does not unpickle because that runs arbitrary code: {_PASS_INSTEAD}"
            )
        return (
            f"{path} is not a TorchScript, ONNX or torch.save file: pass a zoo name, an .onnx file, "
            "a TorchScript file, or file.py:factory"
        )
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        what = f"a state_dict ({len(content)} tensors, no architecture)"
    elif isinstance(content, dict):
        keys = ", ".join(repr(k) for k in list(content)[:4]) + (", ..." if len(content) > 4 else "")
        what = f"a checkpoint dict (keys {keys}) of weights, not a model"
    else:
        what = f"a saved {type(content).__name__} object, not a model"
    return f"{path} is {what}: {_PASS_INSTEAD}"


_NOT_LOADED = object()


def _pickled_globals(path: Path) -> list[str]:
    """Classes a torch.save archive would import when unpickled (empty if it is
    not such an archive)."""
    import torch

    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:
        return []
    try:
        found = finder(str(path))
    except Exception:
        return []
    # The model's own class is the informative one, not torch's building blocks.
    return sorted(found, key=lambda name: name.startswith("torch."))


@contextlib.contextmanager
def _warnings_silenced(category: type[Warning] = Warning) -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield


# ---------------------------------------------------------------- torchvision and timm


def _import_hub(package: str, install: str):
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise LwprofError(f"{package} is installed but failed to import: {one_line(exc)}") from None
        raise LwprofError(f"{package} is not installed: {install}, then retry") from None
    except Exception as exc:
        # A torchvision built for another torch fails here with
        # "operator torchvision::nms does not exist".
        raise LwprofError(
            f"{package} is installed but failed to import ({one_line(exc)}); "
            f"it is probably built for another torch version: {install} to match torch"
        ) from None


def _load_torchvision(name: str) -> LoadedModel:
    tv = _import_hub("torchvision", "pip install torchvision")
    import torch

    models = tv.models
    known = list(models.list_models()) if hasattr(models, "list_models") else []
    if known and name not in known:
        raise LwprofError(f"torchvision has no model '{name}'{_did_you_mean(name, known)}")
    try:
        module = models.get_model(name, weights=None)
    except Exception as exc:
        raise LwprofError(f"building torchvision:{name} (torchvision {getattr(tv, '__version__', '?')}) failed: {one_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise LwprofError(f"torchvision:{name} built {with_article(type(module).__name__)}, not an nn.Module")
    return LoadedModel(name, "torch", module, None, DEFAULT_INPUT_SHAPE, "torchvision")


def _load_timm(name: str) -> LoadedModel:
    if name.startswith(("hf-hub:", "hf_hub:")):
        raise LwprofError(f"timm:{name} would download from the Hugging Face Hub; lwprof never downloads: use a timm model name")
    timm = _import_hub("timm", "pip install timm")
    import torch

    if hasattr(timm, "is_model") and not timm.is_model(name):
        raise LwprofError(f"timm has no model '{name}'{_did_you_mean(name, list(timm.list_models()))}")
    try:
        module = timm.create_model(name, pretrained=False)
    except Exception as exc:
        raise LwprofError(f"building timm:{name} failed: {one_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise LwprofError(f"timm:{name} built {with_article(type(module).__name__)}, not an nn.Module")
    # timm records each model's input size in its config, no download needed.
    config = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    size = config.get("input_size") if isinstance(config, dict) else None
    shape = (1, *size) if size and all(isinstance(d, int) and d > 0 for d in size) else DEFAULT_INPUT_SHAPE
    return LoadedModel(name, "torch", module, None, tuple(shape), "timm")


_HUB_LOADERS: dict[str, Callable[[str], LoadedModel]] = {
    "torchvision": _load_torchvision,
    "timm": _load_timm,
}


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


