"""Grading stages on files: what ``gliorad grade cv|fit|evaluate|tables`` run.

Each stage reads a feature table (CSV/TSV/Parquet, one row per patient) and grade labels, and
writes one output folder as a whole (see :mod:`gliorad.grading.outputs`): skipped when the same
inputs and settings were already written there, refused when the folder holds something else
unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.errors import GlioradInputError, check_option
from gliorad.grading.config import GradingConfig
from gliorad.grading.evaluate import (
    GradingResult,
    binary_metrics,
    cross_validate_grading,
    split_evaluate_grading,
)
from gliorad.grading.outputs import (
    plot_roc,
    provenance,
    run_folder,
    write_csv,
    write_grading_outputs,
)
from gliorad.io import write_json
from gliorad.tables import (
    align_features_labels,
    clean_features,
    labels_from_clinical,
    load_grading_inputs,
    read_table,
    resolve_labels,
)

__all__ = ["StageResult", "model_choice", "read_predictions", "run_compare", "run_cv",
           "run_evaluate", "run_fit", "run_tables"]

Echo = Callable[[str], None]


@dataclass
class StageResult:
    """Where a stage wrote, whether it was skipped, and its headline metrics (if any)."""

    out: Path
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _inputs(features: Path, labels: str | Path) -> dict[str, Path]:
    inputs = {"features": Path(features)}
    if Path(str(labels)).is_file():
        inputs["labels"] = Path(str(labels))
    return inputs


def _alignment_metrics(align, grade) -> dict[str, Any]:
    return {"label_coding": grade.coding, "label_source": grade.source,
            "ids_only_in_features": align.only_in_features,
            "ids_only_in_labels": align.only_in_labels}


def run_cv(
    features: str | Path, labels: str | Path, out: str | Path,
    config: GradingConfig | None = None, scheme: str = "cv", id_column: str | None = None,
    exclude: tuple[str, ...] = (), n_jobs: int = 1, overwrite: bool = False,
    command: str | None = None, nonfinite: str = "missing",
) -> StageResult:
    """Evaluate the grading model on a feature table (repeated CV or split) into ``out``.

    ``nonfinite``: spreadsheet error cells and infinite values read as missing (``"missing"``,
    counted in ``metrics.json`` ``table_cleaning``) or refused (``"error"``); see
    :func:`gliorad.tables.clean_features`.
    """
    check_option("scheme", scheme, ("cv", "split"))
    config = config or GradingConfig.preset("paper")
    X, grade, align, cleaning = load_grading_inputs(features, labels, id_column, tuple(exclude),
                                                    nonfinite=nonfinite)
    warned = cleaning.warnings()
    settings = {"stage": "grade cv", "config": config.model_dump(mode="json"), "scheme": scheme,
                "labels": str(labels), "id_column": id_column, "exclude": list(exclude),
                "nonfinite": nonfinite}
    prov = provenance(settings, _inputs(Path(features), labels), command)
    with run_folder(out, prov["fingerprint"], overwrite) as tmp:
        if tmp is None:
            return StageResult(Path(out), skipped=True, messages=align.messages(),
                               warnings=warned)
        run = cross_validate_grading if scheme == "cv" else split_evaluate_grading
        result: GradingResult = run(X, grade, config, n_jobs=n_jobs)
        result.notes.extend(align.messages() + warned)
        write_grading_outputs(result, tmp, prov, {**_alignment_metrics(align, grade),
                                                  "table_cleaning": {"features": cleaning.to_dict()}})
    return StageResult(Path(out), skipped=False, metrics=result.metrics,
                       messages=align.messages(), warnings=warned)


FIT_FILES = ("model.skops", "model.json", "selected_features.csv", "provenance.json")


def run_fit(
    features: str | Path, labels: str | Path, out: str | Path,
    config: GradingConfig | None = None, id_column: str | None = None,
    exclude: tuple[str, ...] = (), n_jobs: int = 1, overwrite: bool = False,
    command: str | None = None, stack_columns: tuple[str, ...] = (), nonfinite: str = "missing",
) -> StageResult:
    """Fit the grading model on every patient and save it (skops) with its metadata.

    ``stack_columns``: columns of out-of-sample probabilities of another model (e.g. a CNN's);
    the saved model is then a :class:`~gliorad.grading.stacking.StackedGradingModel` (the
    grading model on the other columns, stacked with these by a logistic regression).

    The model is the settings' ``model`` (:meth:`GradingConfig.make_model`); with ``auto`` the
    saved model is the :class:`~gliorad.grading.auto.AutoGradingModel` holding the chosen
    candidate refitted on every patient, and ``model.json`` adds ``model``, ``chosen``,
    ``choice_reason``, ``choice_rule`` and ``inner_scores`` (see :func:`model_choice`).
    """
    from gliorad.grading.model import fit_quietly
    from gliorad.grading.persist import save_model
    from gliorad.grading.stacking import StackedGradingModel

    config = config or GradingConfig.preset("paper")
    X, grade, align, cleaning = load_grading_inputs(features, labels, id_column, tuple(exclude),
                                                    nonfinite=nonfinite)
    warned = cleaning.warnings()
    dropped_stack = [c for c in stack_columns if c in cleaning.dropped_columns]
    if dropped_stack:
        raise GlioradInputError(f"{Path(features).name}: stack column(s) "
                                f"{', '.join(dropped_stack)} are empty or constant for every "
                                "patient; a stacked model needs the other model's probabilities")
    settings = {"stage": "grade fit", "config": config.model_dump(mode="json"),
                "labels": str(labels), "id_column": id_column, "exclude": list(exclude),
                "nonfinite": nonfinite,
                **({"stack_columns": list(stack_columns)} if stack_columns else {})}
    prov = provenance(settings, _inputs(Path(features), labels), command)
    with run_folder(out, prov["fingerprint"], overwrite, files=FIT_FILES) as tmp:
        if tmp is None:
            return StageResult(Path(out), skipped=True, messages=align.messages(),
                               warnings=warned)
        model = config.make_model(n_jobs=n_jobs)
        if stack_columns:
            model = StackedGradingModel(model, score_columns=tuple(stack_columns),
                                        cv=config.inner_cv, random_state=config.seed)
        model, fallback = fit_quietly(model, X, grade.y.to_numpy())
        stacked = ({"stack_weights": model.stack_weights_, "stack_oof_auc": model.oof_auc_}
                   if stack_columns else {})
        choice = model_choice(model.base_ if stack_columns else model, config)
        info = {
            "feature_columns": list(X.columns), "positive_class": "HGG",
            "label_meaning": "probability is that of HGG; label 1 = HGG, 0 = LGG",
            "classes": [int(c) for c in model.classes_], "class_counts": grade.counts,
            "label_coding": grade.coding, "selected_features": model.selected_features_,
            "n_per_stage": {k: len(v) for k, v in model.stage_features_.items()},
            "best_params": model.best_params_, "threshold": config.threshold,
            "config": config.model_dump(mode="json"), "fallback_warnings": fallback,
            "n_imputed_cells": model.n_imputed_cells_, **_alignment_metrics(align, grade),
            "table_cleaning": {"features": cleaning.to_dict()},
            **stacked, **choice, "provenance": prov,
        }
        save_model(model, tmp, info)
        # the paper's importances are its forest's; another candidate's are its own (or none)
        importance = "rf_importance" if config.model == "paper" else "importance"
        write_csv(pd.DataFrame({"feature": model.selected_features_,
                                importance: [model.importances_[f]
                                             for f in model.selected_features_]}),
                  tmp / "selected_features.csv")
        write_json(prov, tmp / "provenance.json")
    return StageResult(Path(out), skipped=False, metrics=info, messages=align.messages(),
                       warnings=warned)


def model_choice(model: Any, config: GradingConfig) -> dict[str, Any]:
    """What ``model.json`` records of the model choice: nothing for the paper's recipe (its
    ``model.json`` stays as before); the candidate's name otherwise; with ``auto`` (or
    ``ensemble``) also the chosen candidate, why, the rule and every candidate's inner AUC."""
    if config.model == "paper":
        return {}
    out: dict[str, Any] = {"model": config.model}
    if hasattr(model, "chosen_"):
        from gliorad.grading.auto import CHOICE_RULE

        out.update(chosen=model.chosen_, choice_reason=model.choice_reason_,
                   choice_rule=CHOICE_RULE, inner_scores=[dict(r) for r in model.inner_scores_])
    return out


