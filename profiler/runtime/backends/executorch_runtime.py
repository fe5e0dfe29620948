"""ExecuTorch with the XNNPACK delegate: the executorch backend (CPU).

The PyTorch mobile runtime, with the XNNPACK kernels phones run. The model
is exported in the lwprof process the way ExecuTorch's docs do it:
``torch.export.export`` -> ``to_edge_transform_and_lower(partitioner=
[XnnpackPartitioner()])`` -> ``to_executorch()``, and the ``.pte`` program is
cached per model fingerprint, input shape, precision, torch and executorch
version (the export takes 10-30 s; it is preparation, shown apart from
measurement). What the partitioner left outside XNNPACK runs on ExecuTorch's
portable kernels, one instruction each: every such op is listed in the run
with its layer, the first thing an XNNPACK user needs to see.

The worker loads the program with ``executorch.runtime`` and times
``Method.execute`` on the fixed input. XNNPACK's thread pool is set to
``threads`` (``_unsafe_reset_threadpool``, before anything runs; ExecuTorch's
own default is its count of performance cores) and both counts are recorded.

Per layer: the program is loaded again with ETDump profiling on, and
:class:`executorch.devtools.Inspector` reads each XNNPACK operator's and each
portable instruction's time. A portable instruction is named through the
program's debug handle map (instruction -> graph node -> module stack),
recorded at export. XNNPACK operators carry only their
own names; :mod:`lwprof.runtime.backends._xnnpack_graph` matches them to the
delegate's serialized nodes, whose debug handles name the layers (a
BatchNorm folded into its convolution, an activation fused into its output
range: ``fused_layers``). Transposes XNNPACK adds between NCHW and NHWC are
rows of their own, ``<layer> (layout)``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line
from lwprof.core.timing import LayerTiming
from lwprof.runtime.backends import Backend, BackendSession, BackendSkipped, Staged, register_backend, session_timer
from lwprof.runtime.backends._executorch_export import Quantization, cached_program, lower_to_xnnpack
from lwprof.runtime.backends._xnnpack_graph import LAYOUT_OPERATORS, XNode, align, operator_head, operator_kind
from lwprof.runtime.outputs import as_float_array, flatten_outputs

if TYPE_CHECKING:
    import numpy as np

    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.settings import RunSettings

WARMUP_RUNS = 3


@register_backend
class ExecuTorchBackend(Backend):
    """ExecuTorch's runtime on a program lowered to XNNPACK."""

    name = "executorch"
    package = "executorch"
    install_hint = ("pip install 'lwprof[executorch]' (executorch links libtorch: its version must match torch's, "
                    "executorch 1.5.1 for torch 2.13)")
    devices = ("cpu",)
    memory_view = "fused"  # XNNPACK folds BatchNorms and runs activations in its convolutions' output range
    precisions = {
        "fp32": "torch.export, to_edge_transform_and_lower with XnnpackPartitioner(), to_executorch; XNNPACK's fp32 kernels",
        "int8": "torchao PT2E with XNNPACKQuantizer's symmetric config (int8 activations, int8 weights per channel), "
                "calibrated on the int8 recipe's inputs, then lowered to XNNPACK like fp32; XNNPACK's QS8 kernels",
    }
    unsupported_precisions = {
        "bf16": "XNNPACK's ExecuTorch delegate has no bf16 convolution kernels",
        "fp16": "XNNPACK runs fp16 only on CPUs with native fp16 arithmetic (Arm); measure fp16 with --backend torch",
    }

    def _package_problem(self) -> str | None:
        problem = super()._package_problem()
        if problem is not None:
            return problem
        try:
            import executorch.runtime  # noqa: F401  (loads the runtime's libraries, linked against libtorch)
        except Exception as exc:
            import torch

            return (f"executorch is installed but its runtime does not load beside torch {torch.__version__} "
                    f"({one_line(exc)}): {self.install_hint}")
        return None

    def stage(self, model: "LoadedModel", input_shape: Sequence[int], settings: "RunSettings") -> Staged:
        if model.kind != "torch":
            raise BackendSkipped(f"the executorch backend exports a PyTorch module with torch.export; {model.name} is "
                                 f"{'an ONNX file' if model.kind == 'onnx' else f'a {model.kind} model'}")
        if model.module is None:
            raise BackendSkipped(f"{model.name} has no module to export")
        shape = tuple(int(d) for d in input_shape)
        quantization = None
        if settings.precision == "int8":
            from lwprof.runtime.precision import calibration_inputs

            quantization = Quantization(settings.int8.per_channel, tuple(calibration_inputs(settings.int8, shape)))
        try:
            program = cached_program(model.module, model.name, shape, settings.precision, Path(settings.cache_dir), quantization)
            int8_record = self._int8_record(model, shape, settings, program, quantization) if quantization else None
        except LwprofError as exc:
            raise BackendSkipped(str(exc)) from None
        record = program.record
        staged = replace(model.portable(), kind="executorch", program_path=program.path, input_shape=shape,
                         precision=settings.precision)
        delegation = {
            "partitioner": "XnnpackPartitioner()",
            "delegates": len(record["delegates"]),
            "delegated_nodes": sum(len(d["nodes"]) for d in record["delegates"]),
            "not_delegated": [{"layer": op["layer"], "op": op["op"]} for op in record["operators"]],
        }
        info = {"exported": True, "export_cached": program.cached, "export_s": program.export_s,
                "program_path": str(program.path), "delegation": delegation}
        if int8_record is not None:
            info.update(precision="int8", quantization=int8_record)
        notes = []
        for names in record.get("batch_norm_name_collisions", []):
            notes.append(f"executorch: the BatchNorm weights {' and '.join(names)} become XNNPACK constants of one name "
                         f"({names[0].replace('.', '_')}_decomposed_bn_weight: ExecuTorch's DecomposeBatchNorm joins a "
                         "path with underscores), so one BatchNorm runs with another's scale and shift and the outputs "
                         "are wrong; rename one of the modules to export this model correctly")
        info["batch_norm_name_collisions"] = record.get("batch_norm_name_collisions", [])
        if delegation["not_delegated"]:
            layers = list(dict.fromkeys(op["layer"] for op in delegation["not_delegated"]))
            notes += [f"executorch: {len(delegation['not_delegated'])} ops of {len(layers)} layers run outside XNNPACK, "
                      f"on ExecuTorch's portable kernels ({', '.join(layers[:4])}{', ...' if len(layers) > 4 else ''})"]
        if notes:
            info["notes"] = notes
        return Staged(staged, info)

    def _int8_record(self, model: "LoadedModel", shape: tuple[int, ...], settings: "RunSettings", program: Any,
                     quantization: Quantization) -> dict[str, Any]:
        """How the int8 program was made and how its outputs agree with the
        fp32 program's, both run by ExecuTorch on the calibration inputs."""
        from lwprof.runtime.precision import agreement

        fp32 = cached_program(model.module, model.name, shape, "fp32", Path(settings.cache_dir))
        set_threads(settings.threads)
        outputs = [_program_outputs(path, quantization.calibration) for path in (fp32.path, program.path)]
        return {"method": self.precisions["int8"], **program.record["quantization"],
                "scheme": "s8s8 (XNNPACKQuantizer's symmetric config; --int8-scheme applies to ONNX Runtime)",
                "calibration": f"{len(quantization.calibration)} inputs (the int8 recipe's)",
                "agreement": agreement(*outputs).to_dict()}

    def _open(self, model: "LoadedModel", x: "np.ndarray", settings: "RunSettings") -> BackendSession:
        staged = model if model.kind == "executorch" else self.stage(model, x.shape, settings).model
        if staged.program_path is None:
            raise BackendSkipped(f"{model.name} has no ExecuTorch program")
        return ExecuTorchSession(Path(staged.program_path), x, settings)

    def peak_kernels(self, settings: "RunSettings") -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        from lwprof.runtime.measure import COPY_BYTES, GEMM_SIZE, HostTimer, ceiling, time_kernel

        n = GEMM_SIZE["cpu"]
        # The bandwidth kernel streams its weights, not its input: Method.execute copies inputs and
        # outputs, and a copy-like kernel over a large input would time those copies too.
        width = math.isqrt(COPY_BYTES["cpu"] // 4)
        set_threads(settings.threads)
        with tempfile.TemporaryDirectory(prefix="lwprof-executorch-") as folder:
            gemm_method, gemm_input = _kernel_program(torch.nn.Linear(n, n, bias=False), (n, n), Path(folder) / "gemm.pte")
            gemm = time_kernel(lambda: gemm_method.execute(gemm_input), settings.budget, HostTimer())
            gemv_method, gemv_input = _kernel_program(torch.nn.Linear(width, width, bias=False), (1, width), Path(folder) / "gemv.pte")
            gemv = time_kernel(lambda: gemv_method.execute(gemv_input), settings.budget, HostTimer())
        weight_bytes = 4 * width * width
        return (
            ceiling(gemm, kernel=f"XNNPACK Fully Connected {n}x{n} fp32", size=n, flops=2 * n**3),
            ceiling(gemv, kernel=f"XNNPACK Fully Connected 1x{width} by {width}x{width} fp32 (streams {weight_bytes // 2**20} MiB "
                                 "of weights)", bytes=weight_bytes + 8 * width),
        )


def _load(path: Path, **options: Any) -> Any:
    """A program loaded by ExecuTorch's runtime, with minimal verification (the session records it)."""
    from executorch.runtime import Runtime, Verification

    return Runtime.get().load_program(str(path), verification=Verification.Minimal, **options)


def _float_outputs(method: Any, inputs: list[Any]) -> list["np.ndarray"]:
    """One execution's outputs, flattened, as float arrays."""
    import torch

    return [as_float_array(t) for t in flatten_outputs(list(method.execute(inputs)), torch.Tensor)]


def _kernel_program(module: Any, shape: tuple[int, ...], path: Path) -> tuple[Any, list[Any]]:
    """``module`` lowered to XNNPACK and loaded: its method and an input."""
    import torch

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    path.write_bytes(lower_to_xnnpack(module.eval(), x)[0].buffer)
    return _load(path).load_method("forward"), [x]


def _program_outputs(path: Path, inputs: Sequence["np.ndarray"]) -> list[list["np.ndarray"]]:
    """A program's outputs on each input, as float arrays."""
    import torch

    method = _load(path).load_method("forward")
    return [_float_outputs(method, [torch.from_numpy(x.copy())]) for x in inputs]


def set_threads(threads: int) -> dict[str, int]:
    """XNNPACK's thread pool (ExecuTorch's one pool) to ``threads``; its count before and after."""
    from executorch.extension.pybindings import portable_lib

    before = int(portable_lib._threadpool_get_thread_count())
    if before != threads:
        portable_lib._unsafe_reset_threadpool(int(threads))
    return {"default": before, "threads": int(portable_lib._threadpool_get_thread_count())}


# ---------------------------------------------------------------------------
# The session (worker process)


class ExecuTorchSession(BackendSession):
    backend = "executorch"

    def __init__(self, program_path: Path, x: "np.ndarray", settings: "RunSettings"):
        import numpy as np
        import torch

        self.device = "cpu"
        self.timer = session_timer("cpu")
        self.program_path = program_path
        threadpool = set_threads(settings.threads)
        try:
            self.method = _load(program_path).load_method("forward")
        except Exception as exc:
            raise BackendSkipped(f"ExecuTorch cannot load {program_path.name}: {one_line(exc)}") from None
        # A copy: the caller's array is every backend's input.
        self.inputs = [torch.from_numpy(np.array(x, copy=True))]
        self.record = json.loads(program_path.with_suffix(".json").read_text())
        self.info = {
            "executorch_version": self.record.get("executorch"),
            "program_path": str(program_path),
            "threadpool": threadpool,
            "verification": "Minimal",
            "input_shape": list(x.shape),
        }

    def run(self) -> None:
        self.method.execute(self.inputs)

    def outputs(self) -> list["np.ndarray"]:
        return _float_outputs(self.method, self.inputs)

    def layer_timings(self, runs: int) -> list[LayerTiming]:
        if runs < 1:
            raise LwprofError(f"need at least one timed run, got {runs}")
        events = self._profiled_events(runs)
        return layer_rows(events, self.record, runs)

    def _profiled_events(self, runs: int) -> list[dict[str, Any]]:
        """Each profiled event of ``runs`` executions (after a warm-up): its
        name, whether XNNPACK ran it, its program instruction, seconds per run."""
        from executorch.devtools import Inspector
        from executorch.devtools.inspector import TimeScale

        program = _load(self.program_path, enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
        for _ in range(WARMUP_RUNS + runs):
            method.execute(self.inputs)
        with tempfile.TemporaryDirectory(prefix="lwprof-etdump-") as folder:
            etdump = os.path.join(folder, "run.etdp")
            program.write_etdump_result_to_file(etdump, os.path.join(folder, "debug.bin"))
            inspector = Inspector(etdump_path=etdump, source_time_scale=TimeScale.NS, target_time_scale=TimeScale.S)
        return profiled_events(inspector, runs)

    def close(self) -> None:
        self.method = None


def profiled_events(inspector: Any, runs: int) -> list[dict[str, Any]]:
    """The timed events of an Inspector's Execute blocks, in order, each with
    the program instruction it belongs to: XNNPACK operators (``delegated``)
    and portable instructions (``OPERATOR_CALL``, which contains its
    kernel's own event). The delegate call's own event is left out: its time
    is its operators' plus the delegate's overhead."""
    events: list[dict[str, Any]] = []
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            if event.perf_data is None or event.name == "DELEGATE_CALL":
                continue
            if event.is_delegated_op or event.name == "OPERATOR_CALL":
                events.append({"name": event.name, "delegated": bool(event.is_delegated_op), "instruction": event._instruction_id,
                               "samples": [float(value) for value in event.perf_data.raw][-runs:]})
    return events


def layer_rows(events: list[dict[str, Any]], record: dict[str, Any], runs: int) -> list[LayerTiming]:
    """Per-layer rows from profiled events and a program's record: XNNPACK
    operators matched to the delegate's nodes (:func:`align`), portable
    instructions by the record of their instruction; rows in execution
    order, a layer's events summed per run."""
    portable = {op["instruction"]: op for op in record.get("operators", [])}
    nodes_of = {delegate.get("instruction"): delegate["nodes"] for delegate in record.get("delegates", [])}
    by_delegate: dict[Any, list[dict[str, Any]]] = {}
    for event in events:
        if event["delegated"]:
            by_delegate.setdefault(event["instruction"], []).append(event)
    named: dict[int, tuple[tuple[str, ...], str]] = {}  # id(event) -> (layers, op)
    for instruction, delegate_events in by_delegate.items():
        layers_ops = _delegate_layers([e["name"] for e in delegate_events], nodes_of.get(instruction, []))
        for event, layers_op in zip(delegate_events, layers_ops):
            named[id(event)] = layers_op
    samples: dict[str, list[float]] = {}
    covers: dict[str, list[str]] = {}
    ops: dict[str, set[str]] = {}
    for event in events:
        if event["delegated"]:
            layers, op = named[id(event)]
        else:
            known = portable.get(event["instruction"])
            layers = (known["layer"],) if known else (f"<instruction {event['instruction']}>",)
            op = f"ExecuTorch {known['op'] if known else '?'} (not delegated)"
        head = layers[0]
        row = samples.setdefault(head, [0.0] * runs)
        for run, seconds in enumerate(event["samples"]):
            row[run] += seconds
        members = covers.setdefault(head, [])
        members.extend(layer for layer in layers if layer not in members)
        ops.setdefault(head, set()).add(op)
    return [LayerTiming(head, tuple(values), tuple(covers[head]) if len(covers[head]) > 1 else (), tuple(sorted(ops[head])))
            for head, values in samples.items()]


def _delegate_layers(operators: list[str], nodes: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], str]]:
    """Each XNNPACK operator's layers and op name. Nodes XNNPACK fused at run
    time join the operator before them; an operator with no layer (a layout
    transpose, or one XNNPACK added) is named after the nearest layer,
    ``<layer> (layout)``."""
    xnodes = [XNode(node["type"], node["debug_handle"], node["fused_clamp"]) for node in nodes]
    matched = align(operators, xnodes)
    layers: list[list[str]] = [list(nodes[j]["layers"]) if j is not None else [] for j in matched]
    # Nodes no operator ran: fused into the operator that ran the node before them.
    owner_of: dict[int, int] = {j: i for i, j in enumerate(matched) if j is not None}
    last_owner: int | None = None
    first_owner = next(iter(owner_of.values()), None)
    for j, node in enumerate(nodes):
        if j in owner_of:
            last_owner = owner_of[j]
            continue
        target = last_owner if last_owner is not None else first_owner
        if target is not None:
            layers[target].extend(layer for layer in node["layers"] if layer not in layers[target])
    for i, operator in enumerate(operators):
        j = matched[i - 1] if i else None
        if matched[i] is None and operator_head(operator) == "Clamp" and j is not None and nodes[j]["fused_clamp"]:
            layers[i] = list(layers[i - 1])  # the activation the node before carried, run as an operator of its own
    named: list[tuple[tuple[str, ...], str]] = []
    for i, operator in enumerate(operators):
        op = f"XNNPACK {operator_kind(operator)}"
        if layers[i]:
            named.append((tuple(dict.fromkeys(layers[i])), op))
            continue
        neighbour = next((layers[k][0] for k in list(range(i + 1, len(operators))) + list(range(i - 1, -1, -1)) if layers[k]),
                         "<delegate>")
        kind = "layout" if operator_head(operator) in LAYOUT_OPERATORS else operator_head(operator).lower()
        # A container's own op already ends in its op: ``<root> (view)`` -> ``<root> (view, layout)``.
        name = f"{neighbour[:-1]}, {kind})" if neighbour.endswith(")") else f"{neighbour} ({kind})"
        named.append(((name,), op))
    return named
