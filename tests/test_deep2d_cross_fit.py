"""Cross-fitted 2D CNN inputs to the survival signature (``deep2d.cross_fit``, issue 18 item 3):
every LGG training patient's value comes from the fold network that did not see it, every other
patient's from the network trained on all of them; only the dual head's outputs are cross-fitted.

Unit: the head columns, the folds' checks and the run config (``deep2d.cross_fit``: default off
and absent from every dump). Integration: tiny networks (32x32 slices, 2 epochs) on 12 synthetic
patients, with the fold runs and the labels they read recorded. The survival stage's choice of
table (:meth:`Deep2DFiles.signature_features`) on the written files.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# the deep-feature tests' 12 patients (9 LGG: 4 II, 5 III, 5 deaths; 3 HGG) and tiny 2D
# settings (32x32 slices, widths 4-16, 2 epochs)
from test_deep_features import cfg2d, small_cohort

from gliorad.errors import GlioradInputError
from gliorad.features import deep, deep2d

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp("deep2d_cf") / "cohort")


GRADE, RISK = deep2d.OOF_COLUMNS["grade"], deep2d.OOF_COLUMNS["risk"]


def training_ids(clin: pd.DataFrame) -> list[str]:
    """7 LGG patients and 1 HGG (not trained on); 2 LGG and 2 HGG stay outside."""
    lgg = sorted(clin.index[clin["grade_group"] == "LGG"])
    hgg = sorted(clin.index[clin["grade_group"] == "HGG"])
    return lgg[:7] + hgg[:1]


class Recorder:
    """Spies on the runs :func:`cnn2d_cross_fit` makes (``deep_features_2d``) and on the labels
    each of them reads (:func:`gliorad.features.deep.training_labels`, the one place)."""

    def __init__(self, monkeypatch):
        self.runs: list[dict] = []
        self.current: dict | None = None
        real_run, real_labels = deep2d.deep_features_2d, deep.training_labels

        def run(cohort, clinical, train_ids, out_dir, config, **kw):
            self.current = {"train_ids": list(train_ids), "out_dir": Path(out_dir),
                            "ids": kw.get("ids"), "labels_read": set()}
            try:
                self.current["result"] = real_run(cohort, clinical, train_ids, out_dir, config, **kw)
            finally:
                self.runs.append(self.current)
                self.current = None
            return self.runs[-1]["result"]

        def labels(clinical, ids, *args, **kw):
            if self.current is not None:
                self.current["labels_read"] |= {str(p) for p in ids}
            return real_labels(clinical, ids, *args, **kw)

        monkeypatch.setattr(deep2d, "deep_features_2d", run)
        monkeypatch.setattr(deep, "training_labels", labels)


def cross_fit(coh, clin, out, cfg, folds=2, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # trained from scratch
        return deep2d.cnn2d_cross_fit(coh, clin, training_ids(clin), out, cfg, folds=folds,
                                      progress=False, **kw)


# ------------------------------------------------------------------------------------ integration
@pytest.mark.parametrize("loss", ["cox", "censored_l1"])
def test_each_training_patient_gets_the_output_of_the_network_that_did_not_see_it(
        cohort, tmp_path, monkeypatch, loss):
    coh, clin = cohort
    rec = Recorder(monkeypatch)
    res = cross_fit(coh, clin, tmp_path / "cf", cfg2d(survival_loss=loss), folds=2)
    lgg_train = sorted(p for p in training_ids(clin) if clin.at[p, "grade_group"] == "LGG")
    full, *fold_runs = rec.runs
    assert full["out_dir"] == tmp_path / "cf" and len(fold_runs) == 2
    assert full["result"].out_dir == res.full.out_dir
    nets = res.summary["networks"]
    held = {f"fold{k}": nets[f"fold{k}"]["held_out"] for k in (1, 2)}
    # the folds partition the LGG training patients, each holds out deaths (stratified)
    assert sorted(held["fold1"] + held["fold2"]) == lgg_train
    assert all(any(clin.at[p, "event"] == 1 for p in h) for h in held.values())
    pred = res.predictions.set_index("patient_id")
    full_pred = res.full.predictions.set_index("patient_id")
    mean_full = full_pred.loc[lgg_train, "risk_score"].mean()
    for k, run in enumerate(fold_runs, 1):
        out = held[f"fold{k}"]
        # the fold network never read, trained on or monitored with a held-out label
        assert run["out_dir"] == tmp_path / "cf" / "cross_fit" / f"fold{k}"
        assert sorted(run["train_ids"]) == sorted(set(lgg_train) - set(out))
        assert run["labels_read"] and not run["labels_read"] & set(out)
        model = json.loads((run["out_dir"] / "model" / "config.json").read_text(encoding="utf-8"))
        assert not (set(model["train_targets"]) | set(model["val_targets"])) & set(out)
        # ... and its outputs are the held-out patients' values (risk: moved by one constant)
        fold_pred = run["result"].predictions.set_index("patient_id")
        assert res.table.loc[out, GRADE].tolist() == fold_pred.loc[out, "probability_grade_iii"].tolist()
        shift = mean_full - fold_pred.loc[lgg_train, "risk_score"].mean() if loss == "cox" else 0.0
        np.testing.assert_allclose(res.table.loc[out, RISK], fold_pred.loc[out, "risk_score"] + shift,
                                   rtol=0, atol=1e-12)
        assert set(pred.loc[out, "network"]) == {f"fold{k}"} and set(pred.loc[out, "fold"]) == {k}
        assert nets[f"fold{k}"]["risk_offset"] == pytest.approx(shift, abs=1e-12)
    # every other patient (LGG outside training, HGG): the full network's outputs, unchanged
    others = sorted(set(res.table.index) - set(lgg_train))
    assert len(others) == 5 and set(pred.loc[others, "network"]) == {"full"}
    assert res.table.loc[others, GRADE].tolist() == full_pred.loc[others, "probability_grade_iii"].tolist()
    assert res.table.loc[others, RISK].tolist() == full_pred.loc[others, "risk_score"].tolist()
    # the files: the table the signature reads, the sources, the summary; the full run as before
    out_dir = tmp_path / "cf"
    written = pd.read_csv(out_dir / "cnn2d_cross_fit.csv", index_col=0, float_precision="round_trip")
    assert list(written.columns) == [GRADE, RISK] and written.index.name == "patient_id"
    np.testing.assert_array_equal(written.loc[res.table.index].to_numpy(), res.table.to_numpy())
    assert (out_dir / "cnn2d_dual.csv").is_file() and (out_dir / "model" / "model.safetensors").is_file()
    summary = json.loads((out_dir / "cross_fit.json").read_text(encoding="utf-8"))
    assert summary["folds"] == 2 and summary["columns"] == [GRADE, RISK] and summary["notes"] == []
    assert summary["metrics_out_of_fold"]["n_lgg"] == 7


def test_a_patients_own_labels_do_not_reach_its_value(cohort, tmp_path):
    """Changing the labels of fold 1's held-out patients (grade, time; not the event, which
    stratifies the folds) leaves fold 1's values as they were (the risk up to the one constant
    shared by every training patient) and changes the full network's (so the test can fail)."""
    coh, clin = cohort
    base = cross_fit(coh, clin, tmp_path / "a", cfg2d())
    out = base.summary["networks"]["fold1"]["held_out"]
    altered = clin.copy()
    altered.loc[out, "grade"] = altered.loc[out, "grade"].map({"II": "III", "III": "II"})
    altered.loc[out, "os_days"] = altered.loc[out, "os_days"] * 3 + 17
    other = cross_fit(coh, altered, tmp_path / "b", cfg2d())
    assert other.summary["networks"]["fold1"]["held_out"] == out
    assert other.table.loc[out, GRADE].tolist() == base.table.loc[out, GRADE].tolist()
    diff = other.table.loc[out, RISK] - base.table.loc[out, RISK]
    assert float(diff.max() - diff.min()) < 1e-9
    outside = sorted(set(base.table.index) - set(base.full.train_ids))
    assert not np.allclose(other.table.loc[outside].to_numpy(), base.table.loc[outside].to_numpy())


