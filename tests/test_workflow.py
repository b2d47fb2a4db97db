"""``gliorad run``: run configs (presets, validation messages, overrides), the stage graph, and a
demo-size run killed in the middle of a stage that resumes to the same results."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gliorad.cli import app
from gliorad.commands.run import parse_overrides
from gliorad.errors import GlioradInputError
from gliorad.run_config import load_run_config, parse_run_config, preset_text
from gliorad.workflow import build_stages

runner = CliRunner()

#: A demo-shaped run small enough for the test suite: every stage but segmentation (its
#: training and resume are tested in test_segmentation.py; here the manual masks are used).
TINY = {
    "preset": "demo",
    "run": {"seed": 0, "n_jobs": 2},
    "synthetic": {"n_patients": 80, "spacing": 4.0, "hgg_fraction": 0.4,
                  "lgg_baseline": {"shape": 1.2, "median_days": 700.0}},
    "segmentation": {"enabled": False},
    "radiomics": {"sequences": ["t1", "t1ce", "t2"]},
    "deep3d": {"size": [16, 16, 16], "net": {"widths": [8, 16, 32, 64], "hidden": 16},
               "train": {"epochs": 2}, "cross_fit": 2},
    "deep2d": {"size": [32, 32], "net": {"widths": [8, 16, 32, 64], "hidden": 16},
               "train": {"epochs": 1}},
    "grading": {"svm_C": [1.0], "svm_gamma": [0.1], "lasso_strengths": 3, "rf_n_estimators": 20},
    "survival": {"sequence": {"force": "t1ce", "evaluate": False}, "cv_folds": 3,
                 "factors": ["age", "grade"], "min_level_size": 2,
                 "signature": {"n_estimators": 50, "n_alphas": 5, "cv_folds": 3},
                 "calibration_boot": 0, "min_events_per_factor": 0, "force_signature": True},
    "report": {"enabled": True, "title": "tiny"},
}

#: Files whose content must not depend on whether the run was interrupted (provenance files
#: carry times and are left out).
RESULT_FILES = [
    "validate/clinical.csv", "split/split.csv", "radiomics/radiomics_manual.csv",
    "deep3d/patch_se/cnn3d_patch_se.csv", "deep3d/patch_se/cnn3d_patch_se_predictions.csv",
    "deep3d_oof/patch_se/cnn3d_patch_se_oof_predictions.csv",
    "deep2d/cnn2d_dual.csv", "grade/tables/table_s3.csv", "grade/tables/table_1.csv",
    "grade/tables/table_2.csv", "grade/fused_features.csv",
    "survival/analysis/metrics.json",
]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _gliorad(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "gliorad.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """An uninterrupted tiny run: (config path, workspace, console output)."""
    root = tmp_path_factory.mktemp("tiny_run")
    cfg = _write(root / "tiny.yaml", TINY)
    ws = root / "ws"
    proc = _gliorad("run", str(cfg), "--workspace", str(ws))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return cfg, ws, out


# ------------------------------------------------------------------------------------ configs
def test_presets_load_and_show():
    cfg = load_run_config("demo")
    assert cfg.synthetic.n_patients == 240 and cfg.grading_scheme == "split"
    assert cfg.grading.feature_groups == ("cnn3d_",)
    assert list(cfg.deep3d) == ["patch_se"] and cfg.deep3d["patch_se"].net.se is True
    assert cfg.survival.sequence.deep_prefix == "cnn2d_"
    names = [s.name for s in build_stages(cfg)]
    assert names == ["cohort", "validate", "split", "segment", "radiomics", "agreement", "deep3d",
                     "deep2d", "grade", "survival", "bundle", "report"]
    res = runner.invoke(app, ["config", "show", "demo"])
    assert res.exit_code == 0 and yaml.safe_load(res.output) == yaml.safe_load(preset_text("demo"))
    assert "# " in res.output  # documented
    res = runner.invoke(app, ["config", "show", "nnunet"])
    assert res.exit_code == 2 and re.search(r"run preset 'nnunet' is not valid.*demo, paper", res.output)


def test_paper_preset_needs_a_cohort(tmp_path):
    with pytest.raises(GlioradInputError, match=r"paper.yaml: cohort.root: required"):
        load_run_config("paper")
    cohort = tmp_path / "c"
    cohort.mkdir()
    (tmp_path / "clin.csv").write_text("patient_id,grade\n")
    cfg = _write(tmp_path / "p.yaml", {"preset": "paper", "cohort": {"root": "c"},
                                       "clinical": {"path": "clin.csv"}})
    rc = load_run_config(cfg)
    assert rc.cohort.root == tmp_path / "c" and rc.clinical.path == tmp_path / "clin.csv"
    assert rc.preprocess is not None and sorted(rc.deep3d) == ["full_nose", "full_se", "patch_nose",
                                                               "patch_se"]
    names = [s.name for s in build_stages(rc)]
    assert names[:4] == ["validate", "preprocess", "split", "segment"]


@pytest.mark.parametrize("change, message", [
    ({"segmentaton": {}}, r"x.yaml: unknown section\(s\) 'segmentaton'; expected: run, cohort"),
    ({"segmentation": {"patch_sise": [8, 8, 8]}}, r"x.yaml: segmentation.patch_sise: Extra inputs"),
    ({"segmentation": {"train": {"epochs": -1}}}, r"x.yaml: segmentation.train.epochs: .*(got -1)"),
    ({"segmentation": {"preset": "nnunet"}}, (r"segmentation.preset 'nnunet' is not valid; expected "
                                             r"one of: paper, demo")),
    ({"grading": {"scheme": "loo"}}, r"grading.scheme 'loo' is not valid; expected one of: split, cv"),
    ({"grading": {"svm_C": [-1]}}, r"x.yaml: grading.svm_C: grid values must be > 0.*\(got \[-1\]\)"),
    ({"deep3d": {"variants": ["patch_se", "patch_xx"]}}, (r"deep3d.variants 'patch_xx' is not valid; "
                                                         r"expected one of: patch_se, patch_nose")),
    ({"deep3d": {"variants": []}}, r"deep3d.variants: expected a non-empty list"),
    ({"deep2d": {"imagenet_weights": "missing.pth"}}, (r"deep2d.imagenet_weights: .*missing.pth does "
                                                      r"not exist")),
    ({"deep2d": {"enabled": "yes"}}, r"deep2d.enabled: expected true or false \(got 'yes'\)"),
    ({"radiomics": {"params": "fastest"}}, (r"radiomics.params: radiomics parameters .*fastest.*"
                                           r"neither a preset")),
    ({"radiomics": {"region": "edema"}}, r"radiomics.region: 'edema' is not valid; expected one of"),
    ({"survival": {"cutoff": "mean"}}, r"x.yaml: survival.cutoff: .*(got 'mean')"),
    ({"run": {"n_jobs": 0}}, r"x.yaml: run.n_jobs: .*(got 0)"),
    ({"synthetic": {"spacing": 9}}, r"x.yaml: synthetic.spacing: .*(got 9)"),
    ({"preprocess": {"enabled": True}}, r"preprocess.enabled: a synthetic cohort is generated"),
])
def test_bad_config_names_key_value_and_choices(tmp_path, change, message):
    cfg = _write(tmp_path / "x.yaml", {"preset": "demo", **change})
    with pytest.raises(GlioradInputError, match=message):
        load_run_config(cfg)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [\n")
    with pytest.raises(GlioradInputError, match=r"bad.yaml: not valid YAML"):
        load_run_config(bad)
    with pytest.raises(GlioradInputError, match=r"nope.yaml: config file not found"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(GlioradInputError, match=r"'nope' is neither a preset \(demo, paper, best\) nor a file"):
        load_run_config("nope")
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n")
    with pytest.raises(GlioradInputError, match=r"list.yaml: expected a mapping at the top level"):
        load_run_config(lst)


def test_overrides_and_disabled_stages():
    assert parse_overrides(["segmentation.train.epochs=3", "deep3d.enabled=false",
                            "grading.svm_C=[1, 2]"]) == {
        "segmentation": {"train": {"epochs": 3}}, "deep3d": {"enabled": False},
        "grading": {"svm_C": [1, 2]}}
    for bad in ("epochs", "=3", "a..b=1"):
        with pytest.raises(GlioradInputError, match=r"expected section.key=value"):
            parse_overrides([bad])
    with pytest.raises(GlioradInputError, match=r"given both as a value and a section"):
        parse_overrides(["run=1", "run.seed=2"])
    cfg = load_run_config("demo", parse_overrides(["segmentation.enabled=false", "deep3d.enabled=false",
                                                   "deep2d.enabled=false"]))
    names = [s.name for s in build_stages(cfg)]
    assert "segment" not in names and "agreement" not in names and "deep3d" not in names
    assert "deep2d" not in names and cfg.survival.sequence.deep_prefix is None
    res = runner.invoke(app, ["config", "check", "demo", "--set", "segmentation.train.epochs=7"])
    assert res.exit_code == 0 and yaml.safe_load(res.output)["segmentation"]["train"]["epochs"] == 7
    res = runner.invoke(app, ["config", "check", "demo", "--set", "grading.scheme=loo"])
    assert res.exit_code == 2 and "grading.scheme 'loo' is not valid" in res.output


def test_stage_settings_are_the_fingerprint():
    a = {s.name: s for s in build_stages(load_run_config("demo"))}
    b = {s.name: s for s in build_stages(load_run_config("demo", {"deep3d": {"train": {"epochs": 3}}}))}
    changed = sorted(n for n in a if a[n].settings != b[n].settings)
    assert "deep3d" in changed and "segment" not in changed and "radiomics" not in changed


def test_fixed_split_parts_are_used():
    from gliorad.grading.config import GradingConfig
    from gliorad.grading.evaluate import fixed_positions, split_evaluate_grading

    rng = np.random.default_rng(0)
    ids = [f"P{i:02d}" for i in range(40)]
    y = pd.Series(np.r_[np.ones(16, int), np.zeros(24, int)], index=ids)
    X = pd.DataFrame(rng.normal(size=(40, 6)) + y.to_numpy()[:, None], index=ids)
    parts = {p: ("test" if i % 5 == 0 else "val" if i % 5 == 1 else "train") for i, p in enumerate(ids)}
    cfg = GradingConfig.preset("demo", svm_C=(1.0,), svm_gamma=(0.1,), lasso_strengths=3,
                               rf_n_estimators=10)
    res = split_evaluate_grading(X, y, cfg, parts=parts)
    assert sorted(res.scores().index) == sorted(p for p in ids if parts[p] == "test")
    with pytest.raises(GlioradInputError, match=r"1 patient\(s\) have no part in the given split: P00"):
        fixed_positions(ids, {p: v for p, v in parts.items() if p != "P00"})
    with pytest.raises(GlioradInputError, match=r"split parts must be train, val or test; got \['dev'\]"):
        fixed_positions(ids, {**parts, "P01": "dev"})


# ---------------------------------------------------------------------------------- the run
def test_tiny_run_produces_every_stage(tiny_run):
    _, ws, out = tiny_run
    for stage in ("cohort", "validate", "split", "radiomics", "deep3d", "deep3d_oof", "deep2d",
                  "grade", "survival", "bundle", "report"):
        assert (ws / stage / "_stage.json").is_file(), stage
    sp = pd.read_csv(ws / "split" / "split.csv", dtype={"patient_id": str})
    test_ids = set(sp.loc[sp["grade_split"] == "test", "patient_id"])
    # the 3D CNN never saw a test patient, and the grading tables report exactly those patients
    prov = json.loads((ws / "deep3d" / "patch_se" / "provenance.json").read_text(encoding="utf-8"))
    trained = set(prov.get("train_ids", [])) | set(prov.get("val_ids", []) or [])
    assert trained and not trained & test_ids
    pred = pd.read_csv(ws / "grade" / "tables" / "predictions" / "fused_patch_se.csv",
                       dtype={"patient_id": str})
    assert set(pred["patient_id"]) == test_ids
    # cross-fitted networks: each training patient predicted by a network that did not train on it
    train_ids = set(sp.loc[sp["grade_split"] == "train", "patient_id"])
    oof = pd.read_csv(ws / "deep3d_oof" / "patch_se" / "cnn3d_patch_se_oof_predictions.csv",
                      dtype={"patient_id": str})
    assert set(oof["patient_id"]) == train_ids and sorted(oof["fold"].unique()) == [1, 2]
    for k in (1, 2):
        fp = json.loads((ws / "deep3d_oof" / "patch_se" / f"fold{k}" / "provenance.json")
                        .read_text(encoding="utf-8"))
        seen = set(fp["train_ids"]) | set(fp.get("val_ids") or [])
        assert not seen & set(oof.loc[oof["fold"] == k, "patient_id"]) and not seen & test_ids
    t1 = pd.read_csv(ws / "grade" / "tables" / "table_1.csv")
    assert list(t1["set"]) == ["fused_patch_se", "stacked_patch_se"]
    inputs = json.loads((ws / "grade" / "model_inputs.json").read_text(encoding="utf-8"))
    assert inputs["fusion"] == "stacked"
    assert "cnn3d_probability" in pd.read_csv(ws / "grade" / "fused_features.csv", nrows=1).columns
    # the 2D CNN is trained on LGG patients of the survival training centre only
    prov2 = json.loads((ws / "deep2d" / "provenance.json").read_text(encoding="utf-8"))
    lgg_b = set(sp.loc[(sp["grade_group"] == "LGG") & (sp["survival_cohort"] == "B"), "patient_id"])
    assert set(prov2["train_ids"]) <= lgg_b
    assert "report: " in out and (ws / "report" / "report.html").is_file()
    assert "grading (fused, fused_patch_se): test AUC" in out
    assert "grading (stacked, stacked_patch_se): test AUC" in out


def test_killed_run_resumes_to_identical_results(tiny_run, tmp_path):
    cfg, ref_ws, _ = tiny_run
    ws = tmp_path / "ws"
    proc = _gliorad("run", str(cfg), "--workspace", str(ws))
    # kill (SIGKILL) once the 3D CNN has written a training checkpoint, in the middle of the stage
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if list(ws.glob(".deep3d.work-*/patch_se/model/checkpoints/*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ws / "deep3d").exists() and (ws / "radiomics" / "_stage.json").is_file()
    resumed = _gliorad("run", str(cfg), "--workspace", str(ws))
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-4000:]
    for stage in ("cohort", "validate", "split", "radiomics"):
        assert re.search(rf"\] {stage}: up to date, skipped", out), stage
    assert re.search(r"\] deep3d: running", out)
    for rel in RESULT_FILES:
        assert (ws / rel).read_bytes() == (ref_ws / rel).read_bytes(), rel
    again = _gliorad("run", str(cfg), "--workspace", str(ws))
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and out.count("up to date, skipped") == 11, out


def test_predict_with_the_bundle_of_a_run(tiny_run, tmp_path):
    """``gliorad predict`` on a new synthetic patient with the bundle ``gliorad run`` saved
    (the tiny run uses manual masks, so the patient's mask is given)."""
    from gliorad.synthetic import SynthConfig, generate_cohort

    _, ws, _ = tiny_run
    new = generate_cohort(tmp_path / "new", SynthConfig(n_patients=4, seed=11, spacing=4.0,
                                                        hgg_fraction=0.4))
    clin = pd.read_csv(new.root / "clinical.csv", dtype={"patient_id": str})
    row = clin[clin["grade"].isin(["II", "III"])].iloc[0]
    pid = row["patient_id"]
    pdir = new.root / pid
    res = runner.invoke(app, ["predict", str(pdir), "--bundle", str(ws / "bundle" / "bundle"),
                              "--out", str(tmp_path / "pred"), "--mask",
                              str(pdir / f"{pid}_seg.nii.gz"),
                              "--clinical", f"age={row['age']},grade={row['grade']}"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output[res.output.index("{"):])
    assert 0 <= printed["grading"]["probability_hgg"] <= 1
    # the bundle's grading model is the stacked one, fed the bundled network's own probability
    assert 0 < printed["grading"]["cnn3d_probability_hgg"] < 1
    assert printed["survival"]["risk_group"] in ("high", "low")
    surv = printed["survival"]["nomograms"]["integrated"]["survival"]
    values = [float(v) for v in (surv.values() if isinstance(surv, dict) else surv)]
    assert len(values) == 3  # the preset's times: 1, 3 and 5 years
    assert all(0 <= v <= 1 for v in values) and values == sorted(values, reverse=True)
    assert (tmp_path / "pred" / "prediction.json").is_file()
    assert (tmp_path / "pred" / "summary.html").is_file()


def test_segmentation_training_subset():
    from gliorad.workflow import segmentation_ids

    ids = [f"P{i:03d}" for i in range(100)]
    sp = pd.DataFrame({"patient_id": ids,
                       "grade_split": ["train"] * 60 + ["val"] * 20 + ["test"] * 20})
    ids_, val = segmentation_ids(sp, None, 0)
    assert ids_ == ids[:80] and val == ids[60:80]
    chosen, val = segmentation_ids(sp, 32, 0)
    assert len(chosen) == 32 and val is None and set(chosen) <= set(ids[:80])
    assert segmentation_ids(sp, 32, 0) == (chosen, None) and segmentation_ids(sp, 32, 1)[0] != chosen
    with pytest.raises(GlioradInputError, match=r"segmentation.train_patients: expected an integer >= 2"):
        parse_run_config({**yaml.safe_load(preset_text("demo")),
                          "segmentation": {"train_patients": "all"}}, "x.yaml")
    assert load_run_config("demo").segmentation_train_patients == 48


@pytest.mark.realdata
@pytest.mark.slow
def test_predict_real_brats2018_patient_with_the_demo_bundle(shared_data, tmp_path):
    """Local check: a real BraTS 2018 patient through the bundle of ``make demo`` (skips without
    ../shared/data or without a finished demo workspace in the repository folder)."""
    from gliorad.predict import predict_patient

    bundle = Path(__file__).resolve().parents[1] / "demo_workspace" / "bundle" / "bundle"
    if not (bundle / "manifest.json").is_file():
        pytest.skip("no demo_workspace/bundle/bundle: run `make demo` first")
    folder = shared_data / "brats2018" / "Brats18_TCIA10_628_1"
    try:
        res = predict_patient(folder, bundle, tmp_path, clinical={"age": "45", "grade": "II"})
    except GlioradInputError as err:
        # the demo's U-Net has only seen synthetic 3 mm brains; on a real scan it may find no
        # tumour, which predict reports clearly; the rest of the chain then runs on the manual mask
        assert "the tumour mask is empty" in str(err)
        res = predict_patient(folder, bundle, tmp_path, clinical={"age": "45", "grade": "II"},
                              mask=folder / "Brats18_TCIA10_628_1_seg.nii.gz")
    assert res["inputs"]["resampled"] is True and res["mask"]["voxels"] > 0
    assert 0 <= res["grading"]["probability_hgg"] <= 1
    assert res["survival"]["risk_group"] in ("high", "low")
    assert (tmp_path / "prediction.json").is_file() and (tmp_path / "summary.html").is_file()


def test_tumour_masks_lists_empty_automatic_masks(tmp_path):
    import SimpleITK as sitk

    from gliorad.segmentation import mask_path
    from gliorad.workflow import tumour_masks

    for pid, n in (("P1", 5), ("P2", 0), ("P3", 1)):
        arr = np.zeros((6, 7, 8), np.uint8)
        arr.flat[:n] = 1
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(mask_path(tmp_path, pid)))
    assert tumour_masks(tmp_path, ["P1", "P2", "P3"]) == (["P1", "P3"], ["P2"])


def test_user_cohort_run_and_changed_input_reruns(tmp_path):
    """A run on a cohort folder named in the config (no synthetic section): validate writes the
    canonical clinical table and the input listing; touching an image reruns what follows."""
    from gliorad.synthetic import SynthConfig, generate_cohort
    from gliorad.workflow import run_workflow

    res = generate_cohort(tmp_path / "data", SynthConfig(n_patients=20, seed=3, spacing=4.0))
    cfg = _write(tmp_path / "run.yaml", {
        "preset": "demo", "synthetic": None,
        "cohort": {"root": "data", "naming": "brats2018"},
        "clinical": {"path": "data/clinical.csv", "time_unit": "days"}})
    rc = load_run_config(cfg)
    assert rc.synthetic is None and rc.cohort.root == tmp_path / "data"
    lines: list[str] = []
    run_workflow(rc, tmp_path / "ws", until="split", echo=lines.append)
    assert lines[0].startswith("[1/11] validate: running")
    listing = json.loads((tmp_path / "ws" / "validate" / "inputs.json").read_text(encoding="utf-8"))
    assert len(listing["files"]) == 20 * 5 + 3 + 1  # 4 sequences + seg, cohort files, clinical
    clin = pd.read_csv(tmp_path / "ws" / "validate" / "clinical.csv", dtype={"patient_id": str})
    assert {"patient_id", "grade", "os_time", "event"} <= set(clin.columns) and len(clin) == 20
    sp = pd.read_csv(tmp_path / "ws" / "split" / "split.csv", dtype={"patient_id": str})
    assert sorted(sp["grade_split"].value_counts().to_dict().items()) == [("test", 4), ("train", 12),
                                                                         ("val", 4)]
    lines.clear()
    run_workflow(rc, tmp_path / "ws", until="split", echo=lines.append)
    assert [ln.split("] ", 1)[1] for ln in lines if re.match(r"\[\d+/\d+\] ", ln)] == [
        "validate: up to date, skipped", "split: up to date, skipped"]
    img = next((res.root).glob("*/*_t1.nii.gz"))
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    lines.clear()
    run_workflow(rc, tmp_path / "ws", until="split", echo=lines.append)
    assert any("validate: running" in ln for ln in lines)
