"""Harrell's C-index with the infinitesimal-jackknife variance of R's ``survival::concordance``.

* :func:`concordance_index`: ``survival::concordance(Surv(t, e) ~ risk, reverse = TRUE)``
* :func:`concordance_ci`: same, ``$var`` (infinitesimal jackknife)
* :func:`compare_concordance`: joint IJ covariance of two ``concordance`` fits

The numerical core is :func:`_pair_counts` (per-subject comparable-pair counts in
O(N log^2 N)) and :func:`_c_and_dfbeta` (C and its per-subject influence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gliorad.errors import GlioradInputError
from gliorad.stats.common import (
    PairedDifference,
    as_binary,
    as_float_vector,
    check_alpha,
    check_same_length,
    paired_difference,
    wald_ci,
)

__all__ = [
    "ConcordanceComparison",
    "ConcordanceResult",
    "compare_concordance",
    "concordance_ci",
    "concordance_index",
]


@dataclass(frozen=True)
class ConcordanceResult:
    """Harrell's C with its IJ standard error, Wald CI and pair counts."""

    c_index: float
    se: float
    ci_low: float
    ci_high: float
    concordant: int
    discordant: int
    tied_risk: int
    tied_time: int
    n: int


@dataclass(frozen=True)
class ConcordanceComparison(PairedDifference):
    """Paired comparison of two C-indices on the same subjects (``diff = c_a - c_b``; the
    interval and test fields are :class:`~gliorad.stats.common.PairedDifference`'s)."""

    c_a: float
    c_b: float


