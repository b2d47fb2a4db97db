"""Command line: a thin layer over the library API.

Exit codes: 0 success, 2 bad input (one line per problem, naming file/row and value), 1 internal
error. Heavy modules are imported inside the commands so that ``gliorad --help`` is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gliorad import __version__
from gliorad.commands._common import SchedulerOpt, command_group, executor_of, exit_on_input_error
from gliorad.commands._common import fail as _fail
from gliorad.commands.deep import app as deep_app
from gliorad.commands.dicom import app as dicom_app
from gliorad.commands.features import app as features_app
from gliorad.commands.grade import app as grade_app
from gliorad.commands.importer import app as import_app
from gliorad.commands.predict import predict_cmd
from gliorad.commands.preprocess import preprocess_cmd
from gliorad.commands.report import report as report_cmd
from gliorad.commands.run import config_app
from gliorad.commands.run import run as run_cmd
from gliorad.commands.segment import app as segment_app
from gliorad.commands.serve import serve_cmd
from gliorad.commands.survival import app as survival_app
from gliorad.errors import GlioradInputError

app = command_group(
    "gliorad", "Automated glioma grading and LGG survival prediction from brain MRI (Xu et al. 2022).")
# Per-stage command groups (each module imports only typer at import time).
features_app.add_typer(deep_app, name="deep")
app.add_typer(features_app, name="features")
app.add_typer(grade_app, name="grade")
app.command("preprocess")(preprocess_cmd)
app.add_typer(dicom_app, name="dicom")
app.add_typer(import_app, name="import")
app.add_typer(segment_app, name="segment")
app.add_typer(survival_app, name="survival")
app.command("run")(run_cmd)
app.add_typer(config_app, name="config")
app.command("report")(report_cmd)
app.command("predict")(predict_cmd)
app.command("serve")(serve_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gliorad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """gliorad command line."""


def _load_config(config: Path | None):
    from gliorad.config import GlioradConfig, load_config

    return load_config(config) if config is not None else GlioradConfig()


@app.command()
def validate(
    cohort_dir: Annotated[Path, typer.Argument(help="Folder of patients (BraTS naming or custom).")],
    clinical: Annotated[Path | None, typer.Option(help="Clinical table (CSV/TSV).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config (cohort / clinical sections).")] = None,
    sequences: Annotated[
        str | None, typer.Option(help="Comma-separated sequences to require, e.g. t1ce,flair.")
    ] = None,
    naming: Annotated[str | None, typer.Option(help="auto, brats2018, brats2023 or custom.")] = None,
    time_unit: Annotated[str | None, typer.Option(help="Unit of os_time: days, months, years.")] = None,
    require_seg: Annotated[bool, typer.Option(help="Every patient must have a segmentation.")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Patients checked in parallel.")] = 2,
    scheduler: SchedulerOpt = None,
) -> None:
    """Check that a cohort folder (and clinical table) is usable: exit 0, or 2 listing problems."""
    from gliorad.errors import check_option
    from gliorad.validation import validate as run_validate

    with exit_on_input_error():
        cfg = _load_config(config)
        cohort_upd: dict = {}
        if sequences:
            cohort_upd["sequences"] = [s.strip() for s in sequences.split(",") if s.strip()]
        if naming:
            cohort_upd["naming"] = naming
        if require_seg:
            cohort_upd["require_seg"] = True
        clin_upd: dict = {}
        if time_unit:
            clin_upd["time_unit"] = check_option("--time-unit", time_unit, ["days", "months", "years"])
        cfg = cfg.model_copy(update={
            "cohort": cfg.cohort.model_copy(update=cohort_upd),
            "clinical": cfg.clinical.model_copy(update=clin_upd),
        })
        clinical = clinical if clinical is not None else cfg.clinical.path
        report = run_validate(cohort_dir, clinical, cfg, n_jobs=jobs,
                              executor=executor_of(scheduler, jobs))
    if not report.ok:
        _fail(GlioradInputError(report.problems))
    typer.echo(f"ok: {report.summary()}")


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the synthetic cohort into.")],
    patients: Annotated[int, typer.Option(min=2, help="Number of patients.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 0,
    spacing: Annotated[float, typer.Option(min=1.0, max=4.0, help="Isotropic voxel size in mm.")] = 2.0,
    hgg_fraction: Annotated[float, typer.Option(min=0.05, max=0.95, help="Expected HGG share.")] = 0.5,
    jobs: Annotated[int, typer.Option(min=1, help="Patients rendered in parallel.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing cohort in OUT_DIR.")] = False,
) -> None:
    """Generate a realistic synthetic two-centre glioma cohort with known ground truth."""
    from gliorad.synthetic import SynthConfig, generate_cohort

    with exit_on_input_error():
        cfg = SynthConfig(n_patients=patients, seed=seed, spacing=spacing, hgg_fraction=hgg_fraction)
        result = generate_cohort(out_dir, cfg, n_jobs=jobs, overwrite=overwrite)
    typer.echo(f"wrote {result.n_patients} patients to {result.root} "
               f"({result.n_hgg} HGG, {result.n_lgg} LGG; clinical.csv, truth.json, cohort.yaml)")


@app.command()
def demo(
    workspace: Annotated[Path, typer.Option(help="Folder for the demo's stages and outputs.")] = Path(
        "demo_workspace"
    ),
    patients: Annotated[int | None, typer.Option(min=40, help="Synthetic patients (preset: 240).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (preset: 0).")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Parallel workers (preset: 2).")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Redo this stage (repeatable).")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Redo this stage and all after it.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
) -> None:
    """The whole pipeline on a synthetic two-centre cohort, with the HTML report
    (= gliorad run demo; resumable)."""
    from gliorad.demo import run_demo

    with exit_on_input_error():
        run_demo(workspace, n_patients=patients, seed=seed, n_jobs=jobs, echo=typer.echo,
                 force=tuple(force or ()), from_stage=from_stage, until=until)


def main() -> None:  # console entry point
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
