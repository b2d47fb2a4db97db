"""R's ``pretty()`` (base R 4.2 ``pretty.default`` with its C ``R_pretty``), needed so nomogram
axes span the same range as ``rms::nomogram`` (which scales points by ``pretty``-extended
ranges)."""

from __future__ import annotations

import math
import sys

import numpy as np

_EPS = sys.float_info.epsilon
_ROUNDING_EPS = 1e-10


def r_pretty(
    lo: float,
    up: float,
    n: int = 5,
    min_n: int | None = None,
    shrink_sml: float = 0.75,
    high_u_bias: float = 1.5,
    u5_bias: float | None = None,
) -> np.ndarray:
    """Equally spaced "round" values covering ``[lo, up]``, as R ``pretty(c(lo, up), n)``."""
    if min_n is None:
        min_n = n // 3
    if u5_bias is None:
        u5_bias = 0.5 + 1.5 * high_u_bias
    h, h5 = high_u_bias, u5_bias
    ndiv = n
    dx = up - lo
    if dx == 0 and up == 0:
        cell, i_small = 1.0, True
    else:
        cell = max(abs(lo), abs(up))
        U = 1 + (1 / (1 + h) if h5 >= 1.5 * h + 0.5 else 1.5 / (1 + h5))
        U *= max(1, ndiv) * _EPS
        i_small = dx < cell * U * 3
    if i_small:
        if cell > 10:
            cell = 9 + cell / 10
        cell *= shrink_sml
        if min_n > 1:
            cell /= min_n
    else:
        cell = dx
        if ndiv > 1:
            cell /= ndiv
    cell = max(cell, 20 * sys.float_info.min)
    base = 10.0 ** math.floor(math.log10(cell))
    unit = base
    if (ns := 2 * base) - cell < h * (cell - unit):
        unit = ns
        if (ns := 5 * base) - cell < h5 * (cell - unit):
            unit = ns
            if (ns := 10 * base) - cell < h * (cell - unit):
                unit = ns
    ns = math.floor(lo / unit + _ROUNDING_EPS)
    nu = math.ceil(up / unit - _ROUNDING_EPS)
    while ns * unit > lo + _ROUNDING_EPS * unit:
        ns -= 1
    while nu * unit < up - _ROUNDING_EPS * unit:
        nu += 1
    k = int(0.5 + nu - ns)
    if k < min_n:
        k = min_n - k
        if ns >= 0:
            nu += k // 2
            ns -= k // 2 + k % 2
        else:
            ns -= k // 2
            nu += k // 2 + k % 2
        ndiv = min_n
    else:
        ndiv = k
    lo_b, up_b = ns * unit, nu * unit
    s = np.linspace(lo_b, up_b, ndiv + 1) if ndiv else np.array([lo_b])
    if ndiv:
        delta = (up_b - lo_b) / ndiv
        s[np.abs(s) < 1e-14 * delta] = 0.0
    return s
