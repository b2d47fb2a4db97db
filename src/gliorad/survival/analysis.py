"""End-to-end LGG survival analysis over cohorts (Xu et al. 2022, "Building of deep-radiomics
signature" and "Building of prognostic nomogram").

Data flow (:func:`run_analysis`):

1. :func:`prepare_table` joins a feature table and a canonical clinical table (``os_days``,
   ``event``, candidate factors) by patient id and keeps the population (LGG by default).
2. :func:`split_cohorts` makes the training cohort and the validation cohorts: by a column
   (paper: train on centre B, validate on centre A; several external values allowed) or at
   random (stratified on the event).
3. :func:`fit_models` on the training cohort only:

   a. sequence choice (:mod:`.sequence_choice`, optional): radiomics of each sequence, median-OS
      prognosis model, best AUC (or forced);
   b. the fused features (chosen sequence's radiomics + deep features) -> the signature
      (:class:`.DeepRadiomicsSignature`);
   c. cut-off on the training signature (median, or the maximally selected log-rank "X-tile"
      search); ``signature`` = ``high`` (score > cut-off) / ``low``;
   d. clinical factors coded once (:class:`FactorCoding`: rare levels pooled, references, missing
      values complete-case or imputed), then the paper's rule (univariate P < 0.05 ->
      multivariable P < 0.05 -> refit, :func:`select_cox_factors`) over the clinical factors +
      signature (**integrated** model) and over the clinical factors alone (**clinical**
      model); nomograms of both.

4. :func:`evaluate_cohort` on every cohort with the models and the cut-off **unchanged**:
   Kaplan-Meier by risk group + log-rank, C-index with 95 % CI of both models and their paired
   comparison, Tables 3/4 (the final factors refitted in the cohort, as the paper's validation
   columns), nomogram predictions at 1/3/5 years, calibration (training: ``rms::calibrate``-like
   bootstrap correction; validation: the training model's predictions against Kaplan-Meier, no
   refit).

:func:`cross_validate` repeats 3-4 inside stratified folds of the training cohort
(``gliorad survival cv``); :func:`write_analysis` / :func:`write_cv` write the artifacts.

Robustness (Part 7, and issue 16 "no dead ends"): a scientific outcome is a result, never an
error. Fewer than ``min_events_per_factor`` events per coefficient warns
(:class:`SurvivalWarning`, also listed in ``metrics.json``). A Cox coefficient that cannot be
estimated (an error from the fitter, or a standard error over the factor's range above
``MAX_SE_SPAN`` on the log-hazard scale: complete separation, a level without events) leaves its
factor out of that model with a warning (:func:`fit_estimable`); factors with a single level in
a cohort are left out of that cohort's refit (noted); missing clinical values are dropped
(complete case, counted per cohort) or imputed (training median / most frequent level), as
configured. The factor rule of each model is ``clinical_selection`` / ``integrated_selection``:
``paper`` (the P-value rule above) or ``prespecified`` (every usable factor of ``factors``; the
integrated model adds the signature). Dead ends and what happens instead:

* no factor kept for the integrated model (signature included): the integrated model **is** the
  clinical model (``metrics["models"]["integrated"]["same_as_clinical"]``, with the reason);
* no factor kept for either model: both are None with the reason; the signature's own C-index,
  hazard ratio, Kaplan-Meier curves and log-rank test are still reported (an empty Cox model is
  not a model, so none is built);
* a constant signature (the elastic net keeps no feature, or its penalty cannot be
  cross-validated on few events) or every training patient in one risk group: the signature is
  left out of the Cox models; its C-index, hazard ratio and log-rank test are null with the
  reason;
* few training events: the signature's penalty search uses fewer folds (down to 2); the
  sequence choice uses fewer folds or its stated fallback (:mod:`.sequence_choice`); an
  ``optimal`` cut-off that cannot be searched falls back to the median;
* in a cohort, an undefined metric (no event, no comparable pairs, one risk group, a hazard
  ratio that cannot be estimated, calibration beyond the follow-up) is null and
  ``metrics["cohorts"][name]["null_reasons"][key]`` says why; every other cohort and metric is
  still computed.

Errors remain for bad input only (missing columns, unknown split values, a signature feature
absent from a cohort's table) and for a training cohort without any event (nothing can be
fitted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival.cox import CoxModel
from gliorad.survival.cox_tables import (
    TABLE_COLUMNS,
    CoxFit,
    CoxSelection,
    multivariable_cox,
    univariate_cox,
)
from gliorad.survival.nomogram import Nomogram, build_nomogram
from gliorad.survival.signature import DeepRadiomicsSignature, make_survival_y

TIME, EVENT, SIGNATURE = "os_days", "event", "signature"
MAX_SE_SPAN = 20.0  # se x factor range on the log-HR scale beyond which a coefficient is "infinite"
DAYS_PER_YEAR = 365.25

__all__ = [
    "CVResult",
    "CohortResult",
    "FactorCoding",
    "SequenceConfig",
    "SignatureConfig",
    "SplitConfig",
    "SurvivalAnalysis",
    "SurvivalConfig",
    "SurvivalModels",
    "SurvivalWarning",
    "apply_models",
    "cross_validate",
    "evaluate_cohort",
    "fit_models",
    "prepare_table",
    "read_feature_table",
    "run_analysis",
    "split_cohorts",
    "synthetic_feature_table",
    "write_analysis",
    "write_cv",
]


class SurvivalWarning(UserWarning):
    """A survival result that is computed but fragile (few events per factor, skipped curve)."""


# ================================================================================== config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How patients are split into a training cohort and validation cohorts.

    ``method="column"``: ``column`` holds the cohort of each patient (e.g. ``centre``);
    ``train`` is the training value and ``external`` the validation values (empty: every other
    value). ``method="random"``: a stratified random split (``train_fraction``; the validation
    cohort is called ``validation``). ``method="none"``: all patients train (for ``cv``).
    """

    method: Literal["column", "random", "none"] = "column"
    column: str = "centre"
    train: str | None = None
    external: list[str] = Field(default_factory=list)
    train_fraction: float = Field(0.7, gt=0.0, lt=1.0)


class SequenceConfig(_Strict):
    """Feature columns and the per-sequence prognosis models (Part 1).

    Radiomics columns are ``<sequence>_...``; deep (2D dual-task CNN) columns start with
    ``deep_prefix``. ``sequences`` empty: every feature column is used, no sequence choice.
    ``fallback``: what the signature uses when the choice cannot be estimated (too few patients
    per prognosis class for a 2-fold CV): ``all`` candidate sequences' radiomics, or the
    ``first`` candidate (:func:`gliorad.survival.sequence_choice.choose_sequence`).
    """

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    force: str | None = None
    evaluate: bool = True
    deep_prefix: str | None = "cnn2d_"
    top_k: int = Field(10, ge=1)
    levene_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    levene_test: Literal["variance", "ttest"] = "variance"
    n_estimators: int = Field(100, ge=1)
    cv_folds: int = Field(5, ge=2)
    threshold: Literal["observed_median", "km_median"] = "observed_median"
    censored: Literal["exclude", "favourable"] = "exclude"
    fallback: Literal["all", "first"] = "all"


class SignatureConfig(_Strict):
    """Settings of :class:`DeepRadiomicsSignature` (see its docstring)."""

    top_k: int = Field(10, ge=1)
    ranking: Literal["residual_rf", "rsf_depth", "rf_time"] = "residual_rf"
    weighting: Literal["coxnet", "elasticnet_time"] = "coxnet"
    n_estimators: int = Field(500, ge=1)
    min_samples_leaf: int = Field(5, ge=1)
    l1_ratios: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9, 1.0])
    n_alphas: int = Field(30, ge=1)
    alpha_min_ratio: float = Field(0.01, gt=0.0, lt=1.0)
    alpha_rule: Literal["best", "1se"] = "best"
    cv_folds: int = Field(5, ge=2)
    feature_groups: list[str] | None = Field(
        None, description="column prefixes of feature sources ranked separately (e.g. cnn2d_); "
                          "None: one ranking (the paper's)")


