"""Input checks shared by the statistics modules, and the Wald interval and z-test.

Bad input raises :class:`gliorad.errors.GlioradInputError` naming the argument, the bad value
and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from gliorad.errors import GlioradInputError

__all__ = [
    "PairedDifference",
    "as_binary",
    "as_float_vector",
    "check_alpha",
    "check_same_length",
    "labels_and_scores",
    "require_both_classes",
    "wald_ci",
    "z_and_p",
]


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as float if 0 < alpha < 1, else raise."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise GlioradInputError(f"alpha {alpha!r} is not a number; expected 0 < alpha < 1") from None
    if not 0.0 < value < 1.0:
        raise GlioradInputError(f"alpha {alpha!r} is outside (0, 1); expected e.g. 0.05")
    return value


def as_float_vector(name: str, values: Any) -> np.ndarray:
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


def as_binary(name: str, values: Any) -> np.ndarray:
    """Convert 0/1 or bool labels to a bool array, else raise."""
    arr = as_float_vector(name, values)
    bad = np.flatnonzero((arr != 0) & (arr != 1))
    if bad.size:
        raise GlioradInputError(
            f"{name} has value {arr[bad[0]]:g} at position {bad[0]}; expected only 0/1 "
            "(or False/True)"
        )
    return arr == 1


def check_same_length(**arrays: np.ndarray) -> int:
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


def labels_and_scores(y: Any, **scores: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validate binary labels and one or more score vectors of the same length."""
    labels = as_binary("y", y)
    arrays = {name: as_float_vector(name, s) for name, s in scores.items()}
    check_same_length(y=labels, **arrays)
    return labels, list(arrays.values())


def require_both_classes(labels: np.ndarray, minimum: int) -> tuple[int, int]:
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


def wald_ci(estimate: float, se: float, alpha: float) -> tuple[float, float]:
    """Normal-approximation interval ``estimate -/+ z_{1-alpha/2} * se``."""
    z = sps.norm.ppf(1.0 - alpha / 2.0)
    return float(estimate - z * se), float(estimate + z * se)


def z_and_p(diff: float, se: float) -> tuple[float, float]:
    """Two-sided Wald z-test; 0/0 (identical estimates, zero variance) gives z = 0, p = 1."""
    if se == 0.0:
        z = 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    else:
        z = diff / se
    return z, float(2.0 * sps.norm.sf(abs(z)))


@dataclass(frozen=True)
class PairedDifference:
    """A paired difference of two estimates on the same subjects (``diff = a - b``) with its
    Wald interval and two-sided z-test (:func:`paired_difference`)."""

    diff: float
    se_diff: float
    ci_low: float
    ci_high: float
    z: float
    p: float


def paired_difference(diff: float, se: float, alpha: float) -> dict[str, float]:
    """The :class:`PairedDifference` fields of ``diff`` with standard error ``se``: the
    ``1 - alpha`` Wald interval (:func:`wald_ci`) and the z-test (:func:`z_and_p`)."""
    z, p = z_and_p(diff, se)
    low, high = wald_ci(diff, se, alpha)
    return {"diff": diff, "se_diff": se, "ci_low": low, "ci_high": high, "z": z, "p": p}
