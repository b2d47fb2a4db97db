"""Proportional-hazards check: R 4.x ``survival::cox.zph`` score test.

R >= 3.0 of ``survival`` (so R 4.2) replaced the old regression-on-scaled-Schoenfeld-residuals
test by a score test: for covariates ``x`` and a time transform ``g(t)`` (centred at its mean
over events), the model ``beta(t) = beta + theta g(t)`` is tested for ``theta = 0`` at the
fitted ``beta``. With Efron-weighted risk-set means ``xbar`` and covariances ``V`` at each event,

    U_theta = sum_events g(t_i) (x_i - xbar(t_i))
    I = sum_events [[V, g V], [g V, g^2 V]]          (2p x 2p)

and the statistic for a term with columns ``J`` is ``u' I[K, K]^-1 u`` with
``K = (all beta columns, theta_J)`` and ``u = (0, U_theta[J])`` (``df = |J|``); ``GLOBAL`` uses
all ``theta``. This is a re-implementation of ``survival``'s ``zph1.c`` and reproduces
``cox.zph(fit, transform=...)$table`` to ~1e-8 given the same coefficients. lifelines'
``proportional_hazard_test`` implements the older (pre-3.0) test and gives different numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import rankdata
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival._risksets import efron_terms
from gliorad.survival._validate import check_lengths, check_survival
from gliorad.survival.cox import CoxModel

TRANSFORMS = ("km", "identity", "rank", "log")


def _time_transform(time: np.ndarray, event: np.ndarray, transform: str) -> np.ndarray:
    if transform == "identity":
        return time
    if transform == "log":
        return np.log(time)
    if transform == "rank":
        return rankdata(time)
    # "km": 1 - left-continuous Kaplan-Meier S(t-) from all the fitted data
    times, inverse = np.unique(time, return_inverse=True)
    d = np.bincount(inverse, weights=event, minlength=times.size)
    n = np.bincount(inverse, minlength=times.size)[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - d / n)
    left = np.concatenate(([1.0], surv))[inverse]  # S just before each observation's time
    return 1.0 - left


def cox_zph(
    model: CoxModel,
    X: object,
    time: object,
    event: object,
    transform: str = "km",
    terms: bool = True,
) -> pd.DataFrame:
    """Test proportional hazards of a fitted :class:`CoxModel` like R's ``cox.zph``.

    Parameters
    ----------
    model : CoxModel
        Fitted on ``X, time, event``.
    X, time, event
        The data the model was fitted on.
    transform : {"km", "identity", "rank", "log"}
        Time transform ``g``; R's default ``"km"`` is ``1 - S_KM(t-)``.
    terms : bool
        If True (R's default) test each factor jointly (a k-level categorical factor has
        ``df = k - 1``); if False test every design column separately.

    Returns
    -------
    pandas.DataFrame
        Index: factor names (or design columns) and ``"GLOBAL"``; columns ``chisq, df, p``.
    """
    check_is_fitted(model)
    check_option("transform", transform, TRANSFORMS)
    t, e = check_survival(time, event)
    D = model.design_matrix(X)
    check_lengths(X=D, time=t)
    if t.size != model.n_samples_ or int(e.sum()) != model.n_events_:
        raise GlioradInputError(
            f"cox_zph needs the data the model was fitted on ({model.n_samples_} patients, "
            f"{model.n_events_} events); got {t.size} patients, {int(e.sum())} events"
        )
    cols = list(model.coef_.index)
    Xd = D[cols].to_numpy(dtype=float)
    eta = model._lp(D)
    g = _time_transform(t, e, transform)
    g = g - g[e == 1].mean()
    ef = efron_terms(t, e, Xd, eta, with_var=True)
    order = np.argsort(t, kind="stable")
    g_events = g[order][e[order] == 1]
    p = len(cols)
    u_theta = (g_events[:, None] * (ef.x_event - ef.xbar)).sum(axis=0)
    info = np.zeros((2 * p, 2 * p))
    info[:p, :p] = ef.var.sum(axis=0)
    info[:p, p:] = info[p:, :p] = np.einsum("e,eij->ij", g_events, ef.var)
    info[p:, p:] = np.einsum("e,eij->ij", g_events**2, ef.var)

    if terms:
        groups = {term.name: [cols.index(c) for c in term.columns] for term in model.design_.terms}
    else:
        groups = {c: [i] for i, c in enumerate(cols)}
    rows = {}
    for name, jj in groups.items():
        kk = list(range(p)) + [p + j for j in jj]
        u = np.concatenate([np.zeros(p), u_theta[jj]])
        rows[name] = (float(u @ np.linalg.solve(info[np.ix_(kk, kk)], u)), len(jj))
    u = np.concatenate([np.zeros(p), u_theta])
    rows["GLOBAL"] = (float(u @ np.linalg.solve(info, u)), p)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["chisq", "df"])
    table["p"] = stats.chi2.sf(table["chisq"], table["df"])
    return table
