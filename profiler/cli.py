"""The ``lwprof`` command line: one Typer app, shared option types, one console.

Results go to stdout, progress and diagnostics to stderr. Heavy packages
(torch, onnxruntime, matplotlib) are imported inside the commands that need
them, so ``lwprof --help`` and ``lwprof --version`` stay instant.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from lwprof import __version__
from lwprof.cli_options import (
    Allocator, AllocatorOption, BackendOption, BatchSizeOption, CacheDirOption, CalibrationDataOption, CalibrationInputsOption,
    Device, DeviceOption, DType, FormatOption, InputShapeOption, Int8Scheme, Int8SchemeOption, LatencyCalibrationOption,
    PrecisionOption, ProcessesOption, SortKey, ThreadsOption,
)
from lwprof.core.errors import LwprofError
from lwprof.reports.console import OutputFormat
from lwprof.runtime.settings import RunSettings, budget_from_options

app = typer.Typer(
    name="lwprof",
    help="Hardware-aware profiler for lightweight neural networks: what a network really costs on this machine, and why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lwprof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """lwprof: FLOPs, MACs, params, memory access and real latency of lightweight networks."""


def user_errors(command):
    """Print errors the user caused as one line on stderr and exit 2, with no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from lwprof.models import UnknownModelError
        from lwprof.reports.console import error

        try:
            return command(*args, **kwargs)
        except (LwprofError, UnknownModelError) as exc:
            error(str(exc))
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None

    return wrapper


