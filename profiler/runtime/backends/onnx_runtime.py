"""ONNX Runtime: the onnxruntime backend.

A session like the plain ``session.run`` loop a user would write: all graph
optimizations, sequential execution, ``threads`` intra-op threads, one
inter-op thread. A PyTorch model is exported once, in the lwprof process
(:meth:`OnnxRuntimeBackend.stage`, cached by :mod:`lwprof.runtime.export_cache`);
its worker process opens the file and never loads torch. Per layer, the
runtime's profiler gives each executed node's kernel time and
:mod:`lwprof.runtime.backends._ort_layers` maps the nodes back to layer names.
ONNX Runtime's ``session.run`` with numpy inputs and outputs returns only when
its outputs are on the host, so on CUDA the event timer measures the whole
call.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.text import one_line
from lwprof.counting.onnx_graph import session_options
from lwprof.runtime.backends import Backend, BackendSession, BackendSkipped, Staged, register_backend, session_timer
from lwprof.runtime.backends._ort_layers import layer_timings
from lwprof.runtime.export_cache import ExportFailed, cached_onnx_export
from lwprof.runtime.outputs import as_float_array, flatten_outputs

if TYPE_CHECKING:
    import numpy as np

    from lwprof.core.timing import LayerTiming
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.measure import Budget
    from lwprof.runtime.settings import RunSettings

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
GRAPH_OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"
# ONNX tensor element types a numpy input can be fed as.
_ONNX_INPUT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def providers_for(device: str) -> list[str]:
    return [CUDA_PROVIDER, CPU_PROVIDER] if device == "cuda" else [CPU_PROVIDER]


@register_backend
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: a session like the plain ``session.run`` loop a user would
    write (all graph optimizations, sequential execution, ``threads`` intra-op
    threads, one inter-op thread)."""

    name = "onnxruntime"
    package = "onnxruntime"
    install_hint = "pip install onnxruntime (onnxruntime-gpu for CUDA)"
    memory_view = "fused"  # its fused kernels keep intermediate tensors out of memory
    default = True
    precisions = {
        "fp32": "the exported graph as it is",
        "int8": "static QDQ quantization (onnxruntime.quantization.quantize_static after quant_pre_process), "
                "int8 kernels where ORT's optimizer fuses them",
        "fp16": "the graph converted to fp16 (onnxruntime.transformers.float16, inputs and outputs kept fp32); what the "
                "provider has no fp16 kernel for runs in fp32 through casts ORT inserts, shown as layers",
    }
    unsupported_precisions = {
        "bf16": "ONNX Runtime's CPU provider has no bf16 convolution kernels",
    }

    def runtime_version(self) -> str:
        from lwprof.runtime.environment import package_version

        return package_version("onnxruntime", "onnxruntime-gpu")

    def _device_problem(self, device: str) -> str | None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda" and CUDA_PROVIDER not in available:
            return (
                f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (providers: {', '.join(available)}): "
                "pip install onnxruntime-gpu in place of onnxruntime"
            )
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> Staged:
        shape = tuple(int(d) for d in input_shape)
        if model.kind == "onnx":
            staged = Staged(model, {"exported": False, "export_cached": None, "export_s": 0.0})
        elif model.module is None:
            raise BackendSkipped(f"{model.name} has neither a module nor an ONNX file")
        else:
            try:
                export = cached_onnx_export(model.module, model.name, shape, Path(settings.cache_dir))
            except ExportFailed as exc:
                raise BackendSkipped(str(exc)) from None
            exported = replace(model, kind="onnx", module=None, onnx_path=export.path, input_shape=shape)
            staged = Staged(exported, {"exported": True, "export_cached": export.cached, "export_s": export.export_s})
        if settings.precision == staged.model.precision:
            return staged
        problem = self.precision_problem(settings.precision)
        if problem is not None:
            raise BackendSkipped(problem)
        return self._quantized(staged, shape, settings)

    def _quantized(self, staged: Staged, shape: tuple[int, ...], settings: "RunSettings") -> Staged:
        """The int8 (or fp16) model of a staged fp32 one, what ORT runs of it in
        that precision, its counts, and how its outputs agree with fp32's on the
        calibration inputs."""
        from lwprof.core.errors import LwprofError
        from lwprof.counting.onnx_count import analyze_onnx
        from lwprof.runtime.backends._ort_quantize import half_onnx, half_report, precision_report, quantized_onnx
        from lwprof.runtime.precision import analytic_record

        fp32_path = Path(staged.model.onnx_path)
        try:
            providers = providers_for(settings.device)
            if settings.precision == "fp16":
                path, record = half_onnx(fp32_path, Path(settings.cache_dir))
                record["layers"] = half_report(path, settings.threads, providers)
            else:
                path, record = quantized_onnx(fp32_path, shape, settings.int8, Path(settings.cache_dir))
                record["layers"] = precision_report(path, settings.threads, providers)
            record["agreement"] = _agreement(fp32_path, path, shape, settings).to_dict()
            record["analytic"] = analytic_record(analyze_onnx(path, input_shape=shape, optimized=True),
                                                 f"ONNX Runtime's optimized {settings.precision} graph (its kernels and conversions)")
        except LwprofError as exc:
            raise BackendSkipped(str(exc)) from None
        model = replace(staged.model, onnx_path=path, precision=settings.precision)
        return Staged(model, {**staged.info, "precision": settings.precision, "quantization": record})

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        staged = self.stage(model, x.shape, settings)  # a torch model opened here directly is exported (and quantized) first
        if staged.model.onnx_path is None:
            raise BackendSkipped(f"{model.name} names no ONNX file")
        return OnnxRuntimeSession(Path(staged.model.onnx_path), x, settings, staged.info)

    def peak_kernels(self, settings: "RunSettings") -> tuple[dict[str, Any], dict[str, Any]]:
        return _peak_kernels(settings.device, settings.threads, settings.budget, settings.precision)


