"""Issue 16, run configs on real-shaped cohorts: any part can be off, sequences come from the
cohort, partial clinical tables, the merge rule, checks before the first stage, and runs that
end in a report and a bundle with only the parts that apply (then ``gliorad predict`` with it).

The cohorts are built at test time from one small synthetic cohort (4 mm, 48 patients), reshaped
as real exports are: an LGG-only cohort with three sequences, survival in months under its own
column names and DECEASED/LIVING status; a table where some patients lack a grade or survival.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from gliorad.cli import app
from gliorad.errors import GlioradInputError
from gliorad.run_config import check_run_inputs, load_run_config
from gliorad.workflow import build_stages, run_workflow

runner = CliRunner()

#: Small settings shared by the runs (manual masks unless a test turns segmentation on).
FAST = {
    "run": {"seed": 0, "n_jobs": 2},
    "segmentation": {"enabled": False},
    "radiomics": {"params": "fast"},
    "deep3d": {"size": [16, 16, 16], "net": {"widths": [8, 16, 32, 64], "hidden": 16},
               "train": {"epochs": 1}},
    "deep2d": {"size": [32, 32], "net": {"widths": [8, 16, 32, 64], "hidden": 16},
               "train": {"epochs": 1}},
    "grading": {"svm_C": [1.0], "svm_gamma": [0.1], "lasso_strengths": 3, "rf_n_estimators": 20},
    "survival": {"sequence": {"evaluate": False}, "cv_folds": 3, "factors": ["age", "grade"],
                 "min_level_size": 2, "calibration_boot": 0, "min_events_per_factor": 0,
                 "signature": {"n_estimators": 50, "n_alphas": 5, "cv_folds": 3}},
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _config(tmp: Path, name: str, **sections) -> Path:
    data = {"preset": "demo", **{k: v for k, v in FAST.items()}}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) and isinstance(data.get(k), dict) \
            else v
    return _write(tmp / f"{name}.yaml", data)


@pytest.fixture(scope="module")
def base_cohort(tmp_path_factory) -> Path:
    """48 synthetic patients (two centres, HGG and LGG) at 4 mm, BraTS 2018 naming."""
    from gliorad.synthetic import SynthConfig, generate_cohort

    out = tmp_path_factory.mktemp("partial") / "cohort"
    generate_cohort(out, SynthConfig(n_patients=48, spacing=4.0, hgg_fraction=0.4, seed=5), n_jobs=2)
    return out


def _segmentation_patients(model_dir: Path) -> set[str]:
    prov = json.loads((model_dir / "provenance.json").read_text())
    return set(prov["train_ids"]) | set(prov.get("val_ids") or [])


def _sections(html: str) -> list[str]:
    return re.findall(r'<section[^>]*id="([^"]+)"', html)


# ------------------------------------------------------------------------------- configs
def test_grading_off_turns_off_what_serves_it(tmp_path):
    cfg = load_run_config("demo", {"grading": {"enabled": False}})
    assert cfg.grading is None and cfg.deep3d == {} and cfg.deep3d_cross_fit == 0
    assert any(n.startswith("deep3d: off, because grading.enabled is false") for n in cfg.notes)
    names = [s.name for s in build_stages(cfg)]
    assert "grade" not in names and "deep3d" not in names
    assert {"segment", "radiomics", "deep2d", "survival", "bundle", "report"} <= set(names)
    assert cfg.resolved()["grading"] is None

    cfg = load_run_config("demo", {"survival": {"enabled": False}})
    assert cfg.survival is None and cfg.deep2d is None
    assert any(n.startswith("deep2d: off, because survival.enabled is false") for n in cfg.notes)
    names = [s.name for s in build_stages(cfg)]
    assert "survival" not in names and "deep2d" not in names and "grade" in names

    cfg = load_run_config("demo", {"grading": {"enabled": False}, "survival": {"enabled": False},
                                   "segmentation": {"enabled": False}})
    names = [s.name for s in build_stages(cfg)]
    assert "bundle" not in names and names[-1] == "report"  # no model was fitted
    assert any("masks and features only" in n for n in cfg.notes)
    assert any(n.startswith("agreement: off, because segmentation.enabled is false") for n in cfg.notes)

    with pytest.raises(GlioradInputError, match=r"grading\.enabled: expected true or false \(got 'no'\)"):
        load_run_config("demo", {"grading": {"enabled": "no"}})
    with pytest.raises(GlioradInputError, match=r"run\.nonfinite: Input should be 'missing' or "
                                                 r"'error' \(got 'drop'\)"):
        load_run_config("demo", {"run": {"nonfinite": "drop"}})
    strict = {s.name: s.settings for s in build_stages(load_run_config("demo", {"run": {"nonfinite": "error"}}))}
    plain = {s.name: s.settings for s in build_stages(load_run_config("demo"))}
    assert sorted(n for n in plain if n != "bundle" and plain[n] != strict[n]) == \
        ["agreement", "grade", "survival"]  # the stages that read feature tables rerun


def test_stage_sequences_default_to_the_cohort(tmp_path):
    three = {"cohort": {"sequences": ["t1", "t1ce", "flair"]}}
    cfg = load_run_config("demo", three)
    assert cfg.segmentation.sequences == ["t1", "t1ce", "flair"]
    assert cfg.deep3d["patch_se"].sequences == ["t1", "t1ce", "flair"]
    assert cfg.deep2d.sequences == ["t1", "t1ce", "flair"]
    assert cfg.survival.sequence.sequences == ["t1", "t1ce", "flair"]
    for stage in ("segmentation.sequences", "deep3d.sequences", "deep2d.sequences",
                  "survival.sequence.sequences"):
        assert any(n.startswith(f"{stage}: the preset's") and "needs t2" in n for n in cfg.notes)
    # the paper's choice is kept where the cohort has it
    full = load_run_config("demo")
    assert full.deep2d.sequences == ["t1", "t2", "t1ce"] and full.notes == ()
    # a stage's own list is checked against the cohort, naming stage, key and what there is
    for section, value, key in (("deep2d", {"sequences": ["t1", "t2"]}, "deep2d.sequences"),
                                ("segmentation", {"sequences": ["t2"]}, "segmentation.sequences"),
                                ("radiomics", {"sequences": ["t1", "t2"]}, "radiomics.sequences"),
                                ("survival", {"sequence": {"sequences": ["t2"]}},
                                 "survival.sequence.sequences")):
        with pytest.raises(GlioradInputError, match=rf"{re.escape(key)}: t2 not in "
                                                     r"cohort\.sequences \(the cohort has t1, "
                                                     r"t1ce, flair\); set"):
            load_run_config("demo", {**three, section: value})
    ok = load_run_config("demo", {**three, "deep2d": {"sequences": ["flair", "t1ce"]}})
    assert ok.deep2d.sequences == ["flair", "t1ce"]
    # grading off: no note about the sequences of the 3D CNN it turns off
    off = load_run_config("demo", {**three, "grading": {"enabled": False}})
    assert not [n for n in off.notes if n.startswith("deep3d.")]
    # preprocessing registers to a sequence the cohort must have
    (tmp_path / "c").mkdir()
    (tmp_path / "clin.csv").write_text("patient_id,grade\n")
    raw = {"preset": "paper", "cohort": {"root": "c", "sequences": ["t1", "t2", "flair"]},
           "clinical": {"path": "clin.csv"}}
    with pytest.raises(GlioradInputError, match=r"preprocess\.reference: 't1ce' \(the sequence the "
                                                 r"others are registered to\) is not among the "
                                                 r"sequences t1, t2, flair; set preprocess\.reference"):
        load_run_config(_write(tmp_path / "raw.yaml", raw))
    raw["preprocess"] = {"reference": "t1"}
    assert load_run_config(_write(tmp_path / "raw.yaml", raw)).preprocess.reference == "t1"
    # survival candidates come from the radiomics sequences when those are set
    rad = load_run_config("demo", {"radiomics": {"sequences": ["t1ce", "flair"]}})
    assert rad.survival.sequence.sequences == ["t1ce", "flair"]


def test_a_users_split_replaces_the_presets(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "clin.csv").write_text("patient_id,grade\n")
    base = {"preset": "paper", "cohort": {"root": "c"}, "clinical": {"path": "clin.csv"}}
    cfg = load_run_config(_write(tmp_path / "a.yaml", {
        **base, "survival": {"split": {"method": "column", "column": "centre", "train": "DU"}}}))
    assert cfg.survival.split.train == "DU" and cfg.survival.split.external == []
    # --set survival.split.train=X alone validates on every other value too
    cfg = load_run_config("demo", {"survival": {"split": {"train": "A"}}})
    assert (cfg.survival.split.method, cfg.survival.split.column, cfg.survival.split.train,
            cfg.survival.split.external) == ("column", "centre", "A", [])
    res = runner.invoke(app, ["config", "check", "demo", "--set", "survival.split.train=A"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.stdout)["survival"]["split"]["external"] == []
    # other nested mappings still merge key by key
    cfg = load_run_config("demo", {"segmentation": {"train": {"epochs": 3}}})
    assert cfg.segmentation.train.epochs == 3 and cfg.segmentation.train.lr == 3e-3


def test_your_cohort_root_replaces_the_presets_synthetic_cohort(tmp_path, base_cohort):
    cfg = load_run_config(_write(tmp_path / "mine.yaml", {
        "preset": "demo", "cohort": {"root": str(base_cohort)},
        "clinical": {"path": str(base_cohort / "clinical.csv")}}))
    assert cfg.synthetic is None and cfg.cohort.root == base_cohort
    assert "cohort" not in [s.name for s in build_stages(cfg)]
    # the same from the command line, over the preset itself
    cfg = load_run_config("demo", {"cohort": {"root": str(base_cohort)},
                                   "clinical": {"path": str(base_cohort / "clinical.csv")}})
    assert cfg.synthetic is None and cfg.cohort.root == base_cohort
    assert load_run_config("demo", {"segmentation": {"enabled": False}}).synthetic is not None


def test_checks_before_the_first_stage(tmp_path, base_cohort):
    clin = pd.read_csv(base_cohort / "clinical.csv", dtype={"patient_id": str})
    lgg = clin[clin["grade"].isin(["II", "III"])]
    lgg.to_csv(tmp_path / "lgg.csv", index=False)
    clin.drop(columns=["os_time", "event"]).to_csv(tmp_path / "nosurv.csv", index=False)
    gaps = clin.copy()
    gaps["grade"] = gaps["grade"].astype(object)
    gaps.loc[[0, 1], "grade"] = None
    gaps.loc[[2], ["os_time", "event"]] = None
    gaps.to_csv(tmp_path / "gaps.csv", index=False)

    def cfg_for(table: str, **extra):
        return _write(tmp_path / f"{table}.yaml", {
            "preset": "demo", "cohort": {"root": str(base_cohort)},
            "clinical": {"path": f"{table}.csv", **extra.pop("clinical", {})}, **extra})

    # grading on an LGG-only cohort: refused before any stage, naming the key
    res = runner.invoke(app, ["config", "check", str(cfg_for("lgg"))])
    assert res.exit_code == 2
    assert re.search(r"grading\.enabled: lgg\.csv has 0 HGG and \d+ LGG patient\(s\) with a grade; "
                     r"grading needs at least 2 of each class\. For an LGG-only .* set "
                     r"grading\.enabled: false", res.output)
    with pytest.raises(GlioradInputError, match=r"grading\.enabled: lgg\.csv has 0 HGG"):
        run_workflow(cfg_for("lgg"), tmp_path / "ws", echo=None)
    assert not (tmp_path / "ws").exists()  # nothing was started
    res = runner.invoke(app, ["config", "check", str(cfg_for("lgg")), "--set", "grading.enabled=false"])
    assert res.exit_code == 0, res.output
    # survival without survival columns
    res = runner.invoke(app, ["config", "check", str(cfg_for("nosurv"))])
    assert res.exit_code == 2 and re.search(r"survival\.enabled: nosurv\.csv has no survival time "
                                            r"and event for any patient .*set survival\.enabled: "
                                            r"false for a grading-only cohort", res.output)
    # a split value that is not in the table
    res = runner.invoke(app, ["config", "check", str(cfg_for("gaps")), "--set", "survival.split.train=Z"])
    assert res.exit_code == 2 and "survival.split:" in res.output and "'Z'" in res.output
    # gaps: listed as notes (stderr), the config is fine
    res = runner.invoke(app, ["config", "check", str(cfg_for("gaps"))])
    assert res.exit_code == 0, res.output
    pids = clin["patient_id"]
    assert re.search(rf"note: grading: 2 patient\(s\) of gaps\.csv lack grade and will be left out "
                     rf"of it: {pids[0]}, {pids[1]}", res.stderr)
    assert re.search(rf"note: survival: 1 patient\(s\) of gaps\.csv lack os_time / event .*{pids[2]}",
                     res.stderr)
    # clinical.missing: error keeps today's strictness, one line per row
    res = runner.invoke(app, ["config", "check", str(cfg_for("gaps", clinical={"missing": "error"}))])
    assert res.exit_code == 2
    assert re.search(rf"gaps\.csv row 2 \(patient {pids[0]}\): grade is missing but required for "
                     r"this analysis \(clinical\.missing: error", res.output)
    assert re.search(rf"gaps\.csv row 4 \(patient {pids[2]}\): os_time is missing", res.output)
    assert check_run_inputs(load_run_config("demo")) == []  # a generated cohort is complete


# ------------------------------------------------------------------------------ the runs
@pytest.fixture(scope="module")
def survival_only(tmp_path_factory, base_cohort):
    tmp = tmp_path_factory.mktemp("survival_only")
    cfg = _write(tmp / "s.yaml", {
        **FAST, "preset": "demo", "cohort": {"root": str(base_cohort)},
        "clinical": {"path": str(base_cohort / "clinical.csv")},
        "grading": {"enabled": False}, "deep2d": {**FAST["deep2d"], "enabled": False},
        "survival": {**FAST["survival"], "force_signature": True,
                     "sequence": {"force": "t1ce", "evaluate": False}}})
    ws = tmp / "ws"
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    return ws, res.output


@pytest.mark.slow
def test_survival_only_run_report_bundle_and_predict(survival_only, base_cohort, tmp_path):
    ws, out = survival_only
    assert "note: deep3d: off, because grading.enabled is false" in out
    assert not (ws / "grade").exists() and not (ws / "deep3d").exists()
    assert (ws / "survival" / "analysis" / "metrics.json").is_file()
    html = (ws / "report" / "report.html").read_text(encoding="utf-8")
    assert "grading" not in _sections(html) and "segmentation" not in _sections(html)
    assert {"cohort", "signature", "kaplan-meier", "cox", "c-index", "provenance"} <= set(_sections(html))
    assert "Switched off in this run&#x27;s config: segmentation, agreement, deep3d, deep2d, grading" in html
    manifest = json.loads((ws / "bundle" / "bundle" / "manifest.json").read_text())
    assert sorted(manifest["components"]) == ["survival"]
    tr = manifest["inputs"]["training_ranges"]
    assert tr["signature_score"]["n"] > 5 and tr["features"] and tr["intensity"]["t1ce"]["mean"]["n"] > 5
    pid = min(p.name for p in base_cohort.iterdir() if p.name.startswith("SYNB"))
    pdir = base_cohort / pid
    res = runner.invoke(app, ["predict", str(pdir), "--bundle", str(ws / "bundle" / "bundle"),
                              "--out", str(tmp_path / "p"), "--mask", str(pdir / f"{pid}_seg.nii.gz"),
                              "--clinical", "age=50,grade=II"])
    assert res.exit_code == 0, res.output
    pred = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert pred["grading"] is None and pred["survival"]["risk_group"] in ("high", "low")
    assert pred["warnings"] == [] and pred["out_of_distribution"] == []
    assert any("no grading model" in n for n in pred["notes"])
    summary = (tmp_path / "p" / "summary.html").read_text()
    assert "not predicted (the bundle has no grading model)" in summary

    # the same patient scanned in other units: the intensity check says so, in JSON and page
    odd = tmp_path / "odd" / "P1"
    odd.mkdir(parents=True)
    for seq in ("t1", "t1ce", "t2", "flair", "seg"):
        img = sitk.ReadImage(str(pdir / f"{pid}_{seq}.nii.gz"))
        if seq != "seg":
            img = sitk.Cast(img, sitk.sitkFloat32) * 8.0
        sitk.WriteImage(img, str(odd / f"P1_{seq}.nii.gz"))
    res = runner.invoke(app, ["predict", str(odd), "--bundle", str(ws / "bundle" / "bundle"),
                              "--out", str(tmp_path / "q"), "--mask", str(odd / "P1_seg.nii.gz")])
    assert res.exit_code == 0, res.output
    pred = json.loads((tmp_path / "q" / "prediction.json").read_text())
    flagged = {(o["what"], o["name"]) for o in pred["out_of_distribution"]}
    assert ("image intensity", "t1ce mean") in flagged
    assert all(o["value"] > o["training_max"] for o in pred["out_of_distribution"])
    assert any(re.search(r"image intensity t1ce mean = \S+ is above the range of the \d+ training "
                         r"patients", w) for w in pred["warnings"])
    assert "Warnings: outside the training data" in (tmp_path / "q" / "summary.html").read_text()

    # a signature score far above the training cohort's (issue 16: 6.3 against a cut-off of
    # -0.17 came back without a word): flagged with the training range
    from gliorad.bundle import load_model_bundle
    from gliorad.predict import _out_of_distribution

    b = load_model_bundle(ws / "bundle" / "bundle")
    r = b.inputs["training_ranges"]["signature_score"]
    far = r["max"] + 5 * (r["max"] - r["min"])
    (hit,) = _out_of_distribution(b, {}, {"signature_score": far}, {})[0]
    assert hit["what"] == "survival" and hit["name"] == "signature score" and hit["value"] == far
    assert _out_of_distribution(b, {}, {"signature_score": r["median"]}, {})[0] == []


@pytest.mark.slow
def test_grading_only_run_report_bundle_and_predict(tmp_path, base_cohort):
    clin = pd.read_csv(base_cohort / "clinical.csv", dtype={"patient_id": str})
    clin.drop(columns=["os_time", "event"]).to_csv(tmp_path / "grades.csv", index=False)
    cfg = _write(tmp_path / "g.yaml", {
        **FAST, "preset": "demo", "cohort": {"root": str(base_cohort)},
        "clinical": {"path": "grades.csv"}, "survival": {"enabled": False},
        "radiomics": {"params": "fast", "sequences": ["t1ce", "flair"]}})
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    assert "note: deep2d: off, because survival.enabled is false" in res.output
    assert not (ws / "survival").exists() and (ws / "grade" / "tables" / "table_1.csv").is_file()
    html = (ws / "report" / "report.html").read_text(encoding="utf-8")
    assert "grading" in _sections(html) and not {"signature", "cox", "c-index"} & set(_sections(html))
    manifest = json.loads((ws / "bundle" / "bundle" / "manifest.json").read_text())
    assert sorted(manifest["components"]) == ["cnn3d", "grading"]
    selected = json.loads((ws / "grade" / "model" / "model.json").read_text())["selected_features"]
    assert set(manifest["inputs"]["training_ranges"]["features"]) == set(selected)
    assert manifest["inputs"]["training_ranges"]["signature_score"] is None
    pid = clin["patient_id"].iloc[0]
    pdir = base_cohort / pid
    res = runner.invoke(app, ["predict", str(pdir), "--bundle", str(ws / "bundle" / "bundle"),
                              "--out", str(tmp_path / "p"), "--mask", str(pdir / f"{pid}_seg.nii.gz")])
    assert res.exit_code == 0, res.output
    pred = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert 0 <= pred["grading"]["probability_hgg"] <= 1 and pred["survival"] is None


@pytest.fixture(scope="module")
def lgg_cohort(tmp_path_factory, base_cohort) -> Path:
    """The LGG patients as a real LGG-only export: t1, t1ce and flair (no t2 files), survival in
    months as 'OS (months)' with DECEASED / LIVING status, one patient without a grade."""
    out = tmp_path_factory.mktemp("lgg") / "lgg"
    out.mkdir()
    clin = pd.read_csv(base_cohort / "clinical.csv", dtype={"patient_id": str})
    clin = clin[clin["grade"].isin(["II", "III"])].copy()
    clin["OS (months)"] = (clin["os_time"] / (365.25 / 12)).round(3)
    clin["Status"] = clin["event"].map({1: "DECEASED", 0: "LIVING"})
    clin = clin.drop(columns=["os_time", "event"])
    clin["grade"] = clin["grade"].astype(object)
    clin.iloc[0, clin.columns.get_loc("grade")] = None
    clin.to_csv(out / "clinical.csv", index=False)
    for pid in clin["patient_id"]:
        (out / pid).mkdir()
        for seq in ("t1", "t1ce", "flair", "seg"):
            shutil.copy(base_cohort / pid / f"{pid}_{seq}.nii.gz", out / pid / f"{pid}_{seq}.nii.gz")
    return out


def _lgg_config(tmp: Path, lgg: Path, **changes) -> Path:
    data = {
        **FAST, "preset": "paper",
        "cohort": {"root": str(lgg), "naming": "brats2018", "sequences": ["t1", "t1ce", "flair"]},
        "clinical": {"path": str(lgg / "clinical.csv"), "time_unit": "months",
                     "columns": {"os_time": "OS (months)", "event": "Status"},
                     "event_values": {"DECEASED": 1, "LIVING": 0}},
        "preprocess": {"enabled": False}, "deep3d": {"enabled": False},
        "deep2d": {**FAST["deep2d"], "preset": "demo"}, "grading": {"enabled": False},
        "survival": {**FAST["survival"], "preset": "demo", "factors": ["age", "histology"]},
    }
    data.update(changes)
    return _write(tmp / "lgg.yaml", data)


@pytest.mark.slow
def test_lgg_only_cohort_with_three_sequences_runs_to_a_report(tmp_path, lgg_cohort):
    cfg = _lgg_config(tmp_path, lgg_cohort)
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "note: deep2d.sequences: the preset's t1, t2, t1ce needs t2" in res.stderr
    resolved = yaml.safe_load(res.stdout)
    assert resolved["deep2d"]["sequences"] == ["t1", "t1ce", "flair"]
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    prov = json.loads((ws / "deep2d" / "provenance.json").read_text())
    assert prov["config"]["sequences"] == ["t1", "t1ce", "flair"]
    metrics = json.loads((ws / "survival" / "analysis" / "metrics.json").read_text())
    assert metrics["cohorts"] and metrics["training"] == "B"
    html = (ws / "report" / "report.html").read_text(encoding="utf-8")
    assert "kaplan-meier" in _sections(html) and "grading" not in _sections(html)
    manifest = json.loads((ws / "bundle" / "bundle" / "manifest.json").read_text())
    assert sorted(manifest["components"]) == ["cnn2d", "survival"]
    assert manifest["inputs"]["sequences"] == sorted({"t1", "t1ce", "flair"} & set(manifest["inputs"]["sequences"]))
    pid = sorted(p.name for p in lgg_cohort.iterdir() if p.is_dir())[1]
    res = runner.invoke(app, ["predict", str(lgg_cohort / pid), "--bundle", str(ws / "bundle" / "bundle"),
                              "--out", str(tmp_path / "p"),
                              "--mask", str(lgg_cohort / pid / f"{pid}_seg.nii.gz"),
                              "--clinical", "age=40,histology=astrocytoma"])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_lgg_only_segmentation_trains_on_the_cohorts_sequences(tmp_path, lgg_cohort):
    seg = {"enabled": True, "preset": "demo", "spacing": 4.0, "patch_size": [32, 32, 32],
           "samples_per_volume": 2, "net": {"features": [4, 8, 16, 32], "bottleneck": 32,
                                            "expand_channels": 8, "se_reduction": 2},
           "train": {"epochs": 1, "batch_size": 2}, "inference": {"roi_size": [32, 32, 32]}}
    cfg = _lgg_config(tmp_path, lgg_cohort, segmentation=seg)
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(tmp_path / "ws"), "--until", "segment"])
    assert res.exit_code == 0, res.output
    model_cfg = json.loads((tmp_path / "ws" / "segment" / "model" / "config.json").read_text())
    assert model_cfg["segmentation"]["sequences"] == ["t1", "t1ce", "flair"]
    assert model_cfg["in_channels"] == 3
    split = pd.read_csv(tmp_path / "ws" / "split" / "split.csv", dtype={"patient_id": str},
                        keep_default_na=False).set_index("patient_id")
    # without grading the U-Net trains (and validates) on the survival training centre only
    seen = _segmentation_patients(tmp_path / "ws" / "segment" / "model")
    assert seen and set(split.loc[sorted(seen), "survival_cohort"]) == {"B"}


@pytest.mark.slow
def test_patients_without_grade_or_survival_are_left_out_and_listed(tmp_path, base_cohort):
    clin = pd.read_csv(base_cohort / "clinical.csv", dtype={"patient_id": str})
    clin["grade"] = clin["grade"].astype(object)
    no_grade = list(clin["patient_id"].iloc[[0, 1]])
    lgg_rows = clin.index[clin["grade"].isin(["II", "III"])]
    no_os = clin.at[lgg_rows[4], "patient_id"]
    clin.loc[[0, 1], "grade"] = None
    clin.loc[lgg_rows[4], ["os_time", "event"]] = None
    clin.to_csv(tmp_path / "gaps.csv", index=False)
    cfg = _write(tmp_path / "gaps.yaml", {
        **FAST, "preset": "demo", "cohort": {"root": str(base_cohort)},
        "clinical": {"path": "gaps.csv"}, "deep3d": {"enabled": False},
        "deep2d": {**FAST["deep2d"], "enabled": False},
        "survival": {**FAST["survival"], "force_signature": True,
                     "sequence": {"force": "t1ce", "evaluate": False}}})
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    excluded = json.loads((ws / "split" / "excluded.json").read_text())
    assert [r["patient_id"] for r in excluded["grading"]] == no_grade
    assert [r["patient_id"] for r in excluded["survival"]] == [no_os]
    assert excluded["survival"][0]["missing"] == ["os_time", "event"]
    split = pd.read_csv(ws / "split" / "split.csv", dtype={"patient_id": str},
                        keep_default_na=False).set_index("patient_id")
    assert (split.loc[no_grade, "grade_split"] == "").all()
    assert split.at[no_os, "survival_cohort"] == ""
    assert json.loads((ws / "split" / "split.json").read_text())["excluded"] == {"grading": 2, "survival": 1}
    scored = pd.read_csv(ws / "grade" / "tables" / "scores.csv", dtype={"patient_id": str}) \
        if (ws / "grade" / "tables" / "scores.csv").is_file() else None
    if scored is not None and "patient_id" in scored:
        assert not set(no_grade) & set(scored["patient_id"])
    html = (ws / "report" / "report.html").read_text(encoding="utf-8")
    assert "Patients left out of an analysis" in html
    for pid in (*no_grade, no_os):
        assert pid in html
    assert "no grade in the clinical table" in html


def test_training_ranges_flag_only_clear_departures():
    from gliorad.ranges import MARGIN, describe, out_of_range

    r = describe([0.0, 1.0, 2.0, np.nan, 10.0])
    assert r == {"n": 4, "min": 0.0, "max": 10.0, "median": 1.5}
    assert describe([np.nan]) is None
    ranges = {"a": r}
    assert out_of_range(ranges, {"a": 10.0 + 10 * MARGIN}, "feature") == []  # within the margin
    (hit,) = out_of_range(ranges, {"a": 11.5, "b": 1e9}, "feature")  # b has no range
    assert hit["value"] == 11.5 and hit["training_max"] == 10.0 and hit["n_training"] == 4
    assert re.match(r"feature a = 11\.5 is above the range of the 4 training patients \(0 to 10\)",
                    hit["message"])
    (low,) = out_of_range(ranges, {"a": -5.0}, "feature")
    assert "is below the range" in low["message"]
    assert out_of_range(ranges, {"a": np.nan}, "feature") == []
    assert out_of_range(ranges, {"a": None}, "feature") == []


def test_grade_label_column_with_a_missing_label_leaves_the_patient_out(tmp_path, caplog):
    rng = np.random.default_rng(3)
    n = 40
    y = np.r_[np.ones(16, int), np.zeros(24, int)]
    df = pd.DataFrame(rng.normal(size=(n, 6)) + y[:, None], columns=[f"f{i}" for i in range(6)])
    df.insert(0, "patient_id", [f"P{i:02d}" for i in range(n)])
    df.insert(1, "grade", np.where(y == 1, "HGG", "LGG").astype(object))
    df.loc[5, "grade"] = None
    df.to_csv(tmp_path / "f.csv", index=False)
    with caplog.at_level("WARNING", logger="gliorad.tables"):
        res = runner.invoke(app, ["grade", "cv", "--features", str(tmp_path / "f.csv"), "--labels",
                                  "grade", "--out", str(tmp_path / "o"), "--preset", "demo",
                                  "--splits", "3", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    assert re.search(r"column 'grade': grade label missing for 1 patient\(s\), left out of "
                     r"grading: P05", caplog.text)
    pred = pd.read_csv(tmp_path / "o" / "predictions.csv", dtype={"patient_id": str})
    assert "P05" not in set(pred["patient_id"]) and len(set(pred["patient_id"])) == n - 1
