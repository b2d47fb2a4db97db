"""Leak-free evaluation of the grading model: repeated stratified CV or a train/validation/test split.

Every fold refits the whole :class:`~gliorad.grading.model.GradingModel` (imputation, z-score,
Levene, LASSO, random forest, SVM grid) on its training patients only and predicts its test
patients; the grid search is nested inside (its folds are cut from the training patients).

How the repeated-CV numbers are defined
---------------------------------------
Each repeat gives every patient exactly one out-of-fold probability. For repeat ``r`` the AUC,
its DeLong 95% CI (:func:`gliorad.stats.roc_auc_ci`) and the threshold metrics
(:func:`gliorad.stats.threshold_metrics`, HGG when probability >= ``threshold``) are computed on
those out-of-fold probabilities of all patients. The headline ``auc``, ``auc_ci_low``,
``auc_ci_high``, ``accuracy``, ... are **those of repeat 1** (one genuine cross-validated
prediction per patient, so the DeLong CI is valid for it); ``per_repeat`` lists every repeat and
``<metric>_mean`` / ``<metric>_sd`` summarise them (mean and sample SD over repeats). DeLong
tests between models use repeat 1 too, on the same patients and the same folds (the fold
assignment depends only on the seed and the labels).

For a split (paper: 6:2:2), the model is fitted on the training part and the headline metrics
are those of the test part; the validation part is reported beside them.

Any model of ``grading.model`` is evaluated the same way. With ``auto``
(:class:`~gliorad.grading.auto.AutoGradingModel`) the choice of model is nested too: each outer
training part runs its own inner search, and every candidate is refitted there as well, so the
result also holds each candidate's outer predictions (``GradingResult.candidates``,
:mod:`gliorad.grading.comparison`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

from gliorad import stats
from gliorad.errors import GlioradInputError
from gliorad.grading.auto import AutoGradingModel
from gliorad.grading.comparison import CandidateResult, candidate_results, search_record
from gliorad.grading.config import GradingConfig, cv_problem
from gliorad.grading.model import GradingModel, fit_quietly
from gliorad.tables import GradeLabels

__all__ = [
    "GradingResult",
    "binary_metrics",
    "compare_models",
    "cross_validate_grading",
    "roc_table",
    "split_evaluate_grading",
]

log = logging.getLogger(__name__)

HEADLINE_KEYS = ("auc", "auc_ci_low", "auc_ci_high", "accuracy", "sensitivity", "precision",
                 "specificity")


@dataclass
class GradingResult:
    """Predictions, metrics, selection frequencies and per-fold details of one evaluation.

    ``predictions`` has one row per (patient, repeat) for CV, or per held-out patient for a
    split: ``patient_id``, ``label`` (1 = HGG), ``probability`` (of HGG), ``fold``, ``repeat``,
    ``split``. ``selection`` has one row per feature that any fold selected at any stage.
    ``candidates`` (``grading.model: auto`` only) holds every candidate's outer predictions and
    their table (:class:`~gliorad.grading.comparison.CandidateResult`).
    """

    scheme: str
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    selection: pd.DataFrame
    fits: list[dict[str, Any]]
    config: GradingConfig
    notes: list[str] = field(default_factory=list)
    candidates: CandidateResult | None = None

    def scores(self, repeat: int = 1, split: str | None = None) -> pd.Series:
        """Out-of-sample HGG probabilities indexed by patient id (repeat 1 / the test split)."""
        p = self.predictions
        if self.scheme == "split":
            p = p[p["split"] == (split or "test")]
        else:
            p = p[p["repeat"] == repeat]
        return p.set_index("patient_id")["probability"]

    def labels(self, repeat: int = 1, split: str | None = None) -> pd.Series:
        """Labels (1 = HGG) of the patients in :meth:`scores`, same order."""
        p = self.predictions
        p = p[p["split"] == (split or "test")] if self.scheme == "split" else p[p["repeat"] == repeat]
        return p.set_index("patient_id")["label"]


# ---------------------------------------------------------------------------------- metrics
def _finite_or_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def binary_metrics(y: Any, score: Any, threshold: float = 0.5) -> dict[str, Any]:
    """AUC with DeLong 95% CI and threshold metrics of one set of predictions.

    Rates undefined at this threshold (e.g. precision with no predicted HGG) are ``None`` with
    the reason in ``notes``.
    """
    auc = stats.roc_auc_ci(y, score)
    tm = stats.threshold_metrics(y, score, threshold)
    return {
        "auc": auc.auc, "auc_se": auc.se, "auc_ci_low": auc.ci_low, "auc_ci_high": auc.ci_high,
        "accuracy": _finite_or_none(tm.accuracy), "sensitivity": _finite_or_none(tm.sensitivity),
        "precision": _finite_or_none(tm.precision),
        "specificity": _finite_or_none(tm.specificity), "npv": _finite_or_none(tm.npv),
        "f1": _finite_or_none(tm.f1), "threshold": tm.threshold,
        "tp": tm.tp, "fp": tm.fp, "tn": tm.tn, "fn": tm.fn,
        "n_pos": auc.n_pos, "n_neg": auc.n_neg, "notes": list(tm.notes),
    }


def _summary(per_repeat: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("auc", "auc_ci_low", "auc_ci_high", "accuracy", "sensitivity", "precision",
                "specificity", "npv", "f1"):
        values = np.array([r[key] for r in per_repeat if r[key] is not None], dtype=float)
        out[f"{key}_mean"] = float(values.mean()) if values.size else None
        out[f"{key}_sd"] = float(values.std(ddof=1)) if values.size > 1 else None
    return out


def roc_table(y: Any, score: Any) -> pd.DataFrame:
    """ROC curve points (``fpr``, ``tpr``, ``threshold``), HGG = positive."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y), np.asarray(score), pos_label=1,
                              drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


