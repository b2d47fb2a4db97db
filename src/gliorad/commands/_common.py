"""Shared pieces of the command modules."""

from __future__ import annotations

import typer

from gliorad.errors import GlioradInputError


def fail(err: GlioradInputError) -> None:
    """Print one ``error: ...`` line per problem on stderr and exit with code 2 (bad input)."""
    for line in err.problems:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(2)
