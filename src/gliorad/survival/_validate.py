"""Input validation shared by every survival function.

All checks raise :class:`gliorad.errors.GlioradInputError` with one line per problem, naming the
argument, the offending positions (first few) and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError

_MAX_SHOWN = 5


def _positions(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:_MAX_SHOWN])
    more = f" and {idx.size - _MAX_SHOWN} more" if idx.size > _MAX_SHOWN else ""
    return f"position(s) {shown}{more}"


def as_1d_float(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array or raise naming ``name``."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise GlioradInputError(f"{name} must be numeric ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise GlioradInputError(f"{name} must be one-dimensional; got shape {arr.shape}")
    return arr


def check_lengths(**arrays: Sequence | np.ndarray) -> int:
    """Check all arrays have the same length; return it."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise GlioradInputError(f"inputs must have the same length: {described}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise GlioradInputError("inputs are empty: need at least one observation")
    return n


def check_survival(
    time: object,
    event: object,
    *,
    require_event: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate right-censored survival data.

    Parameters
    ----------
    time : array-like
        Follow-up times; finite, ``>= 0``, no NaN.
    event : array-like
        Event indicator; 1 (or True) = event, 0 (or False) = censored.
    require_event : bool
        Raise when every observation is censored.

    Returns
    -------
    time, event : numpy.ndarray
        ``float`` times and ``int`` events (0/1).
    """
    t = as_1d_float(time, "time")
    e = as_1d_float(event, "event")
    check_lengths(time=t, event=e)
    problems: list[str] = []
    if np.isnan(t).any():
        problems.append(f"time has missing (NaN) values at {_positions(np.isnan(t))}")
    elif not np.isfinite(t).all():
        problems.append(f"time has infinite values at {_positions(~np.isfinite(t))}")
    elif (t < 0).any():
        bad = t < 0
        problems.append(
            f"time has negative values (e.g. {t[bad][0]:g}) at {_positions(bad)}; "
            "follow-up times must be >= 0"
        )
    if np.isnan(e).any():
        problems.append(f"event has missing (NaN) values at {_positions(np.isnan(e))}")
    elif not np.isin(e, (0.0, 1.0)).all():
        bad = ~np.isin(e, (0.0, 1.0))
        problems.append(
            f"event must be 0 (censored) or 1 (event); got {e[bad][0]:g} at {_positions(bad)}"
        )
    if problems:
        raise GlioradInputError(problems)
    e_int = e.astype(int)
    if require_event and e_int.sum() == 0:
        raise GlioradInputError(
            f"all {e_int.size} observations are censored (event == 0); "
            "at least one event is needed"
        )
    return t, e_int


def check_groups(group: object, n: int) -> np.ndarray:
    """Validate a grouping variable of length ``n`` (no missing values)."""
    g = group.to_numpy() if isinstance(group, (pd.Series, pd.Index)) else np.asarray(group)
    if g.ndim != 1:
        raise GlioradInputError(f"group must be one-dimensional; got shape {g.shape}")
    check_lengths(time=np.empty(n), group=g)
    missing = pd.isna(g)
    if missing.any():
        raise GlioradInputError(f"group has missing values at {_positions(missing)}")
    return g


def check_score(score: object, n: int | None = None, name: str = "score") -> np.ndarray:
    """Validate a numeric, finite score (optionally of length ``n``)."""
    s = as_1d_float(score, name)
    if n is not None:
        check_lengths(time=np.empty(n), **{name: s})
    if np.isnan(s).any():
        raise GlioradInputError(f"{name} has missing (NaN) values at {_positions(np.isnan(s))}")
    if not np.isfinite(s).all():
        raise GlioradInputError(f"{name} has infinite values at {_positions(~np.isfinite(s))}")
    return s


def check_covariates(X: pd.DataFrame) -> None:
    """Raise if a covariate table has missing values (naming columns and rows)."""
    missing = X.isna()
    if missing.to_numpy().any():
        problems = [
            f"covariate {col!r} has missing values at {_positions(missing[col].to_numpy())}"
            for col in X.columns
            if missing[col].any()
        ]
        problems.append("drop or impute incomplete rows first")
        raise GlioradInputError(problems)


def check_probability(value: float, name: str) -> float:
    """Check ``0 < value < 1``."""
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise GlioradInputError(f"{name} must be strictly between 0 and 1; got {value!r}")
    return float(value)
