"""Calibrating a device: micro-benchmarks of the kernel types lightweight
networks are made of, timed on one runtime, and one regressor fitted per type.

Each kernel type has a sampler (:func:`sampler`): a function that draws one
configuration (channels, spatial size, kernel size, stride) from the ranges
lightweight networks use and builds the one-kernel module that runs it (a
pointwise convolution with its BatchNorm and activation, a depthwise one, a
pooling layer, ...). Every sample is a fresh model of one kernel: lwprof
stages and prepares it on the backend like any model, times it end to end,
and subtracts the runtime's per-call overhead (timed on a model of one
trivial kernel), so the kernel's own time is what the regressor learns; a
prediction adds the overhead back once per model.

The zoo is never timed here: calibration sees synthetic kernels only, so the
zoo stays a held-out test set (``benchmarks/predict_accuracy.py``).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from lwprof.core.errors import LwprofError
from lwprof.predict.kernels import FEATURES, decompose
from lwprof.predict.regressor import PowerLaw

if TYPE_CHECKING:
    from lwprof.runtime.settings import RunSettings

# Channel widths, spatial sizes and kernels as lightweight CNNs use them (224x224 input).
CHANNELS = (8, 12, 16, 24, 32, 40, 48, 64, 72, 96, 120, 144, 160, 192, 240, 256, 320, 384, 480, 512, 576, 672, 960, 1024)
SPATIAL = (7, 14, 28, 56, 112)
KERNELS = (3, 5, 7)
ACTIVATIONS = ("relu", "relu6", "hardswish", "none")

_SAMPLERS: dict[str, Callable[[random.Random], tuple[Any, tuple[int, ...]]]] = {}


def sampler(kernel_type: str) -> Callable:
    """Register the sampler of ``kernel_type``: ``rng -> (module, input shape)``."""

    def decorator(function: Callable[[random.Random], tuple[Any, tuple[int, ...]]]) -> Callable:
        if kernel_type in _SAMPLERS:
            raise LwprofError(f"a sampler for kernel type '{kernel_type}' is already registered")
        _SAMPLERS[kernel_type] = function
        return function

    return decorator


def sampled_types() -> list[str]:
    return list(_SAMPLERS)


def _activation(name: str) -> Any:
    from torch import nn

    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hardswish": nn.Hardswish(), "none": nn.Identity()}[name]


def _conv_block(cin: int, cout: int, k: int, stride: int, groups: int, act: str) -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         _activation(act)).eval()


@sampler("conv_pointwise")
def _pointwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    cin, cout, size = rng.choice(CHANNELS), rng.choice(CHANNELS), rng.choice(SPATIAL)
    return _conv_block(cin, cout, 1, 1, 1, rng.choice(ACTIVATIONS)), (1, cin, size, size)


@sampler("conv_depthwise")
def _depthwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    channels, size, k, stride = rng.choice(CHANNELS), rng.choice(SPATIAL), rng.choice(KERNELS), rng.choice((1, 1, 2))
    return _conv_block(channels, channels, k, stride, channels, rng.choice(ACTIVATIONS)), (1, channels, size, size)


@sampler("conv")
def _dense(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    cin, cout, size = rng.choice(CHANNELS[:12]), rng.choice(CHANNELS[:16]), rng.choice(SPATIAL)
    k, stride = rng.choice((3, 3, 5)), rng.choice((1, 2))
    return _conv_block(cin, cout, k, stride, 1, rng.choice(ACTIVATIONS)), (1, cin, size, size)


@sampler("conv_group")
def _grouped(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    groups = rng.choice((2, 3, 4, 8))
    cin, cout = groups * rng.choice((8, 16, 24, 32, 60)), groups * rng.choice((8, 16, 24, 32, 60))
    k = rng.choice((1, 1, 3))
    return _conv_block(cin, cout, k, 1, groups, rng.choice(ACTIVATIONS)), (1, cin, rng.choice(SPATIAL), rng.choice(SPATIAL))


@sampler("matmul")
def _linear(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    cin, cout = rng.choice(CHANNELS), rng.choice(CHANNELS + (1000,))
    tokens = rng.choice((1, 1, 16, 64, 256))
    return nn.Linear(cin, cout).eval(), (tokens, cin)


@sampler("pooling")
def _pooling(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    module = rng.choice((nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1)))
    return module.eval(), (1, channels, size, size)


@sampler("reduction")
def _global_pool(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    return nn.AdaptiveAvgPool2d(1).eval(), (1, rng.choice(CHANNELS), *(rng.choice(SPATIAL),) * 2)


def _elementwise_module(op: str, shape: tuple[int, ...]) -> Any:
    import torch
    from torch import nn

    class Elementwise(nn.Module):
        """``x + other`` or ``x * other`` with a second operand of x's shape
        (a residual's shortcut, an attention map)."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("other", torch.randn(shape))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.other if op == "add" else x * self.other

    return Elementwise().eval()


@sampler("elementwise")
def _elementwise(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    shape = (1, rng.choice(CHANNELS), *(rng.choice(SPATIAL),) * 2)
    return _elementwise_module(rng.choice(("add", "mul")), shape), shape


@sampler("activation")
def _activation_alone(rng: random.Random) -> tuple[Any, tuple[int, ...]]:
    from torch import nn

    channels, size = rng.choice(CHANNELS), rng.choice(SPATIAL)
    module = rng.choice((nn.Hardswish(), nn.Hardsigmoid(), nn.Sigmoid(), nn.GELU(), nn.SiLU()))
    return module.eval(), (1, channels, size, size)


# ---------------------------------------------------------------------------


@dataclass
class Sample:
    kernel_type: str
    features: list[float]
    seconds: float  # the kernel's own time: end to end, less the per-call overhead


def time_module(module: Any, input_shape: tuple[int, ...], backend: str, settings: "RunSettings", name: str) -> float:
    """Median seconds of one inference of ``module`` on ``backend`` (staged and
    prepared as any model is, in this process)."""
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.measure import time_kernel
    from lwprof.runtime.outputs import example_input

    runtime = get_backend(backend)
    model = LoadedModel(name, "torch", module, None, tuple(input_shape), "file")
    staged = runtime.stage(model, input_shape, settings).model
    if staged.module is None:  # staging keeps a zoo model's recipe, not a module built here
        staged = replace(staged, module=module)
    x = example_input(tuple(input_shape))
    with runtime.prepare(staged, x, settings) as session:
        return time_kernel(session.run, settings.budget, session.timer).median


def overhead_s(backend: str, settings: "RunSettings") -> float:
    """The runtime's per-call time around a kernel: a model of one 1x1
    convolution on one value, timed end to end."""
    from torch import nn

    return time_module(nn.Conv2d(1, 1, 1, bias=False).eval(), (1, 1, 1, 1), backend, settings, "lwprof-overhead")


def collect(backend: str, settings: "RunSettings", per_type: int, seed: int = 0,
            progress: Callable[[str], None] | None = None, types: list[str] | None = None) -> tuple[float, list[Sample]]:
    """The overhead and ``per_type`` timed samples of each kernel type."""
    from lwprof.counting.engine import profile_module

    rng = random.Random(seed)
    overhead = overhead_s(backend, settings)
    samples: list[Sample] = []
    for kernel_type in types or sampled_types():
        for index in range(per_type):
            module, shape = _SAMPLERS[kernel_type](rng)
            kernels = decompose(profile_module(module, shape))
            if [k.type for k in kernels] != [kernel_type]:
                raise LwprofError(f"the {kernel_type} sampler built {[k.type for k in kernels]}, not one {kernel_type} kernel")
            started = time.perf_counter()
            seconds = time_module(module, shape, backend, settings, f"lwprof-{kernel_type}-{index}")
            samples.append(Sample(kernel_type, kernels[0].vector(), max(seconds - overhead, overhead * 0.05)))
            if progress is not None:
                progress(f"{kernel_type} {index + 1}/{per_type}: {seconds * 1e3:.3f} ms "
                         f"(timed in {time.perf_counter() - started:.1f} s)")
    return overhead, samples


def fit(samples: list[Sample], hold_out: float = 0.2, seed: int = 0) -> tuple[dict[str, PowerLaw], dict[str, Any]]:
    """One power law per kernel type, fitted on all its samples; the
    validation figures come from a fit without a held-out share of them."""
    by_type: dict[str, list[Sample]] = {}
    for sample in samples:
        by_type.setdefault(sample.kernel_type, []).append(sample)
    rng = random.Random(seed)
    regressors: dict[str, PowerLaw] = {}
    validation: dict[str, Any] = {}
    for kernel_type, group in by_type.items():
        regressors[kernel_type] = PowerLaw.fit(FEATURES, [s.features for s in group], [s.seconds for s in group])
        shuffled = group[:]
        rng.shuffle(shuffled)
        held = max(1, int(len(shuffled) * hold_out)) if len(shuffled) >= 5 else 0
        if held:
            trained = PowerLaw.fit(FEATURES, [s.features for s in shuffled[held:]], [s.seconds for s in shuffled[held:]])
            errors = sorted(abs(trained.predict(s.features) / s.seconds - 1) for s in shuffled[:held])
            validation[kernel_type] = {"samples": len(group), "held_out": held,
                                       "median_relative_error": statistics.median(errors),
                                       "max_relative_error": errors[-1]}
        else:
            validation[kernel_type] = {"samples": len(group), "held_out": 0}
    return regressors, validation