# ------------------------------------------------------------------------------- checking
def _as_xy(X: pd.DataFrame, y: pd.Series | GradeLabels) -> tuple[pd.DataFrame, pd.Series]:
    labels = y.y if isinstance(y, GradeLabels) else y
    if not isinstance(X, pd.DataFrame):
        raise GlioradInputError(f"X must be a pandas DataFrame indexed by patient id, got "
                                f"{type(X).__name__}")
    labels = pd.Series(labels)
    if len(labels) != len(X) or not np.array_equal(np.asarray(labels.index, dtype=str),
                                                   np.asarray(X.index, dtype=str)):
        raise GlioradInputError(
            f"labels ({len(labels)} patients) do not match the feature table's patients "
            f"({len(X)}) in the same order; use gliorad.tables.align_features_labels first")
    values = pd.to_numeric(labels, errors="coerce")
    if values.isna().any() or not set(values.unique()) <= {0, 1}:
        raise GlioradInputError("labels must be 0/1 (1 = HGG); use "
                                "gliorad.tables.parse_grade_labels for other codings")
    return X, values.astype(int)


def _setup(X: pd.DataFrame, y: pd.Series | GradeLabels, config: GradingConfig | None,
           model: GradingModel | None
           ) -> tuple[GradingConfig, pd.DataFrame, pd.Series, GradingModel]:
    """An evaluation's settings (default: the ``paper`` preset), its checked ``X`` and 0/1
    ``y``, and its model (``model``, else the one the settings make)."""
    config = config or GradingConfig.preset("paper")
    X, y = _as_xy(X, y)
    return config, X, y, config.make_model() if model is None else model


def _searches(model) -> bool:
    """Whether ``model`` chooses among candidates (then every candidate is reported too)."""
    return isinstance(model, AutoGradingModel) and model.pick == "best"


def _fit_predict(model, X_train, y_train, X_test, n_jobs_inner: int | None):
    est = clone(model).set_params(n_jobs=n_jobs_inner)
    if _searches(est):  # refit every candidate on this training part: their outer predictions
        est.set_params(refit="all")
    est, fallback = fit_quietly(est, X_train, y_train)
    prob = est.decision_score(X_test)
    search = {"search": search_record(est, X_test)} if _searches(est) else {}
    return {
        "probability": prob,
        "stage_features": {k: est.stage_features_[k] for k in est.active_steps_},
        "selected": est.selected_features_,
        "importance": {f: est.importances_[f] for f in est.selected_features_},
        "best_params": est.best_params_,
        "inner_auc": est.inner_score_,
        "fallback_warnings": fallback,
        "n_imputed_cells": est.n_imputed_cells_,
        **search,
    }


def _run(tasks, n_jobs: int) -> list[dict[str, Any]]:
    """Run ``(model, X_train, y_train, X_test)`` tasks, in parallel over folds when asked."""
    if n_jobs == 1 or len(tasks) == 1:
        return [_fit_predict(*t, None) for t in tasks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_fit_predict)(*t, 1) for t in tasks)


