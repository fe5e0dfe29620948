"""OpenVINO: the openvino backend (CPU plugin).

The model is the same ONNX file ONNX Runtime runs (exported once in the
lwprof process and cached; for int8 the same QDQ model ORT quantized), read
by ``ov.Core().read_model`` and compiled for the CPU with every setting that
changes a measurement given explicitly and recorded: the inference precision
(``INFERENCE_PRECISION_HINT``: f32 for fp32, bf16 for bf16; OpenVINO's own
default on a CPU with AVX-512 BF16 or AMX is bf16, so an unset hint would
measure bf16 and call it fp32), ``threads`` inference threads, one stream,
the latency hint. The compiled model's actual properties go into the run's
record.

Per layer: a second compiled model with ``PERF_COUNT`` on; each executed node
of ``get_profiling_info()`` is mapped to the ONNX nodes its runtime node
fused (the runtime model's ``originalLayersNames``) and through them to
lwprof's layer names. OpenVINO folds a BatchNormalization into the
convolution before it and renames the result (``Multiply_9130``); the
convolution is then found as the producer of the folded BatchNormalization's
input. ``real_time`` is in microseconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.core.timing import LayerTiming
from lwprof.runtime.backends import Backend, BackendSession, BackendSkipped, Staged, register_backend, session_timer
from lwprof.runtime.outputs import as_float_array

if TYPE_CHECKING:
    import numpy as np

    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.settings import RunSettings

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: the QDQ graph's int8 parts, f32 elsewhere
# lwprof precision -> the CPU plugin's OPTIMIZATION_CAPABILITIES entry it needs natively.
CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
WARMUP_RUNS = 3


@register_backend
class OpenVinoBackend(Backend):
    """OpenVINO's CPU plugin on the exported ONNX graph, every precision-changing setting explicit."""

    name = "openvino"
    package = "openvino"
    install_hint = "pip install openvino"
    devices = ("cpu",)
    memory_view = "fused"  # its CPU plugin fuses convolutions with their BatchNorm, activation and residual add
    precisions = {
        "fp32": "the exported graph with INFERENCE_PRECISION_HINT f32 (OpenVINO's default on a bf16 CPU is bf16)",
        "bf16": "the exported graph with INFERENCE_PRECISION_HINT bf16",
        "fp16": "the exported graph with INFERENCE_PRECISION_HINT f16",
        "int8": "the QDQ model ONNX Runtime's quantizer made (the same file), OpenVINO's int8 kernels where it has them",
    }

    def precision_problem(self, precision: str) -> str | None:
        problem = super().precision_problem(precision)
        if problem is not None or precision not in CAPABILITY or self._package_problem() is not None:
            return problem
        capabilities = cpu_capabilities()
        if CAPABILITY[precision] not in capabilities:
            # The plugin would run it anyway, emulated or in f32: not the precision asked for.
            return (f"openvino does not run {precision} natively on this CPU (its CPU plugin reports "
                    f"{', '.join(capabilities)}; {precision} needs {CAPABILITY[precision]})")
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> Staged:
        from dataclasses import replace

        from lwprof.runtime.backends import get_backend

        # The very file ONNX Runtime runs: one export (and one quantization) for both runtimes;
        # bf16 and fp16 are compile hints on the fp32 graph.
        fp32 = get_backend("onnxruntime").stage(model, input_shape, settings.but(precision="fp32"))
        info = {**fp32.info, "precision_hint": OV_PRECISION[settings.precision]}
        if settings.precision == "fp32":
            return Staged(fp32.model, info)
        fp32_path, record = Path(fp32.model.onnx_path), {}
        staged_model = fp32.model
        if settings.precision == "int8":
            # ORT's quantizer alone: what ORT's session then makes of the file (its float
            # layers, its agreement) is ORT's fact, not OpenVINO's, so it is not computed here.
            from lwprof.counting.onnx_count import analyze_onnx
            from lwprof.runtime.backends._ort_quantize import quantized_onnx
            from lwprof.runtime.precision import analytic_record

            try:
                path, record = quantized_onnx(fp32_path, tuple(input_shape), settings.int8, Path(settings.cache_dir))
                record["analytic"] = analytic_record(analyze_onnx(path, input_shape=tuple(input_shape), optimized=True),
                                                     "ONNX Runtime's optimized int8 graph (OpenVINO's own fusions are not counted)")
            except LwprofError as exc:
                raise BackendSkipped(str(exc)) from None
            staged_model = replace(fp32.model, onnx_path=path, precision="int8")
        record["method"] = self.precisions[settings.precision]
        record["agreement"] = _isolated_agreement(fp32_path, Path(staged_model.onnx_path), input_shape, settings)
        info.update(precision=settings.precision, quantization=record)
        return Staged(staged_model, info)

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        wanted = "int8" if settings.precision == "int8" else "fp32"
        staged = self.stage(model, x.shape, settings) if model.kind != "onnx" or model.precision != wanted else None
        onnx_path = Path((staged.model if staged else model).onnx_path)
        return OpenVinoSession(onnx_path, x, settings, staged.info if staged else {})

    def peak_kernels(self, settings: "RunSettings") -> tuple[dict[str, Any], dict[str, Any]]:
        import numpy as np
        import openvino as ov
        from openvino import opset13 as ops

        from lwprof.runtime.measure import COPY_BYTES, GEMM_SIZE, HostTimer, ceiling, time_kernel

        n, copy_bytes = GEMM_SIZE["cpu"], COPY_BYTES["cpu"]
        generator = np.random.default_rng(0)
        core = ov.Core()
        config = _config(settings, perf_count=False)

        def compiled(build: Any) -> Any:
            parameter = ops.parameter(build[0], np.float32, name="x")
            return core.compile_model(ov.Model([build[1](parameter)], [parameter]), "CPU", config)

        weight = ops.constant(generator.standard_normal((n, n)).astype(np.float32))
        gemm_model = compiled(([n, n], lambda p: ops.matmul(p, weight, False, False)))
        x = generator.standard_normal((n, n)).astype(np.float32)
        gemm_request = gemm_model.create_infer_request()
        # Shared input and output memory: only the kernel is timed, not a copy of its 16-256 MiB operands.
        gemm = time_kernel(lambda: gemm_request.infer({0: x}, share_inputs=True, share_outputs=True), settings.budget, HostTimer())
        elements = copy_bytes // 4
        copy_model = compiled(([elements], lambda p: ops.negative(p)))
        source = generator.standard_normal(elements).astype(np.float32)
        copy_request = copy_model.create_infer_request()
        copy = time_kernel(lambda: copy_request.infer({0: source}, share_inputs=True, share_outputs=True), settings.budget, HostTimer())
        hint = OV_PRECISION.get(settings.precision, "f32")
        return (
            ceiling(gemm, kernel=f"MatMul {n}x{n} (precision hint {hint})", size=n, flops=2 * n**3),
            ceiling(copy, kernel=f"Negative over {copy_bytes // 2**20} MiB fp32", bytes=2 * copy_bytes),
        )


