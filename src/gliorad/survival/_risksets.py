"""Risk-set sums of a fitted Cox model, with Efron's handling of tied event times.

Used for the baseline hazard (R ``survfit.coxph``) and the ``cox.zph`` score test. For a tie
of ``d`` events at time ``t`` Efron's approximation uses ``d`` terms ``k = 0..d-1`` in which the
tied events enter the risk set with weight ``1 - k/d``; each term has denominator
``S0 - (k/d) D0``, weighted mean ``xbar`` and weighted covariance ``V`` of the covariates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _rev_cumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1], axis=0)[::-1]


@dataclass(frozen=True)
class EfronTerms:
    """One row per event (``E`` rows), ordered by time.

    Attributes
    ----------
    event_times : (J,) distinct event times; ``n_deaths`` : (J,) events at each.
    which : (E,) index into ``event_times`` of each Efron term.
    denom : (E,) Efron denominators ``sum_risk r - (k/d) sum_dead r`` with ``r = exp(eta)``.
    x_event : (E, p) covariates (centred) of the events.
    xbar : (E, p) Efron-weighted covariate means.
    var : (E, p, p) Efron-weighted covariate covariances (``None`` unless requested).
    """

    event_times: np.ndarray
    n_deaths: np.ndarray
    which: np.ndarray
    denom: np.ndarray
    x_event: np.ndarray
    xbar: np.ndarray
    var: np.ndarray | None


def efron_terms(
    time: np.ndarray,
    event: np.ndarray,
    X: np.ndarray,
    eta: np.ndarray,
    *,
    with_var: bool = False,
    ties: str = "efron",
) -> EfronTerms:
    """Efron (or Breslow, ``ties="breslow"``) risk-set sums at every event time.

    ``X`` is centred column-wise first (as R's C code does) for numerical stability.
    """
    order = np.argsort(time, kind="stable")
    ts, es = time[order], event[order].astype(bool)
    Xs = X[order] - X.mean(axis=0)
    rs = np.exp(eta[order] - np.max(eta))  # common scale factor cancels in every ratio
    S0 = _rev_cumsum(rs)
    S1 = _rev_cumsum(rs[:, None] * Xs)
    event_times, n_deaths = np.unique(ts[es], return_counts=True)
    first = np.searchsorted(ts, event_times, side="left")
    which = np.searchsorted(event_times, ts[es])
    J, p = event_times.size, Xs.shape[1]
    D0 = np.bincount(which, weights=rs[es], minlength=J)
    D1 = np.zeros((J, p))
    np.add.at(D1, which, rs[es, None] * Xs[es])
    start = np.searchsorted(which, np.arange(J), side="left")
    k = np.arange(which.size) - start[which]
    frac = k / n_deaths[which] if ties == "efron" else np.zeros(which.size)
    denom = S0[first][which] - frac * D0[which]
    xbar = (S1[first][which] - frac[:, None] * D1[which]) / denom[:, None]
    var = None
    if with_var:
        outer = rs[:, None, None] * Xs[:, :, None] * Xs[:, None, :]
        S2 = _rev_cumsum(outer)
        D2 = np.zeros((J, p, p))
        np.add.at(D2, which, outer[es])
        second = (S2[first][which] - frac[:, None, None] * D2[which]) / denom[:, None, None]
        var = second - xbar[:, :, None] * xbar[:, None, :]
    # report denominators on the original exp(eta) scale
    denom = denom * np.exp(np.max(eta))
    return EfronTerms(event_times, n_deaths, which, denom, Xs[es], xbar, var)


def baseline_cumhaz(
    time: np.ndarray, event: np.ndarray, eta: np.ndarray, ties: str = "efron"
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline cumulative hazard at every distinct observed time for risk scores ``exp(eta)``.

    ``ties="efron"``: increments ``sum_k 1 / (S0 - (k/d) D0)`` (R ``survfit.coxph`` for an Efron
    fit, ``ctype = 2``); ``ties="breslow"``: ``d / S0`` (Breslow / Nelson-Aalen type,
    ``ctype = 1``, lifelines' ``baseline_cumulative_hazard_``).
    """
    X = np.zeros((time.size, 1))
    terms = efron_terms(time, event, X, eta, ties=ties)
    increments = np.bincount(terms.which, weights=1.0 / terms.denom, minlength=terms.event_times.size)
    times = np.unique(time)
    cumhaz = np.zeros(times.size)
    cumhaz[np.searchsorted(times, terms.event_times)] = increments
    return times, np.cumsum(cumhaz)
