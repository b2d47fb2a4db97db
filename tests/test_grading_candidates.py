"""Grading candidates and the automatic choice (gliorad.grading.candidates, .auto, .comparison;
``grading.model`` / ``grading.candidates``; ``gliorad grade --model/--candidates``): the
scikit-learn contract, names -> estimators, the inner-CV choice (better candidate, ties, failures),
nesting inside the evaluation, leakage through the choice, candidates.csv, the settings dump,
and saved models."""

from __future__ import annotations

import json
import re
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_grading import TINY, _invoke, cohort

from gliorad import stats
from gliorad.errors import GlioradInputError
from gliorad.grading import GradingConfig, GradingModel, cross_validate_grading, load_model
from gliorad.grading import evaluate as grading_evaluate
from gliorad.grading.auto import CHOICE_RULE, AutoGradingModel, make_candidate
from gliorad.grading.candidates import (
    ENET_L1_RATIOS,
    BoostingGrader,
    ForestGrader,
    LogisticGrader,
    SoftVoteGrader,
    SVMGrader,
    single_candidates,
)
from gliorad.grading.comparison import TABLE_COLUMNS
from gliorad.grading.config import EVALUATION_FIELDS
from gliorad.grading.defaults import CANDIDATE_NAMES, MODEL_CHOICES, PAPER_C, PAPER_GAMMA
from gliorad.grading.persist import TRUSTED_TYPES
from gliorad.selection import SelectionFallbackWarning


# ------------------------------------------------------------------------------ data, models
def xor(n=80, p=4, seed=0):
    """HGG where the signs of the first two features differ: a linear model cannot grade it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    return X, ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)


def sparse_linear(n=60, p=40, k=3, seed=0):
    """A logistic signal in ``k`` of ``p`` features: a lasso finds it, a forest dilutes it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    return X, (2.0 * X[:, :k].sum(axis=1) + rng.normal(size=n) > 0).astype(int)


def lasso(**kw):
    return LogisticGrader(Cs=(0.03, 0.3, 3.0), cv=3, **kw)


def forest(n=50, **kw):
    return ForestGrader(n_estimators=n, **kw)


def small_candidates():
    """Fast versions of the single candidates (the search does not depend on their size)."""
    return [("logistic_l1", lasso()), ("rf", forest(20)),
            ("extra_trees", ForestGrader(kind="extra_trees", n_estimators=20)),
            ("hgb", BoostingGrader(max_iter=15))]


def frame(X, y, prefix="P"):
    ids = pd.Index([f"{prefix}{i:03d}" for i in range(len(y))], name="patient_id")
    return (pd.DataFrame(X, index=ids, columns=[f"f{j}" for j in range(X.shape[1])]),
            pd.Series(y, index=ids, name="label"))


# ------------------------------------------------------------------ scikit-learn contract
CHECKED = [
    LogisticGrader(Cs=(0.1, 1.0), cv=2),
    LogisticGrader(l1_ratios=(0.5,), Cs=(0.1, 1.0), cv=2),
    SVMGrader(C_grid=(1.0, 4.0), gamma_grid=(0.1,), cv=2),
    ForestGrader(n_estimators=5),
    ForestGrader(kind="extra_trees", n_estimators=5),
    BoostingGrader(max_iter=5, min_samples_leaf=2),
    SoftVoteGrader([("rf", ForestGrader(n_estimators=5)),
                    ("l1", LogisticGrader(Cs=(0.1, 1.0), cv=2))]),
    AutoGradingModel([("l1", LogisticGrader(Cs=(0.1, 1.0), cv=2)),
                      ("rf", ForestGrader(n_estimators=5))], cv=2),
    AutoGradingModel([("l1", LogisticGrader(Cs=(0.1, 1.0), cv=2)),
                      ("rf", ForestGrader(n_estimators=5))], cv=2, pick="ensemble"),
]


def _expected_failed(estimator):
    """scikit-learn's checks known to fail, with why. Strict xfails (pyproject.toml): a check
    that starts to pass fails the suite. That ``class_weight`` reaches every candidate's own
    estimator is tested directly (test_settings_reach_each_candidates_estimator)."""
    if isinstance(estimator, SVMGrader):
        return {"check_class_weight_classifiers": (
            "as TunedSVC's (test_grading): class_weight reshapes the SVM's margin, but "
            "predictions follow the Platt-scaled probability, fitted to the unweighted labels")}
    if isinstance(estimator, ForestGrader) and estimator.kind == "extra_trees":
        return {"check_class_weight_classifiers": (
            "fully grown extremely randomised trees (no bootstrap, leaves of 1) end in pure "
            "leaves, so a class weight cannot turn a leaf's vote; the check makes scikit-learn's "
            "own forests weight-aware through min_weight_fraction_leaf, which ForestGrader "
            "does not expose")}
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed)
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelectionFallbackWarning)
        check(estimator)


