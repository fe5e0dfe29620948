"""The reference side of ``bench_int8.py``: a zoo model quantized to int8 by
hand, the way ONNX Runtime's documentation shows, and timed against its fp32
export with a bare ``session.run`` loop, in a fresh process.

It imports numpy, onnxruntime, onnx and ``lwprof.models`` (the network under
test; torch too when it exports) and nothing else of lwprof: the fp32 graph
lwprof exported (``--onnx``, so both sides quantize the same graph; or its own
``torch.onnx.export``), its own ``quant_pre_process`` + ``quantize_static``
call with the settings lwprof documents for its default (QDQ, uint8
activations, int8 per-channel weights, MinMax on standard-normal inputs with
seeds 1..N), its own timing loop, each model file timed in a fresh process
(as lwprof times each precision in its own worker: two ONNX Runtime sessions
in one process spin their thread pools against each other)::

    python benchmarks/reference_int8.py quantize MODEL FOLDER [--scheme u8s8]
    python benchmarks/reference_int8.py time MODEL FOLDER/int8.onnx --threads 2 [--min-time 3]

each printing one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zlib
from pathlib import Path


def zoo_model(name: str):
    import torch

    from lwprof.models import create_model, get_model_info

    info = get_model_info(name)
    torch.manual_seed(zlib.crc32(info.name.encode()))  # the weights lwprof builds for this name
    return create_model(info.name).eval(), tuple(info.input_shape)


def quantize(name: str, folder: Path, scheme: str, calibration_inputs: int, onnx_file: Path | None = None) -> tuple[Path, Path, tuple[int, ...]]:
    """``onnx_file``: the fp32 graph to quantize (lwprof's export, so both sides
    quantize the same graph); without it, this script's own export."""
    import shutil

    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lwprof.models import get_model_info

    shape = tuple(get_model_info(name).input_shape)
    fp32 = folder / "fp32.onnx"
    if onnx_file is not None:
        shutil.copyfile(onnx_file, fp32)
    else:
        import torch

        model, shape = zoo_model(name)
        with torch.no_grad():
            torch.onnx.export(model, torch.zeros(shape), str(fp32), opset_version=17, input_names=["input"], dynamo=False)
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    prepared, int8 = folder / "prepared.onnx", folder / "int8.onnx"
    quant_pre_process(str(fp32), str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.inputs = iter(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
                               for seed in range(1, calibration_inputs + 1))

        def get_next(self):
            x = next(self.inputs, None)
            return None if x is None else {input_name: x}

    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8 if scheme == "u8s8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    return fp32, int8, shape


def time_one(path: Path, shape: tuple[int, ...], threads: int, min_time: float) -> dict:
    """A bare ``session.run`` loop on one model file, the runtime's defaults and the thread count."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    for _ in range(10):
        session.run(None, feed)
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(samples) < 10:
        begin = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - begin)
    return {"median_s": statistics.median(samples), "n": len(samples), "onnxruntime": ort.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("quantize", help="export MODEL and quantize it into FOLDER (fp32.onnx, int8.onnx)")
    make.add_argument("model")
    make.add_argument("folder", type=Path)
    make.add_argument("--scheme", choices=["u8s8", "s8s8"], default="u8s8")
    make.add_argument("--calibration-inputs", type=int, default=16)
    make.add_argument("--onnx", type=Path, help="quantize this fp32 ONNX file (default: export the zoo model here)")
    timing = commands.add_parser("time", help="time one ONNX file of MODEL's input shape")
    timing.add_argument("model")
    timing.add_argument("file", type=Path)
    timing.add_argument("--threads", type=int, required=True)
    timing.add_argument("--min-time", type=float, default=3.0)
    args = parser.parse_args()
    if args.command == "quantize":
        started = time.perf_counter()
        args.folder.mkdir(parents=True, exist_ok=True)
        quantize(args.model, args.folder, args.scheme, args.calibration_inputs, args.onnx)
        print(json.dumps({"quantize_s": time.perf_counter() - started}))
    else:
        from lwprof.models import get_model_info

        print(json.dumps(time_one(args.file, tuple(get_model_info(args.model).input_shape), args.threads, args.min_time)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