def _selection_table(fits: list[dict[str, Any]]) -> pd.DataFrame:
    """How often each feature survived each stage, over all fitted folds."""
    n = len(fits)
    # the selection steps that ran (stage_features holds active steps only, the final one last:
    # rf for the paper's model, "model" for the other candidates)
    stages = list(fits[0]["stage_features"])
    final = stages[-1]
    counts: dict[str, dict[str, float]] = {}
    for f in fits:
        for stage in stages:
            for feat in f["stage_features"][stage]:
                counts.setdefault(feat, {}).setdefault(stage, 0)
                counts[feat][stage] += 1
        for feat, imp in f["importance"].items():
            counts[feat]["_imp"] = counts[feat].get("_imp", 0.0) + imp
    rows = []
    for feat, c in counts.items():
        n_sel = int(c.get(final, 0))
        row = {"feature": feat, "n_selected": n_sel, "frequency": n_sel / n,
               "mean_importance_when_selected": c["_imp"] / n_sel if n_sel else None}
        for stage in stages[:-1]:
            row[f"{stage}_frequency"] = c.get(stage, 0) / n
        rows.append(row)
    table = pd.DataFrame(rows, columns=["feature", "n_selected", "frequency",
                                        "mean_importance_when_selected",
                                        *[f"{stage}_frequency" for stage in stages[:-1]]])
    return table.sort_values(["n_selected", "feature"], ascending=[False, True],
                             ignore_index=True)


def _fold_records(fits, meta) -> list[dict[str, Any]]:
    out = []
    for f, m in zip(fits, meta, strict=True):
        search = f.get("search")
        chosen = ({"chosen": search["chosen"], "choice_reason": search["reason"],
                   "inner_scores": search["inner"]} if search else {})
        out.append({**m, "selected": f["selected"], "best_params": f["best_params"],
                    "inner_cv_auc": _finite_or_none(f["inner_auc"]),
                    "n_per_stage": {k: len(v) for k, v in f["stage_features"].items()},
                    "fallback_warnings": f["fallback_warnings"],
                    "n_imputed_cells": f["n_imputed_cells"], **chosen})
    return out


def _common_metrics(X: pd.DataFrame, y: pd.Series, config: GradingConfig) -> dict[str, Any]:
    n_missing = int(X.isna().to_numpy().sum())
    if n_missing:
        log.info("%d missing cell(s) in %d column(s): imputed inside each training fold",
                 n_missing, int(X.isna().any().sum()))
    return {"positive_class": "HGG", "negative_class": "LGG",
            "label_meaning": "1 = HGG (positive), 0 = LGG",
            "class_counts": {"HGG": int(y.sum()), "LGG": int((y == 0).sum())},
            "n_patients": len(y), "n_features": X.shape[1], "n_missing_cells": n_missing,
            "threshold": config.threshold}


