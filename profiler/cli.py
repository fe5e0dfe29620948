"""The ``lwprof`` command line: one Typer app, shared option types, one console.

Results go to stdout, progress and diagnostics to stderr. Heavy packages
(torch, onnxruntime, matplotlib) are imported inside the commands that need
them, so ``lwprof --help`` and ``lwprof --version`` stay instant.
"""

from __future__ import annotations

import functools
from typing import Annotated

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


def main() -> None:
    app()
