"""The survival analysis has no dead ends on results (issue 16): each "Seen" case of the issue
rebuilt on seeded cohorts made here, the factor rule as a setting (paper | prespecified, with an R
reference for the pre-specified Cox models), null metrics with their reasons, the small-cohort
fallbacks, the split override rule, and what the report, the bundle and the CLI say."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gliorad.clinical import read_clinical
from gliorad.commands.survival import _cli_overrides, _settings, app
from gliorad.errors import GlioradInputError
from gliorad.survival.artifacts import write_analysis
from gliorad.survival.bundle import load_bundle, save_bundle
from gliorad.survival.coding import fit_coding, split_cohorts
from gliorad.survival.config import (
    EVENT,
    SIGNATURE,
    TIME,
    SplitConfig,
    SurvivalConfig,
    SurvivalWarning,
)
from gliorad.survival.crossval import cross_validate
from gliorad.survival.evaluation import apply_models, run_analysis
from gliorad.survival.models import fit_estimable, fused_columns, prespecified_model
from gliorad.survival.sequence_choice import choose_sequence
from gliorad.survival.signature import DeepRadiomicsSignature

ROOT = Path(__file__).resolve().parents[1]
PRE = ROOT / "tests" / "reference" / "prespecified"
PRE_SCRIPT = ROOT / "tests" / "reference" / "make_prespecified_reference.R"
runner = CliRunner()
SEQS = ("t1", "t1ce", "t2")

#: Small and fast settings (a few trees and penalties); the split is given per test.
FAST = {
    "signature": {"n_estimators": 30, "n_alphas": 8, "l1_ratios": [1.0], "cv_folds": 3, "top_k": 4,
                  "min_samples_leaf": 3},
    "sequence": {"n_estimators": 20, "top_k": 3, "cv_folds": 3},
    "calibration_boot": 0, "factors": ["age", "sex", "grade", "histology"], "min_level_size": 3,
}


def make_cohort(sizes: dict[str, int], deaths: dict[str, int], seed: int = 0,
                clinical_effect: float = 1.0, signature_effect: float = 1.0,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A clinical table (CSV layout: ``os_time`` in days) and a feature table: LGG patients per
    centre with exactly ``deaths[centre]`` deaths (those whose death comes longest before their
    last visit, uniform on 300-4000 days; the others are censored before both); hazard from age, grade,
    histology (times ``clinical_effect``) and a latent phenotype (times ``signature_effect``)
    that the t1ce, t1 and deep columns carry."""
    rng = np.random.default_rng(seed)
    rows = []
    for centre, n in sizes.items():
        age = np.clip(rng.normal(45, 12, n), 18, 85).round(1)
        grade = np.where(rng.uniform(size=n) < 0.45, "III", "II")
        hist = rng.choice(["astrocytoma", "oligodendroglioma", "oligoastrocytoma"], n,
                          p=[0.45, 0.3, 0.25])
        sex = np.where(rng.uniform(size=n) < 0.55, "M", "F")
        z = rng.normal(size=n)
        lp = (clinical_effect * (0.05 * (age - 45) + 1.0 * (grade == "III")
                                 - 0.9 * (hist == "oligodendroglioma")
                                 + 0.5 * (hist == "oligoastrocytoma"))
              + signature_effect * 0.8 * z)
        death = np.minimum(rng.exponential(6000.0 * np.exp(-lp)), 12000.0) + 30
        last_seen = rng.uniform(300.0, 4000.0, n)
        ev = np.zeros(n, int)  # the deaths: those who die longest before their last visit
        ev[np.argsort(death / last_seen)[: deaths[centre]]] = 1
        t = np.where(ev == 1, death, np.minimum(death, last_seen) * rng.uniform(0.6, 1.0, n))
        rows += [{"patient_id": f"{centre}{i:03d}", "age": age[i], "sex": sex[i], "grade": grade[i],
                  "histology": hist[i], "centre": centre, "os_time": round(float(t[i]), 1),
                  "event": int(ev[i]), "_z": z[i]} for i in range(n)]
    clin = pd.DataFrame(rows)
    feats = {}
    strength = {"t1": 0.3, "t1ce": 1.0, "t2": 0.2}
    for s in SEQS:
        for j in range(8):
            a = strength[s] if j < 3 else 0.0
            feats[f"{s}_original_firstorder_f{j:02d}"] = a * clin["_z"] + 0.6 * rng.normal(size=len(clin))
    for j in range(6):
        feats[f"cnn2d_{j:03d}"] = (0.8 if j < 2 else 0.0) * clin["_z"] + 0.6 * rng.normal(size=len(clin))
    features = pd.DataFrame(feats).set_index(clin["patient_id"])
    return clin.drop(columns="_z"), features


