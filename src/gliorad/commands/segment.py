"""``gliorad segment train|predict|evaluate``: a thin layer over :mod:`gliorad.segmentation`.

Only typer, the standard library and :mod:`gliorad.commands._common` are imported at module
import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import (
    ProgressOpt,
    SchedulerOpt,
    check_jobs,
    command_group,
    executor_of,
    exit_on_input_error,
)

app = command_group("segment",
                    "Tumour segmentation with the paper's 3D U-Net: train, predict, evaluate.")


def _cohort(root: Path, naming: str | None, sequences: list[str] | None = None):
    from gliorad.cohort import discover_cohort
    from gliorad.config import CohortConfig

    upd: dict = {}
    if naming:
        upd["naming"] = naming
    if sequences:
        upd["sequences"] = sequences
    return discover_cohort(root, CohortConfig(**upd))


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


Naming = Annotated[str | None, typer.Option(help="Cohort naming: auto, brats2018, brats2023.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the config's).")]


@app.command()
def train(
    cohort_dir: Annotated[Path, typer.Argument(help="Cohort folder with images and manual masks.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    config: Annotated[str, typer.Option(help="Preset (paper, demo, auto) or a YAML file.")] = "paper",
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the number of epochs.")] = None,
    minutes: Annotated[float | None, typer.Option(
        min=0.01, help="Time budget of the training loop per fold (no epoch starts after it).")] = None,
    folds: Annotated[int | None, typer.Option(
        min=1, help="k-fold training, the folds ensembled at prediction (1: one network).")] = None,
    sequences: Annotated[str | None, typer.Option(help="Comma-separated input sequences.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    device: Device = None,
    naming: Naming = None,
    overwrite: Overwrite = False,
    progress: ProgressOpt = True,
    cache_dir: Annotated[str | None, typer.Option(
        help="Folder of ready volumes (float32 .npy) kept for later runs with the same inputs and "
             "settings; 'none' for no disk cache (default: only volumes beyond the memory "
             "budget, in $GLIORAD_CACHE_DIR or ~/.cache/gliorad/volumes).")] = None,
) -> None:
    """Train the U-Net on every patient with a manual mask (a seeded part is held out for
    validation). An interrupted run resumes; a finished one with the same settings is kept.

    On several GPUs or machines: torchrun --nproc_per_node N $(which gliorad) segment train ...
    (PyTorch DDP; docs/scaling.md)."""
    import os

    from gliorad.segmentation import load_segmentation_config, train_segmentation, with_overrides

    with exit_on_input_error():
        cfg = load_segmentation_config(config)
        cfg = with_overrides(cfg, epochs=epochs, sequences=_split(sequences), seed=seed, device=device,
                             minutes=minutes, folds=folds)
        cohort = _cohort(cohort_dir, naming, cfg.sequences)
        disk = None if cache_dir is None else False if cache_dir.lower() == "none" else Path(cache_dir)
        res = train_segmentation(cohort, out, cfg, overwrite=overwrite, progress=progress,
                                 cache_dir=disk)
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports
        return
    if res.skipped:
        typer.echo(f"{out}: model already trained with these settings (skipped; --overwrite to retrain)")
        return
    fit = res.fit
    if res.folds:
        runs = ", ".join(str(f.epochs_run) for f in res.folds)
        typer.echo(f"trained {len(res.folds)} folds on {len(res.train_ids)} patients (each "
                   f"validating on its held-out part); epochs per fold {runs}; model in {out}")
        return
    typer.echo(
        f"trained on {len(res.train_ids)} patients, validated on {len(res.val_ids)}; "
        f"{fit.epochs_run} epochs, best {cfg.train.monitor} {fit.best_value} at epoch {fit.best_epoch}"
        f"{' (stopped early)' if fit.stopped_early else ''}"
        f"{' (time budget spent)' if fit.stopped_by_time else ''}; model in {out}"
    )


@app.command()
def predict(
    cohort_dir: Annotated[Path, typer.Argument(help="Cohort folder with the model's sequences.")],
    model: Annotated[Path, typer.Option("--model", help="Model folder from 'segment train'.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <patient>.nii.gz masks.")],
    tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Flip test-time augmentation.")] = None,
    device: Device = None,
    naming: Naming = None,
    overwrite: Overwrite = False,
    progress: ProgressOpt = True,
    scheduler: SchedulerOpt = None,
) -> None:
    """Predict a tumour mask for every patient, in the geometry of its images."""
    from gliorad.segmentation import load_model, predict_cohort

    upd: dict = {}
    if tta is not None:
        upd["tta"] = tta
    if device is not None:
        upd["device"] = device
    with exit_on_input_error():
        m = load_model(model, inference=upd)
        cohort = _cohort(cohort_dir, naming, m.config.sequences)
        prov = predict_cohort(cohort, m, out, overwrite=overwrite, progress=progress,
                              executor=executor_of(scheduler))
    typer.echo(f"{len(prov['patients'])} masks in {out} ({prov['label_mode']} labels: {prov['labels']})")


@app.command()
def evaluate(
    mask_dir: Annotated[Path, typer.Argument(help="Folder of predicted <patient>.nii.gz masks.")],
    cohort_dir: Annotated[Path, typer.Argument(help="Cohort folder with the manual masks.")],
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json/.csv (default MASK_DIR).")] = None,
    label_mode: Annotated[str | None, typer.Option(help="wt or regions (default: from prediction.json).")] = None,
    naming: Naming = None,
    jobs: Annotated[int, typer.Option(help="Parallel patients; -1 = all cores.")] = -1,
    scheduler: SchedulerOpt = None,
) -> None:
    """Dice and HD95 per patient and summary (mean, median, bootstrap 95% CI)."""
    from gliorad.segmentation import evaluate_masks

    with exit_on_input_error():
        cohort = _cohort(cohort_dir, naming)
        res = evaluate_masks(mask_dir, cohort, out_dir=out, label_mode=label_mode,
                             jobs=check_jobs(jobs), executor=executor_of(scheduler, jobs))
    s = res.summary
    typer.echo(f"{s['n_patients']} patients")
    typer.echo(f"{'region':<6} {'metric':<8} {'mean':>8} {'median':>8} {'95% CI':>19} {'n':>4}")
    for name in ("WT", "TC", "ET"):
        if name not in s:
            continue
        for metric in ("dice", "hd95_mm"):
            m = s[name][metric]
            if not m["n"]:
                typer.echo(f"{name:<6} {metric:<8} {'-':>8} {'-':>8} {'-':>19} {0:>4}")
                continue
            ci = f"{m['ci95_low']:.3f}-{m['ci95_high']:.3f}"
            typer.echo(f"{name:<6} {metric:<8} {m['mean']:>8.3f} {m['median']:>8.3f} {ci:>19} {m['n']:>4}")
        und = s[name]["hd95_undefined"]
        if und["n"]:
            typer.echo(f"{name}: HD95 undefined for {und['n']} patients (one mask empty): "
                       f"{', '.join(und['patients'])}")
    for key, what in (("patients_without_mask", "patients with a manual mask but no prediction"),
                      ("masks_without_manual_segmentation", "masks without a manual segmentation")):
        if s[key]:
            typer.echo(f"{what}: {', '.join(s[key])}")
    typer.echo(f"wrote {res.json_path} and {res.csv_path}")