DEFAULT_FACTORS = ["age", "sex", "location", "grade", "laterality", "histology", "enhancement"]
DEFAULT_REFERENCES = {
    "sex": "F", "location": "frontal", "grade": "II", "laterality": "left",
    "histology": "astrocytoma", "enhancement": "no",
}
DEFAULT_LABELS = {
    "age": "Age", "sex": "Sex", "location": "Location", "grade": "Grade",
    "laterality": "Laterality", "histology": "Histologic type",
    "enhancement": "Contrast enhancement", SIGNATURE: "Signature",
}


class SurvivalConfig(_Strict):
    """Every setting of the survival analysis. Times are in days (the clinical table's unit
    is converted on reading); ``times`` are the nomogram / calibration horizons.

    ``clinical_selection`` / ``integrated_selection``: the factor rule of each Cox model.
    ``paper`` (Xu et al. 2022): univariate P < ``p_threshold``, then multivariable
    P < ``p_threshold``, refitted. ``prespecified`` (the rms / TRIPOD habit): every usable factor
    of ``factors`` (the integrated model adds the signature), no P-value selection; a factor with
    a single level or that cannot be estimated in the training cohort is left out with a warning.
    """

    population: Literal["LGG", "all"] = "LGG"
    split: SplitConfig = Field(default_factory=SplitConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    cutoff: Literal["median", "optimal"] = "median"
    cutoff_minprop: float = Field(0.1, gt=0.0, lt=0.5)
    factors: list[str] = Field(default_factory=lambda: list(DEFAULT_FACTORS))
    reference_levels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REFERENCES))
    labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS))
    p_threshold: float = Field(0.05, gt=0.0, lt=1.0)
    clinical_selection: Literal["paper", "prespecified"] = "paper"
    integrated_selection: Literal["paper", "prespecified"] = "paper"
    force_signature: bool = False
    min_level_size: int = Field(5, ge=0)
    missing: Literal["complete_case", "impute"] = "complete_case"
    min_events_per_factor: float = Field(10.0, ge=0.0)
    times: list[float] = Field(default_factory=lambda: [365.0, 1095.0, 1825.0])
    calibration_boot: int = Field(40, ge=0)
    calibration_groups: int = Field(3, ge=1)
    cv_folds: int = Field(5, ge=2)
    seed: int = 0
    n_jobs: int = Field(1, ge=1)

    @field_validator("times")
    @classmethod
    def _positive_times(cls, v: list[float]) -> list[float]:
        if not v or any(not (t > 0 and math.isfinite(t)) for t in v):
            raise ValueError(f"times must be positive numbers of days; got {v}")
        return sorted(v)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SurvivalConfig:
        """``"paper"`` (the paper's settings) or ``"demo"`` (small, for 2 CPU cores)."""
        check_option("preset", name, PRESETS)
        data = {**PRESETS[name], **overrides}
        return cls.model_validate(data)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "signature": {"top_k": 10, "n_estimators": 500, "n_alphas": 50},
        "sequence": {"sequences": ["t1", "t1ce", "t2"], "top_k": 10},
        "cutoff": "median", "times": [365.0, 1095.0, 1825.0], "calibration_boot": 200,
        "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
        "clinical_selection": "paper", "integrated_selection": "paper",
    },
    "demo": {
        "signature": {"top_k": 10, "n_estimators": 200, "n_alphas": 20, "l1_ratios": [0.5, 1.0]},
        "sequence": {"sequences": ["t1", "t1ce", "t2"], "top_k": 10, "n_estimators": 50},
        "cutoff": "median", "times": [365.0, 1095.0, 1825.0], "calibration_boot": 20,
        "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
        "clinical_selection": "paper", "integrated_selection": "paper",
        "cv_folds": 3,
    },
}


# ============================================================================ small helpers
def _warn(sink: list[str], message: str) -> None:
    sink.append(message)
    warnings.warn(message, SurvivalWarning, stacklevel=3)