def _write(folder: Path, clin: pd.DataFrame, feats: pd.DataFrame) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clin.to_csv(folder / "clinical.csv", index=False)
    feats.to_csv(folder / "features.csv", index_label="patient_id")
    return folder / "features.csv", folder / "clinical.csv"


def _canonical(folder: Path, clin: pd.DataFrame) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    clin.to_csv(folder / "clinical.csv", index=False)
    return read_clinical(folder / "clinical.csv")


def _run(feats: pd.DataFrame, clinical: pd.DataFrame, train: str = "B", **cfg):
    settings = {**FAST, "split": {"method": "column", "column": "centre", "train": train}, **cfg}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SurvivalWarning)
        analysis = run_analysis(feats, clinical, SurvivalConfig.model_validate(settings))
    return analysis, [str(w.message) for w in caught if issubclass(w.category, SurvivalWarning)]


def _yaml(folder: Path, extra: str = "") -> Path:
    path = folder / "config.yaml"
    path.write_text(
        "survival:\n"
        "  signature: {n_estimators: 30, n_alphas: 8, l1_ratios: [1.0], cv_folds: 3, top_k: 4,\n"
        "              min_samples_leaf: 3}\n"
        "  sequence: {n_estimators: 20, top_k: 3, cv_folds: 3}\n"
        "  calibration_boot: 0\n"
        "  factors: [age, sex, grade, histology]\n"
        "  min_level_size: 3\n" + extra, encoding="utf-8")
    return path


# ============================================================ (a) nothing significant: a result
@pytest.fixture(scope="module")
def noise_fit(tmp_path_factory):
    """`survival fit` on a cohort whose survival depends on nothing: 35 training patients with
    11 deaths (centre B), external A (40 / 14) and C (6 / 1)."""
    d = tmp_path_factory.mktemp("noise")
    clin, feats = make_cohort({"B": 35, "A": 40, "C": 6}, {"B": 11, "A": 14, "C": 1}, seed=1,
                              clinical_effect=0.0, signature_effect=0.0)
    f, c = _write(d, clin, feats)
    res = runner.invoke(app, ["fit", str(f), str(c), "--config", str(_yaml(d)), "--train", "B",
                              "--out", str(d / "fit")])
    return d, res


def test_no_significant_factor_still_writes_every_result(noise_fit):
    """Seen (a): exit 0 with warnings; tables, KM curves, the signature's C-index and hazard
    ratio are written; the models are null with their reason (an empty Cox model is not a
    model)."""
    d, res = noise_fit
    assert res.exit_code == 0, res.output
    out = d / "fit"
    names = {p.name for p in out.iterdir()}
    for f in ("metrics.json", "signature.json", "signature_formula.csv", "table_univariate.csv",
              "km_B.png", "km_A.png", "km_C.png", "predictions_A.csv", "predictions_C.csv",
              "sequence_choice.csv", "bundle"):
        assert f in names, f
    assert not {"table3_integrated.csv", "nomogram_clinical.png"} & names
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    models = metrics["models"]
    assert not models["integrated"]["fitted"] and not models["clinical"]["fitted"]
    assert models["clinical"]["rule"] == "paper" and models["integrated"]["rule"] == "paper"
    assert "no factor has P < 0.05 univariately" in models["clinical"]["reason"]
    assert "no clinical model either" in models["integrated"]["reason"]
    for name in ("B", "A"):
        c = metrics["cohorts"][name]
        assert c["c_index_signature"]["c_index"] is not None and c["logrank_p"] is not None
        assert c["c_index_integrated"] is None and c["compare_p"] is None
        assert c["null_reasons"]["c_index_integrated"].startswith("no integrated model: ")
        assert c["null_reasons"]["c_index_clinical"].startswith("no clinical model: ")
    assert "no integrated and no clinical model" in res.output
    assert "integrated model (paper rule): not built:" in res.output
    uni = pd.read_csv(out / "table_univariate.csv")
    assert set(uni["factor"]) == {"age", "sex", "grade", "histology", SIGNATURE}


