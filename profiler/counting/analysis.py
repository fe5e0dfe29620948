"""``lwprof.analyze``: the Python entry point of the analytic profiler."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lwprof.core.records import ModelProfile
from lwprof.counting.engine import profile_module

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


def analyze(
    model_or_name: nn.Module | str,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ModelProfile:
    """Per-layer FLOPs, MACs, params and memory access of a model.

    ``model_or_name`` is an ``nn.Module`` or a zoo name/alias. ``input_shape``
    defaults to the zoo entry's input, else ``(1, 3, 224, 224)``.
    """
    if isinstance(model_or_name, str):
        from lwprof.models import create_model, get_model_info

        info = get_model_info(model_or_name)
        model, name = create_model(info.name), info.name
        input_shape = input_shape or info.input_shape
    else:
        model, name = model_or_name, type(model_or_name).__name__
    return profile_module(model, tuple(input_shape or DEFAULT_INPUT_SHAPE), dtype=dtype, name=name)