def time_label(days: float) -> str:
    """``1-year`` for 365/365.25 days, else ``<d>-day``."""
    years = days / DAYS_PER_YEAR
    if abs(years - round(years)) * DAYS_PER_YEAR <= 1.5 and round(years) >= 1:
        return f"{round(years)}-year"
    return f"{days:g}-day"


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# ============================================================================ preparation
def prepare_table(
    features: pd.DataFrame, clinical: pd.DataFrame, population: str = "LGG",
    survival_required: bool = True,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Join features and a canonical clinical table by patient id; keep the population.

    Parameters
    ----------
    features : pandas.DataFrame
        Indexed by patient id; numeric feature columns.
    clinical : pandas.DataFrame
        Canonical clinical table (:func:`gliorad.clinical.read_clinical`) indexed by patient id
        with ``os_days``, ``event`` and candidate factors (and ``grade_group`` for
        ``population="LGG"``).
    population : {"LGG", "all"}
    survival_required : bool
        If False and no patient has ``os_days``, the table is kept without survival columns
        (predictions only); patients lacking survival are otherwise left out (counted).

    Returns
    -------
    table : pandas.DataFrame
        Clinical columns then feature columns, one row per patient kept.
    feature_columns : list of str
    notes : list of str
        Patients left out and why (counts).
    """
    check_option("population", population, ("LGG", "all"))
    for name, df in (("features", features), ("clinical", clinical)):
        if not isinstance(df, pd.DataFrame):
            raise GlioradInputError(f"{name} must be a pandas DataFrame indexed by patient id")
    missing = [c for c in (TIME, EVENT) if c not in clinical.columns]
    no_survival = not survival_required and (bool(missing) or clinical[TIME].isna().all())
    if missing and not no_survival:
        raise GlioradInputError(
            f"clinical table lacks {missing}: survival analysis needs os_time (declared unit, "
            "stored as os_days) and event"
        )
    feats = features.copy()
    feats.index = feats.index.astype(str)
    clin = clinical.drop(columns=[c for c in ("_row",) if c in clinical.columns]).copy()
    clin.index = clin.index.astype(str)
    clash = sorted(set(feats.columns.astype(str)) & set(clin.columns.astype(str)))
    if clash:
        raise GlioradInputError(f"feature table and clinical table share column name(s) {clash[:5]}")
    notes: list[str] = []
    only_f = feats.index.difference(clin.index)
    only_c = clin.index.difference(feats.index)
    if len(only_f):
        notes.append(f"{len(only_f)} patient(s) with features but no clinical row left out "
                     f"(e.g. {list(only_f[:3])})")
    if len(only_c):
        notes.append(f"{len(only_c)} patient(s) with a clinical row but no features left out "
                     f"(e.g. {list(only_c[:3])})")
    ids = clin.index.intersection(feats.index, sort=False)
    if len(ids) == 0:
        raise GlioradInputError(
            "no patient id is in both the feature table and the clinical table "
            f"(features e.g. {list(feats.index[:3])}, clinical e.g. {list(clin.index[:3])})"
        )
    table = clin.loc[ids].join(feats.loc[ids])
    if no_survival:
        table = table.drop(columns=[c for c in (TIME, EVENT) if c in table.columns])
        notes.append("no survival data: predictions only")
        return _keep_population(table, population, notes, [str(c) for c in feats.columns])
    no_surv = table[TIME].isna() | table[EVENT].isna()
    if no_surv.any():
        notes.append(f"{int(no_surv.sum())} patient(s) without os_time/event left out "
                     f"(e.g. {list(table.index[no_surv][:3])})")
        table = table.loc[~no_surv]
    table[EVENT] = table[EVENT].astype(int)
    table[TIME] = table[TIME].astype(float)
    return _keep_population(table, population, notes, [str(c) for c in feats.columns])


def _keep_population(
    table: pd.DataFrame, population: str, notes: list[str], fcols: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    if population == "LGG":
        if "grade_group" not in table.columns:
            raise GlioradInputError(
                "population 'LGG' needs the clinical grade (grade_group LGG/HGG); give a grade "
                "column or set population 'all'"
            )
        unknown = table["grade_group"].isna()
        hgg = table["grade_group"] == "HGG"
        if unknown.any():
            notes.append(f"{int(unknown.sum())} patient(s) with unknown grade left out (population LGG)")
        if hgg.any():
            notes.append(f"{int(hgg.sum())} HGG patient(s) left out (population LGG)")
        table = table.loc[~unknown & ~hgg]
    if table.empty:
        raise GlioradInputError(f"no patient left for the survival analysis (population {population})")
    bad = [c for c in fcols if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise GlioradInputError(f"feature column(s) {bad[:5]} are not numeric")
    return table, fcols, notes


ID_COLUMNS = ("patient_id", "id", "patient", "subject_id", "subject", "case_id")


def read_feature_table(path: Any, nonfinite: str = "missing", drop: bool = True) -> pd.DataFrame:
    """Read a feature table (CSV, TSV by extension, or Parquet): one row per patient, the id in
    a ``patient_id`` (or ``id``/``subject``/...) column, else the first column; numeric features.

    Cleaned by :func:`gliorad.tables.clean_features` (spreadsheet error cells and infinite
    values read as missing, or refused with ``nonfinite="error"``; with ``drop``, columns empty
    or constant for every patient dropped); the changes are logged as warnings
    (:func:`gliorad.tables.read_features` returns them as a record)."""
    from gliorad.tables import read_features

    X, cleaning = read_features(path, first_column_id=True, nonfinite=nonfinite, drop=drop)
    cleaning.log()
    return X


def split_cohorts(
    table: pd.DataFrame, split: SplitConfig, seed: int = 0
) -> tuple[dict[str, pd.Index], dict[str, str], list[str]]:
    """Training and validation cohorts.

    Returns
    -------
    cohorts : dict
        ``{name: patient ids}``, the training cohort first.
    roles : dict
        ``{name: "training" | "external" | "validation"}``.
    notes : list of str
    """
    notes: list[str] = []
    if split.method == "none":
        return {"training": table.index}, {"training": "training"}, notes
    if split.method == "random":
        from sklearn.model_selection import train_test_split

        strat = table[EVENT] if table[EVENT].value_counts().min() >= 2 else None
        tr, va = train_test_split(table.index, train_size=split.train_fraction,
                                  random_state=seed, stratify=strat)
        return ({"training": pd.Index(tr), "validation": pd.Index(va)},
                {"training": "training", "validation": "validation"}, notes)
    col = split.column
    if col not in table.columns:
        raise GlioradInputError(f"split column {col!r} not found; columns are {list(table.columns[:12])}")
    values = table[col].astype("string")
    if values.isna().any():
        notes.append(f"{int(values.isna().sum())} patient(s) without a {col!r} value left out")
    present = sorted(values.dropna().unique())
    if split.train is None:
        raise GlioradInputError(f"give the training value of split column {col!r} (one of: {', '.join(present)})")
    if split.train not in present:
        raise GlioradInputError(
            f"training value {split.train!r} of split column {col!r} not found; values are: "
            f"{', '.join(present)}"
        )
    external = list(split.external) or [v for v in present if v != split.train]
    unknown = [v for v in external if v not in present]
    if unknown:
        raise GlioradInputError(
            f"external value(s) {unknown} of split column {col!r} not found; values are: "
            f"{', '.join(present)}"
        )
    if split.train in external:
        raise GlioradInputError(f"{split.train!r} is both the training and an external value")
    cohorts = {split.train: table.index[(values == split.train).fillna(False).to_numpy()]}
    roles = {split.train: "training"}
    for v in external:
        cohorts[v] = table.index[(values == v).fillna(False).to_numpy()]
        roles[v] = "external"
    return cohorts, roles, notes


# ============================================================================ factor coding
@dataclass
class FactorCoding:
    """How clinical factors are coded, learnt on the training cohort and applied unchanged.

    Attributes
    ----------
    factors : list of str
        Usable candidate factors.
    references : dict
        ``{categorical factor: reference level}``.
    levels : dict
        ``{categorical factor: training levels after pooling}``.
    pooled : dict
        ``{factor: {rare level: "other"}}``: levels with fewer than ``min_level_size`` training
        patients pooled into ``other``; a level unseen in training also goes to ``other`` when
        the factor has one (else it counts as missing).
    impute : dict
        ``{factor: value}`` for ``missing="impute"`` (training median / most frequent level).
    missing : str
    """

    factors: list[str]
    references: dict[str, str]
    levels: dict[str, list[str]]
    pooled: dict[str, dict[str, str]]
    impute: dict[str, Any]
    missing: str

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.factors if f not in self.references]

    def to_dict(self) -> dict[str, Any]:
        return {"factors": self.factors, "references": self.references, "levels": self.levels,
                "pooled": self.pooled, "impute": self.impute, "missing": self.missing}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FactorCoding:
        return cls(**{k: d[k] for k in ("factors", "references", "levels", "pooled", "impute", "missing")})

    def apply(self, df: pd.DataFrame, cohort: str) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
        """Coded factor columns for ``df``; rows dropped (complete case) are counted per factor.

        Unseen levels (not in training) count as missing. Returns the coded table (same
        index, or fewer rows with complete case), ``{factor: n missing}`` and notes.
        """
        out = pd.DataFrame(index=df.index)
        notes: list[str] = []
        n_missing: dict[str, int] = {}
        for f in self.factors:
            if f not in df.columns:
                raise GlioradInputError(f"cohort {cohort}: clinical factor {f!r} is missing from the table")
            s = df[f]
            if f in self.references:
                s = s.astype("string").replace(self.pooled.get(f, {}))
                unseen = s.notna() & ~s.isin(self.levels[f])
                if unseen.any() and f in self.pooled and "other" in self.levels[f]:
                    notes.append(f"cohort {cohort}: {int(unseen.sum())} patient(s) with {f} level(s) "
                                 f"{sorted(s[unseen].unique())} not seen in training: pooled into 'other'")
                    s = s.mask(unseen, "other")
                elif unseen.any():
                    notes.append(f"cohort {cohort}: {int(unseen.sum())} patient(s) with {f} level(s) "
                                 f"{sorted(s[unseen].unique())} not seen in training: treated as missing")
                    s = s.mask(unseen)
                s = s.astype(object).where(s.notna(), np.nan)
            else:
                s = pd.to_numeric(s, errors="coerce").astype(float)
            n_missing[f] = int(s.isna().sum())
            if self.missing == "impute" and n_missing[f]:
                s = s.fillna(self.impute[f])
            out[f] = s
        if self.missing == "complete_case":
            complete = out.notna().all(axis=1)
            if not complete.all():
                counts = {f: n for f, n in n_missing.items() if n}
                notes.append(f"cohort {cohort}: {int((~complete).sum())} patient(s) with missing "
                             f"clinical values left out (complete case; missing per factor: {counts})")
            out = out.loc[complete]
        elif any(n_missing.values()):
            counts = {f: n for f, n in n_missing.items() if n}
            notes.append(f"cohort {cohort}: missing clinical values imputed with training values "
                         f"(per factor: {counts})")
        return out, n_missing, notes

    def categorical(self, factors: Sequence[str]) -> dict[str, str]:
        return {f: self.references[f] for f in factors if f in self.references}


def fit_coding(train: pd.DataFrame, cfg: SurvivalConfig) -> tuple[FactorCoding, list[str]]:
    """Learn the factor coding on the training cohort (see :class:`FactorCoding`)."""
    notes: list[str] = []
    factors, references, levels, pooled, impute = [], {}, {}, {}, {}
    for f in cfg.factors:
        if f == SIGNATURE:
            raise GlioradInputError(f"{SIGNATURE!r} is added by the analysis; remove it from factors")
        if f not in train.columns or train[f].isna().all():
            notes.append(f"factor {f!r} is not available in the training cohort: left out")
            continue
        s = train[f].dropna()
        numeric = pd.api.types.is_numeric_dtype(s) and f not in cfg.reference_levels
        if numeric:
            if s.nunique() < 2:
                notes.append(f"factor {f!r} is constant in the training cohort: left out")
                continue
            factors.append(f)
            impute[f] = float(s.median())
            continue
        s = s.astype(str)
        counts = s.value_counts()
        mapping = {lv: "other" for lv, n in counts.items() if n < cfg.min_level_size and lv != "other"}
        if mapping:
            pooled[f] = mapping
            s = s.replace(mapping)
            notes.append(f"factor {f!r}: rare level(s) {sorted(mapping)} (< {cfg.min_level_size} "
                         "training patients each) pooled into 'other'")
        lv = sorted(s.unique())
        if len(lv) < 2:
            notes.append(f"factor {f!r} has a single level ({lv[0]!r}) in the training cohort: left out")
            pooled.pop(f, None)
            continue
        ref = cfg.reference_levels.get(f)
        if ref is None or ref not in lv:
            new_ref = str(s.value_counts().idxmax())
            if ref is not None:
                notes.append(f"factor {f!r}: reference level {ref!r} absent in training; using the "
                             f"most frequent level {new_ref!r}")
            ref = new_ref
        factors.append(f)
        references[f] = ref
        levels[f] = lv
        impute[f] = str(s.value_counts().idxmax())
    if not factors:
        notes.append("no clinical factor is available: the clinical model cannot be built")
    return FactorCoding(factors, references, levels, pooled, impute, cfg.missing), notes


# ============================================================================ Cox helpers
def _coef_spans(table: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    spans = []
    for _, row in table.iterrows():
        if row["level"] is None or (isinstance(row["level"], float) and np.isnan(row["level"])):
            col = data[row["factor"]]
            spans.append(float(col.max() - col.min()) if len(col) else 1.0)
        else:
            spans.append(1.0)
    return np.asarray(spans, dtype=float)


def inestimable(table: pd.DataFrame, data: pd.DataFrame) -> list[str]:
    """Labels of coefficients that did not converge (non-finite, or ``se x range`` of the factor
    above :data:`MAX_SE_SPAN` on the log-hazard scale: separation or a level without events)."""
    if table.empty:
        return []
    coef, se = table["coef"].to_numpy(float), table["se"].to_numpy(float)
    span = _coef_spans(table, data)
    bad = ~np.isfinite(coef) | ~np.isfinite(se) | (se * span > MAX_SE_SPAN)
    return [f"{lab} (coef {c:.3g}, se {s:.3g})" for lab, c, s in
            zip(table["label"][bad], coef[bad], se[bad], strict=True)]


@contextlib.contextmanager
def _quiet_lifelines() -> Iterator[None]:
    """Silence lifelines' convergence chatter: :func:`inestimable` decides instead."""
    from lifelines.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="lifelines")
        warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)
        yield


