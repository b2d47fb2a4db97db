"""Stacked late fusion (gliorad.grading.stacking) and its use in the paper tables and the pipeline:
the combiner is refitted here with plain scikit-learn calls (reference), properties on seeded
data with two independent signals, and every bad-input path."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from gliorad.errors import GlioradInputError
from gliorad.grading.config import GradingConfig
from gliorad.grading.evaluate import cross_validate_grading, split_evaluate_grading
from gliorad.grading.paper import paper_tables
from gliorad.grading.stacking import StackedGradingModel, logit
from gliorad.stats import roc_auc

TINY = {"svm_C": (1.0, 8.0), "svm_gamma": (0.03, 0.125), "rf_n_estimators": 30, "rf_k": 3,
        "lasso_strengths": 4, "lasso_cv": 3, "inner_cv": 3, "cv_splits": 3, "cv_repeats": 1}


def tiny(**kw) -> GradingConfig:
    return GradingConfig.preset("demo", **{**TINY, **kw})


def two_signals(n=200, seed=0, score_signal=1.0):
    """Grade follows two independent latent variables: ``a`` is seen by the feature columns
    (f0, f1 noisy copies of it, f2..f7 noise), ``b`` only by the score column (a probability
    from another model). Each source alone is ~0.75 AUC; together ~0.9."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (a + b + 0.4 * rng.normal(size=n) > 0).astype(int)
    X = rng.normal(size=(n, 8))
    X[:, 0] += 1.5 * a
    X[:, 1] += 1.0 * a
    ids = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id")
    df = pd.DataFrame(X, index=ids, columns=[f"f{j}" for j in range(8)])
    df["cnn"] = 1 / (1 + np.exp(-2.0 * score_signal * (b + 0.5 * rng.normal(size=n))))
    return df, pd.Series(y, index=ids)


