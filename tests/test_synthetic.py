from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from gliorad import synthetic
from gliorad.config import load_config
from gliorad.errors import GlioradInputError
from gliorad.io import file_hash
from gliorad.synthetic import SynthConfig, generate_cohort, render_patient, sample_patients
from gliorad.validation import validate


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate_cohort(out, SynthConfig(n_patients=24, seed=3, spacing=4.0), n_jobs=2)
    return out


def test_output_passes_validate_with_its_own_config(small_cohort):
    cfg = load_config(small_cohort / "cohort.yaml")
    report = validate(small_cohort, cfg.clinical.path, cfg)
    assert report.ok, report.problems
    assert len(report.cohort) == 24 and len(report.clinical) == 24


def test_images_of_a_patient_share_geometry_and_labels_are_brats(small_cohort):
    for pdir in sorted(p for p in small_cohort.iterdir() if p.is_dir())[:6]:
        imgs = {f.name: sitk.ReadImage(str(f)) for f in pdir.glob("*.nii.gz")}
        assert len(imgs) == 5
        geos = {(i.GetSize(), i.GetSpacing(), i.GetOrigin(), i.GetDirection()) for i in imgs.values()}
        assert len(geos) == 1
        seg = sitk.GetArrayFromImage(imgs[f"{pdir.name}_seg.nii.gz"])
        assert set(np.unique(seg)) <= {0, 1, 2, 4} and (seg > 0).any()
        t1 = sitk.GetArrayFromImage(imgs[f"{pdir.name}_t1.nii.gz"])
        assert t1[seg > 0].min() > 0  # tumour lies inside the (skull-stripped) brain


def test_hgg_show_more_enhancement_than_lgg(small_cohort):
    truth = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))
    df = pd.DataFrame.from_dict(truth["patients"], orient="index")
    by = df.groupby("grade_group")["enhancing_fraction"].mean()
    assert by["HGG"] > by["LGG"] + 0.05
    vol = df["volume_ml_label1"] + df["volume_ml_label4"]
    assert vol[df.grade_group == "HGG"].mean() > vol[df.grade_group == "LGG"].mean()


def test_truth_json_records_generating_parameters_and_oracle(small_cohort):
    truth = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))
    assert truth["config"]["seed"] == 3 and truth["time_unit"] == "days"
    assert 0.5 < truth["oracle"]["grade_auc_of_true_probability"] <= 1.0
    first = next(iter(truth["patients"].values()))
    for key in ("grade_probability", "latent_risk", "phenotype_z", "malignancy_m", "os_time", "event"):
        assert key in first


def test_same_seed_same_files_different_seed_different(tmp_path):
    cfg = SynthConfig(n_patients=3, seed=11, spacing=4.0)
    a = generate_cohort(tmp_path / "a", cfg, n_jobs=1).root
    b = generate_cohort(tmp_path / "b", cfg, n_jobs=2).root
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 * 5 + 3
    for rel in files:
        assert file_hash(a / rel) == file_hash(b / rel), rel
    c = generate_cohort(tmp_path / "c", cfg.model_copy(update={"seed": 12}), n_jobs=1).root
    assert file_hash(a / "clinical.csv") != file_hash(c / "clinical.csv")


def test_clinical_table_does_not_depend_on_spacing():
    a = sample_patients(SynthConfig(n_patients=30, seed=5, spacing=2.0))
    b = sample_patients(SynthConfig(n_patients=30, seed=5, spacing=3.0))
    pd.testing.assert_frame_equal(a, b)


def test_survival_follows_the_declared_cox_model():
    from lifelines import CoxPHFitter

    cfg = SynthConfig(n_patients=2500, seed=7)
    t = sample_patients(cfg)
    lgg = t[t.grade_group == "LGG"]
    X = pd.DataFrame({
        "age_per_year": lgg.age, "oligodendroglioma": (lgg.histology == "oligodendroglioma") * 1.0,
        "oligoastrocytoma": (lgg.histology == "oligoastrocytoma") * 1.0,
        "grade_III": (lgg.grade == "III") * 1.0, "enhancement": (lgg.enhancement == "yes") * 1.0,
        "phenotype_z": lgg.phenotype_z, "T": lgg.os_time, "E": lgg.event,
    })
    assert 0.2 < X.E.mean() < 0.8
    fit = CoxPHFitter().fit(X, "T", "E")
    for name, beta in cfg.lgg_cox.items():
        est, se = fit.params_[name], fit.standard_errors_[name]
        assert np.sign(est) == np.sign(beta), name
        assert abs(est - beta) < 4 * se, (name, est, beta, se)


def test_grade_probability_is_calibrated_and_informative():
    t = sample_patients(SynthConfig(n_patients=3000, seed=1, hgg_fraction=0.5))
    y = (t.grade_group == "HGG").to_numpy()
    p = t.grade_probability.to_numpy()
    assert abs(y.mean() - p.mean()) < 0.03
    bins = pd.qcut(p, 5, labels=False)
    observed = pd.Series(y).groupby(bins).mean().to_numpy()
    expected = pd.Series(p).groupby(bins).mean().to_numpy()
    np.testing.assert_allclose(observed, expected, atol=0.06)
    lgg_enh = (t[t.grade_group == "LGG"].enhancement == "yes").mean()
    hgg_enh = (t[t.grade_group == "HGG"].enhancement == "yes").mean()
    assert hgg_enh > 0.8 and lgg_enh < 0.4


def test_existing_folder_needs_overwrite(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GlioradInputError, match=r"c: folder exists and is not empty; pass overwrite"):
        generate_cohort(out, SynthConfig(n_patients=2, spacing=4.0), n_jobs=1)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_failure_midway_leaves_no_partial_cohort(tmp_path, monkeypatch):
    calls = []

    def boom(args):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return synthetic.__dict__["_render_and_write_orig"](args)

    monkeypatch.setitem(synthetic.__dict__, "_render_and_write_orig", synthetic._render_and_write)
    monkeypatch.setattr(synthetic, "_render_and_write", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_cohort(tmp_path / "c", SynthConfig(n_patients=3, spacing=4.0), n_jobs=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_one_millimetre_grid_works():
    cfg = SynthConfig(n_patients=2, seed=0, spacing=1.0)
    row = sample_patients(cfg).iloc[0]
    images, facts = render_patient(row, cfg)
    assert images["t1"].GetSpacing() == (1.0, 1.0, 1.0)
    assert images["t1"].GetSize()[0] >= 190
    assert facts["volume_ml_label1"] + facts["volume_ml_label4"] > 0.5