def cpu_capabilities() -> list[str]:
    """What the CPU plugin says it runs natively here (FP32, BF16, FP16, INT8, ...)."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _isolated_agreement(fp32_path: Path, path: Path, input_shape: Sequence[int], settings: "RunSettings") -> dict[str, Any]:
    """:func:`_agreement` in a process of its own: OpenVINO's compiler can
    crash the process on a graph it mishandles (it does on CondenseNet's int8
    QDQ file), and that must cost this backend's figure, not the lwprof run."""
    return in_own_process(path.name, _agreement, fp32_path, path, tuple(input_shape), settings)


def in_own_process(model_file: str, function: Any, *args: Any) -> Any:
    """``function(*args)`` in a fresh process; its death or an OpenVINO error
    there is a :class:`BackendSkipped` naming ``model_file``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(function, *args).result()
    except BrokenProcessPool:
        raise BackendSkipped(f"OpenVINO crashed compiling {model_file} (its process died)") from None
    except Exception as exc:
        raise BackendSkipped(f"OpenVINO cannot compile {model_file}: {_compile_error(exc)}") from None


def _agreement(fp32_path: Path, path: Path, input_shape: Sequence[int], settings: "RunSettings") -> dict[str, Any]:
    """OpenVINO's outputs in ``settings.precision`` (``path`` with its hint)
    against its fp32 outputs of ``fp32_path`` on the calibration inputs."""
    import openvino as ov

    from lwprof.runtime.precision import agreement, calibration_inputs

    core = ov.Core()
    inputs = calibration_inputs(settings.int8, input_shape)
    outputs = []
    for file, precision in ((fp32_path, "fp32"), (path, settings.precision)):
        compiled = core.compile_model(core.read_model(str(file)), "CPU", _config(settings.but(precision=precision), perf_count=False))
        request = compiled.create_infer_request()
        outputs.append([[as_float_array(request.infer({0: x})[out].copy()) for out in compiled.outputs] for x in inputs])
    return agreement(outputs[0], outputs[1]).to_dict()


def _compile_error(exc: Exception) -> str:
    """The line of an OpenVINO exception that says what failed: its messages
    start with the C++ source location that raised, not with the reason."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    for line in lines:
        if line.startswith("Conversion is failed for:"):
            return line
    useful = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    return one_line(useful[0] if useful else exc)