# ----------------------------------------------------------------------------- repeated CV
def cross_validate_grading(
    X: pd.DataFrame,
    y: pd.Series | GradeLabels,
    config: GradingConfig | None = None,
    model: GradingModel | None = None,
    n_jobs: int = 1,
) -> GradingResult:
    """Repeated stratified k-fold CV of the grading model (``config.cv_repeats`` x ``cv_splits``).

    Parameters
    ----------
    X : DataFrame, patients x features, indexed by patient id (NaN cells allowed)
    y : Series of 0/1 (1 = HGG) in the same order, or :class:`~gliorad.tables.GradeLabels`
    config : GradingConfig, default the ``paper`` preset
    model : GradingModel, optional
        Overrides the model built from ``config`` (the CV settings still come from ``config``).
    n_jobs : int
        Folds fitted in parallel (each fold then runs single-threaded).

    Returns
    -------
    GradingResult
        See the module docstring for how the metrics are defined.
    """
    config, X, y, model = _setup(X, y, config, model)
    problem = cv_problem(int(y.sum()), int((y == 0).sum()), config.cv_splits)
    if problem:
        raise GlioradInputError(problem)
    cv = RepeatedStratifiedKFold(n_splits=config.cv_splits, n_repeats=config.cv_repeats,
                                 random_state=config.seed)
    splits = list(cv.split(X, y))
    tasks, meta = [], []
    for i, (train, test) in enumerate(splits):
        tasks.append((model, X.iloc[train], y.iloc[train].to_numpy(), X.iloc[test]))
        meta.append({"repeat": i // config.cv_splits + 1, "fold": i % config.cv_splits + 1,
                     "n_train": len(train), "n_test": len(test)})
    fits = _run(tasks, n_jobs)
    rows = []
    for (_, test), f, m in zip(splits, fits, meta, strict=True):
        rows.append(pd.DataFrame({
            "patient_id": X.index[test], "label": y.iloc[test].to_numpy(),
            "probability": f["probability"], "fold": m["fold"], "repeat": m["repeat"],
            "split": "cv-test"}))
    pred = pd.concat(rows, ignore_index=True).sort_values(["repeat", "fold", "patient_id"],
                                                           ignore_index=True)
    per_repeat = []
    for r in range(1, config.cv_repeats + 1):
        p = pred[pred["repeat"] == r]
        per_repeat.append({"repeat": r, **binary_metrics(p["label"], p["probability"],
                                                         config.threshold)})
    for f, m in zip(fits, meta, strict=True):
        test_rows = pred[(pred["repeat"] == m["repeat"]) & (pred["fold"] == m["fold"])]
        m["test_auc"] = stats.roc_auc(test_rows["label"], test_rows["probability"])
    metrics = {
        **{k: v for k, v in per_repeat[0].items() if k != "repeat"},
        **_common_metrics(X, y, config),
        "scheme": {"type": "repeated-stratified-kfold", "n_splits": config.cv_splits,
                   "n_repeats": config.cv_repeats, "seed": config.seed,
                   "grid": "nested: inner stratified CV inside each training fold",
                   "headline": "metrics of repeat 1's out-of-fold predictions; DeLong 95% CI; "
                               "*_mean/*_sd over repeats"},
        "per_repeat": per_repeat,
        **_summary(per_repeat),
        "fold_auc": [m["test_auc"] for m in meta],
        "n_fallback_warnings": sum(len(f["fallback_warnings"]) for f in fits),
    }
    candidates = None
    if _searches(model):
        candidates = candidate_results(fits, meta, [test for _, test in splits],
                                       [np.full(len(test), "cv-test") for _, test in splits],
                                       X.index, y, pred, "cv")
        metrics["candidates"] = candidates.block()
    return GradingResult(scheme="cv", predictions=pred, metrics=metrics,
                         selection=_selection_table(fits), fits=_fold_records(fits, meta),
                         config=config, candidates=candidates)