def _check_fit(table: pd.DataFrame, data: pd.DataFrame, what: str, factors: Sequence[str]) -> None:
    bad = inestimable(table, data)
    if bad:
        raise GlioradInputError(
            f"{what}: the Cox model with factor(s) {list(factors)} cannot converge: "
            f"{'; '.join(bad)}. Likely complete separation or a level without events: merge "
            "rare levels (min_level_size), or drop the factor"
        )


def _epv(model: CoxModel, what: str, min_epv: float, sink: list[str]) -> None:
    n_coef = len(model.coef_)
    epv = model.n_events_ / max(n_coef, 1)
    if n_coef and epv < min_epv:
        _warn(sink, f"{what}: {model.n_events_} events for {n_coef} coefficient(s) "
                    f"({epv:.1f} events per coefficient, below {min_epv:g}; factors "
                    f"{model.design_.names}): estimates may be unstable")


def _categorical_for(coding: FactorCoding, factors: Sequence[str]) -> dict[str, str]:
    categorical = coding.categorical(factors)
    if SIGNATURE in factors:
        categorical[SIGNATURE] = "low"
    return categorical


def _univariate_screen(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[pd.DataFrame, list[str]]:
    """Each factor fitted alone: the univariate table and the factors that can be estimated
    (a factor whose univariate model fails or does not converge is left out with a warning)."""
    tables, dropped = [], {}
    for f in factors:
        try:
            with _quiet_lifelines():
                uni = univariate_cox(data, TIME, EVENT, [f], categorical=_categorical_for(coding, [f]),
                                     labels=cfg.labels)
        except GlioradInputError as err:
            dropped[f] = " ".join(err.problems)
            continue
        tables.append(uni)
        bad = inestimable(uni, data)
        if bad:
            dropped[f] = "; ".join(bad)
    for f, why in dropped.items():
        _warn(sink, f"{what}: univariate Cox model of {f!r} cannot converge ({why}: a level without "
                    "events or complete separation); factor left out of the model (merge rare "
                    "levels with min_level_size, or drop it)")
    univariate = (pd.concat(tables, ignore_index=True) if tables
                  else pd.DataFrame(columns=TABLE_COLUMNS))
    return univariate, [f for f in factors if f not in dropped]


def _inestimable_factors(table: pd.DataFrame, data: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    coef, se = table["coef"].to_numpy(float), table["se"].to_numpy(float)
    bad = ~np.isfinite(coef) | ~np.isfinite(se) | (se * _coef_spans(table, data) > MAX_SE_SPAN)
    return list(dict.fromkeys(table["factor"][bad]))


def fit_estimable(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[CoxFit | None, list[str], str | None]:
    """A multivariable Cox model of ``factors`` that never aborts on the data.

    A factor whose coefficient cannot be estimated (:func:`inestimable`: separation, a level
    without events) is left out with a :class:`SurvivalWarning` and the model refitted with the
    others. Returns ``(fit, factors used, None)``, or ``(None, [], reason)`` when no factor is
    left or the fitter fails.
    """
    factors = list(factors)
    while factors:
        try:
            with _quiet_lifelines():
                fit = multivariable_cox(data, TIME, EVENT, factors,
                                        categorical=_categorical_for(coding, factors), labels=cfg.labels)
        except GlioradInputError as err:
            reason = (f"the Cox model with factor(s) {factors} cannot be fitted "
                      f"({' '.join(err.problems)})")
            _warn(sink, f"{what}: {reason}")
            return None, [], reason
        bad = _inestimable_factors(fit.table, data)
        if not bad:
            return fit, factors, None
        _warn(sink, f"{what}: factor(s) {bad} cannot be estimated ({'; '.join(inestimable(fit.table, data))}: "
                    "a level without events or complete separation); left out of the model (merge "
                    "rare levels with min_level_size, or drop the factor)")
        factors = [f for f in factors if f not in bad]
    return None, [], "no factor can be estimated"


def select_model(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> CoxSelection:
    """The paper's selection rule (:func:`select_cox_factors`: univariate P < ``p_threshold``,
    then multivariable P < ``p_threshold``, refitted once) with convergence checks; never aborts.

    Each factor is first fitted alone (:func:`univariate_cox`): a factor whose univariate model
    fails or does not converge is left out with a :class:`SurvivalWarning` (its Wald P would be
    meaningless); the rule then runs on the others. A factor that cannot be estimated in the
    multivariable step or the refit is left out of it with a warning (:func:`fit_estimable`).
    Nothing selected, or nothing estimable: ``final`` is None (with a warning for the latter).
    Fewer than ``cfg.min_events_per_factor`` events per coefficient in the multivariable step
    warns.
    """
    p = f"{cfg.p_threshold:g}"
    univariate, kept = _univariate_screen(data, factors, coding, cfg, what, sink)
    if not kept:
        reason = f"no candidate factor of {list(factors)} can be estimated"
        _warn(sink, f"{what}: {reason}; no model")
        return CoxSelection(univariate, [], None, [], None, reason)
    by_factor = univariate.groupby("factor", sort=False)["p_factor"].first()
    selected_uni = [f for f in kept if by_factor[f] < cfg.p_threshold]
    if not selected_uni:
        return CoxSelection(univariate, [], None, [], None, f"no factor has P < {p} univariately")
    multi, _, why = fit_estimable(data, selected_uni, coding, cfg, f"{what}, multivariable", sink)
    if multi is None:
        return CoxSelection(univariate, selected_uni, None, [], None,
                            f"the multivariable step has no model: {why}")
    _epv(multi.model, f"{what}, multivariable", cfg.min_events_per_factor, sink)
    by_factor = multi.table.groupby("factor", sort=False)["p_factor"].first()
    selected = [f for f, pv in by_factor.items() if pv < cfg.p_threshold]
    if not selected:
        return CoxSelection(univariate, selected_uni, multi, [], None,
                            f"no factor has P < {p} in the multivariable model of {selected_uni}")
    final, selected, why = fit_estimable(data, selected, coding, cfg, f"{what}, final", sink)
    return CoxSelection(univariate, selected_uni, multi, selected, final,
                        None if final is not None else f"the refit has no model: {why}")


def prespecified_model(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[CoxSelection, str | None]:
    """The pre-specified rule (rms / TRIPOD): one Cox model of every given factor, no P-value
    selection. Factors that cannot be estimated alone or together are left out with a warning
    (:func:`fit_estimable`). Returns a :class:`CoxSelection` (``univariate``: each factor alone,
    for the tables; ``selected_univariate``: the estimable factors; ``multivariable`` and
    ``final``: the model) and the reason when there is no model."""
    univariate, kept = _univariate_screen(data, factors, coding, cfg, what, sink)
    if not kept:
        reason = f"no factor of {list(factors)} can be estimated"
        _warn(sink, f"{what}: {reason}; no model")
        return CoxSelection(univariate, [], None, [], None, reason), reason
    fit, used, reason = fit_estimable(data, kept, coding, cfg, what, sink)
    if fit is not None:
        _epv(fit.model, what, cfg.min_events_per_factor, sink)
    return CoxSelection(univariate, kept, fit, used, fit, reason), reason


def fit_multivariable(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> CoxFit:
    try:
        with _quiet_lifelines():
            fit = multivariable_cox(data, TIME, EVENT, list(factors),
                                    categorical=_categorical_for(coding, factors), labels=cfg.labels)
    except GlioradInputError as err:
        raise GlioradInputError(
            f"{what}: the Cox model with factor(s) {list(factors)} cannot converge "
            f"({' '.join(err.problems)})"
        ) from err
    _check_fit(fit.table, data, what, factors)
    _epv(fit.model, what, cfg.min_events_per_factor, sink)
    return fit


# ============================================================================ models
@dataclass
class SurvivalModels:
    """Everything fitted on the training cohort; applied unchanged to every cohort.

    ``selection_*`` and ``sequence_choice`` are None for models loaded from a bundle.
    """

    config: SurvivalConfig
    training: str
    sequence: str | None
    feature_columns: list[str]
    signature: DeepRadiomicsSignature
    cutoff: float
    cutoff_method: str
    coding: FactorCoding
    integrated: CoxFit | None
    clinical: CoxFit | None
    integrated_factors: list[str]
    clinical_factors: list[str]
    nomogram_integrated: Nomogram | None = None
    nomogram_clinical: Nomogram | None = None
    selection_integrated: CoxSelection | None = None
    selection_clinical: CoxSelection | None = None
    sequence_choice: Any = None
    cutoff_detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def integrated_model(self) -> CoxModel | None:
        return None if self.integrated is None else self.integrated.model

    @property
    def clinical_model(self) -> CoxModel | None:
        return None if self.clinical is None else self.clinical.model

    def signature_table(self) -> dict[str, Any]:
        """``signature.json`` content: formula, features, weights, centring, cut-off."""
        out = self.signature.to_dict()
        out.update(cutoff=self.cutoff, cutoff_method=self.cutoff_method,
                   groups="high: signature > cutoff; low: signature <= cutoff",
                   sequence=self.sequence, n_fused_features=len(self.feature_columns),
                   training_cohort=self.training, cutoff_detail=self.cutoff_detail)
        return out

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Signature and risk group of patients (``signature_score``, ``signature``)."""
        risk = self.signature.predict(features)
        group = np.where(risk > self.cutoff, "high", "low")
        return pd.DataFrame({"signature_score": risk, SIGNATURE: group}, index=features.index)


def fused_columns(feature_columns: Sequence[str], seq_cfg: SequenceConfig, sequence: str | None) -> list[str]:
    """Radiomics columns of ``sequence`` plus deep columns (all columns without sequences; every
    candidate sequence's radiomics plus deep columns when ``sequence`` is None although
    ``seq_cfg.sequences`` are given: the sequence choice's ``all`` fallback)."""
    from gliorad.survival.sequence_choice import sequence_columns

    if sequence is None and not seq_cfg.sequences:
        return list(feature_columns)
    names = [sequence] if sequence is not None else list(seq_cfg.sequences)
    cols = [c for s in names for c in sequence_columns(feature_columns, s)]
    if seq_cfg.deep_prefix:
        deep = [c for c in feature_columns if c.startswith(seq_cfg.deep_prefix)]
        if not deep:
            raise GlioradInputError(
                f"no deep feature column (prefix {seq_cfg.deep_prefix!r}) in the feature table; "
                "set sequence.deep_prefix to the right prefix, or to null to use radiomics only"
            )
        cols += deep
    return cols


def _choose_sequence(train: pd.DataFrame, fcols: list[str], cfg: SurvivalConfig, notes: list[str],
                     sink: list[str]):
    from gliorad.survival.sequence_choice import choose_sequence, sequence_columns

    sc = cfg.sequence
    if not sc.sequences:
        return None, None
    if not any(sequence_columns(fcols, s) for s in sc.sequences):
        raise GlioradInputError(
            f"no feature column is named after the sequences {sc.sequences} ('<sequence>_...'); "
            "to use every feature column without a sequence choice set sequence.sequences to [] "
            "(command line: --sequences none)"
        )
    feats = train[fcols]
    bad = feats.columns[~np.isfinite(feats.to_numpy(float)).all(axis=0)]
    if len(bad):
        notes.append(f"sequence choice: {len(bad)} feature column(s) with missing values left out")
        feats = feats.drop(columns=bad)
    choice = choose_sequence(
        feats, train[TIME], train[EVENT], sc.sequences, force=sc.force, k=sc.top_k,
        levene_alpha=sc.levene_alpha, levene_test=sc.levene_test, n_estimators=sc.n_estimators,
        cv_folds=sc.cv_folds,
        threshold=sc.threshold, censored=sc.censored, seed=cfg.seed, n_jobs=cfg.n_jobs,
        evaluate=sc.evaluate, fallback=sc.fallback,
    )
    if choice.fallback is not None:
        _warn(sink, f"sequence choice: {choice.fallback}")
    return choice.chosen, choice


def fit_models(
    train: pd.DataFrame, feature_columns: Sequence[str], cfg: SurvivalConfig,
    name: str = "training", nomograms: bool = True,
) -> SurvivalModels:
    """Fit the sequence choice, signature, cut-off, coding and both Cox models on ``train``.

    Parameters
    ----------
    train : pandas.DataFrame
        Training patients (:func:`prepare_table` layout).
    feature_columns : sequence of str
        Feature columns of the table.
    cfg : SurvivalConfig
    name : str
        Training cohort name (for messages).
    nomograms : bool
        Build the nomograms (False inside cross-validation).
    """
    notes: list[str] = []
    sink: list[str] = []
    if int(train[EVENT].sum()) == 0:
        raise GlioradInputError(
            f"training cohort {name}: no event (death) among its {len(train)} patients; nothing can "
            "be fitted: choose a training cohort with events (split.train, or a random split)")
    fcols = list(feature_columns)
    sequence, choice = _choose_sequence(train, fcols, cfg, notes, sink)
    fused = fused_columns(fcols, cfg.sequence, sequence)
    values = train[fused].to_numpy(float)
    has_nan = ~np.isfinite(values).all(axis=0)
    if has_nan.any():
        notes.append(f"{int(has_nan.sum())} fused feature column(s) with missing values in the "
                     "training cohort left out of the signature")
        fused = [c for c, bad in zip(fused, has_nan, strict=True) if not bad]
    sc = cfg.signature
    n_events = int(train[EVENT].sum())
    n_censored = len(train) - n_events
    sig_folds = max(2, min(sc.cv_folds, n_events, max(n_censored, 2)))
    if sig_folds < sc.cv_folds and n_events >= 2:
        _warn(sink, f"signature: {n_events} event(s) and {n_censored} censored patient(s) in "
                    f"training cohort {name}: the elastic net's penalty is chosen by {sig_folds}-fold "
                    f"instead of {sc.cv_folds}-fold cross-validation")
    signature = DeepRadiomicsSignature(
        top_k=sc.top_k, ranking=sc.ranking, weighting=sc.weighting, n_estimators=sc.n_estimators,
        min_samples_leaf=sc.min_samples_leaf, l1_ratios=tuple(sc.l1_ratios), n_alphas=sc.n_alphas,
        alpha_min_ratio=sc.alpha_min_ratio, cv_folds=sig_folds, alpha_rule=sc.alpha_rule,
        random_state=cfg.seed,
        n_jobs=cfg.n_jobs,
        feature_groups=tuple(sc.feature_groups) if sc.feature_groups else None,
        allow_empty=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="all coefficients are zero")
        warnings.filterwarnings("ignore", message="DeepRadiomicsSignature: the elastic net kept no")
        signature.fit(train[fused], make_survival_y(train[TIME], train[EVENT]))
    score = signature.predict(train[fused])
    if signature.empty_reason_ is not None:
        _warn(sink, f"signature, training cohort {name}: {signature.empty_reason_}; the signature is "
                    "constant (every weight 0)")
    cutoff, cutoff_method, cutoff_detail = _cutoff(train, score, cfg, name, notes, sink)
    coding, coding_notes = fit_coding(train, cfg)
    notes += coding_notes
    data, _, apply_notes = coding.apply(train, name)
    notes += apply_notes
    data[TIME] = train.loc[data.index, TIME]
    data[EVENT] = train.loc[data.index, EVENT]
    data[SIGNATURE] = np.where(pd.Series(score, index=train.index).loc[data.index] > cutoff, "high", "low")
    signature_problem = None
    if data[SIGNATURE].nunique() < 2:
        signature_problem = (f"every training patient is in the {data[SIGNATURE].iloc[0]} signature "
                             f"group (cut-off {cutoff:g}; the signature is constant or nearly so)")
        _warn(sink, f"training cohort {name}: {signature_problem}; the signature is left out of the "
                    "Cox models and no risk groups are compared")
    fits = _cox_models(data, coding, cfg, name, signature_problem, coding_notes, sink)
    models = SurvivalModels(
        config=cfg, training=name, sequence=sequence, feature_columns=fused, signature=signature,
        cutoff=float(cutoff), cutoff_method=cutoff_method, coding=coding, cutoff_detail=cutoff_detail,
        sequence_choice=choice, notes=notes, warnings=sink, **fits,
    )
    if nomograms:
        build_nomograms(models)
    return models


def _cutoff(
    train: pd.DataFrame, score: np.ndarray, cfg: SurvivalConfig, name: str, notes: list[str],
    sink: list[str],
) -> tuple[float, str, dict[str, Any]]:
    """The risk-group cut-off on the training signature: the median, or the maximally selected
    log-rank cut-point (falling back to the median, with a warning, where no cut-point leaves
    ``cutoff_minprop`` of the patients on each side)."""
    from gliorad.survival.cutpoint import median_cutpoint, optimal_cutpoint

    if cfg.cutoff == "median":
        return median_cutpoint(score), "median", {}
    try:
        res = optimal_cutpoint(train[TIME], train[EVENT], score, minprop=cfg.cutoff_minprop,
                               maxprop=1 - cfg.cutoff_minprop)
    except GlioradInputError as err:
        msg = (f"training cohort {name}: no optimal cut-off can be searched "
               f"({' '.join(err.problems)}); the median is used instead")
        _warn(sink, msg)
        return median_cutpoint(score), "median", {"fallback": msg}
    notes.append(res.warning)
    return res.cutpoint, "optimal", {"statistic": res.statistic, "p_value_corrected": res.p_value,
                                     "p_method": res.p_method, "warning": res.warning}


def _cox_models(
    data: pd.DataFrame, coding: FactorCoding, cfg: SurvivalConfig, name: str,
    signature_problem: str | None, coding_notes: Sequence[str], sink: list[str],
) -> dict[str, Any]:
    """The integrated and clinical Cox models by their rules (``integrated_selection``,
    ``clinical_selection``); never aborts on the data.

    Where the integrated model has no factor, it is the clinical model (and says so); where
    neither has one, both are None with the reason. Returns the :class:`SurvivalModels` fields
    ``integrated, clinical, integrated_factors, clinical_factors, selection_integrated,
    selection_clinical, model_info``.
    """
    p = f"{cfg.p_threshold:g}"
    sig_ok = signature_problem is None
    if "prespecified" in (cfg.clinical_selection, cfg.integrated_selection):
        for f in cfg.factors:
            if f not in coding.factors:
                why = next((n for n in coding_notes if f"factor {f!r}" in n), "not usable")
                _warn(sink, f"pre-specified model(s), training cohort {name}: factor {f!r} left out "
                            f"({why})")
    # ---- clinical
    what_c = f"clinical model (training cohort {name})"
    sel_clin, clinical, clin_factors, clin_reason = None, None, [], None
    if not coding.factors:
        clin_reason = "no clinical factor is available in the training cohort"
    elif cfg.clinical_selection == "paper":
        sel_clin = select_model(data, coding.factors, coding, cfg, what_c, sink)
        clinical, clin_factors = sel_clin.final, list(sel_clin.selected)
        if clinical is None:
            clin_reason = f"paper's rule: {sel_clin.reason}"
    else:
        sel_clin, clin_reason = prespecified_model(data, coding.factors, coding, cfg, what_c, sink)
        clinical, clin_factors = sel_clin.final, list(sel_clin.selected)
    # ---- integrated
    what_i = f"integrated model (training cohort {name})"
    candidates = [*coding.factors, *([SIGNATURE] if sig_ok else [])]
    sel_int, integrated, int_factors, int_reason = None, None, [], None
    sig_absent = signature_problem  # why the signature is not in the integrated model
    if not candidates:
        int_reason = f"no factor is available (no clinical factor; {signature_problem})"
    elif cfg.integrated_selection == "paper":
        sel_int = select_model(data, candidates, coding, cfg, what_i, sink)
        integrated, int_factors = sel_int.final, list(sel_int.selected)
        if sig_ok and SIGNATURE not in int_factors:
            sig_absent = (f"it is not an independent prognostic factor (P >= {p} in the univariate "
                          "or multivariable step)")
            msg = (f"the signature is not an independent prognostic factor in training cohort {name} "
                   f"(P >= {p} in the univariate or multivariable step)")
            if cfg.force_signature:
                integrated, int_factors, int_reason = fit_estimable(
                    data, [*int_factors, SIGNATURE], coding, cfg, what_i, sink)
                msg += "; kept in the integrated model because force_signature is set"
                if SIGNATURE not in int_factors:
                    sig_absent = ("force_signature is set, but its hazard ratio cannot be "
                                  "estimated in the training cohort (a risk group without events "
                                  "or complete separation)")
            _warn(sink, msg)
        if integrated is None and int_reason is None:
            int_reason = (f"paper's rule: {sel_int.reason}"
                          + (" (signature included)" if sig_ok else f"; {signature_problem}"))
    else:
        sel_int, int_reason = prespecified_model(data, candidates, coding, cfg, what_i, sink)
        integrated, int_factors = sel_int.final, list(sel_int.selected)
    if integrated is not None and SIGNATURE in int_factors:
        sig_absent = None
    elif sig_absent is None:
        sig_absent = "it cannot be estimated in the training cohort"
    same = False
    if integrated is None and clinical is not None:
        integrated, int_factors, same = clinical, list(clin_factors), True
        int_reason = f"{int_reason}: the integrated model is the clinical model"
        _warn(sink, f"training cohort {name}: {int_reason}")
    elif integrated is None:
        int_reason = f"{int_reason}; and no clinical model either ({clin_reason})"
        _warn(sink, f"training cohort {name}: no integrated and no clinical model: {int_reason}"
                    + ("; the signature's own C-index, hazard ratio and Kaplan-Meier curves are "
                       "still reported" if sig_ok else ""))
    else:
        int_reason = None if sig_absent is None else f"the signature is not in the model: {sig_absent}"
        if clinical is not None and set(int_factors) == set(clin_factors):
            same = True
            int_reason = f"{int_reason}; its factors are the clinical model's: it is the clinical model"
    if clinical is None and not same:
        _warn(sink, f"training cohort {name}: {clin_reason}; the clinical nomogram is not built and "
                    "C-index comparisons are not made")
    info = {
        "integrated": {"rule": cfg.integrated_selection, "p_threshold": cfg.p_threshold,
                       "factors": int_factors, "fitted": integrated is not None,
                       "same_as_clinical": same, "signature_in_model": SIGNATURE in int_factors,
                       "reason": int_reason},
        "clinical": {"rule": cfg.clinical_selection, "p_threshold": cfg.p_threshold,
                     "factors": clin_factors, "fitted": clinical is not None, "reason": clin_reason},
    }
    return {"integrated": integrated, "clinical": clinical, "integrated_factors": int_factors,
            "clinical_factors": clin_factors, "selection_integrated": sel_int,
            "selection_clinical": sel_clin, "model_info": info}


def build_nomograms(models: SurvivalModels) -> None:
    """Nomograms of the integrated and clinical models at the configured times."""
    cfg = models.config
    labels = cfg.labels
    fmt = "{t:g}-day survival"
    if models.integrated is not None:
        models.nomogram_integrated = build_nomogram(
            models.integrated.model, cfg.times, labels=labels, time_label=fmt)
    if models.clinical is not None:
        models.nomogram_clinical = build_nomogram(
            models.clinical.model, cfg.times, labels=labels, time_label=fmt)
    for attr in ("nomogram_integrated", "nomogram_clinical"):
        nom = getattr(models, attr)
        if nom is not None:  # "1-year survival" rather than "365-day survival"
            axes = tuple(dataclasses.replace(ax, label=f"{time_label(ax.time)} survival")
                         for ax in nom.survival)
            setattr(models, attr, dataclasses.replace(nom, survival=axes))


# ============================================================================ evaluation
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


def _cohort_data(models: SurvivalModels, df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict, list[str]]:
    """Coded factors + signature for a cohort (missing values per the coding's policy)."""
    notes: list[str] = []
    feats = df.reindex(columns=models.signature.features_)
    missing_cols = [c for c in models.signature.features_ if c not in df.columns]
    if missing_cols:
        raise GlioradInputError(f"cohort {name}: feature table lacks signature feature(s) {missing_cols[:5]}")
    bad = ~np.isfinite(feats.to_numpy(float)).all(axis=1)
    if bad.any():
        if models.coding.missing == "impute":
            feats = feats.fillna(pd.Series(models.signature.center_, index=models.signature.features_))
            notes.append(f"cohort {name}: {int(bad.sum())} patient(s) with missing signature "
                         "features imputed with the training means")
        else:
            notes.append(f"cohort {name}: {int(bad.sum())} patient(s) with missing signature "
                         "features left out (complete case)")
            feats = feats.loc[~bad]
    scored = models.score(feats)
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
        _warn(sink, f"{what}, cohort {name}: {why}")
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
            cat = models.coding.categorical(factors)
            if SIGNATURE in factors:
                cat[SIGNATURE] = "low"
            estimator: Any = CoxModel(categorical=cat or None)
            n_boot = cfg.calibration_boot
        else:
            estimator, n_boot = FrozenEstimator(fit.model), 0
        try:
            with _quiet_lifelines():
                out[t] = calibrate_survival(
                    estimator, data[factors], data[TIME], data[EVENT], t,
                    n_groups=cfg.calibration_groups, n_boot=n_boot, seed=cfg.seed,
                )
        except GlioradInputError as err:
            failed[t] = " ".join(err.problems)
            _warn(sink, f"calibration of the {which} model at {time_label(t)} ({t:g} days), cohort "
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
    data, counts, data_notes = _cohort_data(models, df, name)
    notes += data_notes
    predictions = data[["signature_score", SIGNATURE]].copy()
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
        _warn(sink, f"cohort {name}: {why}; its survival metrics are null (nothing to validate)")
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
            _warn(sink, f"cohort {name}: C-index of the signature not defined: {why}")
    if two_groups:
        hr, why = _signature_hr(data, models.config.labels)
        metrics["hr_signature_univariate"] = hr
        if hr is None:
            null("hr_signature_univariate", why)
            _warn(sink, f"cohort {name}: hazard ratio of the signature groups not estimable: {why}")
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
            _warn(sink, f"cohort {name}: C-index of the {which} model not defined: {why}")
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
            "groups": _records(res.table),
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
        with _quiet_lifelines():
            uni = univariate_cox(data, TIME, EVENT, [SIGNATURE], categorical={SIGNATURE: "low"},
                                 labels=labels)
    except GlioradInputError as err:
        return None, " ".join(err.problems)
    bad = inestimable(uni, data)
    if bad:
        return None, (f"{'; '.join(bad)} (a risk group without events: the hazard ratio is "
                      "infinite or zero)")
    return _hr_row(uni, SIGNATURE), None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _finite(float(v))
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
        return _jsonable({
            "training": m.training,
            "cohorts": {name: c.metrics for name, c in self.cohorts.items()},
            "signature": {"features": m.signature.features_, "weights": m.signature.weights_.tolist(),
                          "formula": m.signature.formula_text(), "cutoff": m.cutoff,
                          "cutoff_method": m.cutoff_method, "sequence": m.sequence,
                          "constant": m.signature.empty_reason_ is not None,
                          "constant_reason": m.signature.empty_reason_},
            "sequence_choice": None if m.sequence_choice is None else m.sequence_choice.to_dict(),
            "integrated_factors": m.integrated_factors,
            "clinical_factors": m.clinical_factors,
            "signature_in_integrated_model": SIGNATURE in m.integrated_factors,
            "models": m.model_info,
            "factor_coding": m.coding.to_dict(),
            "times_days": list(self.config.times),
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
        models = fit_models(table.loc[cohorts[train_name]], fcols, cfg, name=train_name)
    _rewarn(caught)
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
        split = SplitConfig(method="column", column=by, train="__none__")
        if by not in table.columns:
            raise GlioradInputError(f"cohort column {by!r} not found; columns are {list(table.columns[:12])}")
        values = table[by].astype("string")
        if values.isna().any():
            notes.append(f"{int(values.isna().sum())} patient(s) without a {split.column!r} value left out")
        cohorts = {str(v): table.index[(values == v).fillna(False).to_numpy()]
                   for v in sorted(values.dropna().unique())}
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


# ============================================================================ cross-validation
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
        return _jsonable({"summary": self.summary, "folds": _records(self.folds),
                          "notes": self.notes, "warnings": self.warnings})


def cross_validate(
    features: pd.DataFrame, clinical: pd.DataFrame, cfg: SurvivalConfig | None = None,
) -> CVResult:
    """Stratified ``cfg.cv_folds``-fold cross-validation of the whole model building (sequence
    choice, signature, cut-off, factor selection) inside the training cohort of the split;
    validation cohorts are not touched."""
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
        _warn(sink, f"cross-validation in cohort {train_name}: {n_events} event(s) among "
                    f"{len(train)} patients: {n_folds} folds instead of {cfg.cv_folds}")
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=cfg.seed)
    rows, oof = [], []
    for k, (tr, te) in enumerate(folds.split(train, train[EVENT]), start=1):
        fold_name = f"{train_name} fold {k}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SurvivalWarning)
            try:
                models = fit_models(train.iloc[tr], fcols, cfg, name=fold_name, nomograms=False)
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


# ============================================================================ synthetic features
def synthetic_feature_table(
    patients: pd.DataFrame,
    n_features: int = 1300,
    n_informative: int = 6,
    sequences: Sequence[str] = ("t1", "t1ce", "t2"),
    n_deep: int = 512,
    strength: Mapping[str, float] | None = None,
    noise: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """Seeded feature table for demos, tests and benchmarks until real feature tables exist.

    ``n_deep`` deep columns ``cnn2d_000...`` and ``n_features - n_deep`` radiomics columns
    split (as evenly as possible) over ``sequences`` (``<seq>_original_firstorder_f000...``). In each block
    ``n_informative`` columns are ``a * phenotype_z + noise * N(0, 1)`` with ``a`` the block's
    strength (default: t1ce 1.0, deep 0.8, t1 0.4, t2 0.2, so T1-Gd carries the most prognostic
    information, as in the paper); the rest is noise (with a centre shift at centre B, a scanner
    effect). ``patients`` is :func:`gliorad.synthetic.sample_patients` output (``phenotype_z``).
    """
    if "phenotype_z" not in patients.columns:
        raise GlioradInputError("patients need the latent 'phenotype_z' column (gliorad.synthetic)")
    strength = dict(strength or {"t1ce": 1.0, "cnn2d": 0.8, "t1": 0.4, "t2": 0.2})
    rng = np.random.default_rng(seed)
    n = len(patients)
    z = patients["phenotype_z"].to_numpy(float)
    shift = (patients["centre"].to_numpy() == "B").astype(float) if "centre" in patients else np.zeros(n)
    n_rad = max(n_features - n_deep, 0)
    per_seq, extra = divmod(n_rad, max(len(sequences), 1))
    blocks: list[tuple[str, list[str]]] = []
    for i, s in enumerate(sequences):
        count = per_seq + (1 if i < extra else 0)
        blocks.append((s, [f"{s}_original_firstorder_f{j:03d}" for j in range(count)]))
    blocks.append(("cnn2d", [f"cnn2d_{j:03d}" for j in range(n_deep)]))
    cols = {}
    for key, names in blocks:
        a = float(strength.get(key, 0.0))
        X = rng.normal(size=(n, len(names))) + 0.3 * shift[:, None] * rng.normal(size=len(names))
        m = min(n_informative, len(names))
        X[:, :m] = a * z[:, None] + noise * rng.normal(size=(n, m))
        cols.update({nm: X[:, j] for j, nm in enumerate(names)})
    return pd.DataFrame(cols, index=patients.index)


# ============================================================================ outputs
def _format_hr(r: pd.Series) -> str:
    return f"{r['hr']:.2f} ({r['ci_lower']:.2f}-{r['ci_upper']:.2f})"


def _format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def paper_table(tables: Mapping[str, pd.DataFrame | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 3/4 layout: one row per coefficient label, ``<cohort> HR (95% CI)`` and
    ``<cohort> P`` columns; and the long numeric table."""
    longs = []
    for cohort, t in tables.items():
        if t is not None:
            longs.append(t.assign(cohort=cohort))
    if not longs:
        return pd.DataFrame(), pd.DataFrame()
    long = pd.concat(longs, ignore_index=True)
    labels = list(dict.fromkeys(long["label"]))
    wide = pd.DataFrame({"Characteristic": labels})
    for cohort, t in tables.items():
        hr_col, p_col = f"{cohort} HR (95% CI)", f"{cohort} P"
        if t is None:
            wide[hr_col], wide[p_col] = "not estimable", ""
            continue
        by = t.set_index("label")
        wide[hr_col] = [(_format_hr(by.loc[lab]) if lab in by.index else "not in model") for lab in labels]
        wide[p_col] = [(_format_p(by.loc[lab, "p_value"]) if lab in by.index else "") for lab in labels]
    return wide, long


def _save_figure(fig: Any, path: Any) -> None:
    """The figure as PNG at ``path`` and as vector SVG beside it (same name, ``.svg``)."""
    from pathlib import Path

    from gliorad.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    import matplotlib

    with atomic_path(Path(path).with_suffix(".svg")) as tmp, \
            matplotlib.rc_context({"svg.hashsalt": "gliorad"}):  # same bytes on every run
        fig.savefig(tmp, format="svg", metadata={"Date": None})


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


def write_km(path: Any, data: pd.DataFrame, title: str) -> None:
    from gliorad.survival.plots import plot_km

    groups = pd.Series(pd.Categorical(data[SIGNATURE], ["low", "high"]), index=data.index)
    groups = groups.cat.remove_unused_categories()
    years = data[TIME] / DAYS_PER_YEAR
    ticks = np.arange(0, math.floor(years.max()) + 1)
    fig = plot_km(years, data[EVENT], groups, xlabel="Time (years)", title=title, risk_times=ticks,
                  show_logrank=groups.nunique() > 1 and bool(data[EVENT].sum() > 0))
    _save_figure(fig, path)


def write_analysis(analysis: SurvivalAnalysis, out: Any, provenance: Mapping[str, Any] | None = None,
                   bundle: bool = True,
                   table_cleaning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write every artifact of an analysis into the folder ``out`` (created; its files are
    written atomically; an existing folder's files are replaced). Returns the metrics.
    ``table_cleaning``: what reading the feature tables changed (input name ->
    :meth:`gliorad.tables.TableCleaning.to_dict`), kept in ``metrics.json``."""
    from pathlib import Path

    from gliorad.io import write_json, write_text
    from gliorad.survival.plots import plot_calibration, plot_nomogram

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = analysis.models
    metrics = analysis.metrics()
    if table_cleaning is not None:
        metrics["table_cleaning"] = _jsonable(dict(table_cleaning))
    write_json(metrics, out / "metrics.json")
    write_json(_jsonable(m.signature_table()), out / "signature.json")
    write_text(m.signature.formula().to_csv(index=False), out / "signature_formula.csv")
    if hasattr(m.signature, "importances_"):
        write_text(m.signature.ranking_table().to_csv(index=False), out / "signature_ranking.csv")
    if m.sequence_choice is not None:
        write_text(m.sequence_choice.table.to_csv(index=False), out / "sequence_choice.csv")
    screen = next((sel for sel in (m.selection_integrated, m.selection_clinical)
                   if sel is not None and not sel.univariate.empty), None)
    if screen is not None:
        write_text(screen.univariate.to_csv(index=False), out / "table_univariate.csv")
    for key, which in (("table3_integrated", "integrated"), ("table4_clinical", "clinical")):
        tables = {n: getattr(c, f"table_{which}") for n, c in analysis.cohorts.items()}
        wide, long = paper_table(tables)
        if not long.empty:
            write_text(wide.to_csv(index=False), out / f"{key}.csv")
            write_text(long.to_csv(index=False), out / f"{key}_long.csv")
    for which, nom in (("integrated", m.nomogram_integrated), ("clinical", m.nomogram_clinical)):
        if nom is not None:
            _save_figure(plot_nomogram(nom), out / f"nomogram_{which}.png")
    cal_rows = []
    for name, c in analysis.cohorts.items():
        write_text(c.predictions.to_csv(index_label="patient_id"), out / f"predictions_{_slug(name)}.csv")
        if TIME in c.data.columns and len(c.data):
            write_km(out / f"km_{_slug(name)}.png", c.data, f"{name} ({c.role}): signature risk groups")
        for (which, t), res in c.calibration.items():
            label = f"{time_label(t)} survival"
            fig = plot_calibration(res, xlabel=f"Nomogram-predicted {label}",
                                   ylabel=f"Observed {label} (Kaplan-Meier)")
            fig.axes[0].set_title(f"{which} nomogram, {name}", fontsize=9)
            _save_figure(fig, out / f"calibration_{which}_{_slug(name)}_{t:g}d.png")
            cal_rows.append(res.table.assign(model=which, cohort=name, t_days=t))
    if cal_rows:
        write_text(pd.concat(cal_rows, ignore_index=True).to_csv(index=False), out / "calibration.csv")
    if provenance is not None:
        write_json(_jsonable(dict(provenance)), out / "provenance.json")
    if bundle:
        from gliorad.survival.bundle import save_bundle

        save_bundle(m, out / "bundle")
    return metrics


def write_cv(result: CVResult, out: Any, provenance: Mapping[str, Any] | None = None,
             table_cleaning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``cv_folds.csv``, ``cv_out_of_fold.csv`` and ``km_cv.png``
    (``table_cleaning`` as in :func:`write_analysis`)."""
    from pathlib import Path

    from gliorad.io import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = result.metrics()
    if table_cleaning is not None:
        metrics["table_cleaning"] = _jsonable(dict(table_cleaning))
    write_json(metrics, out / "metrics.json")
    write_text(result.folds.to_csv(index=False), out / "cv_folds.csv")
    write_text(result.oof.to_csv(index_label="patient_id"), out / "cv_out_of_fold.csv")
    write_km(out / "km_cv.png", result.oof, "Cross-validated risk groups (out-of-fold)")
    if provenance is not None:
        write_json(_jsonable(dict(provenance)), out / "provenance.json")
    return metrics
