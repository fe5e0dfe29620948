"""The reference side of ``bench_latency.py``: a zoo model timed the way a user
would time it, in a fresh process, with none of lwprof's measurement code.

This file imports torch, numpy, onnxruntime and ``lwprof.models`` (the zoo's
network definitions: the model under test) and nothing else of lwprof. Each
call is one process for one backend, as each lwprof measurement is::

    python benchmarks/reference_latency.py torch MODEL --threads 2 [--min-time 3] [--harness timer|loop]
    python benchmarks/reference_latency.py onnxruntime MODEL --onnx FILE --threads 2 [--min-time 3]

and prints one JSON object. The torch side is
``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time)`` under
``torch.inference_mode`` (or, with ``--harness loop``, the loop a user writes
by hand: three calls to warm up, then each call timed with
``time.perf_counter`` for ``min_run_time``); the ONNX Runtime side a plain ``session.run`` loop
on an ``InferenceSession`` built with the runtime's defaults and the thread
count. Run it with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
in its environment and it is the deployment recipe for lwprof's tuned
allocator figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib


def minor_page_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def example_input(shape: tuple[int, ...]):
    """Standard-normal float32 values from numpy's generator with seed 0 (the
    values lwprof feeds; any values would time the same)."""
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def zoo_model(name: str):
    import torch

    from lwprof.models import create_model, get_model_info

    info = get_model_info(name)
    # The zoo's weights are random; lwprof seeds them by the model's name, so
    # this builds the very network lwprof measured.
    torch.manual_seed(zlib.crc32(info.name.encode()))
    return create_model(info.name).eval(), tuple(info.input_shape)


def timed_loop(call, min_time: float) -> dict:
    """``call`` timed one call at a time with ``time.perf_counter`` for at
    least ``min_time`` seconds and 10 calls: a hand-written loop."""
    samples = []
    before = minor_page_faults()
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(samples) < 10:
        begin = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begin)
    faults = minor_page_faults() - before
    return {
        "median_s": statistics.median(samples),
        "mean_s": statistics.fmean(samples),
        "n": len(samples),
        "minor_page_faults_per_call": faults / len(samples),
    }


def time_torch(name: str, threads: int, min_time: float, harness: str = "timer") -> dict:
    import torch

    torch.set_num_threads(threads)
    model, shape = zoo_model(name)
    x = torch.from_numpy(example_input(shape))
    if harness == "loop":
        figures = _torch_loop(model, x, min_time)
    else:
        figures = _torch_timer(model, x, threads, min_time)
    return {**figures, "harness": harness, "torch": torch.__version__}


def _torch_timer(model, x, threads: int, min_time: float) -> dict:
    import torch
    from torch.utils.benchmark import Timer

    timer = Timer("with torch.inference_mode():\n    model(x)", globals={"model": model, "x": x, "torch": torch}, num_threads=threads)
    timer.timeit(3)  # warm-up
    before = minor_page_faults()
    measurement = timer.blocked_autorange(min_run_time=min_time)
    faults = minor_page_faults() - before
    calls = len(measurement.times) * measurement.number_per_run
    return {
        "median_s": measurement.median,
        "mean_s": measurement.mean,
        "blocks": len(measurement.times),
        "number_per_run": measurement.number_per_run,
        # blocked_autorange's own block-size search is inside the count: an estimate
        "minor_page_faults_per_call": faults / calls if calls else None,
    }


def _torch_loop(model, x, min_time: float) -> dict:
    import torch

    def call() -> None:
        with torch.inference_mode():
            model(x)

    for _ in range(3):
        call()
    return timed_loop(call, min_time)


def time_onnxruntime(name: str, onnx_path: str, threads: int, min_time: float) -> dict:
    import onnxruntime as ort

    from lwprof.models import get_model_info

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: example_input(tuple(get_model_info(name).input_shape))}
    for _ in range(10):
        session.run(None, feed)
    return {**timed_loop(lambda: session.run(None, feed), min_time), "onnxruntime": ort.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=["torch", "onnxruntime"])
    parser.add_argument("model", help="zoo model name")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timing at least (default 3)")
    parser.add_argument("--onnx", help="the ONNX file (onnxruntime)")
    parser.add_argument("--harness", choices=["timer", "loop"], default="timer",
                        help="torch: torch.utils.benchmark.Timer (default) or a hand-written perf_counter loop")
    args = parser.parse_args(argv)
    if args.backend == "torch":
        figures = time_torch(args.model, args.threads, args.min_time, args.harness)
    else:
        if not args.onnx:
            parser.error("onnxruntime needs --onnx FILE")
        figures = time_onnxruntime(args.model, args.onnx, args.threads, args.min_time)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
