"""Shared pieces of the command modules: the command-group factory, the exit on bad input, and
option types that several commands declare with the same name and help.

Only typer, the standard library and :mod:`gliorad.errors` are imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gliorad.errors import GlioradInputError


def command_group(name: str, help: str) -> typer.Typer:
    """A typer app for one stage's sub-commands, set up as every gliorad group is: help when called
    without a sub-command, no shell-completion options, plain tracebacks."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False)


def fail(err: GlioradInputError) -> NoReturn:
    """Print one ``error: ...`` line per problem on stderr and exit with code 2 (bad input)."""
    for line in err.problems:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(2)


@contextmanager
def exit_on_input_error() -> Iterator[None]:
    """``with exit_on_input_error(): ...``: a :class:`GlioradInputError` raised in the block exits
    through :func:`fail`."""
    try:
        yield
    except GlioradInputError as err:
        fail(err)


def check_jobs(jobs: int) -> int:
    """``--jobs`` for joblib-style workers: a positive number, or -1 for all cores."""
    if jobs == 0 or jobs < -1:
        raise GlioradInputError(f"--jobs {jobs}: expected a positive number or -1 (all cores)")
    return jobs


# Option types shared by several commands (a command whose wording differs declares its own).
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
PresetOpt = Annotated[str, typer.Option(help="Settings preset: paper or demo.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
NonfiniteOpt = Annotated[str, typer.Option(
    "--nonfinite", help="Feature-table cells with spreadsheet errors (#DIV/0!, #N/A, ...) or "
    "infinite values: 'missing' (read as missing, counted per column in a warning and in "
    "metrics.json, or agreement.json) or 'error' (refused, naming column and patient; so is a "
    "column empty for every patient).")]