EVAL_FILES = ("predictions.csv", "provenance.json")


def run_evaluate(
    model_path: str | Path, features: str | Path, out: str | Path,
    labels: str | Path | None = None, id_column: str | None = None,
    overwrite: bool = False, command: str | None = None, nonfinite: str = "missing",
) -> StageResult:
    """Apply a saved model to a new feature table (external validation).

    The table must hold every feature column the model was fitted on (others are ignored);
    with ``labels``, ``metrics.json`` and ``roc.png`` are written too. Odd cells are read as
    by :func:`gliorad.tables.clean_features` (``nonfinite``), but no column is dropped: an
    empty or constant column is imputed by the model as a missing cell is.
    """
    from gliorad.grading.persist import load_model, read_model_info

    model = load_model(model_path)
    info = read_model_info(model_path)
    table = read_table(features, id_column)
    source = Path(features).name
    grade = None
    if labels is not None:
        grade, table = resolve_labels(labels, table, source)
    needed = [str(c) for c in model.feature_names_in_]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise GlioradInputError(
            f"{source}: {len(missing)} feature column(s) the model was fitted on are missing: "
            f"{', '.join(missing[:15])}{' ...' if len(missing) > 15 else ''}")
    extra = [c for c in table.columns if c not in needed]
    X, cleaning = clean_features(table[needed], source, nonfinite, drop=False)
    warned = cleaning.warnings()
    messages = [f"{len(extra)} column(s) not used by the model were ignored"] if extra else []
    align = None
    if grade is not None:
        X, grade, align = align_features_labels(X, grade)
        messages += align.messages()
    settings = {"stage": "grade evaluate", "labels": None if labels is None else str(labels),
                "id_column": id_column, "nonfinite": nonfinite}
    inputs = {"model": Path(model_path) / "model.skops" if Path(model_path).is_dir()
              else Path(model_path), "features": Path(features)}
    if labels is not None:
        inputs.update({k: v for k, v in _inputs(Path(features), labels).items() if k == "labels"})
    prov = provenance(settings, inputs, command)
    files = EVAL_FILES + (("metrics.json", "roc.png") if grade is not None else ())
    with run_folder(out, prov["fingerprint"], overwrite, files=files) as tmp:
        if tmp is None:
            return StageResult(Path(out), skipped=True, messages=messages, warnings=warned)
        prob = model.decision_score(X)
        pred = pd.DataFrame({"patient_id": X.index, "probability": prob})
        threshold = float(info.get("threshold", 0.5))
        pred["predicted"] = ["HGG" if p >= threshold else "LGG" for p in prob]
        metrics: dict[str, Any] = {}
        if grade is not None:
            pred.insert(1, "label", grade.y.to_numpy())
            metrics = {**binary_metrics(grade.y, prob, threshold), "positive_class": "HGG",
                       "negative_class": "LGG", "class_counts": grade.counts,
                       "n_patients": len(X), "n_missing_cells": int(X.isna().to_numpy().sum()),
                       "scheme": {"type": "external", "model": str(model_path)},
                       **_alignment_metrics(align, grade), "messages": messages,
                       "table_cleaning": {"features": cleaning.to_dict()}}
            write_json(metrics, tmp / "metrics.json")
            plot_roc({"external": (grade.y.to_numpy(), prob)}, tmp / "roc.png",
                     "HGG vs LGG (saved model, new patients)")
        write_csv(pred, tmp / "predictions.csv")
        write_json(prov, tmp / "provenance.json")
    return StageResult(Path(out), skipped=False, metrics=metrics, messages=messages,
                       warnings=warned)