def test_both_models_null_bundle_round_trip(noise_fit):
    d, _ = noise_fit
    loaded = load_bundle(d / "fit" / "bundle")
    assert loaded.integrated is None and loaded.clinical is None
    assert loaded.nomogram_integrated is None and loaded.nomogram_clinical is None
    assert not loaded.model_info["clinical"]["fitted"]
    clin = read_clinical(d / "clinical.csv")
    feats = pd.read_csv(d / "features.csv", index_col="patient_id")
    again = apply_models(loaded, feats, clin, by="centre")
    metrics = json.loads((d / "fit" / "metrics.json").read_text(encoding="utf-8"))
    for name in ("A", "B"):
        assert again.cohorts[name].metrics["c_index_signature"]["c_index"] == pytest.approx(
            metrics["cohorts"][name]["c_index_signature"]["c_index"], rel=1e-12)
        assert again.cohorts[name].metrics["null_reasons"]["c_index_clinical"] == (
            metrics["cohorts"][name]["null_reasons"]["c_index_clinical"])


def test_report_states_the_rule_and_the_reasons(noise_fit, tmp_path):
    from gliorad.report.build import ReportInputs, build_report

    d, _ = noise_fit
    html = build_report(ReportInputs(survival=d / "fit"), tmp_path / "r").read_text(encoding="utf-8")
    assert "Integrated model: the paper&#x27;s rule: univariate P &lt; 0.05" in html
    assert "No model: paper&#x27;s rule: no factor has P &lt; 0.05 univariately" in html
    assert "No integrated nomogram: paper&#x27;s rule" in html
    assert "cohort A: C-index of the clinical model not computed: no clinical model" in html


def test_integrated_model_equals_clinical_when_only_clinical_factors_are_kept(tmp_path):
    """The signature is not kept and the integrated model's factors are the clinical model's:
    it *is* the clinical model, says so, and the two are not compared."""
    clin, feats = make_cohort({"B": 35, "A": 40, "C": 6}, {"B": 11, "A": 14, "C": 1}, seed=1,
                              clinical_effect=1.5, signature_effect=0.0)
    analysis, warned = _run(feats, _canonical(tmp_path, clin))
    info = analysis.models.model_info["integrated"]
    assert info["same_as_clinical"] and info["fitted"] and not info["signature_in_model"]
    assert analysis.models.integrated_factors == analysis.models.clinical_factors == ["age"]
    assert "it is the clinical model" in info["reason"]
    assert any("not an independent prognostic factor" in w for w in warned)
    a = analysis.cohorts["A"].metrics
    assert a["c_index_integrated"] == pytest.approx(a["c_index_clinical"])
    assert a["compare_p"] is None
    assert a["null_reasons"]["compare_p"] == "the integrated model is the clinical model"
    # the bundle holds both names; the loaded models apply unchanged
    save_bundle(analysis.models, tmp_path / "bundle")
    assert {"cox_integrated.skops", "cox_clinical.skops"} <= {p.name for p in (tmp_path / "bundle").iterdir()}
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.model_info["integrated"]["same_as_clinical"]
    again = apply_models(loaded, feats, _canonical(tmp_path, clin), by="centre")
    assert again.cohorts["A"].metrics["null_reasons"]["compare_p"] == "the integrated model is the clinical model"
    # the report says so
    from gliorad.report.build import ReportInputs, build_report

    write_analysis(analysis, tmp_path / "out", bundle=False)
    html = build_report(ReportInputs(survival=tmp_path / "out"), tmp_path / "r").read_text(encoding="utf-8")
    assert "Factors: age. It is the clinical model (the signature is not in the model" in html
    assert "The integrated model is the clinical model (" in html
    assert "It is the clinical model&#x27;s nomogram." in html


