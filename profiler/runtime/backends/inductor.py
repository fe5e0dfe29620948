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
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.runtime.backends import BackendSession, BackendSkipped, Staged, register_backend
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
        "int8": "torchao PT2E: torch.export, X86InductorQuantizer's default static config (uint8 activations, int8 "
                "weights per channel) calibrated, convert_pt2e, then torch.compile with freezing on (torchao's recipe: "
                "without freezing inductor keeps dequantize -> float kernels)",
    }
    unsupported_precisions = {
        "fp16": "inductor's CPU code has no fp16 vector kernels on most x86 CPUs; measure fp16 with --backend torch",
    }

    def precision_problem(self, precision: str) -> str | None:
        problem = super().precision_problem(precision)
        if problem is None and precision == "int8":
            try:
                import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
            except ImportError as exc:
                return (f"inductor int8 needs torchao's PT2E flow and torchao is not importable ({one_line(exc)}): "
                        "pip install torchao (or make setup EXTRAS=executorch, which pins it)")
        return problem

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> "Staged":
        if settings.precision != "int8":
            return super().stage(model, input_shape, settings)
        self._check_kind(model)
        problem = self.precision_problem(settings.precision)
        if problem is not None:
            raise BackendSkipped(problem)
        # Quantizing makes a GraphModule, which does not travel: the worker quantizes (its
        # time is preparation) and measures how the int8 outputs agree with fp32's.
        return Staged(model.portable())

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

        self._layer_names_of = self.module  # the float module: its tree names the layers
        self._config: dict[str, Any] = {}  # inductor settings the precision's recipe sets
        self._original = self.module
        if settings.precision == "int8":
            started = time.perf_counter()
            self._original, self._calibration = _x86_int8(self.module, self.x, settings)
            self._config = {"freezing": True}
            self.info["quantize_s"] = time.perf_counter() - started
        self.module = torch.compile(self._original)
        self.info["compiler"] = "torch.compile (inductor)"
        self.info["inductor_cache_dir"] = cache
        self._compiled = False

    def outputs(self) -> list["np.ndarray"]:
        if not self._compiled:
            from torch._inductor import config

            started = time.perf_counter()
            with config.patch(self._config):
                result = super().outputs()
                self.info["inductor_config"] = _inductor_config()
            self.info["compile_s"] = time.perf_counter() - started
            self._compiled = True
            if self._config:
                self.info["inductor_config_set_by_precision"] = dict(self._config)
            if getattr(self, "_calibration", None) is not None:
                self.info["quantization"] = self._int8_record()
            return result
        return super().outputs()

    def _int8_record(self) -> dict[str, Any]:
        """How the int8 module was made, and how the compiled int8 outputs agree
        with the float module's (eager) on the calibration inputs."""
        import torch

        from lwprof.runtime.outputs import as_float_array, flatten_outputs
        from lwprof.runtime.precision import agreement

        inputs, recipe = self._calibration
        outputs: list[list[list[Any]]] = [[], []]
        with torch.inference_mode():
            for array in inputs:
                tensor = torch.from_numpy(array)
                for side, module in enumerate((self._layer_names_of, self.module)):
                    outputs[side].append([as_float_array(t) for t in flatten_outputs(module(tensor), torch.Tensor)])
        return {"method": InductorBackend.precisions["int8"], "quantizer": "X86InductorQuantizer, "
                "get_default_x86_inductor_quantization_config()",
                "scheme": "u8s8 (X86InductorQuantizer's static config; --int8-scheme and --per-tensor apply to ONNX Runtime)",
                "calibration": f"{len(inputs)} inputs (the int8 recipe's)", "recipe": recipe,
                "agreement": agreement(*outputs).to_dict()}

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        """Per-layer times from a second compile of the module with inductor's
        kernel profiling and provenance tracking on (the compile the
        end-to-end figure timed has neither): ``runs`` passes under
        ``torch.profiler``, each generated or extern kernel named after the
        layers its graph nodes came from."""
        import torch
        from torch._inductor import config
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
        with config.patch(self._config), provenance_capture() as graphs:
            profiled = torch.compile(self._original)
            with torch.inference_mode():
                profiled(self.x)
        self.info["layer_compile_s"] = time.perf_counter() - started
        if not graphs:
            raise LwprofError("inductor reported no kernels for this model (nothing compiled); its figure is end to end only")
        namer = LayerNamer(self._layer_names_of)
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


def _x86_int8(module: Any, x: Any, settings: "RunSettings") -> tuple[Any, tuple[list[Any], dict[str, Any]]]:
    """``module`` through torchao's PT2E flow with X86InductorQuantizer,
    calibrated on the int8 recipe's inputs; the converted module, and those
    inputs with the recipe as recorded."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    from lwprof.runtime.precision import calibration_inputs

    inputs = calibration_inputs(settings.int8, tuple(x.shape))
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(module, (x,)).module(), quantizer)
        for array in inputs:
            prepared(torch.from_numpy(array))
        converted = move_exported_model_to_eval(convert_pt2e(prepared))
    recipe = {"calibration_inputs": len(inputs), "calibration_dir": str(settings.int8.calibration_dir or "")}
    return converted, (inputs, recipe)


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