# ---------------------------------------------------------------------------------- split
def split_positions(y: pd.Series, config: GradingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the training, validation and test parts of the stratified split
    (``config.split_ratios``, ``config.seed``): the split of :func:`split_evaluate_grading`, also
    used by the pipeline so that the CNNs are trained without the test patients."""
    train_r, val_r, test_r = config.split_ratios
    ids = np.arange(len(y))
    try:
        rest, test = train_test_split(ids, test_size=test_r, stratify=y,
                                      random_state=config.seed)
        if val_r > 0:
            train, val = train_test_split(rest, test_size=val_r / (train_r + val_r),
                                          stratify=y.iloc[rest], random_state=config.seed)
        else:
            train, val = rest, np.array([], dtype=int)
    except ValueError as err:
        raise GlioradInputError(
            f"cannot split {len(y)} patients ({int(y.sum())} HGG, {int((y == 0).sum())} LGG) "
            f"by ratios {config.split_ratios} with both classes in every part: {err}") from err
    return train, val, test


def fixed_positions(ids: Sequence[str], parts: Mapping[str, str]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of ``ids`` in the ``train`` / ``val`` / ``test`` parts of a given assignment."""
    ids = [str(i) for i in ids]
    unknown = [i for i in ids if i not in parts]
    if unknown:
        raise GlioradInputError(f"{len(unknown)} patient(s) have no part in the given split: "
                                f"{', '.join(unknown[:10])}")
    bad = sorted({str(v) for v in parts.values()} - {"train", "val", "test"})
    if bad:
        raise GlioradInputError(f"split parts must be train, val or test; got {bad}")
    pos = {k: np.array([n for n, i in enumerate(ids) if parts[i] == k], dtype=int)
           for k in ("train", "val", "test")}
    if len(pos["train"]) == 0 or len(pos["test"]) == 0:
        raise GlioradInputError("the given split needs at least one training and one test patient")
    return pos["train"], pos["val"], pos["test"]


def split_evaluate_grading(
    X: pd.DataFrame,
    y: pd.Series | GradeLabels,
    config: GradingConfig | None = None,
    model: GradingModel | None = None,
    n_jobs: int = 1,
    parts: Mapping[str, str] | None = None,
) -> GradingResult:
    """Fit on a stratified training part, report the validation and test parts (paper: 6:2:2).

    The headline metrics are the test part's; ``metrics["validation"]`` holds the validation
    part's when ``split_ratios[1] > 0``. ``parts`` (patient id -> ``train`` / ``val`` / ``test``)
    fixes the split instead (e.g. the split the CNNs were trained on); patients of ``X`` missing
    from it are an error.
    """
    config, X, y, model = _setup(X, y, config, model)
    if parts is None:
        train, val, test = split_positions(y, config)
    else:
        train, val, test = fixed_positions(X.index, parts)
    held_out = np.concatenate([val, test])
    fit = _run([(model, X.iloc[train], y.iloc[train].to_numpy(), X.iloc[held_out])],
               n_jobs=1)[0]
    split_name = np.array(["validation"] * len(val) + ["test"] * len(test))
    pred = pd.DataFrame({"patient_id": X.index[held_out], "label": y.iloc[held_out].to_numpy(),
                         "probability": fit["probability"], "fold": 1, "repeat": 1,
                         "split": split_name})
    parts = {}
    for name in ("validation", "test"):
        p = pred[pred["split"] == name]
        if len(p):
            parts[name] = binary_metrics(p["label"], p["probability"], config.threshold)
    metrics = {
        **parts["test"],
        **_common_metrics(X, y, config),
        "scheme": {"type": "split", "ratios": list(config.split_ratios), "seed": config.seed,
                   "n_train": len(train), "n_validation": len(val), "n_test": len(test),
                   "grid": "inner stratified CV on the training part",
                   "headline": "metrics of the test part; DeLong 95% CI"},
        **({"validation": parts["validation"]} if "validation" in parts else {}),
        "n_fallback_warnings": len(fit["fallback_warnings"]),
    }
    meta = [{"repeat": 1, "fold": 1, "n_train": len(train), "n_test": len(held_out)}]
    candidates = None
    if _searches(model):
        candidates = candidate_results([fit], meta, [held_out], [split_name], X.index, y, pred,
                                       "split")
        metrics["candidates"] = candidates.block()
    return GradingResult(scheme="split", predictions=pred, metrics=metrics,
                         selection=_selection_table([fit]), fits=_fold_records([fit], meta),
                         config=config, candidates=candidates)


# ----------------------------------------------------------------------------- comparisons
def compare_models(y: pd.Series, scores: dict[str, pd.Series]) -> pd.DataFrame:
    """Paired DeLong tests between every two models scored on the same patients.

    Parameters
    ----------
    y : Series of 0/1 (1 = HGG) indexed by patient id
    scores : model name -> Series of scores indexed by patient id (higher = HGG); every model
        must score exactly the patients of ``y``.

    Returns
    -------
    DataFrame with ``model_a``, ``model_b``, ``auc_a``, ``auc_b``, ``diff``, ``ci_low``,
    ``ci_high``, ``z``, ``p`` (:func:`gliorad.stats.delong_test`), one row per pair.
    """
    if len(scores) < 2:
        raise GlioradInputError(f"compare_models needs at least 2 models, got {len(scores)}")
    ids = pd.Index(y.index.map(str))
    aligned = {}
    for name, s in scores.items():
        s = pd.Series(s)
        s.index = s.index.map(str)
        missing = ids.difference(s.index)
        extra = s.index.difference(ids)
        if len(missing) or len(extra):
            raise GlioradInputError(
                f"model {name!r} does not score the same patients as the labels: "
                f"{len(missing)} missing (e.g. {list(missing[:3])}), {len(extra)} extra "
                f"(e.g. {list(extra[:3])}); DeLong tests need the same patients")
        aligned[name] = s.loc[ids].to_numpy(dtype=float)
    labels = y.to_numpy()
    names = list(aligned)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            t = stats.delong_test(labels, aligned[a], aligned[b])
            rows.append({"model_a": a, "model_b": b, "auc_a": t.auc_a, "auc_b": t.auc_b,
                         "diff": t.diff, "ci_low": t.ci_low, "ci_high": t.ci_high, "z": t.z,
                         "p": t.p, "n_pos": t.n_pos, "n_neg": t.n_neg})
    return pd.DataFrame(rows)