# ============================================================ (b) a small external cohort
def test_small_external_cohort_without_comparable_pairs(tmp_path):
    """Seen (b): with force_signature, an external centre of 6 patients whose only death is the
    longest follow-up has no comparable pairs: its C-indices are null with the reason, and the
    other cohorts' results are all there."""
    clin, feats = make_cohort({"B": 35, "A": 40, "C": 6}, {"B": 11, "A": 14, "C": 1}, seed=1,
                              clinical_effect=0.0, signature_effect=0.0)
    c_rows = clin["centre"] == "C"
    clin.loc[c_rows, "event"] = 0
    clin.loc[clin.loc[c_rows, "os_time"].idxmax(), "event"] = 1
    analysis, warned = _run(feats, _canonical(tmp_path, clin), force_signature=True)
    assert analysis.models.integrated_factors == [SIGNATURE]
    c = analysis.cohorts["C"].metrics
    assert c["n_analysed"] == 6 and c["n_events"] == 1
    assert c["c_index_signature"] is None and c["c_index_integrated"] is None
    assert "no comparable pairs" in c["null_reasons"]["c_index_signature"]
    assert "no comparable pairs" in c["null_reasons"]["c_index_integrated"]
    assert any("cohort C: C-index of the signature not defined" in w for w in warned)
    a = analysis.cohorts["A"].metrics
    assert a["c_index_integrated"] is not None and a["c_index_signature"]["c_index"] is not None
    json.dumps(analysis.metrics(), allow_nan=False)


def test_cohort_without_events_and_calibration_beyond_follow_up(tmp_path):
    """A cohort without a death: every survival metric null with the reason, predictions and KM
    curve still written. A calibration time beyond the follow-up: that entry null with the
    reason, the other times computed."""
    clin, feats = make_cohort({"B": 60, "A": 40}, {"B": 25, "A": 14}, seed=3, clinical_effect=1.5)
    canonical = _canonical(tmp_path, clin)
    analysis, _ = _run(feats, canonical)
    assert analysis.models.integrated is not None
    new = canonical[canonical["centre"] == "A"].copy()
    new["event"] = 0
    with pytest.warns(SurvivalWarning, match=r"cohort A: no event among 40 patients; its survival "
                      r"metrics are null"):
        res = apply_models(analysis.models, feats, new, name="A")
    m = res.cohorts["A"].metrics
    assert m["c_index_signature"] is None and m["logrank_p"] is None and m["hr_signature"] is None
    assert m["null_reasons"]["c_index_integrated"] == "no event among 40 patients"
    write_analysis(res, tmp_path / "out", bundle=False)
    assert (tmp_path / "out" / "km_A.png").is_file() and (tmp_path / "out" / "predictions_A.csv").is_file()
    short = canonical[canonical["centre"] == "A"].copy()
    short = short[short["os_days"] < 1500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurvivalWarning)
        res = apply_models(analysis.models, feats, short, name="short")
    m = res.cohorts["short"].metrics
    assert m["calibration"]["integrated/1825"] is None and m["calibration"]["integrated/365"] is not None
    assert "beyond the last follow-up" in m["null_reasons"]["calibration.integrated/1825"]


# ============================================================ (c) tiny training cohort
def test_tiny_training_cohort_runs_with_stated_fallbacks(tmp_path):
    """Seen (c), the demo's 40 patients: 8 training patients with 2 deaths. The sequence choice
    cannot be estimated (fewer than 2 unfavourable patients), so the signature sees every
    candidate sequence, and says so; the signature's penalty search uses 2 folds."""
    clin, feats = make_cohort({"B": 8, "A": 20}, {"B": 2, "A": 6}, seed=5)
    analysis, warned = _run(feats, _canonical(tmp_path, clin))
    m = analysis.metrics()
    choice = m["sequence_choice"]
    assert choice["chosen"] is None and choice["cv_folds"] is None
    assert "fallback 'all'" in choice["fallback"] and "cannot be compared" in choice["fallback"]
    assert any(w.startswith("sequence choice: ") for w in warned)
    assert any("2-fold instead of 3-fold" in w for w in warned)
    used = {c.split("_")[0] for c in analysis.models.feature_columns}
    assert used == {"t1", "t1ce", "t2", "cnn2d"}
    assert m["signature"]["sequence"] is None
    assert set(m["cohorts"]) == {"B", "A"}
    json.dumps(m, allow_nan=False)


