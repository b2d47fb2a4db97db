"""Nomogram against rms 6.5 ``nomogram`` (tests/reference/make_survival_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.survival import CoxModel, build_nomogram, plot_nomogram

matplotlib.use("Agg")

REF = Path(__file__).parent / "reference" / "survival"
NOMO_REF = json.loads((REF / "nomogram.json").read_text(encoding="utf-8"))
CASES = {
    "synth": ("glioma_synth.csv", ["age", "histology", "signature"]),
    "veteran": ("veteran.csv", ["trt", "karno", "celltype", "age"]),
}
TOL = 1e-3


def _nomogram(name: str):
    csv, factors = CASES[name]
    ref = NOMO_REF[name]
    d = pd.read_csv(REF / csv)
    model = CoxModel().fit(d[factors], d["time"], d["event"])
    return build_nomogram(model, times=ref["times"]), ref, model, d


@pytest.mark.parametrize("name", list(CASES))
def test_factor_points_match_rms(name: str) -> None:
    # R: fit <- cph(Surv(time, event) ~ ..., x=TRUE, y=TRUE, surv=TRUE); surv <- Survival(fit)
    #    nom <- nomogram(fit, fun=list(S<t>=function(x) surv(t, x), ...), fun.at=surv_ticks)
    #    nom[[factor]][[factor]] (axis values) and nom[[factor]]$points
    nom, ref, _, _ = _nomogram(name)
    assert nom.scale == pytest.approx(ref["scale"], rel=TOL)       # attr(nom, "info")$sc
    assert nom.intercept == pytest.approx(ref["intercept"], abs=TOL)  # attr(nom, "info")$Intercept
    for factor, axis_ref in ref["axes"].items():
        axis = nom.factor(factor)
        assert [str(v) if isinstance(v, str) else float(v) for v in axis.values] == [
            str(v) if isinstance(v, str) else float(v) for v in axis_ref["values"]
        ]
        np.testing.assert_allclose(axis.points, axis_ref["points"], rtol=0, atol=TOL)


@pytest.mark.parametrize("name", list(CASES))
def test_total_points_and_lp_axes_match_rms(name: str) -> None:
    # R: nom$total.points$x; nom$lp$x, nom$lp$x.real
    nom, ref, _, _ = _nomogram(name)
    np.testing.assert_allclose(nom.total_points, ref["total_points"])
    np.testing.assert_allclose(nom.linear_predictor.values, ref["lp_axis"]["values"])
    np.testing.assert_allclose(nom.linear_predictor.points, ref["lp_axis"]["points"], atol=TOL)


@pytest.mark.parametrize("name", list(CASES))
def test_survival_axes_match_rms(name: str) -> None:
    # R: nom[["S<t>"]]$x (points) and $x.real (probabilities). rms inverts fun numerically by
    # linear interpolation on a 1000-point lp grid; we invert exactly, so allow 0.01 points.
    nom, ref, _, _ = _nomogram(name)
    for axis, t in zip(nom.survival, ref["times"], strict=True):
        axis_ref = ref["survival"][f"S{t:g}"]
        np.testing.assert_allclose(axis.values, axis_ref["probs"])
        np.testing.assert_allclose(axis.points, axis_ref["points"], atol=1e-2)


@pytest.mark.parametrize("name", list(CASES))
def test_patient_points_and_survival_match_rms(name: str) -> None:
    # R: lp <- predict(fit, newdata, type="lp"); (lp - Intercept) * sc; surv(t, lp)
    nom, ref, model, _ = _nomogram(name)
    newdata = pd.DataFrame(ref["newdata"])
    scored = nom.score(newdata)
    np.testing.assert_allclose(scored["lp"], ref["lp"], atol=TOL)
    np.testing.assert_allclose(scored["total_points"], ref["total_points_newdata"], atol=TOL)
    for t, surv_ref in zip(ref["times"], ref["surv_newdata"], strict=True):
        np.testing.assert_allclose(scored[f"surv_{t:g}"], surv_ref, atol=TOL)
    # the nomogram and the model agree exactly
    np.testing.assert_allclose(scored["lp"], model.predict_risk(newdata), atol=1e-10)
    np.testing.assert_allclose(
        scored[[f"surv_{t:g}" for t in ref["times"]]].to_numpy(),
        model.predict_survival(newdata, ref["times"]), atol=1e-10,
    )


def test_largest_factor_spans_maxscale_and_total_points_monotone_in_risk() -> None:
    nom, _, model, d = _nomogram("synth")
    spans = [axis.points.max() - axis.points.min() for axis in nom.factors]
    assert max(spans) == pytest.approx(100.0)
    assert min(axis.points.min() for axis in nom.factors) == pytest.approx(0.0)
    scored = nom.score(d)
    order = np.argsort(model.predict_risk(d))
    assert np.all(np.diff(scored["total_points"].to_numpy()[order]) >= -1e-9)
    assert np.all(np.diff(scored["surv_365"].to_numpy()[order]) <= 1e-12)


def test_custom_axis_values_and_plot() -> None:
    d = pd.read_csv(REF / "glioma_synth.csv")
    model = CoxModel().fit(d[["age", "histology", "signature"]], d["time"], d["event"])
    nom = build_nomogram(model, times=[365], values={"age": [20, 40, 60, 80]},
                         labels={"histology": "Histologic type"})
    assert nom.factor("age").values == (20, 40, 60, 80)
    assert nom.factor("histology").label == "Histologic type"
    fig = plot_nomogram(nom)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"Points", "Total points", "Histologic type", "365-day survival"} <= texts


def test_nomogram_errors() -> None:
    d = pd.read_csv(REF / "glioma_synth.csv")
    model = CoxModel().fit(d[["age", "histology"]], d["time"], d["event"])
    with pytest.raises(GlioradInputError, match=r"beyond the last follow-up \(2973\)"):
        build_nomogram(model, times=[365, 5000])
    with pytest.raises(GlioradInputError, match=r"unknown level\(s\) \['GBM'\]"):
        build_nomogram(model, values={"histology": ["A", "GBM"]})
    nom = build_nomogram(model)
    with pytest.raises(GlioradInputError, match=r"missing factor column\(s\) \['histology'\]"):
        nom.score(d[["age"]])
