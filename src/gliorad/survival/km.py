"""Kaplan-Meier curves with confidence bands, and the log-rank test.

Matches R 4.2 ``survival`` 3.x: ``survfit(Surv(time, event) ~ 1, conf.type=...)`` (Greenwood
variance, default ``conf.type = "log"``), ``summary(fit, times=...)`` and ``survdiff``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival._validate import as_1d_float, check_groups, check_probability, check_survival

CONF_TYPES = ("log", "log-log", "plain")


def _conf_band(
    surv: np.ndarray, se_log: np.ndarray, conf_type: str, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise confidence limits exactly as ``survival:::survfit_confint`` (``logse=TRUE``).

    ``se_log`` is the standard error of ``-log S`` (Greenwood), R's ``survfit(...)$std.err``.
    Limits that R reports as ``NA`` (``S == 0`` for ``log``; ``S`` in {0, 1} for ``log-log``)
    are ``NaN`` here.
    """
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "plain":
            half = z * se_log * surv
            return np.maximum(surv - half, 0.0), np.minimum(surv + half, 1.0)
        if conf_type == "log":
            xx = np.where(surv == 0, np.nan, surv)
            return np.exp(np.log(xx) - z * se_log), np.minimum(np.exp(np.log(xx) + z * se_log), 1.0)
        xx = np.where((surv == 0) | (surv == 1), np.nan, surv)
        se2 = z * se_log / np.log(xx)
        loglog = np.log(-np.log(xx))
        return np.exp(-np.exp(loglog - se2)), np.exp(-np.exp(loglog + se2))