def test_choose_sequence_fallbacks():
    rng = np.random.default_rng(0)
    n = 14
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"{s}_f{j}" for s in ("t1", "t2") for j in range(3)])
    time = np.arange(1, n + 1) * 100.0
    # median 750: deaths before it are unfavourable; 3 of them, 7 favourable (reach the median)
    event = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0])
    kw = {"k": 2, "n_estimators": 10}
    reduced = choose_sequence(X, time, event, ["t1", "t2"], cv_folds=5, **kw)
    assert reduced.cv_folds == 3 and reduced.chosen in {"t1", "t2"}
    assert "3-fold instead of 5-fold" in reduced.fallback
    assert reduced.table["auc"].notna().all()
    one = event.copy()
    one[[1, 2]] = 0  # one unfavourable patient left: no AUC
    skipped = choose_sequence(X, time, one, ["t1", "t2"], cv_folds=5, **kw)
    assert skipped.chosen is None and skipped.cv_folds is None and skipped.table["auc"].isna().all()
    assert "1 unfavourable" in skipped.fallback and "fallback 'all'" in skipped.rule
    first = choose_sequence(X, time, one, ["t2", "t1"], fallback="first", **kw)
    assert first.chosen == "t2" and "fallback 'first'" in first.fallback
    forced = choose_sequence(X, time, one, ["t1", "t2"], force="t2", **kw)
    assert forced.chosen == "t2" and forced.forced and "forced sequence 't2' is used" in forced.fallback
    never = choose_sequence(X, time, np.r_[1, np.zeros(n - 1, int)], ["t1", "t2"],
                            threshold="km_median", **kw)
    assert never.chosen is None and "median overall survival is not reached" in never.fallback
    with pytest.raises(GlioradInputError, match=r"fallback 'last' is not valid"):
        choose_sequence(X, time, one, ["t1"], fallback="last")


def test_fused_columns_of_the_all_fallback():
    cols = ["t1_a", "t2_a", "flair_a", "cnn2d_000", "other"]
    cfg = SurvivalConfig().sequence.model_copy(update={"sequences": ["t1", "t2"]})
    assert fused_columns(cols, cfg, None) == ["t1_a", "t2_a", "cnn2d_000"]
    assert fused_columns(cols, cfg, "t2") == ["t2_a", "cnn2d_000"]
    none = cfg.model_copy(update={"sequences": []})
    assert fused_columns(cols, none, None) == cols


def test_signature_without_estimable_weights_is_constant_when_allowed():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 5))
    t = rng.exponential(1000.0, 12) + 1
    e = np.zeros(12, int)
    e[:2] = 1
    fast = {"n_estimators": 20, "n_alphas": 5, "l1_ratios": (1.0,), "cv_folds": 3, "top_k": 3}
    with pytest.raises(GlioradInputError, match=r"only 2 event\(s\) among 12 patients"):
        DeepRadiomicsSignature(**fast).fit(X, (t, e))
    with pytest.warns(UserWarning, match=r"the signature is constant"):
        sig = DeepRadiomicsSignature(allow_empty=True, **fast).fit(X, (t, e))
    assert "only 2 event(s)" in sig.empty_reason_ and not np.any(sig.weights_)
    assert np.ptp(sig.predict(X)) == 0 and "constant" in sig.formula_text()
    assert len(sig.features_) == 3