def test_candidates_share_the_fitted_attributes_and_accept_missing_cells():
    X, y = frame(*sparse_linear(n=50, p=12))
    X.iloc[3, 2] = X.iloc[7, 5] = np.nan
    for name, est in small_candidates() + [("svm", SVMGrader(C_grid=(1.0,), gamma_grid=(0.1,),
                                                             cv=3))]:
        est.fit(X, y)
        assert est.n_imputed_cells_ == 2, name
        assert list(est.feature_names_in_) == list(X.columns)
        assert set(est.selected_features_) <= set(X.columns) and est.selected_features_
        assert est.stage_features_ == {"impute": list(X.columns),
                                       "model": est.selected_features_}
        assert est.active_steps_ == ["model"]
        assert list(est.importances_) == est.selected_features_
        prob = est.decision_score(X)
        np.testing.assert_array_equal(prob, est.predict_proba(X)[:, 1])
        assert np.all((prob >= 0) & (prob <= 1)), name
    # the lasso selects its non-zero coefficients, importances are their absolute values
    las = lasso().fit(X, y)
    coef = np.ravel(las.estimator_.named_steps["logistic"].coef_)
    assert las.selected_features_ == [c for c, w in zip(X.columns, coef, strict=True) if w]
    assert set(las.selected_features_) >= {"f0", "f1", "f2"}
    assert las.importances_["f0"] == pytest.approx(abs(coef[0]))
    # the forests' importances are their impurity importances
    rf = forest(20).fit(X, y)
    np.testing.assert_allclose(list(rf.importances_.values()),
                               rf.estimator_.named_steps["forest"].feature_importances_)


def test_logistic_grader_inner_search_matches_gridsearchcv():
    """The L1 model's inner C choice is scikit-learn's grid search on the z-scored data."""
    X, y = sparse_linear(n=60, p=10, seed=3)
    est = LogisticGrader(Cs=(0.05, 0.3, 2.0), cv=3, random_state=4).fit(X, y)
    # reference: GridSearchCV(LogisticRegression(solver="liblinear", l1_ratio=1), {"C": Cs},
    #                         cv=StratifiedKFold(3, shuffle=True, random_state=4),
    #                         scoring="roc_auc") on StandardScaler().fit_transform(X)
    Z = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = GridSearchCV(LogisticRegression(solver="liblinear", l1_ratio=1.0, tol=1e-4,
                                              max_iter=1000, random_state=4),
                           {"C": [0.05, 0.3, 2.0]}, scoring="roc_auc",
                           cv=StratifiedKFold(3, shuffle=True, random_state=4)).fit(Z, y)
    assert est.best_params_["C"] == ref.best_params_["C"]
    assert est.inner_score_ == pytest.approx(ref.best_score_, abs=1e-6)
    assert est.n_iter_ >= 1


def test_svm_grader_moves_the_papers_gamma_grid_to_all_features():
    X, y = sparse_linear(n=40, p=16)
    est = SVMGrader(C_grid=(1.0,), gamma_grid=(0.5, 2.0), reference_features=8, cv=3).fit(X, y)
    assert est.estimator_.named_steps["svm"].gamma_grid == (0.25, 1.0)  # x 8 / 16
    assert est.best_params_["gamma"] in (0.25, 1.0)
    same = SVMGrader(C_grid=(1.0,), gamma_grid=(0.5, 2.0), reference_features=None,
                     cv=3).fit(X, y)
    assert same.estimator_.named_steps["svm"].gamma_grid == (0.5, 2.0)
    with pytest.raises(GlioradInputError, match=r"reference_features 0 is not valid; expected "
                                                r"a positive integer or None"):
        SVMGrader(reference_features=0).fit(X, y)


def test_boosting_runs_on_the_threads_n_jobs_asks_for(monkeypatch):
    """n_jobs as scikit-learn reads it (None: one thread, not OpenMP's every core), for the fit
    and the predictions: folds fitted in parallel must not oversubscribe the cores."""
    from joblib import effective_n_jobs
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_info

    seen = []

    def spy(method):
        original = getattr(HistGradientBoostingClassifier, method)

        def run(self, *args, **kw):
            # every OpenMP runtime loaded (torch may bring a second one into the process)
            seen.append((method, sorted({i["num_threads"] for i in threadpool_info()
                                         if i["user_api"] == "openmp"})))
            return original(self, *args, **kw)
        monkeypatch.setattr(HistGradientBoostingClassifier, method, run)

    spy("fit")
    spy("predict_proba")
    X, y = sparse_linear(n=30, p=4)
    BoostingGrader(max_iter=3).fit(X, y)  # builds its OpenMP pool once before the spying counts
    seen.clear()
    for n_jobs in (None, 2, -1):
        BoostingGrader(max_iter=3, n_jobs=n_jobs).fit(X, y).predict_proba(X)
    if not seen[0][1]:
        pytest.skip("scikit-learn's OpenMP runtime is not visible to threadpoolctl")
    every = effective_n_jobs(-1)
    assert seen == [("fit", [1]), ("predict_proba", [1]), ("fit", [2]), ("predict_proba", [2]),
                    ("fit", [every]), ("predict_proba", [every])]


