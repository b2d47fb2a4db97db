"""Cox models, tables, factor selection and cox.zph against R 4.2 survival
(tests/reference/make_survival_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from gliorad.errors import GlioradInputError
from gliorad.survival import (
    CoxModel,
    cox_zph,
    multivariable_cox,
    select_cox_factors,
    univariate_cox,
)

REF = Path(__file__).parent / "reference" / "survival"
COX_REF = json.loads((REF / "cox.json").read_text(encoding="utf-8"))

# name -> (csv, factors, categorical, R coefficient names in R's order)
CASES = {
    "lung": ("lung.csv", ["age", "sex", "ph.ecog"], None),
    "veteran": ("veteran.csv", ["trt", "karno", "age", "celltype"], {"celltype": "adeno"}),
    "synth": ("glioma_synth.csv", ["age", "histology", "signature"], {"histology": "A"}),
}


def _r_name(col: str) -> str:
    """R's coefficient name of a design column: "celltype=large" -> "celltypelarge"."""
    return col.replace("=", "")


def _case(name: str) -> tuple[pd.DataFrame, list[str], CoxModel]:
    csv, factors, categorical = CASES[name]
    d = pd.read_csv(REF / csv)[["time", "event", *factors]].dropna().reset_index(drop=True)
    model = CoxModel(categorical=categorical).fit(d[factors], d["time"], d["event"])
    return d, factors, model


# ------------------------------------------------------------------- (a) reference values
@pytest.mark.parametrize("name", list(CASES))
def test_coefficients_match_coxph(name: str) -> None:
    # R: fit <- coxph(Surv(time, event) ~ <factors>, data = d); coef(fit); sqrt(diag(vcov(fit)))
    ref = COX_REF[name]
    _, _, model = _case(name)
    names = [_r_name(c) for c in model.coef_.index]
    order = [ref["names"].index(n) for n in names]
    np.testing.assert_allclose(model.coef_, np.array(ref["coef"])[order], rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.se_, np.array(ref["se"])[order], rtol=0, atol=1e-5)
    # R: fit$loglik
    assert model.log_likelihood_null_ == pytest.approx(ref["loglik"][0], abs=1e-6)
    assert model.log_likelihood_ == pytest.approx(ref["loglik"][1], abs=1e-6)
    assert (model.n_samples_, model.n_events_) == (ref["n"], ref["nevent"])