def parts_of(ids, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.random(len(ids))
    return {i: ("train" if v < 0.6 else "val" if v < 0.8 else "test") for i, v in zip(ids, r)}


# ------------------------------------------------------------------------------ reference
def test_combiner_is_logistic_regression_on_out_of_fold_logits():
    X, y = two_signals(n=120)
    base = tiny().make_model()
    m = StackedGradingModel(base, score_columns=("cnn",), cv=4, final_C=0.5, random_state=3)
    m.fit(X, y.to_numpy())
    # reference: the same protocol written out with scikit-learn
    feats = X.drop(columns="cnn")
    skf = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    oof = cross_val_predict(clone(base), feats, y.to_numpy(), cv=skf, method="predict_proba")[:, 1]
    Z = np.column_stack([np.log(np.clip(oof, 1e-4, 1 - 1e-4) / (1 - np.clip(oof, 1e-4, 1 - 1e-4))),
                         np.log(X["cnn"] / (1 - X["cnn"]))])
    ref = LogisticRegression(C=0.5).fit(Z, y.to_numpy())
    np.testing.assert_allclose([m.stack_weights_["radiomics"], m.stack_weights_["cnn"]],
                               ref.coef_[0], rtol=1e-6)
    assert m.stack_weights_["intercept"] == pytest.approx(ref.intercept_[0], rel=1e-6)
    full = clone(base).fit(feats, y.to_numpy())
    Zn = np.column_stack([logit(full.decision_score(feats)), logit(X["cnn"])])
    np.testing.assert_allclose(m.decision_score(X), ref.predict_proba(Zn)[:, 1], rtol=1e-6)
    assert m.oof_auc_["radiomics"] == pytest.approx(roc_auc(y.to_numpy(), oof))


# ------------------------------------------------------------------------------ properties
def test_stacking_beats_each_source_when_they_see_different_signal():
    X, y = two_signals(n=240)
    parts = parts_of(X.index)
    cfg = tiny()
    rad = split_evaluate_grading(X.drop(columns="cnn"), y, cfg, parts=parts).metrics["auc"]
    test = [i for i in X.index if parts[i] == "test"]
    cnn = roc_auc(y[test].to_numpy(), X.loc[test, "cnn"].to_numpy())
    model = StackedGradingModel(cfg.make_model(), score_columns=("cnn",), cv=3)
    res = split_evaluate_grading(X, y, cfg, model=model, parts=parts)
    assert res.metrics["auc"] > max(rad, cnn) + 0.05
    w = res.fits[0]["best_params"]["stack_weights"]
    assert w["radiomics"] > 0.3 and w["cnn"] > 0.3
    sel = res.selection.set_index("feature")
    assert sel.loc["cnn", "frequency"] == 1.0 and np.isnan(sel.loc["cnn", "mean_importance_when_selected"])


def test_one_score_column_may_be_given_as_a_string():
    X, y = two_signals(n=60)
    a = StackedGradingModel(tiny().make_model(), score_columns="cnn", cv=3).fit(X, y.to_numpy())
    b = StackedGradingModel(tiny().make_model(), score_columns=("cnn",), cv=3).fit(X, y.to_numpy())
    assert a.stack_weights_ == b.stack_weights_ and a.selected_features_[-1] == "cnn"


def test_a_noise_score_gets_little_weight():
    X, y = two_signals(n=240)
    X["cnn"] = np.random.default_rng(5).random(len(X))
    m = StackedGradingModel(tiny().make_model(), score_columns=("cnn",), cv=3).fit(X, y.to_numpy())
    assert abs(m.stack_weights_["cnn"]) < 0.3 < m.stack_weights_["radiomics"]


#: No leak: the cross-validated AUC on pure noise stays within this of 0.5 (120 patients).
NO_LEAK_TOL = 0.15


def noise_cohort(seed=11, n=120):
    """Random labels; 40 noise features, a random score column ``cnn`` and 20 noise columns
    ``images`` for a stand-in network to learn from."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 40)), index=ids, columns=[f"f{j}" for j in range(40)])
    X["cnn"] = rng.random(n)
    y = pd.Series(rng.permutation(np.arange(n) % 2), index=ids)
    return X, y, rng.normal(size=(n, 20))


def stacked_cv_auc(X, y, base=None) -> float:
    model = StackedGradingModel(tiny().make_model() if base is None else base,
                                score_columns=("cnn",), cv=3)
    return cross_validate_grading(X, y, tiny(), model=model).metrics["auc"]


def test_no_leak_with_noise_features_random_labels_and_scores():
    X, y, _ = noise_cohort()
    assert abs(stacked_cv_auc(X, y) - 0.5) < NO_LEAK_TOL


@pytest.mark.parametrize("leak", ["score_saw_every_label", "base_saw_every_label"])
def test_leaky_controls_break_the_no_leak_bound(leak):
    """Controls of the test above, so that it can fail: the same noise and cross-validation with
    one deliberate leak each leave the no-leak bound by a wide margin.

    ``score_saw_every_label``: the score column is a network's in-sample probability (it was
    trained on every patient, as a 3D CNN trained on the whole cohort is; why the stacked rows
    use cross-fitted out-of-fold CNN scores), while the same network's out-of-fold scores stay
    within the bound. ``base_saw_every_label``: the radiomics model was fitted on every patient
    before the cross-validation (frozen, so the folds cannot refit it)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.frozen import FrozenEstimator

    X, y, images = noise_cohort()
    if leak == "score_saw_every_label":
        net = RandomForestClassifier(n_estimators=50, min_samples_leaf=3, random_state=0)
        out_of_fold = cross_val_predict(net, images, y, method="predict_proba",
                                        cv=StratifiedKFold(5, shuffle=True, random_state=0))[:, 1]
        assert abs(stacked_cv_auc(X.assign(cnn=out_of_fold), y) - 0.5) < NO_LEAK_TOL
        in_sample = clone(net).fit(images, y).predict_proba(images)[:, 1]
        leaky = stacked_cv_auc(X.assign(cnn=in_sample), y)
    else:
        seen = tiny().make_model().fit(X.drop(columns="cnn"), y.to_numpy())
        leaky = stacked_cv_auc(X, y, base=FrozenEstimator(seen))
    assert leaky - 0.5 > NO_LEAK_TOL + 0.05


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_column_and_row():
    X, y = two_signals(n=60)
    m = StackedGradingModel(tiny().make_model(), score_columns=("cnn",), cv=3)
    with pytest.raises(GlioradInputError, match=r"needs a DataFrame with the score column\(s\) cnn"):
        m.fit(X.to_numpy(), y)
    with pytest.raises(GlioradInputError, match=r"score column\(s\) cnn not in the table"):
        m.fit(X.drop(columns="cnn"), y)
    bad = X.copy()
    bad.loc["P003", "cnn"] = np.nan
    with pytest.raises(GlioradInputError, match=r"score column 'cnn', row 'P003': nan is not a "
                                                r"probability in \[0, 1\] \(1 bad cell\(s\)\)"):
        m.fit(bad, y)
    bad.loc["P003", "cnn"] = 1.2
    with pytest.raises(GlioradInputError, match=r"row 'P003': 1.2 is not a probability"):
        m.fit(bad, y)
    with pytest.raises(GlioradInputError, match=r"no feature column besides"):
        m.fit(X[["cnn"]], y)
    with pytest.raises(GlioradInputError, match=r"y has only one class"):
        m.fit(X, np.zeros(len(X), int))
    with pytest.raises(GlioradInputError, match=r"smallest class has 1 patient"):
        m.fit(X, np.r_[1, np.zeros(len(X) - 1, int)])
    m.fit(X, y.to_numpy())
    with pytest.raises(GlioradInputError, match=r"feature columns differ from those"):
        m.predict_proba(X.drop(columns="f3"))