def _count_lower_left(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For every k: ``sum_m w[m] * [x[m] < x[k]] * [v[m] < v[k]]`` in O(N log^2 N), vectorised.

    ``x`` and ``v`` are non-negative integer ranks. Order the points by (x ascending,
    v descending); then "earlier in that order with a smaller v" is exactly the strict
    dominance above. The earlier-and-smaller counts are accumulated bit by bit over ``v``
    (a wavelet-tree style decomposition): a pair (m, k) with v[m] < v[k] is counted once, at the
    highest bit where they differ, inside the group sharing the higher bits.
    """
    order = np.lexsort((-v, x))
    vs = v[order]
    ws = w[order]
    counts = np.zeros(vs.size, dtype=np.int64)
    for b in range(max(1, int(vs.max()).bit_length())):
        prefix = vs >> (b + 1)
        grouped = np.argsort(prefix, kind="stable")  # keeps the (x, -v) order inside groups
        prefix_g = prefix[grouped]
        is_one = ((vs[grouped] >> b) & 1).astype(bool)
        zero_w = np.where(is_one, 0, ws[grouped])
        before = np.cumsum(zero_w) - zero_w  # weight of earlier zero-bit points
        new_group = np.r_[True, prefix_g[1:] != prefix_g[:-1]]
        group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
        counts[grouped] += np.where(is_one, before - before[group_start], 0)
    out = np.empty_like(counts)
    out[order] = counts
    return out


def _dense_rank(values: np.ndarray) -> np.ndarray:
    """0-based dense ranks (ties share a rank)."""
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


@dataclass(frozen=True)
class _PairCounts:
    """Per-subject pair counts (higher risk = shorter survival orientation) and totals."""

    concordant: np.ndarray
    discordant: np.ndarray
    tied_risk: np.ndarray
    tied_time: int

    @property
    def totals(self) -> tuple[int, int, int]:
        # every comparable pair is counted once for each of its two members
        return (int(self.concordant.sum()) // 2, int(self.discordant.sum()) // 2,
                int(self.tied_risk.sum()) // 2)


def _pair_counts(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> _PairCounts:
    """Count, for every subject, the comparable pairs it belongs to, as survival::concordance.

    A pair (i, j) is comparable when i has an event and j was still under observation after
    it: ``time[j] > time[i]``, or ``time[j] == time[i]`` with j censored (the event is taken as
    "shorter"). Two events at the same time are tied on time and not comparable; two censored
    subjects never are. In a comparable pair, ``risk[i] > risk[j]`` is concordant,
    ``risk[i] < risk[j]`` discordant and equal risks are tied (count 1/2 in C).

    Each subject's counts add its pairs as the shorter member (``i``) and as the longer one
    (``j``): the rows of ``concordance(..., influence = 2)$influence``.
    """
    ev = event.astype(np.int64)
    key = 2 * _dense_rank(time) + (1 - ev)  # censored sorts just after events at the same time
    r = _dense_rank(risk)
    r_rev = r.max() - r
    key_rev = key.max() - key
    ones = np.ones_like(ev)
    # i as the shorter member (only for events): partners j with key[j] > key[i]
    sorted_key = np.sort(key)
    n_after = key.size - np.searchsorted(sorted_key, key, side="right")
    conc_short = _count_lower_left(key_rev, r, ones) * ev
    disc_short = _count_lower_left(key_rev, r_rev, ones) * ev
    tied_short = (n_after * ev) - conc_short - disc_short
    # j as the longer member: partners are events i with key[i] < key[j]
    event_keys = np.sort(key[event])
    n_events_before = np.searchsorted(event_keys, key, side="left")
    conc_long = _count_lower_left(key, r_rev, ev)
    disc_long = _count_lower_left(key, r, ev)
    tied_long = n_events_before - conc_long - disc_long
    _, per_time = np.unique(time[event], return_counts=True)
    return _PairCounts(
        concordant=conc_short + conc_long,
        discordant=disc_short + disc_long,
        tied_risk=tied_short + tied_long,
        tied_time=int(np.sum(per_time * (per_time - 1) // 2)),
    )


def _survival_inputs(
    time: Any, event: Any, **risks: Any
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validate time (finite, >= 0), event (0/1, not all censored) and risk vectors."""
    t = as_float_vector("time", time)
    negative = np.flatnonzero(t < 0)
    if negative.size:
        raise GlioradInputError(
            f"time has {negative.size} negative value(s) (first at position {negative[0]}: "
            f"{t[negative[0]]:g}); expected times >= 0"
        )
    e = as_binary("event", event)
    arrays = {name: as_float_vector(name, r) for name, r in risks.items()}
    check_same_length(time=t, event=e, **arrays)
    if not e.any():
        raise GlioradInputError(
            f"event is all censored (0 events among {e.size} subjects); the C-index needs at "
            "least one event"
        )
    return t, e, list(arrays.values())


def _c_and_dfbeta(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray
) -> tuple[float, np.ndarray, _PairCounts]:
    """C-index and its per-subject IJ influence, as ``survival:::concordancefit``.

    With ``C, D, T`` the concordant, discordant and risk-tied pair totals, ``N = C + D + T``,
    Somers' ``d = (C - D) / N`` and ``c = (d + 1) / 2``. For subject k with pair counts
    ``c_k, d_k, t_k`` the derivative of d w.r.t. k's case weight is
    ``(c_k - d_k) / N - d (c_k + d_k + t_k) / N`` and the influence on the C-index is half of it
    (``concordance(..., influence = 1)$dfbeta``). ``var(c) = sum_k dfbeta_k^2``.
    """
    counts = _pair_counts(time, event, risk)
    n_conc, n_disc, n_tied = counts.totals
    npair = n_conc + n_disc + n_tied
    if npair == 0:
        raise GlioradInputError(
            "time/event have no comparable pairs (every event is tied on time with all later "
            "subjects); expected at least one subject observed beyond an event time"
        )
    somer = (n_conc - n_disc) / npair
    total_k = counts.concordant + counts.discordant + counts.tied_risk
    dfbeta = ((counts.concordant - counts.discordant) / npair - somer * total_k / npair) / 2.0
    return (somer + 1.0) / 2.0, dfbeta, counts


def concordance_index(time: Any, event: Any, risk: Any) -> float:
    """Harrell's C-index, higher ``risk`` = shorter survival.

    ``C = (concordant + tied_risk / 2) / (concordant + discordant + tied_risk)`` over comparable
    pairs, with R's tie rules (see :func:`concordance_ci`). Equals
    ``survival::concordance(Surv(time, event) ~ risk, reverse = TRUE)$concordance``.

    Parameters
    ----------
    time : array-like of float, >= 0
    event : array-like of 0/1 or bool (1 = event)
    risk : array-like of float

    Returns
    -------
    float
    """
    t, e, (r,) = _survival_inputs(time, event, risk=risk)
    c, _, _ = _c_and_dfbeta(t, e, r)
    return float(c)


def concordance_ci(time: Any, event: Any, risk: Any, alpha: float = 0.05) -> ConcordanceResult:
    """Harrell's C with the infinitesimal-jackknife (IJ) standard error of survival::concordance.

    Comparable pairs (i, j): i had an event and ``time[j] > time[i]``, or the times are equal
    and j is censored (an event is "shorter" than a censoring at the same time). Events tied on
    time are not comparable (``tied_time``, R's ``tied.y`` + ``tied.xy``); risk ties count 1/2.
    The variance is R's ``$var``: the sum of squared per-subject IJ influences (Therneau &
    Atkinson, *The concordance statistic*, survival vignette, section "Variance"), computed in
    O(N log^2 N). The interval is the Wald interval ``C -/+ z_{1-alpha/2} * se`` clipped to
    [0, 1].

    Deviation from R: times are tied only when exactly equal (R first merges times that differ
    by floating-point noise, ``aeqSurv``).

    Parameters
    ----------
    time : array-like of float, >= 0
    event : array-like of 0/1 or bool (1 = event)
    risk : array-like of float (higher = shorter expected survival)
    alpha : float

    Returns
    -------
    ConcordanceResult
    """
    alpha = check_alpha(alpha)
    t, e, (r,) = _survival_inputs(time, event, risk=risk)
    c, dfbeta, counts = _c_and_dfbeta(t, e, r)
    se = float(np.sqrt(np.sum(dfbeta**2)))
    low, high = wald_ci(c, se, alpha)
    n_conc, n_disc, n_tied = counts.totals
    return ConcordanceResult(
        c_index=float(c),
        se=se,
        ci_low=max(low, 0.0),
        ci_high=min(high, 1.0),
        concordant=n_conc,
        discordant=n_disc,
        tied_risk=n_tied,
        tied_time=counts.tied_time,
        n=t.size,
    )


def compare_concordance(
    time: Any, event: Any, risk_a: Any, risk_b: Any, alpha: float = 0.05
) -> ConcordanceComparison:
    """Paired test of two C-indices on the same subjects via their joint IJ covariance.

    Method (survival's ``concordance(fit_a, fit_b)``, internal ``cord.work``): stack the
    per-subject IJ influences of both C-indices (``dfbeta``, see :func:`concordance_ci`) into an
    N x 2 matrix ``D``; ``V = D'D`` is their covariance; the contrast ``L = (1, -1)`` gives
    ``se_diff = sqrt(L V L')``, ``z = (C_a - C_b) / se_diff`` and ``p = 2 Phi(-|z|)``; the CI
    of the difference is ``diff -/+ z_{1-alpha/2} se_diff``. (R's formula interface
    ``concordance(Surv(t, e) ~ a + b)`` refuses two predictors, so the R reference builds ``V``
    from ``concordance(..., influence = 1)$dfbeta`` of the two single fits, which is what
    ``cord.work`` does.) Identical C-indices with zero variance give z = 0, p = 1.

    Parameters
    ----------
    time, event : survival outcome, as in :func:`concordance_ci`
    risk_a, risk_b : array-like of float (higher = shorter survival)
    alpha : float

    Returns
    -------
    ConcordanceComparison
    """
    alpha = check_alpha(alpha)
    t, e, (a, b) = _survival_inputs(time, event, risk_a=risk_a, risk_b=risk_b)
    c_a, dfb_a, _ = _c_and_dfbeta(t, e, a)
    c_b, dfb_b, _ = _c_and_dfbeta(t, e, b)
    diff = float(c_a - c_b)
    se = float(np.sqrt(np.sum((dfb_a - dfb_b) ** 2)))
    return ConcordanceComparison(c_a=float(c_a), c_b=float(c_b),
                                 **paired_difference(diff, se, alpha))
