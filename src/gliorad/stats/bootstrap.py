"""Seeded (optionally stratified) percentile bootstrap confidence interval of any metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.stats.common import check_alpha, check_same_length

__all__ = ["BootstrapResult", "bootstrap_ci"]


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
    check_same_length(**{f"arrays[{i}]": a for i, a in enumerate(out)})
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
    alpha = check_alpha(alpha)
    if int(n_boot) != n_boot or n_boot < 1:
        raise GlioradInputError(f"n_boot {n_boot!r} is not a positive integer")
    data = _as_resamplable(arrays)
    n = len(data[0])
    strata = None
    if stratify is not None:
        strata = np.asarray(stratify.to_numpy() if isinstance(stratify, pd.Series) else stratify)
        check_same_length(**{"arrays[0]": data[0], "stratify": strata})
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