@pytest.mark.parametrize(("est", "match"), [
    (LogisticGrader(l1_ratios=(1.5,)), r"l1_ratios \(1.5,\) is not valid; expected numbers"),
    (LogisticGrader(Cs=(0.0, 1.0)), r"Cs \(0.0, 1.0\) is not valid; expected positive"),
    (ForestGrader(kind="gbm"), r"kind 'gbm' is not valid; expected one of: rf, extra_trees"),
    (ForestGrader(impute="zero"), r"impute 'zero' is not valid; expected one of: median, mean"),
    (BoostingGrader(class_weight="heavy"), r"class_weight 'heavy' is not valid"),
    (SoftVoteGrader([]), r"SoftVoteGrader: estimators is empty"),
    (SoftVoteGrader([("a", lasso()), ("a", forest(5))]), r"member names repeat: \['a', 'a'\]"),
    (AutoGradingModel([("ensemble", lasso())]), r"names must be unique and not 'ensemble'"),
    (AutoGradingModel([("a", lasso())], ensemble=1), r"ensemble 1 is not valid; expected 0"),
    (AutoGradingModel([("a", lasso())], pick="worst"), r"pick 'worst' is not valid"),
    (AutoGradingModel([("a", lasso())], ensemble=0, pick="ensemble"),
     r"pick 'ensemble' needs ensemble >= 2"),
])
def test_bad_parameters(est, match):
    X, y = sparse_linear(n=30, p=5)
    with pytest.raises(GlioradInputError, match=match):
        est.fit(X, y)


# ----------------------------------------------------------------------- names -> estimators
SETTINGS = {"seed": 7, "inner_cv": 4, "class_weight": "balanced"}


@pytest.mark.parametrize(("name", "cls", "params"), [
    ("paper", GradingModel, {"rf_k": 8, "svm_C": PAPER_C, "random_state": 7, "inner_cv": 4}),
    ("logistic_l1", LogisticGrader, {"l1_ratios": (1.0,), "cv": 4}),
    ("logistic_enet", LogisticGrader, {"l1_ratios": ENET_L1_RATIOS, "cv": 4}),
    ("svm", SVMGrader, {"C_grid": PAPER_C, "gamma_grid": PAPER_GAMMA, "reference_features": 8,
                        "cv": 4}),
    ("rf", ForestGrader, {"kind": "rf"}),
    ("extra_trees", ForestGrader, {"kind": "extra_trees"}),
    ("hgb", BoostingGrader, {}),
    ("ensemble", AutoGradingModel, {"pick": "ensemble", "ensemble": 3, "cv": 4}),
    ("auto", AutoGradingModel, {"pick": "best", "ensemble": 3, "cv": 4}),
])
def test_each_model_name_gives_its_estimator(name, cls, params):
    cfg = GradingConfig.preset("paper", model=name, **SETTINGS)
    for est in (make_candidate(name, cfg), cfg.make_model(n_jobs=1)):
        assert type(est) is cls
        got = est.get_params(deep=False)
        assert {k: got[k] for k in params} == params
        members = est.estimators if cls is AutoGradingModel else [(name, est)]
        if cls is AutoGradingModel:  # every single candidate, in the tie-breaking order
            assert [n for n, _ in members] == [c for c in CANDIDATE_NAMES if c != "ensemble"]
            assert est.random_state == 7
        for member_name, m in members:
            assert type(m) is type(make_candidate(member_name))
            assert m.get_params()["random_state"] == 7
            assert m.get_params()["class_weight"] == "balanced"
    # no settings: each estimator's defaults, the paper preset's
    assert make_candidate(name).get_params(deep=False).keys() == cls().get_params().keys()


def test_settings_reach_each_candidates_estimator():
    X, y = sparse_linear(n=40, p=6)
    cfg = GradingConfig.preset("demo", model="auto", seed=3, class_weight="balanced",
                               impute="mean")
    for name, est in single_candidates(cfg, ("logistic_l1", "svm", "rf", "hgb")):
        inner = est.fit(X, y).estimator_
        steps = getattr(inner, "named_steps", {})
        final = list(steps.values())[-1] if steps else inner
        assert final.get_params()["class_weight"] == "balanced", name
        assert final.get_params()["random_state"] == 3, name
        if "impute" in steps:
            assert steps["impute"].strategy == "mean"


