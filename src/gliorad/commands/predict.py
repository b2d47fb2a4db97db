"""``gliorad predict PATIENT_DIR --bundle DIR --out DIR``: one patient through a model bundle.

Registered in :mod:`gliorad.cli` with ``app.command("predict")(predict_cmd)``; ``app`` here is a
one-command typer app for tests. Only typer and the standard library are imported at module
level; the library is imported inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def parse_clinical_args(items: list[str] | None) -> dict[str, str]:
    """``["age=45", "sex=F,grade=III"]`` -> ``{"age": "45", "sex": "F", "grade": "III"}``."""
    from gliorad.errors import GlioradInputError

    out: dict[str, str] = {}
    problems = []
    for item in items or []:
        for pair in (p.strip() for p in item.split(",")):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not key or not value:
                problems.append(f"--clinical {pair!r} is not valid; expected KEY=VALUE, e.g. "
                                "age=45 sex=F grade=III")
            elif key in out and out[key] != value:
                problems.append(f"--clinical {key} given twice ({out[key]!r} and {value!r})")
            else:
                out[key] = value
    if problems:
        raise GlioradInputError(problems)
    return out


def predict_cmd(
    patient_dir: Annotated[Path, typer.Argument(help="Folder with one patient's MRI (BraTS 2018/2023 "
                                                     "naming, or the bundle's file templates; raw "
                                                     "files or a DICOM export when the bundle's "
                                                     "run preprocessed).")],
    bundle: Annotated[Path, typer.Option("--bundle", help="Model bundle folder (gliorad run).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: mask.nii.gz, features.csv, "
                                                    "prediction.json, summary.html.")],
    clinical: Annotated[list[str] | None, typer.Option(
        "--clinical", help="Clinical factor for the nomograms as KEY=VALUE (repeat, or separate "
                           "with commas), e.g. --clinical age=45 --clinical sex=F,grade=III.")] = None,
    mask: Annotated[Path | None, typer.Option(
        "--mask", help="Tumour mask on the images' grid to use instead of the bundle's "
                       "segmentation.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Processes for the radiomics (-1: all cores).")] = 1,
) -> None:
    """Grade probability, signature risk group and nomogram survival of one patient (the parts
    the bundle has); prints the prediction as JSON, with a warning for each value outside the
    bundle's training data."""
    from gliorad.errors import GlioradInputError

    try:
        from gliorad.predict import predict_patient

        values = parse_clinical_args(clinical)
        result = predict_patient(patient_dir, bundle, out, clinical=values, mask=mask, n_jobs=jobs)
    except GlioradInputError as err:
        fail(err)
    typer.echo(json.dumps(result, indent=2, sort_keys=True))


app.command()(predict_cmd)