def test_a_task_a_fold_network_could_not_learn_gives_no_column(cohort, tmp_path):
    """One grade III patient among the LGG training patients: the fold network trained without
    it has grade II only (its grade task is off), so the grade column is left out, with a note."""
    coh, clin = cohort
    lgg_train = [p for p in training_ids(clin) if clin.at[p, "grade_group"] == "LGG"]
    one_iii = clin.copy()
    one_iii.loc[lgg_train, "grade"] = "II"
    one_iii.loc[lgg_train[0], "grade"] = "III"
    with pytest.warns(UserWarning, match=r"cnn2d_oof_grade left out: the grade II vs III task was "
                                         r"off in the network\(s\) fold\d"):
        res = deep2d.cnn2d_cross_fit(coh, one_iii, training_ids(clin), tmp_path / "g", cfg2d(),
                                     folds=2, progress=False)
    assert list(res.table.columns) == [RISK] and res.summary["columns"] == [RISK]
    assert res.summary["tasks_trained"]["full"] == {"grade": True, "risk": True}
    assert list(pd.read_csv(tmp_path / "g" / "cnn2d_cross_fit.csv", index_col=0).columns) == [RISK]


def test_cross_fit_bad_folds(cohort, tmp_path):
    coh, clin = cohort
    # 7 LGG training patients, 3 of whom died: at most 3 folds
    for folds, n in ((4, 3), (1, 3)):
        with pytest.raises(GlioradInputError, match=rf"^folds {folds}: expected at least 2 and at "
                                                    r"most the smaller of the LGG training patients' "
                                                    rf"deaths and others \({n}\)$"):
            deep2d.cnn2d_cross_fit(coh, clin, training_ids(clin), tmp_path / "x", cfg2d(),
                                   folds=folds, progress=False)
    assert not (tmp_path / "x").exists()  # checked before any training


