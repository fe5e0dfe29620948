"""The lwprof model zoo: lightweight CNNs (and baselines) by registered name.

>>> from lwprof.models import create_model, list_models
>>> model = create_model("mobilenetv3")        # alias of mobilenet_v3_large_100

Every module of this package that does not start with an underscore is a
family file and is imported here, so adding a family is one new file whose
builders carry ``@register_model``; ``guidelines`` (ShuffleNet V2's
guideline micro-benchmark networks, not zoo models) is imported on demand. This package never imports from the
profiler engine: the engine works on any ``nn.Module``.
"""

import importlib
import pkgutil

from ._registry import (
    Approximate,
    DuplicateModelError,
    ModelInfo,
    Paper,
    Published,
    Reference,
    UnknownModelError,
    create_model,
    get_model_info,
    list_aliases,
    list_models,
    register_alias,
    register_model,
    resolve_name,
)

_NOT_FAMILIES = {"guidelines"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module not in _NOT_FAMILIES:
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "Approximate",
    "DuplicateModelError",
    "ModelInfo",
    "Paper",
    "Published",
    "Reference",
    "UnknownModelError",
    "create_model",
    "get_model_info",
    "list_aliases",
    "list_models",
    "register_alias",
    "register_model",
    "resolve_name",
]
