"""torch.compile with its default backend, inductor: the inductor backend.

The worker compiles the module it rebuilt with ``torch.compile(module)``,
inductor's defaults untouched: what a user's ``torch.compile(model)`` gets.
Inductor's own settings come from the user's environment, as they would in
the user's process (``TORCHINDUCTOR_FREEZING=1`` folds the weights into the
graph, often much faster on the CPU, and is never turned on silently); the
values that change a measurement (freezing, max-autotune, the C++ compiler)
are recorded in the run. Compiling happens while the session is prepared,
so its time is preparation, reported apart from the timing; inductor's
on-disk cache, kept under lwprof's cache folder, makes a second run of the
same model compile in a fraction of the time.

Per layer: inductor fuses most of a network into generated C++ kernels
(convolutions and GEMMs stay calls into oneDNN/ATen). The end-to-end figure
is the plain compile's; layer times come from a second compile with
inductor's kernel profiling and provenance tracking on, whose kernels the
profiler times and whose graph nodes name their layers
(:mod:`._inductor_layers`). A kernel that fused several layers is one row,
the others its ``fused_layers``. On CUDA (Triton kernels) the figure is end
to end only.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING, Any

from lwprof.core.errors import LwprofError
from lwprof.runtime.backends import BackendSession, register_backend
from lwprof.runtime.backends.torch_eager import TorchBackend, TorchSession

if TYPE_CHECKING:
    import numpy as np

    from lwprof.core.timing import LayerTiming
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.settings import RunSettings

# Inductor settings that change what is measured, recorded as the worker saw them.
RECORDED_CONFIG = ("freezing", "max_autotune", "cpp.cxx", "cpp.simdlen", "cpp_wrapper", "fx_graph_cache")
COMPILERS = ("g++", "c++", "clang++")


@register_backend
class InductorBackend(TorchBackend):
    """``torch.compile(module)`` (inductor) under ``torch.inference_mode``."""

    name = "inductor"
    package = "torch"
    install_hint = "pip install torch, and a C++ compiler (g++ or clang++) on PATH for inductor's CPU code"
    memory_view = "fused"  # inductor fuses element-wise chains into generated kernels
    default = False
    precisions = {
        "fp32": "torch.compile(module), inductor's defaults",
        "bf16": "a copy of the module and its input cast to torch.bfloat16, compiled",
    }
    unsupported_precisions = {
        "fp16": "inductor's CPU code has no fp16 vector kernels on most x86 CPUs; measure fp16 with --backend torch",
        "int8": "int8 on inductor needs torchao's PT2E flow (X86InductorQuantizer), which lwprof does not run yet",
    }

    def _device_problem(self, device: str) -> str | None:
        problem = super()._device_problem(device)
        if problem is None and device == "cpu" and not any(shutil.which(c) for c in COMPILERS):
            return "inductor generates C++ for the CPU and finds no compiler (g++, c++ or clang++) on PATH"
        if problem is None and device == "cuda":
            try:
                import triton  # noqa: F401
            except ImportError:
                return "inductor generates Triton kernels for CUDA and triton is not installed: pip install triton"
        return problem

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        self._check_kind(model)
        if model.module is None:
            from lwprof.runtime.backends import BackendSkipped

            raise BackendSkipped(f"{model.name} has no module to compile")
        return InductorSession(model.module, x, settings, model.source)


class InductorSession(TorchSession):
    """A :class:`TorchSession` whose module is ``torch.compile``'d; the first
    inference compiles, inside :meth:`Backend.prepare`."""

    backend = "inductor"

    def __init__(self, module: Any, x: "np.ndarray", settings: "RunSettings", source: str = ""):
        import torch
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        # Inductor's compiled-graph cache goes with lwprof's other caches unless the user chose
        # a folder of their own. torch writes its default into the environment the first time
        # anything asks for it (the counting engine's dispatch mode does, in the lwprof process
        # this worker inherits its environment from), so the default means "not chosen".
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, "", default_cache_dir()):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(settings.cache_dir / "inductor")
        cache = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        super().__init__(module, x, settings, source)

        self._original = self.module
        self.module = torch.compile(self.module)
        self.info["compiler"] = "torch.compile (inductor)"
        self.info["inductor_cache_dir"] = cache
        self._compiled = False

    def outputs(self) -> list["np.ndarray"]:
        if not self._compiled:
            started = time.perf_counter()
            result = super().outputs()
            self.info["compile_s"] = time.perf_counter() - started
            self.info["inductor_config"] = _inductor_config()
            self._compiled = True
            return result
        return super().outputs()

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        """Per-layer times from a second compile of the module with inductor's
        kernel profiling and provenance tracking on (the compile the
        end-to-end figure timed has neither): ``runs`` passes under
        ``torch.profiler``, each generated or extern kernel named after the
        layers its graph nodes came from."""
        import torch
        from torch.profiler import ProfilerActivity, profile

        from lwprof.runtime.backends._inductor_layers import graph_calls, kernel_layers, layer_rows, provenance_capture
        from lwprof.runtime.backends._layer_names import LayerNamer

        if runs < 1:
            raise ValueError("runs must be at least 1")
        if self.device != "cpu":
            raise LwprofError("inductor's per-layer times are read from its generated C++ kernels; on CUDA (Triton kernels) "
                              "lwprof gives its figure end to end only")
        torch._dynamo.reset()  # the compile below must not reuse the timed one's graphs
        started = time.perf_counter()
        with provenance_capture() as graphs:
            profiled = torch.compile(self._original)
            with torch.inference_mode():
                profiled(self.x)
        self.info["layer_compile_s"] = time.perf_counter() - started
        if not graphs:
            raise LwprofError("inductor reported no kernels for this model (nothing compiled); its figure is end to end only")
        namer = LayerNamer(self._original)
        kernels = [kernel_layers(graph, namer) for graph in graphs]
        with torch.inference_mode():
            profiled(self.x)
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                for _ in range(runs):
                    profiled(self.x)
        torch._dynamo.reset()  # the profiling compile's graphs are not reused by what runs next
        rows, notes = layer_rows(graph_calls(list(profiler.events())), graphs, kernels, runs)
        self.info["layer_mapping"] = notes
        return rows


def _inductor_config() -> dict[str, Any]:
    from torch._inductor import config

    values: dict[str, Any] = {}
    for key in RECORDED_CONFIG:
        value: Any = config
        try:
            for part in key.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        values[key] = value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
    return values
