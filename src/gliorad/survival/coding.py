"""Cohort coding of the survival analysis: the analysed table, the cohorts, the factor coding.

- :func:`prepare_table` joins a feature table and a canonical clinical table (``os_days``,
  ``event``, candidate factors) by patient id and keeps the population (LGG by default);
  :func:`read_feature_table` reads a feature table.
- :func:`split_cohorts` makes the training cohort and the validation cohorts: by a column
  (paper: train on centre B, validate on centre A; several external values allowed) or at
  random (stratified on the event); :func:`column_cohorts` groups patients by a column.
- :class:`FactorCoding` (learnt by :func:`fit_coding` on the training cohort, applied unchanged to
  every cohort): usable clinical factors, reference levels, rare levels pooled into ``other``,
  missing values complete-case or imputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival.config import (
    EVENT,
    SIGNATURE,
    SIGNATURE_Z,
    TIME,
    SplitConfig,
    SurvivalConfig,
)

__all__ = [
    "FactorCoding",
    "column_cohorts",
    "fit_coding",
    "prepare_table",
    "read_feature_table",
    "split_cohorts",
]


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
    groups = column_cohorts(table, col, "split column", notes)
    present = list(groups)
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
    cohorts = {split.train: groups[split.train]}
    roles = {split.train: "training"}
    for v in external:
        cohorts[v] = groups[v]
        roles[v] = "external"
    return cohorts, roles, notes


def column_cohorts(
    table: pd.DataFrame, column: str, what: str, notes: list[str]
) -> dict[str, pd.Index]:
    """``{value: patient ids}`` for every value of ``column`` (sorted); patients without a
    value are left out (counted in ``notes``). ``what`` names the column in the error when
    the table lacks it (``split column``, ``cohort column``)."""
    if column not in table.columns:
        raise GlioradInputError(f"{what} {column!r} not found; columns are {list(table.columns[:12])}")
    values = table[column].astype("string")
    if values.isna().any():
        notes.append(f"{int(values.isna().sum())} patient(s) without a {column!r} value left out")
    return {str(v): table.index[(values == v).fillna(False).to_numpy()]
            for v in sorted(values.dropna().unique())}


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
        if f in (SIGNATURE, SIGNATURE_Z):
            raise GlioradInputError(f"{f!r} is added by the analysis; remove it from factors")
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


