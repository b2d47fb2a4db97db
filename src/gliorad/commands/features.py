"""``gliorad features ...``: radiomics, ICC agreement between masks, coordinate cropping.

Thin layer over :mod:`gliorad.features.radiomics`, :mod:`gliorad.features.agreement` and
:mod:`gliorad.crop`; heavy modules are imported inside the commands. Exit 2 lists each problem on
its own ``error:`` line; for radiomics and cropping the cases that succeeded are written first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import (
    NonfiniteOpt,
    OutOpt,
    ProgressOpt,
    SchedulerOpt,
    check_jobs,
    command_group,
    executor_of,
    exit_on_input_error,
)
from gliorad.errors import GlioradInputError

app = command_group(
    "features", "Radiomics (pyradiomics) from automatic and manual masks, ICC agreement, cropping.")

# The argument and option radiomics and crop take alike.
CohortDirArg = Annotated[Path, typer.Argument(help="Cohort folder (BraTS naming or --config).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML config (cohort section).")]
MasksOpt = Annotated[Path | None, typer.Option(
    "--masks", help="Folder of automatic masks (<id>_seg.nii.gz or <id>.nii.gz); without it the "
    "cohort's manual seg files are the masks.")]


def _csv_list(value: str | None, name: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise GlioradInputError(f"{name} {value!r}: expected a comma-separated list")
    return items


def _int_tuple(value: str, name: str, n: int) -> tuple[int, ...]:
    parts = [v.strip() for v in value.replace("x", ",").split(",") if v.strip()]
    try:
        out = tuple(int(v) for v in parts)
    except ValueError as err:
        raise GlioradInputError(f"{name} {value!r}: expected {n} integers such as 96,128,96") from err
    if len(out) != n or any(v < 1 for v in out):
        raise GlioradInputError(f"{name} {value!r}: expected {n} positive integers")
    return out


def _margin(value: str) -> int | tuple[int, ...]:
    """``--margin``: one number of voxels for every axis, or z,y,x (checked by crop_cohort)."""
    parts = [v.strip() for v in value.split(",") if v.strip()]
    try:
        out = tuple(int(v) for v in parts)
    except ValueError as err:
        raise GlioradInputError(
            f"--margin {value!r}: expected a number of voxels such as 8, or z,y,x such as 4,8,8"
        ) from err
    return out[0] if len(out) == 1 else out


def _cohort(cohort_dir: Path, config: Path | None):
    from gliorad.cohort import discover_cohort
    from gliorad.config import load_config

    cfg = load_config(config).cohort if config is not None else None
    return discover_cohort(cohort_dir, cfg)


def _region(value: str):
    from gliorad.features.radiomics import REGIONS

    if value in REGIONS:
        return value
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as err:
        raise GlioradInputError(
            f"--region {value!r}: expected one of {', '.join(REGIONS)} or labels such as 1,4"
        ) from err


def _rings(value: str | None) -> tuple[float, ...]:
    """``--peritumoural-mm 0,5,10`` as ring boundaries (the rule of ring_bounds)."""
    from gliorad.features.config import ring_problem

    if value is None:
        return ()
    usage = "expected comma-separated ring boundaries in mm such as 0,5,10"
    try:
        rings, problem = ring_problem([float(v) for v in value.split(",") if v.strip()])
    except ValueError:
        rings, problem = (), usage
    if problem or not rings:
        raise GlioradInputError(f"--peritumoural-mm {value!r}: {problem or usage}")
    return rings


@app.command()
def radiomics(
    cohort_dir: CohortDirArg,
    out: Annotated[Path, typer.Option("--out", help="Output folder (tables, cache, provenance).")],
    masks: MasksOpt = None,
    manual: Annotated[bool, typer.Option(
        help="Also use the cohort's manual seg files as a mask source.")] = True,
    preset: Annotated[str, typer.Option(help="Parameter preset: fast, paper or paper788.")] = "fast",
    params: Annotated[Path | None, typer.Option(
        help="A pyradiomics parameter file (YAML/JSON); replaces --preset.")] = None,
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated sequences (default: the cohort's), e.g. t1,t1ce,t2,flair.")] = None,
    region: Annotated[str, typer.Option(
        help="Region: whole (label > 0), core (1,4), enhancing (4), or labels like 1,4.")] = "whole",
    min_voxels: Annotated[int, typer.Option(min=1, help="Smallest region accepted.")] = 27,
    jobs: Annotated[int, typer.Option(help="Parallel cases; -1 = all cores.")] = -1,
    progress: ProgressOpt = True,
    overwrite: Annotated[bool, typer.Option(help="Ignore the cache and compute every case.")] = False,
    config: ConfigOpt = None,
    peritumoural_mm: Annotated[str | None, typer.Option(
        "--peritumoural-mm", help="Ring boundaries in mm, e.g. 0,5,10: first-order features in "
        "the rings 0-5 and 5-10 mm outside the region (columns <seq>_peri0-5mm_firstorder_*).")
    ] = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Radiomics per patient, sequence and mask source; one table per source (CSV, Parquet)."""
    from gliorad.errors import check_option
    from gliorad.features.radiomics import PRESETS, RadiomicsFailedError, extract_radiomics

    with exit_on_input_error():
        if params is None:
            check_option("--preset", preset, PRESETS)
        check_jobs(jobs)
        rings = _rings(peritumoural_mm)
        cohort = _cohort(cohort_dir, config)
        try:
            result = extract_radiomics(
                cohort, out, params=params if params is not None else preset,
                sequences=_csv_list(sequences, "--sequences"), manual=manual, auto_masks=masks,
                region=_region(region), min_voxels=min_voxels, n_jobs=jobs, progress=progress,
                overwrite=overwrite, raise_on_failure=True, peritumoural_mm=rings,
                executor=executor_of(scheduler, jobs),
            )
        except RadiomicsFailedError as err:
            _summary(err.result)  # the cases that succeeded were written
            raise
    _summary(result)


