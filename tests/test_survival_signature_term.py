"""``survival.signature_term``: the signature in the integrated Cox model as the paper's high/low
group or as the continuous score z-scored on the training patients (issue 18; not in the paper).

Reference values: scikit-survival's ``CoxPHSurvivalAnalysis`` (Efron ties) on the same design
(age, grade III vs II, histology vs astrocytoma, the z-scored score). Properties: the risk
groups (cut-off, Kaplan-Meier, log-rank) are the same under both terms; with a hazard linear in
the score the continuous term ranks an external cohort better than the median split. Shapes and
edge cases: the dump leaves the default out, a bad value and a factor named like the term are
refused with a message.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from gliorad.errors import GlioradInputError
from gliorad.settings import merge
from gliorad.survival.coding import prepare_table
from gliorad.survival.config import SIGNATURE, SIGNATURE_Z, SurvivalConfig
from gliorad.survival.evaluation import evaluate_cohort
from gliorad.survival.models import fit_models
from tests.test_survival_candidates import FIELDS_BEFORE_SEARCH, PRESPECIFIED, TINY
from tests.test_survival_robustness import _canonical


def _config(**changes) -> SurvivalConfig:
    return SurvivalConfig.model_validate(merge(TINY, {**PRESPECIFIED, **changes}))


def _linear_cohort(folder, n_train: int = 160, n_ext: int = 400, seed: int = 3):
    """Centre B trains, A validates; the log hazard is ``0.03 (age - 45) + 0.5 [grade III]
    + 0.9 f0`` (f0 a standard normal feature, f1 noise): a signature linear in f0 carries
    within-group ranking that a median split discards."""
    rng = np.random.default_rng(seed)
    n = n_train + n_ext
    age = np.clip(rng.normal(45, 12, n), 18, 85).round(1)
    grade = np.where(rng.uniform(size=n) < 0.45, "III", "II")
    hist = rng.choice(["astrocytoma", "oligodendroglioma"], n, p=[0.6, 0.4])
    x = rng.normal(size=(n, 2))
    lp = 0.03 * (age - 45) + 0.5 * (grade == "III") + 0.9 * x[:, 0]
    death = rng.exponential(2000.0 * np.exp(-lp)) + 1.0
    censor = rng.uniform(300.0, 6000.0, n)
    ids = [f"{'B' if i < n_train else 'A'}{i:03d}" for i in range(n)]
    clin = pd.DataFrame({"patient_id": ids, "age": age, "grade": grade, "histology": hist,
                         "sex": np.where(rng.uniform(size=n) < 0.5, "M", "F"),
                         "centre": np.where(np.arange(n) < n_train, "B", "A"),
                         "os_time": np.minimum(death, censor).round(1),
                         "event": (death <= censor).astype(int)})
    feats = pd.DataFrame(x, index=pd.Index(ids, name="patient_id"), columns=["f0", "f1"])
    table, fcols, _ = prepare_table(feats, _canonical(folder, clin))
    return table[table["centre"] == "B"], table[table["centre"] == "A"], fcols


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return _linear_cohort(tmp_path_factory.mktemp("term"))


def _fit(train, fcols, term):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_models(train, fcols, _config(model="coxnet", signature_term=term), name="B")


def test_dump_leaves_the_default_out_and_bad_values_are_refused():
    assert set(SurvivalConfig(signature_term="group").model_dump()) == FIELDS_BEFORE_SEARCH
    dump = SurvivalConfig(signature_term="continuous").model_dump(mode="json")
    assert dump["signature_term"] == "continuous"
    assert SurvivalConfig.model_validate(dump).signature_term == "continuous"
    with pytest.raises(ValueError, match=r"signature_term\n.*'group' or 'continuous'"):
        SurvivalConfig(signature_term="linear")


def test_a_factor_named_like_the_term_is_refused(cohort):
    train, _, fcols = cohort
    with pytest.raises(GlioradInputError, match=r"'signature_z' is added by the analysis; "
                                                 r"remove it from factors"):
        fit_models(train, fcols, _config(factors=["age", SIGNATURE_Z]))


def test_continuous_term_is_the_cox_model_of_the_z_scored_score(cohort):
    """The integrated model's coefficients are scikit-survival's Cox model on the same design
    with the training score z-scored (mean 0, SD 1 with ddof=0); the training score is the
    elastic net's out-of-fold one (``search.training_score``), not its in-sample prediction."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from gliorad.survival.signature import make_survival_y

    train, _, fcols = cohort
    m = _fit(train, fcols, "continuous")
    assert m.signature_term == SIGNATURE_Z and SIGNATURE_Z in m.integrated_factors
    score = m.training_scores.loc[train.index].to_numpy()
    np.testing.assert_allclose(score, m.signature.training_risk_)
    assert not np.allclose(score, m.signature.predict(train[m.signature.features_]))
    assert m.signature_center == pytest.approx(score.mean(), rel=1e-12)
    assert m.signature_scale == pytest.approx(score.std(ddof=0), rel=1e-12)
    # reference: CoxPHSurvivalAnalysis(ties="efron").fit(X, Surv.from_arrays(event, time))
    X = pd.DataFrame({"age": train["age"], "grade_III": (train["grade"] == "III") * 1.0,
                      "oligo": (train["histology"] == "oligodendroglioma") * 1.0,
                      SIGNATURE_Z: (score - score.mean()) / score.std(ddof=0)})
    ref = CoxPHSurvivalAnalysis(ties="efron").fit(X, make_survival_y(train["os_days"],
                                                                     train["event"]))
    table = m.integrated.table.set_index("label")
    assert table.at["Signature (per SD)", "coef"] == pytest.approx(ref.coef_[3], rel=1e-5)
    assert table.at["Age", "coef"] == pytest.approx(ref.coef_[0], rel=1e-5)
    assert table.at["Grade, III vs. II", "coef"] == pytest.approx(ref.coef_[1], rel=1e-5)


