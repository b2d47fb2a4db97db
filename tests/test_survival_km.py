"""Kaplan-Meier and log-rank against R 4.2 survival (tests/reference/make_survival_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.survival import kaplan_meier, logrank_test, plot_km, survival_at

matplotlib.use("Agg")

REF = Path(__file__).parent / "reference" / "survival"


def _num(values) -> np.ndarray:
    """JSON from R (na="string") to floats: "NA"/"NaN" -> nan, "Inf" -> inf."""
    conv = {"NA": np.nan, "NaN": np.nan, "Inf": np.inf, "-Inf": -np.inf}
    return np.array([conv.get(v, v) if isinstance(v, str) else v for v in values], dtype=float)


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / {"synth": "glioma_synth.csv"}.get(name, f"{name}.csv"))


KM_REF = json.loads((REF / "km.json").read_text(encoding="utf-8"))
LR_REF = json.loads((REF / "logrank.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------- (a) reference values
@pytest.mark.parametrize("dataset", ["lung", "veteran", "synth"])
@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
def test_km_matches_survfit(dataset: str, conf_type: str) -> None:
    # R: survfit(Surv(time, event) ~ 1, data = d, conf.type = conf_type)
    ref = KM_REF[f"{dataset}/{conf_type}"]
    d = _data(dataset)
    km = kaplan_meier(d["time"], d["event"], conf_type=conf_type)
    np.testing.assert_array_equal(km["time"], _num(ref["time"]))
    np.testing.assert_array_equal(km["n_risk"], _num(ref["n_risk"]))
    np.testing.assert_array_equal(km["n_event"], _num(ref["n_event"]))
    np.testing.assert_array_equal(km["n_censor"], _num(ref["n_censor"]))
    np.testing.assert_allclose(km["surv"], _num(ref["surv"]), rtol=0, atol=1e-8)
    # R's survfit()$std.err is on the log scale: std_err / surv
    with np.errstate(divide="ignore", invalid="ignore"):
        se_log = np.where(np.isinf(km["std_err"]), np.inf, km["std_err"] / km["surv"])
    expected_se = _num(ref["std_err_log"])
    finite = np.isfinite(expected_se)
    np.testing.assert_array_equal(np.isinf(se_log), np.isinf(expected_se))
    np.testing.assert_allclose(se_log[finite], expected_se[finite], rtol=0, atol=1e-8)
    for col in ("lower", "upper"):
        np.testing.assert_allclose(km[col], _num(ref[col]), rtol=0, atol=1e-8, equal_nan=True)


def test_survival_at_matches_summary() -> None:
    # R: summary(survfit(Surv(time, event) ~ 1, data = lung), times = c(0, 5, 100, 365, 1000))
    ref = KM_REF["summary_lung"]
    d = _data("lung")
    out = survival_at(kaplan_meier(d["time"], d["event"]), ref["time"])
    np.testing.assert_array_equal(out["n_risk"], _num(ref["n_risk"]))
    for col in ("surv", "std_err", "lower", "upper"):
        np.testing.assert_allclose(out[col], _num(ref[col]), rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("case", "dataset", "group"),
    [
        ("lung_sex", "lung", "sex"),
        ("veteran_celltype", "veteran", "celltype"),
        ("veteran_trt", "veteran", "trt"),
        ("synth_histology", "synth", "histology"),
    ],
)
def test_logrank_matches_survdiff(case: str, dataset: str, group: str) -> None:
    # R: survdiff(Surv(time, event) ~ group, data = d)
    ref = LR_REF[case]
    d = _data(dataset)
    res = logrank_test(d["time"], d["event"], d[group])
    assert res.chisq == pytest.approx(ref["chisq"], abs=1e-6)
    assert res.df == ref["df"]
    assert res.p_value == pytest.approx(ref["p"], rel=1e-6)
    assert [str(g) for g in res.table["group"]] == [g.split("=")[-1] for g in ref["groups"]]
    np.testing.assert_allclose(res.table["observed"], ref["observed"], atol=1e-10)
    np.testing.assert_allclose(res.table["expected"], ref["expected"], atol=1e-8)
    np.testing.assert_allclose(res.variance, np.array(ref["var"], dtype=float), atol=1e-8)


# ------------------------------------------------------------------- (b) properties
@pytest.mark.parametrize("dataset", ["lung", "veteran", "synth"])
def test_km_is_non_increasing_in_unit_interval(dataset: str) -> None:
    d = _data(dataset)
    km = kaplan_meier(d["time"], d["event"])
    surv = km["surv"].to_numpy()
    assert np.all(np.diff(surv) <= 0)
    assert np.all((surv >= 0) & (surv <= 1))
    ok = km["lower"].notna()
    assert np.all(km.loc[ok, "lower"] <= km.loc[ok, "surv"] + 1e-12)
    assert np.all(km.loc[ok, "upper"] >= km.loc[ok, "surv"] - 1e-12)
    assert np.all(km["upper"].dropna() <= 1.0)


def test_logrank_identical_groups_is_zero() -> None:
    d = _data("lung")
    t = np.concatenate([d["time"], d["time"]])
    e = np.concatenate([d["event"], d["event"]])
    g = np.repeat(["a", "b"], len(d))
    res = logrank_test(t, e, g)
    assert res.chisq == pytest.approx(0.0, abs=1e-12)
    assert res.p_value == pytest.approx(1.0)


# ------------------------------------------------------------------- (c) shapes and edge cases
def test_km_single_observation_and_ties() -> None:
    km = kaplan_meier([5.0], [1])
    assert km["surv"].tolist() == [0.0]
    km = kaplan_meier([1, 2, 2, 2, 3], [1, 1, 1, 0, 0])
    assert km["time"].tolist() == [1, 2, 3]
    assert km["n_event"].tolist() == [1, 2, 0]
    assert km["n_censor"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(km["surv"], [0.8, 0.8 * 2 / 4, 0.4])


def test_km_pandas_and_numpy_agree() -> None:
    d = _data("veteran")
    a = kaplan_meier(d["time"], d["event"])
    b = kaplan_meier(d["time"].to_numpy(), d["event"].to_numpy().astype(bool))
    pd.testing.assert_frame_equal(a, b)


def test_survival_at_before_first_and_after_last() -> None:
    km = kaplan_meier([2, 4, 6], [1, 0, 1])
    out = survival_at(km, [0, 1, 6, 7])
    assert out["surv"].iloc[0] == 1.0 and out["surv"].iloc[1] == 1.0
    assert out["surv"].iloc[2] == 0.0
    assert np.isnan(out["surv"].iloc[3])
    assert survival_at(km, [7], extend=True)["surv"].iloc[0] == 0.0


def test_logrank_three_groups_and_categorical_order() -> None:
    d = _data("synth")
    cat = pd.Categorical(d["histology"], categories=["OA", "O", "A"])
    res = logrank_test(d["time"], d["event"], pd.Series(cat))
    plain = logrank_test(d["time"], d["event"], d["histology"])
    assert res.df == 2
    assert list(res.table["group"]) == ["OA", "O", "A"]
    assert res.chisq == pytest.approx(plain.chisq, rel=1e-10)


def test_plot_km_returns_figure() -> None:
    d = _data("lung")
    fig = plot_km(d["time"], d["event"], d["sex"].map({1: "Male", 2: "Female"}))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("Log-rank P") for t in texts)
    assert len(fig.axes) == 2
    single = plot_km(d["time"], d["event"])
    assert len(single.axes) == 2


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("time", "event", "message"),
    [
        ([1, 2, 3], [1, 0], r"same length: time has 3, event has 2"),
        ([1, 2, 3], [0, 0, 0], r"all 3 observations are censored"),
        ([1, np.nan, 3], [1, 0, 1], r"time has missing \(NaN\) values at position\(s\) 1"),
        ([1, -2, 3], [1, 0, 1], r"time has negative values \(e\.g\. -2\)"),
        ([1, 2, 3], [1, 2, 0], r"event must be 0 \(censored\) or 1 \(event\); got 2"),
        ([1, 2, 3], [1, np.nan, 0], r"event has missing \(NaN\) values"),
        ([1, np.inf, 3], [1, 0, 1], r"time has infinite values"),
    ],
)
def test_logrank_rejects_bad_input(time, event, message) -> None:
    with pytest.raises(GlioradInputError, match=message):
        logrank_test(time, event, ["a", "b", "a"][: len(time)])


def test_km_bad_input() -> None:
    with pytest.raises(GlioradInputError, match=r"time has negative values"):
        kaplan_meier([1, -1], [1, 1])
    with pytest.raises(GlioradInputError, match=r"same length"):
        kaplan_meier([1, 2], [1])
    with pytest.raises(GlioradInputError, match=r"conf_type 'logit' is not valid"):
        kaplan_meier([1, 2], [1, 1], conf_type="logit")
    with pytest.raises(GlioradInputError, match=r"only one level"):
        logrank_test([1, 2], [1, 1], ["a", "a"])
    with pytest.raises(GlioradInputError, match=r"group has missing values"):
        logrank_test([1, 2], [1, 1], ["a", None])
