"""Deep-radiomics signature (gliorad.survival.signature): recovery of informative features on data
from a known Cox model, references for the null-model residuals, estimator contract, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import NotFittedError

from gliorad.errors import GlioradInputError
from gliorad.survival.signature import (
    DeepRadiomicsSignature,
    as_survival,
    make_survival_y,
    minimal_depth,
    null_model_residuals,
)

REF = Path(__file__).resolve().parent / "reference" / "survival_analysis"
N_INFORMATIVE = 5


def cox_data(n: int = 200, p: int = 150, seed: int = 0, beta: float = 1.0):
    """Features: the first 5 are noisy copies of a latent z; the hazard is exp(beta * z)
    (Weibull baseline, uniform censoring)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    X = rng.normal(size=(n, p))
    X[:, :N_INFORMATIVE] = 0.8 * z[:, None] + 0.5 * rng.normal(size=(n, N_INFORMATIVE))
    t_event = 1000.0 * rng.weibull(1.2, n) * np.exp(-beta * z / 1.2)
    t_cens = rng.uniform(365.0, 3650.0, n)
    time = np.round(np.minimum(t_event, t_cens)) + 1.0
    event = (t_event <= t_cens).astype(int)
    cols = [f"f{j:03d}" for j in range(p)]
    return pd.DataFrame(X, columns=cols), time, event


FAST = {"n_estimators": 100, "n_alphas": 12, "l1_ratios": (0.5, 1.0), "cv_folds": 4}


@pytest.fixture(scope="module")
def data():
    return cox_data()


@pytest.fixture(scope="module")
def fitted(data):
    X, t, e = data
    return DeepRadiomicsSignature(top_k=10, **FAST).fit(X, make_survival_y(t, e))


# ------------------------------------------------------------------------------ properties
@pytest.mark.parametrize("ranking", ["residual_rf", "rsf_depth"])
def test_ranking_recovers_informative_features(data, ranking):
    X, t, e = data
    sig = DeepRadiomicsSignature(top_k=10, ranking=ranking, **FAST).fit(X, (t, e))
    informative = {f"f{j:03d}" for j in range(N_INFORMATIVE)}
    assert set(sig.features_[:N_INFORMATIVE]) == informative
    assert set(sig.ranking_table()["feature"][:N_INFORMATIVE]) == informative


def test_weights_and_risk_direction(fitted, data):
    X, t, e = data
    informative = [f"f{j:03d}" for j in range(N_INFORMATIVE)]
    w = dict(zip(fitted.features_, fitted.weights_, strict=True))
    # the informative features carry the signature: positive weights, most of the total weight
    assert sum(w[f] for f in informative) > 0
    assert sum(abs(w[f]) for f in informative) > 0.5 * np.abs(fitted.weights_).sum()
    # higher signature = shorter survival
    assert fitted.score(X, (t, e)) > 0.7
    assert 0.5 < fitted.cv_score_ < 1.0
    assert fitted.intercept_ == 0.0


def test_predict_equals_formula(fitted, data):
    X, _, _ = data
    f = fitted.formula()
    manual = fitted.intercept_ + ((X[f["feature"]] - f["center"].to_numpy()) / f["scale"].to_numpy()
                                  ).to_numpy() @ f["weight"].to_numpy()
    np.testing.assert_allclose(fitted.predict(X), manual, rtol=1e-12)
    raw = fitted.intercept_ - (f["raw_weight"] * f["center"]).sum() + X[f["feature"]].to_numpy() @ f["raw_weight"]
    np.testing.assert_allclose(fitted.predict(X), raw, rtol=1e-9, atol=1e-12)
    # column order and extra columns do not matter for a table; an array uses the fit order
    np.testing.assert_allclose(fitted.predict(X[X.columns[::-1]]), fitted.predict(X))
    np.testing.assert_allclose(fitted.predict(X.to_numpy()), fitted.predict(X))
    z = fitted.transform(X)
    assert z.shape == (len(X), 10)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)


def test_formula_text_and_dict(fitted):
    text = fitted.formula_text()
    assert text.startswith("signature = ")
    for name, w in zip(fitted.features_, fitted.weights_, strict=True):
        assert (f"z({name})" in text) == (w != 0)
    d = fitted.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["features"] == fitted.features_ and len(d["weights"]) == 10
    assert d["ranking"] == "residual_rf" and d["weighting"] == "coxnet"


def test_one_se_rule_is_sparser(fitted, data):
    X, t, e = data
    sparse = clone(fitted).set_params(alpha_rule="1se").fit(X, (t, e))
    assert sparse.alpha_ >= fitted.alpha_
    assert np.abs(sparse.weights_).sum() <= np.abs(fitted.weights_).sum()
    assert sparse.score(X, (t, e)) > 0.7


def test_deterministic_and_clone(data):
    X, t, e = data
    a = DeepRadiomicsSignature(top_k=5, **FAST).fit(X, (t, e))
    b = clone(a).fit(X, (t, e))
    assert a.features_ == b.features_
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert clone(a).get_params() == a.get_params()


