"""Confusion counts and rates at one threshold (R: ``pROC::coords(r, x = t, input = "threshold")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gliorad.stats.common import as_float_vector, labels_and_scores

__all__ = ["ThresholdMetrics", "threshold_metrics"]


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
    labels, (s,) = labels_and_scores(y, score=score)
    threshold = float(as_float_vector("threshold", [threshold])[0])
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