# ------------------------------------------------------------------------------ paper tables
def _tables_inputs(n=150):
    X, y = two_signals(n=n, seed=2)
    sets = {"radiomics_t1": X[[f"f{j}" for j in range(4)]],
            "radiomics_flair": X[[f"f{j}" for j in range(4, 8)]]}  # flair: noise only
    cnn = X["cnn"]
    return sets, y, cnn, parts_of(X.index, seed=1)


def test_paper_tables_add_stacked_rows_fused_with_the_validation_best_set():
    sets, y, cnn, parts = _tables_inputs()
    pt = paper_tables(sets, y, {"cnn_patch_se": cnn}, tiny(), scheme="split", split_parts=parts,
                      stack_scores={"cnn_patch_se": cnn})
    t1 = pt.tables["table_1"]
    assert list(t1["set"]) == ["stacked_patch_se"]
    assert t1["Methods"].iloc[0] == ("Stacked: radiomics + CNN scores, Baseline + SE module "
                                     "(MRI patches)")
    assert any(n.startswith("radiomics set fused with the CNN: radiomics_t1 (highest "
                            "validation-part AUC") for n in pt.notes)
    assert any(re.fullmatch(r"stacked_patch_se weights \(log-odds per unit logit\): radiomics "
                            r"\+\d\.\d{3}, cnn_patch_se/probability \+\d\.\d{3}, intercept "
                            r"[+-]\d\.\d{3}", n) for n in pt.notes), pt.notes
    cmp_ = pt.tables["comparisons"].set_index("comparison")
    assert cmp_.loc["best fused vs best CNN", "model_a"] == "stacked_patch_se"
    assert t1["auc"].iloc[0] > pt.tables["table_s3"]["auc"].max()
    assert t1["auc"].iloc[0] > pt.tables["table_2"]["auc"].max()


def test_paper_tables_stack_score_errors():
    sets, y, cnn, parts = _tables_inputs(n=60)
    with pytest.raises(GlioradInputError, match=r"stack score name 'cnn_patch' must be "):
        paper_tables(sets, y, None, tiny(), scheme="split", split_parts=parts,
                     stack_scores={"cnn_patch": cnn})
    with pytest.raises(GlioradInputError, match=r"stack scores 'cnn_patch_se' lack 1 patient\(s\): "
                                                r"P059; stacking needs an out-of-sample score"):
        paper_tables(sets, y, None, tiny(), scheme="split", split_parts=parts,
                     stack_scores={"cnn_patch_se": cnn.iloc[:-1]})
    with pytest.raises(GlioradInputError, match=r"stack scores 'cnn_patch_se': patient 'P000' has "
                                                r"2.0, not a probability"):
        paper_tables(sets, y, None, tiny(), scheme="split", split_parts=parts,
                     stack_scores={"cnn_patch_se": cnn.mask(cnn.index == "P000", 2.0)})
    with pytest.raises(GlioradInputError, match=r"need a radiomics_<sequence> set to fuse with"):
        paper_tables({"deep_patch_se": sets["radiomics_t1"]}, y, None, tiny(), scheme="split",
                     split_parts=parts, stack_scores={"cnn_patch_se": cnn})


# ------------------------------------------------------------------------------ pipeline
def test_honest_cnn_scores_replace_the_training_part(tmp_path):
    from gliorad.workflow import honest_cnn_scores

    full = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "probability": [0.9, 0.8, 0.3, 0.2],
                         "split": ["train", "train", "val", "test"]})
    full.to_csv(tmp_path / "full.csv", index=False)
    pd.DataFrame({"patient_id": ["b", "a"], "probability": [0.4, 0.6], "fold": [1, 2]}).to_csv(
        tmp_path / "oof.csv", index=False)
    s = honest_cnn_scores(tmp_path / "full.csv", tmp_path / "oof.csv")
    assert s.to_dict() == {"a": 0.6, "b": 0.4, "c": 0.3, "d": 0.2}
    pd.DataFrame({"patient_id": ["a"], "probability": [0.6]}).to_csv(tmp_path / "oof.csv",
                                                                      index=False)
    with pytest.raises(GlioradInputError, match=r"oof.csv: no out-of-fold probability for 1 "
                                                r"training patient\(s\): b"):
        honest_cnn_scores(tmp_path / "full.csv", tmp_path / "oof.csv")


