"""PyTorch eager (or TorchScript) under ``torch.inference_mode``: the torch backend.

Per layer: the same TorchDispatchMode and module stack the counting engine
uses (:mod:`lwprof.counting.tracer`), with a clock around each aten op's
kernel. Every op's time goes to the row the engine gives its cost to (the
innermost module, or ``path (op)`` for a container's functional ops), so time
and cost join exactly, including the residual adds, concats and shuffles that
module hooks would leave in no row. View and allocation ops are not timed:
they launch no kernel, and their cost is metadata the end-to-end figure still
contains.

Why this method: module hooks can only time whole modules (a container's own
``add`` disappears into its parent), and torch.profiler attributes ops to
modules only for TorchScript. The timed region is the kernel alone; the
mode's Python work happens between ops, so it lengthens the pass (reported as
overhead) but not the per-op figures, apart from colder caches. On CUDA, each
op is bracketed by CUDA events read after one synchronize at the end of the
pass, so kernels stay asynchronous.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.modules import eval_mode
from lwprof.core.text import one_line
from lwprof.core.timing import LayerTiming
from lwprof.runtime.backends import Backend, BackendSession, BackendSkipped, Staged, register_backend, session_timer
from lwprof.runtime.outputs import as_float_array, flatten_outputs
from lwprof.runtime.threads import torch_threads

if TYPE_CHECKING:
    import numpy as np

    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.settings import RunSettings



@register_backend
class TorchBackend(Backend):
    """PyTorch eager (or TorchScript) under ``torch.inference_mode``."""

    name = "torch"
    package = "torch"
    install_hint = "pip install torch (see https://pytorch.org for the CUDA builds)"
    memory_view = "eager"  # every op reads and writes its tensors in memory
    default = True
    precisions = {
        "fp32": "the module as it is",
        "bf16": "a copy of the module and its input cast to torch.bfloat16 (oneDNN's bf16 kernels where the CPU has them)",
        "fp16": "a copy of the module and its input cast to torch.float16",
    }
    unsupported_precisions = {
        "int8": "eager PyTorch runs int8 through reference quantize/dequantize kernels, which is not a deployment "
                "path; measure int8 with --backend onnxruntime",
    }

    def _device_problem(self, device: str) -> str | None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device: install a CUDA build of torch, or use --device cpu"
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> Staged:
        self._check_kind(model)
        if settings.precision == model.precision:
            return Staged(model.portable())
        problem = self.precision_problem(settings.precision)
        if problem is not None:
            raise BackendSkipped(problem)
        # The cast happens in the worker (a module does not travel); how its outputs
        # agree with fp32's is measured here, on the same inputs the int8 check uses.
        from lwprof.runtime.precision import agreement, calibration_inputs

        if model.module is None:
            raise BackendSkipped(f"{model.name} has no module to cast to {settings.precision}")
        import numpy as np
        import torch

        dtype = getattr(torch, TORCH_DTYPES[settings.precision])
        inputs = calibration_inputs(settings.int8, input_shape)
        cast = copy.deepcopy(model.module).to(dtype)
        outputs: list[list[list[Any]]] = [[], []]
        with torch_threads(settings.threads), eval_mode([*model.module.modules(), *cast.modules()]), torch.inference_mode():
            for x in inputs:
                tensor = torch.from_numpy(np.array(x, copy=True))
                outputs[0].append([as_float_array(t) for t in flatten_outputs(model.module(tensor), torch.Tensor)])
                outputs[1].append([as_float_array(t) for t in flatten_outputs(cast(tensor.to(dtype)), torch.Tensor)])
        from lwprof.counting.engine import profile_module
        from lwprof.runtime.precision import analytic_record

        counted = profile_module(model.module, tuple(input_shape), dtype=dtype, name=model.name)
        record = {"method": self.precisions[settings.precision], "agreement": agreement(*outputs).to_dict(),
                  "calibration": f"{len(inputs)} inputs (as for int8)",
                  "analytic": analytic_record(counted, f"the module at {dtype}")}
        return Staged(model.portable(), {"precision": settings.precision, "quantization": record})

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        self._check_kind(model)
        if model.module is None:
            raise BackendSkipped(f"{model.name} has no module to run")
        return TorchSession(model.module, x, settings, model.source)

    def peak_kernels(self, settings: "RunSettings") -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        device, threads, budget = settings.device, settings.threads, settings.budget
        from lwprof.runtime.measure import COPY_BYTES, GEMM_SIZE, ceiling, time_kernel

        n, copy_bytes = GEMM_SIZE[device], COPY_BYTES[device]
        timer = session_timer(device)
        dtype = getattr(torch, TORCH_DTYPES.get(settings.precision, "float32"))
        with torch_threads(threads if device == "cpu" else None), torch.inference_mode():
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            out = torch.empty(n, n, device=device, dtype=dtype)
            gemm = time_kernel(lambda: torch.mm(a, b, out=out), budget, timer)
            src = torch.randn(copy_bytes // 4, device=device)
            dst = torch.empty_like(src)
            copy = time_kernel(lambda: dst.copy_(src), budget, timer)
        return (
            ceiling(gemm, kernel=f"torch.mm {n}x{n} {settings.precision}", size=n, flops=2 * n**3),
            # a copy reads every byte once and writes it once
            ceiling(copy, kernel=f"Tensor.copy_ of {copy_bytes // 2**20} MiB fp32", bytes=2 * copy_bytes),
        )

    @staticmethod
    def _check_kind(model: "LoadedModel") -> None:
        if model.kind != "torch":
            where = f" ({model.onnx_path})" if model.onnx_path else ""
            raise BackendSkipped(
                f"the torch backend needs a PyTorch model; {model.name} is an ONNX file{where}: use the onnxruntime backend"
            )


TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TorchSession(BackendSession):
    """Eval mode and inference mode; on the CPU ``threads`` intra-op threads
    (the previous count is restored on close); on CUDA a copy of the module,
    so the caller's CPU module stays where it is."""

    backend = "torch"

    def __init__(self, module: Any, x: "np.ndarray", settings: "RunSettings", source: str = ""):
        import numpy as np
        import torch

        device = settings.device
        self.torch = torch
        self.device = device
        self.timer = session_timer(device)
        self._undo = contextlib.ExitStack()
        if device == "cuda":
            try:
                module = copy.deepcopy(module).to("cuda")
            except Exception as exc:
                raise BackendSkipped(f"cannot move the model to CUDA: {one_line(exc)}") from None
        # A copy, not a view of the caller's array: that array is every
        # backend's input, and a model may write into its input in place.
        tensor = torch.from_numpy(np.array(x, copy=True))
        if settings.precision in TORCH_DTYPES and settings.precision != "fp32":
            module = copy.deepcopy(module).to(getattr(torch, TORCH_DTYPES[settings.precision]))
        dtype = _floating_dtype(module) or tensor.dtype
        self.x = tensor.to(device=device, dtype=dtype)
        self._undo.enter_context(eval_mode(module.modules()))
        self._undo.enter_context(torch_threads(settings.threads if device == "cpu" else None))
        self.module = module
        self.info = {
            "torch_version": torch.__version__,
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "dtype": str(dtype).removeprefix("torch."),
            "input_shape": list(self.x.shape),
            "grad_mode": "inference_mode",
            "module_kind": "torchscript" if isinstance(module, torch.jit.ScriptModule) or source == "torchscript" else "eager",
        }
        if device == "cuda":
            self.info["cuda_device"] = torch.cuda.get_device_name()
            self.info["cuda_version"] = torch.version.cuda

    def run(self) -> None:
        with self.torch.inference_mode():
            self.module(self.x)

    def outputs(self) -> list["np.ndarray"]:
        with self.torch.inference_mode():
            result = self.module(self.x)
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return [as_float_array(t) for t in flatten_outputs(result, self.torch.Tensor)]

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        return layer_timings(self.module, self.x, runs, self.device)

    def close(self) -> None:
        self._undo.close()


