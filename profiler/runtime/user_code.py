"""Models from the user's own code: ``path/to/file.py:attr`` and ``package.module:attr``.

``attr`` is an ``nn.Module`` instance or a callable with no required
arguments returning one (a class counts). The user's code is imported as
``python file.py`` run from the current directory would import it, and every
failure is one line that names the user's own file and line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import itertools
import re
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from lwprof.core.errors import LwprofError
from lwprof.core.text import first_line, with_article
from lwprof.runtime.loaded import DEFAULT_INPUT_SHAPE, LoadedModel

IDENTIFIER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# Each user file is imported under its own private name, so two files called
# model.py (or a file called like one of the user's packages) never share a
# sys.modules entry.
_user_module_ids = itertools.count()


def load_from_file(target: str, attr: str) -> LoadedModel:
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


def load_from_module(module_path: str, attr: str) -> LoadedModel:
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
    if not IDENTIFIER_PATH.match(attr):
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
        raise LwprofError(f"attribute {attr} of {where} is {with_article(type(obj).__name__)}, not an nn.Module or a factory returning one")
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
            f"attribute {attr} of {where} is {with_article(type(obj).__name__)} returning {with_article(type(built).__name__)}, "
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported or built"
    message = first_line(exc)
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
