"""The shared option types of the ``lwprof`` command line: every command spells these the same way.

Only typer and the standard library are imported here, so ``lwprof --help``
stays instant.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lwprof.reports.console import OutputFormat


class Device(str, enum.Enum):
    cpu = "cpu"
    cuda = "cuda"


# Shared option types: every command spells these the same way.
FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output on stdout: a rich table, or csv/json for piping."),
]


InputShapeOption = Annotated[
    Optional[str],
    typer.Option("--input-shape", help="Input shape, e.g. 1,3,224,224 (default: the model's own)."),
]
BatchSizeOption = Annotated[
    Optional[str],
    typer.Option("--batch-size", help="Replace the batch dimension; measurements take a list, e.g. 1,8,32."),
]
DeviceOption = Annotated[Device, typer.Option("--device", "-d", help="Where to measure: cpu, or cuda when available.")]
BackendOption = Annotated[
    Optional[str],
    typer.Option(
        "--backend",
        "-b",
        help="Comma-separated runtimes to measure: torch, onnxruntime, or one a package adds through the lwprof.backends "
        "entry point (default: the built-in ones).",
    ),
]
ThreadsOption = Annotated[
    Optional[int], typer.Option("--threads", min=1, help="CPU threads for every backend (default: all physical cores).")
]
CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="ONNX exports and device peaks (default: $LWPROF_CACHE_DIR or ~/.cache/lwprof)."),
]


class Allocator(str, enum.Enum):
    auto = "auto"
    default = "default"
    tuned = "tuned"
    both = "both"


AllocatorOption = Annotated[
    Allocator,
    typer.Option(
        "--allocator",
        help="C allocator of the timed process: default (the plain process, as a user's own), tuned (glibc mmap/trim "
        "thresholds raised), both, or auto: default, plus tuned when the default page-faults every pass.",
    ),
]
ProcessesOption = Annotated[
    int,
    typer.Option(
        "--processes",
        min=1,
        help="Fresh worker processes to time each figure in, each with the whole budget, their samples pooled: a plain "
        "process's page faults (and latency) differ from one process to the next.",
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Precisions to measure: fp32, bf16, fp16, int8 (comma-separated; each backend runs those it really supports).",
    ),
]


class Int8Scheme(str, enum.Enum):
    u8s8 = "u8s8"
    s8s8 = "s8s8"


Int8SchemeOption = Annotated[
    Int8Scheme,
    typer.Option(
        "--int8-scheme",
        help="int8 activation x weight types: u8s8 (the default: on x86 ONNX Runtime quantizes every convolution of a "
        "residual network with it) or s8s8 (ORT's own default, which leaves those beside residual adds in float).",
    ),
]
CalibrationDataOption = Annotated[
    Optional[Path],
    typer.Option("--calibration-data", help="Folder of .npy inputs to calibrate int8 on (default: seeded random inputs)."),
]
LatencyCalibrationOption = Annotated[
    Optional[list[Path]],
    typer.Option("--calibration", help="A latency calibration from `lwprof calibrate` (repeat for several backends): "
                 "its prediction is shown beside the measurement of the same backend and precision."),
]
CalibrationInputsOption = Annotated[
    int,
    typer.Option("--calibration-inputs", min=1, help="Seeded random inputs to calibrate int8 on and check agreement with."),
]
OutOption = Annotated[
    Optional[Path],
    typer.Option("--out", help="Also write the result files (layers.csv, profile.json) into this directory."),
]


class DType(str, enum.Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class SortKey(str, enum.Enum):
    order = "order"
    params = "params"
    macs = "macs"
    flops = "flops"
    memory_bytes = "memory_bytes"
    memory_bytes_fused = "memory_bytes_fused"
    arithmetic_intensity = "arithmetic_intensity"
