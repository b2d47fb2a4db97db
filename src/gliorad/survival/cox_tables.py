"""Univariate / multivariable Cox tables and the paper's factor-selection rule.

Each table has one row per coefficient: a numeric factor gives one row, a categorical factor
one row per non-reference level (``"Histologic type, O vs. A"``). Columns:

``factor, level, reference, label, coef, se, hr, ci_lower, ci_upper, p_value, p_factor, n,
n_events``

``p_value`` is the Wald test of the coefficient (``summary(coxph)``'s ``Pr(>|z|)``); ``p_factor``
is the Wald test of the whole factor, ``b' V^-1 b`` on ``k - 1`` degrees of freedom for a
``k``-level factor (as ``rms::anova(cph)``; equal to ``p_value`` for one-coefficient factors).
The 95 % interval is ``exp(coef +/- qnorm(0.975) se)`` (``summary(coxph)$conf.int``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from gliorad.errors import GlioradInputError
from gliorad.survival._validate import check_covariates, check_probability, check_survival
from gliorad.survival.cox import CoxModel

TABLE_COLUMNS = [
    "factor", "level", "reference", "label", "coef", "se", "hr", "ci_lower", "ci_upper",
    "p_value", "p_factor", "n", "n_events",
]


def _prepare(
    df: pd.DataFrame, time_col: str, event_col: str, factors: Sequence[str], dropna: bool
) -> pd.DataFrame:
    missing = [c for c in (time_col, event_col, *factors) if c not in df.columns]
    if missing:
        raise GlioradInputError(f"column(s) {missing} not found; table has {list(df.columns)}")
    if not factors:
        raise GlioradInputError("no factors given")
    sub = df[[time_col, event_col, *factors]]
    if dropna:
        sub = sub.dropna()
        if sub.empty:
            raise GlioradInputError(f"no complete rows for factors {list(factors)}")
    else:
        check_covariates(sub[list(factors)])
    check_survival(sub[time_col], sub[event_col])
    return sub


def coef_table(
    model: CoxModel, labels: Mapping[str, str] | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Hazard-ratio table of a fitted :class:`CoxModel` (see module docstring for columns)."""
    labels = dict(labels or {})
    alpha = check_probability(alpha, "alpha")
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for term in model.design_.terms:
        cols = list(term.columns)
        b = model.coef_[cols].to_numpy()
        V = model.cov_.loc[cols, cols].to_numpy()
        p_factor = float(stats.chi2.sf(b @ np.linalg.solve(V, b), len(cols)))
        name = labels.get(term.name, term.name)
        levels = term.levels[1:] if term.kind == "categorical" else (None,)
        for col, level in zip(cols, levels, strict=True):
            coef, se = float(model.coef_[col]), float(model.se_[col])
            label = name if level is None else f"{name}, {level} vs. {term.reference}"
            rows.append(
                {
                    "factor": term.name,
                    "level": level,
                    "reference": term.reference,
                    "label": label,
                    "coef": coef,
                    "se": se,
                    "hr": np.exp(coef),
                    "ci_lower": np.exp(coef - z * se),
                    "ci_upper": np.exp(coef + z * se),
                    "p_value": float(2 * stats.norm.sf(abs(coef / se))),
                    "p_factor": p_factor,
                    "n": model.n_samples_,
                    "n_events": model.n_events_,
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def univariate_cox(
    df: pd.DataFrame, time_col: str, event_col: str, factors: Sequence[str], **options: Any
) -> pd.DataFrame:
    """One Cox model per factor (R: ``coxph(Surv(time, event) ~ factor)`` for each factor): the
    :func:`multivariable_cox` table of each factor alone, stacked.

    ``options`` (``categorical``, ``labels``, ``dropna``, ``alpha``) are as
    :func:`multivariable_cox`; with ``dropna=True`` each model uses the rows complete for its
    factor (R's ``na.omit``).

    Returns
    -------
    pandas.DataFrame
        The stacked coefficient tables (module docstring).
    """
    tables = [multivariable_cox(df, time_col, event_col, [factor], **options).table
              for factor in factors]
    return pd.concat(tables, ignore_index=True)


@dataclass(frozen=True)
class CoxFit:
    """A multivariable Cox model and its coefficient table."""

    table: pd.DataFrame
    model: CoxModel
    factors: list[str]


def multivariable_cox(
    df: pd.DataFrame,
    time_col: str,
    event_col: str,
    factors: Sequence[str],
    categorical: Mapping[str, object] | None = None,
    labels: Mapping[str, str] | None = None,
    dropna: bool = False,
    alpha: float = 0.05,
) -> CoxFit:
    """One Cox model with all ``factors`` (R: ``coxph(Surv(time, event) ~ f1 + f2 + ...)``).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    time_col, event_col : str
        Survival columns (event 1 = death).
    factors : sequence of str
        Factor columns.
    categorical : dict, optional
        ``{factor: reference_level}`` for categorical factors (string columns are categorical
        anyway, with their first sorted level as reference).
    labels : dict, optional
        Display names, e.g. ``{"histology": "Histologic type"}``.
    dropna : bool
        If True the model uses complete cases over all factors (R's ``na.omit``); if False
        missing values raise :class:`GlioradInputError`.
    alpha : float
        1 - confidence level of the hazard-ratio interval.

    Returns
    -------
    CoxFit
        ``table`` (module docstring), the fitted ``model`` and the ``factors`` used.
    """
    factors = list(factors)
    sub = _prepare(df, time_col, event_col, factors, dropna)
    cat = {k: v for k, v in dict(categorical or {}).items() if k in factors} or None
    model = CoxModel(categorical=cat).fit(sub[factors], sub[time_col], sub[event_col])
    return CoxFit(table=coef_table(model, labels, alpha), model=model, factors=factors)


@dataclass(frozen=True)
class CoxSelection:
    """Result of :func:`select_cox_factors`.

    Attributes
    ----------
    univariate : pandas.DataFrame
        Univariate table of every candidate factor.
    selected_univariate : list of str
        Factors with ``p_factor < threshold`` univariately.
    multivariable : CoxFit or None
        Model with the univariately selected factors (None if none was selected).
    selected : list of str
        Factors with ``p_factor < threshold`` in that multivariable model.
    final : CoxFit or None
        The model refitted with ``selected`` only (None if nothing was kept).
    reason : str or None
        Why ``final`` is None (None when there is a model).
    """

    univariate: pd.DataFrame
    selected_univariate: list[str]
    multivariable: CoxFit | None
    selected: list[str]
    final: CoxFit | None = field(default=None)
    reason: str | None = field(default=None)


def _significant(table: pd.DataFrame, threshold: float) -> list[str]:
    by_factor = table.groupby("factor", sort=False)["p_factor"].first()
    return [f for f, p in by_factor.items() if p < threshold]


def select_cox_factors(
    df: pd.DataFrame, time_col: str, event_col: str, factors: Sequence[str],
    threshold: float = 0.05, **options: Any,
) -> CoxSelection:
    """The paper's two-step rule for building the integrated Cox model.

    1. Fit a univariate Cox model per factor; keep factors with ``P < threshold``.
    2. Fit one multivariable model with the kept factors; keep those with ``P < threshold``.
    3. Refit once with the factors kept in step 2 (``final``). There is no further pruning,
       even if a factor's P in the refitted model rises above the threshold.

    A factor's P is its Wald test (``p_factor``): for a categorical factor with ``k`` levels
    the joint ``k - 1`` df Wald test that all its level effects are zero (``rms::anova``), so a
    factor is kept or dropped as a whole, never level by level. For one-coefficient factors it
    is the usual coefficient P value.

    ``options`` (``categorical``, ``labels``, ``dropna``, ``alpha``) are as
    :func:`multivariable_cox`. With ``dropna=True`` each step uses the rows complete for its
    factors (so the multivariable steps may use fewer patients).

    Returns
    -------
    CoxSelection
    """
    threshold = check_probability(threshold, "threshold")
    uni = univariate_cox(df, time_col, event_col, factors, **options)
    selected_uni = _significant(uni, threshold)
    if not selected_uni:
        return CoxSelection(uni, [], None, [], None, f"no factor has P < {threshold:g} univariately")
    multi = multivariable_cox(df, time_col, event_col, selected_uni, **options)
    kept = _significant(multi.table, threshold)
    final = (
        multivariable_cox(df, time_col, event_col, kept, **options)
        if kept
        else None
    )
    return CoxSelection(uni, selected_uni, multi, kept, final,
                        None if kept else f"no factor has P < {threshold:g} in the multivariable model")