def _config(settings: "RunSettings", perf_count: bool) -> dict[str, Any]:
    return {
        "INFERENCE_PRECISION_HINT": OV_PRECISION.get(settings.precision, "f32"),
        "INFERENCE_NUM_THREADS": settings.threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": perf_count,
    }


RECORDED_PROPERTIES = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT",
                       "ENABLE_HYPER_THREADING", "ENABLE_CPU_PINNING", "EXECUTION_MODE_HINT")


class OpenVinoSession(BackendSession):
    backend = "openvino"

    def __init__(self, onnx_path: Path, x: "np.ndarray", settings: "RunSettings", stage_info: dict[str, Any]):
        import openvino as ov

        self.device = "cpu"
        self.timer = session_timer("cpu")
        self.onnx_path = onnx_path
        self.settings = settings
        self.core = ov.Core()
        try:
            self.compiled = self.core.compile_model(self.core.read_model(str(onnx_path)), "CPU", _config(settings, perf_count=False))
        except Exception as exc:
            raise BackendSkipped(f"OpenVINO cannot compile {onnx_path.name}: {_compile_error(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.x = x.astype("float32", copy=False)
        properties = {}
        for key in RECORDED_PROPERTIES:
            try:
                value = self.compiled.get_property(key)
                properties[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
            except Exception:  # a property this version does not report
                continue
        self.info = {
            "openvino_version": ov.__version__,
            "device": "CPU",
            "requested": {k: str(v) for k, v in _config(settings, perf_count=False).items()},
            "compiled_properties": properties,
            "onnx_path": str(onnx_path),
            "input_shape": list(x.shape),
            **stage_info,
        }

    def run(self) -> None:
        self.request.infer({0: self.x})

    def outputs(self) -> list["np.ndarray"]:
        self.request.infer({0: self.x})
        return [as_float_array(self.request.get_output_tensor(i).data.copy()) for i in range(len(self.compiled.outputs))]

    def layer_timings(self, runs: int) -> list[LayerTiming]:
        return layer_timings(self.core, self.onnx_path, self.x, self.settings, runs)

    def close(self) -> None:
        self.request = None
        self.compiled = None


def layer_timings(core: Any, onnx_path: Path, x: "np.ndarray", settings: "RunSettings", runs: int) -> list[LayerTiming]:
    """Per-layer OpenVINO CPU times over ``runs`` inferences (after a warm-up),
    rows named by lwprof layer, one per executed runtime node (fused nodes
    cover several layers), in execution order."""
    if runs < 1:
        raise LwprofError(f"need at least one timed run, got {runs}")
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", _config(settings, perf_count=True))
    request = compiled.create_infer_request()
    names, layer_of = _runtime_layers(compiled, onnx_path)
    for _ in range(WARMUP_RUNS):
        request.infer({0: x})
    samples: dict[str, list[float]] = {}
    ops: dict[str, set[str]] = {}
    covers: dict[str, tuple[str, ...]] = {}
    for _ in range(runs):
        request.infer({0: x})
        per_row: dict[str, float] = {}
        for item in request.get_profiling_info():
            if str(item.status) != "Status.EXECUTED":
                continue
            layers = names.get(item.node_name) or (_unmapped_row(item.node_name, item.node_type, names, layer_of),)
            per_row[layers[0]] = per_row.get(layers[0], 0.0) + item.real_time.total_seconds()
            ops.setdefault(layers[0], set()).add(item.node_type)
            covers.setdefault(layers[0], layers if len(layers) > 1 else ())
        for row, seconds in per_row.items():
            samples.setdefault(row, []).append(seconds)
    return [LayerTiming(row, tuple(values) + (0.0,) * (runs - len(values)), covers[row], tuple(sorted(ops[row])))
            for row, values in samples.items()]


# A layout conversion's name: <tensor>_<from>_<to>_<consumer>, layouts in oneDNN's tags (abcd, acdb, aBcd16b),
# either left empty when it only changes the precision.
_LAYOUT = re.compile(r"_(?:[a-fA-F0-9]{3,})?_(?:[a-fA-F0-9]{3,})?_")
_CONVERSIONS = {"Reorder": "reorder", "Convert": "cast", "FakeQuantize": "quantize"}
_CONVOLUTIONS = {"Convolution", "GroupConvolution"}
# Runtime node type -> the ONNX op types one of its fused nodes computes with.
_COMPUTES = {"Convolution": {"Conv"}, "GroupConvolution": {"Conv"}, "FullyConnected": {"MatMul", "Gemm"}}


def _unmapped_row(node_name: str, node_type: str, runtime: dict[str, tuple[str, ...]], layer_of: dict[str, str]) -> str:
    """A row for a runtime node that fuses no ONNX node (a layout Reorder, a
    precision Convert): ``<layer> (reorder)``, after the node it feeds or the
    ONNX node its name starts with; the graph's ``input``/``output`` keep
    their names."""
    kind = _CONVERSIONS.get(node_type, node_type.lower())
    parts = _LAYOUT.split(node_name, maxsplit=1)
    for candidate in reversed(parts):
        base = candidate.removesuffix("/WithoutBiases")
        if candidate in runtime:
            return f"{runtime[candidate][0]} ({kind})"
        if base in layer_of:
            return f"{layer_of[base]} ({kind})"
    return f"{parts[0]} ({kind})"


def _runtime_layers(compiled: Any, onnx_path: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Runtime node name -> the lwprof layers of the ONNX nodes it executes,
    and ONNX node name -> its layer."""
    from lwprof.counting.onnx_graph import load_onnx
    from lwprof.counting.onnx_scopes import node_scopes

    graph = load_onnx(onnx_path, external_data=False)
    nodes = list(graph.graph.node)
    layer_of = {node.name: scope.layer_name(node.op_type) for node, scope in zip(nodes, node_scopes(graph)) if node.name}
    producer = {output: node for node in nodes for output in node.output}
    by_name = {node.name: node for node in nodes if node.name}
    tensor_layer = {output: layer_of[node.name] for node in nodes if node.name in layer_of for output in node.output}
    ordered = list(compiled.get_runtime_model().get_ordered_ops())
    mapping: dict[str, tuple[str, ...]] = {}
    orphans: list[str] = []
    unnamed: list[Any] = []
    for op in ordered:
        info = op.get_rt_info()
        kind = str(info["layerType"].astype(str)) if "layerType" in info else ""
        if "originalLayersNames" not in info or kind in _NOT_LAYERS:
            continue
        # OpenVINO splits a bias off a convolution or Gemm and appends this to its name.
        original = [name.removesuffix("/WithoutBiases") for name in str(info["originalLayersNames"].astype(str)).split(",") if name]
        found: list[str] = []
        for name in original:
            node = by_name.get(name)
            if node is not None and node.op_type == "BatchNormalization" and node.input:
                # OpenVINO folded this BatchNormalization into the convolution that feeds it.
                source = producer.get(node.input[0])
                if source is not None and source.name in layer_of:
                    found.append(layer_of[source.name])
            if name in layer_of:
                found.append(layer_of[name])
            elif name in tensor_layer:  # a node OpenVINO named after its output tensor (the last Gemm: "output")
                found.append(tensor_layer[name])
        known = [by_name[name] for name in original if name in by_name]
        computes = _COMPUTES.get(kind, set())
        if computes and known and not any(node.op_type in computes for node in known):
            # The computing node folded into what follows it: Conv+BN into "Multiply_N" with its
            # activation kept by name, a Linear into the layer scale after it (EfficientFormer's
            # ls2/Mul). The convolution or matmul is what feeds that node.
            found = _back_to(known[0], computes, producer, layer_of) + found
        layers = tuple(dict.fromkeys(found))
        if layers:
            mapping[op.get_friendly_name()] = layers
        elif kind in _CONVOLUTIONS:
            orphans.append(op.get_friendly_name())
        else:
            unnamed.append(op)
    # A convolution whose BatchNorm OpenVINO folded leaves no ONNX name behind at all
    # (``Multiply_3643``): such convolutions run in graph order, so they take the
    # ONNX convolutions no runtime node named, in order.
    claimed = {layer for layers in mapping.values() for layer in layers}
    unclaimed = [layer_of[n.name] for n in nodes if n.op_type == "Conv" and n.name in layer_of and layer_of[n.name] not in claimed]
    consumer = {name: node for node in nodes for name in node.input[:1]}
    conv_of = {layer_of[n.name]: n for n in nodes if n.op_type == "Conv" and n.name in layer_of}
    for name, layer in zip(orphans, unclaimed):
        after = consumer.get(conv_of[layer].output[0])
        folded = (layer_of[after.name],) if after is not None and after.op_type == "BatchNormalization" else ()
        mapping[name] = (layer, *folded)
        claimed.update(mapping[name])
    _name_from_neighbours(unnamed, mapping, claimed, nodes, by_name, layer_of)
    return mapping, layer_of


def _name_from_neighbours(unnamed: list[Any], mapping: dict[str, tuple[str, ...]], claimed: set[str], nodes: list[Any],
                          by_name: dict[str, Any], layer_of: dict[str, str]) -> None:
    """Name the runtime nodes OpenVINO made up (``VariadicSplit_N`` for a
    Split, ``MVN_N`` for a LayerNormalization, ``Multiply_N`` subgraphs) by
    the graph around them: the ONNX node that consumes what feeds it and that
    no runtime node named yet, else the row of the node feeding it (a
    LayerNorm's scale and shift join its MVN). In execution order, so chains
    of such nodes resolve."""
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    nodes_of: dict[str, list[Any]] = {}
    for node in nodes:
        if node.name in layer_of:
            nodes_of.setdefault(layer_of[node.name], []).append(node)
    for op in unnamed:
        sources = [value.get_source_output().get_node() for value in op.inputs()]
        sources = [source for source in sources if source.get_type_name() != "Constant"]
        if not sources:
            continue
        source = sources[0].get_friendly_name()
        onnx_sources = [by_name[source]] if source in by_name else [n for layer in mapping.get(source, ()) for n in nodes_of.get(layer, ())]
        candidates = [node for onnx_source in onnx_sources for tensor in onnx_source.output for node in consumers.get(tensor, ())
                      if node.name in layer_of and layer_of[node.name] not in claimed]
        if candidates:
            mapping[op.get_friendly_name()] = (layer_of[candidates[0].name],)
            claimed.add(layer_of[candidates[0].name])
        elif source in mapping:
            mapping[op.get_friendly_name()] = mapping[source][:1]


_NOT_LAYERS = {"Const", "Input", "Parameter", "Output", "Result"}
_CONSTANTS = {"Constant", "Identity"}


def _back_to(node: Any, computes: set[str], producer: dict[str, Any], layer_of: dict[str, str], depth: int = 3) -> list[str]:
    """The layers from the node of a ``computes`` type (Conv; MatMul, Gemm)
    feeding ``node`` (through at most ``depth`` nodes, a BatchNormalization
    say) up to just before it."""
    chain: list[str] = []
    for _ in range(depth):
        # The first input computed from the model's input: a layer scale's Mul and a Linear's bias
        # Add take their constant through an Identity, in either position.
        source = next((producer[t] for t in node.input if t in producer and producer[t].op_type not in _CONSTANTS), None)
        if source is None or source.name not in layer_of:
            return []
        chain.append(layer_of[source.name])
        if source.op_type in computes:
            return chain[::-1]
        node = source
    return []
