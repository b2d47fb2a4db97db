"""Evaluation of the survival analysis: the training models and cut-off applied unchanged to
every cohort, and the whole analysis.

:func:`evaluate_cohort` (one cohort): Kaplan-Meier by risk group + log-rank, C-index with 95 % CI
of both models and their paired comparison, Tables 3/4 (the final factors refitted in the
cohort, as the paper's validation columns), nomogram predictions at 1/3/5 years, calibration
(training: ``rms::calibrate``-like bootstrap correction; validation: the training model's
predictions against Kaplan-Meier, no refit). An undefined metric (no event, no comparable pairs,
one risk group, a hazard ratio that cannot be estimated, calibration beyond the follow-up) is
null and ``metrics["null_reasons"][key]`` says why (:data:`SURVIVAL_METRICS`).

:func:`run_analysis` (prepare, split, fit, evaluate every cohort) and :func:`apply_models`
(fitted or loaded models on new patients) return a :class:`SurvivalAnalysis`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival.coding import column_cohorts, prepare_table, split_cohorts
from gliorad.survival.config import (
    EVENT,
    SIGNATURE,
    SIGNATURE_Z,
    TIME,
    SurvivalConfig,
    SurvivalWarning,
    time_label,
    warn,
)
from gliorad.survival.cox import CoxModel
from gliorad.survival.cox_tables import univariate_cox
from gliorad.survival.models import (
    SurvivalModels,
    categorical_for,
    fit_multivariable,
    inestimable,
    quiet_lifelines,
)
from gliorad.survival.search import fit_chosen_model, report_external

__all__ = [
    "SURVIVAL_METRICS",
    "CohortResult",
    "SurvivalAnalysis",
    "apply_models",
    "evaluate_cohort",
    "jsonable",
    "records",
    "run_analysis",
]


@dataclass
class CohortResult:
    """Results of one cohort (:func:`evaluate_cohort`)."""

    name: str
    role: str
    metrics: dict[str, Any]
    data: pd.DataFrame
    predictions: pd.DataFrame
    table_integrated: pd.DataFrame | None
    table_clinical: pd.DataFrame | None
    calibration: dict[tuple[str, float], Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _cohort_data(models: SurvivalModels, df: pd.DataFrame, name: str, role: str
                 ) -> tuple[pd.DataFrame, dict, list[str]]:
    """Coded factors + signature for a cohort (missing values per the coding's policy)."""
    scored, notes = models.score_cohort(df, name, training=role == "training")
    coded, n_missing, coding_notes = models.coding.apply(df.loc[scored.index], name)
    notes += coding_notes
    data = coded.join(scored)
    if TIME in df.columns:
        data[TIME] = df.loc[data.index, TIME].astype(float)
        data[EVENT] = df.loc[data.index, EVENT].astype(int)
    counts = {"n_input": len(df), "n_analysed": len(data),
              "n_dropped_missing": int(len(df) - len(data)), "missing_per_factor": n_missing}
    return data, counts, notes


def _concordance(data: pd.DataFrame, risk: np.ndarray) -> tuple[dict[str, Any] | None, str | None]:
    """Harrell's C with its CI, or (None, why) where it is undefined (no comparable pairs)."""
    from gliorad.stats import concordance_ci

    try:
        res = concordance_ci(data[TIME], data[EVENT], risk)
    except GlioradInputError as err:
        return None, " ".join(err.problems)
    return {"c_index": res.c_index, "se": res.se, "ci": [res.ci_low, res.ci_high]}, None


def _refit_table(
    models: SurvivalModels, data: pd.DataFrame, factors: list[str], name: str, what: str,
    sink: list[str], notes: list[str],
) -> tuple[pd.DataFrame | None, str | None]:
    """The final factors refitted in a validation cohort (the paper's validation columns), or
    (None, why)."""
    usable = []
    for f in factors:
        n_levels = data[f].nunique()
        if n_levels < 2:
            notes.append(f"{what}, cohort {name}: factor {f!r} has a single level here; left out "
                         "of this cohort's refit")
            continue
        ref = "low" if f == SIGNATURE else models.coding.references.get(f)
        if ref is not None and ref not in set(data[f]):
            notes.append(f"{what}, cohort {name}: reference level {ref!r} of {f!r} is absent; "
                         "factor left out of this cohort's refit")
            continue
        usable.append(f)
    if not usable:
        why = f"no factor of {factors} has two levels in cohort {name}"
        notes.append(f"{what}, cohort {name}: no factor left to refit")
        return None, why
    try:
        fit = fit_multivariable(data, usable, models.coding, models.config, f"{what}, cohort {name}", sink)
    except GlioradInputError as err:
        why = f"refit not estimable: {' '.join(err.problems)}"
        warn(sink, f"{what}, cohort {name}: {why}")
        return None, why
    return fit.table, None


def _calibrate(
    models: SurvivalModels, which: str, data: pd.DataFrame, role: str, name: str,
    notes: list[str], sink: list[str],
) -> tuple[dict[float, Any], dict[float, str]]:
    """Calibration of one model at every configured time: ``({t: result}, {t: why not})``."""
    from sklearn.frozen import FrozenEstimator

    from gliorad.survival.calibration import calibrate_survival

    cfg = models.config
    fit = models.integrated if which == "integrated" else models.clinical
    if fit is None:
        return {}, {}
    factors = list(fit.model.feature_names_in_)
    out: dict[float, Any] = {}
    failed: dict[float, str] = {}
    for t in cfg.times:
        if role == "training":
            cat = categorical_for(models.coding, factors)
            estimator: Any = CoxModel(categorical=cat or None)
            n_boot = cfg.calibration_boot
        else:
            estimator, n_boot = FrozenEstimator(fit.model), 0
        try:
            with quiet_lifelines():
                out[t] = calibrate_survival(
                    estimator, data[factors], data[TIME], data[EVENT], t,
                    n_groups=cfg.calibration_groups, n_boot=n_boot, seed=cfg.seed,
                )
        except GlioradInputError as err:
            failed[t] = " ".join(err.problems)
            warn(sink, f"calibration of the {which} model at {time_label(t)} ({t:g} days), cohort "
                       f"{name}: not computed: {failed[t]}")
    return out, failed


def _hr_row(table: pd.DataFrame | None, factor: str) -> dict[str, Any] | None:
    if table is None:
        return None
    rows = table[table["factor"] == factor]
    if rows.empty:
        return None
    r = rows.iloc[0]
    return {"hr": float(r["hr"]), "ci": [float(r["ci_lower"]), float(r["ci_upper"])],
            "p": float(r["p_value"])}


#: Survival metrics of a cohort (null, with their reason, where undefined).
SURVIVAL_METRICS = (
    "logrank_p", "logrank_chisq", "c_index_signature", "hr_signature_univariate",
    "c_index_integrated", "c_index_integrated_ci", "c_index_integrated_se", "c_index_clinical",
    "c_index_clinical_ci", "c_index_clinical_se", "compare_p", "compare_diff", "compare_diff_ci",
    "hr_signature", "hr_signature_model",
)


class _Nulls:
    """Null metrics with their reason: ``metrics[key] = None`` (and the ``also`` keys that go
    with it, e.g. its CI) and ``metrics["null_reasons"][key] = why``."""

    def __init__(self, metrics: dict[str, Any]):
        self.metrics = metrics
        self.reasons: dict[str, str] = metrics.setdefault("null_reasons", {})

    def __call__(self, key: str, reason: str, *also: str) -> None:
        for k in (key, *also):
            self.metrics[k] = None
        self.reasons[key] = reason


def evaluate_cohort(
    models: SurvivalModels, df: pd.DataFrame, name: str, role: str = "external",
    calibration: bool = True, refit_tables: bool = True,
) -> CohortResult:
    """Apply the training models and cut-off unchanged to one cohort (module docstring, step 4).

    ``df`` needs the feature columns of the signature and the clinical factors; without
    ``os_days``/``event`` only predictions are made. Never aborts on the data: a metric that is
    undefined in this cohort (no event, no comparable pairs, one risk group, a hazard ratio that
    cannot be estimated, calibration beyond the follow-up, no model) is null, with its reason
    in ``metrics["null_reasons"]`` and, where the cohort could have had it, a
    :class:`SurvivalWarning`; every other metric is still computed.
    """
    from gliorad.stats import compare_concordance
    from gliorad.survival.km import logrank_test

    notes: list[str] = []
    sink: list[str] = []
    data, counts, data_notes = _cohort_data(models, df, name, role)
    notes += data_notes
    predictions = data[["signature_score", SIGNATURE,
                        *([SIGNATURE_Z] if SIGNATURE_Z in data.columns else [])]].copy()
    for which, nom in (("integrated", models.nomogram_integrated), ("clinical", models.nomogram_clinical)):
        if nom is None or data.empty:
            continue
        scored = nom.score(data[list(nom.design.names)])
        for col in scored.columns:
            predictions[f"{which}_{col}"] = scored[col]
    metrics: dict[str, Any] = {"name": name, "role": role, **counts}
    null = _Nulls(metrics)
    if TIME not in data.columns:
        notes.append(f"cohort {name}: no survival data; predictions only")
        return CohortResult(name, role, metrics, data, predictions, None, None, {}, notes, sink)
    n_events = int(data[EVENT].sum())
    metrics.update(n_events=n_events, n_high=int((data[SIGNATURE] == "high").sum()),
                   n_low=int((data[SIGNATURE] == "low").sum()),
                   follow_up_max_days=float(data[TIME].max()) if len(data) else None,
                   calibration={})
    info = models.model_info or {}
    if data.empty or n_events == 0:
        why = (f"no patient left after handling missing values ({counts['n_input']} in the table)"
               if data.empty else f"no event among {len(data)} patients")
        warn(sink, f"cohort {name}: {why}; its survival metrics are null (nothing to validate)")
        for key in SURVIVAL_METRICS:
            null(key, why)
        return CohortResult(name, role, metrics, data, predictions, None, None, {}, notes, sink)
    two_groups = data[SIGNATURE].nunique() == 2
    one_group = (f"every patient is in the {data[SIGNATURE].iloc[0]} risk group"
                 + ("" if models.signature.empty_reason_ is None
                    else f" (the signature is constant: {models.signature.empty_reason_})"))
    # Kaplan-Meier / log-rank by risk group
    if two_groups:
        lr = logrank_test(data[TIME], data[EVENT], pd.Categorical(data[SIGNATURE], ["low", "high"]))
        metrics["logrank_p"] = lr.p_value
        metrics["logrank_chisq"] = lr.chisq
    else:
        null("logrank_p", one_group, "logrank_chisq")
        notes.append(f"cohort {name}: {one_group}; no log-rank test")
    # signature C-index and univariate HR
    if models.signature.empty_reason_ is not None:
        null("c_index_signature", f"the signature is constant: {models.signature.empty_reason_}")
    else:
        c, why = _concordance(data, data["signature_score"].to_numpy())
        metrics["c_index_signature"] = c
        if c is None:
            null("c_index_signature", why)
            warn(sink, f"cohort {name}: C-index of the signature not defined: {why}")
    if two_groups:
        hr, why = _signature_hr(data, models.config.labels)
        metrics["hr_signature_univariate"] = hr
        if hr is None:
            null("hr_signature_univariate", why)
            warn(sink, f"cohort {name}: hazard ratio of the signature groups not estimable: {why}")
    else:
        null("hr_signature_univariate", one_group)
    # C-indices of the two models and their comparison
    lp = {}
    for which, fit in (("integrated", models.integrated), ("clinical", models.clinical)):
        key = f"c_index_{which}"
        if fit is None:
            why = (info.get(which) or {}).get("reason") or f"there is no {which} model"
            null(key, f"no {which} model: {why}", f"{key}_ci", f"{key}_se")
            continue
        lp[which] = fit.model.predict_risk(data[list(fit.model.feature_names_in_)])
        c, why = _concordance(data, lp[which])
        if c is None:
            null(key, why, f"{key}_ci", f"{key}_se")
            warn(sink, f"cohort {name}: C-index of the {which} model not defined: {why}")
            continue
        metrics.update({key: c["c_index"], f"{key}_ci": c["ci"], f"{key}_se": c["se"]})
    compare_keys = ("compare_diff", "compare_diff_ci")
    if (info.get("integrated") or {}).get("same_as_clinical"):
        null("compare_p", "the integrated model is the clinical model", *compare_keys)
    elif len(lp) < 2:
        null("compare_p", "there is no integrated or no clinical model to compare", *compare_keys)
    elif metrics.get("c_index_integrated") is None or metrics.get("c_index_clinical") is None:
        null("compare_p", "a C-index is not defined in this cohort", *compare_keys)
    else:
        cmp = compare_concordance(data[TIME], data[EVENT], lp["integrated"], lp["clinical"])
        metrics.update(compare_p=cmp.p, compare_diff=cmp.diff, compare_diff_ci=[cmp.ci_low, cmp.ci_high])
    # Tables 3 / 4: training = the final models; validation = refits with the same factors
    t_int = t_clin = None
    if role == "training":
        t_int = None if models.integrated is None else models.integrated.table
        t_clin = None if models.clinical is None else models.clinical.table
    elif refit_tables:
        for which, fit, factors in (("integrated", models.integrated, models.integrated_factors),
                                    ("clinical", models.clinical, models.clinical_factors)):
            if fit is None:
                null.reasons[f"table_{which}"] = f"no {which} model"
                continue
            table, why = _refit_table(models, data, factors, name, f"{which} model", sink, notes)
            if table is None:
                null.reasons[f"table_{which}"] = why
            if which == "integrated":
                t_int = table
            else:
                t_clin = table
    if models.signature_term != SIGNATURE:  # signature_term: continuous
        metrics["hr_signature_per_sd"] = _hr_row(t_int, models.signature_term)
        if metrics["hr_signature_per_sd"] is None:
            null("hr_signature_per_sd", "the continuous signature is not in this cohort's "
                 "integrated model (table)")
    hr = _hr_row(t_int, SIGNATURE)
    metrics["hr_signature"] = hr if hr is not None else metrics.get("hr_signature_univariate")
    metrics["hr_signature_model"] = ("multivariable" if hr is not None else
                                     "univariate" if metrics["hr_signature"] else None)
    if metrics["hr_signature"] is None:
        null("hr_signature", metrics["null_reasons"].get("hr_signature_univariate")
             or "no hazard ratio of the signature groups", "hr_signature_model")
    cal: dict[tuple[str, float], Any] = {}
    if calibration:
        for which in ("integrated", "clinical"):
            done, failed = _calibrate(models, which, data, role, name, notes, sink)
            for t, res in done.items():
                cal[(which, t)] = res
            for t, why in failed.items():
                metrics["calibration"][f"{which}/{t:g}"] = None
                null.reasons[f"calibration.{which}/{t:g}"] = why
    metrics["calibration"].update({
        f"{which}/{t:g}": {
            "t_days": t, "n_boot": res.n_boot,
            "groups": records(res.table),
            "mean_abs_error": float(np.nanmean(np.abs(res.table["observed"] - res.table["predicted"]))),
        }
        for (which, t), res in cal.items()
    })
    metrics["null_reasons"] = metrics.pop("null_reasons")  # last in the record
    return CohortResult(name, role, metrics, data, predictions, t_int, t_clin, cal, notes, sink)


def _signature_hr(data: pd.DataFrame, labels: Mapping[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """Univariate hazard ratio high vs low, or (None, why) where it cannot be estimated (a group
    without events)."""
    try:
        with quiet_lifelines():
            uni = univariate_cox(data, TIME, EVENT, [SIGNATURE], categorical={SIGNATURE: "low"},
                                 labels=labels)
    except GlioradInputError as err:
        return None, " ".join(err.problems)
    bad = inestimable(uni, data)
    if bad:
        return None, (f"{'; '.join(bad)} (a risk group without events: the hazard ratio is "
                      "infinite or zero)")
    return _hr_row(uni, SIGNATURE), None


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON-ready dicts (:func:`jsonable`)."""
    return [{k: jsonable(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def jsonable(v: Any) -> Any:
    """``v`` for ``metrics.json``: numpy scalars as Python numbers, NaN / infinity / ``pd.NA``
    as null, dict keys as strings (recursively)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return x if np.isfinite(x) else None
    if v is pd.NA:
        return None
    return v


# ============================================================================ whole analysis
@dataclass
class SurvivalAnalysis:
    """Result of :func:`run_analysis`."""

    models: SurvivalModels
    cohorts: dict[str, CohortResult]
    config: SurvivalConfig
    notes: list[str]
    warnings: list[str]

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` content."""
        m = self.models
        weights = getattr(m.signature, "weights_", None)  # none for the tree candidates
        search = {} if m.search is None else {"model_search": m.search.to_dict()}
        return jsonable({
            "training": m.training,
            "cohorts": {name: c.metrics for name, c in self.cohorts.items()},
            "signature": {"features": m.signature.features_,
                          "weights": None if weights is None else weights.tolist(),
                          "formula": m.signature.formula_text(), "cutoff": m.cutoff,
                          "cutoff_method": m.cutoff_method, "sequence": m.sequence,
                          "constant": m.signature.empty_reason_ is not None,
                          "constant_reason": m.signature.empty_reason_},
            "sequence_choice": None if m.sequence_choice is None else m.sequence_choice.to_dict(),
            "integrated_factors": m.integrated_factors,
            "clinical_factors": m.clinical_factors,
            "signature_in_integrated_model": m.signature_term in m.integrated_factors,
            "models": m.model_info,
            "factor_coding": m.coding.to_dict(),
            "times_days": list(self.config.times),
            **search,
            "notes": self.notes,
            "warnings": self.warnings,
        })


def run_analysis(
    features: pd.DataFrame, clinical: pd.DataFrame, cfg: SurvivalConfig | None = None,
) -> SurvivalAnalysis:
    """The whole analysis: prepare, split, fit on the training cohort, evaluate every cohort
    (training included) with the models and cut-off unchanged."""
    cfg = cfg or SurvivalConfig()
    table, fcols, notes = prepare_table(features, clinical, cfg.population)
    cohorts, roles, split_notes = split_cohorts(table, cfg.split, cfg.seed)
    notes += split_notes
    train_name = next(iter(cohorts))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SurvivalWarning)
        models = fit_chosen_model(table.loc[cohorts[train_name]], fcols, cfg, name=train_name)
    _rewarn(caught)
    if models.search is not None:  # after the choice: every candidate in the validation cohorts
        report_external(models, table.loc[cohorts[train_name]], fcols,
                        {k: table.loc[ids] for k, ids in cohorts.items()}, roles)
    return _evaluate_all(models, table, cohorts, roles, notes)


def apply_models(
    models: SurvivalModels, features: pd.DataFrame, clinical: pd.DataFrame,
    by: str | None = None, name: str = "validation",
) -> SurvivalAnalysis:
    """Evaluate fitted (or loaded) models on new patients as external cohorts: one cohort per
    value of column ``by``, or a single cohort ``name``."""
    table, _, notes = prepare_table(features, clinical, models.config.population,
                                    survival_required=False)
    if by is None:
        cohorts = {name: table.index}
    else:
        cohorts = column_cohorts(table, by, "cohort column", notes)
    roles = {k: "external" for k in cohorts}
    return _evaluate_all(models, table, cohorts, roles, notes)


def _evaluate_all(
    models: SurvivalModels, table: pd.DataFrame, cohorts: Mapping[str, pd.Index],
    roles: Mapping[str, str], notes: list[str],
) -> SurvivalAnalysis:
    notes = [*notes, *models.notes]
    sink = list(models.warnings)
    results = {}
    for name, ids in cohorts.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SurvivalWarning)
            res = evaluate_cohort(models, table.loc[ids], name, roles[name])
        _rewarn(caught)
        notes += res.notes
        sink += res.warnings
        results[name] = res
    return SurvivalAnalysis(models, results, models.config, notes, sink)


def _rewarn(caught: list) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

