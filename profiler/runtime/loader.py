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
import importlib.util
import inspect
import itertools
import os
import re
import sys
import sysconfig
import traceback
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from lwprof.core.errors import LwprofError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DEFAULT_INPUT_SHAPE", "LoadedModel", "load_model", "parse_shape"]

DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 3, 224, 224)

# Suffixes that make a missing SPEC read as a mistyped path rather than an
# unknown zoo name.
_MODEL_FILE_SUFFIXES = {".onnx", ".pt", ".pth", ".ts", ".torchscript", ".jit", ".py", ".pkl", ".bin", ".ckpt"}

_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# Each user file is imported under its own private name, so two files called
# model.py (or a file called like one of the user's packages) never share a
# sys.modules entry.
_user_module_ids = itertools.count()


@dataclass(frozen=True)
class LoadedModel:
    """A resolved SPEC: a PyTorch module (kind "torch") or an ONNX file (kind "onnx").

    ``recipe`` rebuilds the very same model in another process (a picklable
    call, such as :func:`load_model` with this SPEC): latency is measured in
    fresh worker processes, and a module does not travel between processes.
    """

    name: str
    kind: str
    module: nn.Module | None
    onnx_path: Path | None
    input_shape: tuple[int, ...]
    source: str
    recipe: Callable[[], "LoadedModel"] | None = field(default=None, compare=False, repr=False)

    def portable(self) -> "LoadedModel":
        """This model without its module, to send to another process."""
        return replace(self, module=None)

    def materialize(self) -> "LoadedModel":
        """This model with its module, rebuilt by ``recipe`` when it travelled without one."""
        if self.kind != "torch" or self.module is not None:
            return self
        if self.recipe is None:
            raise LwprofError(f"{self.name} has no module and no recipe to rebuild it")
        built = self.recipe()
        if built.module is None:
            raise LwprofError(f"rebuilding {self.name} gave no module")
        return replace(self, module=built.module)


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


@contextlib.contextmanager
def seeded(key: str) -> Iterator[None]:
    """Random initialisation seeded by ``key``, the caller's random state left
    as it was: every build of the same SPEC gets the same weights, in this
    process and in a worker process, so the torch module a worker times is the
    one whose ONNX export another worker runs, and an export cached by an
    earlier run is reused."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(key.encode()))
        yield


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
            return _load_from_file(target, attr)
        if _IDENTIFIER_PATH.match(target):
            return _load_from_module(target, attr)
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
    import onnx

    try:
        # The graph only; weights stored beside it are not needed for shapes.
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise LwprofError(f"{path} is not a readable ONNX model: {_one_line(exc)}") from None
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
            raise LwprofError(f"{package} is installed but failed to import: {_one_line(exc)}") from None
        raise LwprofError(f"{package} is not installed: {install}, then retry") from None
    except Exception as exc:
        # A torchvision built for another torch fails here with
        # "operator torchvision::nms does not exist".
        raise LwprofError(
            f"{package} is installed but failed to import ({_one_line(exc)}); "
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
        raise LwprofError(f"building torchvision:{name} (torchvision {getattr(tv, '__version__', '?')}) failed: {_one_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise LwprofError(f"torchvision:{name} built {_a(type(module).__name__)}, not an nn.Module")
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
        raise LwprofError(f"building timm:{name} failed: {_one_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise LwprofError(f"timm:{name} built {_a(type(module).__name__)}, not an nn.Module")
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


# ---------------------------------------------------------------- user code


def _load_from_file(target: str, attr: str) -> LoadedModel:
    path = Path(target).expanduser()
    if not path.is_file():
        raise LwprofError(f"no such file: {target}")
    if path.suffix.lower() != ".py":
        raise LwprofError(f"{target} is not a Python file: file:NAME needs a .py file")
    _check_attr_name(attr, target)
    path = path.resolve()
    safe_stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_lwprof_user_{safe_stem}_{next(_user_module_ids)}"
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None or import_spec.loader is None:
        raise LwprofError(f"cannot import {target} as Python code")
    module = importlib.util.module_from_spec(import_spec)
    # Registered before running so dataclasses, pickling and typing can find it.
    sys.modules[module_name] = module
    try:
        with _user_import_paths([path.parent, Path.cwd()]):
            import_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[module_name]
        raise LwprofError(f"importing {target} failed{_where(exc, path)}: {_describe(exc)}{_relative_import_hint(exc)}") from None
    return _module_from_attr(module, attr, target, "file")


def _load_from_module(module_path: str, attr: str) -> LoadedModel:
    _check_attr_name(attr, module_path)
    try:
        with _user_import_paths([Path.cwd()]):
            module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name and (module_path == exc.name or module_path.startswith(exc.name + ".")):
            raise LwprofError(
                f"no module named '{exc.name}' (for {module_path}:{attr}): install the package, or run from the directory that contains it"
            ) from None
        raise LwprofError(f"importing {module_path} failed: {_describe(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise LwprofError(f"importing {module_path} failed{_where(exc)}: {_describe(exc)}") from None
    return _module_from_attr(module, attr, module_path, "module")


def _check_attr_name(attr: str, target: str) -> None:
    if not _IDENTIFIER_PATH.match(attr):
        raise LwprofError(f"'{attr}' after {target}: is not a Python name (expected e.g. {target}:build_model)")


def _module_from_attr(module: Any, attr: str, where: str, source: str) -> LoadedModel:
    from torch import nn

    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(n for n, v in vars(module).items() if _is_model_like(v) and not n.startswith("_"))
            listed = f"; models and factories there: {', '.join(found[:6])}" if found else ""
            raise LwprofError(f"{where} has no attribute '{attr}'{listed}")
        obj = getattr(obj, part)

    if isinstance(obj, nn.Module):
        return LoadedModel(attr, "torch", obj, None, DEFAULT_INPUT_SHAPE, source)
    if not callable(obj):
        raise LwprofError(f"attribute {attr} of {where} is {_a(type(obj).__name__)}, not an nn.Module or a factory returning one")
    required = _required_parameters(obj)
    if required:
        raise LwprofError(
            f"{attr} in {where} takes required arguments ({', '.join(required)}): give them defaults "
            "or point at a function that builds the model with no arguments"
        )
    try:
        built = obj()
    except (Exception, SystemExit) as exc:
        raise LwprofError(f"calling {attr}() from {where} failed{_where(exc)}: {_describe(exc)}") from None
    if not isinstance(built, nn.Module):
        raise LwprofError(
            f"attribute {attr} of {where} is {_a(type(obj).__name__)} returning {_a(type(built).__name__)}, "
            "not an nn.Module or a factory returning one"
        )
    return LoadedModel(attr, "torch", built, None, DEFAULT_INPUT_SHAPE, source)


def _is_model_like(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module) or (inspect.isclass(value) and issubclass(value, nn.Module))


def _required_parameters(factory: Callable) -> list[str]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: just try the call
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in signature.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty]


@contextlib.contextmanager
def _user_import_paths(directories: list[Path]) -> Iterator[None]:
    """Import the user's code as ``python file.py`` run from the current
    directory would: its own directory and the current directory first on
    sys.path, so its absolute imports (``from models.common import Conv``)
    find the user's packages. lwprof's zoo lives under ``lwprof.models`` and so
    never competes for a top-level name. sys.path is restored afterwards; the
    modules the user's code imported stay loaded, as after any import."""
    front = list(dict.fromkeys(str(d.resolve()) for d in directories))
    _forget_shadowed_modules([Path(d) for d in front])
    saved = list(sys.path)
    sys.path[:0] = front
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved


