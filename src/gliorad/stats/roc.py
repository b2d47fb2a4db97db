"""ROC AUC with its DeLong variance and the paired DeLong test (R: pROC).

* :func:`roc_auc_ci`: ``pROC::ci.auc(roc(y, s, direction = "<", levels = c(0, 1)),
  method = "delong")``
* :func:`delong_test`: ``pROC::roc.test(r1, r2, method = "delong", paired = TRUE)``

The numerical core is :func:`_delong_covariance` (placements by midranks, Sun & Xu 2014).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from gliorad.stats.common import (
    PairedDifference,
    check_alpha,
    labels_and_scores,
    paired_difference,
    require_both_classes,
    wald_ci,
)

__all__ = ["AucResult", "DelongTestResult", "delong_test", "roc_auc", "roc_auc_ci"]


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
class DelongTestResult(PairedDifference):
    """Paired DeLong test of two ROC AUCs measured on the same subjects (``diff = a - b``; the
    interval and test fields are :class:`~gliorad.stats.common.PairedDifference`'s)."""

    auc_a: float
    auc_b: float
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
    labels, (s,) = labels_and_scores(y, score=score)
    require_both_classes(labels, minimum=1)
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
    alpha = check_alpha(alpha)
    labels, (s,) = labels_and_scores(y, score=score)
    n_pos, n_neg = require_both_classes(labels, minimum=2)
    auc, cov = _delong_covariance(labels, s[None, :])
    se = float(np.sqrt(cov[0, 0]))
    low, high = wald_ci(float(auc[0]), se, alpha)
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
    alpha = check_alpha(alpha)
    labels, (a, b) = labels_and_scores(y, score_a=score_a, score_b=score_b)
    n_pos, n_neg = require_both_classes(labels, minimum=2)
    auc, cov = _delong_covariance(labels, np.vstack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    return DelongTestResult(auc_a=float(auc[0]), auc_b=float(auc[1]), n_pos=n_pos, n_neg=n_neg,
                            **paired_difference(diff, se, alpha))
