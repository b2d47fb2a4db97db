"""Nomogram of a fitted Cox model, computed as ``rms::nomogram`` does.

Method (rms 6.x ``nomogram``):

1. Each factor's contribution to the linear predictor is ``b x`` (numeric) or ``b_level``
   (categorical; 0 for the reference level), uncentred. A numeric factor is evaluated at its
   axis values: ``pretty(range(x), 10)`` over the full training range (``datadist`` "full"
   range; this may extend slightly beyond the data), or at its distinct values when it has at
   most ten (``datadist(n.unique=10)``).
2. ``scale = maxscale / max_f(range_f)``, so the factor with the widest contribution range spans
   0-``maxscale`` (100) points; a value scores ``(contribution - min_f) * scale`` points.
3. Total points ``P`` map back to the centred linear predictor
   ``lp = P / scale + intercept`` with ``intercept = sum_f min_f - sum(means * b)``; predicted
   survival at ``t`` is ``S0(t) ** exp(lp)`` with ``S0`` the model's baseline survival at the mean
   covariates (Efron estimator, as ``rms::cph(surv=TRUE)``; see :class:`CoxModel`).
4. Survival axes place each probability ``s`` at ``P = (log(log s / log S0(t)) - intercept) *
   scale`` (rms inverts numerically on a 1000-point grid; here exactly), restricted to the
   linear-predictor range ``pretty(range(training lp), 10)`` as rms does. The total-points axis is
   ``pretty(c(0, max(maxscale, scale * max(lp.at - intercept))), 10)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError
from gliorad.survival._design import Design, Term, as_frame
from gliorad.survival._pretty import r_pretty
from gliorad.survival.cox import CoxModel

DEFAULT_SURVIVAL_TICKS = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)


@dataclass(frozen=True)
class FactorAxis:
    """One factor's axis: tick ``values`` (numbers or level names) and their ``points``."""

    name: str
    label: str
    kind: str
    values: tuple
    points: np.ndarray
    contribution_min: float


@dataclass(frozen=True)
class OutcomeAxis:
    """An axis aligned with total points: ``values`` (probabilities or lp) at ``points``."""

    label: str
    values: np.ndarray
    points: np.ndarray
    time: float | None = None


@dataclass(frozen=True)
class Nomogram:
    """Data of a Cox nomogram (see the module docstring for the method).

    Attributes
    ----------
    factors : tuple of FactorAxis
    total_points : numpy.ndarray
        Tick values of the total-points axis.
    linear_predictor : OutcomeAxis
        Centred linear predictor ticks at their total points.
    survival : tuple of OutcomeAxis
        One per requested time.
    scale : float
        Points per unit of linear predictor (rms ``sc``).
    intercept : float
        Centred linear predictor at 0 total points (rms ``Intercept``).
    maxscale : float
    times : tuple of float
    baseline_survival : numpy.ndarray
        ``S0(t)`` at ``times``.
    """

    factors: tuple[FactorAxis, ...]
    total_points: np.ndarray
    linear_predictor: OutcomeAxis
    survival: tuple[OutcomeAxis, ...]
    scale: float
    intercept: float
    maxscale: float
    times: tuple[float, ...]
    baseline_survival: np.ndarray
    design: Design = field(repr=False)
    coef: pd.Series = field(repr=False)

    def factor(self, name: str) -> FactorAxis:
        """The axis of factor ``name``."""
        for axis in self.factors:
            if axis.name == name:
                return axis
        raise GlioradInputError(f"no factor {name!r} in the nomogram")

    def points(self, X: object) -> pd.DataFrame:
        """Points per factor and ``total_points`` for each row of ``X`` (any factor value,
        not only axis ticks)."""
        D = self.design.transform(as_frame(X))
        out = {}
        for term, axis in zip(self.design.terms, self.factors, strict=True):
            contrib = D[list(term.columns)].to_numpy() @ self.coef[list(term.columns)].to_numpy()
            out[term.name] = (contrib - axis.contribution_min) * self.scale
        table = pd.DataFrame(out, index=D.index)
        table["total_points"] = table.sum(axis=1)
        return table

    def survival_from_points(self, total_points: object) -> np.ndarray:
        """Predicted survival at ``times`` for total points; shape ``(n, n_times)``."""
        p = np.atleast_1d(np.asarray(total_points, dtype=float))
        lp = p / self.scale + self.intercept
        return self.baseline_survival[None, :] ** np.exp(lp)[:, None]

    def score(self, X: object) -> pd.DataFrame:
        """Points, total points, linear predictor and predicted survival for patients.

        Returns
        -------
        pandas.DataFrame
            Per-factor points, ``total_points``, ``lp`` (centred) and ``surv_<t>`` columns.
        """
        table = self.points(X)
        total = table["total_points"].to_numpy()
        table["lp"] = total / self.scale + self.intercept
        surv = self.survival_from_points(total)
        for j, t in enumerate(self.times):
            table[f"surv_{t:g}"] = surv[:, j]
        return table