# ------------------------------------------------------------------------------------ units
def test_head_features_are_the_stage_predictions_columns():
    """What ``gliorad predict`` gives a new patient: the predictions table's columns."""
    outs = np.array([[0.3, -1.2], [-2.0, 0.5]], dtype=np.float32)
    for loss in ("cox", "censored_l1"):
        cfg = cfg2d(survival_loss=loss)
        cols = deep2d.CNN2D.head_columns(cfg, outs)
        got = deep2d.head_features_2d(outs, cfg)
        assert list(got) == [GRADE, RISK]
        assert got[GRADE].tolist() == cols["probability_grade_iii"].tolist()
        assert got[RISK].tolist() == cols["risk_score"].tolist()
        one = deep2d.head_features_2d(outs[1], cfg)  # one patient's (2,) outputs
        assert one[RISK].tolist() == [cols["risk_score"][1]]
    assert all(c.startswith(deep.PREFIX_2D) for c in deep2d.OOF_COLUMNS.values())


def test_stratified_folds_are_shared_and_checked():
    strata = pd.Series([1, 0, 1, 0, 1, 0, 0], index=[f"P{i}" for i in range(7)])
    folds = deep.stratified_folds(strata, 2, seed=0)
    assert len(folds) == 2
    for trained, held in folds:
        assert sorted(trained + held) == sorted(strata.index) and not set(trained) & set(held)
        assert strata[held].nunique() == 2
    assert deep.stratified_folds(strata, 2, seed=0) == folds
    with pytest.raises(GlioradInputError, match=r"^folds 4: expected at least 2 and at most the "
                                                r"smaller class size \(3\)$"):
        deep.stratified_folds(strata, 4, seed=0)
    with pytest.raises(GlioradInputError, match=r"smaller class size \(0\)$"):
        deep.stratified_folds(pd.Series([1, 1, 1], index=["a", "b", "c"]), 2, seed=0)


def test_run_config_cross_fit_default_off_and_absent_from_dumps():
    from gliorad.run_config import load_run_config
    from gliorad.workflow import build_stages

    off = load_run_config("demo")
    assert off.deep2d_cross_fit == 0 and "deep2d_cross_fit" not in off.resolved()
    explicit = load_run_config("demo", {"deep2d": {"cross_fit": 0}})
    stages = {s.name: s for s in build_stages(off)}
    same = {s.name: s for s in build_stages(explicit)}
    for name in ("deep2d", "survival", "bundle"):
        assert stages[name].settings == same[name].settings
    assert "cross_fit" not in stages["deep2d"].settings
    assert "deep2d_cross_fit" not in stages["survival"].settings
    on = load_run_config("demo", {"deep2d": {"cross_fit": 3}})
    assert on.deep2d_cross_fit == 3 and on.resolved()["deep2d_cross_fit"] == 3
    st = {s.name: s for s in build_stages(on)}
    assert st["deep2d"].settings["cross_fit"] == 3 and st["deep2d"].settings["seed"] == 0
    assert st["survival"].settings["deep2d_cross_fit"] == 3
    assert "3 cross-fitted networks" in st["deep2d"].description
    # off with the 2D network (survival off or deep2d off)
    assert load_run_config("demo", {"deep2d": {"cross_fit": 3},
                                    "survival": {"enabled": False}}).deep2d_cross_fit == 0
    assert load_run_config("demo", {"deep2d": {"cross_fit": 3, "enabled": False}}).deep2d_cross_fit == 0


@pytest.mark.parametrize("bad", [1, -2, True, 2.5, "five"])
def test_run_config_cross_fit_is_checked(bad):
    from gliorad.run_config import load_run_config

    with pytest.raises(GlioradInputError, match=r"demo\.yaml: deep2d\.cross_fit: expected 0 \(off\) "
                                                r"or a number of folds >= 2 \(got "):
        load_run_config("demo", {"deep2d": {"cross_fit": bad}})