@pytest.mark.parametrize("name", list(CASES))
def test_table_matches_summary_coxph(name: str) -> None:
    # R: summary(fit)$conf.int[, c(1, 3, 4)]; summary(fit)$coefficients[, 5]
    ref = COX_REF[name]
    d, factors, _ = _case(name)
    fit = multivariable_cox(d, "time", "event", factors, categorical=CASES[name][2])
    order = [ref["names"].index(_r_name(c)) for c in fit.model.coef_.index]
    tab = fit.table
    for col, key in (("hr", "hr"), ("ci_lower", "lower"), ("ci_upper", "upper")):
        np.testing.assert_allclose(tab[col], np.array(ref[key])[order], rtol=1e-5)
    np.testing.assert_allclose(tab["p_value"], np.array(ref["p"])[order], rtol=1e-4, atol=1e-12)
    # R: pchisq(b' V^-1 b, length(b)) per factor (rms::anova(cph) Wald test)
    p_factor = tab.groupby("factor", sort=False)["p_factor"].first()
    for factor, expected in ref["p_factor"].items():
        assert p_factor[factor] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_predicted_survival_matches_survfit(name: str) -> None:
    # R: summary(survfit(fit, newdata = newdata), times = times)$surv   (Efron baseline)
    ref = COX_REF[name]
    _, factors, model = _case(name)
    newdata = pd.DataFrame(ref["newdata"])[factors]
    pred = model.predict_survival(newdata, ref["times"])
    np.testing.assert_allclose(pred.T, np.array(ref["surv_newdata"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("transform", ["km", "identity", "rank", "log"])
def test_cox_zph_matches_r(name: str, transform: str) -> None:
    # R: cox.zph(fit, transform = transform)$table
    ref = COX_REF[name]["zph"][transform]
    d, factors, model = _case(name)
    table = cox_zph(model, d[factors], d["time"], d["event"], transform=transform)
    assert list(table.index) == ref["terms"]
    np.testing.assert_allclose(table["chisq"], ref["chisq"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(table["df"], ref["df"])
    np.testing.assert_allclose(table["p"], ref["p"], rtol=1e-4, atol=1e-8)


def test_cox_zph_per_column_matches_r() -> None:
    # R: cox.zph(fit, terms = FALSE)$table  (veteran: one test per celltype dummy)
    ref = COX_REF["veteran"]["zph"]["km_columns"]
    d, factors, model = _case("veteran")
    table = cox_zph(model, d[factors], d["time"], d["event"], terms=False)
    assert [_r_name(i) for i in table.index] == ref["terms"]
    np.testing.assert_allclose(table["chisq"], ref["chisq"], rtol=1e-4, atol=1e-6)


def test_univariate_table_matches_coxph() -> None:
    # R: coxph(Surv(time, event) ~ f, data = synth) for f in age, histology, sex, signature
    d = pd.read_csv(REF / "glioma_synth.csv")
    tab = univariate_cox(d, "time", "event", ["age", "histology", "sex", "signature"],
                         categorical={"histology": "A"}, labels={"histology": "Histologic type"})
    for factor, ref in COX_REF["synth_univariate"].items():
        rows = tab[tab["factor"] == factor]
        np.testing.assert_allclose(rows["coef"], ref["coef"], atol=1e-5)
        np.testing.assert_allclose(rows["se"], ref["se"], atol=1e-5)
        np.testing.assert_allclose(rows["hr"], ref["hr"], rtol=1e-5)
        np.testing.assert_allclose(rows["ci_lower"], ref["lower"], rtol=1e-5)
        np.testing.assert_allclose(rows["ci_upper"], ref["upper"], rtol=1e-5)
        np.testing.assert_allclose(rows["p_value"], ref["p"], rtol=1e-4)
        # R: summary(fit)$waldtest["pvalue"]  (joint Wald test of the factor)
        assert rows["p_factor"].iloc[0] == pytest.approx(ref["p_wald_joint"], rel=1e-4)
    assert list(tab["label"]) == [
        "age", "Histologic type, O vs. A", "Histologic type, OA vs. A", "sex, M vs. F",
        "signature",
    ]


def test_selection_keeps_age_histology_signature() -> None:
    d = pd.read_csv(REF / "glioma_synth.csv")
    sel = select_cox_factors(d, "time", "event", ["age", "histology", "sex", "signature"],
                             categorical={"histology": "A"})
    assert sel.selected_univariate == ["age", "histology", "signature"]
    assert sel.selected == ["age", "histology", "signature"]
    assert sel.final is not None and sel.final.factors == ["age", "histology", "signature"]
    assert set(sel.multivariable.table["factor"]) == {"age", "histology", "signature"}


def test_selection_with_no_significant_factor() -> None:
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"time": rng.exponential(100, 80).round() + 1,
                      "event": rng.integers(0, 2, 80), "noise": rng.normal(size=80)})
    d.loc[0, "event"] = 1
    sel = select_cox_factors(d, "time", "event", ["noise"], threshold=1e-6)
    assert sel.selected_univariate == [] and sel.final is None and sel.multivariable is None


# ------------------------------------------------------------------- (c) shapes / API
def test_three_level_categorical_and_reference_choice() -> None:
    d = pd.read_csv(REF / "glioma_synth.csv")
    m_a = CoxModel(categorical={"histology": "A"}).fit(d[["histology"]], d["time"], d["event"])
    m_o = CoxModel(categorical={"histology": "O"}).fit(d[["histology"]], d["time"], d["event"])
    assert list(m_a.coef_.index) == ["histology=O", "histology=OA"]
    assert list(m_o.coef_.index) == ["histology=A", "histology=OA"]
    # same model, different coding: O vs A is minus A vs O
    assert m_a.coef_["histology=O"] == pytest.approx(-m_o.coef_["histology=A"], abs=1e-6)
    np.testing.assert_allclose(m_a.predict_survival(d, [365, 730]),
                               m_o.predict_survival(d, [365, 730]), atol=1e-7)


def test_sklearn_api_and_numpy_input() -> None:
    d = pd.read_csv(REF / "veteran.csv")
    model = CoxModel()
    with pytest.raises(NotFittedError):
        model.predict_risk(d[["karno", "age"]])
    assert model.fit(d[["karno", "age"]], d["time"], d["event"]) is model
    fresh = clone(model)
    assert not hasattr(fresh, "coef_") and fresh.get_params() == model.get_params()
    arr = CoxModel().fit(d[["karno", "age"]].to_numpy(), d["time"].to_numpy(), d["event"])
    np.testing.assert_allclose(arr.coef_.to_numpy(), model.coef_.to_numpy(), atol=1e-10)
    surv = model.predict_survival(d[["karno", "age"]].iloc[:5], [10, 100, 900])
    assert surv.shape == (5, 3)
    assert np.all(np.diff(surv, axis=1) <= 0)
    assert np.isnan(model.predict_survival(d[["karno", "age"]].iloc[:1], [5000])).all()
    risk = model.predict_risk(d[["karno", "age"]])
    assert risk.shape == (len(d),) and abs(risk.mean()) < 1e-10
    assert 0.5 < model.score(d[["karno", "age"]], d["time"], d["event"]) < 1.0


def test_breslow_baseline_equals_lifelines() -> None:
    d = pd.read_csv(REF / "lung.csv")[["time", "event", "age", "sex"]]
    m = CoxModel(baseline="breslow").fit(d[["age", "sex"]], d["time"], d["event"])
    ll = m.lifelines_model_.baseline_cumulative_hazard_.iloc[:, 0]
    ours = m.baseline_.set_index("time")["cumhaz"]
    np.testing.assert_allclose(ours.loc[ll.index].to_numpy(), ll.to_numpy(), rtol=1e-6)


# ------------------------------------------------------------------- errors
def test_cox_bad_inputs() -> None:
    d = pd.read_csv(REF / "glioma_synth.csv")
    X = d[["age", "histology"]]
    with pytest.raises(GlioradInputError, match=r"same length: X has 240, time has 239"):
        CoxModel().fit(X, d["time"].iloc[1:], d["event"].iloc[1:])
    with pytest.raises(GlioradInputError, match=r"all 240 observations are censored"):
        CoxModel().fit(X, d["time"], np.zeros(len(d)))
    with pytest.raises(GlioradInputError, match=r"time has negative values"):
        CoxModel().fit(X, -d["time"], d["event"])
    with pytest.raises(GlioradInputError, match=r"covariate 'age' has missing values at position"):
        CoxModel().fit(X.assign(age=X["age"].where(X.index != 3)), d["time"], d["event"])
    with pytest.raises(GlioradInputError, match=r"reference level 'X' of factor 'histology'"):
        CoxModel(categorical={"histology": "X"}).fit(X, d["time"], d["event"])
    model = CoxModel().fit(X, d["time"], d["event"])
    with pytest.raises(GlioradInputError, match=r"level\(s\) \['GBM'\] not seen when fitting"):
        model.predict_risk(X.assign(histology="GBM"))
    with pytest.raises(GlioradInputError, match=r"missing \(NaN\) values"):
        univariate_cox(d.assign(time=d["time"].where(d.index != 0)), "time", "event", ["age"])
    with pytest.raises(GlioradInputError, match=r"column\(s\) \['grade'\] not found"):
        univariate_cox(d, "time", "event", ["grade"])


def test_cox_zph_rejects_other_data() -> None:
    d, factors, model = _case("veteran")
    with pytest.raises(GlioradInputError, match=r"data the model was fitted on \(137 patients"):
        cox_zph(model, d[factors].iloc[:100], d["time"][:100], d["event"][:100])
    with pytest.raises(GlioradInputError, match=r"transform 'loglog' is not valid"):
        cox_zph(model, d[factors], d["time"], d["event"], transform="loglog")


def test_dropna_uses_complete_cases() -> None:
    d = pd.read_csv(REF / "lung.csv")
    with pytest.raises(GlioradInputError, match=r"covariate 'ph.ecog' has missing values"):
        univariate_cox(d, "time", "event", ["ph.ecog"])
    tab = univariate_cox(d, "time", "event", ["age", "ph.ecog", "wt.loss"], dropna=True)
    assert tab.set_index("factor")["n"].to_dict() == {"age": 228, "ph.ecog": 227, "wt.loss": 214}
