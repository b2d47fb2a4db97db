"""``gliorad run`` (the whole pipeline from a config) and ``gliorad config show|check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gliorad.commands._common import SchedulerOpt, fail
from gliorad.errors import GlioradInputError

config_app = typer.Typer(help="Run configurations: show a documented preset, check a file.",
                         no_args_is_help=True)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``section.key.sub=value`` strings (values parsed as YAML) into a nested mapping."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
            raise GlioradInputError(f"--set {item!r}: expected section.key=value, e.g. "
                                    "segmentation.train.epochs=40")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise GlioradInputError(f"--set {item!r}: value is not valid YAML ({err})") from err
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise GlioradInputError(f"--set {item!r}: {p!r} is given both as a value and a section")
        node[parts[-1]] = value
    return out


def run(
    config: Annotated[str, typer.Argument(help="Run config YAML, or a preset name (demo, paper, best).")],
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Folder of the run's stages.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a setting: section.key=value (repeatable).")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Redo this stage (repeatable).")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Redo this stage and all after it.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Run the pipeline of CONFIG in a workspace; rerun to resume (finished stages are skipped)."""
    from gliorad.settings import merge
    from gliorad.workflow import run_workflow, summary_lines

    try:
        overrides = parse_overrides(set_)
        if scheduler is not None:  # the same as --set run.executor=dask --set run.scheduler=ADDR
            address = None if scheduler.strip() == "local" else scheduler
            overrides = merge(overrides, {"run": {"executor": "dask", "scheduler": address}})
        run_workflow(config, workspace, overrides=overrides, force=tuple(force or ()),
                     from_stage=from_stage, until=until, echo=typer.echo)
    except GlioradInputError as err:
        fail(err)
    for line in summary_lines(workspace):
        typer.echo(line)


@config_app.command("show")
def show(preset: Annotated[str, typer.Argument(help="demo, paper or best")] = "demo") -> None:
    """Print a documented preset to start a config file from."""
    from gliorad.run_config import preset_text

    try:
        typer.echo(preset_text(preset), nl=False)
    except GlioradInputError as err:
        fail(err)


@config_app.command("check")
def check(
    config: Annotated[str, typer.Argument(help="Run config YAML, or a preset name.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value")] = None,
) -> None:
    """Validate a config and print it with every preset expanded.

    Also checks what the clinical table allows before any stage runs (each enabled analysis has
    its columns and patients; the grading split can be made) and prints, on stderr, what the
    resolution changed (stages turned off, sequences taken from the cohort) and which patients
    each analysis will leave out."""
    import yaml

    from gliorad.run_config import check_run_inputs, load_run_config

    try:
        cfg = load_run_config(config, parse_overrides(set_))
        notes = [*cfg.notes, *check_run_inputs(cfg)]
    except GlioradInputError as err:
        fail(err)
    typer.echo(yaml.safe_dump(cfg.resolved(), sort_keys=False), nl=False)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