def _floating_dtype(module: Any) -> Any:
    """The dtype of the module's first floating parameter or buffer (None when
    it has none): a half-precision model gets a half-precision input."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def layer_timings(module: Any, x: Any, runs: int, device: str = "cpu", warmup: int = 1) -> list[LayerTiming]:
    """Time every op of ``runs`` forward passes of ``module`` on ``x``; one
    sample per pass for each layer row, rows in execution order."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from lwprof.counting.tracer import COUNTED, ModuleStack, op_info

    if runs < 1:
        raise ValueError("runs must be at least 1")
    cuda = device == "cuda"
    clock = time.perf_counter

    class _TimedTracer(TorchDispatchMode):
        def __init__(self, modules: ModuleStack):
            super().__init__()
            self.modules = modules
            self.events: list[tuple[tuple[int | None, str], Any, Any]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            info = op_info(func)
            if info.kind != COUNTED:
                return func(*args, **kwargs)
            key = (self.modules.current(), info.short_name)
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                result = func(*args, **kwargs)
                end.record()
                self.events.append((key, start, end))
            else:
                start = clock()
                result = func(*args, **kwargs)
                self.events.append((key, start, clock()))
            return result

    modules = ModuleStack(module)

    rows: dict[str, list[float]] = {}
    ops: dict[str, set[str]] = {}
    with eval_mode(modules.by_path.values()), torch.no_grad(), modules:
        for run in range(warmup + runs):
            with _TimedTracer(modules) as tracer:
                module(x)
            if cuda:
                torch.cuda.synchronize()
            if run < warmup:
                continue
            per_row: dict[str, float] = {}
            for (module_id, op), start, end in tracer.events:
                seconds = start.elapsed_time(end) / 1000.0 if cuda else end - start
                row = modules.layer_of(module_id, op)[0]
                per_row[row] = per_row.get(row, 0.0) + seconds
                ops.setdefault(row, set()).add(f"aten.{op}")
            for row, seconds in per_row.items():
                rows.setdefault(row, []).append(seconds)
    # A row missing from some pass (data-dependent control flow) counts 0 there.
    return [
        LayerTiming(layer=row, samples_s=tuple(samples) + (0.0,) * (runs - len(samples)), ops=tuple(sorted(ops[row])))
        for row, samples in rows.items()
    ]
