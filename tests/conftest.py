import functools

import pytest
import torch


@functools.lru_cache(maxsize=None)
def measured(name: str):
    """Build a zoo model once and record what the tests check: its output on the
    default input, its parameter count, conv+linear MACs as PyTorch's own
    FlopCounterMode counts them (FLOPs / 2), and the standard deviation of
    every stage's output (each module at most two levels deep)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lwprof.models import create_model, get_model_info

    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name).eval()
    # Not the seed the data-free BatchNorm pass drew its input with: statistics must hold on new inputs.
    x = torch.randn(info.input_shape, generator=torch.Generator().manual_seed(1))
    stage_stds = {}

    def record(path):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel() > 1:
                stage_stds[path] = output.std().item()
        return hook

    hooks = [m.register_forward_hook(record(path)) for path, m in model.named_modules() if path and path.count(".") <= 1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    for hook in hooks:
        hook.remove()
    params = sum(p.numel() for p in model.parameters())
    return {"output": out, "params": params, "macs": counter.get_total_flops() // 2, "stage_stds": stage_stds}


@pytest.fixture
def zoo_measure():
    return measured
