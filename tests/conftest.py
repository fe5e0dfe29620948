import functools

import pytest
import torch


@functools.lru_cache(maxsize=None)
def measured(name: str):
    """Build a zoo model once and record what the tests check: its output on the
    default input, its parameter count, and conv+linear MACs as PyTorch's own
    FlopCounterMode counts them (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lwprof.models import create_model, get_model_info

    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name).eval()
    x = torch.randn(info.input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    params = sum(p.numel() for p in model.parameters())
    return {"output": out, "params": params, "macs": counter.get_total_flops() // 2}


@pytest.fixture
def zoo_measure():
    return measured
