"""Cross-validation of the whole survival model building (``gliorad survival cv``).

:func:`cross_validate` repeats the fitting (:func:`.models.fit_models`: sequence choice,
signature, cut-off, factor selection) inside stratified folds of the training cohort and
evaluates each fold's models on its held-out patients (:func:`.evaluation.evaluate_cohort`);
validation cohorts are not touched. :class:`CVResult` holds the per-fold table, the out-of-fold
predictions and the summary (means / SDs, the pooled cross-validated log-rank test).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival.coding import prepare_table, split_cohorts
from gliorad.survival.config import (
    EVENT,
    SIGNATURE,
    TIME,
    SurvivalConfig,
    SurvivalWarning,
    warn,
)
from gliorad.survival.evaluation import evaluate_cohort, jsonable, records
from gliorad.survival.search import fit_chosen_model

__all__ = ["CVResult", "cross_validate"]


@dataclass
class CVResult:
    """Result of :func:`cross_validate`.

    ``folds``: one row per fold (C-indices on the held-out patients, compare P, log-rank P,
    selected factors). ``oof``: out-of-fold signature group, integrated and clinical linear
    predictors per patient. ``summary``: means / SDs, and the pooled cross-validated
    Kaplan-Meier log-rank test of the out-of-fold risk groups (Simon et al. 2011, JNCI 103:1).
    """

    folds: pd.DataFrame
    oof: pd.DataFrame
    summary: dict[str, Any]
    config: SurvivalConfig
    notes: list[str]
    warnings: list[str]

    def metrics(self) -> dict[str, Any]:
        return jsonable({"summary": self.summary, "folds": records(self.folds),
                          "notes": self.notes, "warnings": self.warnings})


def cross_validate(
    features: pd.DataFrame, clinical: pd.DataFrame, cfg: SurvivalConfig | None = None,
) -> CVResult:
    """Stratified ``cfg.cv_folds``-fold cross-validation of the whole model building (sequence
    choice, signature, cut-off, factor selection; with ``model: auto`` the model search too,
    nested in each fold, whose choice is the fold table's ``model``) inside the training cohort
    of the split; validation cohorts are not touched."""
    from sklearn.model_selection import StratifiedKFold

    from gliorad.stats import compare_concordance, concordance_ci
    from gliorad.survival.km import logrank_test

    cfg = cfg or SurvivalConfig()
    table, fcols, notes = prepare_table(features, clinical, cfg.population)
    cohorts, _, split_notes = split_cohorts(table, cfg.split, cfg.seed)
    notes += split_notes
    train_name = next(iter(cohorts))
    train = table.loc[cohorts[train_name]]
    sink: list[str] = []
    n_events = int(train[EVENT].sum())
    smallest = min(n_events, len(train) - n_events)
    n_folds = cfg.cv_folds
    if smallest < n_folds:
        if smallest < 2:
            raise GlioradInputError(
                f"cross-validation in cohort {train_name}: {n_events} event(s) among {len(train)} "
                "patients; stratified folds need at least 2 patients with and 2 without an event")
        n_folds = smallest
        warn(sink, f"cross-validation in cohort {train_name}: {n_events} event(s) among "
                   f"{len(train)} patients: {n_folds} folds instead of {cfg.cv_folds}")
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=cfg.seed)
    rows, oof = [], []
    for k, (tr, te) in enumerate(folds.split(train, train[EVENT]), start=1):
        fold_name = f"{train_name} fold {k}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SurvivalWarning)
            try:
                models = fit_chosen_model(train.iloc[tr], fcols, cfg, name=fold_name,
                                          nomograms=False)
                res = evaluate_cohort(models, train.iloc[te], f"{train_name} held-out {k}",
                                      "validation", calibration=False, refit_tables=False)
            except GlioradInputError as err:
                raise GlioradInputError([f"cross-validation fold {k}: {p}" for p in err.problems]) from err
        sink += [str(w.message) for w in caught if issubclass(w.category, SurvivalWarning)]
        m = res.metrics
        rows.append({
            "fold": k, "n_train": len(tr), "n_test": m["n_analysed"], "events_test": m["n_events"],
            "sequence": models.sequence, "cutoff": models.cutoff,
            "signature_features": ";".join(models.signature.features_),
            "integrated_factors": ";".join(models.integrated_factors),
            "clinical_factors": ";".join(models.clinical_factors),
            "c_index_signature": (m.get("c_index_signature") or {}).get("c_index"),
            "c_index_integrated": m["c_index_integrated"], "c_index_clinical": m["c_index_clinical"],
            "compare_p": m["compare_p"], "logrank_p": m["logrank_p"],
        })
        if models.search is not None:  # survival.model other than paper: the fold's choice
            chosen = models.search.candidates[models.search.chosen]
            rows[-1].update(model=models.search.chosen, inner_c_index=chosen.inner_c_index)
        d = res.data
        part = pd.DataFrame({"fold": k, TIME: d[TIME], EVENT: d[EVENT], SIGNATURE: d[SIGNATURE],
                             "signature_score": d["signature_score"]}, index=d.index)
        for which in ("integrated", "clinical"):
            fit = getattr(models, which)
            part[f"lp_{which}"] = (np.nan if fit is None else
                                   fit.model.predict_risk(d[list(fit.model.feature_names_in_)]))
        oof.append(part)
    fold_table = pd.DataFrame(rows)
    oof_table = pd.concat(oof).sort_index()
    summary: dict[str, Any] = {"training": train_name, "n_patients": len(train),
                               "n_events": n_events, "folds": n_folds}
    for col in ("c_index_signature", "c_index_integrated", "c_index_clinical"):
        vals = fold_table[col].astype(float)
        summary[f"{col}_mean"] = float(vals.mean()) if vals.notna().any() else None
        summary[f"{col}_sd"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else None
    groups = pd.Categorical(oof_table[SIGNATURE], ["low", "high"])
    if oof_table[SIGNATURE].nunique() == 2:
        summary["cv_logrank_p"] = logrank_test(oof_table[TIME], oof_table[EVENT], groups).p_value
    else:
        summary["cv_logrank_p"] = None
        summary["null_reasons"] = {"cv_logrank_p": "every out-of-fold patient is in the "
                                                   f"{oof_table[SIGNATURE].iloc[0]} risk group"}
    pooled = {}
    for which in ("integrated", "clinical"):
        lp = oof_table[f"lp_{which}"]
        if lp.notna().all():
            c = concordance_ci(oof_table[TIME], oof_table[EVENT], lp)
            pooled[which] = {"c_index": c.c_index, "ci": [c.ci_low, c.ci_high]}
    if len(pooled) == 2:
        cmp = compare_concordance(oof_table[TIME], oof_table[EVENT], oof_table["lp_integrated"],
                                  oof_table["lp_clinical"])
        pooled["compare_p"] = cmp.p
    summary["pooled_out_of_fold"] = pooled
    summary["pooled_note"] = ("pooled out-of-fold linear predictors come from different fold "
                              "models; the per-fold C-indices are the primary estimate")
    return CVResult(fold_table, oof_table, summary, cfg, notes, sink)

