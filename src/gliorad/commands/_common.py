"""Shared pieces of the command modules: the command-group factory, the exit on bad input, the
end of a per-patient batch, option types that several commands declare with the same name and
help, and option groups (:class:`Options`, :func:`with_options`) for the options several commands
of one group take together.

Only typer, the standard library and :mod:`gliorad.errors` are imported here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, NoReturn

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


def executor_of(scheduler: str | None, jobs: int = 2) -> Any:
    """``--scheduler``: None (this machine), or the :class:`gliorad.executor.Executor` of a
    Dask cluster at that address (``local``: a local Dask cluster of ``jobs`` workers, -1: one
    per core)."""
    import os

    from gliorad.executor import Executor

    workers = jobs if jobs > 0 else (os.cpu_count() or 2)
    return Executor.from_options(scheduler, workers, echo=lambda line: typer.echo(line, err=True))


def echo_batch(result: Any, summary: str) -> None:
    """The end of a per-patient batch (``result``: ``warnings`` by patient, ``ok``,
    ``problems``): each warning as ``warning: patient <id>: ...`` on stderr, then ``summary``;
    exit 2 listing the problems when a patient failed (the others have been written)."""
    for pid, lines in sorted(result.warnings.items()):
        for line in lines:
            typer.echo(f"warning: patient {pid}: {line}", err=True)
    typer.echo(summary)
    if not result.ok:
        fail(GlioradInputError(result.problems))


class Options:
    """Options that several commands take together, declared once as the parameters of a
    ``template`` function (never called). A command decorated with :func:`with_options` takes
    them through a parameter whose default is the group (``run: SimpleNamespace = RUN``)."""

    def __init__(self, template: Callable[..., None]) -> None:
        self.parameters = tuple(inspect.signature(template, eval_str=True).parameters.values())

    def without(self, *names: str) -> Options:
        """The group less the options ``names`` (for a command that lacks them)."""
        unknown = set(names) - {p.name for p in self.parameters}
        if unknown:
            raise ValueError(f"no option(s) {sorted(unknown)} in this group")
        return self._of(p for p in self.parameters if p.name not in names)

    def plus(self, name: str, annotation: Any, default: Any = None) -> Options:
        """The group and then one more option (``annotation``: its ``Annotated`` type)."""
        more = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                 annotation=annotation)
        return self._of((*self.parameters, more))

    @classmethod
    def _of(cls, parameters: Iterable[inspect.Parameter]) -> Options:
        group = object.__new__(cls)
        group.parameters = tuple(parameters)
        return group


def with_options(func: Callable[..., None]) -> Callable[..., None]:
    """A decorator (under ``@app.command()``): each parameter of ``func`` whose default is an
    :class:`Options` group stands for the group's options, in its place (typer reads them from
    the signature); ``func`` receives their values together in that parameter, as a namespace
    (``run.seed``)."""
    parameters: list[inspect.Parameter] = []
    groups: dict[str, list[str]] = {}
    for p in inspect.signature(func, eval_str=True).parameters.values():
        if isinstance(p.default, Options):
            groups[p.name] = [q.name for q in p.default.parameters]
            parameters += p.default.parameters
        else:
            parameters.append(p)

    def command(**kwargs: Any) -> None:
        for name, members in groups.items():
            kwargs[name] = SimpleNamespace(**{m: kwargs.pop(m) for m in members})
        func(**kwargs)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__name__, command.__qualname__, command.__doc__, command.__module__ = (
        func.__name__, func.__qualname__, func.__doc__, func.__module__)
    return command


# Option types shared by several commands (a command whose wording differs declares its own).
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
PresetOpt = Annotated[str, typer.Option(help="Settings preset: paper or demo.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Run the per-case work on a Dask cluster: its scheduler's address "
    "(tcp://host:8786; the workers need the same environment and the same paths to the files), "
    "or 'local' for a local Dask cluster of --jobs workers. Default: this machine.")]
NonfiniteOpt = Annotated[str, typer.Option(
    "--nonfinite", help="Feature-table cells with spreadsheet errors (#DIV/0!, #N/A, ...) or "
    "infinite values: 'missing' (read as missing, counted per column in a warning and in "
    "metrics.json, or agreement.json) or 'error' (refused, naming column and patient; so is a "
    "column empty for every patient).")]