def test_constant_signature_is_a_result(tmp_path, monkeypatch):
    """A signature whose weights are all 0 puts everyone in one risk group: it is left out of the
    Cox models, its C-index / HR / log-rank are null with the reason; the clinical models still
    run."""
    import gliorad.survival.signature as sigmod

    def empty(self, Z, time, event):
        raise sigmod._EmptySignature("the Cox elastic net keeps no feature at any penalty of its path")

    monkeypatch.setattr(sigmod.DeepRadiomicsSignature, "_weigh_coxnet", empty)
    clin, feats = make_cohort({"B": 60, "A": 40}, {"B": 25, "A": 14}, seed=3, clinical_effect=1.5)
    analysis, warned = _run(feats, _canonical(tmp_path, clin), integrated_selection="prespecified")
    assert any("keeps no feature at any penalty" in w and "constant" in w for w in warned)
    assert any("every training patient is in the low signature group" in w for w in warned)
    m = analysis.metrics()
    assert m["signature"]["constant"] and SIGNATURE not in m["integrated_factors"]
    # histology has a level without deaths in this training cohort: left out, with a warning
    assert m["models"]["integrated"]["factors"] == ["age", "sex", "grade"]
    assert any("univariate Cox model of 'histology' cannot converge" in w for w in warned)
    assert not m["models"]["integrated"]["same_as_clinical"]
    assert "the signature is not in the model" in m["models"]["integrated"]["reason"]
    a = m["cohorts"]["A"]
    assert a["c_index_signature"] is None and a["logrank_p"] is None
    assert a["null_reasons"]["c_index_signature"].startswith("the signature is constant")
    assert a["null_reasons"]["logrank_p"].startswith("every patient is in the low risk group")
    assert a["c_index_integrated"] is not None


# ============================================================ (d) factor rule: paper | prespecified
def test_prespecified_rule_keeps_the_listed_factors(tmp_path):
    """Seen (d): on 35 training patients the paper's rule keeps grade alone; the pre-specified
    age + grade + histology model does far better at the external centre. The report states
    the rule."""
    clin, feats = make_cohort({"B": 35, "A": 80}, {"B": 11, "A": 30}, seed=10,
                              clinical_effect=1.5, signature_effect=0.5)
    canonical = _canonical(tmp_path, clin)
    cfg = {"factors": ["age", "grade", "histology"]}
    paper, _ = _run(feats, canonical, **cfg)
    pre, _ = _run(feats, canonical, **cfg, clinical_selection="prespecified",
                  integrated_selection="prespecified")
    assert paper.models.clinical_factors == ["grade"]
    assert pre.models.clinical_factors == ["age", "grade", "histology"]
    assert pre.models.integrated_factors == ["age", "grade", "histology", SIGNATURE]
    info = pre.metrics()["models"]
    assert info["clinical"]["rule"] == info["integrated"]["rule"] == "prespecified"
    c_paper = paper.cohorts["A"].metrics["c_index_clinical"]
    c_pre = pre.cohorts["A"].metrics["c_index_clinical"]
    assert c_pre > c_paper + 0.1
    write_analysis(pre, tmp_path / "pre", bundle=False)
    from gliorad.report.build import ReportInputs, build_report

    html = build_report(ReportInputs(survival=tmp_path / "pre"), tmp_path / "r").read_text(encoding="utf-8")
    assert "Clinical model: pre-specified: every usable candidate factor, no P-value selection" in html
    assert "Integrated model: pre-specified: every usable candidate factor plus the signature" in html


def test_prespecified_leaves_out_what_cannot_be_estimated(tmp_path):
    """A pre-specified factor with one level, or one that cannot be estimated (a level without
    deaths), is left out with a warning; the model is fitted with the others."""
    clin, feats = make_cohort({"B": 60, "A": 40}, {"B": 25, "A": 14}, seed=3, clinical_effect=1.5)
    train = clin["centre"] == "B"
    clin.loc[train, "sex"] = "M"
    clin.loc[train & (clin["histology"] == "oligoastrocytoma"), "event"] = 0
    analysis, warned = _run(feats, _canonical(tmp_path, clin), clinical_selection="prespecified",
                            integrated_selection="prespecified")
    assert any("pre-specified model(s), training cohort B: factor 'sex' left out (factor 'sex' has "
               "a single level ('M')" in w for w in warned)
    assert any("univariate Cox model of 'histology' cannot converge" in w for w in warned)
    assert analysis.models.clinical_factors == ["age", "grade"]
    assert analysis.models.integrated_factors == ["age", "grade", SIGNATURE]
    assert any(w.startswith("clinical model (training cohort B): ") and "events for 2 coefficient(s)"
               in w and "events per coefficient, below 10" in w for w in warned)