def test_groups_are_the_same_and_the_continuous_term_ranks_better(cohort):
    train, ext, fcols = cohort
    group, cont = _fit(train, fcols, "group"), _fit(train, fcols, "continuous")
    assert group.signature_term == SIGNATURE and group.signature_scale is None
    assert cont.cutoff == group.cutoff
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rg, rc = evaluate_cohort(group, ext, "A"), evaluate_cohort(cont, ext, "A")
    pd.testing.assert_series_equal(rg.predictions[SIGNATURE], rc.predictions[SIGNATURE])
    assert rc.metrics["logrank_p"] == rg.metrics["logrank_p"]
    assert rc.metrics["hr_signature"] == rg.metrics["hr_signature_univariate"]
    assert SIGNATURE_Z in rc.predictions and SIGNATURE_Z not in rg.predictions
    assert rc.metrics["hr_signature_per_sd"]["hr"] > 1.5
    assert "hr_signature_per_sd" not in rg.metrics
    # the within-group ranking the median split throws away
    assert rc.metrics["c_index_integrated"] > rg.metrics["c_index_integrated"] + 0.02


def test_cli_signature_term(cohort, tmp_path):
    """``gliorad survival fit --signature-term continuous`` fits the continuous term (metrics,
    Table 3, bundle); a bad value exits 2 naming the option, nothing written."""
    import json

    import yaml
    from typer.testing import CliRunner

    from gliorad.commands.survival import app

    train, ext, fcols = cohort
    table = pd.concat([train, ext])
    table[fcols].to_csv(tmp_path / "f.csv")
    clin = table[["age", "grade", "histology", "sex", "centre", "os_days", "event"]]
    clin.rename(columns={"os_days": "os_time"}).to_csv(tmp_path / "c.csv")
    settings = merge(TINY, {**PRESPECIFIED, "split": {"train": "B", "external": ["A"]},
                            "times": [1095.0]})
    settings.pop("search")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"survival": settings}), encoding="utf-8")
    base = ["fit", str(tmp_path / "f.csv"), str(tmp_path / "c.csv"), "--config",
            str(tmp_path / "s.yaml"), "--model", "coxnet"]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--signature-term", "linear"])
    assert res.exit_code == 2
    assert "--signature-term 'linear' is not valid; expected one of: group, continuous" in res.output
    assert not (tmp_path / "bad").exists()
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--signature-term",
                              "continuous"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert SIGNATURE_Z in metrics["integrated_factors"]
    assert metrics["signature_in_integrated_model"] is True
    assert metrics["cohorts"]["A"]["hr_signature_per_sd"]["hr"] > 1
    bundle = json.loads((tmp_path / "o" / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert bundle["signature_z"]["scale"] > 0
    assert bundle["config"]["signature_term"] == "continuous"
    assert "Signature (per SD)" in (tmp_path / "o" / "table3_integrated.csv").read_text(
        encoding="utf-8")


def test_coxnet_cv_when_a_fold_path_stops_early(cohort):
    """Two strong features: scikit-survival's fold paths stop before the smallest penalties
    (the fit saturates). Found through ``survival fit --model coxnet`` (an IndexError before):
    those penalties get the fold's last fitted predictions, as cv.glmnet pads them."""
    from sklearn.model_selection import StratifiedKFold
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from gliorad.survival.candidates import coxnet_cv
    from gliorad.survival.signature import make_survival_y

    train, _, fcols = cohort
    X = train[fcols].to_numpy(float)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    time, event = train["os_days"].to_numpy(float), train["event"].to_numpy(int)
    # (seed 24: one fold path of 29 penalties for 30, found by trying seeds 0-29)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=24).split(Z, event))
    res = coxnet_cv(Z, time, event, 0.5, 30, 0.01, folds)
    alphas = res["alphas"]
    lengths = [CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=alphas).fit(
        Z[tr], make_survival_y(time[tr], event[tr])).coef_.shape[1] for tr, _ in folds]
    assert min(lengths) < alphas.size  # the case this test is about
    assert res["cv_scores"].shape == alphas.shape and np.isfinite(res["cv_scores"]).all()
    assert res["best"] is not None and res["coef"].shape == (2, alphas.size)


def test_candidates_read_every_sequence_unless_told_to_follow_the_choice():
    """``search.features: all`` (default): a candidate reads every sequence's radiomics plus
    the deep columns, and no sequence choice is made for it; ``sequence``: the chosen
    sequence's columns, as the paper's signature (which always follows the choice)."""
    from gliorad.survival.search import fit_chosen_model
    from gliorad.synthetic import SynthConfig, sample_patients, synthetic_feature_table

    pat = sample_patients(SynthConfig(n_patients=240, seed=4))
    feats = synthetic_feature_table(pat, n_features=60, n_deep=6, seed=0)
    clin = pat.rename(columns={"os_time": "os_days"})[
        ["age", "grade", "grade_group", "histology", "centre", "os_days", "event"]]
    table, fcols, _ = prepare_table(feats, clin)
    train = table[table["centre"] == "B"]
    seqs = {"sequences": ["t1", "t1ce", "t2"], "deep_prefix": "cnn2d_", "n_estimators": 20,
            "cv_folds": 3, "top_k": 5}

    def fit(**search):
        cfg = SurvivalConfig.model_validate(merge(TINY, {
            **PRESPECIFIED, "model": "coxnet", "sequence": seqs,
            "search": {**TINY["search"], **search}}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fit_chosen_model(train, fcols, cfg, name="B")

    every = fit()
    assert every.sequence is None and every.search.sequenced is None
    assert set(every.feature_columns) == set(fcols)  # t1, t1ce, t2 radiomics + cnn2d_
    chosen = fit(features="sequence")
    assert chosen.sequence in ("t1", "t1ce", "t2") and chosen.sequence_choice is not None
    assert set(chosen.feature_columns) == {
        c for c in fcols if c.startswith((f"{chosen.sequence}_", "cnn2d_"))}
    with pytest.raises(ValueError, match=r"search\.features\n.*'all' or 'sequence'"):
        SurvivalConfig.model_validate({"search": {"features": "chosen"}})