class OnnxRuntimeSession(BackendSession):
    backend = "onnxruntime"

    def __init__(self, onnx_path: Path, x: "np.ndarray", settings: "RunSettings", export_info: dict[str, Any]):
        import onnxruntime as ort

        device, threads = settings.device, settings.threads
        self.device = device
        self.timer = session_timer(device)
        self.onnx_path = Path(onnx_path)
        self.threads = threads
        self.providers = providers_for(device)
        options = session_options(threads=threads, level=GRAPH_OPTIMIZATION_LEVEL)
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=self.providers)
        except Exception as exc:
            raise BackendSkipped(f"ONNX Runtime cannot load {self.onnx_path}: {one_line(exc)}") from None
        used = self.session.get_providers()
        if device == "cuda" and (not used or used[0] != CUDA_PROVIDER):
            raise BackendSkipped(
                f"ONNX Runtime fell back to {', '.join(used)}: {CUDA_PROVIDER} did not load (CUDA or cuDNN libraries missing?)"
            )
        input_name, self.input_dtype = self._graph_input(x)
        self.feed = {input_name: x.astype(self.input_dtype, copy=False)}
        self.info = {
            "onnxruntime_version": ort.__version__,
            "threads": {"intra_op": threads, "inter_op": 1},
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": GRAPH_OPTIMIZATION_LEVEL,
            "providers": list(used),
            "requested_providers": list(self.providers),
            "onnx_path": str(self.onnx_path),
            "input_name": input_name,
            "dtype": self.input_dtype,
            "input_shape": list(x.shape),
            **export_info,
        }

    def _graph_input(self, x: "np.ndarray") -> tuple[str, str]:
        """The graph's one input (name, numpy dtype), checked against ``x`` so a
        mismatch is a clear reason rather than a runtime error."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise BackendSkipped(f"{self.onnx_path.name} has {len(inputs)} inputs ({names}); lwprof feeds exactly one")
        graph_input = inputs[0]
        dtype = _ONNX_INPUT_DTYPES.get(graph_input.type)
        if dtype is None:
            raise BackendSkipped(f"{self.onnx_path.name} takes {graph_input.type}; lwprof feeds float32, float16 or float64")
        dims = list(graph_input.shape or [])
        matches = len(dims) == x.ndim and all(not isinstance(d, int) or d == n for d, n in zip(dims, x.shape))
        if not matches:
            wanted = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
            given = "x".join(map(str, x.shape))
            raise BackendSkipped(f"{self.onnx_path.name} takes input {wanted}, not {given}: pass a matching --input-shape")
        return graph_input.name, dtype

    def run(self) -> None:
        self.session.run(None, self.feed)

    def outputs(self) -> list["np.ndarray"]:
        import numpy as np

        arrays = []
        for value in flatten_outputs(self.session.run(None, self.feed), np.ndarray):
            arrays.append(as_float_array(value))
        return arrays

    def layer_timings(self, runs: int) -> list["LayerTiming"]:
        return layer_timings(self.onnx_path, self.feed, self.threads, self.providers, runs, self.onnx_path)

    def close(self) -> None:
        self.session = None  # frees the runtime's memory; the session cannot run after this


def _agreement(fp32_path: Path, other_path: Path, shape: Sequence[int], settings: "RunSettings") -> Any:
    """Outputs of ``other_path`` against ``fp32_path``'s on the calibration inputs."""
    import onnxruntime as ort

    from lwprof.runtime.precision import agreement, calibration_inputs

    options = session_options(threads=settings.threads, level=GRAPH_OPTIMIZATION_LEVEL)
    providers = providers_for(settings.device)
    inputs = calibration_inputs(settings.int8, shape)
    outputs = []
    for path in (fp32_path, other_path):
        session = ort.InferenceSession(str(path), options, providers=providers)
        name = session.get_inputs()[0].name
        outputs.append([[as_float_array(o) for o in session.run(None, {name: x})] for x in inputs])
    return agreement(outputs[0], outputs[1])


