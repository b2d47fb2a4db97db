"""Two-way single-rater intraclass correlation (Shrout & Fleiss 1979), vectorised over features
(R: ``psych::ICC(cbind(a, b), lmer = FALSE)``).

The numerical core is :func:`_mean_squares` with :func:`_icc2` / :func:`_icc3`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from gliorad.errors import GlioradInputError, check_option
from gliorad.stats.common import as_float_vector, check_alpha, check_same_length

__all__ = ["ICC_KINDS", "IccResult", "icc", "icc_single"]

ICC_KINDS = ("ICC(2,1)", "ICC(3,1)")
MSE_NOISE = 1e-13  # relative size below which an ICC residual mean square counts as 0


@dataclass(frozen=True)
class IccResult:
    """One feature's ICC with its F test and confidence interval."""

    icc: float
    ci_low: float
    ci_high: float
    F: float
    p: float
    note: str = ""


def _as_rating_tables(table_a: Any, table_b: Any) -> tuple[np.ndarray, list[str]]:
    """Validate two (subjects x features) tables; return array (n, 2, p) and feature names."""
    names: list[str] | None = None
    arrays = []
    for arg, table in (("table_a", table_a), ("table_b", table_b)):
        if isinstance(table, pd.DataFrame):
            names = names or [str(c) for c in table.columns]
        arrays.append(_as_numeric_table(arg, table))
    if isinstance(table_a, pd.DataFrame) and isinstance(table_b, pd.DataFrame):
        _check_same_labels(table_a, table_b)
        arrays[1] = _as_numeric_table("table_b", table_b.loc[table_a.index, table_a.columns])
    if arrays[0].shape != arrays[1].shape:
        raise GlioradInputError(
            f"table_a has shape {arrays[0].shape} but table_b has {arrays[1].shape}; expected the "
            "same subjects (rows) and features (columns)"
        )
    if arrays[0].shape[0] < 2:
        raise GlioradInputError(
            f"table_a has {arrays[0].shape[0]} row(s); the ICC needs at least 2 subjects"
        )
    names = names or [str(i) for i in range(arrays[0].shape[1])]
    return np.stack(arrays, axis=1), names


def _as_numeric_table(name: str, table: Any) -> np.ndarray:
    """2-D finite float array from a DataFrame / array / nested list (a 1-D input is 1 feature)."""
    try:
        arr = np.asarray(table.to_numpy(dtype=float) if isinstance(table, pd.DataFrame | pd.Series)
                         else table, dtype=float)
    except (TypeError, ValueError):
        raise GlioradInputError(f"{name} is not numeric; expected a table of numbers") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise GlioradInputError(f"{name} has shape {arr.shape}; expected (subjects, features)")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        row, col = bad[0]
        raise GlioradInputError(
            f"{name} has {len(bad)} non-finite value(s) (first at row {row}, column {col}); "
            "expected finite numbers (the ICC has no missing-data handling)"
        )
    return arr


def _check_same_labels(table_a: pd.DataFrame, table_b: pd.DataFrame) -> None:
    """Two DataFrames must hold the same row and column labels (any order)."""
    for what, la, lb in (("rows", table_a.index, table_b.index),
                         ("columns", table_a.columns, table_b.columns)):
        missing = la.difference(lb).union(lb.difference(la))
        if len(missing) or len(la) != len(lb):
            raise GlioradInputError(
                f"table_a and table_b differ in their {what} (e.g. {list(missing[:3])}); "
                f"expected the same {what}"
            )


