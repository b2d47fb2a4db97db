"""Cut-points of a continuous risk score: the median, and the X-tile-style "optimal" cut-point
by the maximally selected log-rank statistic (R ``maxstat::maxstat.test``).

.. warning::
   An optimal cut-point is chosen *because* it separates these patients best; its log-rank
   statistic and hazard ratio are optimistic, and even the corrected P value only protects
   against the multiple testing over cut-points, not against reusing the same data. Validate
   the cut-point on independent patients before reporting risk groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival._validate import check_lengths, check_score, check_survival

OPTIMISM_WARNING = (
    "The optimal cut-point was selected on these data to maximise the log-rank statistic: the "
    "separation it shows is optimistic (and the corrected P value only accounts for trying "
    "many cut-points). Validate the cut-point on independent data before using it."
)
P_METHODS = ("Lau94", "Lau92", "none")


def median_cutpoint(score: object) -> float:
    """Median of the score (``numpy.median``, as R ``median``).

    Patients with ``score > cutpoint`` form the high group (the maxstat convention: the low
    group is ``score <= cutpoint``).
    """
    return float(np.median(check_score(score)))


@dataclass(frozen=True)
class CutpointResult:
    """Result of :func:`optimal_cutpoint`.

    Attributes
    ----------
    cutpoint : float
        Estimated cut-point; groups are ``score <= cutpoint`` and ``score > cutpoint``.
    statistic : float
        Maximally selected standardised log-rank statistic (maxstat's ``M``).
    p_value : float
        P value corrected for the search over cut-points (``p_method``); NaN for ``"none"``.
    p_method : str
    candidates, statistics : numpy.ndarray
        Every cut-point examined and its standardised statistic (maxstat ``cuts``, ``stats``).
    n_low, n_high : int
        Group sizes at the cut-point.
    minprop, maxprop : float
    warning : str
        Reminder that the cut-point is optimistic and must be validated on independent data.
    """

    cutpoint: float
    statistic: float
    p_value: float
    p_method: str
    candidates: np.ndarray = field(repr=False)
    statistics: np.ndarray = field(repr=False)
    n_low: int
    n_high: int
    minprop: float
    maxprop: float
    warning: str = OPTIMISM_WARNING


def logrank_scores(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Log-rank (Savage) scores as ``exactRankTests::cscores(Surv(time, event), "LogRank")``.

    ``a_i = event_i - sum_{j: rank_j <= rank_i} event_j / (N - rank_j + 1)`` over the time-sorted
    observations, with ties given their maximum rank (so all tied observations share the score
    increment, exactly as maxstat computes it).
    """
    n = time.size
    order = np.argsort(time, kind="stable")
    rank_max = stats.rankdata(time, method="max").astype(int)
    fact = event / (n - rank_max + 1.0)
    cum = np.cumsum(fact[order])
    return event - cum[rank_max - 1]


def p_lausen94(b: float, n: int, m: np.ndarray) -> float:
    """Improved Bonferroni bound of Lausen, Sauerbrei & Schumacher (1994) (``pLausen94``)."""
    if m.size <= 1:
        d = 0.0
    else:
        m1, m2 = m[:-1].astype(float), m[1:].astype(float)
        t = np.sqrt(1.0 - m1 * (n - m2) / ((n - m1) * m2))
        d = float(np.sum(1 / math.pi * math.exp(-b * b / 2) * (t - (b * b / 4 - 1) * t**3 / 6)))
    return float(1 - (stats.norm.cdf(b) - stats.norm.cdf(-b)) + d)


def p_lausen92(b: float, minprop: float, maxprop: float) -> float:
    """Asymptotic approximation of Lausen & Schumacher (1992) (``pLausen92``)."""
    if b < 1:
        return 1.0
    db = stats.norm.pdf(b)
    p = 4 * db / b + db * (b - 1 / b) * math.log(maxprop * (1 - minprop) / ((1 - maxprop) * minprop))
    return max(float(p), 0.0)


def optimal_cutpoint(
    time: object,
    event: object,
    score: object,
    minprop: float = 0.1,
    maxprop: float = 0.9,
    p_method: str = "Lau94",
) -> CutpointResult:
    """Maximally selected log-rank statistic over cut-points of ``score`` (X-tile style).

    Matches ``maxstat::maxstat.test(Surv(time, event) ~ score, smethod="LogRank",
    pmethod=p_method, minprop=minprop, maxprop=maxprop)``: with log-rank scores ``a`` (see
    :func:`logrank_scores`) sorted by ``score``, for each candidate split after ``m`` patients
    (``m`` = number with ``score`` below a distinct value, ``floor(N minprop) <= m <=
    floor(N maxprop)``, ``m >= 1``)::

        S_m = sum_{first m} a,  E = m/N sum a,  V = m (N-m) / (N^2 (N-1)) (N sum a^2 - (sum a)^2)
        M = max_m |S_m - E| / sqrt(V)

    The cut-point is the largest score of the lower group at the (first) maximum.

    .. warning::
       Optimal cut-points are optimistic: they are tuned to these data. The P value corrects
       for the search over cut-points (``"Lau94"``: Lausen, Sauerbrei & Schumacher 1994 improved
       Bonferroni; ``"Lau92"``: Lausen & Schumacher 1992 asymptotic) but not for testing on the
       data used to choose the cut-point. Validate on independent data. The result carries
       the same reminder in ``warning``.

    Parameters
    ----------
    time, event : array-like
        Survival data.
    score : array-like
        Continuous score (e.g. a radiomics signature).
    minprop, maxprop : float
        Smallest / largest fraction of patients in the lower group.
    p_method : {"Lau94", "Lau92", "none"}
        P-value approximation (maxstat's ``pmethod``; ``"HL"``/``"exactGauss"``/``"condMC"``
        are not implemented).

    Returns
    -------
    CutpointResult
    """
    t, e = check_survival(time, event)
    x = check_score(score)
    n = check_lengths(time=t, score=x)
    check_option("p_method", p_method, P_METHODS)
    if not 0 <= minprop < maxprop <= 1:
        raise GlioradInputError(
            f"need 0 <= minprop < maxprop <= 1; got minprop={minprop}, maxprop={maxprop}"
        )
    a = logrank_scores(t, e.astype(float))
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], a[order]
    m = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # patients below each distinct value
    if minprop == 0 and maxprop == 1:
        m = m[1:]
    else:
        m = m[(m >= max(1, math.floor(n * minprop))) & (m <= math.floor(n * maxprop))]
    if m.size == 0:
        raise GlioradInputError(
            f"no cut-point leaves between {minprop:.0%} and {maxprop:.0%} of the {n} patients in "
            "the lower group (too few distinct score values)"
        )
    total = ys.sum()
    expected = m / n * total
    var = m * (n - m) / (n**2 * (n - 1.0)) * (n * np.sum(ys**2) - total**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistics = np.abs((np.cumsum(ys)[m - 1] - expected) / np.sqrt(var))
    best = int(np.nanargmax(statistics))
    stat = float(statistics[best])
    if p_method == "Lau94":
        p = p_lausen94(stat, n, m)
    elif p_method == "Lau92":
        p = p_lausen92(stat, minprop, maxprop)
    else:
        p = float("nan")
    return CutpointResult(
        cutpoint=float(xs[m[best] - 1]),
        statistic=stat,
        p_value=p,
        p_method=p_method,
        candidates=xs[m - 1],
        statistics=statistics,
        n_low=int(m[best]),
        n_high=int(n - m[best]),
        minprop=float(minprop),
        maxprop=float(maxprop),
    )
