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
from lwprof.errors import LwprofError
from lwprof.output import OutputFormat

app = typer.Typer(
    name="lwprof",
    help="Hardware-aware profiler for lightweight neural networks: what a network really costs on this machine, and why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Shared option types: every command spells these the same way.
FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output on stdout: a rich table, or csv/json for piping."),
]


InputShapeOption = Annotated[
    Optional[str],
    typer.Option("--input-shape", help="Input shape, e.g. 1,3,224,224 (default: the model's own)."),
]
BatchSizeOption = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Replace the batch dimension.")]
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
        from lwprof.output import error

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
    from lwprof.zoo import zoo_columns, zoo_records
    from lwprof.output import emit, info

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
        typer.Option("--analytic", help="Count only, without measuring latency (currently the only mode)."),
    ] = False,
    input_shape: InputShapeOption = None,
    batch_size: BatchSizeOption = None,
    dtype: Annotated[DType, typer.Option("--dtype", help="Element type of weights and activations.")] = DType.float32,
    depth: Annotated[
        Optional[int], typer.Option("--depth", min=1, help="Roll layers up to module paths of this many components.")
    ] = None,
    top: Annotated[Optional[int], typer.Option("--top", min=1, help="Show only the first N rows (after --sort).")] = None,
    sort: Annotated[SortKey, typer.Option("--sort", help="Row order: execution order or a descending quantity.")] = SortKey.order,
    fmt: FormatOption = OutputFormat.table,
    out: OutOption = None,
    crosscheck: Annotated[
        bool,
        typer.Option("--crosscheck", help="Show thop's and PyTorch FlopCounterMode's totals beside lwprof's, and what each counts."),
    ] = False,
) -> None:
    """Per-layer FLOPs, MACs, params and memory access (eager and fused) of a model."""
    from lwprof.profile_command import run_profile

    run_profile(
        spec,
        input_shape=input_shape,
        batch_size=batch_size,
        dtype=dtype.value,
        depth=depth,
        top=top,
        sort=sort.value,
        fmt=fmt,
        out=out,
        crosscheck=crosscheck,
    )


def main() -> None:
    app()