@app.command()
@user_errors
def zoo(
    pattern: Annotated[
        str,
        typer.Argument(help="Shell-style pattern ('mobilenet_v3*'); plain text matches names containing it, or an alias."),
    ] = "*",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the built-in model zoo: params, reference MACs, published top-1, input shape, paper."""
    from lwprof.reports.console import emit, info
    from lwprof.reports.zoo_table import zoo_columns, zoo_records

    records = zoo_records(pattern)
    if not records:
        info(f"no zoo model matches '{pattern}'")
    emit(
        [r["table"] for r in records],
        zoo_columns(),
        fmt,
        title=f"lwprof zoo: {len(records)} models",
        json_records=[r["json"] for r in records],
    )


@app.command()
@user_errors
def profile(
    spec: Annotated[
        str,
        typer.Argument(
            help="Model: zoo name or alias, torchvision:NAME, timm:NAME, path/file.py:factory, "
            "package.module:attr, a TorchScript file or an .onnx file."
        ),
    ],
    analytic: Annotated[
        bool,
        typer.Option("--analytic", help="Count only: no latency, no run directory."),
    ] = False,
    device: DeviceOption = Device.cpu,
    backend: BackendOption = None,
    input_shape: InputShapeOption = None,
    batch_size: BatchSizeOption = None,
    threads: ThreadsOption = None,
    min_time: Annotated[
        float, typer.Option("--min-time", min=0.0, help="Seconds to keep timing each backend at least.")
    ] = 1.0,
    max_time: Annotated[
        float, typer.Option("--max-time", min=0.0, help="Seconds to time each backend at most.")
    ] = 5.0,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before timing.")] = 3,
    layer_runs: Annotated[
        int, typer.Option("--layer-runs", min=0, help="Forward passes timed layer by layer per backend (0: none).")
    ] = 20,
    reports_dir: Annotated[
        Path, typer.Option("--reports-dir", help="Where run directories <model>-<device>-<timestamp>/ are created.")
    ] = Path("reports"),
    cache_dir: CacheDirOption = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the time-share and roofline plots.")] = True,
    dtype: Annotated[DType, typer.Option("--dtype", help="Element type of weights and activations.")] = DType.float32,
    depth: Annotated[
        Optional[int], typer.Option("--depth", min=1, help="Roll layers up to module paths of this many components.")
    ] = None,
    top: Annotated[
        Optional[int],
        typer.Option("--top", min=1, help="Show only the first N rows (after --sort); measured: top layers by time (default 10)."),
    ] = None,
    sort: Annotated[SortKey, typer.Option("--sort", help="Row order: execution order or a descending quantity.")] = SortKey.order,
    fmt: FormatOption = OutputFormat.table,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="With --analytic: also write layers.csv and profile.json here. Measured: use this (new or empty) "
            "directory as the run directory.",
        ),
    ] = None,
    crosscheck: Annotated[
        bool,
        typer.Option("--crosscheck", help="Show thop's and PyTorch FlopCounterMode's totals beside lwprof's, and what each counts."),
    ] = False,
    allocator: AllocatorOption = Allocator.auto,
    processes: ProcessesOption = 1,
    precision: PrecisionOption = "fp32",
    int8_scheme: Int8SchemeOption = Int8Scheme.u8s8,
    calibration_data: CalibrationDataOption = None,
    calibration_inputs: CalibrationInputsOption = 16,
    calibration: LatencyCalibrationOption = None,
) -> None:
    """What a model costs: per-layer FLOPs, MACs, params and memory access, and (unless --analytic) its real
    latency on each backend and precision, per layer, on the device's roofline, saved in a run directory."""
    if not analytic:
        from lwprof.commands.profile import run_latency_profile
        from lwprof.runtime.precision import Int8Recipe

        if crosscheck or depth is not None or sort is not SortKey.order or dtype is not DType.float32:
            raise LwprofError("--crosscheck, --depth, --sort and --dtype apply to --analytic (measurements: use --precision)")
        settings = RunSettings.build(
            device=device.value,
            threads=threads,
            budget=budget_from_options(warmup=warmup, min_time_s=min_time, max_time_s=max_time),
            layer_runs=layer_runs,
            cache_dir=cache_dir,
            allocator=allocator.value,
            processes=processes,
            int8=Int8Recipe(scheme=int8_scheme.value, calibration_dir=calibration_data, calibration_inputs=calibration_inputs),
        )
        code = run_latency_profile(
            spec,
            settings=settings,
            backends=backend,
            precisions=precision,
            batch_sizes=batch_size,
            input_shape=input_shape,
            top=top or 10,
            fmt=fmt,
            out=out,
            reports_dir=reports_dir,
            plots=plots,
            calibrations=calibration,
        )
        raise typer.Exit(code)

    if allocator is not Allocator.auto:
        raise LwprofError("--allocator applies to measurements, not to --analytic")
    if processes != 1:
        raise LwprofError("--processes applies to measurements, not to --analytic")
    if calibration:
        raise LwprofError("--calibration shows a prediction beside a measurement; without measuring, use `lwprof predict`")
    if precision != "fp32":
        raise LwprofError("--precision applies to measurements; --analytic counts at --dtype")
    from lwprof.commands.analytic import run_profile
    from lwprof.commands.common import parse_batch_sizes

    sizes = parse_batch_sizes(batch_size)
    if len(sizes) > 1:
        raise LwprofError("--analytic counts one input: give one --batch-size")
    run_profile(
        spec,
        input_shape=input_shape,
        batch_size=sizes[0],
        dtype=dtype.value,
        depth=depth,
        top=top,
        sort=sort.value,
        fmt=fmt,
        out=out,
        crosscheck=crosscheck,
    )


@app.command()
@user_errors
def device(
    device: DeviceOption = Device.cpu,
    backend: BackendOption = None,
    threads: ThreadsOption = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even when cached.")] = False,
    cache_dir: CacheDirOption = None,
    fmt: FormatOption = OutputFormat.table,
    precision: PrecisionOption = "fp32",
) -> None:
    """Peak compute (large GEMM, per precision) and memory bandwidth (large copy) of this device per backend: the roofline."""
    from lwprof.commands.device import run_device

    settings = RunSettings.build(device=device.value, threads=threads, cache_dir=cache_dir)
    run_device(settings=settings, backends=backend, refresh=refresh, fmt=fmt, precisions=precision)


class HardwareConfig(str, enum.Enum):
    gpu = "gpu"
    arm = "arm"


class Merge(str, enum.Enum):
    concat = "concat"
    add = "add"


@app.command()
@user_errors
def guidelines(
    tables: Annotated[
        Optional[str], typer.Option("--tables", "-t", help="Comma-separated tables of the paper: 1,2,3,4 (default: all).")
    ] = None,
    device: DeviceOption = Device.cpu,
    backend: BackendOption = None,
    config: Annotated[
        Optional[HardwareConfig],
        typer.Option("--config", help="The paper's channel widths and batch: arm (batch 1) or gpu (batch 8). Default: arm on cpu, gpu on cuda."),
    ] = None,
    scales: Annotated[Optional[str], typer.Option("--scales", help="Channel-width scales: 1,2,4 (default: all; --quick: 1).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="x1 scale only and short budgets (a few minutes).")] = False,
    threads: ThreadsOption = None,
    min_time: Annotated[Optional[float], typer.Option("--min-time", min=0.0, help="Seconds to time each network at least.")] = None,
    max_time: Annotated[Optional[float], typer.Option("--max-time", min=0.0, help="Seconds to time each network at most.")] = None,
    merge: Annotated[
        Merge, typer.Option("--merge", help="How Table 3's parallel fragments are merged (the paper does not say).")
    ] = Merge.concat,
    fmt: FormatOption = OutputFormat.table,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Results folder (default reports/guidelines-<device>); a folder with earlier results resumes them."),
    ] = None,
    cache_dir: CacheDirOption = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write one plot per table.")] = True,
    allocator: AllocatorOption = Allocator.default,
    precision: Annotated[str, typer.Option("--precision", help="The one precision every network runs in: fp32, bf16, "
                                           "fp16 or int8 (each backend named must run it).")] = "fp32",
    int8_scheme: Int8SchemeOption = Int8Scheme.u8s8,
    calibration_inputs: CalibrationInputsOption = 16,
) -> None:
    """Check ShuffleNet V2's guidelines G1-G4 on this machine, beside the paper's Tables 1-4."""
    from lwprof.commands.guidelines import guideline_budget, run_guidelines
    from lwprof.runtime.precision import Int8Recipe, parse_precisions

    chosen = parse_precisions(precision)
    if len(chosen) != 1:
        raise LwprofError(f"--precision {precision}: guidelines run one precision at a time (each is a run of its own)")
    settings = RunSettings.build(
        device=device.value, threads=threads, budget=guideline_budget(quick, min_time, max_time), cache_dir=cache_dir,
        allocator=allocator.value, int8=Int8Recipe(scheme=int8_scheme.value, calibration_inputs=calibration_inputs),
    ).but(precision=chosen[0])
    code = run_guidelines(
        tables=tables,
        settings=settings,
        backends=backend,
        config=config.value if config else None,
        scales=scales,
        quick=quick,
        out=out,
        merge=merge.value,
        fmt=fmt,
        plots=plots,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def compare(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models to compare (any SPEC `profile` takes).")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every zoo model.")] = False,
    family: Annotated[Optional[str], typer.Option("--family", help="Every zoo model of this family (e.g. mobilenet_v3).")] = None,
    device: DeviceOption = Device.cpu,
    backend: BackendOption = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Replace the batch dimension.")] = None,
    threads: ThreadsOption = None,
    min_time: Annotated[float, typer.Option("--min-time", min=0.0, help="Seconds to keep timing each backend at least.")] = 1.0,
    max_time: Annotated[float, typer.Option("--max-time", min=0.0, help="Seconds to time each backend at most.")] = 3.0,
    layer_runs: Annotated[
        int, typer.Option("--layer-runs", min=0, help="Per-layer timed passes per model and backend (for the op-class plot).")
    ] = 5,
    sort: Annotated[
        str, typer.Option("--sort", help="Row order: order, params, macs, flops, memory_bytes, memory_bytes_fused, or a backend (its latency).")
    ] = "order",
    fmt: FormatOption = OutputFormat.table,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Results folder (default reports/compare-<device>-<timestamp>).")
    ] = None,
    cache_dir: CacheDirOption = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the comparison plots.")] = True,
    allocator: AllocatorOption = Allocator.auto,
    processes: ProcessesOption = 1,
    precision: PrecisionOption = "fp32",
    int8_scheme: Int8SchemeOption = Int8Scheme.u8s8,
    calibration_data: CalibrationDataOption = None,
    calibration_inputs: CalibrationInputsOption = 16,
    calibration: LatencyCalibrationOption = None,
) -> None:
    """Which network is really fastest here, and which proxy (MACs, params, memory access, roofline) predicts it."""
    from lwprof.commands.compare import run_compare
    from lwprof.runtime.precision import Int8Recipe

    settings = RunSettings.build(
        device=device.value, threads=threads, budget=budget_from_options(min_time_s=min_time, max_time_s=max_time),
        layer_runs=layer_runs, cache_dir=cache_dir, allocator=allocator.value, processes=processes,
        int8=Int8Recipe(scheme=int8_scheme.value, calibration_dir=calibration_data, calibration_inputs=calibration_inputs),
    )
    code = run_compare(
        models=list(models or []),
        all_models=all_models,
        family=family,
        settings=settings,
        backends=backend,
        precisions=precision,
        batch_size=batch_size,
        sort=sort,
        fmt=fmt,
        out=out,
        plots=plots,
        calibrations=calibration,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A folder written by `lwprof compare` or `lwprof profile --device`.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Re-render the plots and summary.md of a saved run, without measuring again."""
    from lwprof.commands.report import run_report

    run_report(run_dir, fmt)


@app.command()
@user_errors
def diff(
    run_a: Annotated[Path, typer.Argument(help="A profile run directory or compare folder (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="Another of the same kind.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Layers (or models) shown per backend, by how much they moved.")] = 10,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write diff.json and diff.png (B against A) here.")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Two saved runs side by side: B against A per backend, per layer or model, from the files alone."""
    from lwprof.commands.diff import run_diff

    run_diff(run_a, run_b, top=top, fmt=fmt, out=out)


@app.command()
@user_errors
def calibrate(
    backend: Annotated[str, typer.Option("--backend", "-b", help="The runtime to calibrate (one).")] = "onnxruntime",
    device: DeviceOption = Device.cpu,
    threads: ThreadsOption = None,
    precision: Annotated[str, typer.Option("--precision", help="The precision to calibrate (one).")] = "fp32",
    quick: Annotated[bool, typer.Option("--quick", help="6 samples per kernel type instead of 40, no adaptive round, "
                                                      "6 synthetic networks instead of 24 (under a minute here).")] = False,
    samples: Annotated[Optional[int], typer.Option("--samples", min=2, help="Samples per kernel type.")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", min=0.1, help="Minutes to spend timing kernels at most "
                                                    "(types in turn; the synthetic networks are timed after).")] = None,
    min_time: Annotated[Optional[float], typer.Option("--min-time", min=0.0, help="Seconds to time each kernel at least.")] = 0.2,
    max_time: Annotated[Optional[float], typer.Option("--max-time", min=0.0, help="Seconds to time each kernel at most.")] = 1.0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Calibration file (default: calibration-BACKEND-DEVICE.json).")] = None,
    cache_dir: CacheDirOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Time this device's kernels on one runtime and fit a latency predictor: a portable JSON calibration file."""
    from lwprof.commands.predict import run_calibrate

    settings = RunSettings.build(device=device.value, threads=threads, cache_dir=cache_dir,
                                 budget=budget_from_options(min_time_s=min_time, max_time_s=max_time)).but(precision=precision)
    raise typer.Exit(run_calibrate(settings=settings, backend=backend, quick=quick, samples=samples, fmt=fmt,
                                   out=out or Path(f"calibration-{backend}-{device.value}.json"), budget_min=budget))


@app.command()
@user_errors
def predict(
    spec: Annotated[str, typer.Argument(help="Model: zoo name or alias, torchvision/timm name, file.py:factory, .pt or .onnx.")],
    calibration: Annotated[Path, typer.Option("--calibration", help="A file written by `lwprof calibrate`.")],
    input_shape: InputShapeOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Layers shown in the table, by predicted time.")] = 10,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Predict a model's latency, per layer, from a calibration file: no device, nothing timed."""
    from lwprof.commands.predict import run_predict

    run_predict(spec=spec, calibration_path=calibration, input_shape=input_shape, fmt=fmt, top=top)


def main() -> None:
    app()
