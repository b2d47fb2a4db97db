"""Baseline characteristics by group ("Table S2") with two-sided tests.

Continuous: ``wilcox.test(exact = FALSE, correct = TRUE)``; categorical: ``chisq.test`` or
``fisher.test`` (:mod:`gliorad.stats.fisher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from gliorad.errors import GlioradInputError
from gliorad.stats.fisher import fisher_exact_rx2

__all__ = [
    "CHI_SQUARE",
    "CHI_SQUARE_YATES",
    "FISHER",
    "FISHER_MC",
    "FISHER_MC_RESAMPLES",
    "MANN_WHITNEY",
    "cohort_table",
]


MANN_WHITNEY = "Mann-Whitney U (normal approx., tie & continuity corrected)"
CHI_SQUARE = "chi-square"
CHI_SQUARE_YATES = "chi-square (Yates)"
FISHER = "Fisher exact"
FISHER_MC_RESAMPLES = 100_000
FISHER_MC = f"Fisher (Monte Carlo, {FISHER_MC_RESAMPLES} tables, seed 0)"


def _check_columns(df: pd.DataFrame, group_col: str, columns: Sequence[str]) -> None:
    """Every named column must exist in ``df``."""
    absent = [c for c in [group_col, *columns] if c not in df.columns]
    if absent:
        raise GlioradInputError(
            f"cohort_table: column(s) {absent} not in the table; available: {list(df.columns)}"
        )


def _groups(df: pd.DataFrame, group_col: str) -> list[Any]:
    """The two groups of ``group_col`` (sorted / categorical order); raise otherwise."""
    col = df[group_col]
    if col.isna().any():
        rows = list(df.index[col.isna()][:3])
        raise GlioradInputError(
            f"group_col {group_col!r} has {int(col.isna().sum())} missing value(s) (rows {rows}); "
            "expected a group for every subject"
        )
    groups = _levels(col)
    if len(groups) != 2:
        raise GlioradInputError(
            f"group_col {group_col!r} has {len(groups)} group(s) {groups}; expected exactly 2"
        )
    return groups


def _levels(col: pd.Series) -> list[Any]:
    """Observed levels of a column: categorical order if categorical, else sorted."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if (col == c).any()]
    values = col.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:  # mixed types (e.g. numbers and text): sort by their text
        return sorted(values, key=str)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A continuous column as float; raise naming the first non-numeric value."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        row = df.index[bad][0]
        row = row.item() if isinstance(row, np.generic) else row
        raise GlioradInputError(
            f"continuous column {column!r} row {row!r}: {df[column][row]!r} is not a number"
        )
    return values.astype(float)


def _format_median_iqr(values: np.ndarray, digits: int) -> str:
    """``median (Q1-Q3)`` with R's quantile type 7 (numpy's linear interpolation)."""
    q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{med:.{digits}f} ({q1:.{digits}f}\u2013{q3:.{digits}f})"


def _continuous_row(
    df: pd.DataFrame, group_col: str, groups: list[Any], column: str, digits: int
) -> dict[str, Any]:
    """Median (IQR) per group and the two-sided Mann-Whitney p.

    scipy ``mannwhitneyu(method="asymptotic", use_continuity=True)`` = R
    ``wilcox.test(x ~ g, exact = FALSE, correct = TRUE)``: normal approximation with the tie
    correction of the variance and the 0.5 continuity correction. (R's default would switch to
    the exact distribution for n < 50 without ties; one method for every row is used here.)
    """
    values = _numeric(df, column)
    samples = []
    for g in groups:
        x = values[df[group_col] == g].dropna().to_numpy()
        if x.size == 0:
            raise GlioradInputError(
                f"continuous column {column!r} has no values in group {g!r}; cannot compare groups"
            )
        samples.append(x)
    p, test = _mann_whitney(samples[0], samples[1])
    row = {"variable": column, "level": "", "statistic": "median (IQR)",
           "n_missing": int(values.isna().sum()), "p": p, "test": test}
    row.update({_group_label(g): _format_median_iqr(x, digits) for g, x in zip(groups, samples)})
    return row


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """Two-sided Mann-Whitney p (see :func:`_continuous_row`); all-identical values: untested."""
    if np.ptp(np.concatenate([x, y])) == 0:
        return float("nan"), "not tested: all values identical"
    res = sps.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic",
                           use_continuity=True)
    return float(res.pvalue), MANN_WHITNEY


def _group_label(group: Any) -> str:
    """Column header of a group in the cohort table."""
    return str(group)