def test_unknown_model_and_candidate_names_are_refused():
    expected = ", ".join(MODEL_CHOICES)
    with pytest.raises(GlioradInputError, match=rf"model 'nonsense' is not valid; expected one "
                                                rf"of: {expected}$"):
        make_candidate("nonsense")
    with pytest.raises(GlioradInputError, match=r"model: model 'xgb' is not valid; expected "
                                                r"one of: auto, paper, logistic_l1"):
        GradingConfig.preset("paper", model="xgb")
    with pytest.raises(GlioradInputError, match=r"candidates boost not known; expected names "
                                                r"among: paper, logistic_l1"):
        single_candidates(names=("rf", "boost"))
    with pytest.raises(GlioradInputError, match=r"candidates 'knn' not known; expected names "
                                                r"among: paper, .*, ensemble"):
        GradingConfig.preset("paper", model="auto", candidates=("rf", "knn"))
    with pytest.raises(GlioradInputError, match=r"candidates lists rf more than once"):
        GradingConfig.preset("paper", model="auto", candidates="rf, svm, rf")
    with pytest.raises(GlioradInputError, match=r"model 'ensemble' needs at least 2 "
                                                r"candidate\(s\) besides 'ensemble'"):
        GradingConfig.preset("paper", model="ensemble", candidates="rf,ensemble")
    # a comma-separated string (the command line's, a YAML scalar) is a list
    cfg = GradingConfig.preset("paper", model="auto", candidates=" rf,hgb ,ensemble")
    assert cfg.candidates == ("rf", "hgb", "ensemble") and cfg.searched() == ("rf", "hgb")
    assert make_candidate("auto", cfg).ensemble == 3
    assert make_candidate("auto", GradingConfig.preset("paper", candidates="rf,hgb")).ensemble == 0


def test_cli_refuses_unknown_model_and_candidates(tmp_path):
    X, y = cohort(n=30, p=4)
    df = X.reset_index().assign(grade=np.where(y.to_numpy() == 1, "HGG", "LGG"))
    df.to_csv(tmp_path / "f.csv", index=False)
    base = ["--features", tmp_path / "f.csv", "--labels", "grade", "--out", tmp_path / "o"]
    res = _invoke(["cv", *base, "--model", "nonsense"])
    assert res.exit_code == 2
    assert ("--model 'nonsense' is not valid; expected one of: " + ", ".join(MODEL_CHOICES)
            in res.output)
    res = _invoke(["fit", *base, "--model", "auto", "--candidates", "rf,unknown,svm"])
    assert res.exit_code == 2
    assert ("--candidates 'rf,unknown,svm': 'unknown' not known; expected a comma-separated "
            "list of: " + ", ".join(CANDIDATE_NAMES)) in res.output
    res = _invoke(["fit", *base, "--model", "auto", "--candidates", " , "])
    assert res.exit_code == 2 and "--candidates ' , ': no name not known" in res.output
    res = _invoke(["cv", *base, "--model", "ensemble", "--candidates", "rf"])
    assert res.exit_code == 2 and "model 'ensemble' needs at least 2 candidate(s)" in res.output
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- the choice
def test_auto_picks_the_forest_on_xor_and_the_lasso_on_a_sparse_linear_signal():
    X, y = xor()
    auto = AutoGradingModel([("logistic_l1", lasso()), ("rf", forest())], ensemble=0,
                            cv=3).fit(X, y)
    inner = {r["candidate"]: r["inner_auc"] for r in auto.inner_scores_}
    assert auto.chosen_ == "rf" and inner["rf"] > inner["logistic_l1"] + 0.2
    # the inner AUC is that of the out-of-fold probabilities over the seeded inner folds:
    # reference cross_val_predict(forest(), X, y, method="predict_proba",
    #                             cv=StratifiedKFold(3, shuffle=True, random_state=0))
    oof = cross_val_predict(forest(), X, y, method="predict_proba",
                            cv=StratifiedKFold(3, shuffle=True, random_state=0))[:, 1]
    np.testing.assert_allclose(auto.oof_["rf"], oof)
    assert inner["rf"] == pytest.approx(roc_auc_score(y, oof))
    # the chosen candidate refitted on every patient gives the predictions
    assert isinstance(auto.estimator_, ForestGrader) and auto.best_params_["model"] == "rf"
    np.testing.assert_array_equal(auto.predict_proba(X), forest().fit(X, y).predict_proba(X))
    assert auto.inner_score_ == inner["rf"]
    assert auto.choice_reason_.startswith(f"highest inner AUC {inner['rf']:.3f} of 2 scored")

    X, y = sparse_linear()
    auto = AutoGradingModel([("rf", forest()), ("logistic_l1", lasso())], ensemble=0,
                            cv=3).fit(X, y)
    inner = {r["candidate"]: r["inner_auc"] for r in auto.inner_scores_}
    assert auto.chosen_ == "logistic_l1" and inner["logistic_l1"] > inner["rf"] + 0.05
    assert isinstance(auto.estimator_, LogisticGrader)
    assert set(auto.selected_features_) >= {"x0", "x1", "x2"}
    table = auto.inner_table()
    assert list(table["candidate"]) == ["rf", "logistic_l1"]
    assert list(table["chosen"]) == [False, True] and set(table["status"]) == {"ok"}


