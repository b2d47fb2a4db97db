"""Benchmark: gliorad.stats on realistic sizes.

    .venv/bin/python bench/stats.py [--quick] [--repeats N]

Cases: roc_auc_ci and delong_test (DeLong, 10,000 subjects), concordance_ci and
compare_concordance (IJ variance, 10,000 subjects, tied times), bootstrap_ci of the AUC
(1,000 stratified resamples of 1,000 subjects). Reports the median wall time of a few repeats
and the peak Python-heap memory of one extra run under tracemalloc (numpy buffers included).
Prints a table and writes bench/out/stats.json.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
from _harness import measure_main

from gliorad import stats as S


def make_cases(n_big: int = 10_000, n_boot_data: int = 1_000) -> dict[str, Callable[[], object]]:
    """Named zero-argument callables on seeded synthetic data."""
    rng = np.random.default_rng(0)
    y = (rng.random(n_big) < 0.3).astype(int)
    score_a = y + rng.normal(size=n_big)
    score_b = np.round(0.5 * y + rng.normal(size=n_big), 1)  # ties
    x = rng.normal(size=n_big)
    t_event = rng.exponential(10 * np.exp(-0.7 * x))
    t_cens = rng.uniform(0, 30, size=n_big)
    time_ = np.ceil(np.minimum(t_event, t_cens))  # integer times: many ties
    event = (t_event <= t_cens).astype(int)
    risk_a = x + rng.normal(scale=0.5, size=n_big)
    risk_b = np.round(x + rng.normal(size=n_big))
    yb, sb = y[:n_boot_data], score_a[:n_boot_data]
    return {
        f"roc_auc_ci (n={n_big:,})": lambda: S.roc_auc_ci(y, score_a),
        f"delong_test (n={n_big:,})": lambda: S.delong_test(y, score_a, score_b),
        f"concordance_ci (n={n_big:,})": lambda: S.concordance_ci(time_, event, risk_a),
        f"compare_concordance (n={n_big:,})": lambda: S.compare_concordance(
            time_, event, risk_a, risk_b),
        f"bootstrap_ci AUC (1,000 x n={n_boot_data:,})": lambda: S.bootstrap_ci(
            S.roc_auc, yb, sb, n_boot=1000, seed=0, stratify=yb),
    }


def main(argv: list[str] | None = None) -> int:
    return measure_main("stats", __doc__.splitlines()[0], make_cases, 5, argv)


if __name__ == "__main__":
    sys.exit(main())