def _categorical_test(table: np.ndarray) -> tuple[float, str]:
    """Chi-square (Yates for 2x2, as R's chisq.test) or Fisher exact if any expected count < 5.

    Fisher's test uses :func:`fisher_exact_rx2` (exact, R's p-value definition); scipy's
    ``fisher_exact`` is exact only for 2 x 2 tables (its larger tables are Monte Carlo). Only
    when a table is too large to enumerate does it fall back to scipy's Monte Carlo estimate
    (seeded; R's ``fisher.test(simulate.p.value = TRUE)``), named so in the ``test`` column.
    """
    if min(table.shape) < 2:
        return float("nan"), "not tested: only one level"
    _, p, _, expected = sps.chi2_contingency(table, correction=True)
    if (expected < 5).any():
        try:
            return fisher_exact_rx2(table), FISHER
        except GlioradInputError:  # too many tables to enumerate: R would need simulate.p.value
            method = sps.MonteCarloMethod(n_resamples=FISHER_MC_RESAMPLES,
                                          rng=np.random.default_rng(0))
            return float(sps.fisher_exact(table, method=method).pvalue), FISHER_MC
    return float(p), CHI_SQUARE_YATES if table.shape == (2, 2) else CHI_SQUARE


def _categorical_rows(
    df: pd.DataFrame, group_col: str, groups: list[Any], column: str, digits: int
) -> list[dict[str, Any]]:
    """A header row (p, test) and one ``n (%)`` row per level; % of the group's non-missing."""
    col = df[column]
    levels = _levels(col)
    table = np.array([[int(((col == lev) & (df[group_col] == g)).sum()) for g in groups]
                      for lev in levels]).reshape(len(levels), len(groups))
    p, test = _categorical_test(table)
    header = {"variable": column, "level": "", "statistic": "n (%)",
              "n_missing": int(col.isna().sum()), "p": p, "test": test}
    header.update({_group_label(g): "" for g in groups})
    rows = [header]
    totals = table.sum(axis=0)
    for lev, counts in zip(levels, table):
        row = {"variable": column, "level": _level_label(lev), "statistic": "n (%)",
               "n_missing": 0, "p": float("nan"), "test": ""}
        row.update({_group_label(g): _format_count(c, t, digits)
                    for g, c, t in zip(groups, counts, totals)})
        rows.append(row)
    return rows


def _level_label(level: Any) -> str:
    """Level as text; integer-valued floats (a numeric code column with NaN) lose the ``.0``."""
    if isinstance(level, float) and level.is_integer():
        return str(int(level))
    return str(level)


def _format_count(count: int, total: int, digits: int) -> str:
    """``n (x.x%)``."""
    pct = 100.0 * count / total if total else 0.0
    return f"{count} ({pct:.{digits}f}%)"


def cohort_table(
    df: pd.DataFrame,
    group_col: str,
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    digits: int = 1,
) -> pd.DataFrame:
    """Baseline characteristics by group ("Table S2") with two-sided tests.

    * Continuous variables: ``median (Q1–Q3)`` per group (quantile type 7) and the Mann-Whitney
      U p-value (normal approximation with tie and continuity correction = R
      ``wilcox.test(exact = FALSE, correct = TRUE)``).
    * Categorical variables: a header row carrying the p-value and test, then one row per level
      with ``n (%)`` per group (% of the group's non-missing values). Test: Fisher's exact test
      (R ``fisher.test``; R x C tables via scipy's exact test) when any expected count is < 5,
      else the chi-square test with Yates' continuity correction for 2 x 2 tables (R
      ``chisq.test`` default) and without it for larger tables.

    Missing values of a variable are left out of its summary and test and counted in
    ``n_missing``. Level rows have ``p`` = NaN and an empty ``test`` by design: the variable's
    p-value is on its header row. Untestable variables get ``p`` = NaN and a ``test`` saying
    why: ``"not tested: only one level"`` (categorical) or ``"not tested: all values
    identical"`` (continuous).

    Parameters
    ----------
    df : DataFrame
    group_col : str
        Column with exactly two groups (no missing values).
    continuous, categorical : sequence of str
        Column names.
    digits : int
        Decimals of medians, quartiles and percentages.

    Returns
    -------
    DataFrame
        Columns ``variable, level, statistic, <group 1>, <group 2>, n_missing, p, test``.
    """
    if not isinstance(df, pd.DataFrame):
        raise GlioradInputError(f"df is a {type(df).__name__}; expected a pandas DataFrame")
    _check_columns(df, group_col, [*continuous, *categorical])
    groups = _groups(df, group_col)
    rows: list[dict[str, Any]] = []
    for column in continuous:
        rows.append(_continuous_row(df, group_col, groups, column, digits))
    for column in categorical:
        rows.extend(_categorical_rows(df, group_col, groups, column, digits))
    columns = ["variable", "level", "statistic", *map(_group_label, groups), "n_missing", "p",
               "test"]
    return pd.DataFrame(rows, columns=columns)
