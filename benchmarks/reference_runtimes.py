"""The reference side of ``bench_runtimes.py``: a model timed on a deployment
runtime the way that runtime's own documentation times it, in a fresh
process, with none of lwprof's measurement code.

This file imports numpy, the runtime under test and (for runtimes that start
from the ``nn.Module``) torch and ``lwprof.models``, the zoo's network
definitions; nothing else of lwprof. One call is one process::

    python benchmarks/reference_runtimes.py openvino MODEL --onnx FILE --threads 2 [--precision f32|bf16|f16] [--min-time 3]
    python benchmarks/reference_runtimes.py inductor MODEL --threads 2 [--min-time 3]
    python benchmarks/reference_runtimes.py executorch MODEL --pte FILE --threads 2 [--min-time 3]

and prints one JSON object.

- ``openvino``: ``benchmark_app``'s latency mode by hand: ``ov.Core()``,
  ``read_model`` of the ONNX file, ``compile_model(..., "CPU", config)`` with
  the inference precision, thread count, one stream and the LATENCY hint
  given explicitly, then a plain ``InferRequest.infer`` loop.
- ``inductor``: the zoo model (seeded as lwprof seeds it) through
  ``torch.compile(model)`` with inductor's defaults, compiled by one call,
  then ``torch.utils.benchmark.Timer(...).blocked_autorange`` under
  ``torch.inference_mode``, as ``reference_latency.py`` times eager torch.
- ``executorch``: ExecuTorch's getting-started flow, written out here: the
  zoo model through ``torch.export.export``, ``to_edge_transform_and_lower``
  with ``XnnpackPartitioner()`` and ``to_executorch()`` into ``--pte FILE``
  (exported once, when the file is not there yet: this script's own export,
  not lwprof's), then ``executorch.runtime``'s ``load_program`` and a plain
  ``Method.execute`` loop, XNNPACK's thread pool set to ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def example_input(shape: tuple[int, ...]):
    """Standard-normal float32 values from numpy's generator with seed 0 (the
    values lwprof feeds; any values would time the same)."""
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def timed_loop(call, min_time: float, warmup: int = 10) -> dict:
    for _ in range(warmup):
        call()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(samples) < 10:
        begin = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begin)
    return {"median_s": statistics.median(samples), "mean_s": statistics.fmean(samples), "n": len(samples)}


def time_openvino(onnx_path: str, threads: int, precision: str, min_time: float) -> dict:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(onnx_path)
    config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    shape = tuple(int(d) for d in compiled.input(0).shape)
    x = example_input(shape)
    figures = timed_loop(lambda: request.infer({0: x}), min_time)
    figures["openvino"] = ov.__version__
    figures["compiled_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return figures


def time_inductor(name: str, threads: int, min_time: float) -> dict:
    import torch
    from torch.utils.benchmark import Timer

    from reference_latency import zoo_model

    torch.set_num_threads(threads)
    model, shape = zoo_model(name)
    compiled = torch.compile(model)
    x = torch.from_numpy(example_input(shape))
    started = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    compile_s = time.perf_counter() - started
    timer = Timer("with torch.inference_mode():\n    compiled(x)", globals={"compiled": compiled, "x": x, "torch": torch},
                  num_threads=threads)
    timer.timeit(3)  # warm-up
    measurement = timer.blocked_autorange(min_run_time=min_time)
    return {"median_s": measurement.median, "mean_s": measurement.mean, "blocks": len(measurement.times),
            "number_per_run": measurement.number_per_run, "compile_s": compile_s, "torch": torch.__version__}


def export_executorch(name: str, pte_path: str) -> float:
    """The zoo model lowered to XNNPACK and written to ``pte_path``; seconds taken."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from reference_latency import zoo_model

    model, shape = zoo_model(name)
    started = time.perf_counter()
    with torch.no_grad():
        exported = torch.export.export(model, (torch.from_numpy(example_input(shape)),))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(pte_path, "wb") as file:
        file.write(program.buffer)
    return time.perf_counter() - started


def time_executorch(name: str, pte_path: str, threads: int, min_time: float) -> dict:
    import os

    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    from lwprof.models import get_model_info

    export_s = None if os.path.exists(pte_path) else export_executorch(name, pte_path)
    default_threads = portable_lib._threadpool_get_thread_count()
    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(pte_path).load_method("forward")
    inputs = [torch.from_numpy(example_input(tuple(get_model_info(name).input_shape)))]
    figures = timed_loop(lambda: method.execute(inputs), min_time)
    from importlib.metadata import version

    figures.update({"executorch": version("executorch"), "export_s": export_s, "default_threads": default_threads,
                    "threads": portable_lib._threadpool_get_thread_count()})
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runtime", choices=["openvino", "inductor", "executorch"])
    parser.add_argument("model", help="zoo model name")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timing at least (default 3)")
    parser.add_argument("--onnx", help="the ONNX file (openvino)")
    parser.add_argument("--precision", default="f32", help="OpenVINO's INFERENCE_PRECISION_HINT (default f32)")
    parser.add_argument("--pte", help="the ExecuTorch program (executorch): exported here first when missing")
    args = parser.parse_args(argv)
    if args.runtime == "executorch":
        if not args.pte:
            parser.error("executorch needs --pte FILE")
        figures = time_executorch(args.model, args.pte, args.threads, args.min_time)
    elif args.runtime == "inductor":
        figures = time_inductor(args.model, args.threads, args.min_time)
    else:
        if not args.onnx:
            parser.error("openvino needs --onnx FILE")
        figures = time_openvino(args.onnx, args.threads, args.precision, args.min_time)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