def test_ties_go_to_the_first_listed_and_the_ensemble_last():
    X, y = sparse_linear(seed=1)
    one = LogisticGrader(Cs=(0.3,), cv=2)
    for order in (("a", "b"), ("b", "a")):
        auto = AutoGradingModel([(order[0], one), (order[1], clone(one))], ensemble=2,
                                cv=3).fit(X, y)
        rows = {r["candidate"]: r for r in auto.inner_scores_}
        # identical candidates, and their mean: three equal inner AUCs
        assert rows["a"]["inner_auc"] == rows["b"]["inner_auc"] == rows["ensemble"]["inner_auc"]
        assert rows["ensemble"]["members"] == list(order)
        assert auto.chosen_ == order[0]
    # pick="ensemble": the soft vote of the best members, refitted on every patient
    auto = AutoGradingModel([("a", one), ("rf", forest(10))], pick="ensemble", cv=3).fit(X, y)
    assert auto.chosen_ == "ensemble" and isinstance(auto.estimator_, SoftVoteGrader)
    members = dict(auto.estimator_.estimators_)
    np.testing.assert_allclose(
        auto.decision_score(X),
        (members["a"].decision_score(X) + members["rf"].decision_score(X)) / 2)


def _with_a_missing_cell(X):
    X = X.copy()
    X[5, 3] = np.nan
    return X


def test_a_candidate_that_fails_on_an_inner_fold_is_reported_and_not_chosen():
    """scikit-learn's k-nearest neighbours refuses missing cells: on the XOR signal it beats the
    lasso when it can be fitted, and is not chosen (with the reason) when it cannot."""
    X, y = xor()
    members = [("logistic_l1", lasso()), ("knn", KNeighborsClassifier(5))]
    ok = AutoGradingModel(members, ensemble=0, cv=3).fit(X, y)
    assert ok.chosen_ == "knn"  # the control: it would win
    # a plain scikit-learn classifier is taken to use every feature
    assert ok.selected_features_ == ["x0", "x1", "x2", "x3"] and ok.best_params_ == {"model": "knn"}
    auto = AutoGradingModel(members, ensemble=2, cv=3).fit(_with_a_missing_cell(X), y)
    rows = {r["candidate"]: r for r in auto.inner_scores_}
    assert rows["knn"]["status"] == "failed" and rows["knn"]["inner_auc"] is None
    assert rows["knn"]["reason"].startswith("inner fold 1: ValueError: Input X contains NaN")
    assert rows["ensemble"]["status"] == "not formed"
    assert "needs at least 2 candidates with an inner AUC, 1 had one" in rows["ensemble"]["reason"]
    assert auto.chosen_ == "logistic_l1" and rows["logistic_l1"]["chosen"]
    # none can be scored: the first is refitted (and its failure is not hidden)
    lone = AutoGradingModel([("knn", KNeighborsClassifier(5))], ensemble=0, cv=3)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        lone.fit(_with_a_missing_cell(X), y)


class FitRefusesMissing(ForestGrader):
    """A forest that cannot be fitted on data with a missing cell (as an estimator without
    imputation); it predicts such rows (imputed) once fitted."""

    def fit(self, X, y):
        if np.isnan(np.asarray(X, dtype=float)).any():
            raise ValueError("cannot fit on missing cells")
        return super().fit(X, y)


def test_a_failing_candidate_in_the_evaluation_has_no_auc_and_a_note():
    """The outer folds whose training part holds the missing cell cannot fit the forest (inner
    folds and refit); it has no outer AUC, its table row says why, and the evaluation goes on."""
    X, y = frame(*xor(n=60))
    X.iloc[5, 3] = np.nan
    model = AutoGradingModel([("logistic_l1", lasso()), ("forest", FitRefusesMissing(n_estimators=20))],
                             ensemble=0, cv=3)
    res = cross_validate_grading(X, y, GradingConfig.preset("demo", cv_splits=3, cv_repeats=1),
                                 model=model)
    table = res.candidates.table.set_index("candidate")
    assert pd.isna(table.loc["forest", "auc"])
    assert table.loc["forest", "n_chosen"] <= 1 and table.loc["logistic_l1", "n_chosen"] >= 2
    assert table.loc["forest", "n_failed_folds"] == 4  # 2 outer folds: inner search + refit
    why = "ValueError: cannot fit on missing cells"
    assert re.fullmatch(rf"inner: inner fold \d: {why}; inner fold \d: {why} \| "
                        rf"repeat 1 fold \d: {why}", table.loc["forest", "note"])
    assert table.loc["logistic_l1", "auc"] > 0 and table.loc["logistic_l1", "note"] is None
    assert res.metrics["auc"] == pytest.approx(table.loc["auto", "auc"])
    assert len(res.predictions) == 60