def test_outcome_forms_agree(data):
    _X, t, e = data
    y = make_survival_y(t, e)
    for form in (y, (t, e), np.column_stack([t, e]), pd.DataFrame({"time": t, "event": e})):
        tt, ee = as_survival(form)
        np.testing.assert_array_equal(tt, t)
        np.testing.assert_array_equal(ee, e)
    from sksurv.util import Surv

    tt, ee = as_survival(Surv.from_arrays(e.astype(bool), t, name_event="dead", name_time="days"))
    np.testing.assert_array_equal(tt, t)


def test_literal_options_ignore_censored_patients(data):
    """rf_time + elasticnet_time use patients with an event only: changing the censored
    patients' features leaves the signature unchanged."""
    X, t, e = data
    params = {"top_k": 8, "ranking": "rf_time", "weighting": "elasticnet_time", **FAST}
    a = DeepRadiomicsSignature(**params).fit(X, (t, e))
    X2 = X.copy()
    rng = np.random.default_rng(5)
    X2.loc[e == 0] = rng.normal(size=(int((e == 0).sum()), X.shape[1]))
    # z-scoring uses all patients: standardise with the same centre/scale to compare weights
    b = DeepRadiomicsSignature(**params).fit(X2, (t, e))
    assert a.features_ == b.features_
    assert a.intercept_ != 0.0  # -(predicted log time) carries an intercept
    assert a.score(X, (t, e)) > 0.6


def test_few_features_keeps_all_with_warning(data):
    X, t, e = data
    with pytest.warns(UserWarning, match="keeping all of them"):
        sig = DeepRadiomicsSignature(top_k=10, **FAST).fit(X.iloc[:, :4], (t, e))
    assert len(sig.features_) == 4


def test_constant_features_are_set_aside(data):
    X, t, e = data
    X2 = X.iloc[:, :20].assign(const=1.0)
    sig = DeepRadiomicsSignature(top_k=5, **FAST).fit(X2, (t, e))
    assert sig.constant_features_ == ["const"]
    assert np.isnan(sig.importances_[-1])
    assert "const" not in set(sig.ranking_table()["feature"])


# ------------------------------------------------------------------------------ references
def test_null_model_residuals_against_R():
    """R 4.2 (tests/reference/make_survival_analysis_reference.R):
    residuals(coxph(Surv(time, event) ~ 1, ties = "breslow"), type = "martingale" / "deviance")
    """
    ref = json.loads((REF / "expected.json").read_text(encoding="utf-8"))["null_residuals"]
    t, e = np.asarray(ref["time"], float), np.asarray(ref["event"], int)
    np.testing.assert_allclose(null_model_residuals(t, e, "martingale"), ref["martingale"], atol=1e-10)
    np.testing.assert_allclose(null_model_residuals(t, e, "deviance"), ref["deviance"], atol=1e-10)


def test_minimal_depth_of_a_known_tree():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = 10.0 * (X[:, 2] > 0) + 0.01 * rng.normal(size=200)
    forest = RandomForestRegressor(n_estimators=3, max_depth=2, bootstrap=False, max_features=None,
                                   random_state=0).fit(X, y)
    depth, splits = minimal_depth(forest, 4)
    assert depth[2] == 0.0  # every tree splits on feature 2 at the root
    tree = forest.estimators_[0].tree_
    assert depth.max() <= tree.max_depth
    assert splits.sum() == sum((est.tree_.children_left != -1).sum() for est in forest.estimators_)


# ------------------------------------------------------------------------------ bad input
def test_not_fitted():
    with pytest.raises(NotFittedError):
        DeepRadiomicsSignature().predict(np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"ranking": "boruta"}, r"ranking 'boruta' is not valid; expected one of: residual_rf"),
        ({"weighting": "lasso"}, r"weighting 'lasso' is not valid; expected one of: coxnet"),
        ({"top_k": 0}, r"top_k 0 is not valid; expected an integer >= 1"),
        ({"cv_folds": 1}, r"cv_folds 1 is not valid"),
        ({"l1_ratios": (0.0, 0.5)}, r"l1_ratios .* expected values in \(0, 1\]"),
        ({"alpha_min_ratio": 2.0}, r"alpha_min_ratio 2.0 is not valid"),
    ],
)
def test_bad_parameters(data, params, match):
    X, t, e = data
    with pytest.raises(GlioradInputError, match=match):
        DeepRadiomicsSignature(**params).fit(X, (t, e))