TABLE_FILES = ("table_s3.csv", "table_1.csv", "table_2.csv", "comparisons.csv", "tables.md",
               "metrics.json", "notes.json", "provenance.json")


def _read_cnn(path: Path, id_column: str | None) -> pd.Series | pd.DataFrame:
    table = read_table(path, id_column)
    if "probability" not in table.columns:
        raise GlioradInputError(f"{path}: CNN predictions need a 'probability' column (of HGG); "
                                f"columns are {', '.join(map(str, table.columns))}")
    return table


def run_tables(
    feature_sets: Mapping[str, str | Path], labels: str | Path, out: str | Path,
    cnn_predictions: Mapping[str, str | Path] | None = None,
    config: GradingConfig | None = None, scheme: str = "cv", fuse_with: str = "best",
    radiomics_table: str | Path | None = None, id_column: str | None = None, n_jobs: int = 1,
    overwrite: bool = False, command: str | None = None,
    split_parts: Mapping[str, str] | None = None,
    stack_scores: Mapping[str, str | Path | pd.Series] | None = None,
    nonfinite: str = "missing",
) -> StageResult:
    """Build Tables S3, 1 and 2 from named feature tables (see :mod:`gliorad.grading.paper`).

    ``radiomics_table`` is one table with ``<sequence>_...`` columns (``gliorad features
    radiomics``), split into ``radiomics_<sequence>`` sets. ``split_parts`` fixes the split of
    ``scheme="split"`` (patient id -> train / val / test). ``stack_scores`` (``cnn_<input>_<block>``
    -> a predictions file or a Series of out-of-sample probabilities) adds the stacked rows.
    Each table is cleaned by :func:`gliorad.tables.clean_features` (``nonfinite``); what changed
    is in ``metrics.json`` (``table_cleaning``, per set) and the notes.
    """
    from gliorad.grading.paper import paper_tables, parse_set_name, radiomics_by_sequence

    config = config or GradingConfig.preset("paper")
    feature_sets = dict(feature_sets)
    for name in feature_sets:
        parse_set_name(name)
    cnn_predictions = dict(cnn_predictions or {})
    sets, grade, cleanings = {}, None, {}
    sources = list(feature_sets.items())
    if radiomics_table is not None:
        sources.insert(0, ("radiomics", radiomics_table))
    for name, path in sources:
        table = read_table(path, id_column)
        if str(labels) in table.columns:  # a label column: taken from the first table having it
            g, table = resolve_labels(labels, table, Path(path).name)
            grade = grade or g
        X, cleanings[name] = clean_features(table, f"{name} ({Path(path).name})", nonfinite)
        if name == "radiomics" and radiomics_table is not None:
            split = radiomics_by_sequence(X, combined=config.all_sequences)
            clash = sorted(set(split) & set(feature_sets))
            if clash:
                raise GlioradInputError(f"{', '.join(clash)} given both as a set and in the "
                                        "radiomics table")
            sets.update(split)
        else:
            sets[name] = X
    if grade is None:
        if not Path(str(labels)).is_file():
            raise GlioradInputError(f"labels {str(labels)!r} is neither a file nor a column of "
                                    "any feature set")
        grade = labels_from_clinical(labels)
    cnn = {name: _read_cnn(Path(p), id_column) for name, p in cnn_predictions.items()}
    stack = {name: (p if isinstance(p, pd.Series) else _read_cnn(Path(p), id_column))
             for name, p in dict(stack_scores or {}).items()}
    warned = [line for c in cleanings.values() for line in c.warnings()]
    settings = {"stage": "grade tables", "config": config.model_dump(mode="json"),
                "scheme": scheme, "fuse_with": fuse_with, "labels": str(labels),
                "nonfinite": nonfinite,
                "sets": sorted(sets), "cnn": sorted(cnn_predictions),
                "split_parts": dict(sorted(split_parts.items())) if split_parts else None,
                "stack_scores": {k: (hashlib.sha256(pd.util.hash_pandas_object(v).to_numpy()
                                                    .tobytes()).hexdigest()
                                     if isinstance(v, pd.Series) else None)
                                 for k, v in sorted(stack.items())}}
    inputs = {f"set:{k}": Path(v) for k, v in sources}
    inputs.update({f"cnn:{k}": Path(v) for k, v in cnn_predictions.items()})
    inputs.update({f"stack:{k}": Path(v) for k, v in dict(stack_scores or {}).items()
                   if not isinstance(v, pd.Series)})
    if Path(str(labels)).is_file():
        inputs["labels"] = Path(str(labels))
    prov = provenance(settings, inputs, command)
    with run_folder(out, prov["fingerprint"], overwrite, files=TABLE_FILES) as tmp:
        if tmp is None:
            return StageResult(Path(out), skipped=True, warnings=warned)
        result = paper_tables(sets, grade, cnn, config, scheme=scheme, fuse_with=fuse_with,
                              n_jobs=n_jobs, split_parts=split_parts, stack_scores=stack)
        result.notes.extend(warned)
        result.write(tmp)
        metrics = json.loads((tmp / "metrics.json").read_text(encoding="utf-8"))
        metrics["table_cleaning"] = {k: c.to_dict() for k, c in cleanings.items()}
        write_json(metrics, tmp / "metrics.json")
        write_json(prov, tmp / "provenance.json")
    return StageResult(Path(out), skipped=False,
                       metrics={k: v.to_dict(orient="records") for k, v in result.tables.items()},
                       messages=[m for m in result.notes if m not in warned], warnings=warned)