def _forget_shadowed_modules(directories: list[Path]) -> None:
    """Drop cached top-level modules that the user's directories define anew.

    Without this a second user tree with its own ``models`` package (or the
    lwprof checkout itself, when it is on sys.path) would hand the user's code
    a stale ``models``. Installed packages and the standard library are never
    dropped: lwprof and torch keep working even if a folder is called ``onnx``."""
    protected_roots = _installed_roots()
    for directory in directories:
        for name in _top_level_names(directory):
            cached = sys.modules.get(name)
            if cached is None or name in sys.stdlib_module_names or name == "lwprof":
                continue
            location = _module_location(cached)
            if location is None or _is_under(location, protected_roots) or "site-packages" in location.parts:
                continue
            local = directory / name
            if location == local or location == local.with_suffix(".py") or _is_under(location, {str(local)}):
                continue
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]


def _top_level_names(directory: Path) -> list[str]:
    """Regular packages and modules importable from ``directory`` (namespace
    folders are left out: any folder would qualify)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    names = []
    for entry in entries:
        if entry.suffix == ".py" and entry.is_file() and entry.stem.isidentifier():
            names.append(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and (entry / "__init__.py").is_file():
            names.append(entry.name)
    return names


def _module_location(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    return path.parent if path.name == "__init__.py" else path


def _is_under(path: Path, roots: set[str]) -> bool:
    return any(path == Path(root) or Path(root) in path.parents for root in roots)


# ---------------------------------------------------------------- one-line messages


def _one_line(exc: BaseException | str) -> str:
    """First non-empty line of a message (torch's errors run to many lines)."""
    text = str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported or built"
    message = _one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _where(exc: BaseException, path: Path | None = None) -> str:
    """`` at FILE:LINE`` of the user's line that failed: the innermost frame in
    ``path`` when given, else the innermost frame outside lwprof, importlib, the
    standard library and installed packages (torch's internals say little)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f" at {exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if f.filename == str(path)]
    else:
        lwprof_dir = Path(__file__).resolve().parent
        mine = [
            f
            for f in frames
            if not f.filename.startswith("<")
            and lwprof_dir not in Path(f.filename).resolve().parents
            and not _is_under(Path(f.filename).resolve(), _installed_roots())
        ]
    return f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""


def _installed_roots() -> set[str]:
    """The standard library and site-packages folders."""
    return {
        str(Path(p).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }


def _relative_import_hint(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and "relative import" in str(exc):
        return " (a file inside a package: pass it as package.module:NAME from the package's parent directory)"
    return ""