# ------------------------------------------------------------------------------------ nesting
class RecordingGrader(LogisticGrader):
    """The lasso candidate, recording the patients of every fit."""

    seen: ClassVar[list] = []

    def fit(self, X, y):
        RecordingGrader.seen.append(("fit", frozenset(X.index)))
        return super().fit(X, y)


def test_the_inner_search_never_sees_the_outer_test_patients(monkeypatch):
    X, y = frame(*sparse_linear(n=45, p=8))
    RecordingGrader.seen = []
    outer = grading_evaluate._fit_predict

    def recording_outer(model, X_train, y_train, X_test, n_jobs):
        RecordingGrader.seen.append(("outer", frozenset(X_train.index), frozenset(X_test.index)))
        return outer(model, X_train, y_train, X_test, n_jobs)

    monkeypatch.setattr(grading_evaluate, "_fit_predict", recording_outer)
    model = AutoGradingModel([("rec", RecordingGrader(Cs=(0.3,), cv=2)), ("rf", forest(5))],
                             ensemble=0, cv=3)
    cfg = GradingConfig.preset("demo", cv_splits=3, cv_repeats=2)
    res = cross_validate_grading(X, y, cfg, model=model, n_jobs=1)
    events = RecordingGrader.seen
    starts = [i for i, e in enumerate(events) if e[0] == "outer"]
    assert len(starts) == 6 and starts[0] == 0
    for i, j in zip(starts, [*starts[1:], len(events)], strict=True):
        _, train, test = events[i]
        fits = [e[1] for e in events[i + 1:j]]
        assert len(fits) == 3 + 1  # 3 inner folds, then the refit on the outer training part
        for rows in fits:
            assert rows <= train and not rows & test
        assert all(len(rows) < len(train) for rows in fits[:3]) and fits[3] == train
        assert frozenset().union(*fits[:3]) == train  # every training patient trains somewhere
    assert len(res.fits) == 6 and all("chosen" in f for f in res.fits)


# ------------------------------------------------------------------------------------ leakage
@pytest.mark.slow
def test_no_leakage_through_the_choice_noise_gives_auc_one_half_while_a_leaky_choice_does_not():
    """Pure noise, random labels: the nested outer AUC of ``auto`` is ~0.5. The leaky control
    lets each outer fold's test patients choose the candidate (the best of their outer AUCs:
    what an inner search that saw them would do); it is clearly optimistic, so this test would
    catch a search that leaked."""
    rng = np.random.default_rng(0)
    X, y = frame(rng.normal(size=(80, 200)), rng.permutation(np.arange(80) % 2))
    svm = SVMGrader(C_grid=(1.0, 8.0), gamma_grid=(0.03, 0.125), cv=3)
    model = AutoGradingModel([*small_candidates(), ("svm", svm)], ensemble=2, cv=3)
    cfg = GradingConfig.preset("demo", cv_splits=5, cv_repeats=2)
    res = cross_validate_grading(X, y, cfg, model=model, n_jobs=1)
    honest = res.metrics["auc_mean"]
    # the SE of an AUC on 40 + 40 patients under the null is sqrt((n+m+1)/(12 n m)) = 0.065;
    # 0.15 is 2.3 SEs
    assert abs(honest - 0.5) < 0.15
    pred = res.candidates.predictions
    by_fold = [max(stats.roc_auc(g["label"], g["probability"])
                   for _, g in fold.groupby("candidate"))
               for _, fold in pred.groupby(["repeat", "fold"])]
    leaky, nested = float(np.mean(by_fold)), float(np.mean(res.metrics["fold_auc"]))
    assert leaky > 0.6 and leaky > nested + 0.1
    chosen = res.candidates.table.set_index("candidate")["n_chosen"].drop("auto")
    assert chosen.sum() == 10 and len(chosen) == 6


