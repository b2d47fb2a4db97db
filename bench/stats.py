"""Benchmark: gliorad.stats on realistic sizes.

    .venv/bin/python bench/stats.py [--quick] [--repeats N]

Cases: roc_auc_ci and delong_test (DeLong, 10,000 subjects), concordance_ci and
compare_concordance (IJ variance, 10,000 subjects, tied times), bootstrap_ci of the AUC
(1,000 stratified resamples of 1,000 subjects). Reports the median wall time of a few repeats
and the peak Python-heap memory of one extra run under tracemalloc (numpy buffers included).
Prints a table and writes bench/out/stats.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

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


def measure(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median / min wall time over ``repeats`` runs (after one warm-up) and tracemalloc peak."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats,
            "peak_mem_mb": peak / 2**20}


def machine() -> dict[str, str | int | None]:
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__,
            "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 5")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    results = []
    for name, fn in make_cases().items():
        results.append({"case": name, **measure(fn, repeats)})
    width = max(len(r["case"]) for r in results)
    print(f"{'case':<{width}}  {'median s':>9}  {'min s':>8}  {'peak MiB':>8}")
    for r in results:
        print(f"{r['case']:<{width}}  {r['median_s']:9.4f}  {r['min_s']:8.4f}  "
              f"{r['peak_mem_mb']:8.1f}")
    out = Path(__file__).parent / "out" / "stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
