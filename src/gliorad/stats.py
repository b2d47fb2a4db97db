"""Statistics core that agrees with R.

Every function here is checked against R 4.2 (``tests/reference/make_stats_reference.R``):

=========================  ============================================================
Python                     R reference
=========================  ============================================================
:func:`roc_auc_ci`         ``pROC::ci.auc(roc(y, s, direction = "<", levels = c(0, 1)),
                           method = "delong")``
:func:`delong_test`        ``pROC::roc.test(r1, r2, method = "delong", paired = TRUE)``
:func:`threshold_metrics`  ``pROC::coords(r, x = t, input = "threshold")``
:func:`concordance_index`  ``survival::concordance(Surv(t, e) ~ risk, reverse = TRUE)``
:func:`concordance_ci`     same, ``$var`` (infinitesimal jackknife)
:func:`compare_concordance`  joint IJ covariance of two ``concordance`` fits
:func:`icc`                ``psych::ICC(cbind(a, b), lmer = FALSE)``
:func:`cohort_table`       ``wilcox.test(exact = FALSE, correct = TRUE)``, ``chisq.test``,
                           ``fisher.test``
=========================  ============================================================

Conventions
-----------
* Binary labels are 0/1 (or bool); **a higher score means the positive class** (label 1).
  This is pROC's ``direction = "<"`` (controls < cases); pROC's automatic direction choice is
  never used, so an AUC below 0.5 is reported as such rather than flipped.
* Survival: ``time`` >= 0, ``event`` 1 = event (death/progression), 0 = censored, and **a higher
  risk means a shorter survival** (R's ``reverse = TRUE``).
* Bad input raises :class:`gliorad.errors.GlioradInputError` naming the argument, the bad
  value and what was expected. No function returns a silent NaN: where a quantity is undefined
  the result says why (``notes`` / ``note``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import gammaln

from gliorad.errors import GlioradInputError, check_option

__all__ = [
    "AucResult",
    "BootstrapResult",
    "ConcordanceComparison",
    "ConcordanceResult",
    "DelongTestResult",
    "IccResult",
    "ThresholdMetrics",
    "bootstrap_ci",
    "cohort_table",
    "compare_concordance",
    "concordance_ci",
    "concordance_index",
    "delong_test",
    "fisher_exact_rx2",
    "icc",
    "icc_single",
    "roc_auc",
    "roc_auc_ci",
    "threshold_metrics",
]

ICC_KINDS = ("ICC(2,1)", "ICC(3,1)")
MSE_NOISE = 1e-13  # relative size below which an ICC residual mean square counts as 0


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _check_alpha(alpha: float) -> float:
    """Return ``alpha`` as float if 0 < alpha < 1, else raise."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise GlioradInputError(f"alpha {alpha!r} is not a number; expected 0 < alpha < 1") from None
    if not 0.0 < value < 1.0:
        raise GlioradInputError(f"alpha {alpha!r} is outside (0, 1); expected e.g. 0.05")
    return value


def _as_float_vector(name: str, values: Any) -> np.ndarray:
    """Convert a list / numpy array / pandas Series to a finite 1-D float array, else raise."""
    try:
        if isinstance(values, pd.Series | pd.Index):
            arr = values.to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise GlioradInputError(
            f"{name} is not numeric (got {type(values).__name__}); expected numbers"
        ) from None
    if arr.ndim != 1:
        raise GlioradInputError(f"{name} has shape {arr.shape}; expected a one-dimensional array")
    if arr.size == 0:
        raise GlioradInputError(f"{name} is empty; expected at least one value")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise GlioradInputError(
            f"{name} has {bad.size} non-finite value(s) (first at position {bad[0]}: "
            f"{arr[bad[0]]}); expected finite numbers"
        )
    return arr