def _mean_squares(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-way ANOVA mean squares of x (n subjects, k raters, p features) per feature.

    Returns MSB (between subjects, df n-1), MSJ (between raters, df k-1) and MSE (residual,
    df (n-1)(k-1)). The residual is computed directly (not by subtraction); a residual mean
    square below ``1e-13 * (MSB + MSJ)`` is floating-point noise and is set to exactly 0 (tables
    that agree up to a rater offset).
    """
    n, k, _ = x.shape
    subj = x.mean(axis=1)
    rater = x.mean(axis=0)
    grand = rater.mean(axis=0)  # balanced design: the grand mean, exact for identical raters
    msb = k * np.sum((subj - grand) ** 2, axis=0) / (n - 1)
    msj = n * np.sum((rater - grand) ** 2, axis=0) / (k - 1)
    resid = x - subj[:, None, :] - rater[None, :, :] + grand
    mse = np.sum(resid**2, axis=(0, 1)) / ((n - 1) * (k - 1))
    mse = np.where(mse <= MSE_NOISE * (msb + msj), 0.0, mse)
    return msb, msj, mse


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _icc3(msb: np.ndarray, mse: np.ndarray, n: int, k: int, alpha: float) -> Arrays:
    """ICC(3,1) consistency, its CI (F-based) as psych::ICC "Single_fixed_raters"."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (msb - mse) / (msb + (k - 1) * mse)
        f = msb / mse
        df1, df2 = n - 1, (n - 1) * (k - 1)
        f_low = f / sps.f.ppf(1 - alpha / 2, df1, df2)
        f_high = f * sps.f.ppf(1 - alpha / 2, df2, df1)
        low = (f_low - 1) / (f_low + k - 1)
        high = (f_high - 1) / (f_high + k - 1)
    perfect = mse == 0
    return value, np.where(perfect, 1.0, low), np.where(perfect, 1.0, high)


def _icc2(
    msb: np.ndarray, msj: np.ndarray, mse: np.ndarray, n: int, k: int, alpha: float
) -> Arrays:
    """ICC(2,1) absolute agreement and its CI (Satterthwaite df) as psych::ICC."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        fj = msj / mse
        vn = (k - 1) * (n - 1) * (k * value * fj + n * (1 + (k - 1) * value) - k * value) ** 2
        vd = (n - 1) * k**2 * value**2 * fj**2 + (n * (1 + (k - 1) * value) - k * value) ** 2
        v = np.where(mse > 0, vn / vd, k - 1.0)  # the limit of vn / vd as MSE -> 0
        f_up = sps.f.ppf(1 - alpha / 2, n - 1, v)
        f_lo = sps.f.ppf(1 - alpha / 2, v, n - 1)
        denom = k * msj + (k * n - k - n) * mse
        low = n * (msb - f_up * mse) / (f_up * denom + n * msb)
        high = n * (f_lo * msb - mse) / (denom + n * f_lo * msb)
    return value, low, high


def _icc_frame(x: np.ndarray, names: list[str], kind: str, alpha: float) -> pd.DataFrame:
    """Vectorised ICC over the features of x (n, k, p)."""
    n, k, _ = x.shape
    msb, msj, mse = _mean_squares(x)
    if kind == "ICC(2,1)":
        value, low, high = _icc2(msb, msj, mse, n, k, alpha)
    else:
        value, low, high = _icc3(msb, mse, n, k, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(mse > 0, msb / mse, np.inf)
    p = sps.f.sf(f, n - 1, (n - 1) * (k - 1))
    constant = np.all(np.ptp(x, axis=0) == 0, axis=0)  # no subject differs, in either table
    note = np.where(mse == 0, "zero residual variance: ratings agree up to a rater offset", "")
    note = np.where(constant, "zero variance: the feature does not vary between subjects", note)
    frame = pd.DataFrame(
        {"icc": value, "ci_low": low, "ci_high": high, "F": f, "p": p, "note": note},
        index=pd.Index(names, name="feature"),
    )
    frame.loc[constant, ["icc", "ci_low", "ci_high", "F", "p"]] = np.nan
    return frame


def icc(table_a: Any, table_b: Any, kind: str = "ICC(2,1)", alpha: float = 0.05) -> pd.DataFrame:
    """Two-way single-rater ICC (Shrout & Fleiss 1979) of every feature, two raters/readers.

    ``table_a`` and ``table_b`` hold the same subjects (rows) and features (columns), e.g. the
    radiomic features of two segmentations. Per feature, with the two-way ANOVA mean squares
    MSB (subjects), MSJ (raters), MSE (residual), n subjects and k = 2 raters:

    * ``ICC(2,1) = (MSB - MSE) / (MSB + (k-1) MSE + k (MSJ - MSE) / n)`` (absolute agreement,
      random raters; psych "Single_random_raters", CI with Satterthwaite df),
    * ``ICC(3,1) = (MSB - MSE) / (MSB + (k-1) MSE)`` (consistency, fixed raters; psych
      "Single_fixed_raters"),
    * ``F = MSB / MSE`` on (n-1, (n-1)(k-1)) df, ``p = P(F' > F)``,

    with the F-distribution confidence limits of Shrout & Fleiss / McGraw & Wong as coded in
    ``psych::ICC(..., lmer = FALSE)`` (the ANOVA estimates; psych's default ``lmer = TRUE``
    truncates negative variance components at 0 and can differ).

    Special cases (no silent NaN): a feature that does not vary between subjects (constant in
    each table) has icc/CI/F/p = NaN and ``note = "zero variance: ..."``; a feature whose tables agree up to a constant offset
    (MSE = 0) has F = inf, p = 0, ICC(3,1) = 1 with CI [1, 1] and a ``note``.

    Parameters
    ----------
    table_a, table_b : DataFrame or array-like, shape (subjects, features)
        DataFrames are aligned on their row and column labels (which must match); arrays must
        have the same shape. A 1-D input is one feature. No missing values.
    kind : {"ICC(2,1)", "ICC(3,1)"}
    alpha : float
        1 - confidence level.

    Returns
    -------
    DataFrame
        Indexed by feature, columns ``icc, ci_low, ci_high, F, p, note`` (``note`` is "" when
        everything is defined).

    References
    ----------
    Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
    Psychol Bull 1979;86:420-8. McGraw KO, Wong SP. Psychol Methods 1996;1:30-46.
    """
    kind = check_option("kind", kind, ICC_KINDS)
    alpha = check_alpha(alpha)
    x, names = _as_rating_tables(table_a, table_b)
    return _icc_frame(x, names, kind, alpha)


def icc_single(a: Any, b: Any, kind: str = "ICC(2,1)", alpha: float = 0.05) -> IccResult:
    """ICC of one feature rated twice (``a`` and ``b``: one value per subject); see :func:`icc`."""
    a_arr = as_float_vector("a", a)
    b_arr = as_float_vector("b", b)
    check_same_length(a=a_arr, b=b_arr)
    row = icc(a_arr, b_arr, kind=kind, alpha=alpha).iloc[0]
    return IccResult(
        icc=float(row["icc"]), ci_low=float(row["ci_low"]), ci_high=float(row["ci_high"]),
        F=float(row["F"]), p=float(row["p"]), note=str(row["note"]),
    )
