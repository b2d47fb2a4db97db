"""Calibration of predicted survival at a time ``t``, as ``rms::calibrate(cmethod="KM")``.

Method (rms 6.x ``calibrate.cph`` + ``predab.resample``, ``method="boot"``):

1. Fit the model on all patients; ``p_i`` = predicted survival at ``t``.
2. Cut points: ``unique(quantile(c(0, 1, p), seq(0, 1, length = g + 1)))`` (R type-7
   quantiles) with ``g = n_groups`` or ``floor(n / patients_per_group)`` (rms ``m``). A patient
   belongs to group ``k`` when ``cut_k <= p < cut_{k+1}`` (the last group is closed), as
   ``Hmisc::cut2``.
3. Per group (``rms::groupkm``): mean predicted survival, Kaplan-Meier survival at ``t``
   (``observed``) and its standard error on the log scale (survfit's ``std.err``). A group with
   fewer than 2 patients, or whose follow-up ends before ``t`` while ``S > 0``, gives NaN.
   The apparent error is ``observed - predicted``.
4. Bootstrap ``B`` times: refit on a resample; compute the group errors (with the *original*
   cut points, applied to the refitted model's predictions) on the resample (``training``)
   and on the original patients (``test``). Resamples with fewer than 5 events, failed fits,
   or NaN errors (per group) are skipped, as rms does.
   ``optimism = mean(training) - mean(test)`` per group and
   ``observed_corrected = observed - optimism`` (rms ``KM.corrected``).

Random resamples cannot reproduce R's stream; pass ``bootstrap_indices`` to replay given
resamples (the reference tests replay R's ``sample()`` draws and match ``KM.corrected``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone

from gliorad.errors import GlioradInputError
from gliorad.survival._design import as_frame
from gliorad.survival._validate import check_lengths, check_survival

MIN_BOOT_EVENTS = 5  # rms calibrate.cph skips resamples with < 5 events


@dataclass(frozen=True)
class CalibrationResult:
    """Result of :func:`calibrate_survival`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per risk group: ``group, n, events, predicted, observed, std_err,
        observed_lower, observed_upper, optimism, observed_corrected, n_boot``.
        ``std_err`` is on the log-survival scale; ``observed_lower/upper`` are the KM 95 %
        log-scale limits; ``n_boot`` counts the resamples used for that group.
    t : float
        Calibration time.
    cuts : numpy.ndarray
        Cut points on predicted survival.
    predicted : numpy.ndarray
        Apparent predicted survival at ``t`` for every patient.
    n_boot : int
        Resamples requested.
    """

    table: pd.DataFrame
    t: float
    cuts: np.ndarray
    predicted: np.ndarray = field(repr=False)
    n_boot: int = 0


def _km_at(time: np.ndarray, event: np.ndarray, t: float) -> tuple[float, float]:
    """Kaplan-Meier S(t) and log-scale Greenwood SE (``groupkm``'s rule for NaN)."""
    times, inverse = np.unique(time, return_inverse=True)
    d = np.bincount(inverse, weights=event, minlength=times.size)
    n = np.bincount(inverse, minlength=times.size)[::-1].cumsum()[::-1].astype(float)
    surv = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.cumsum(np.where(d > 0, d / (n * (n - d)), 0.0))
    k = np.searchsorted(times, t + 1e-6, side="right") - 1
    if k < 0:
        return 1.0, 0.0
    if t > times[-1] + 1e-6 and surv[-1] > 0:
        return float("nan"), float("nan")
    return float(surv[k]), float(np.sqrt(var[k]))


def _assign(pred: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(cuts, pred, side="right") - 1, 0, max(cuts.size - 2, 0))


def _group_km(
    pred: np.ndarray, time: np.ndarray, event: np.ndarray, cuts: np.ndarray, t: float
) -> pd.DataFrame:
    """``rms::groupkm(pred, Surv(time, event), u=t, cuts=cuts)``."""
    n_groups = max(cuts.size - 1, 1)
    group = _assign(pred, cuts)
    rows = []
    for k in range(n_groups):
        s = group == k
        nobs = int(s.sum())
        mean_pred = float(pred[s].mean()) if nobs else float("nan")
        if nobs < 2:
            rows.append((k + 1, 0, 0, mean_pred, float("nan"), float("nan")))
            continue
        km, se = _km_at(time[s], event[s], t)
        rows.append((k + 1, nobs, int(event[s].sum()), mean_pred, km, se))
    return pd.DataFrame(rows, columns=["group", "n", "events", "predicted", "observed", "std_err"])


def _new_estimator(model: object) -> object:
    """A fresh, unfitted estimator: call a class / factory, clone an estimator instance."""
    if isinstance(model, type) or (callable(model) and not hasattr(model, "fit")):
        return model()
    if hasattr(model, "get_params"):
        return clone(model)
    return copy.deepcopy(model)


def _predict_at(estimator: object, X: pd.DataFrame, t: float) -> np.ndarray:
    return np.asarray(estimator.predict_survival(X, [t]), dtype=float)[:, 0]


def _check_time_point(time: np.ndarray, t: float, min_at_risk: int, unit: str) -> float:
    if not np.isfinite(t) or t <= 0:
        raise GlioradInputError(f"calibration time must be a positive number; got {t!r}")
    last = float(time.max())
    if t > last:
        raise GlioradInputError(
            f"calibration time {t:g} {unit} is beyond the last follow-up ({last:g} {unit}); "
            f"choose t <= {last:g}"
        )
    at_risk = int((time >= t).sum())
    if at_risk < min_at_risk:
        raise GlioradInputError(
            f"only {at_risk} patient(s) are still at risk at the calibration time {t:g} {unit}; "
            f"need at least {min_at_risk}: choose an earlier t"
        )
    return float(t)


def calibrate_survival(
    model: object | Callable[[], object],
    X: object,
    time: object,
    event: object,
    t: float,
    *,
    n_groups: int | None = None,
    patients_per_group: int | None = None,
    n_boot: int = 40,
    seed: int | None = None,
    bootstrap_indices: np.ndarray | None = None,
    min_at_risk: int = 5,
    time_unit: str = "days",
) -> CalibrationResult:
    """Predicted versus Kaplan-Meier observed survival at ``t`` in risk groups, with the
    bootstrap optimism correction of ``rms::calibrate(fit, cmethod="KM", u=t, m=..., B=...)``.

    Parameters
    ----------
    model : estimator, class or callable
        An estimator with ``fit(X, time, event)`` and ``predict_survival(X, times)`` (e.g.
        :class:`CoxModel`, fitted or not: it is cloned with ``sklearn.base.clone`` and refitted
        on ``X`` and on every resample), or a class / zero-argument factory returning a fresh
        one.
    X, time, event
        Patients' factors and survival data.
    t : float
        Calibration time (same unit as ``time``).
    n_groups, patients_per_group : int, optional
        Number of risk groups, or rms' ``m`` (``g = floor(n / m)``). Give at most one; the
        default is 4 groups.
    n_boot : int
        Bootstrap resamples (rms ``B``); 0 skips the correction (``optimism`` and
        ``observed_corrected`` are NaN).
    seed : int, optional
        Seed of the resampling generator.
    bootstrap_indices : array (n_boot, n), optional
        0-based resample indices to use instead of random draws.
    min_at_risk : int
        Minimum number of patients still at risk at ``t``.
    time_unit : str
        Unit named in error messages.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    GlioradInputError
        ``t`` beyond the last follow-up or too few patients at risk at ``t``; bad inputs.
    """
    frame = as_frame(X).reset_index(drop=True)
    tt, ee = check_survival(time, event)
    n = check_lengths(X=frame, time=tt)
    t = _check_time_point(tt, float(t), min_at_risk, time_unit)
    if n_groups is not None and patients_per_group is not None:
        raise GlioradInputError("give n_groups or patients_per_group, not both")
    if patients_per_group is not None:
        g = max(1, n // int(patients_per_group))
    else:
        g = 4 if n_groups is None else int(n_groups)
    if g < 1:
        raise GlioradInputError(f"n_groups must be >= 1; got {g}")
    fitted = _new_estimator(model).fit(frame, tt, ee)
    pred = _predict_at(fitted, frame, t)
    cuts = np.unique(np.quantile(np.concatenate(([0.0, 1.0], pred)), np.linspace(0, 1, g + 1)))
    table = _group_km(pred, tt, ee, cuts, t)
    z = stats.norm.ppf(0.975)
    table["observed_lower"] = table["observed"] * np.exp(-z * table["std_err"])
    table["observed_upper"] = np.minimum(table["observed"] * np.exp(z * table["std_err"]), 1.0)

    if bootstrap_indices is not None:
        indices = np.asarray(bootstrap_indices, dtype=int)
        if indices.ndim != 2 or indices.shape[1] != n or indices.min() < 0 or indices.max() >= n:
            raise GlioradInputError(f"bootstrap_indices must be an (n_boot, {n}) array of 0..{n - 1}")
    else:
        rng = np.random.default_rng(seed)
        indices = rng.integers(0, n, size=(int(n_boot), n))
    optimism, used = _bootstrap_optimism(model, frame, tt, ee, t, cuts, indices)
    table["optimism"] = optimism
    table["observed_corrected"] = table["observed"] - optimism
    table["n_boot"] = used
    return CalibrationResult(table=table, t=t, cuts=cuts, predicted=pred, n_boot=len(indices))


def _bootstrap_optimism(
    model: object,
    frame: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    t: float,
    cuts: np.ndarray,
    indices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    n_groups = max(cuts.size - 1, 1)
    train_sum = np.zeros(n_groups)
    test_sum = np.zeros(n_groups)
    used = np.zeros(n_groups, dtype=int)
    if len(indices) == 0:
        return np.full(n_groups, np.nan), used
    for idx in indices:
        if event[idx].sum() < MIN_BOOT_EVENTS:
            continue
        Xb = frame.iloc[idx].reset_index(drop=True)
        try:
            est = _new_estimator(model).fit(Xb, time[idx], event[idx])
            pred_train = _predict_at(est, Xb, t)
            pred_test = _predict_at(est, frame, t)
        except (GlioradInputError, np.linalg.LinAlgError, ArithmeticError):
            continue  # e.g. a resample without some level of a factor
        if np.isnan(pred_train).any() or np.isnan(pred_test).any():
            continue
        train = _group_km(pred_train, time[idx], event[idx], cuts, t)
        test = _group_km(pred_test, time, event, cuts, t)
        err_train = (train["observed"] - train["predicted"]).to_numpy()
        err_test = (test["observed"] - test["predicted"]).to_numpy()
        ok = ~np.isnan(err_train + err_test)
        train_sum[ok] += err_train[ok]
        test_sum[ok] += err_test[ok]
        used += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        optimism = (train_sum - test_sum) / used
    if used.sum() == 0:
        raise GlioradInputError("every bootstrap resample failed; calibration cannot be corrected")
    return optimism, used