def test_fit_estimable_leaves_out_a_factor_without_events():
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"age": rng.normal(45, 10, n).round(1),
                       "grade": np.where(rng.uniform(size=n) < 0.4, "III", "II"),
                       TIME: rng.exponential(1000, n) + 1, EVENT: rng.integers(0, 2, n)})
    df.loc[df["grade"] == "III", EVENT] = 0
    cfg = SurvivalConfig(factors=["age", "grade"], min_events_per_factor=0)
    coding, _ = fit_coding(df, cfg)
    sink: list[str] = []
    with pytest.warns(SurvivalWarning, match=r"test: factor\(s\) \['grade'\] cannot be estimated "
                      r"\(Grade, III vs. II"):
        fit, used, reason = fit_estimable(df, ["age", "grade"], coding, cfg, "test", sink)
    assert used == ["age"] and reason is None and list(fit.model.feature_names_in_) == ["age"]
    with pytest.warns(SurvivalWarning):
        fit, used, reason = fit_estimable(df, ["grade"], coding, cfg, "test", [])
    assert fit is None and used == [] and reason == "no factor can be estimated"


def _cohort_csv() -> pd.DataFrame:
    return pd.read_csv(PRE / "cohort.csv", index_col="patient_id").rename(columns={})


@pytest.mark.parametrize("which", ["clinical", "integrated"])
def test_prespecified_cox_against_R(which):
    """The pre-specified models against R's survival::coxph on the committed cohort (enhancement
    has one level and is left out, with a warning)."""
    expected = json.loads((PRE / "expected.json").read_text(encoding="utf-8"))[which]
    df = _cohort_csv()
    cfg = SurvivalConfig(factors=["age", "grade", "histology", "enhancement"], min_level_size=5,
                         min_events_per_factor=0, clinical_selection="prespecified",
                         integrated_selection="prespecified")
    coding, notes = fit_coding(df, cfg)
    assert coding.factors == ["age", "grade", "histology"]
    assert any("factor 'enhancement' has a single level ('no')" in n for n in notes)
    data, _, _ = coding.apply(df, "ref")
    data[TIME], data[EVENT], data[SIGNATURE] = df[TIME], df[EVENT], df[SIGNATURE]
    factors = list(coding.factors) + ([SIGNATURE] if which == "integrated" else [])
    sel, reason = prespecified_model(data, factors, coding, cfg, which, [])
    assert reason is None and sel.selected == expected["factors"]
    fit = sel.final
    table = fit.table
    np.testing.assert_allclose(table["coef"], expected["coef"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table["se"], expected["se"], rtol=1e-5)
    np.testing.assert_allclose(table["hr"], expected["hr"], rtol=1e-6)
    np.testing.assert_allclose(table["ci_lower"], expected["lower"], rtol=1e-5)
    np.testing.assert_allclose(table["ci_upper"], expected["upper"], rtol=1e-5)
    np.testing.assert_allclose(table["p_value"], expected["p"], rtol=1e-4)
    assert fit.model.n_samples_ == expected["n"] and fit.model.n_events_ == expected["nevent"]
    np.testing.assert_allclose(fit.model.log_likelihood_, expected["loglik"][1], rtol=1e-8)
    from gliorad.stats import concordance_ci

    c = concordance_ci(data[TIME], data[EVENT], fit.model.predict_risk(data[factors]))
    assert c.c_index == pytest.approx(expected["c_index"], abs=1e-10)
    assert c.se == pytest.approx(expected["c_se"], rel=1e-6)


@pytest.mark.needs_r
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed")
def test_prespecified_r_script_reproduces_committed_json(tmp_path):
    proc = subprocess.run(["Rscript", str(PRE_SCRIPT), str(PRE), str(tmp_path)], check=False,
                          capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=120, cwd=ROOT)
    if proc.returncode != 0 and "there is no package called" in proc.stderr:
        pytest.skip(f"an R package is missing: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    new = json.loads((tmp_path / "expected.json").read_text(encoding="utf-8"))
    old = json.loads((PRE / "expected.json").read_text(encoding="utf-8"))
    new.pop("meta"), old.pop("meta")
    assert json.dumps(new, sort_keys=True) == json.dumps(old, sort_keys=True)


def test_selection_settings_and_cli_options():
    cfg, _ = _settings("paper", None, None, {})
    assert cfg.clinical_selection == cfg.integrated_selection == "paper"
    assert SurvivalConfig.preset("demo").clinical_selection == "paper"
    cli = _cli_overrides(None, None, None, None, None, None, None, None, None, None,
                         "prespecified", None)
    cfg, _ = _settings("paper", None, None, cli)
    assert cfg.clinical_selection == "prespecified" and cfg.integrated_selection == "paper"
    with pytest.raises(GlioradInputError, match=r"--clinical-selection 'stepwise' is not valid"):
        _cli_overrides(None, None, None, None, None, None, None, None, None, None, "stepwise", None)
    with pytest.raises(GlioradInputError, match=r"integrated_selection"):
        _settings("paper", None, None, {"integrated_selection": "aic"})


# ============================================================ (e) a user's split replaces the preset's
def _centres_table() -> pd.DataFrame:
    ids = [f"P{i}" for i in range(9)]
    return pd.DataFrame({"centre": ["DU", "DU", "DU", "HF", "HF", "A", "A", "CC", "CC"],
                         EVENT: [1, 0, 1, 0, 1, 1, 0, 1, 0]}, index=ids)


def test_train_alone_validates_on_every_other_value(tmp_path):
    """Seen (e): `--train DU` alone, `--split column --split-column centre --train DU` and a YAML
    `survival: {split: {...}}` replace the preset's split (train B, external A) as a whole."""
    table = _centres_table()
    expected = {"DU": "training", "A": "external", "CC": "external", "HF": "external"}
    for cli in (_cli_overrides(None, None, "DU", None, None, None, None, None, None, None),
                _cli_overrides("column", "centre", "DU", None, None, None, None, None, None, None)):
        cfg, _ = _settings("paper", None, None, cli)
        assert cfg.split == SplitConfig(method="column", column="centre", train="DU")
        _, roles, _ = split_cohorts(table, cfg.split)
        assert roles == expected
    yaml = tmp_path / "split.yaml"
    yaml.write_text("survival:\n  split: {method: column, column: centre, train: DU}\n", encoding="utf-8")
    cfg, _ = _settings("paper", yaml, None, {})
    assert cfg.split.external == [] and split_cohorts(table, cfg.split)[1] == expected
    # the command line's --external still narrows it; a YAML external value too
    cfg, _ = _settings("paper", yaml, None, _cli_overrides(None, None, "DU", ["HF"], None, None,
                                                             None, None, None, None))
    assert split_cohorts(table, cfg.split)[1] == {"DU": "training", "HF": "external"}


def test_cli_fit_with_a_user_split(tmp_path):
    clin, feats = make_cohort({"DU": 40, "HF": 25, "A": 10}, {"DU": 14, "HF": 9, "A": 3}, seed=3,
                              clinical_effect=1.5)
    f, c = _write(tmp_path, clin, feats)
    res = runner.invoke(app, ["fit", str(f), str(c), "--config", str(_yaml(tmp_path)), "--split",
                              "column", "--split-column", "centre", "--train", "DU",
                              "--clinical-selection", "prespecified", "--out", str(tmp_path / "fit")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text(encoding="utf-8"))
    assert {k: v["role"] for k, v in metrics["cohorts"].items()} == {
        "DU": "training", "A": "external", "HF": "external"}
    assert metrics["models"]["clinical"]["rule"] == "prespecified"
    assert "clinical model (prespecified rule): age, sex, grade, histology" in res.output


# ============================================================ cross-validation on a small cohort
def test_cross_validation_uses_fewer_folds_on_few_events(tmp_path):
    clin, feats = make_cohort({"B": 16}, {"B": 3}, seed=3, clinical_effect=1.5)
    cfg = SurvivalConfig.model_validate({**FAST, "split": {"method": "none"}, "cv_folds": 5,
                                         "factors": ["age", "grade"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurvivalWarning)
        res = cross_validate(feats, _canonical(tmp_path, clin), cfg)
    assert res.summary["folds"] == 3 and len(res.folds) == 3
    assert any("3 event(s) among 16 patients: 3 folds instead of 5" in w for w in res.warnings)
    json.dumps(res.metrics(), allow_nan=False)