def _axis_values(term: Term, values: Mapping[str, Sequence], nint: int) -> tuple:
    if term.name in values:
        chosen = tuple(values[term.name])
        if term.kind == "categorical":
            unknown = [v for v in chosen if v not in term.levels]
            if unknown:
                raise GlioradInputError(f"unknown level(s) {unknown} for factor {term.name!r}")
        return chosen
    if term.kind == "categorical":
        return term.levels
    if term.levels:  # <= 10 distinct values: rms uses them as they are
        return term.levels
    return tuple(r_pretty(term.low, term.high, nint).tolist())


def _contributions(term: Term, ticks: tuple, coef: pd.Series) -> np.ndarray:
    if term.kind == "numeric":
        return float(coef[term.columns[0]]) * np.asarray(ticks, dtype=float)
    by_level = {term.reference: 0.0}
    by_level.update({lv: float(coef[c]) for lv, c in zip(term.levels[1:], term.columns, strict=True)})
    return np.array([by_level[v] for v in ticks])


def build_nomogram(
    model: CoxModel,
    times: Sequence[float] = (365.0, 1095.0, 1825.0),
    *,
    maxscale: float = 100.0,
    nint: int = 10,
    values: Mapping[str, Sequence] | None = None,
    survival_ticks: Sequence[float] = DEFAULT_SURVIVAL_TICKS,
    labels: Mapping[str, str] | None = None,
    time_label: str = "{t:g}-day survival",
) -> Nomogram:
    """Build the nomogram of a fitted :class:`CoxModel` (``rms::nomogram`` method).

    Parameters
    ----------
    model : CoxModel
        Fitted model (its training ranges set the numeric axes).
    times : sequence of float
        Times for the survival axes (e.g. 1, 3 and 5 years in days).
    maxscale : float
        Points of the widest factor (rms ``maxscale``, default 100).
    nint : int
        Number of intervals for ``pretty`` numeric axes (rms ``nint``).
    values : dict, optional
        ``{factor: axis values}`` overriding the default axis ticks (this changes the point
        scale only if the new ticks widen a factor's range, exactly as in rms).
    survival_ticks : sequence of float
        Probabilities to mark on each survival axis (rms ``fun.at``).
    labels : dict, optional
        Display names of factors.
    time_label : str
        Format of survival-axis labels; ``{t}`` is the time.

    Returns
    -------
    Nomogram
    """
    check_is_fitted(model)
    values = dict(values or {})
    labels = dict(labels or {})
    times = tuple(float(t) for t in times)
    if not times:
        raise GlioradInputError("give at least one survival time")
    late = [t for t in times if t > model.max_time_]
    if late:
        raise GlioradInputError(
            f"survival time(s) {late} are beyond the last follow-up ({model.max_time_:g}); "
            f"choose times <= {model.max_time_:g}"
        )
    coef = model.coef_
    ticks, contribs = [], []
    for term in model.design_.terms:
        tk = _axis_values(term, values, nint)
        ticks.append(tk)
        contribs.append(_contributions(term, tk, coef))
    mins = np.array([c.min() for c in contribs])
    ranges = np.array([c.max() - c.min() for c in contribs])
    if ranges.max() <= 0:
        raise GlioradInputError("all factors have zero effect; nothing to draw")
    scale = maxscale / ranges.max()
    center = float(model.means_.to_numpy() @ coef.to_numpy())
    intercept = float(mins.sum() - center)
    factors = tuple(
        FactorAxis(
            name=term.name,
            label=labels.get(term.name, term.name),
            kind=term.kind,
            values=tk,
            points=(c - m) * scale,
            contribution_min=float(m),
        )
        for term, tk, c, m in zip(model.design_.terms, ticks, contribs, mins, strict=True)
    )
    lp_train = model.linear_predictors_
    lp_at = r_pretty(float(lp_train.min()), float(lp_train.max()), nint)
    sum_max = maxscale if len(factors) == 1 else max(maxscale, scale * (lp_at.max() - intercept))
    total_axis = r_pretty(0.0, float(sum_max), nint)
    lp_axis = OutcomeAxis("Linear predictor", lp_at, (lp_at - intercept) * scale)
    s0 = model.baseline_survival_at(times)
    survival_axes = []
    probs = np.asarray(survival_ticks, dtype=float)
    for t, s0_t in zip(times, s0, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.log(np.log(probs) / np.log(s0_t))
        ok = np.isfinite(lp) & (lp >= lp_at.min()) & (lp <= lp_at.max())
        survival_axes.append(
            OutcomeAxis(time_label.format(t=t), probs[ok], (lp[ok] - intercept) * scale, time=t)
        )
    return Nomogram(
        factors=factors,
        total_points=total_axis,
        linear_predictor=lp_axis,
        survival=tuple(survival_axes),
        scale=float(scale),
        intercept=intercept,
        maxscale=float(maxscale),
        times=times,
        baseline_survival=s0,
        design=model.design_,
        coef=coef,
    )