def _peak_kernels(device: str, threads: int, budget: "Budget", precision: str = "fp32") -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lwprof.runtime.measure import COPY_BYTES, GEMM_SIZE, HostTimer, ceiling, time_kernel

    providers = providers_for(device)
    # Graph optimizations as a default session has them: a MatMul and a Neg are left as they are.
    options = session_options(threads=threads, level="ORT_ENABLE_ALL")
    generator = np.random.default_rng(0)

    def session(graph: Any) -> Any:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)

    n = GEMM_SIZE[device]
    if precision == "int8":
        # The kernel of QLinearConv/QGemm: uint8 activations x int8 weights, int32 accumulation (VNNI on x86).
        weight = numpy_helper.from_array(generator.integers(-127, 128, (n, n)).astype(np.int8), "w")
        gemm_graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
            "gemm_int8",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
            [weight],
        )
        x = generator.integers(0, 256, (n, n)).astype(np.uint8)
        output_type, kernel = np.int32, f"MatMulInteger {n}x{n} u8s8"
    else:  # fp32, or fp16 (which the CPU provider may run through its fp32 kernel: the roof says what it reaches)
        numpy_type, onnx_type = (np.float16, TensorProto.FLOAT16) if precision == "fp16" else (np.float32, TensorProto.FLOAT)
        weight = numpy_helper.from_array(generator.standard_normal((n, n)).astype(numpy_type), "w")
        gemm_graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "gemm",
            [helper.make_tensor_value_info("x", onnx_type, [n, n])],
            [helper.make_tensor_value_info("y", onnx_type, [n, n])],
            [weight],
        )
        x = generator.standard_normal((n, n)).astype(numpy_type)
        output_type, kernel = numpy_type, f"MatMul {n}x{n} {precision}"
    gemm = time_kernel(_bound_run(session(gemm_graph), {"x": x}, "y", device, output_type), budget, HostTimer())

    # Not Identity: whether it copies or aliases its input is up to the graph
    # optimizer and the runtime version. Neg must read and write every element,
    # with one trivial op per element, so it runs at memory speed (on this
    # project's 2-core CPU it ran within 20% of an Identity that did copy).
    elements = COPY_BYTES[device] // 4
    copy_graph = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["b"])],
        "copy",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [elements])],
    )
    source = generator.standard_normal(elements).astype(np.float32)
    copy = time_kernel(_bound_run(session(copy_graph), {"a": source}, "b", device), budget, HostTimer())
    return (
        ceiling(gemm, kernel=kernel, size=n, flops=2 * n**3),  # integer multiply-adds count as FLOPs
        ceiling(copy, kernel=f"Neg over {COPY_BYTES[device] // 2**20} MiB fp32", bytes=2 * COPY_BYTES[device]),
    )


def _bound_run(session: Any, inputs: dict[str, Any], output_name: str, device: str, output_type: Any = None) -> Any:
    """A run whose input and output live on the device, preallocated once, so
    only the kernel is timed: no allocation per run, and on CUDA no copy over
    PCIe (an output left unbound would come back to the host every run)."""
    import numpy as np
    import onnxruntime as ort

    binding = session.io_binding()
    # Held by the closure: a CPU OrtValue borrows its numpy array's memory.
    values = {name: ort.OrtValue.ortvalue_from_numpy(array, device, 0) for name, array in inputs.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    (output,) = [o for o in session.get_outputs() if o.name == output_name]
    values[output_name] = ort.OrtValue.ortvalue_from_shape_and_type(output.shape, output_type or np.float32, device, 0)
    binding.bind_ortvalue_output(output_name, values[output_name])

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # a no-op on the CPU; waits for the GPU's stream on CUDA

    run.bound_values = values  # type: ignore[attr-defined]  # the buffers live as long as the run
    return run