def kaplan_meier(
    time: object,
    event: object,
    conf_type: str = "log",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Kaplan-Meier estimate with Greenwood standard errors and pointwise confidence limits.

    Matches ``survival::survfit(Surv(time, event) ~ 1, conf.type=conf_type,
    conf.int=1-alpha)`` in R 4.2 (one row per distinct observed time, censored times included).

    Parameters
    ----------
    time, event : array-like
        Follow-up times (>= 0) and event indicators (1 = event, 0 = censored).
    conf_type : {"log", "log-log", "plain"}
        Transformation for the confidence band; R's default is ``"log"``.
    alpha : float
        1 - confidence level.

    Returns
    -------
    pandas.DataFrame
        Columns ``time, n_risk, n_event, n_censor, surv, std_err, lower, upper``.
        ``std_err`` is the standard error of ``S(t)`` (``summary.survfit``'s ``std.err``:
        ``S * sqrt(sum d / (n (n - d)))``); the log-scale error that R stores in
        ``survfit(...)$std.err`` is ``std_err / surv``. ``lower``/``upper`` are NaN where R gives
        ``NA``. ``std_err`` is ``inf`` after a time where everyone left at risk dies (R: ``Inf``
        on the log scale).
    """
    t, e = check_survival(time, event, require_event=False)
    check_option("conf_type", conf_type, CONF_TYPES)
    alpha = check_probability(alpha, "alpha")
    times, inverse = np.unique(t, return_inverse=True)
    n_event = np.bincount(inverse, weights=e, minlength=times.size)
    n_total = np.bincount(inverse, minlength=times.size).astype(float)
    n_censor = n_total - n_event
    n_risk = n_total[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        increment = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
    se_log = np.sqrt(np.cumsum(increment))
    lower, upper = _conf_band(surv, se_log, conf_type, alpha)
    with np.errstate(invalid="ignore"):
        std_err = np.where(np.isinf(se_log), np.inf, se_log * surv)
    out = pd.DataFrame(
        {
            "time": times,
            "n_risk": n_risk.astype(int),
            "n_event": n_event.astype(int),
            "n_censor": n_censor.astype(int),
            "surv": surv,
            "std_err": std_err,
            "lower": lower,
            "upper": upper,
        }
    )
    out.attrs.update(conf_type=conf_type, alpha=alpha, n=int(t.size))
    return out


def survival_at(km: pd.DataFrame, times: object, extend: bool = False) -> pd.DataFrame:
    """Read a Kaplan-Meier table (from :func:`kaplan_meier`) at given times.

    Matches ``summary(survfit(...), times=times, extend=extend)``: the step function is
    right-continuous; before the first observed time ``S = 1`` with zero standard error.

    Parameters
    ----------
    km : pandas.DataFrame
        Output of :func:`kaplan_meier`.
    times : array-like
        Times at which to read the curve (>= 0).
    extend : bool
        If False (R's default), times after the last observed time give NaN (R drops them);
        if True, the last value is carried forward.

    Returns
    -------
    pandas.DataFrame
        Columns ``time, n_risk, surv, std_err, lower, upper``; ``n_risk`` is the number still
        at risk at ``time`` (R's ``n.risk`` in ``summary``).
    """
    at = as_1d_float(times, "times")
    if np.isnan(at).any() or (at < 0).any():
        raise GlioradInputError("times must be non-negative numbers without NaN")
    kt = km["time"].to_numpy()
    idx = np.searchsorted(kt, at, side="right") - 1
    cols = {}
    for col, before in (("surv", 1.0), ("std_err", 0.0), ("lower", 1.0), ("upper", 1.0)):
        values = km[col].to_numpy()
        cols[col] = np.where(idx >= 0, values[np.maximum(idx, 0)], before)
    n_entered = km["n_risk"].to_numpy()
    left_after = np.append(n_entered, 0)  # at risk at the first km time > t
    nxt = np.searchsorted(kt, at, side="left")
    n_risk = left_after[nxt]
    beyond = at > kt[-1]
    if not extend:
        cols = {col: np.where(beyond, np.nan, value) for col, value in cols.items()}
    return pd.DataFrame({"time": at, "n_risk": n_risk, **cols})


@dataclass(frozen=True)
class LogrankResult:
    """Result of :func:`logrank_test` (R ``survdiff``).

    Attributes
    ----------
    chisq, df, p_value
        Log-rank chi-square statistic, degrees of freedom (groups with expected > 0, minus 1)
        and its upper-tail chi-square p value.
    table
        One row per group: ``group, n, observed, expected, oe2_e, oe2_v`` (as R prints:
        ``(O-E)^2/E`` and ``(O-E)^2/V``).
    variance
        The (groups x groups) variance matrix of ``O - E`` (R's ``survdiff(...)$var``).
    """

    chisq: float
    df: int
    p_value: float
    table: pd.DataFrame = field(repr=False)
    variance: np.ndarray = field(repr=False)


def group_levels(g: np.ndarray | pd.Series) -> list:
    """The groups present in ``g`` in R's order: a categorical's levels (those present), else the
    sorted values."""
    if isinstance(g, pd.Series) and isinstance(g.dtype, pd.CategoricalDtype):
        return [lv for lv in g.cat.categories if (g == lv).any()]
    return sorted(pd.unique(np.asarray(g, dtype=object)), key=lambda v: (str(type(v)), v))


def logrank_test(time: object, event: object, group: object) -> LogrankResult:
    """Log-rank test for two or more groups, matching ``survival::survdiff(Surv(t, e) ~ g)``.

    At each distinct event time the observed minus expected deaths per group and the
    hypergeometric covariance ``d (n - d) / (n - 1) * n_j / n (delta_jk - n_k / n)`` are summed;
    the statistic is ``(O - E)' V^- (O - E)`` on all groups but the first (with expected > 0),
    as R does.

    Parameters
    ----------
    time, event : array-like
        Survival data.
    group : array-like
        Group labels (any hashable values; a pandas categorical keeps its level order,
        otherwise levels are sorted like R's ``factor``).

    Returns
    -------
    LogrankResult
    """
    t, e = check_survival(time, event)
    g_raw = group if isinstance(group, pd.Series) else pd.Series(check_groups(group, t.size))
    g = check_groups(g_raw, t.size)
    levels = group_levels(g_raw)
    if len(levels) < 2:
        raise GlioradInputError(f"group has only one level ({levels[0]!r}); need at least two")
    code = pd.Categorical(g, categories=levels).codes
    k = len(levels)
    event_times = np.unique(t[e == 1])
    # at-risk and death counts: (event times x groups)
    at_risk = np.empty((event_times.size, k))
    deaths = np.zeros((event_times.size, k))
    for j in range(k):
        tj = np.sort(t[code == j])
        at_risk[:, j] = tj.size - np.searchsorted(tj, event_times, side="left")
        dj = t[(code == j) & (e == 1)]
        np.add.at(deaths[:, j], np.searchsorted(event_times, dj), 1.0)
    n = at_risk.sum(1).astype(float)
    d = deaths.sum(1)
    frac = at_risk / n[:, None]
    observed = deaths.sum(0)
    expected = (d[:, None] * frac).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
    variance = np.einsum("t,tj,jk->jk", w, frac, np.eye(k)) - np.einsum("t,tj,tk->jk", w, frac, frac)
    keep = expected > 0
    if keep.sum() < 2:
        chisq = 0.0
    else:
        diff = (observed - expected)[keep][1:]
        vv = variance[np.ix_(keep, keep)][1:, 1:]
        chisq = float(diff @ np.linalg.solve(vv, diff))
    df = int(keep.sum()) - 1
    p_value = float(stats.chi2.sf(chisq, df)) if df > 0 else float("nan")
    oe = observed - expected
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                "group": levels,
                "n": np.bincount(code, minlength=k),
                "observed": observed,
                "expected": expected,
                "oe2_e": oe**2 / expected,
                "oe2_v": oe**2 / np.diag(variance),
            }
        )
    return LogrankResult(chisq=chisq, df=df, p_value=p_value, table=table, variance=variance)
