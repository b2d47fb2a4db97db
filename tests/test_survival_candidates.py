"""The survival model search (issue 18 item 2; not in the paper): the candidates as scikit-learn
estimators (gliorad.survival.candidates), the inner cross-validated choice on the training cohort
(gliorad.survival.search), what ``survival fit --model`` writes, the bundle and ``predict`` of
every candidate.

Layers: references (the Cox elastic net against scikit-survival called directly; the inner
C-index against lifelines / scikit-survival over the same out-of-fold predictions), properties
on cohorts designed here (an interaction only trees can see, clinical factors only, pure noise:
the choice follows the data, never the external cohort, and the nested estimate does not leak),
and the contract / bad-input paths. Cohorts are seeded and small (80-150 patients, a few
features, tens of trees)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)
from typer.testing import CliRunner

from gliorad.commands.survival import app
from gliorad.errors import GlioradInputError
from gliorad.settings import merge
from gliorad.survival.bundle import load_bundle, save_bundle
from gliorad.survival.candidates import (
    CANDIDATE_CLASSES,
    BoostedSignature,
    CoxnetSignature,
    ForestSignature,
    NoSignature,
    make_candidate,
)
from gliorad.survival.coding import prepare_table
from gliorad.survival.config import (
    EVENT,
    SURVIVAL_CANDIDATES,
    TIME,
    SurvivalConfig,
    SurvivalWarning,
)
from gliorad.survival.crossval import cross_validate
from gliorad.survival.evaluation import apply_models, run_analysis
from gliorad.survival.models import fit_models
from gliorad.survival.search import TIE, fit_chosen_model, pick_best
from gliorad.survival.signature import make_survival_y
from tests.test_survival_robustness import FAST, _canonical

runner = CliRunner()

#: The robustness tests' small settings, every feature column in the signature (no sequence
#: choice), tiny candidates and 3 inner folds; train on centre B, validate on A.
TINY = merge(FAST, {
    "sequence": {"sequences": [], "deep_prefix": None},
    "split": {"method": "column", "column": "centre", "train": "B"},
    "factors": ["age", "grade", "histology"],
    "search": {"inner_folds": 3, "rsf_trees": 30, "rsf_min_samples_leaf": 5, "gbcox_trees": 40,
               "coxnet_n_alphas": 8},
})
#: The factor rule without P-value selection (every model exists on every fold: fewer Cox fits).
PRESPECIFIED = {"clinical_selection": "prespecified", "integrated_selection": "prespecified"}
#: SurvivalConfig's fields before the model search existed: its default dump keeps exactly these.
FIELDS_BEFORE_SEARCH = {
    "population", "split", "sequence", "signature", "cutoff", "cutoff_minprop", "factors",
    "reference_levels", "labels", "p_threshold", "clinical_selection", "integrated_selection",
    "force_signature", "min_level_size", "missing", "min_events_per_factor", "times",
    "calibration_boot", "calibration_groups", "cv_folds", "seed", "n_jobs"}


def _config(**changes) -> SurvivalConfig:
    return SurvivalConfig.model_validate(merge(TINY, changes))


def make_survival_cohort(folder: Path, kind: str, n_train: int = 100, n_ext: int = 50,
                         n_features: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A canonical clinical table (centre B trains, A validates; age, sex, grade, histology) and
    a feature table ``f0..`` of standard normal features. The hazard (exponential times, uniform
    censoring on 300-6000 days) comes from:

    ``interaction``: ``1.6 sign(f0 f1)`` (no linear trace in either feature) plus a weak clinical
    part; ``clinical``: age, grade and histology only (the features are noise); ``noise``: nothing
    (the times are shuffled across patients)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_ext
    age = np.clip(rng.normal(45, 12, n), 18, 85).round(1)
    grade = np.where(rng.uniform(size=n) < 0.45, "III", "II")
    hist = rng.choice(["astrocytoma", "oligodendroglioma", "oligoastrocytoma"], n,
                      p=[0.45, 0.3, 0.25])
    sex = np.where(rng.uniform(size=n) < 0.55, "M", "F")
    x = rng.normal(size=(n, n_features))
    clinical_lp = 0.05 * (age - 45) + 1.2 * (grade == "III") - 1.0 * (hist == "oligodendroglioma")
    lp = {"interaction": 1.6 * np.sign(x[:, 0] * x[:, 1]) + 0.3 * clinical_lp,
          "clinical": clinical_lp, "noise": np.zeros(n)}[kind]
    death = rng.exponential(2000.0 * np.exp(-lp)) + 1.0
    censor = rng.uniform(300.0, 6000.0, n)
    t, e = np.minimum(death, censor).round(1), (death <= censor).astype(int)
    if kind == "noise":
        order = rng.permutation(n)
        t, e = t[order], e[order]
    ids = [f"{'B' if i < n_train else 'A'}{i:03d}" for i in range(n)]
    clin = pd.DataFrame({"patient_id": ids, "age": age, "sex": sex, "grade": grade,
                         "histology": hist, "centre": np.where(np.arange(n) < n_train, "B", "A"),
                         "os_time": t, "event": e})
    feats = pd.DataFrame(x, index=pd.Index(ids, name="patient_id"),
                         columns=[f"f{j}" for j in range(n_features)])
    return _canonical(folder, clin), feats


def _training(clin: pd.DataFrame, feats: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    table, fcols, _ = prepare_table(feats, clin)
    return table[table["centre"] == "B"], fcols


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("candidates")


@pytest.fixture(scope="module")
def interaction(folder):
    return make_survival_cohort(folder / "interaction", "interaction", seed=0)


# ================================================================== estimators, names, options
def _xy(n: int = 60, p: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{j}" for j in range(p)])
    lp = X["x0"] - 0.5 * X["x1"]
    time = rng.exponential(1000 * np.exp(-lp)) + 1
    event = (rng.uniform(size=n) < 0.7).astype(int)
    return X, make_survival_y(time, event)


TINY_CANDIDATES = [CoxnetSignature(n_alphas=5, cv_folds=3),
                   ForestSignature(n_estimators=10, min_samples_leaf=5),
                   BoostedSignature(n_estimators=10), NoSignature()]


@pytest.mark.parametrize("est", TINY_CANDIDATES, ids=lambda e: e.name)
def test_candidates_follow_the_sklearn_contract(est):
    name = type(est).__name__
    check_no_attributes_set_in_init(name, est)
    check_parameters_default_constructible(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, est)
    X, y = _xy()
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(NotFittedError):
        est.formula_text()
    fitted = clone(est).fit(X, y)
    params = fitted.get_params()
    assert params == est.get_params()  # fit does not change the parameters
    unfitted = [k for k in vars(fitted) if k not in params and not k.endswith("_")]
    assert unfitted == []
    assert not any(k.endswith("_") for k in vars(clone(fitted)))  # clone: unfitted again
    risk = fitted.predict(X)
    assert risk.shape == (len(X),) and np.isfinite(risk).all()
    assert fitted.training_risk_.shape == (len(X),)
    np.testing.assert_array_equal(fitted.predict(X.to_numpy()), risk)  # array = same columns
    assert 0.0 <= fitted.score(X, y) <= 1.0
    json.dumps(fitted.to_dict())  # signature.json
    assert fitted.formula()["feature"].tolist() == fitted.features_
    if isinstance(est, NoSignature):
        assert fitted.features_ == [] and (risk == 0).all() and fitted.empty_reason_
        assert fitted.n_features_in_ == X.shape[1]
        return
    assert fitted.features_ == list(X.columns) and fitted.n_features_in_ == 5
    np.testing.assert_allclose(fitted.center_, X.mean().to_numpy())
    np.testing.assert_allclose(fitted.scale_, X.std(ddof=0).to_numpy())
    assert np.unique(risk).size > 1  # the signal of x0/x1 is seen
    # the training risk is out-of-sample (out-of-bag, out-of-fold) unless asked in-sample
    assert not np.allclose(fitted.training_risk_, risk)
    if not isinstance(est, ForestSignature):
        insample = clone(est).set_params(training_score="in_sample").fit(X, y)
        np.testing.assert_allclose(insample.training_risk_, risk)


def test_candidates_refuse_bad_input():
    X, y = _xy()
    est = CoxnetSignature(n_alphas=5, cv_folds=3)
    bad = X.copy()
    bad.iloc[3, 1] = np.nan
    with pytest.raises(GlioradInputError, match=r"features have missing or infinite values in "
                       r"column\(s\) \['x1'\] \(rows \['3'\]\); impute or drop them first"):
        est.fit(bad, y)
    for candidate in (est, NoSignature()):
        with pytest.raises(GlioradInputError, match=r"X has 59 rows but y has 60 outcomes"):
            candidate.fit(X.iloc[1:], y)
    assert NoSignature().fit(X.to_numpy(), y).n_features_in_ == 5  # counted, never read
    with pytest.raises(GlioradInputError, match=r"coxnet: every feature is constant in the "
                       r"training data \(5 column\(s\), 60 patients\)"):
        est.fit(X * 0.0, y)
    with pytest.raises(GlioradInputError, match=r"feature column\(s\) \['s'\] are not numeric"):
        est.fit(X.assign(s="a"), y)
    fitted = est.fit(X, y)
    with pytest.raises(GlioradInputError, match=r"feature table lacks signature feature\(s\) "
                       r"\['x4'\]"):
        fitted.predict(X.drop(columns="x4"))
    with pytest.raises(GlioradInputError, match=r"X must have 5 columns \(as in fit\); got shape "
                       r"\(60, 4\)"):
        fitted.predict(X.to_numpy()[:, :4])


def test_make_candidate_for_every_name_and_unknown_names():
    cfg = SurvivalConfig(seed=7, n_jobs=2, search={"rsf_trees": 11, "gbcox_max_depth": 3,
                                                   "coxnet_l1_ratio": 0.9, "inner_folds": 4})
    assert set(CANDIDATE_CLASSES) == set(SURVIVAL_CANDIDATES) - {"paper"}
    for name, cls in CANDIDATE_CLASSES.items():
        est = make_candidate(name, cfg)
        assert type(est) is cls and est.name == name
    assert make_candidate("rsf", cfg).get_params() == {
        "n_estimators": 11, "min_samples_leaf": 10, "random_state": 7, "n_jobs": 2}
    assert make_candidate("coxnet", cfg).get_params() == {
        "l1_ratio": 0.9, "n_alphas": 30, "alpha_min_ratio": 0.01, "cv_folds": 4,
        "random_state": 7, "training_score": "out_of_fold"}
    gb = make_candidate("gbcox", cfg).get_params()
    assert gb["max_depth"] == 3 and gb["cv_folds"] == 4 and gb["training_score"] == "out_of_fold"
    ins = SurvivalConfig(search={"training_score": "in_sample"})
    assert make_candidate("coxnet", ins).training_score == "in_sample"
    assert make_candidate("gbcox", ins).training_score == "in_sample"
    for name in ("nonsense", "paper", "auto"):
        with pytest.raises(GlioradInputError, match=rf"survival model '{name}' is not a "
                           r"candidate; expected one of: coxnet, rsf, gbcox, clinical"):
            make_candidate(name, cfg)
    with pytest.raises(ValueError, match=r"model 'nonsense' is not valid; expected one of: "
                       r"paper, auto, clinical, coxnet, gbcox, rsf"):
        SurvivalConfig(model="nonsense")
    with pytest.raises(ValueError, match=r"candidates 'svm' not known; expected names among: "
                       r"paper, clinical, coxnet, gbcox, rsf"):
        SurvivalConfig(candidates=["rsf", "svm"])
    with pytest.raises(ValueError, match=r"candidates lists rsf more than once"):
        SurvivalConfig(candidates="rsf, coxnet,rsf")
    with pytest.raises(ValueError, match=r"candidates is empty"):
        SurvivalConfig(candidates=[])
    # auto searches the listed candidates in the tie-breaking order, whatever the listed order
    assert SurvivalConfig(candidates="rsf,paper").searched() == ("paper", "rsf")
    assert SurvivalConfig().searched() == SURVIVAL_CANDIDATES


@pytest.mark.parametrize("command", ["fit", "cv"])
def test_cli_refuses_unknown_model_and_candidates(command, tmp_path):
    base = [command, str(tmp_path / "f.csv"), str(tmp_path / "c.csv"), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*base, "--model", "nonsense"])
    assert res.exit_code == 2
    assert ("error: --model 'nonsense' is not valid; expected one of: paper, auto, clinical, "
            "coxnet, gbcox, rsf") in res.output
    res = runner.invoke(app, [*base, "--model", "auto", "--candidates", "coxnet,unknown"])
    assert res.exit_code == 2
    assert ("error: --candidates 'coxnet,unknown': 'unknown' not known; expected a "
            "comma-separated list of: paper, clinical, coxnet, gbcox, rsf") in res.output
    res = runner.invoke(app, [*base, "--candidates", " , "])
    assert res.exit_code == 2 and "--candidates ' , ': no name not known" in res.output
    res = runner.invoke(app, [*base, "--candidates", "rsf,rsf"])
    assert res.exit_code == 2 and "candidates lists rsf more than once" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("survival: {model: svm}\n", encoding="utf-8")
    res = runner.invoke(app, [*base, "--config", str(bad)])
    assert res.exit_code == 2 and "model 'svm' is not valid" in res.output
    res = runner.invoke(app, [*base, "--model", "auto", "--factor-rules", "paper,stepwise"])
    assert res.exit_code == 2
    assert re.search(r"--factor-rules 'stepwise' is not valid; expected one of: paper, "
                     r"prespecified", res.output), res.output
    res = runner.invoke(app, [*base, "--factor-rules", " , "])
    assert res.exit_code == 2 and "--factor-rules ' , ': expected a comma-separated" in res.output
    res = runner.invoke(app, [*base, "--factor-rules", "paper,paper"])
    assert res.exit_code == 2 and "each rule once" in res.output
    assert not (tmp_path / "o").exists()


def test_default_settings_dump_is_unchanged():
    """New settings at their defaults are left out of the dump (fingerprints of runs made before
    the model search stay the same); set, they are in it."""
    assert set(SurvivalConfig().model_dump()) == FIELDS_BEFORE_SEARCH
    assert set(SurvivalConfig.preset("paper").model_dump(mode="json")) == FIELDS_BEFORE_SEARCH
    dump = SurvivalConfig(model="auto", candidates="rsf,clinical",
                          search={"rsf_trees": 5}).model_dump(mode="json")
    assert dump["model"] == "auto" and dump["candidates"] == ["rsf", "clinical"]
    assert dump["search"]["rsf_trees"] == 5
    assert SurvivalConfig.model_validate(dump) == SurvivalConfig.model_validate(
        {"model": "auto", "candidates": ["rsf", "clinical"], "search": {"rsf_trees": 5}})


# ================================================================== references
def test_coxnet_matches_scikit_survival():
    """The candidate is scikit-survival's path on the training-z-scored features, its penalty
    the best fold-size-weighted held-out C-index:

    Z = (X - X.mean()) / X.std(ddof=0)
    path = CoxnetSurvivalAnalysis(l1_ratio=0.7, n_alphas=6, alpha_min_ratio=0.05).fit(Z, y)
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=1).split(Z, event):
        fold = CoxnetSurvivalAnalysis(l1_ratio=0.7, alphas=path.alphas_).fit(Z[tr], y[tr])
        concordance_index_censored(event[te], time[te], Z[te] @ fold.coef_[:, j])[0]
    """
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    X, y = _xy(n=90, p=6, seed=3)
    est = CoxnetSignature(l1_ratio=0.7, n_alphas=6, alpha_min_ratio=0.05, cv_folds=3,
                          random_state=1).fit(X, y)
    Z = ((X - X.mean()) / X.std(ddof=0)).to_numpy()
    time, event = y["time"], y["event"]
    path = CoxnetSurvivalAnalysis(l1_ratio=0.7, n_alphas=6, alpha_min_ratio=0.05).fit(Z, y)
    np.testing.assert_allclose(est.alphas_, path.alphas_, rtol=1e-12)
    total, size = np.zeros(6), 0
    oof = np.full((time.size, 6), np.nan)
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=1).split(Z, event):
        fold = CoxnetSurvivalAnalysis(l1_ratio=0.7, alphas=path.alphas_).fit(Z[tr], y[tr])
        lp = Z[te] @ fold.coef_
        oof[te] = lp
        total += te.size * np.array([concordance_index_censored(event[te], time[te], lp[:, j])[0]
                                     for j in range(6)])
        size += te.size
    ref = total / size
    np.testing.assert_allclose(est.cv_scores_, ref, rtol=1e-10)
    best = int(np.argmax(ref))
    assert est.alpha_ == pytest.approx(path.alphas_[best], rel=1e-12)
    assert est.cv_score_ == pytest.approx(ref[best], rel=1e-10)
    np.testing.assert_allclose(est.weights_, path.coef_[:, best], rtol=1e-10, atol=1e-12)
    assert np.count_nonzero(est.weights_) > 0 and est.empty_reason_ is None
    # the score is the linear predictor of raw features with the raw weights
    np.testing.assert_allclose(est.predict(X), X.to_numpy() @ (est.weights_ / est.scale_)
                               - (est.center_ / est.scale_) @ est.weights_, rtol=1e-9)
    formula = est.formula()
    np.testing.assert_allclose(formula["raw_weight"], est.weights_ / est.scale_)
    # the training patients' score: the fold model's held-out linear predictor at the chosen
    # penalty (out_of_fold, the default), or the final model's (in_sample)
    np.testing.assert_allclose(est.training_risk_, oof[:, best], rtol=1e-10, atol=1e-12)
    assert est.to_dict()["training_risk"] == "out-of-fold"
    ins = CoxnetSignature(l1_ratio=0.7, n_alphas=6, alpha_min_ratio=0.05, cv_folds=3,
                          random_state=1, training_score="in_sample").fit(X, y)
    np.testing.assert_allclose(ins.training_risk_, ins.predict(X), rtol=1e-12)
    np.testing.assert_allclose(ins.weights_, est.weights_, rtol=0, atol=0)


def test_boosted_training_score_is_cross_fitted():
    """gbcox's training score is out-of-fold: each fold's patients scored by a boosted model
    fitted without them (the final model's weights and predictions unchanged):

    for tr, te in StratifiedKFold(3, shuffle=True, random_state=2).split(Z, event):
        GradientBoostingSurvivalAnalysis(loss="coxph", n_estimators=15, learning_rate=0.1,
            subsample=0.8, max_depth=2, min_samples_leaf=5, random_state=2
        ).fit(Z[tr], y[tr]).predict(Z[te])
    """
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis

    X, y = _xy(n=80, p=4, seed=5)
    kw = {"n_estimators": 15, "learning_rate": 0.1, "subsample": 0.8, "max_depth": 2,
          "random_state": 2}
    est = BoostedSignature(**kw, cv_folds=3).fit(X, y)
    Z = ((X - X.mean()) / X.std(ddof=0)).to_numpy()
    ref = np.empty(len(Z))
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=2).split(Z, y["event"]):
        ref[te] = GradientBoostingSurvivalAnalysis(loss="coxph", min_samples_leaf=5, **kw).fit(
            Z[tr], y[tr]).predict(Z[te])
    np.testing.assert_allclose(est.training_risk_, ref, rtol=1e-10, atol=1e-12)
    assert est.to_dict()["training_risk"] == "out-of-fold"
    ins = BoostedSignature(**kw, training_score="in_sample").fit(X, y)
    np.testing.assert_allclose(ins.training_risk_, ins.predict(X), rtol=1e-12)
    np.testing.assert_allclose(ins.predict(X), est.predict(X), rtol=1e-12)
    assert ins.to_dict()["training_risk"] == "in-sample"
    # too few events for 2 folds: the in-sample score, stated
    y1 = y.copy()
    y1["event"] = False
    y1["event"][0] = True
    one = BoostedSignature(**kw).fit(X, y1)
    assert one.training_risk_source_ == "in-sample"


@pytest.mark.parametrize("cls", [CoxnetSignature, BoostedSignature])
def test_out_of_fold_training_score_carries_no_optimism_on_noise(cls):
    """On features unrelated to survival the final model's in-sample score still ranks its
    own training patients (the fit's optimism); the out-of-fold score does not."""
    from gliorad.stats import concordance_index

    rng = np.random.default_rng(11)
    n = 150
    X = pd.DataFrame(rng.normal(size=(n, 30)), columns=[f"x{j}" for j in range(30)])
    y = make_survival_y(rng.exponential(1000, n) + 1, rng.uniform(size=n) < 0.7)
    kw = {"n_alphas": 10, "alpha_min_ratio": 0.001} if cls is CoxnetSignature else {}
    oof = cls(**kw).fit(X, y)
    ins = cls(**kw, training_score="in_sample").fit(X, y)
    c_oof = concordance_index(y["time"], y["event"], oof.training_risk_)
    c_ins = concordance_index(y["time"], y["event"], ins.training_risk_)
    assert abs(c_oof - 0.5) < 0.08
    assert ins.empty_reason_ is None  # this seed's elastic net keeps features (it may not)
    assert c_ins > c_oof + 0.1


def test_training_score_refuses_unknown_values():
    X, y = _xy()
    for cls in (CoxnetSignature, BoostedSignature):
        with pytest.raises(GlioradInputError, match=r"training_score 'loo' is not valid; "
                                                     r"expected one of: out_of_fold, in_sample"):
            cls(training_score="loo").fit(X, y)
    with pytest.raises(ValueError, match=r"training_score"):
        SurvivalConfig(search={"training_score": "loo"})


def test_inner_c_index_is_the_fold_weighted_harrell_c(interaction):
    """Each candidate's inner C-index is Harrell's C of the integrated model's held-out linear
    predictor, the mean over the inner folds weighted by their size, from lifelines:

    concordance_index(time[te], -lp, event[te])     # lifelines: higher score = longer survival
    inner C = sum(len(te) * C_fold) / sum(len(te))

    and the signature's own out-of-fold C-index from scikit-survival
    (concordance_index_censored(event, time, signature_score))."""
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    clin, feats = interaction
    train, fcols = _training(clin, feats)
    cfg = _config(model="auto", candidates=["coxnet", "rsf"], **PRESPECIFIED)
    search = _quiet(fit_chosen_model, train, fcols, cfg, name="B", nomograms=False).search
    assert search.inner_folds == 3 and list(search.candidates) == ["coxnet", "rsf"]
    folds = StratifiedKFold(3, shuffle=True, random_state=cfg.seed).split(train, train[EVENT])
    parts = {n: [] for n in search.candidates}
    sig_parts = {n: [] for n in search.candidates}
    for tr, te in folds:
        held = train.iloc[te]
        for n in search.candidates:
            m = _quiet(fit_models, train.iloc[tr], fcols, cfg.model_copy(update={"model": n}),
                       nomograms=False)
            lp = m.linear_predictor(held)
            assert lp.index.equals(held.index)
            parts[n].append((len(lp), concordance_index(held[TIME], -lp, held[EVENT])))
            score = m.signature.predict(held[m.signature.features_])
            sig_parts[n].append((len(held), concordance_index_censored(
                held[EVENT].astype(bool).to_numpy(), held[TIME].to_numpy(), score)[0]))
    for n, s in search.candidates.items():
        w = np.array([k for k, _ in parts[n]])
        assert s.inner_c_index == pytest.approx(
            np.dot(w, [c for _, c in parts[n]]) / w.sum(), rel=1e-12)
        assert s.inner_c_index_signature == pytest.approx(
            np.dot(w, [c for _, c in sig_parts[n]]) / w.sum(), rel=1e-12)
        assert s.inner_folds == 3 and s.reason is None and s.constant_folds == []


# ================================================================== the choice
def test_pick_best_best_score_wins_ties_go_to_the_first_candidate():
    assert pick_best({"rsf": 0.61, "coxnet": 0.60, "clinical": 0.55}) == (
        "rsf", "best inner C-index (0.6100)")
    # a tie (within 1e-12) goes to the first of SURVIVAL_CANDIDATES, whatever the dict order
    chosen, why = pick_best({"rsf": 0.6, "gbcox": 0.6 + TIE / 4, "clinical": 0.6 - TIE / 4})
    assert chosen == "clinical"
    assert why == ("best inner C-index (0.6000), tied with gbcox, rsf: the first in the order "
                   "paper, clinical, coxnet, gbcox, rsf")
    assert pick_best({"rsf": 0.6, "paper": 0.6})[0] == "paper"
    assert pick_best({"rsf": 0.6 + 1e-9, "paper": 0.6})[0] == "rsf"  # beyond the tie
    # no score (a failed candidate) and NaN are skipped, never chosen
    assert pick_best({"paper": None, "coxnet": float("nan"), "gbcox": 0.52})[0] == "gbcox"
    assert pick_best({"paper": None, "rsf": None}) == (None, "no candidate has a score")
    assert pick_best({}) == (None, "no candidate has a score")


def test_a_candidate_failing_on_a_fold_has_no_inner_c_and_is_not_chosen(interaction,
                                                                        monkeypatch):
    clin, feats = interaction
    train, fcols = _training(clin, feats)
    # in-sample boosted scores: the interaction makes gbcox the choice (see below)
    cfg = _config(model="auto", candidates=["clinical", "gbcox", "rsf"],
                  search={"training_score": "in_sample"}, **PRESPECIFIED)
    real = BoostedSignature._fit

    def fails_on_folds(self, Z, time, event):  # the inner folds only: the whole cohort fits
        if Z.shape[0] < len(train):
            raise ValueError("boosting diverged")
        return real(self, Z, time, event)

    before = _quiet(fit_chosen_model, train, fcols, cfg, nomograms=False).search
    assert before.chosen == "gbcox"  # the interaction favours it (see below)
    monkeypatch.setattr(BoostedSignature, "_fit", fails_on_folds)
    search = _quiet(fit_chosen_model, train, fcols, cfg, nomograms=False).search
    gb = search.candidates["gbcox"]
    assert gb.inner_c_index is None and gb.inner_folds == 0
    assert gb.reason == "inner fold 1: ValueError: boosting diverged"
    assert search.chosen == "rsf" and search.candidates["rsf"].inner_c_index is not None
    row = search.table().set_index("candidate").loc["gbcox"]
    assert not row["chosen"] and row["reason"] == gb.reason and pd.isna(row["inner_c_index"])
    # every candidate fails: the first searched is fitted, with a warning saying why
    monkeypatch.setattr(SurvivalConfig, "searched", lambda self: ("gbcox",))
    with pytest.warns(SurvivalWarning, match=r"no candidate could be scored by inner "
                      r"cross-validation \(gbcox: inner fold 1: ValueError: boosting diverged\); "
                      r"the first searched, gbcox, is fitted"):
        models = fit_chosen_model(train, fcols, cfg, nomograms=False)
    assert models.search.chosen == "gbcox"


def test_a_fold_that_keeps_no_factor_scores_one_half(folder):
    """'Nothing significant' in an inner fold is a result, not a failure: the fold's model gives
    every held-out patient the same risk, so its C-index is 0.5; the candidate stays in the
    search (it was skipped before, so auto chose among the candidates that happened to keep a
    factor on every fold)."""
    clin, feats = make_survival_cohort(folder / "noise80", "noise", n_train=80, n_ext=0, seed=2)
    train, fcols = _training(clin, feats)
    # the paper's factor rule at P < 1e-6: on noise no factor is kept on any fold
    cfg = _config(model="auto", candidates=["clinical", "coxnet"], p_threshold=1e-6)
    models = _quiet(fit_chosen_model, train, fcols, cfg, nomograms=False)
    for name, s in models.search.candidates.items():
        assert s.constant_folds == [1, 2, 3] and s.reason is None, name
        assert s.inner_c_index == 0.5 and s.inner_folds == 3
        assert any(f"{name} kept no factor in inner fold(s) 1, 2, 3" in n for n in models.notes)
    assert models.search.chosen == "clinical"  # the tie goes to the first in the order
    assert models.search.why.endswith("tied with coxnet: the first in the order paper, "
                                      "clinical, coxnet, gbcox, rsf")
    assert models.integrated is None and models.clinical is None  # a result, with its reason
    assert "no factor has P < 1e-06" in models.model_info["integrated"]["reason"]


def test_auto_prefers_trees_when_survival_follows_an_interaction(interaction):
    """sign(f0 f1) has no linear trace: the Cox elastic net finds nothing (its integrated model
    is about the clinical one), the forest and the boosted trees find it."""
    clin, feats = interaction
    train, fcols = _training(clin, feats)
    search = _quiet(fit_chosen_model, train, fcols, _config(model="auto", **PRESPECIFIED),
                    nomograms=False).search
    c = {n: s.inner_c_index for n, s in search.candidates.items()}
    assert search.chosen in ("rsf", "gbcox")
    assert max(c["rsf"], c["gbcox"]) > max(c["coxnet"], c["clinical"], c["paper"]) + 0.02
    assert search.why == f"best inner C-index ({max(c.values()):.4f})"


def test_auto_keeps_the_clinical_model_when_features_are_noise(folder):
    """Survival from clinical factors only, features pure noise: with the paper's factor rule
    the noise signatures are not kept (P >= 0.05), so their integrated models are the clinical
    one: the choice is the clinical model or ties with it. The boosted model's out-of-fold
    training score shows no association either, so it is not kept; its in-sample score
    (``training_score: in_sample``) looks significant, is kept and costs C-index."""
    clin, feats = make_survival_cohort(folder / "clinical", "clinical", seed=0)
    train, fcols = _training(clin, feats)
    search = _quiet(fit_chosen_model, train, fcols, _config(model="auto"),
                    nomograms=False).search
    c = {n: s.inner_c_index for n, s in search.candidates.items()}
    assert abs(c[search.chosen] - c["clinical"]) <= TIE
    assert c["clinical"] > 0.6  # the clinical factors carry the signal
    assert abs(c["gbcox"] - c["clinical"]) <= TIE
    insample = _quiet(fit_chosen_model, train, fcols,
                      _config(model="auto", candidates=["clinical", "gbcox"],
                              search={"training_score": "in_sample"}), nomograms=False).search
    ci = {n: s.inner_c_index for n, s in insample.candidates.items()}
    assert ci["clinical"] == c["clinical"] and ci["gbcox"] < ci["clinical"] - 0.01
    assert insample.chosen == "clinical"


# ================================================================== no external influence
def _searched_patients(monkeypatch) -> list[pd.Index]:
    """The patients of every model search from now on (the table :func:`inner_scores` gets)."""
    import gliorad.survival.search as search_module

    seen: list[pd.Index] = []
    real = search_module.inner_scores

    def spy(train, *args, **kwargs):
        seen.append(train.index)
        return real(train, *args, **kwargs)

    monkeypatch.setattr(search_module, "inner_scores", spy)
    return seen


@pytest.mark.slow
def test_external_cohort_never_influences_the_choice(folder, monkeypatch):
    """The search reads the training cohort only: replacing the external cohort's features and
    survival by other values, or removing it, changes neither the choice nor the chosen model."""
    clin, feats = make_survival_cohort(folder / "external", "interaction", n_train=80,
                                       n_ext=40, seed=1)
    cfg = _config(model="auto", candidates=["clinical", "coxnet", "rsf"], times=[1095.0],
                  **PRESPECIFIED)
    seen = _searched_patients(monkeypatch)
    base = _quiet(run_analysis, feats, clin, cfg)
    ext = clin["centre"] == "A"
    rng = np.random.default_rng(99)
    feats2 = feats.copy()
    feats2.loc[ext.to_numpy()] = rng.normal(3.0, 2.0, size=(int(ext.sum()), feats.shape[1]))
    clin2 = clin.copy()
    clin2.loc[ext, TIME] = rng.uniform(10, 9000, int(ext.sum())).round(1)
    clin2.loc[ext, EVENT] = rng.integers(0, 2, int(ext.sum()))
    other = _quiet(run_analysis, feats2, clin2, cfg)
    alone = _quiet(run_analysis, feats.loc[~ext.to_numpy()], clin.loc[~ext], cfg)
    assert set(alone.cohorts) == {"B"} and set(base.cohorts) == {"B", "A"}
    training = [p for p in feats.index if p.startswith("B")]
    assert len(seen) == 3 and all(list(patients) == training for patients in seen)
    inner = ["candidate", "chosen", "inner_c_index", "inner_c_index_signature", "inner_folds",
             "reason"]
    ref = base.models.search.table()[inner]
    for run in (other, alone):
        m = run.models
        assert m.search.chosen == base.models.search.chosen
        pd.testing.assert_frame_equal(m.search.table()[inner], ref, check_exact=True)
        assert m.signature.to_dict() == base.models.signature.to_dict()
        assert m.cutoff == base.models.cutoff
        pd.testing.assert_series_equal(m.integrated.model.coef_,
                                       base.models.integrated.model.coef_, check_exact=True)
    # the external C-indices are reported after the choice, and they do change
    assert base.models.search.table()["c_index_A"].notna().all()
    assert not other.models.search.table()["c_index_A"].equals(
        base.models.search.table()["c_index_A"])
    assert "c_index_A" not in alone.models.search.table()


# ================================================================== leakage
@pytest.mark.slow
def test_nested_search_does_not_leak_and_the_leaky_estimate_does(folder, monkeypatch):
    """Noise features, survival times shuffled across patients: the cross-validated C-index of
    auto (the search nested in each outer fold: it never sees the fold's held-out patients) is
    0.5 within 2.58 standard errors (99 %); choosing a candidate and reporting its C-index on
    the patients it was chosen and fitted on is far above that band (the test can fail)."""
    from gliorad.stats import concordance_ci

    clin, feats = make_survival_cohort(folder / "noise", "noise", n_train=120, n_ext=0,
                                       n_features=6, seed=0)
    cfg = _config(model="auto", cv_folds=3, split={"method": "none"}, **PRESPECIFIED)
    seen = _searched_patients(monkeypatch)
    res = _quiet(cross_validate, feats, clin, cfg)
    assert {"model", "inner_c_index"} <= set(res.folds.columns)
    assert set(res.folds["model"]) <= set(SURVIVAL_CANDIDATES)
    oof = res.oof
    assert len(oof) == 120 and oof["lp_integrated"].notna().all()
    assert len(seen) == 3  # one search per outer fold, on its training part only
    for k, searched in enumerate(seen, start=1):
        held = oof.index[oof["fold"] == k]
        assert searched.intersection(held).empty and len(searched) + len(held) == 120
    honest = concordance_ci(oof[TIME], oof[EVENT], oof["lp_integrated"])
    band = 2.576 * honest.se
    assert 0.02 < honest.se < 0.06
    assert abs(honest.c_index - 0.5) < band, (honest.c_index, honest.se)
    assert abs(res.summary["c_index_integrated_mean"] - 0.5) < band
    # leaky: every candidate fitted on all patients, the best apparent C-index on them
    table, fcols, _ = prepare_table(feats, clin)
    y = make_survival_y(table[TIME], table[EVENT])
    apparent = {n: make_candidate(n, cfg).fit(table[fcols], y).score(table[fcols], y)
                for n in ("coxnet", "gbcox", "rsf")}
    leaky = max(apparent.values())
    assert leaky > 0.5 + band, apparent


# ================================================================== outputs
@pytest.fixture(scope="module")
def cli_inputs(folder, interaction):
    clin, feats = interaction
    d = folder / "cli"
    d.mkdir()
    feats.to_csv(d / "features.csv")
    raw = clin.reset_index().rename(columns={"os_days": "os_time"})
    raw[["patient_id", "age", "sex", "grade", "histology", "centre", "os_time", "event"]].to_csv(
        d / "clinical.csv", index=False)
    settings = merge(TINY, {"split": {"train": "B", "external": ["A"]}, "times": [1095.0],
                            **PRESPECIFIED})
    (d / "config.yaml").write_text(yaml.safe_dump({"survival": settings}), encoding="utf-8")
    settings.pop("search")  # the paper's run: no setting of the search
    (d / "paper.yaml").write_text(yaml.safe_dump({"survival": settings}), encoding="utf-8")
    return d


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::gliorad.survival.config.SurvivalWarning")
def test_cli_fit_auto_writes_the_candidates_and_paper_writes_what_it_did(cli_inputs):
    d = cli_inputs
    base = ["fit", str(d / "features.csv"), str(d / "clinical.csv"), "--config",
            str(d / "config.yaml")]
    res = runner.invoke(app, [*base, "--out", str(d / "auto"), "--model", "auto"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((d / "auto" / "metrics.json").read_text(encoding="utf-8"))
    ms = metrics["model_search"]
    assert ms["setting"] == "auto" and ms["inner_folds"] == 3
    assert ms["tie_order"] == list(SURVIVAL_CANDIDATES)
    assert f"model auto: {ms['chosen']} (best inner C-index" in res.output
    table = pd.read_csv(d / "auto" / "candidates.csv")
    assert list(table["candidate"]) == list(SURVIVAL_CANDIDATES)
    assert table["chosen"].sum() == 1
    assert table.loc[table["chosen"], "candidate"].item() == ms["chosen"]
    assert table["inner_c_index"].notna().all() and (table["inner_folds"] == 3).all()
    for col in ("c_index_A", "ci_low_A", "ci_high_A"):
        assert table[col].notna().all(), col
    assert (table["ci_low_A"] < table["c_index_A"]).all()
    assert (table["c_index_A"] < table["ci_high_A"]).all()
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["c_index_A"] == pytest.approx(metrics["cohorts"]["A"]["c_index_integrated"],
                                                rel=1e-12)
    assert chosen["inner_c_index"] == table["inner_c_index"].max()
    bundle = json.loads((d / "auto" / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert bundle["signature_model"] == ms["chosen"]
    assert bundle["model_search"] == {k: ms[k] for k in ("setting", "chosen", "why",
                                                         "inner_folds")}
    prov = json.loads((d / "auto" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["key"]["config"]["model"] == "auto"
    # the factor rule searched too: one row per (candidate, rule), the bundle names both
    res = runner.invoke(app, [*base, "--out", str(d / "rules"), "--model", "auto", "--candidates",
                              "clinical,coxnet", "--factor-rules", "paper,prespecified"])
    assert res.exit_code == 0, res.output
    ms = json.loads((d / "rules" / "metrics.json").read_text(encoding="utf-8"))["model_search"]
    table = pd.read_csv(d / "rules" / "candidates.csv")
    assert table[["model", "factor_rule"]].values.tolist() == [
        ["clinical", "paper"], ["clinical", "prespecified"], ["coxnet", "paper"],
        ["coxnet", "prespecified"]]
    assert list(table["candidate"]) == ["clinical (paper)", "clinical (prespecified)",
                                        "coxnet (paper)", "coxnet (prespecified)"]
    bundle = json.loads((d / "rules" / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert bundle["signature_model"] == ms["chosen_model"]
    assert bundle["model_search"]["chosen_factor_rule"] == ms["chosen_factor_rule"]
    assert ms["chosen"] == f"{ms['chosen_model']} ({ms['chosen_factor_rule']})"
    # paper (the default): no search, no candidates.csv, no new keys anywhere
    res = runner.invoke(app, [*base[:-1], str(d / "paper.yaml"), "--out", str(d / "paper")])
    assert res.exit_code == 0, res.output
    assert "model paper" not in res.output and "inner C" not in res.output
    names = {p.name for p in (d / "paper").iterdir()}
    assert "candidates.csv" not in names
    assert names == {p.name for p in (d / "auto").iterdir()} - {"candidates.csv"} | (
        {"signature_ranking.csv"})
    metrics = json.loads((d / "paper" / "metrics.json").read_text(encoding="utf-8"))
    assert "model_search" not in metrics and metrics["signature"]["weights"] is not None
    bundle = json.loads((d / "paper" / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert "signature_model" not in bundle and "model_search" not in bundle
    assert set(bundle["config"]) == FIELDS_BEFORE_SEARCH
    prov = json.loads((d / "paper" / "provenance.json").read_text(encoding="utf-8"))
    assert set(prov["key"]["config"]) == FIELDS_BEFORE_SEARCH


# ================================================================== bundle and predict
@pytest.fixture(scope="module")
def bundle_cohort(folder):
    clin, feats = make_survival_cohort(folder / "bundle", "interaction", n_train=90, n_ext=0,
                                       seed=4)
    return clin, feats, *_training(clin, feats)


@pytest.mark.parametrize("case", ["paper", "coxnet", "rsf", "gbcox", "clinical",
                                  "rsf+continuous"])
def test_bundle_of_every_candidate_predicts_as_the_fitted_models(case, bundle_cohort, tmp_path):
    """Fit (survival.model NAME, and ``+continuous``: ``signature_term: continuous``), save the
    survival bundle, load it (skops with the trusted types, no pickle): the risk score, risk
    group, continuous term and nomograms of the training patients, in the cohort evaluation and
    in ``predict``'s survival part, are the fitted models'."""
    import skops.io as sio

    from gliorad.predict import _survival
    from gliorad.predict_page import summary_page
    from gliorad.survival.bundle import TRUSTED_TYPES

    name, _, term = case.partition("+")
    clin, feats, train, fcols = bundle_cohort
    cfg = _config(model=name, search={"inner_folds": 2}, times=[1095.0],
                  signature_term=term or "group", **PRESPECIFIED)
    models = _quiet(fit_chosen_model, train, fcols, cfg, name="B")
    assert ("signature_z" in models.integrated_factors) == (term == "continuous")
    save_bundle(models, tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text(encoding="utf-8"))
    assert ("signature_z" in meta) == (term == "continuous")
    assert meta.get("signature_model") == (None if name == "paper" else name)
    data = (tmp_path / "b" / "signature.skops").read_bytes()
    assert set(sio.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    loaded = load_bundle(tmp_path / "b")
    assert type(loaded.signature) is type(models.signature)
    assert loaded.signature.features_ == models.signature.features_
    # the cohort evaluation of the training patients (as 'survival validate' does)
    a = _quiet(apply_models, models, feats.loc[train.index], clin.loc[train.index])
    b = _quiet(apply_models, loaded, feats.loc[train.index], clin.loc[train.index])
    pd.testing.assert_frame_equal(a.cohorts["validation"].predictions,
                                  b.cohorts["validation"].predictions, check_exact=False,
                                  rtol=1e-12)
    preds = a.cohorts["validation"].predictions
    assert {"integrated_total_points", "integrated_surv_1095"} <= set(preds.columns)
    # predict's survival part for three training patients
    for pid in train.index[:3]:
        row = {c: float(feats.at[pid, c]) for c in feats.columns}
        values = {"age": str(clin.at[pid, "age"]), "grade": clin.at[pid, "grade"],
                  "histology": clin.at[pid, "histology"]}
        mem, msg = _survival(SimpleNamespace(survival=models, config={}), row, values, None)
        out, msg2 = _survival(SimpleNamespace(survival=loaded, config={}), row, values, None)
        assert msg == msg2 == []
        assert out == mem
        nom = out["nomograms"]["integrated"]
        assert nom["computed"]
        assert nom["total_points"] == pytest.approx(preds.at[pid, "integrated_total_points"],
                                                    rel=1e-10)
        assert nom["survival"]["3-year"] == pytest.approx(preds.at[pid, "integrated_surv_1095"],
                                                          rel=1e-10)
        if name == "clinical":
            assert out["signature_score"] is None and out["risk_group"] is None
            assert "no signature score or risk group" in " ".join(out["notes"])
        else:
            assert out["signature_score"] == pytest.approx(preds.at[pid, "signature_score"],
                                                           rel=1e-12)
            assert out["risk_group"] == preds.at[pid, "signature"]
        if term:
            assert out["signature_z"] == pytest.approx(preds.at[pid, "signature_z"], rel=1e-12)
            assert nom["points"]["signature_z"] is not None
        else:
            assert "signature_z" not in out and "signature_z" not in preds
    page = summary_page(
        {"grading": None, "survival": out, "mask": {"volume_ml": 1.0, "source": "given"},
         "inputs": {"native_spacing_mm": [1, 1, 1], "resampled": False, "sequences": {}},
         "bundle": {"path": "b", "created_utc": "-", "gliorad_version": "-",
                    "manifest_sha256": "-", "components": ["survival"]},
         "patient_dir": "p", "run": {"created_utc": "-"}, "patient_id": "p"}, {}, "t1ce")
    assert ("none: the survival model is the clinical model" in page) == (name == "clinical")
    # scikit-survival state (forest, boosting) loads only with the minor version it was saved with
    meta["versions"]["scikit-survival"] = "0.1.0"
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    if name in ("rsf", "gbcox"):
        with pytest.raises(GlioradInputError, match=rf"the signature \({name}\) was saved with "
                           r"scikit-survival 0\.1\.0; scikit-survival .* is installed: install "
                           r"scikit-survival==0\.1\.0"):
            load_bundle(tmp_path / "b")
    else:  # plain arrays: any version
        assert load_bundle(tmp_path / "b").signature.features_ == models.signature.features_


# ================================================================== the factor rule searched too
def test_factor_rules_search_scores_each_rule_as_its_own_search(interaction, tmp_path):
    """``search.factor_rules``: each (candidate, rule) pair's inner C-index is the one a search
    under that rule alone gives (same seeded folds); the best pair is fitted with that rule for
    both Cox models; the external report, the table and the bundle follow."""
    clin, feats = interaction
    train, fcols = _training(clin, feats)
    both = _config(model="auto", candidates=["clinical", "coxnet"],
                   search={"factor_rules": ["paper", "prespecified"]})
    models = _quiet(fit_chosen_model, train, fcols, both, nomograms=False)
    search = models.search
    assert list(search.candidates) == ["clinical (paper)", "clinical (prespecified)",
                                       "coxnet (paper)", "coxnet (prespecified)"]
    for rule in ("paper", "prespecified"):
        alone = _quiet(fit_chosen_model, train, fcols,
                       _config(model="auto", candidates=["clinical", "coxnet"],
                               clinical_selection=rule, integrated_selection=rule),
                       nomograms=False).search
        for n in ("clinical", "coxnet"):
            s = search.candidates[f"{n} ({rule})"]
            assert (s.candidate, s.factor_rule) == (n, rule)
            assert s.inner_c_index == alone.candidates[n].inner_c_index
    best = max(search.candidates.values(), key=lambda s: s.inner_c_index)
    assert search.chosen == best.name and search.why.startswith("best inner C-index")
    assert (search.chosen_model, search.chosen_rule) == (best.candidate, best.factor_rule)
    assert models.config.clinical_selection == models.config.integrated_selection \
        == best.factor_rule
    table = search.table()
    assert table[["model", "factor_rule"]].values.tolist() == [
        ["clinical", "paper"], ["clinical", "prespecified"], ["coxnet", "paper"],
        ["coxnet", "prespecified"]]
    d = search.to_dict()
    assert d["factor_rules"] == ["paper", "prespecified"]
    assert (d["chosen_model"], d["chosen_factor_rule"]) == (best.candidate, best.factor_rule)
    # a named model: only its factor rule is chosen
    named = _quiet(fit_chosen_model, train, fcols,
                   _config(model="coxnet", search={"factor_rules": ["paper", "prespecified"]}),
                   nomograms=False).search
    c = {n: s.inner_c_index for n, s in named.candidates.items() if s.candidate == "coxnet"}
    assert named.chosen_model == "coxnet" and named.chosen == max(c, key=c.get)
    assert named.why.startswith("set by survival.model (coxnet); factor rule: best inner")
    # end to end: every pair reported externally, the bundle names the model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = run_analysis(feats, clin, both)
    ext = analysis.models.search.candidates
    for s in ext.values():  # the paper's rule keeps no factor on this cohort: a result
        assert (s.external["A"].get("c_index") is not None
                or s.external["A"]["reason"] == "no integrated model"), s.name
    assert ext["coxnet (prespecified)"].external["A"]["c_index"] is not None
    save_bundle(analysis.models, tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert meta["signature_model"] == analysis.models.search.chosen_model
    assert meta["model_search"]["chosen_factor_rule"] == analysis.models.search.chosen_rule
    loaded = load_bundle(tmp_path / "bundle")
    out = apply_models(loaded, feats, clin, by="centre")
    np.testing.assert_allclose(
        out.cohorts["A"].predictions["signature_score"].to_numpy(float),
        analysis.cohorts["A"].predictions["signature_score"].to_numpy(float), rtol=1e-9)


def test_factor_rules_refuse_repeats_and_unknown_rules():
    with pytest.raises(ValueError, match=r"factor_rules \['paper', 'paper'\]: each rule once"):
        SurvivalConfig(search={"factor_rules": ["paper", "paper"]})
    with pytest.raises(ValueError, match=r"factor_rules\.0\n.*'paper' or 'prespecified'"):
        SurvivalConfig(search={"factor_rules": ["stepwise"]})
