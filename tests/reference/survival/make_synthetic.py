"""Write ``glioma_synth.csv``: a seeded, synthetic lower-grade-glioma-like cohort.

Run once (``python tests/reference/survival/make_synthetic.py``); the CSV is committed and read by
``tests/reference/make_survival_reference.R`` and by the survival tests.  Columns:

- ``age`` (years, integer), ``histology`` (A / O / OA, three levels), ``sex`` (F / M),
  ``signature`` (a continuous radiomics-like score, 3 decimals),
- ``time`` (integer days, so some times are tied), ``event`` (1 = death, 0 = censored).

True model: hazard = 1/2000 per day * exp(0.03 (age - 45) + b_hist + 0.8 signature), with
b_hist = 0 (A), -1.0 (O), -0.5 (OA); independent uniform censoring on [200, 3000] days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make(n: int = 240, seed: int = 20220901) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.normal(45.0, 12.0, n)), 18, 85).astype(int)
    histology = rng.choice(["A", "O", "OA"], size=n, p=[0.45, 0.3, 0.25])
    sex = rng.choice(["F", "M"], size=n)
    signature = np.round(rng.normal(0.0, 1.0, n), 3)
    b_hist = np.select([histology == "O", histology == "OA"], [-1.0, -0.5], 0.0)
    rate = np.exp(0.03 * (age - 45) + b_hist + 0.8 * signature) / 2000.0
    t_event = rng.exponential(1.0 / rate)
    t_cens = rng.uniform(200.0, 3000.0, n)
    time = np.ceil(np.minimum(t_event, t_cens)).astype(int)
    event = (t_event <= t_cens).astype(int)
    return pd.DataFrame(
        {"age": age, "histology": histology, "sex": sex, "signature": signature,
         "time": time, "event": event}
    )


if __name__ == "__main__":
    out = Path(__file__).with_name("glioma_synth.csv")
    make().to_csv(out, index=False)
    print(f"wrote {out}")