def test_the_survival_stage_reads_the_cross_fitted_table(cohort, tmp_path):
    """The stage's file names are the function's, and the survival stage reads the cross-fitted
    head outputs (taken as its deep columns) when ``deep2d.cross_fit`` is on, the 512 features
    when off."""
    from gliorad.stages.artifacts import Deep2DFiles
    from gliorad.survival.config import SequenceConfig
    from gliorad.survival.models import fused_columns
    from gliorad.tables import read_features

    coh, clin = cohort
    res = cross_fit(coh, clin, tmp_path / "deep2d", cfg2d())
    files = Deep2DFiles(tmp_path / "deep2d")
    assert files.signature_features(0) == files.features == tmp_path / "deep2d" / "cnn2d_dual.csv"
    assert files.signature_features(2) == files.cross_fitted
    assert set(res.files) == {"cnn2d_cross_fit.csv", "cnn2d_cross_fit.parquet",
                              "cnn2d_cross_fit_predictions.csv", "cross_fit.json"} - (
        set() if deep.parquet_engine() else {"cnn2d_cross_fit.parquet"})
    for name, path in res.files.items():
        assert path == tmp_path / "deep2d" / name
    assert files.cross_fit_predictions.is_file() and files.cross_fit_summary.is_file()
    assert (files.folds / "fold1" / "model" / "config.json").is_file()
    table, _ = read_features(files.signature_features(2), first_column_id=True)
    assert list(table.columns) == [GRADE, RISK]
    np.testing.assert_allclose(table.loc[res.table.index].to_numpy(), res.table.to_numpy(),
                               rtol=1e-15, atol=0)  # pandas' default CSV float parser
    cols = ["t1ce_original_firstorder_Mean", "t2_original_firstorder_Mean", *table.columns]
    assert fused_columns(cols, SequenceConfig(), "t1ce") == ["t1ce_original_firstorder_Mean",
                                                             GRADE, RISK]


# ------------------------------------------------------------------------------------ CLI
def test_cli_cross_fit(cohort, tmp_path):
    """``gliorad features deep cnn2d --cross-fit K``: the full network's run as without it, and
    the cross-fitted table of the same function (folds seeded by --split-seed); --help lists the
    option; bad values and --val-ids with it exit 2."""
    from typer.testing import CliRunner

    from gliorad.commands.deep import app

    coh, clin = cohort
    ids_file = tmp_path / "train.txt"
    ids_file.write_text("\n".join(training_ids(clin)) + "\n")
    yaml2d = tmp_path / "d2.yaml"
    yaml2d.write_text("size: [32, 32]\nval_fraction: 0.0\nweights: last\npredict_batch_size: 1\n"
                      "net:\n  widths: [4, 8, 8, 16]\n  hidden: 8\n"
                      "train:\n  epochs: 2\n  batch_size: 4\n  monitor: train_loss\n")
    runner = CliRunner()
    out = tmp_path / "o"
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(out), "--config", str(yaml2d),
                            "--train-ids", str(ids_file), "--cross-fit", "2", "--split-seed", "4",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "cnn2d dual-task: 12 patients x 16 features" in r.output
    assert (f"cross-fitted head outputs (2 fold networks): 12 patients x {GRADE}, {RISK} -> "
            f"{out / 'cnn2d_cross_fit.csv'}") in r.output
    summary = json.loads((out / "cross_fit.json").read_text(encoding="utf-8"))
    assert summary["folds"] == 2 and summary["seed"] == 4
    # the same as the function with the same settings and seed
    ref = cross_fit(coh, clin, tmp_path / "ref", cfg2d(), folds=2, seed=4)
    got = pd.read_csv(out / "cnn2d_cross_fit.csv", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(got.loc[ref.table.index].to_numpy(), ref.table.to_numpy())
    assert (summary["networks"]["fold1"]["held_out"]
            == ref.summary["networks"]["fold1"]["held_out"])
    text = runner.invoke(app, ["cnn2d", "--help"], env={"COLUMNS": "200"}).output
    assert " --cross-fit " in text and "cnn2d_oof_risk" in text
    assert " --cross-fit " not in runner.invoke(app, ["cnn3d", "--help"],
                                                env={"COLUMNS": "200"}).output
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(tmp_path / "x"),
                            "--train-ids", str(ids_file), "--cross-fit", "1"])
    assert r.exit_code == 2 and "--cross-fit" in r.output
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(tmp_path / "x"),
                            "--train-ids", str(ids_file), "--cross-fit", "2",
                            "--val-ids", str(ids_file)])
    assert r.exit_code == 2 and "error: --val-ids: not with --cross-fit" in r.output
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(tmp_path / "x"), "--config",
                            str(yaml2d), "--train-ids", str(ids_file), "--cross-fit", "5"])
    assert r.exit_code == 2 and re.search(r"error: folds 5: expected at least 2 and at most the "
                                          r"smaller of the LGG training patients' deaths", r.output)
    assert not (tmp_path / "x").exists()
