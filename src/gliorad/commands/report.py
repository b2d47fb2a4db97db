"""``gliorad report WORKSPACE``: the HTML report of a workspace (a thin layer over
:mod:`gliorad.report`). Only typer and the standard library are imported at module import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import fail
from gliorad.errors import GlioradInputError


def report(
    workspace: Annotated[Path, typer.Argument(
        help="Workspace of 'gliorad run' or 'gliorad demo'.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Report folder (default: WORKSPACE/report).")] = None,
) -> None:
    """Build one self-contained HTML report (figures embedded; also as PNG and SVG) and print
    its path. Sections whose stage has not run say so."""
    from gliorad.report import build_report, inputs_from_workspace

    try:
        inputs = inputs_from_workspace(workspace)
        path = build_report(inputs, out if out is not None else Path(workspace) / "report")
    except GlioradInputError as err:
        fail(err)
    typer.echo(str(path))