def _summary(result) -> None:
    for source, table in result.tables.items():
        typer.echo(f"{source}: {len(table)} patients x {table.shape[1]} features -> "
                   f"{result.out_dir / f'radiomics_{source}.csv'}")
    typer.echo(f"cases computed {result.n_computed}, from cache {result.n_cached}, "
               f"failed {len(result.failures)}")
    for note in result.notes:
        typer.echo(f"note: {note}")


@app.command()
def agreement(
    auto_table: Annotated[Path, typer.Argument(help="Features from automatic masks (CSV/Parquet).")],
    manual_table: Annotated[Path, typer.Argument(help="Features from manual masks (CSV/Parquet).")],
    out: OutOpt,
    second_rater: Annotated[Path | None, typer.Option(
        help="Features from a second rater's manual masks (inter-observer ICC).")] = None,
    kind: Annotated[str, typer.Option(help="ICC(2,1) (absolute agreement) or ICC(3,1).")] = "ICC(2,1)",
    threshold: Annotated[float, typer.Option(help="ICC threshold for reliable features.")] = 0.75,
    by: Annotated[str, typer.Option(help="Compare 'icc' or its lower CI limit 'ci_low'.")] = "icc",
    keep: Annotated[bool, typer.Option(
        help="Write the automatic-mask table restricted to the reliable features.")] = True,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """Per-feature ICC between mask sources: table, summary, histogram, reliable features."""
    from gliorad.features.agreement import run_agreement

    with exit_on_input_error():
        res = run_agreement(auto_table, manual_table, out, second_rater=second_rater, kind=kind,
                            threshold=threshold, by=by, keep=keep, nonfinite=nonfinite)
    for line in res.notes:
        typer.echo(f"warning: {line}", err=True)
    for name, s in res.summary.items():
        if s["n_defined"]:
            typer.echo(f"{name}: ICC {s['min']:.3f} to {s['max']:.3f} (median {s['median']:.3f}); "
                       f"{s['n_above']}/{s['n_defined']} features > {threshold:g}"
                       + (f"; {s['n_undefined']} undefined" if s["n_undefined"] else ""))
        else:
            typer.echo(f"{name}: no feature has a defined ICC ({s['n_undefined']} undefined)")
    typer.echo(f"{len(res.reliable)} reliable features -> {out / 'reliable_features.txt'}")


@app.command()
def crop(
    cohort_dir: CohortDirArg,
    out: Annotated[Path, typer.Option("--out", help="Output folder (one sub-folder per patient).")],
    masks: MasksOpt = None,
    size: Annotated[str, typer.Option(help="Patch size z,y,x in voxels (paper 96,128,96).")] = "96,128,96",
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated sequences for the patch channels (default: the cohort's).")] = None,
    slice_sequences: Annotated[str, typer.Option(
        help="Largest-slice channels (paper t1,t2,t1ce); 'none' to skip.")] = "t1,t2,t1ce",
    slice_size: Annotated[str, typer.Option(help="Largest-slice size y,x.")] = "240,240",
    complete_size: Annotated[str, typer.Option(
        help="Complete-MRI volume size z,y,x; 'none' to skip.")] = "96,128,96",
    fmt: Annotated[str, typer.Option("--format", help="npy or nifti.")] = "npy",
    border: Annotated[str, typer.Option(help="pad (centred, padded) or shift (inside image).")] = "pad",
    margin: Annotated[str, typer.Option(
        help="Voxels of context kept around the tumour's box (one number, or z,y,x); a tumour "
        "whose box plus margins exceeds the patch is resampled down until both fit. 0: the "
        "paper's cropping.")] = "0",
    jobs: Annotated[int, typer.Option(help="Parallel patients; -1 = all cores.")] = -1,
    overwrite: Annotated[bool, typer.Option(help="Redo patients already cropped.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Coordinate cropping: tumour-centred patches, largest-area slices, complete volumes."""
    from gliorad.crop import CropFailedError, crop_cohort

    with exit_on_input_error():
        check_jobs(jobs)
        cohort = _cohort(cohort_dir, config)
        try:
            res = crop_cohort(
                cohort, out, masks=masks, sequences=_csv_list(sequences, "--sequences"),
                size=_int_tuple(size, "--size", 3),
                slice_sequences=None if slice_sequences.lower() == "none"
                else _csv_list(slice_sequences, "--slice-sequences"),
                slice_size=_int_tuple(slice_size, "--slice-size", 2),
                complete_size=None if complete_size.lower() == "none"
                else _int_tuple(complete_size, "--complete-size", 3),
                fmt=fmt, border=border, margin=_margin(margin), n_jobs=jobs, overwrite=overwrite,
            )
        except CropFailedError as err:
            _crop_summary(err.result)  # the patients that succeeded were written
            raise
    _crop_summary(res)


def _crop_summary(res) -> None:
    typer.echo(f"cropped {len(res.records)} patients ({res.n_skipped} already done) -> {res.out_dir}")
    if res.downscaled:
        typer.echo(f"note: tumour larger than the patch, resampled down: {', '.join(res.downscaled)}")
