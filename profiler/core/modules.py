"""Eval mode for the length of a measurement, leaving the caller's model as it was."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def eval_mode(modules: Iterable[Any]) -> Iterator[None]:
    """Set ``training = False`` on every module of ``modules`` that is
    training, and set it back on exactly those afterwards. Flags are set
    directly rather than by ``Module.eval()``: the modules not in training are
    not touched, and TorchScript modules take the same path."""
    training = [module for module in modules if module.training]
    for module in training:
        module.training = False
    try:
        yield
    finally:
        for module in training:
            module.training = True
