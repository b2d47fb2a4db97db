"""Write ``cohort.csv``: a seeded, small lower-grade-glioma-like training cohort for the
pre-specified Cox models (``survival.clinical_selection`` / ``integrated_selection:
prespecified``).

Run once (``python tests/reference/prespecified/make_cohort.py``); the CSV is committed and read by
``tests/reference/make_prespecified_reference.R`` and ``tests/test_survival_robustness.py``.
Columns: ``patient_id``, ``age`` (years, 1 decimal), ``grade`` (II / III), ``histology``
(astrocytoma / oligodendroglioma / oligoastrocytoma), ``enhancement`` (always ``no``: a factor
with one level, which the pre-specified model leaves out), ``signature`` (high / low risk
group), ``os_days`` (integer days, some tied), ``event`` (1 = death).

True model: hazard = 1/6000 per day * exp(0.04 (age - 45) + 0.7 [III] - 0.9 [oligodendroglioma]
+ 0.4 [oligoastrocytoma] + 0.8 [signature high]); independent uniform censoring on
[300, 4000] days. 90 patients, 41 deaths: the pre-specified 5-coefficient model is near the
events-per-variable limit, as on the small cohorts this rule is meant for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make(n: int = 90, seed: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.round(np.clip(rng.normal(45.0, 12.0, n), 18, 85), 1)
    grade = np.where(rng.uniform(size=n) < 0.45, "III", "II")
    histology = rng.choice(["astrocytoma", "oligodendroglioma", "oligoastrocytoma"], size=n,
                           p=[0.45, 0.3, 0.25])
    signature = np.where(rng.uniform(size=n) < 0.5, "high", "low")
    lp = (0.04 * (age - 45) + 0.7 * (grade == "III") - 0.9 * (histology == "oligodendroglioma")
          + 0.4 * (histology == "oligoastrocytoma") + 0.8 * (signature == "high"))
    t_event = rng.exponential(6000.0 * np.exp(-lp))
    t_cens = rng.uniform(300.0, 4000.0, n)
    time = np.ceil(np.minimum(t_event, t_cens)).astype(int)
    event = (t_event <= t_cens).astype(int)
    return pd.DataFrame({
        "patient_id": [f"P{i + 1:03d}" for i in range(n)], "age": age, "grade": grade,
        "histology": histology, "enhancement": "no", "signature": signature,
        "os_days": time, "event": event,
    })


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "cohort.csv"
    make().to_csv(out, index=False)
    print(f"wrote {out}")
