"""``gliorad features deep ...``: the paper's deep-feature CNNs.

* ``cnn3d``: 3D ResNet18 (+ SE) on tumour patches (or the complete MRI), trained on HGG vs LGG;
  512 features per patient, the CNN's own HGG probabilities, held-out grade AUC (DeLong CI);
  ``--cv-folds K`` adds out-of-fold probabilities for every patient (K more networks).
* ``cnn2d``: 2D ResNet18 dual-task (grade II vs III + survival) on the largest tumour slice,
  ImageNet-initialised from a local torchvision-format file (``--imagenet-weights``);
  ``--cross-fit K`` adds cross-fitted head outputs for the survival signature (K more networks,
  :func:`gliorad.features.deep2d.cnn2d_cross_fit`).

Thin layer over :mod:`gliorad.features.deep3d` and :mod:`gliorad.features.deep2d` (imported
inside the commands). The networks are trained on the training patients only: ``--train-ids``
(a file) or a seeded stratified split (``--test-fraction``); features are written for every
patient. Exit 2 lists each problem on its own ``error:`` line. The argument and options both
commands take are declared once (:func:`_leading_options` with each network's ``--config``,
:data:`SHARED`) and added around each command's own options by
:func:`~gliorad.commands._common.with_options`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, NamedTuple

import typer

from gliorad.commands._common import (
    Options,
    ProgressOpt,
    SchedulerOpt,
    check_jobs,
    command_group,
    executor_of,
    exit_on_input_error,
    with_options,
)
from gliorad.errors import GlioradInputError

app = command_group(
    "deep",
    "Deep CNN features: 3D ResNet18(+SE) on patches, 2D dual-task ResNet18 on largest slices.")

def read_ids(path: Path, option: str) -> list[str]:
    """Patient ids from a file: one per line (or the first column of a CSV); blank lines, lines
    starting with ``#`` and a ``patient_id`` header are ignored."""
    if not path.is_file():
        raise GlioradInputError(f"{option} {path}: file not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split(",")[0].strip().strip('"')
        if not text or text.startswith("#") or text.lower() in ("patient_id", "id"):
            continue
        ids.append(text)
    if not ids:
        raise GlioradInputError(f"{option} {path}: no patient id in the file")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise GlioradInputError(f"{option} {path}: patient id(s) repeated: {dup[:10]}")
    return ids


def _setup(cohort_dir: Path, clinical: Path | None, cohort_config: Path | None):
    from gliorad.clinical import read_clinical
    from gliorad.cohort import discover_cohort
    from gliorad.config import load_config

    gcfg = load_config(cohort_config) if cohort_config is not None else None
    cohort = discover_cohort(cohort_dir, gcfg.cohort if gcfg is not None else None)
    path = clinical if clinical is not None else cohort_dir / "clinical.csv"
    if not path.is_file():
        raise GlioradInputError(
            f"clinical table {path} not found; pass --clinical (a CSV with patient_id and grade)")
    table = read_clinical(path, gcfg.clinical if gcfg is not None else None)
    return cohort, table


def _graded(ids: list[str], table) -> list[str]:
    """The patients of ``ids`` with a grade in the clinical table."""
    return [p for p in ids if p in table.index and not _na(table.at[p, "grade_group"])]


def _split(table, cohort, train_ids: Path | None, ids: list[str] | None, test_fraction: float,
           seed: int) -> list[str]:
    from gliorad.features.deep import stratified_split

    if train_ids is not None:
        return read_ids(train_ids, "--train-ids")
    pool = _graded(ids or cohort.ids, table)
    if not pool:
        raise GlioradInputError("no cohort patient has a grade in the clinical table; pass --train-ids")
    y = (table.loc[pool, "grade_group"] == "HGG").astype(int)
    train, test = stratified_split(y, test_fraction, seed)
    typer.echo(f"split (seed {seed}): {len(train)} training, {len(test)} held-out patients")
    return train


def _na(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


class _Patients(NamedTuple):
    cohort: Any
    table: Any
    ids: list[str] | None  # the patients to extract features for (None: all)
    train: list[str]
    val: list[str] | None


def _patients(cohort_dir: Path, clinical: Path | None, cohort_config: Path | None,
              ids: Path | None, train_ids: Path | None, val_ids: Path | None,
              test_fraction: float, split_seed: int) -> _Patients:
    """The cohort, its clinical table and the patient id lists of the command's options."""
    cohort, table = _setup(cohort_dir, clinical, cohort_config)
    id_list = read_ids(ids, "--ids") if ids is not None else None
    train = _split(table, cohort, train_ids, id_list, test_fraction, split_seed)
    val = read_ids(val_ids, "--val-ids") if val_ids is not None else None
    return _Patients(cohort, table, id_list, train, val)


def _sequences(cfg, given: str | None, cohort, from_preset: bool):
    """The network's input sequences: ``--sequences`` when given; else (settings from a preset,
    not a ``--config`` file) the preset's when the cohort's ``sequences`` hold them all, else the
    cohort's (with a note), as ``gliorad run`` resolves a stage's sequences."""
    from gliorad.features.deep import with_changes

    if given is not None:
        seqs = [s.strip() for s in given.split(",") if s.strip()]
        if not seqs:
            raise GlioradInputError(f"--sequences {given!r}: expected a comma-separated list, "
                                    "e.g. t1,t1ce,flair")
        return with_changes(cfg, {"sequences": seqs}, "--sequences")
    lacking = [s for s in cfg.sequences if s not in cohort.sequences]
    if not lacking or not from_preset:
        return cfg
    typer.echo(f"note: the preset's sequences {', '.join(cfg.sequences)} need "
               f"{', '.join(lacking)}, which cohort.sequences lacks; using "
               f"{', '.join(cohort.sequences)} (--sequences to choose)")
    return with_changes(cfg, {"sequences": list(cohort.sequences)}, "cohort.sequences")


def _summary(res, what: str) -> None:
    import json

    typer.echo(f"{what}: {res.table.shape[0]} patients x {res.table.shape[1]} features -> "
               f"{res.out_dir}{' (unchanged, skipped)' if res.skipped else ''}")
    typer.echo(f"trained on {len(res.train_ids)} patients"
               f"{f', validated on {len(res.val_ids)}' if res.val_ids else ''}")
    typer.echo("metrics: " + json.dumps({k: v for k, v in res.metrics.items()
                                         if isinstance(v, dict)}, default=str))
    for note in res.notes:
        typer.echo(f"note: {note}")


def _leading(
    cohort_dir: Annotated[Path, typer.Argument(
        help="Cohort folder (BraTS naming or --cohort-config).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (tables, model, provenance).")],
    clinical: Annotated[Path | None, typer.Option(
        help="Clinical table (default: COHORT_DIR/clinical.csv).")] = None,
    preset: Annotated[str, typer.Option(help="Settings preset: demo or paper.")] = "demo",
) -> None:
    """The argument and options every network's command starts with, before ``--config``
    (never called: :func:`_leading_options`)."""


def _shared(
    val_ids: Annotated[Path | None, typer.Option(help="File of validation patient ids.")] = None,
    ids: Annotated[Path | None, typer.Option(
        help="File of patient ids to extract features for (default: all).")] = None,
    test_fraction: Annotated[float, typer.Option(
        min=0.01, max=0.99, help="Held-out share when no --train-ids is given.")] = 0.3,
    split_seed: Annotated[int, typer.Option(help="Seed of that split.")] = 0,
    masks: Annotated[Path | None, typer.Option(
        help="Folder of automatic masks (default: the cohort's manual seg files).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the training epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the training seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    jobs: Annotated[int, typer.Option(help="Processes preparing the inputs; -1 = all cores.")] = 1,
    scheduler: SchedulerOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier run in --out.")] = False,
    progress: ProgressOpt = True,
    cohort_config: Annotated[Path | None, typer.Option(
        help="gliorad YAML config (cohort and clinical sections).")] = None,
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated input sequences, in channel order (default: the preset's, or the "
        "--cohort-config's cohort.sequences when the cohort lacks one of those).")] = None,
) -> None:
    """The options of every network's command, after its own (never called: :data:`SHARED`)."""


def _leading_options(config_class: str) -> Options:
    """:func:`_leading`'s argument and options, then ``--config`` (a YAML file of
    ``config_class``'s fields)."""
    return Options(_leading).plus("config", Annotated[Path | None, typer.Option(help=(
        f"YAML settings (fields of {config_class}; 'preset: demo' to start from a preset)."))])


LEADING_3D = _leading_options("Deep3DConfig")
LEADING_2D = _leading_options("Deep2DConfig")
SHARED = Options(_shared)


def _prepared(network: Any, changes: dict, train_ids: Path | None, lead: SimpleNamespace,
              shared: SimpleNamespace) -> tuple[Any, _Patients, dict[str, Any]]:
    """The network's settings (``--preset`` or ``--config``, then the command line's ``changes``
    and ``--sequences``), the patients, and the keyword options of its stage function."""
    from gliorad.errors import check_option
    from gliorad.features.deep import with_changes

    config = lead.config
    if config is None:
        check_option("--preset", lead.preset, network.presets)
    check_jobs(shared.jobs)
    cfg = network.load_config(config if config is not None else lead.preset)
    changes = {**changes, "train": {k: v for k, v in {
        "epochs": shared.epochs, "seed": shared.seed, "device": shared.device}.items()
        if v is not None}}
    changes = {k: v for k, v in changes.items() if v is not None and v != {}}
    cfg = with_changes(cfg, changes, "command line") if changes else cfg
    pt = _patients(lead.cohort_dir, lead.clinical, shared.cohort_config, shared.ids, train_ids,
                   shared.val_ids, shared.test_fraction, shared.split_seed)
    cfg = _sequences(cfg, shared.sequences, pt.cohort, config is None)
    options = {"ids": pt.ids, "val_ids": pt.val, "masks": shared.masks,
               "overwrite": shared.overwrite, "progress": shared.progress, "n_jobs": shared.jobs,
               "executor": executor_of(shared.scheduler, shared.jobs)}
    return cfg, pt, options


@app.command()
@with_options
def cnn3d(
    lead: SimpleNamespace = LEADING_3D,
    input_kind: Annotated[str | None, typer.Option(
        "--input", help="patch (tumour-centred) or full (complete MRI).")] = None,
    se: Annotated[bool | None, typer.Option("--se/--no-se", help="SE block after stage 4.")] = None,
    train_ids: Annotated[Path | None, typer.Option(
        help="File of training patient ids (one per line); default: a stratified split.")] = None,
    cv_folds: Annotated[int | None, typer.Option(
        min=2, help="Also write out-of-fold probabilities for every patient (K networks).")] = None,
    shared: SimpleNamespace = SHARED,
) -> None:
    """3D ResNet18 (+SE) trained on HGG vs LGG; 512 features per patient (cnn3d_000...)."""
    from gliorad.features.deep3d import CNN3D, cnn3d_out_of_fold, deep_features_3d

    with exit_on_input_error():
        net = {"se": se} if se is not None else {}
        cfg, pt, options = _prepared(CNN3D, {"input": input_kind, "net": net}, train_ids, lead,
                                     shared)
        out = lead.out
        res = deep_features_3d(pt.cohort, pt.table, pt.train, out, cfg, **options)
        _summary(res, f"cnn3d {cfg.variant}")
        if cv_folds is not None:
            pool = _graded(pt.ids or pt.cohort.ids, pt.table)
            pred = cnn3d_out_of_fold(pt.cohort, pt.table, pool, out / "cv", cfg, folds=cv_folds,
                                     seed=shared.split_seed, masks=shared.masks,
                                     overwrite=shared.overwrite, progress=shared.progress,
                                     n_jobs=shared.jobs)
            typer.echo(f"out-of-fold probabilities for {len(pred)} patients -> "
                       f"{out / 'cv' / f'{CNN3D.stem(cfg)}_oof_predictions.csv'}")


@app.command()
@with_options
def cnn2d(
    lead: SimpleNamespace = LEADING_2D,
    imagenet_weights: Annotated[Path | None, typer.Option(
        help="Local torchvision-format resnet18 state dict (.pth/.safetensors); none: from scratch.")] = None,
    survival_loss: Annotated[str | None, typer.Option(help="cox or censored_l1.")] = None,
    survival_weight: Annotated[float | None, typer.Option(
        min=0.0, help="Weight of the survival term (grade term: 1).")] = None,
    train_ids: Annotated[Path | None, typer.Option(
        help="File of training patient ids (LGG among them are trained on); default: a split.")] = None,
    cross_fit: Annotated[int | None, typer.Option(
        "--cross-fit", min=2, help=(
            "Also train K networks on folds of the LGG training patients (seeded by "
            "--split-seed): cnn2d_cross_fit.csv holds the head outputs cnn2d_oof_grade and "
            "cnn2d_oof_risk, out-of-fold for those patients and from the network trained on all "
            "of them for the others, the survival signature's input without in-sample optimism "
            "(deep2d.cross_fit; not the paper's). Not with --val-ids."))] = None,
    shared: SimpleNamespace = SHARED,
) -> None:
    """2D dual-task ResNet18 (grade II/III + survival) on LGG; 512 features (cnn2d_000...)."""
    import warnings

    from gliorad.features.deep2d import CNN2D, cnn2d_cross_fit, deep_features_2d

    with exit_on_input_error():
        if cross_fit is not None and shared.val_ids is not None:
            raise GlioradInputError(
                "--val-ids: not with --cross-fit (each network monitors its loss on a seeded "
                "part of its own training patients, val_fraction); give the patients in "
                "--train-ids")
        cfg, pt, options = _prepared(CNN2D, {"survival_loss": survival_loss,
                                             "survival_weight": survival_weight}, train_ids, lead,
                                     shared)
        with warnings.catch_warnings():  # the no-ImageNet message is printed as a note below
            warnings.simplefilter("ignore", UserWarning)
            if cross_fit is None:
                res = deep_features_2d(pt.cohort, pt.table, pt.train, lead.out, cfg,
                                       imagenet_weights=imagenet_weights, **options)
            else:
                options.pop("val_ids")
                if options.pop("executor") is not None:
                    raise GlioradInputError("--scheduler: not with --cross-fit (the fold "
                                            "networks prepare their inputs on this machine)")
                cf = cnn2d_cross_fit(pt.cohort, pt.table, pt.train, lead.out, cfg,
                                     folds=cross_fit, seed=shared.split_seed,
                                     imagenet_weights=imagenet_weights, **options)
                res = cf.full
        _summary(res, "cnn2d dual-task")
        if cross_fit is not None:
            from gliorad.features.deep2d import STEM_CROSS_FIT

            typer.echo(f"cross-fitted head outputs ({cross_fit} fold networks): "
                       f"{cf.table.shape[0]} patients x {', '.join(cf.table.columns) or 'none'} -> "
                       f"{lead.out / f'{STEM_CROSS_FIT}.csv'}")
            for note in cf.summary["notes"]:
                typer.echo(f"note: {note}")