def read_predictions(path: str | Path) -> tuple[pd.Series, pd.Series]:
    """Labels and HGG probabilities from a ``predictions.csv`` written by gliorad.

    Repeated-CV files give repeat 1; split files give the test part. Returns ``(label,
    probability)`` indexed by patient id.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "predictions.csv"
    if not p.is_file():
        raise GlioradInputError(f"{p}: predictions file not found")
    try:
        table = pd.read_csv(p, dtype={"patient_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise GlioradInputError(f"{p}: cannot parse the table: {err}") from err
    for col in ("patient_id", "label", "probability"):
        if col not in table.columns:
            raise GlioradInputError(f"{p}: no {col!r} column; expected a predictions.csv written "
                                    "by 'gliorad grade cv' or 'grade evaluate --labels'")
    if "repeat" in table.columns:
        table = table[table["repeat"] == table["repeat"].min()]
    if "split" in table.columns and (table["split"] == "test").any():
        table = table[table["split"] == "test"]
    table = table.set_index("patient_id")
    if table.index.duplicated().any():
        raise GlioradInputError(f"{p}: patient ids repeat within one repeat/split")
    return table["label"].astype(int), table["probability"].astype(float)


def run_compare(predictions: Mapping[str, str | Path]) -> pd.DataFrame:
    """Paired DeLong tests between models from their ``predictions.csv`` (same patients)."""
    from gliorad.grading.evaluate import compare_models

    if len(predictions) < 2:
        raise GlioradInputError("give at least two predictions files to compare")
    labels, scores = None, {}
    for name, path in predictions.items():
        y, s = read_predictions(path)
        if labels is None:
            labels = y
        else:
            common = labels.index.intersection(y.index)
            if (labels.loc[common] != y.loc[common]).any():
                bad = common[(labels.loc[common] != y.loc[common]).to_numpy()]
                raise GlioradInputError(
                    f"{name}: labels differ from the first file for patient(s) "
                    f"{', '.join(map(str, bad[:5]))}; the models were not graded on the same "
                    "truth")
        scores[name] = s
    return compare_models(labels, scores)
