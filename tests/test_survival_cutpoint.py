"""Cut-points against R maxstat 0.7 (tests/reference/make_survival_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.survival import median_cutpoint, optimal_cutpoint
from gliorad.survival.cutpoint import OPTIMISM_WARNING, logrank_scores

REF = Path(__file__).parent / "reference" / "survival"
MS_REF = json.loads((REF / "maxstat.json").read_text(encoding="utf-8"))
CASES = {
    "synth_signature": ("glioma_synth.csv", "signature"),
    "veteran_karno": ("veteran.csv", "karno"),
    "lung_age": ("lung.csv", "age"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("p_method", ["Lau94", "Lau92"])
def test_optimal_cutpoint_matches_maxstat(case: str, p_method: str) -> None:
    # R: r <- maxstat.test(Surv(time, event) ~ x, data = d, smethod = "LogRank",
    #                      pmethod = p_method)   # minprop = 0.1, maxprop = 0.9
    #    r$statistic, r$p.value, r$estimate, r$cuts, r$stats
    csv, column = CASES[case]
    ref = MS_REF[case][p_method]
    d = pd.read_csv(REF / csv)
    res = optimal_cutpoint(d["time"], d["event"], d[column], p_method=p_method)
    assert res.statistic == pytest.approx(ref["statistic"], abs=1e-6)
    assert res.p_value == pytest.approx(ref["p"], rel=1e-6)
    assert res.cutpoint == ref["estimate"]
    np.testing.assert_allclose(res.candidates, ref["cuts"])
    np.testing.assert_allclose(res.statistics, ref["stats"], atol=1e-6)
    assert res.warning == OPTIMISM_WARNING
    assert "independent data" in res.warning
    assert res.n_low == int((d[column] <= res.cutpoint).sum())


def test_logrank_scores_with_ties() -> None:
    # R: exactRankTests::cscores(Surv(c(5,1,2,2,3,2), c(1,1,1,0,1,1)), type = "LogRank")
    scores = logrank_scores(np.array([5, 1, 2, 2, 3, 2.0]), np.array([1, 1, 1, 0, 1, 1.0]))
    np.testing.assert_allclose(scores, [-4 / 3, 5 / 6, 1 / 6, -5 / 6, -1 / 3, 1 / 6])


def test_median_cutpoint() -> None:
    assert median_cutpoint([3, 1, 2, 10]) == 2.5
    assert median_cutpoint(pd.Series([1.0, 2.0, 3.0])) == 2.0


def test_no_signal_gives_large_p_and_strong_signal_small_p() -> None:
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=n)
    time = rng.exponential(1.0, n)
    noise = optimal_cutpoint(time, np.ones(n), x)
    assert noise.p_value > 0.05
    signal = optimal_cutpoint(rng.exponential(1 / np.exp(1.5 * (x > 0.3))), np.ones(n), x)
    assert signal.p_value < 1e-4
    assert 0.0 < signal.cutpoint < 0.6


def test_cutpoint_bad_inputs() -> None:
    with pytest.raises(GlioradInputError, match=r"same length: time has 3, score has 2"):
        optimal_cutpoint([1, 2, 3], [1, 1, 0], [0.1, 0.2])
    with pytest.raises(GlioradInputError, match=r"all 3 observations are censored"):
        optimal_cutpoint([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"score has missing \(NaN\) values"):
        optimal_cutpoint([1, 2, 3], [1, 0, 1], [0.1, np.nan, 0.3])
    with pytest.raises(GlioradInputError, match=r"time has negative values"):
        optimal_cutpoint([1, -2, 3], [1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(GlioradInputError, match=r"no cut-point leaves between"):
        optimal_cutpoint(np.arange(1, 21), np.ones(20), np.r_[np.zeros(19), 1.0])
    with pytest.raises(GlioradInputError, match=r"p_method 'HL' is not valid"):
        optimal_cutpoint([1, 2, 3], [1, 0, 1], [0.1, 0.2, 0.3], p_method="HL")
    with pytest.raises(GlioradInputError, match=r"score has missing"):
        median_cutpoint([1.0, np.nan])