def _as_binary(name: str, values: Any) -> np.ndarray:
    """Convert 0/1 or bool labels to a bool array, else raise."""
    arr = _as_float_vector(name, values)
    bad = np.flatnonzero((arr != 0) & (arr != 1))
    if bad.size:
        raise GlioradInputError(
            f"{name} has value {arr[bad[0]]:g} at position {bad[0]}; expected only 0/1 "
            "(or False/True)"
        )
    return arr == 1


def _check_same_length(**arrays: np.ndarray) -> int:
    """Raise unless all arrays have the same length; return that length."""
    names = list(arrays)
    n = len(arrays[names[0]])
    for other in names[1:]:
        if len(arrays[other]) != n:
            raise GlioradInputError(
                f"{names[0]} has {n} values but {other} has {len(arrays[other])}; "
                "expected the same length"
            )
    return n


def _labels_and_scores(y: Any, **scores: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validate binary labels and one or more score vectors of the same length."""
    labels = _as_binary("y", y)
    arrays = {name: _as_float_vector(name, s) for name, s in scores.items()}
    _check_same_length(y=labels, **arrays)
    return labels, list(arrays.values())


def _require_both_classes(labels: np.ndarray, minimum: int) -> tuple[int, int]:
    """Raise unless each class has at least ``minimum`` members; return (n_pos, n_neg)."""
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        only = 1 if n_neg == 0 else 0
        raise GlioradInputError(
            f"y has a single class (all {labels.size} labels are {only}); expected both 0 and 1"
        )
    if min(n_pos, n_neg) < minimum:
        raise GlioradInputError(
            f"y has {n_pos} positive(s) and {n_neg} negative(s); the DeLong variance needs at "
            f"least {minimum} of each"
        )
    return n_pos, n_neg


def _wald_ci(estimate: float, se: float, alpha: float) -> tuple[float, float]:
    """Normal-approximation interval ``estimate -/+ z_{1-alpha/2} * se``."""
    z = sps.norm.ppf(1.0 - alpha / 2.0)
    return float(estimate - z * se), float(estimate + z * se)


def _z_and_p(diff: float, se: float) -> tuple[float, float]:
    """Two-sided Wald z-test; 0/0 (identical estimates, zero variance) gives z = 0, p = 1."""
    if se == 0.0:
        z = 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    else:
        z = diff / se
    return z, float(2.0 * sps.norm.sf(abs(z)))


# ----------------------------------------------------------------------------------------------
# ROC AUC with DeLong variance
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AucResult:
    """ROC AUC with its DeLong standard error and Wald confidence interval."""

    auc: float
    se: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class DelongTestResult:
    """Paired DeLong test of two ROC AUCs measured on the same subjects (``diff = a - b``)."""

    auc_a: float
    auc_b: float
    diff: float
    se_diff: float
    ci_low: float
    ci_high: float
    z: float
    p: float
    n_pos: int
    n_neg: int


def _delong_placements(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placement values for ``k`` score vectors at once (Sun & Xu 2014).

    With ``m`` positives X and ``n`` negatives Y, and midranks (average ranks) ``T_Z`` in the
    pooled sample, ``T_X`` among positives and ``T_Y`` among negatives:

    * placement of positive i: ``V10_i = (T_Z(X_i) - T_X(X_i)) / n``
      (share of negatives below X_i, ties counting 1/2),
    * placement of negative j: ``V01_j = 1 - (T_Z(Y_j) - T_Y(Y_j)) / m``,
    * ``AUC = mean(V10) = (sum T_Z(X) / m - (m + 1) / 2) / n``.

    Parameters
    ----------
    labels : bool array, shape (N,)
    scores : float array, shape (k, N)

    Returns
    -------
    auc : shape (k,)
    v10 : shape (k, m), placements of the positives (pROC's ``X``)
    v01 : shape (k, n), placements of the negatives (pROC's ``Y``)

    References
    ----------
    Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under
    correlated receiver operating characteristic curves. IEEE Signal Process Lett
    2014;21(11):1389-93.
    """
    pos = scores[:, labels]
    neg = scores[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    t_z = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    t_x = sps.rankdata(pos, axis=1)
    t_y = sps.rankdata(neg, axis=1)
    v10 = (t_z[:, :m] - t_x) / n
    v01 = 1.0 - (t_z[:, m:] - t_y) / m
    auc = (t_z[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    return auc, v10, v01


def _delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k).

    ``S = S10 / m + S01 / n`` with ``S10 = sum_i (V10_i - AUC)(V10_i - AUC)' / (m - 1)`` and the
    same for ``S01`` (DeLong, DeLong & Clarke-Pearson 1988, eq. 4-5), centred at the AUC as in
    pROC's ``delong.paired.calculations``.
    """
    auc, v10, v01 = _delong_placements(labels, scores)
    m, n = v10.shape[1], v01.shape[1]
    d10 = v10 - auc[:, None]
    d01 = v01 - auc[:, None]
    cov = (d10 @ d10.T) / ((m - 1) * m) + (d01 @ d01.T) / ((n - 1) * n)
    return auc, cov


def roc_auc(y: Any, score: Any) -> float:
    """Area under the ROC curve (Mann-Whitney estimate, ties counting 1/2).

    Higher ``score`` = positive class (pROC ``direction = "<"``). Cheap enough to be the
    ``metric`` of :func:`bootstrap_ci`.

    Parameters
    ----------
    y : array-like of 0/1 or bool
    score : array-like of float, same length

    Returns
    -------
    float
        ``P(score_pos > score_neg) + P(score_pos == score_neg) / 2``.
    """
    labels, (s,) = _labels_and_scores(y, score=score)
    _require_both_classes(labels, minimum=1)
    auc, _, _ = _delong_placements(labels, s[None, :])
    return float(auc[0])


def roc_auc_ci(y: Any, score: Any, alpha: float = 0.05) -> AucResult:
    """ROC AUC with DeLong standard error and ``1 - alpha`` confidence interval.

    The variance is DeLong's (DeLong et al. 1988) computed with the O(N log N) midrank
    algorithm of Sun & Xu (2014); the interval is ``AUC -/+ z_{1-alpha/2} * se`` clipped to
    [0, 1], exactly as ``pROC::ci.auc(method = "delong")``.

    Parameters
    ----------
    y : array-like of 0/1 or bool
        Class labels (1 = positive). Needs at least 2 of each class.
    score : array-like of float
        Higher score = more likely positive (pROC ``direction = "<"``).
    alpha : float
        1 - confidence level.

    Returns
    -------
    AucResult

    Raises
    ------
    GlioradInputError
        Mismatched lengths, non-finite values, labels other than 0/1, fewer than 2 per class,
        alpha outside (0, 1).

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics
    1988;44:837-45.
    """
    alpha = _check_alpha(alpha)
    labels, (s,) = _labels_and_scores(y, score=score)
    n_pos, n_neg = _require_both_classes(labels, minimum=2)
    auc, cov = _delong_covariance(labels, s[None, :])
    se = float(np.sqrt(cov[0, 0]))
    low, high = _wald_ci(float(auc[0]), se, alpha)
    return AucResult(
        auc=float(auc[0]),
        se=se,
        ci_low=max(low, 0.0),
        ci_high=min(high, 1.0),
        n_pos=n_pos,
        n_neg=n_neg,
    )


def delong_test(y: Any, score_a: Any, score_b: Any, alpha: float = 0.05) -> DelongTestResult:
    """Paired DeLong test for two ROC curves measured on the same subjects.

    ``z = (AUC_a - AUC_b) / sqrt(L S L')`` with ``L = (1, -1)`` and ``S`` the joint DeLong
    covariance of the two AUCs; ``p = 2 * Phi(-|z|)``; the CI of the difference is
    ``diff -/+ z_{1-alpha/2} * se_diff`` (not clipped). Matches
    ``pROC::roc.test(r_a, r_b, method = "delong", paired = TRUE)`` including its convention
    that identical curves (0/0) give z = 0, p = 1.

    Parameters
    ----------
    y : array-like of 0/1 or bool
    score_a, score_b : array-like of float
        Two scores for the same subjects; higher = positive class.
    alpha : float
        1 - confidence level of the difference's CI.

    Returns
    -------
    DelongTestResult
    """
    alpha = _check_alpha(alpha)
    labels, (a, b) = _labels_and_scores(y, score_a=score_a, score_b=score_b)
    n_pos, n_neg = _require_both_classes(labels, minimum=2)
    auc, cov = _delong_covariance(labels, np.vstack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    z, p = _z_and_p(diff, se)
    low, high = _wald_ci(diff, se, alpha)
    return DelongTestResult(
        auc_a=float(auc[0]),
        auc_b=float(auc[1]),
        diff=diff,
        se_diff=se,
        ci_low=low,
        ci_high=high,
        z=z,
        p=p,
        n_pos=n_pos,
        n_neg=n_neg,
    )


# ----------------------------------------------------------------------------------------------
# Threshold metrics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion counts and derived rates at one threshold.

    A rate whose denominator is zero (e.g. precision with no predicted positives) is NaN and
    ``notes`` says which and why.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    npv: float
    f1: float
    notes: tuple[str, ...] = ()

    @property
    def recall(self) -> float:
        """Alias of :attr:`sensitivity`."""
        return self.sensitivity

    @property
    def ppv(self) -> float:
        """Alias of :attr:`precision`."""
        return self.precision


def _ratio(name: str, num: float, den: float, why: str, notes: list[str]) -> float:
    """``num / den``; NaN plus an explanatory note when ``den`` is zero."""
    if den == 0:
        notes.append(f"{name} undefined: {why}")
        return float("nan")
    return float(num / den)


def threshold_metrics(y: Any, score: Any, threshold: float = 0.5) -> ThresholdMetrics:
    """Accuracy, sensitivity (recall), specificity, precision (PPV), NPV and F1 at a threshold.

    A subject is predicted positive when ``score >= threshold`` (higher score = positive class).

    Parameters
    ----------
    y : array-like of 0/1 or bool
    score : array-like of float
    threshold : float

    Returns
    -------
    ThresholdMetrics
        ``sensitivity = TP/(TP+FN)``, ``specificity = TN/(TN+FP)``, ``precision = TP/(TP+FP)``,
        ``npv = TN/(TN+FN)``, ``f1 = 2 TP / (2 TP + FP + FN)``, ``accuracy = (TP+TN)/N``.
    """
    labels, (s,) = _labels_and_scores(y, score=score)
    threshold = float(_as_float_vector("threshold", [threshold])[0])
    pred = s >= threshold
    tp = int(np.sum(pred & labels))
    fp = int(np.sum(pred & ~labels))
    tn = int(np.sum(~pred & ~labels))
    fn = int(np.sum(~pred & labels))
    notes: list[str] = []
    return ThresholdMetrics(
        threshold=threshold,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        accuracy=(tp + tn) / labels.size,
        sensitivity=_ratio("sensitivity", tp, tp + fn, "no positive labels", notes),
        specificity=_ratio("specificity", tn, tn + fp, "no negative labels", notes),
        precision=_ratio("precision", tp, tp + fp, "no predicted positives", notes),
        npv=_ratio("npv", tn, tn + fn, "no predicted negatives", notes),
        f1=_ratio("f1", 2 * tp, 2 * tp + fp + fn, "no positives, predicted or true", notes),
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap interval; ``distribution`` holds the ``n_boot`` resampled values."""

    estimate: float
    ci_low: float
    ci_high: float
    distribution: np.ndarray
    n_boot: int
    alpha: float
    seed: int | None
    stratified: bool
    method: str = "percentile"

    @property
    def ci(self) -> tuple[float, float]:
        """``(ci_low, ci_high)``."""
        return (self.ci_low, self.ci_high)


def _bootstrap_indices(
    n: int, n_boot: int, rng: np.random.Generator, strata: np.ndarray | None
) -> np.ndarray:
    """Index matrix (n_boot, n) of resamples with replacement, drawn in one vectorised call.

    With ``strata`` every resample keeps each stratum's size (sampling within strata).
    """
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    blocks = []
    for level in np.unique(strata):
        members = np.flatnonzero(strata == level)
        blocks.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(blocks, axis=1)


def _as_resamplable(arrays: Sequence[Any]) -> list[np.ndarray]:
    """Convert the metric's arrays to numpy (indexable along axis 0) with equal lengths."""
    if not arrays:
        raise GlioradInputError("bootstrap_ci got no arrays; expected e.g. bootstrap_ci(f, y, s)")
    out = [a.to_numpy() if isinstance(a, pd.Series | pd.DataFrame) else np.asarray(a)
           for a in arrays]
    for i, a in enumerate(out):
        if a.ndim == 0:
            raise GlioradInputError(f"arrays[{i}] is a scalar; expected an array of samples")
    _check_same_length(**{f"arrays[{i}]": a for i, a in enumerate(out)})
    return out


def _evaluate(metric: Callable[..., float], arrays: Sequence[np.ndarray], what: str) -> float:
    """Call ``metric`` and require a finite float; explain failures (never a silent NaN)."""
    try:
        value = float(metric(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
        raise GlioradInputError(f"metric failed on {what}: {exc}") from exc
    if not np.isfinite(value):
        raise GlioradInputError(f"metric returned {value} on {what}; expected a finite number")
    return value


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    stratify: Any = None,
) -> BootstrapResult:
    """Seeded (optionally stratified) percentile bootstrap CI of any metric.

    Draws ``n_boot`` resamples of the subjects (rows) with replacement, evaluates
    ``metric(*resampled_arrays)`` on each and reports the percentile interval
    ``[q(alpha/2), q(1 - alpha/2)]`` of the bootstrap distribution (Efron & Tibshirani 1993,
    ch. 13; quantiles by linear interpolation, R's ``quantile(type = 7)``). No bias correction
    (this is not BCa).

    Parameters
    ----------
    metric : callable
        ``metric(*arrays) -> float``, e.g. :func:`roc_auc`.
    *arrays : array-like
        Arrays resampled together along their first axis (same length).
    n_boot : int
        Number of resamples (>= 1).
    alpha : float
        1 - confidence level.
    seed : int or None
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same result.
    stratify : array-like or None
        Labels (e.g. the class labels ``y``) to resample within, so every resample keeps each
        class's size. Use it for metrics that need both classes (AUC, sensitivity).

    Returns
    -------
    BootstrapResult

    Raises
    ------
    GlioradInputError
        Bad arguments, or ``metric`` failing (raising ``ValueError``) or returning a non-finite
        value on the data or on a resample. A resample missing a class is not turned into NaN:
        the error asks for ``stratify=y``.
    """
    alpha = _check_alpha(alpha)
    if int(n_boot) != n_boot or n_boot < 1:
        raise GlioradInputError(f"n_boot {n_boot!r} is not a positive integer")
    data = _as_resamplable(arrays)
    n = len(data[0])
    strata = None
    if stratify is not None:
        strata = np.asarray(stratify.to_numpy() if isinstance(stratify, pd.Series) else stratify)
        _check_same_length(**{"arrays[0]": data[0], "stratify": strata})
    estimate = _evaluate(metric, data, "the full data")
    index = _bootstrap_indices(n, int(n_boot), np.random.default_rng(seed), strata)
    hint = "" if strata is not None else " (pass stratify=<class labels> to keep every class)"
    dist = np.array(
        [_evaluate(metric, [a[idx] for a in data], f"bootstrap resample {b}{hint}")
         for b, idx in enumerate(index)]
    )
    low, high = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapResult(
        estimate=estimate,
        ci_low=float(low),
        ci_high=float(high),
        distribution=dist,
        n_boot=int(n_boot),
        alpha=alpha,
        seed=seed,
        stratified=strata is not None,
    )


# ----------------------------------------------------------------------------------------------
# Harrell's C-index with infinitesimal-jackknife variance (survival::concordance)
# ----------------------------------------------------------------------------------------------


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
class ConcordanceComparison:
    """Paired comparison of two C-indices on the same subjects (``diff = c_a - c_b``)."""

    c_a: float
    c_b: float
    diff: float
    se_diff: float
    ci_low: float
    ci_high: float
    z: float
    p: float


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
    t = _as_float_vector("time", time)
    negative = np.flatnonzero(t < 0)
    if negative.size:
        raise GlioradInputError(
            f"time has {negative.size} negative value(s) (first at position {negative[0]}: "
            f"{t[negative[0]]:g}); expected times >= 0"
        )
    e = _as_binary("event", event)
    arrays = {name: _as_float_vector(name, r) for name, r in risks.items()}
    _check_same_length(time=t, event=e, **arrays)
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
    alpha = _check_alpha(alpha)
    t, e, (r,) = _survival_inputs(time, event, risk=risk)
    c, dfbeta, counts = _c_and_dfbeta(t, e, r)
    se = float(np.sqrt(np.sum(dfbeta**2)))
    low, high = _wald_ci(c, se, alpha)
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
    alpha = _check_alpha(alpha)
    t, e, (a, b) = _survival_inputs(time, event, risk_a=risk_a, risk_b=risk_b)
    c_a, dfb_a, _ = _c_and_dfbeta(t, e, a)
    c_b, dfb_b, _ = _c_and_dfbeta(t, e, b)
    diff = float(c_a - c_b)
    se = float(np.sqrt(np.sum((dfb_a - dfb_b) ** 2)))
    z, p = _z_and_p(diff, se)
    low, high = _wald_ci(diff, se, alpha)
    return ConcordanceComparison(
        c_a=float(c_a), c_b=float(c_b), diff=diff, se_diff=se, ci_low=low, ci_high=high, z=z, p=p
    )


# ----------------------------------------------------------------------------------------------
# Intraclass correlation (Shrout & Fleiss 1979), vectorised over features
# ----------------------------------------------------------------------------------------------


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
    alpha = _check_alpha(alpha)
    x, names = _as_rating_tables(table_a, table_b)
    return _icc_frame(x, names, kind, alpha)


def icc_single(a: Any, b: Any, kind: str = "ICC(2,1)", alpha: float = 0.05) -> IccResult:
    """ICC of one feature rated twice (``a`` and ``b``: one value per subject); see :func:`icc`."""
    a_arr = _as_float_vector("a", a)
    b_arr = _as_float_vector("b", b)
    _check_same_length(a=a_arr, b=b_arr)
    row = icc(a_arr, b_arr, kind=kind, alpha=alpha).iloc[0]
    return IccResult(
        icc=float(row["icc"]), ci_low=float(row["ci_low"]), ci_high=float(row["ci_high"]),
        F=float(row["F"]), p=float(row["p"]), note=str(row["note"]),
    )


# ----------------------------------------------------------------------------------------------
# Cohort table ("Table S2")
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Fisher's exact test for r x 2 tables (R's fisher.test p-value)
# ----------------------------------------------------------------------------------------------


def _log_choose(n: np.ndarray | int, k: np.ndarray) -> np.ndarray:
    return gammaln(np.asarray(n) + 1) - gammaln(k + 1) - gammaln(np.asarray(n) - k + 1)


def _partial_tables(rows: Sequence[int], cap: int) -> tuple[np.ndarray, np.ndarray]:
    """All first-column fillings of ``rows``: their column sums (<= cap) and log weights."""
    sums = np.zeros(1, dtype=np.int64)
    logw = np.zeros(1)
    for r in rows:
        x = np.arange(min(int(r), cap) + 1)
        sums = (sums[:, None] + x[None, :]).ravel()
        logw = (logw[:, None] + _log_choose(r, x)[None, :]).ravel()
        keep = sums <= cap
        sums, logw = sums[keep], logw[keep]
    return sums, logw


def _split_rows(rows: np.ndarray, cap: int) -> tuple[list[int], list[int]]:
    """Split rows into two halves with balanced numbers of partial tables."""
    halves: tuple[list[int], list[int]] = ([], [])
    sizes = [1.0, 1.0]
    for r in sorted(rows.tolist(), reverse=True):
        i = int(sizes[1] < sizes[0])
        halves[i].append(r)
        sizes[i] *= min(r, cap) + 1
    return halves


FISHER_MAX_TABLES = 20_000_000


def fisher_exact_rx2(table: Any) -> float:
    """Two-sided Fisher exact test of an r x 2 contingency table (R ``fisher.test``).

    Under fixed margins the first column ``x`` has the multivariate hypergeometric law
    ``P(x) = prod_i C(r_i, x_i) / C(N, c)``. The p-value is the total probability of the tables
    with ``P <= P(observed) * (1 + 1e-7)`` (R's relative tolerance). All tables are enumerated
    exactly by meeting in the middle: the rows are split into two halves, each half's partial
    tables are listed, and for every column sum the two lists are combined with a sorted
    cumulative sum.

    Raises
    ------
    GlioradInputError
        If the table has not exactly 2 columns, or more than ``FISHER_MAX_TABLES`` partial
        tables would be needed.
    """
    tab = np.asarray(table, dtype=np.int64)
    if tab.ndim != 2 or tab.shape[1] != 2 or tab.shape[0] < 2 or (tab < 0).any():
        raise GlioradInputError(f"table has shape {tab.shape}; expected r x 2 counts, r >= 2")
    rows, cap = tab.sum(axis=1), int(tab[:, 0].sum())
    log_norm = float(_log_choose(int(rows.sum()), np.array(cap)))
    threshold = float(np.sum(_log_choose(rows, tab[:, 0]))) + np.log1p(1e-7)
    half_a, half_b = _split_rows(rows, cap)
    n_partial = max(np.prod([min(r, cap) + 1.0 for r in h]) for h in (half_a, half_b))
    if n_partial > FISHER_MAX_TABLES:
        raise GlioradInputError(
            f"table {tab.tolist()} needs {n_partial:.3g} partial tables, more than the "
            f"exact Fisher test's limit of {FISHER_MAX_TABLES:g}"
        )
    sum_a, logw_a = _partial_tables(half_a, cap)
    sum_b, logw_b = _partial_tables(half_b, cap)
    order_a = np.argsort(sum_a, kind="stable")
    sum_a, logw_a = sum_a[order_a], logw_a[order_a]
    order_b = np.lexsort((logw_b, sum_b))
    sum_b, logw_b = sum_b[order_b], logw_b[order_b]
    p = 0.0
    for s in np.unique(sum_a):
        lo, hi = np.searchsorted(sum_b, [cap - s, cap - s + 1])
        if lo == hi:
            continue
        group = logw_b[lo:hi]
        top = group.max()
        cum = np.cumsum(np.exp(group - top))
        a_lo, a_hi = np.searchsorted(sum_a, [s, s + 1])
        first = logw_a[a_lo:a_hi]
        k = np.searchsorted(group, threshold - first, side="right")
        inside = np.where(k > 0, cum[np.maximum(k - 1, 0)], 0.0)
        p += float(np.sum(np.exp(first + top - log_norm) * inside))
    return min(p, 1.0)


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