# ------------------------------------------------------------------------ candidates.csv (CLI)
def _delong_reference(y, a, b=None):
    """DeLong's placements computed directly (O(m n), DeLong et al. 1988): the AUC of ``a``
    with its 95% CI, or the paired difference ``a - b`` with its P."""
    y = np.asarray(y)

    def placements(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    auc_a, v10a, v01a = placements(np.asarray(a, float))
    m, n = len(v10a), len(v01a)
    if b is None:
        se = np.sqrt(np.var(v10a, ddof=1) / m + np.var(v01a, ddof=1) / n)
        return auc_a, auc_a - norm.ppf(0.975) * se, auc_a + norm.ppf(0.975) * se
    auc_b, v10b, v01b = placements(np.asarray(b, float))
    var = (np.var(v10a - v10b, ddof=1) / m + np.var(v01a - v01b, ddof=1) / n)
    z = (auc_a - auc_b) / np.sqrt(var)
    return auc_a - auc_b, 2 * norm.sf(abs(z))


@pytest.fixture
def table_csv(tmp_path):
    X, y = cohort(n=48, p=10, informative=(1, 4, 7), seed=2)
    df = X.reset_index().assign(grade=np.where(y.to_numpy() == 1, "HGG", "LGG"))
    df.to_csv(tmp_path / "features.csv", index=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("grading:\n" + "".join(
        f"  {k}: {list(v) if isinstance(v, tuple) else v}\n" for k, v in TINY.items()))
    return tmp_path / "features.csv", cfg


def test_cli_cv_auto_writes_the_candidates_table(table_csv, tmp_path):
    path, cfg = table_csv
    out = tmp_path / "cv"
    res = _invoke(["cv", "--features", path, "--labels", "grade", "--out", out, "--preset", "demo",
                   "--config", cfg, "--model", "auto", "--candidates",
                   "paper,logistic_l1,hgb,ensemble", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "candidates (outer AUC, 95% CI; paired DeLong P vs paper" in res.output
    table = pd.read_csv(out / "candidates.csv")
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(table["candidate"]) == ["auto", "paper", "logistic_l1", "hgb", "ensemble"]
    rows = table.set_index("candidate")
    assert np.isnan(rows.loc["paper", "p_vs_paper"]) and np.isnan(rows.loc["paper",
                                                                           "diff_vs_paper"])
    assert rows.drop("paper")["p_vs_paper"].between(0, 1).all()
    singles = rows.drop("auto")
    assert singles["chosen_fraction"].sum() == pytest.approx(1.0)
    assert singles["n_chosen"].sum() == 6 and np.isnan(rows.loc["auto", "chosen_fraction"])
    selection = pd.read_csv(out / "candidate_selection.csv")
    assert set(selection["candidate"]) <= {"paper", "logistic_l1"} and len(selection)
    assert selection["frequency"].between(0, 1).all()
    np.testing.assert_allclose(selection["frequency"], selection["n_selected"] / 6)
    # every candidate's AUC and CI are those of its repeat-1 out-of-fold predictions (the CSV
    # files hold 10 significant digits)
    pred = pd.read_csv(out / "candidate_predictions.csv")
    assert list(pred.columns) == ["patient_id", "label", "candidate", "probability", "fold",
                                  "repeat", "split"]
    assert len(pred) == 4 * 48 * 2
    rep1 = {c: g.set_index("patient_id").sort_index()
            for c, g in pred[pred["repeat"] == 1].groupby("candidate")}
    lab, hgb, paper = rep1["hgb"]["label"], rep1["hgb"]["probability"], rep1["paper"]["probability"]
    # reference: sklearn.metrics.roc_auc_score(label, probability) and DeLong's variance from
    # the placements (_delong_reference); gliorad.stats.roc_auc_ci as a third opinion
    auc, low, high = _delong_reference(lab, hgb)
    assert rows.loc["hgb", "auc"] == pytest.approx(roc_auc_score(lab, hgb), abs=1e-9)
    assert rows.loc["hgb", "auc"] == pytest.approx(auc, abs=1e-9)
    assert (rows.loc["hgb", "auc_ci_low"], rows.loc["hgb", "auc_ci_high"]) == pytest.approx(
        (max(low, 0), min(high, 1)), abs=1e-9)
    ci = stats.roc_auc_ci(lab, hgb)
    assert (ci.ci_low, ci.ci_high) == pytest.approx((rows.loc["hgb", "auc_ci_low"],
                                                     rows.loc["hgb", "auc_ci_high"]))
    diff, p = _delong_reference(lab, hgb, paper.loc[hgb.index])
    assert rows.loc["hgb", "diff_vs_paper"] == pytest.approx(diff, abs=1e-9)
    assert rows.loc["hgb", "p_vs_paper"] == pytest.approx(p, rel=1e-8, abs=1e-12)
    per_repeat = [roc_auc_score(g["label"], g["probability"])
                  for _, g in pred[pred["candidate"] == "hgb"].groupby("repeat")]
    assert rows.loc["hgb", "auc_mean"] == pytest.approx(np.mean(per_repeat))
    assert rows.loc["hgb", "auc_sd"] == pytest.approx(np.std(per_repeat, ddof=1))
    # the auto row is the main result (metrics.json), which records every fold's choice
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert rows.loc["auto", "auc"] == pytest.approx(metrics["auc"])
    assert metrics["candidates"]["rule"] == CHOICE_RULE
    assert len(metrics["candidates"]["choices"]) == 6
    folds = json.loads((out / "folds.json").read_text(encoding="utf-8"))
    assert [f["chosen"] for f in folds] == [c["chosen"] for c in metrics["candidates"]["choices"]]
    assert all(len(f["inner_scores"]) == 4 for f in folds)  # 3 candidates + the ensemble


# ----------------------------------------------------------------------- the settings' dump
def test_default_dump_and_paper_preset_unchanged():
    new = {"model", "candidates", "all_sequences"}
    assert new <= set(EVALUATION_FIELDS)
    for cfg in (GradingConfig(), GradingConfig.preset("paper"), GradingConfig.preset("demo")):
        dump = cfg.model_dump()
        assert not new & set(dump)
        assert set(dump) == set(GradingConfig.model_fields) - new
        assert type(cfg.make_model()) is GradingModel
    assert GradingConfig().model_dump() == GradingConfig.preset("paper").model_dump()
    # set, they are dumped (another run, another fingerprint)
    dump = GradingConfig.preset("paper", model="auto", candidates="rf,svm").model_dump()
    assert dump["model"] == "auto" and dump["candidates"] == ("rf", "svm")
    assert "candidates" not in GradingConfig.preset("paper", model="rf").model_dump()
    # the default model named explicitly dumps as the default
    assert GradingConfig.preset("paper", model="paper").model_dump() == \
        GradingConfig.preset("paper").model_dump()


# ----------------------------------------------------------------------- saved models (CLI)
def test_trusted_types_cover_every_candidate(tmp_path):
    import skops.io as sio

    X, y = frame(*sparse_linear(n=40, p=6))
    X.iloc[2, 1] = np.nan
    fitted = [est.fit(X, y) for _, est in small_candidates()]
    fitted.append(SVMGrader(C_grid=(1.0,), gamma_grid=(0.1,), cv=2).fit(X, y))
    fitted.append(AutoGradingModel(small_candidates(), pick="ensemble", cv=2).fit(X, y))
    fitted.append(AutoGradingModel(small_candidates(), refit="all", cv=2).fit(X, y))
    for est in fitted:
        sio.dump(est, tmp_path / "m.skops")
        untrusted = set(sio.get_untrusted_types(file=tmp_path / "m.skops"))
        assert untrusted <= set(TRUSTED_TYPES), (type(est).__name__, untrusted - set(TRUSTED_TYPES))


@pytest.mark.parametrize(("model", "extra"), [("rf", []),
                                              ("auto", ["--candidates", "logistic_l1,hgb,svm"])])
def test_cli_fit_saves_the_candidate_and_evaluate_reproduces_it(table_csv, tmp_path, model,
                                                                  extra):
    import skops.io as sio

    path, cfg = table_csv
    fit_dir = tmp_path / "fit"
    res = _invoke(["fit", "--features", path, "--labels", "grade", "--out", fit_dir, "--preset",
                   "demo", "--config", cfg, "--model", model, *extra, "--jobs", "1"])
    assert res.exit_code == 0, res.output
    untrusted = sio.get_untrusted_types(file=fit_dir / "model.skops")
    assert set(untrusted) <= set(TRUSTED_TYPES)
    with open(fit_dir / "model.skops", "rb") as fh:
        assert fh.read(2) == b"PK"  # a skops zip archive, not a pickle
    info = json.loads((fit_dir / "model.json").read_text(encoding="utf-8"))
    assert info["model"] == model and info["config"]["model"] == model
    loaded = load_model(fit_dir)
    # the same model fitted in memory
    table = pd.read_csv(path).set_index("patient_id")
    X, y = table.drop(columns="grade"), (table["grade"] == "HGG").astype(int)
    settings = GradingConfig.from_yaml(cfg, "demo").model_dump()
    config = GradingConfig.from_dict({**settings, "model": model,
                                      "candidates": (extra[1] if extra else None)})
    memory = config.make_model(n_jobs=1).fit(X, y)
    assert type(loaded) is type(memory)
    if model == "auto":
        assert info["chosen"] == memory.chosen_ == loaded.chosen_
        assert info["choice_rule"] == CHOICE_RULE and f"model auto: chose {info['chosen']}" \
            in res.output
        assert [r["candidate"] for r in info["inner_scores"]] == ["logistic_l1", "svm", "hgb"]
    else:
        assert "chosen" not in info and "model: rf" in res.output
        assert isinstance(loaded, ForestGrader) and loaded.n_estimators == 500
    assert info["selected_features"] == memory.selected_features_
    # new patients: grade evaluate's probabilities are the in-memory model's
    Xn, _ = cohort(n=20, p=10, informative=(1, 4, 7), seed=9)
    Xn.index = [f"N{i}" for i in range(20)]
    Xn.rename_axis("patient_id").reset_index().to_csv(tmp_path / "new.csv", index=False)
    res = _invoke(["evaluate", "--model", fit_dir, "--features", tmp_path / "new.csv", "--out",
                   tmp_path / "ev"])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv").set_index("patient_id")
    np.testing.assert_allclose(pred.loc[Xn.index, "probability"], memory.decision_score(Xn),
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(loaded.predict_proba(Xn), memory.predict_proba(Xn))
