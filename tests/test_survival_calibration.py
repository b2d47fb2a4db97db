"""Calibration at time t against rms 6.5 ``calibrate(cph, cmethod="KM")``
(tests/reference/make_survival_reference.R)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.survival import CoxModel, calibrate_survival, plot_calibration
from gliorad.survival.calibration import CalibrationResult

matplotlib.use("Agg")

REF = Path(__file__).parent / "reference" / "survival"
CAL_REF = json.loads((REF / "calibrate.json").read_text(encoding="utf-8"))
CASES = {
    "synth": ("glioma_synth.csv", ["age", "histology", "signature"]),
    "veteran": ("veteran.csv", ["karno", "celltype"]),
}


@cache
def _calibrate(name: str) -> CalibrationResult:
    csv, factors = CASES[name]
    ref = CAL_REF["tight_eps"][name]
    d = pd.read_csv(REF / csv)
    return calibrate_survival(
        CoxModel(), d[factors], d["time"], d["event"], ref["u"],
        patients_per_group=ref["m"], bootstrap_indices=np.array(ref["boot_indices"]),
    )


@pytest.mark.parametrize("name", list(CASES))
def test_apparent_calibration_matches_rms(name: str) -> None:
    # R: fit <- cph(Surv(time, event) ~ ..., x=TRUE, y=TRUE, surv=TRUE, time.inc=u)
    #    cal <- calibrate(fit, cmethod="KM", u=u, m=m, B=B)
    #    cal[, c("mean.predicted", "KM", "std.err", "index.orig")]
    ref = CAL_REF["tight_eps"][name]
    tab = _calibrate(name).table
    np.testing.assert_allclose(tab["predicted"], ref["mean_predicted"], atol=1e-6)
    np.testing.assert_allclose(tab["observed"], ref["KM"], atol=1e-8)
    np.testing.assert_allclose(tab["std_err"], ref["std_err"], atol=1e-8)
    np.testing.assert_allclose(tab["observed"] - tab["predicted"], ref["index_orig"], atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_bootstrap_correction_matches_rms_with_tight_refits(name: str) -> None:
    # R: same as above after formals(cph)$eps <- 1e-9 (rms refits with eps=1e-4 by default),
    #    set.seed(seed); calibrate(...)[, c("mean.optimism", "KM.corrected", "n")]; the
    #    resamples are replayed from set.seed(seed); sample(n, replace=TRUE) x B.
    ref = CAL_REF["tight_eps"][name]
    tab = _calibrate(name).table
    np.testing.assert_allclose(tab["optimism"], ref["optimism"], atol=1e-6)
    np.testing.assert_allclose(tab["observed_corrected"], ref["KM_corrected"], atol=1e-6)
    np.testing.assert_array_equal(tab["n_boot"], ref["n"])


@pytest.mark.parametrize("name", list(CASES))
def test_bootstrap_correction_close_to_rms_defaults(name: str) -> None:
    # R: calibrate(...)[, "KM.corrected"] with rms' default cph(eps = 1e-4) refits
    ref = CAL_REF["default_eps"][name]
    tab = _calibrate(name).table
    np.testing.assert_allclose(tab["observed_corrected"], ref["KM_corrected"], atol=1e-3)


class _TrueExponential:
    """'Model' whose predicted survival is the true one: S(t | x) = exp(-rate(x) t)."""

    def fit(self, X, time, event):
        return self

    def predict_survival(self, X, times):
        rate = 0.001 * np.exp(np.asarray(X)[:, 0])
        return np.exp(-np.outer(rate, np.asarray(times, dtype=float)))


def test_perfectly_calibrated_model_lies_on_diagonal() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(size=n)
    t_event = rng.exponential(1 / (0.001 * np.exp(x)))
    t_cens = rng.uniform(0, 3000, n)
    time, event = np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)
    res = calibrate_survival(_TrueExponential, x[:, None], time, event, 500.0, n_groups=5,
                             n_boot=0)
    tab = res.table
    assert len(tab) == 5
    np.testing.assert_allclose(tab["observed"], tab["predicted"], atol=0.04)
    assert np.all(tab["observed_lower"] <= tab["predicted"] + 0.01)
    assert np.all(tab["observed_upper"] >= tab["predicted"] - 0.01)
    assert tab["optimism"].isna().all() and tab["observed_corrected"].isna().all()


def test_seeded_bootstrap_is_reproducible_and_plot() -> None:
    d = pd.read_csv(REF / "veteran.csv")
    args = (CoxModel(), d[["karno"]], d["time"], d["event"], 100.0)
    a = calibrate_survival(*args, n_groups=3, n_boot=4, seed=5)
    b = calibrate_survival(*args, n_groups=3, n_boot=4, seed=5)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.table["n_boot"].max() == 4
    fig = plot_calibration(a)
    assert fig.axes[0].get_xlabel() == "Predicted survival at t = 100"


def test_calibration_time_beyond_follow_up() -> None:
    d = pd.read_csv(REF / "veteran.csv")
    with pytest.raises(
        GlioradInputError,
        match=r"calibration time 1825 days is beyond the last follow-up \(999 days\); "
        r"choose t <= 999",
    ):
        calibrate_survival(CoxModel(), d[["karno"]], d["time"], d["event"], 1825, n_boot=0)
    with pytest.raises(GlioradInputError, match=r"only 1 patient\(s\) are still at risk"):
        calibrate_survival(CoxModel(), d[["karno"]], d["time"], d["event"], 999, n_boot=0)


def test_calibration_bad_inputs() -> None:
    d = pd.read_csv(REF / "veteran.csv")
    X = d[["karno"]]
    with pytest.raises(GlioradInputError, match=r"same length: X has 137, time has 136"):
        calibrate_survival(CoxModel(), X, d["time"][1:], d["event"][1:], 100)
    with pytest.raises(GlioradInputError, match=r"all 137 observations are censored"):
        calibrate_survival(CoxModel(), X, d["time"], 0 * d["event"], 100)
    with pytest.raises(GlioradInputError, match=r"time has missing \(NaN\) values"):
        calibrate_survival(CoxModel(), X, d["time"].where(d.index > 0), d["event"], 100)
    with pytest.raises(GlioradInputError, match=r"time has negative values"):
        calibrate_survival(CoxModel(), X, d["time"] - 10, d["event"], 100)
    with pytest.raises(GlioradInputError, match=r"n_groups or patients_per_group, not both"):
        calibrate_survival(CoxModel(), X, d["time"], d["event"], 100, n_groups=3,
                           patients_per_group=30)
