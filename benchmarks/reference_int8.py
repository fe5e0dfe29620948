"""The reference side of ``bench_int8.py``: a zoo model quantized to int8 by
hand, the way ONNX Runtime's documentation shows, and timed against its fp32
export with a bare ``session.run`` loop, in a fresh process.

It imports torch (to export), numpy, onnxruntime and ``lwprof.models`` (the
network under test) and nothing else of lwprof: its own export
(``torch.onnx.export``), its own ``quant_pre_process`` + ``quantize_static``
call with the settings lwprof documents for its default (QDQ, uint8
activations, int8 per-channel weights, MinMax on standard-normal inputs with
seeds 1..N), its own timing loop. The two sessions are timed in alternating
blocks in one process, so the speedup is a ratio taken side by side::

    python benchmarks/reference_int8.py MODEL --threads 2 [--scheme u8s8] [--min-time 3]

prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import zlib
from pathlib import Path


def zoo_model(name: str):
    import torch

    from lwprof.models import create_model, get_model_info

    info = get_model_info(name)
    torch.manual_seed(zlib.crc32(info.name.encode()))  # the weights lwprof builds for this name
    return create_model(info.name).eval(), tuple(info.input_shape)


def quantize(name: str, folder: Path, scheme: str, calibration_inputs: int) -> tuple[Path, Path, tuple[int, ...]]:
    import numpy as np
    import torch
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, shape = zoo_model(name)
    fp32 = folder / "fp32.onnx"
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(shape), str(fp32), opset_version=17, input_names=["input"], dynamo=False)
    prepared, int8 = folder / "prepared.onnx", folder / "int8.onnx"
    quant_pre_process(str(fp32), str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.inputs = iter(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
                               for seed in range(1, calibration_inputs + 1))

        def get_next(self):
            x = next(self.inputs, None)
            return None if x is None else {"input": x}

    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8 if scheme == "u8s8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    return fp32, int8, shape


def time_pair(fp32: Path, int8: Path, shape: tuple[int, ...], threads: int, min_time: float, block: int = 20) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for k, p in (("fp32", fp32), ("int8", int8))}
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    for key, session in sessions.items():
        for _ in range(10):
            session.run(None, feeds[key])
    samples: dict[str, list[float]] = {"fp32": [], "int8": []}
    start = time.perf_counter()
    while time.perf_counter() - start < 2 * min_time:
        for key, session in sessions.items():
            for _ in range(block):
                begin = time.perf_counter()
                session.run(None, feeds[key])
                samples[key].append(time.perf_counter() - begin)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {"fp32_median_s": medians["fp32"], "int8_median_s": medians["int8"], "speedup": medians["fp32"] / medians["int8"],
            "runs": {k: len(v) for k, v in samples.items()}, "onnxruntime": ort.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--scheme", choices=["u8s8", "s8s8"], default="u8s8")
    parser.add_argument("--calibration-inputs", type=int, default=16)
    parser.add_argument("--min-time", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reference-int8-") as folder:
        started = time.perf_counter()
        fp32, int8, shape = quantize(args.model, Path(folder), args.scheme, args.calibration_inputs)
        figures = {"quantize_s": time.perf_counter() - started, **time_pair(fp32, int8, shape, args.threads, args.min_time)}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
