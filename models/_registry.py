"""The zoo registry: one registered builder per model variant.

A family module describes its paper once (:class:`Paper`) and registers each
variant with :func:`register_model`, giving the numbers it is checked against:

- ``reference``: exact parameter count and conv+linear MACs of the public
  implementation the layout mirrors (the tests assert equality), or ``None``
  where no exact public number exists;
- ``approximate``: for a variant with no exact public implementation, the
  paper's figures it must land near, with the tolerance the tests assert and
  where in the paper the figures are;
- ``published``: what the paper itself reports (MACs rounded to millions,
  ImageNet top-1), recorded for comparison and never asserted exactly.

``input_shape`` is the model's own default input (CIFAR models take 32×32,
segmentation models their dataset's resolution) and ``output_shape`` what it
returns for that input (``(1, 1000)`` for ImageNet classifiers).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from dataclasses import dataclass, field
from typing import Callable

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


class UnknownModelError(KeyError):
    """A model name that is neither registered nor an alias."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        self.message = f"unknown model '{name}'{hint} (see `lwprof zoo` for the full list)"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class DuplicateModelError(ValueError):
    """A name registered twice, as a model or an alias."""


@dataclass(frozen=True)
class Paper:
    arxiv: str
    title: str
    year: int

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


@dataclass(frozen=True)
class Reference:
    """Exact figures of the public implementation this variant mirrors."""

    source: str
    params: int | None = None
    macs: int | None = None


@dataclass(frozen=True)
class Approximate:
    """Paper figures a variant without an exact public implementation must
    land near: each given count within ``tolerance`` (a fraction) of it."""

    source: str  # where in the paper, e.g. "Table 5"
    params: int | None = None
    macs: int | None = None
    tolerance: float = 0.05

    def bounds(self, value: int) -> tuple[float, float]:
        return value * (1 - self.tolerance), value * (1 + self.tolerance)


@dataclass(frozen=True)
class Published:
    """Figures the paper reports; approximate by nature (MACs in millions).

    ``top1_dataset`` says what ``top1`` was measured on: accuracies from
    different datasets (ImageNet-1k, CIFAR-10) are not comparable, so
    ImageNet-only views (compare's top-1 column, the accuracy plot) skip
    the others."""

    macs: int | None = None
    params: int | None = None
    top1: float | None = None
    top1_dataset: str = "ImageNet-1k"

    @property
    def imagenet_top1(self) -> float | None:
        return self.top1 if self.top1_dataset == "ImageNet-1k" else None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    variant: str
    paper: Paper
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    mirrors: str
    reference: Reference | None
    approximate: Approximate | None
    published: Published
    notes: str
    builder: Callable = field(repr=False, compare=False)

    def count_params(self) -> int:
        """Parameters of this implementation, counted on the meta device
        (no memory is allocated and no initialisation runs, so it is cheap)."""
        import torch

        with torch.device("meta"):
            model = self.builder()
        return sum(p.numel() for p in model.parameters())


_MODELS: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    *,
    family: str,
    paper: Paper,
    mirrors: str,
    variant: str = "",
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    output_shape: tuple[int, ...] = (1, 1000),
    reference: Reference | None = None,
    approximate: Approximate | None = None,
    published: Published = Published(),
    notes: str = "",
    name: str | None = None,
) -> Callable[[Callable], Callable]:
    """Register a builder under its function name (or ``name``)."""

    def decorator(builder: Callable) -> Callable:
        model_name = name or builder.__name__
        builder = _with_settled_batchnorm(builder, tuple(input_shape))
        if model_name in _MODELS or model_name in _ALIASES:
            raise DuplicateModelError(f"model name '{model_name}' is already registered")
        _MODELS[model_name] = ModelInfo(
            name=model_name,
            family=family,
            variant=variant,
            paper=paper,
            input_shape=tuple(input_shape),
            output_shape=tuple(output_shape),
            mirrors=mirrors,
            reference=reference,
            approximate=approximate,
            published=published,
            notes=notes,
            builder=builder,
        )
        return builder

    return decorator


def _with_settled_batchnorm(builder: Callable, input_shape: tuple[int, ...]) -> Callable:
    """The builder, its model's BatchNorm statistics set data-free on the
    variant's own input (see :func:`~._blocks.settle_batchnorm`)."""
    from ._blocks import settle_batchnorm

    @functools.wraps(builder)
    def build(**kwargs):
        return settle_batchnorm(builder(**kwargs), input_shape)

    return build


def register_alias(alias: str, target: str) -> None:
    """Make ``alias`` resolve to the registered model ``target``."""
    if alias in _MODELS or alias in _ALIASES:
        raise DuplicateModelError(f"alias '{alias}' clashes with a registered name")
    if target not in _MODELS:
        raise UnknownModelError(target, _suggest(target))
    _ALIASES[alias] = target


def _suggest(name: str, limit: int = 3) -> list[str]:
    candidates = list(_MODELS) + list(_ALIASES)
    close = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.5)
    if len(close) < limit:
        # Family prefixes ("mobilenet_v3") are often typed without a width.
        close += [c for c in sorted(_MODELS) if c.startswith(name) and c not in close]
    return close[:limit]


def resolve_name(name: str) -> str:
    """Canonical model name for a name or alias; raises UnknownModelError."""
    key = name.strip().lower().replace("-", "_")
    if key in _MODELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownModelError(name, _suggest(key))


def get_model_info(name: str) -> ModelInfo:
    return _MODELS[resolve_name(name)]


def list_models(pattern: str = "*") -> list[str]:
    """Canonical names matching a shell-style pattern, sorted."""
    pattern = pattern.lower()
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def list_aliases() -> dict[str, str]:
    return dict(_ALIASES)


def create_model(name: str, **kwargs):
    """Build a randomly initialised zoo model (no weights are ever downloaded)."""
    return get_model_info(name).builder(**kwargs)
