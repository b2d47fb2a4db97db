"""Benchmark: gliorad.survival on realistic sizes.

    .venv/bin/python bench/survival.py [--quick] [--repeats N]

Cases (seeded synthetic cohorts, integer times so events tie): Kaplan-Meier and 3-group
log-rank (10,000 patients), Cox fit and cox.zph (2,000 patients, 4 factors incl. a 3-level
one), nomogram, calibration with 40 bootstrap refits (500 patients) and the maxstat cut-point
(10,000 patients). Reports the median wall time of a few repeats and the peak Python-heap
memory of one extra run (tracemalloc). Prints a table and writes bench/out/survival.json.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
from _harness import measure_main

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


def main(argv: list[str] | None = None) -> int:
    return measure_main("survival", __doc__.splitlines()[0], make_cases, 3, argv)


if __name__ == "__main__":
    sys.exit(main())