def test_cross_fit_setting_adds_the_stage_and_is_checked():
    from gliorad.run_config import load_run_config
    from gliorad.workflow import build_stages

    cfg = load_run_config("demo", {"deep3d": {"cross_fit": 3}})
    stages = {s.name: s for s in build_stages(cfg)}
    names = list(stages)
    assert names.index("deep3d") < names.index("deep3d_oof") < names.index("grade")
    assert "deep3d_oof" in stages["grade"].inputs and stages["deep3d_oof"].settings["folds"] == 3
    off = {s.name: s for s in build_stages(load_run_config("demo", {"deep3d": {"cross_fit": 0}}))}
    assert "deep3d_oof" not in off and "deep3d_oof" not in off["grade"].inputs
    assert off["deep3d"].settings == stages["deep3d"].settings  # the main CNN is not retrained
    with pytest.raises(GlioradInputError, match=r"deep3d.cross_fit: the stacked rows need "
                                                r"grading.scheme split"):
        load_run_config("demo", {"deep3d": {"cross_fit": 3}, "grading": {"scheme": "cv"}})
    cv = load_run_config("demo", {"deep3d": {"cross_fit": 3, "enabled": False},
                                  "grading": {"scheme": "cv"}})
    assert cv.deep3d_cross_fit == 0 and "deep3d_oof" not in [s.name for s in build_stages(cv)]
    for bad in (1, -2, "3", True, 2.5):
        with pytest.raises(GlioradInputError, match=r"deep3d.cross_fit: expected 0 \(off\) or a "
                                                    r"number of folds >= 2"):
            load_run_config("demo", {"deep3d": {"cross_fit": bad}})


def test_out_of_fold_refuses_overlapping_monitor_patients(tmp_path):
    from gliorad.features.deep3d import cnn3d_out_of_fold

    clin = tmp_path / "clin.csv"
    ids = [f"P{i}" for i in range(8)]
    pd.DataFrame({"patient_id": ids, "grade": ["II", "IV"] * 4}).to_csv(clin, index=False)
    with pytest.raises(GlioradInputError, match=r"val_ids and ids overlap \(1 patient\(s\): P0\)"):
        cnn3d_out_of_fold(object(), clin, ids, tmp_path / "o", folds=2, val_ids=["P0", "X9"])


def test_fit_saves_a_stacked_model_that_skops_loads(tmp_path):
    import json

    import skops.io as sio
    from typer.testing import CliRunner

    from gliorad.commands.grade import app
    from gliorad.grading.persist import TRUSTED_TYPES, load_model

    X, y = two_signals(n=80)
    table = X.assign(grade=np.where(y == 1, "IV", "II")).reset_index()
    table.to_csv(tmp_path / "t.csv", index=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("grading:\n" + "".join(
        f"  {k}: {list(v) if isinstance(v, tuple) else v}\n" for k, v in TINY.items()))
    res = CliRunner().invoke(app, ["fit", "--features", str(tmp_path / "t.csv"), "--labels",
                                   "grade", "--out", str(tmp_path / "m"), "--preset", "demo",
                                   "--config", str(cfg), "--stack-column", "cnn", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert re.search(r"stack weights \(log-odds\): radiomics [+-]\d\.\d{3}, cnn [+-]\d\.\d{3}",
                     res.output)
    assert set(sio.get_untrusted_types(file=tmp_path / "m" / "model.skops")) <= set(TRUSTED_TYPES)
    model = load_model(tmp_path / "m")
    assert isinstance(model, StackedGradingModel)
    feats = X.drop(columns=[])
    p = model.decision_score(feats)
    assert p.shape == (80,) and np.all((p > 0) & (p < 1))
    info = json.loads((tmp_path / "m" / "model.json").read_text(encoding="utf-8"))
    assert set(info["stack_weights"]) == {"radiomics", "cnn", "intercept"}
    assert info["selected_features"][-1] == "cnn"
    res = CliRunner().invoke(app, ["fit", "--features", str(tmp_path / "t.csv"), "--labels",
                                   "grade", "--out", str(tmp_path / "m2"), "--stack-column", "nope"])
    assert res.exit_code == 2 and "score column(s) nope not in the table" in res.output
    assert not (tmp_path / "m2" / "model.skops").exists()


def test_bundle_accepts_the_networks_own_probability_column():
    from gliorad.bundle import _deep_column_problems
    from gliorad.grading.stacking import STACK_COLUMN_3D

    assert _deep_column_problems("cnn3d", ["cnn3d_001", STACK_COLUMN_3D], 512, "grading") == []
    assert "cnn3d_prob" in _deep_column_problems("cnn3d", ["cnn3d_prob"], 512, "grading")[0]
