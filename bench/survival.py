"""Benchmark: gliorad.survival on realistic sizes.

    .venv/bin/python bench/survival.py [--quick] [--repeats N]

Cases (seeded synthetic cohorts, integer times so events tie): Kaplan-Meier and 3-group
log-rank (10,000 patients), Cox fit and cox.zph (2,000 patients, 4 factors incl. a 3-level
one), nomogram, calibration with 40 bootstrap refits (500 patients) and the maxstat cut-point
(10,000 patients). Reports the median wall time of a few repeats and the peak Python-heap
memory of one extra run (tracemalloc). Prints a table and writes bench/out/survival.json.
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
import pandas as pd

from gliorad import survival as S


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.round(rng.normal(45, 12, n))
    histology = rng.choice(["A", "O", "OA"], n)
    signature = rng.normal(size=n)
    sex = rng.choice(["F", "M"], n)
    lp = 0.03 * (age - 45) - 0.8 * (histology == "O") + 0.8 * signature
    t_event = rng.exponential(2000 * np.exp(-lp))
    t_cens = rng.uniform(200, 3000, n)
    return pd.DataFrame({"age": age, "histology": histology, "signature": signature, "sex": sex,
                         "time": np.ceil(np.minimum(t_event, t_cens)),
                         "event": (t_event <= t_cens).astype(int)})


def make_cases() -> dict[str, Callable[[], object]]:
    big, mid, small = cohort(10_000), cohort(2_000, 1), cohort(500, 2)
    factors = ["age", "histology", "signature", "sex"]
    model = S.CoxModel().fit(mid[factors], mid["time"], mid["event"])
    return {
        "kaplan_meier (n=10,000)": lambda: S.kaplan_meier(big["time"], big["event"]),
        "logrank_test 3 groups (n=10,000)": lambda: S.logrank_test(
            big["time"], big["event"], big["histology"]),
        "CoxModel.fit 4 factors (n=2,000)": lambda: S.CoxModel().fit(
            mid[factors], mid["time"], mid["event"]),
        "cox_zph (n=2,000)": lambda: S.cox_zph(model, mid[factors], mid["time"], mid["event"]),
        "select_cox_factors (n=2,000)": lambda: S.select_cox_factors(
            mid, "time", "event", factors),
        "build_nomogram + score (n=2,000)": lambda: S.build_nomogram(model).score(mid),
        "calibrate_survival B=40 (n=500)": lambda: S.calibrate_survival(
            S.CoxModel(), small[factors], small["time"], small["event"], 730.0,
            n_groups=4, n_boot=40, seed=0),
        "optimal_cutpoint (n=10,000)": lambda: S.optimal_cutpoint(
            big["time"], big["event"], big["signature"]),
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
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 3")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    results = [{"case": name, **measure(fn, repeats)} for name, fn in make_cases().items()]
    width = max(len(r["case"]) for r in results)
    print(f"{'case':<{width}}  {'median s':>9}  {'min s':>8}  {'peak MiB':>8}")
    for r in results:
        print(f"{r['case']:<{width}}  {r['median_s']:9.4f}  {r['min_s']:8.4f}  "
              f"{r['peak_mem_mb']:8.1f}")
    out = Path(__file__).parent / "out" / "survival.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
