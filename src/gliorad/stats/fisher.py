"""Fisher's exact test for r x 2 tables, exact by meeting in the middle (R's ``fisher.test``
p-value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import gammaln

from gliorad.errors import GlioradInputError

__all__ = ["FISHER_MAX_TABLES", "fisher_exact_rx2"]


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
