"""``gliorad grade cv|fit|evaluate|tables|compare``: HGG vs LGG grading on any feature table.

Thin layer over :mod:`gliorad.grading.run`; heavy modules are imported inside the commands.
Exit 2 lists each problem on its own ``error:`` line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from gliorad.commands._common import (
    NonfiniteOpt,
    Options,
    OutOpt,
    PresetOpt,
    command_group,
    exit_on_input_error,
    with_options,
)
from gliorad.errors import GlioradInputError

app = command_group(
    "grade", "Grade HGG vs LGG from a feature table: the paper's selection + SVM model, another "
    "candidate, or the one chosen by inner cross-validation (--model auto).")

FeaturesOpt = Annotated[Path, typer.Option(
    "--features", help="Feature table (CSV/TSV/Parquet): one row per patient, an id column.")]
LabelsOpt = Annotated[str, typer.Option(
    "--labels", help="Clinical table (CSV with a grade column) or the name of a label column "
    "in the feature table (HGG/LGG, GBM/LGG, II/III/IV or 0/1; HGG is positive).")]
IdOpt = Annotated[str | None, typer.Option(
    "--id-column", help="Id column (default: patient_id, id, patient, subject_id, ...).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace a different earlier run in --out.")]


def _table(features: FeaturesOpt, labels: LabelsOpt, out: OutOpt) -> None:
    """The feature table, its labels and the output folder of ``cv`` and ``fit`` (never called:
    :data:`TABLE`)."""


def _run_options(
    preset: PresetOpt = "paper",
    config: Annotated[Path | None, typer.Option(
        help="YAML file with a 'grading:' section (over the preset).")] = None,
    id_column: IdOpt = None,
    exclude: Annotated[str | None, typer.Option(
        help="Comma-separated non-feature columns to ignore (e.g. centre,age).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="paper (the paper's recipe, default), auto (the candidate with the best "
        "inner cross-validated AUC on the training patients, nested in every evaluation fold), "
        "or a candidate: logistic_l1, logistic_enet, svm, rf, extra_trees, hgb, ensemble "
        "(overrides the config).")] = None,
    candidates: Annotated[str | None, typer.Option(
        help="Comma-separated candidates that auto and ensemble search (default: all), e.g. "
        "paper,rf,logistic_l1.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Folds fitted in parallel.")] = 2,
    overwrite: OverwriteOpt = False,
) -> None:
    """The settings and run options of ``cv``, ``fit`` and (without ``--exclude``) ``tables``
    (never called: :data:`RUN`)."""


TABLE = Options(_table)
RUN = Options(_run_options)
RUN_NO_EXCLUDE = RUN.without("exclude")


def _config(run: SimpleNamespace, **overrides):
    """The grading settings: ``--preset``, then ``--config``, then ``--seed``, ``--model``,
    ``--candidates`` and ``overrides`` (those given)."""
    from gliorad.grading.config import GradingConfig

    overrides.update(GradingConfig.command_line(run.model, run.candidates))
    preset, config = run.preset, run.config
    cfg = GradingConfig.from_yaml(config, preset) if config else GradingConfig.preset(preset)
    overrides.update(seed=run.seed)
    upd = {k: v for k, v in overrides.items() if v is not None}
    return GradingConfig.from_dict({**cfg.model_dump(), **upd}, "command-line options") if upd \
        else cfg


def _exclude(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _command() -> str:
    return " ".join(["gliorad", *sys.argv[1:]]) if sys.argv else "gliorad grade"


def _run_args(run: SimpleNamespace) -> dict[str, Any]:
    """The keyword arguments of a :mod:`gliorad.grading.run` stage from the :data:`RUN`
    options (``exclude`` where the command has it) and the command line."""
    args = {"id_column": run.id_column, "n_jobs": run.jobs, "overwrite": run.overwrite,
            "command": _command()}
    if hasattr(run, "exclude"):
        args["exclude"] = _exclude(run.exclude)
    return args


def _pairs(values: list[str] | None, option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise GlioradInputError(f"{option} {v!r}: expected NAME=PATH, e.g. "
                                    "radiomics_t1ce=t1ce.csv")
        if name.strip() in out:
            raise GlioradInputError(f"{option}: {name.strip()!r} given twice")
        out[name.strip()] = Path(path.strip())
    return out


def _up_to_date(res) -> bool:
    """Print the run's warnings and notes; true (after saying so) when ``--out`` already held
    this run."""
    for m in res.warnings:
        typer.echo(f"warning: {m}", err=True)
    for m in res.messages:
        typer.echo(f"note: {m}", err=True)
    if res.skipped:
        typer.echo(f"up to date: {res.out} (same inputs and settings)")
    return res.skipped


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@app.command()
@with_options
def cv(
    table: SimpleNamespace = TABLE,
    scheme: Annotated[str, typer.Option(
        help="cv (repeated stratified k-fold) or split (train/validation/test ratios).")] = "cv",
    splits: Annotated[int | None, typer.Option(min=2, help="Folds per repeat.")] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="CV repeats.")] = None,
    run: SimpleNamespace = RUN,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """Leak-free evaluation: metrics.json, predictions.csv, roc.png, selected_features.csv."""
    from gliorad.grading.run import run_cv

    with exit_on_input_error():
        cfg = _config(run, cv_splits=splits, cv_repeats=repeats)
        res = run_cv(table.features, table.labels, table.out, cfg, scheme=scheme,
                     **_run_args(run), nonfinite=nonfinite)
    if _up_to_date(res):
        return
    m = res.metrics
    typer.echo(
        f"AUC {m['auc']:.3f} (95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}), accuracy "
        f"{_fmt(m['accuracy'])}, sensitivity {_fmt(m['sensitivity'])}, precision "
        f"{_fmt(m['precision'])}, specificity {_fmt(m['specificity'])}; "
        f"{m['class_counts']['HGG']} HGG (positive) / {m['class_counts']['LGG']} LGG")
    if scheme == "cv":
        typer.echo(f"mean AUC over {cfg.cv_repeats} repeat(s): {m['auc_mean']:.3f}"
                   + (f" (SD {m['auc_sd']:.3f})" if m.get("auc_sd") is not None else ""))
    if "candidates" in m:
        _echo_candidates(m["candidates"]["table"])
    typer.echo(f"wrote {res.out}")


def _echo_candidates(rows: list[dict[str, Any]]) -> None:
    """The candidates table of an automatic choice (candidates.csv), one line per candidate."""
    typer.echo("candidates (outer AUC, 95% CI; paired DeLong P vs paper; chosen in folds):")
    for r in rows:
        ci = (f" ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f})" if r["auc"] is not None
              else "")
        p = f", P vs paper {r['p_vs_paper']:.3g}" if r["p_vs_paper"] is not None else ""
        chosen = (f", chosen {r['n_chosen']:.0f}x" if r["n_chosen"] is not None else "")
        note = f" [{r['note']}]" if r["note"] else ""
        typer.echo(f"  {r['candidate']:<14} AUC {_fmt(r['auc'])}{ci}{p}{chosen}{note}")


@app.command()
@with_options
def fit(
    table: SimpleNamespace = TABLE,
    run: SimpleNamespace = RUN,
    stack_column: Annotated[list[str] | None, typer.Option(
        "--stack-column", help="A column of another model's out-of-sample HGG probabilities "
        "(e.g. a CNN's, out-of-fold for its own training patients): the saved model stacks "
        "the grading model of the other columns with it (logistic regression). Repeat for "
        "each.")] = None,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """Fit the model on every patient; save model.skops (skops, not pickle) and model.json."""
    from gliorad.grading.run import run_fit

    with exit_on_input_error():
        res = run_fit(table.features, table.labels, table.out, _config(run), **_run_args(run),
                      stack_columns=tuple(stack_column or ()), nonfinite=nonfinite)
    if _up_to_date(res):
        return
    m = res.metrics
    if "chosen" in m:
        typer.echo(f"model {m['model']}: chose {m['chosen']} ({m['choice_reason']})")
    elif "model" in m:
        typer.echo(f"model: {m['model']}")
    selected = m["selected_features"]
    shown = ", ".join(selected[:30]) + (f" ... ({len(selected)} in all)" if len(selected) > 30
                                        else "")
    typer.echo(f"selected features: {shown}")
    if "stack_weights" in m:
        typer.echo("stack weights (log-odds): " + ", ".join(
            f"{k} {v:+.3f}" for k, v in m["stack_weights"].items()))
    params = m["best_params"]
    if "C" in params and "gamma" in params:
        typer.echo(f"SVM C={params['C']:g}, gamma={params['gamma']:g}; wrote "
                   f"{res.out}/model.skops")
    else:
        tuned = ", ".join(f"{k}={v}" for k, v in params.items()
                          if k not in ("model", "stack_weights"))
        typer.echo(f"{tuned + '; ' if tuned else ''}wrote {res.out}/model.skops")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Folder written by 'gliorad grade fit' "
                                        "(or its model.skops).")],
    features: FeaturesOpt,
    out: OutOpt,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Optional grade labels (clinical table or column) for metrics.")] = None,
    id_column: IdOpt = None,
    overwrite: OverwriteOpt = False,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """Apply a saved model to new patients (external validation): predictions, metrics."""
    from gliorad.grading.run import run_evaluate

    with exit_on_input_error():
        res = run_evaluate(model, features, out, labels=labels, id_column=id_column,
                           overwrite=overwrite, command=_command(), nonfinite=nonfinite)
    if _up_to_date(res):
        return
    m = res.metrics
    if m:
        typer.echo(f"AUC {m['auc']:.3f} (95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}), "
                   f"accuracy {_fmt(m['accuracy'])}, sensitivity {_fmt(m['sensitivity'])}, "
                   f"precision {_fmt(m['precision'])}")
    typer.echo(f"wrote {res.out}")


@app.command()
@with_options
def tables(
    labels: LabelsOpt,
    out: OutOpt,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="NAME=PATH feature table; NAME is radiomics_<seq>, fused_<patch|full>_"
        "<se|nose> or deep_<patch|full>_<se|nose>. Repeat for each set.")] = None,
    radiomics: Annotated[Path | None, typer.Option(
        help="One radiomics table with <sequence>_ column prefixes, split per sequence.")] = None,
    cnn: Annotated[list[str] | None, typer.Option(
        "--cnn", help="NAME=PATH CNN predictions (patient_id, probability); NAME is "
        "cnn_<patch|full>_<se|nose>. Repeat for each.")] = None,
    stack: Annotated[list[str] | None, typer.Option(
        "--stack", help="NAME=PATH out-of-sample CNN probabilities (patient_id, probability) "
        "for every patient, e.g. out-of-fold for the CNN's own training patients; NAME is "
        "cnn_<patch|full>_<se|nose>. Adds a stacked row (radiomics model + CNN scores, "
        "logistic regression) to Table 1. Repeat for each.")] = None,
    scheme: Annotated[str, typer.Option(help="cv or split.")] = "cv",
    fuse_with: Annotated[str, typer.Option(
        help="Radiomics set fused with deep_* sets and stacked with --stack scores: best "
        "(highest validation AUC under split, CV AUC under cv) or a set name.")] = "best",
    run: SimpleNamespace = RUN_NO_EXCLUDE,
    nonfinite: NonfiniteOpt = "missing",
) -> None:
    """The paper's Tables S3, 1 and 2 with DeLong P of best fused vs best CNN (tables.md, CSV)."""
    from gliorad.grading.run import run_tables

    with exit_on_input_error():
        sets = _pairs(set_, "--set")
        if not sets and radiomics is None:
            raise GlioradInputError("give feature sets with --set NAME=PATH and/or --radiomics")
        cfg = _config(run)
        res = run_tables(sets, labels, out, _pairs(cnn, "--cnn"), cfg, scheme=scheme,
                         fuse_with=fuse_with, radiomics_table=radiomics, **_run_args(run),
                         stack_scores=_pairs(stack, "--stack"), nonfinite=nonfinite)
    if _up_to_date(res):
        return
    typer.echo((Path(res.out) / "tables.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {res.out}")


@app.command()
def compare(
    pred: Annotated[list[str], typer.Option(
        "--pred", help="NAME=PATH of a predictions.csv (or its run folder); repeat for each "
        "model. Repeated CV: repeat 1; split: the test part.")],
    out: Annotated[Path | None, typer.Option(help="Write the table as CSV here.")] = None,
) -> None:
    """Paired DeLong tests between models scored on the same patients."""
    from gliorad.grading.run import run_compare
    from gliorad.io import write_text

    with exit_on_input_error():
        table = run_compare(_pairs(pred, "--pred"))
    for r in table.itertuples(index=False):
        typer.echo(f"{r.model_a} vs {r.model_b}: AUC {r.auc_a:.3f} vs {r.auc_b:.3f}, difference "
                   f"{r.diff:+.3f} (95% CI {r.ci_low:+.3f} to {r.ci_high:+.3f}), DeLong "
                   f"P = {r.p:.3g} ({r.n_pos} HGG, {r.n_neg} LGG)")
    if out is not None:
        write_text(table.to_csv(index=False, float_format="%.10g"), out)
        typer.echo(f"wrote {out}")
