"""Design matrices for Cox models: numeric factors as-is, categorical factors dummy-coded.

A categorical factor with levels ``L0 (reference), L1, ..., Lk`` gives ``k`` indicator columns
named ``"<factor>=<level>"`` (R's treatment contrasts, ``relevel(f, ref=L0)``). Non-reference
levels keep R's default ``factor()`` order (sorted, or the pandas categorical order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival._validate import check_covariates

N_UNIQUE_DISCRETE = 10  # rms::datadist(n.unique=10): numeric factors with <= 10 values are discrete


@dataclass(frozen=True)
class Term:
    """One model factor.

    Attributes
    ----------
    name : str
        Column name in the input table.
    kind : {"numeric", "categorical"}
    columns : tuple of str
        Its design-matrix columns.
    reference : object
        Reference level (categorical only).
    levels : tuple
        All levels, reference first (categorical); the distinct values when there are at most
        ten of them (numeric, as ``rms::datadist``), else empty.
    low, high : float
        Observed range (numeric only).
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    reference: object = None
    levels: tuple = ()
    low: float = float("nan")
    high: float = float("nan")


def _is_categorical(s: pd.Series) -> bool:
    return bool(
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or pd.api.types.is_bool_dtype(s)
    )


def _levels(s: pd.Series) -> list:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [lv for lv in s.cat.categories if (s == lv).any()]
    return sorted(pd.unique(s), key=lambda v: (str(type(v)), v))


def _categorical_term(name: str, s: pd.Series, reference: object) -> Term:
    levels = _levels(s)
    if reference is None:
        reference = levels[0]
    if reference not in levels:
        raise GlioradInputError(
            f"reference level {reference!r} of factor {name!r} is not among its levels "
            f"{[str(v) for v in levels]}"
        )
    if len(levels) < 2:
        raise GlioradInputError(f"factor {name!r} has a single level ({levels[0]!r})")
    others = tuple(lv for lv in levels if lv != reference)
    return Term(
        name=name,
        kind="categorical",
        columns=tuple(f"{name}={lv}" for lv in others),
        reference=reference,
        levels=(reference, *others),
    )


def _numeric_term(name: str, s: pd.Series) -> Term:
    try:
        values = s.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise GlioradInputError(f"factor {name!r} is not numeric; list it in categorical") from None
    uniq = np.unique(values)
    if uniq.size < 2:
        raise GlioradInputError(f"factor {name!r} is constant ({uniq[0]:g}); it cannot be fitted")
    return Term(
        name=name,
        kind="numeric",
        columns=(name,),
        levels=tuple(uniq.tolist()) if uniq.size <= N_UNIQUE_DISCRETE else (),
        low=float(uniq[0]),
        high=float(uniq[-1]),
    )


@dataclass(frozen=True)
class Design:
    """How to turn an input table into a numeric design matrix."""

    terms: tuple[Term, ...]

    @classmethod
    def from_frame(cls, X: pd.DataFrame, categorical: Mapping[str, object] | None = None) -> Design:
        """Learn the coding from ``X``.

        ``categorical`` maps factor names to their reference level (``None`` = first level);
        object / string / bool / categorical columns not listed are categorical with the first
        level as reference.
        """
        categorical = dict(categorical or {})
        unknown = [c for c in categorical if c not in X.columns]
        if unknown:
            raise GlioradInputError(
                f"categorical factor(s) {unknown} not found among columns {list(X.columns)}"
            )
        check_covariates(X)
        terms = []
        for name in X.columns:
            s = X[name]
            if name in categorical or _is_categorical(s):
                terms.append(_categorical_term(str(name), s, categorical.get(name)))
            else:
                terms.append(_numeric_term(str(name), s))
        return cls(tuple(terms))

    @property
    def columns(self) -> list[str]:
        return [c for term in self.terms for c in term.columns]

    @property
    def names(self) -> list[str]:
        return [term.name for term in self.terms]

    def term(self, name: str) -> Term:
        for term in self.terms:
            if term.name == name:
                return term
        raise GlioradInputError(f"unknown factor {name!r}; model factors are {self.names}")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Design matrix (float) for ``X``; raises on missing columns, NaN or unseen levels."""
        missing = [t.name for t in self.terms if t.name not in X.columns]
        if missing:
            raise GlioradInputError(f"missing factor column(s) {missing}")
        X = X[self.names]
        check_covariates(X)
        out = {}
        for term in self.terms:
            s = X[term.name]
            if term.kind == "numeric":
                try:
                    out[term.name] = s.to_numpy(dtype=float)
                except (TypeError, ValueError):
                    raise GlioradInputError(f"factor {term.name!r} must be numeric") from None
                continue
            unseen = sorted({str(v) for v in pd.unique(s) if v not in term.levels})
            if unseen:
                raise GlioradInputError(
                    f"factor {term.name!r} has level(s) {unseen} not seen when fitting "
                    f"(levels: {[str(v) for v in term.levels]})"
                )
            for col, level in zip(term.columns, term.levels[1:], strict=True):
                out[col] = (s == level).to_numpy(dtype=float)
        return pd.DataFrame(out, index=X.index)


def as_frame(X: object) -> pd.DataFrame:
    """Accept a DataFrame, a 2-D array or a dict of columns; arrays get columns ``x0, x1, ...``."""
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, Mapping):
        return pd.DataFrame(dict(X))
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise GlioradInputError(f"X must be a table (2-D); got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