def test_bad_inputs(data):
    X, t, e = data
    Xn = X.copy()
    Xn.iloc[3, 7] = np.nan
    with pytest.raises(GlioradInputError, match=r"missing or infinite values in column\(s\) \['f007'\]"):
        DeepRadiomicsSignature(**FAST).fit(Xn, (t, e))
    with pytest.raises(GlioradInputError, match=r"X has 200 rows but y has 199 patients"):
        DeepRadiomicsSignature(**FAST).fit(X, (t[1:], e[1:]))
    with pytest.raises(GlioradInputError, match=r"only 2 event\(s\) among 200 patients"):
        DeepRadiomicsSignature(**FAST).fit(X, (t, np.r_[1, 1, np.zeros(198, int)]))
    with pytest.raises(GlioradInputError, match=r"every feature is constant"):
        DeepRadiomicsSignature(**FAST).fit(np.ones((200, 3)), (t, e))
    with pytest.raises(GlioradInputError, match=r"event must be 0 \(censored\) or 1"):
        DeepRadiomicsSignature(**FAST).fit(X, (t, np.full(200, 2)))
    with pytest.raises(GlioradInputError, match=r"y must be a survival outcome"):
        DeepRadiomicsSignature(**FAST).fit(X, t)
    with pytest.raises(GlioradInputError, match=r"feature column\(s\) \['s'\] are not numeric"):
        DeepRadiomicsSignature(**FAST).fit(X.assign(s="a"), (t, e))


def test_predict_bad_inputs(fitted, data):
    X, _, _ = data
    with pytest.raises(GlioradInputError, match=r"feature table lacks signature feature\(s\)"):
        fitted.predict(X.drop(columns=fitted.features_[0]))
    with pytest.raises(GlioradInputError, match=r"X must have 150 columns \(as in fit\)"):
        fitted.predict(np.zeros((3, 4)))
    Xn = X.copy()
    Xn.loc[0, fitted.features_[0]] = np.inf
    with pytest.raises(GlioradInputError, match=r"missing or infinite values"):
        fitted.predict(Xn)


def _noise(seed: int = 1, n: int = 40, p: int = 6):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, p)), rng.exponential(1000.0, n) + 1, rng.integers(0, 2, n))


def test_noise_gives_a_weighted_signature_not_a_constant_one():
    """Pure-noise features and few patients (this seed): the cross-validated elastic net keeps
    some weight, so the signature still orders the patients."""
    X, t, e = _noise()
    sig = DeepRadiomicsSignature(top_k=3, **FAST).fit(X, (t, e))
    assert sig.empty_reason_ is None and np.count_nonzero(sig.weights_) >= 1
    assert np.ptp(sig.predict(X)) > 0


def test_elastic_net_that_keeps_nothing_is_refused(monkeypatch):
    """An elastic net that sets every weight to 0 at its chosen penalty is refused, never a
    constant signature; with ``allow_empty`` it is one, said so (the survival analysis then
    reports it as a result)."""
    import gliorad.survival.signature as sigmod

    def zero_weights(self, Z, time, event):  # (weights, intercept, alpha, l1_ratio, cv score)
        return np.zeros(Z.shape[1]), 0.0, 1.0, 1.0, 0.5

    monkeypatch.setattr(sigmod.DeepRadiomicsSignature, "_weigh_coxnet", zero_weights)
    X, t, e = _noise()
    with pytest.raises(GlioradInputError, match=r"the elastic net set every signature weight to 0 "
                                                r"\(.*\); the signature would be constant"):
        DeepRadiomicsSignature(top_k=3, **FAST).fit(X, (t, e))
    with pytest.warns(UserWarning, match=r"every signature weight to 0 .* the signature is constant"):
        sig = DeepRadiomicsSignature(top_k=3, allow_empty=True, **FAST).fit(X, (t, e))
    assert "every signature weight to 0" in sig.empty_reason_
    assert not np.any(sig.weights_) and np.ptp(sig.predict(X)) == 0


def test_feature_groups_share_the_slots_between_sources(data):
    """Ranked per source, each source keeps its share of top_k (the unprefixed columns first, an
    odd slot to them) and its informative columns."""
    X, t, e = data
    y = make_survival_y(t, e)
    rng = np.random.default_rng(1)
    deep = pd.DataFrame(rng.normal(size=(len(X), 20)), columns=[f"cnn2d_{j:03d}" for j in range(20)])
    z_proxy = X.iloc[:, :N_INFORMATIVE].mean(axis=1).to_numpy()
    deep.iloc[:, :6] = 2.0 * z_proxy[:, None] + 0.1 * rng.normal(size=(len(X), 6))
    rad = X.iloc[:, :40].copy()
    both = pd.concat([rad, deep], axis=1)
    grouped = DeepRadiomicsSignature(top_k=6, feature_groups=("cnn2d_",), **FAST).fit(both, y)
    assert [f.startswith("cnn2d_") for f in grouped.features_] == [False] * 3 + [True] * 3
    assert set(grouped.features_[:3]) <= {f"f{j:03d}" for j in range(N_INFORMATIVE)}
    assert set(grouped.features_[3:]) <= {f"cnn2d_{j:03d}" for j in range(6)}
    np.testing.assert_allclose(grouped.predict(both), grouped.predict(both.iloc[:, ::-1]))
    odd = DeepRadiomicsSignature(top_k=5, feature_groups=("cnn2d_",), **FAST).fit(both, y)
    assert sum(not f.startswith("cnn2d_") for f in odd.features_) == 3
    with pytest.raises(GlioradInputError, match=r"top_k=1 is smaller than the 2 feature groups"):
        DeepRadiomicsSignature(top_k=1, feature_groups=("cnn2d_",), **FAST).fit(both, y)
