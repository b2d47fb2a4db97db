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


def test_malignancy_shows_as_enhancement_and_core_volume(small_cohort):
    from scipy.stats import spearmanr

    truth = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))
    df = pd.DataFrame.from_dict(truth["patients"], orient="index")
    assert spearmanr(df["malignancy_m"], df["enhancing_fraction"]).statistic > 0.4
    vol = df["volume_ml_label1"] + df["volume_ml_label4"]
    assert spearmanr(df["malignancy_m"], vol).statistic > 0.3
    # grade follows m and u: HGG have the higher mean of both
    by = df.groupby("grade_group")[["malignancy_m", "infiltration_u"]].mean()
    assert (by.loc["HGG"] > by.loc["LGG"]).all()


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
    assert hgg_enh > 0.7 and lgg_enh < 0.5 and hgg_enh > lgg_enh + 0.25


def test_existing_folder_needs_overwrite(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GlioradInputError, match=r"c: folder exists and is not empty; pass overwrite"):
        generate_cohort(out, SynthConfig(n_patients=2, spacing=4.0), n_jobs=1)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_output_path_that_is_a_file_is_refused_and_kept(tmp_path):
    out = tmp_path / "cohort"
    out.write_text("not a folder")
    with pytest.raises(GlioradInputError, match=r"cohort: exists and is not a folder"):
        generate_cohort(out, SynthConfig(n_patients=2, spacing=4.0), n_jobs=1)
    assert out.read_text(encoding="utf-8") == "not a folder"


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


def test_grade_probability_follows_the_three_latent_variables():
    cfg = SynthConfig(n_patients=200, seed=2)
    t = sample_patients(cfg)
    beta = np.log(cfg.hgg_fraction / (1 - cfg.hgg_fraction))
    expected = 1 / (1 + np.exp(-(cfg.grade_slope * t.malignancy_m + cfg.infiltration_slope * t.infiltration_u
                                 + cfg.mismatch_slope * t.mismatch_w + beta)))
    np.testing.assert_allclose(t.grade_probability, expected, rtol=1e-12)
    # the infiltration band widens with u (monotone), within [0, infiltration_max_mm]
    order = np.argsort(t.infiltration_u.to_numpy())
    assert np.all(np.diff(t.infiltration_mm.to_numpy()[order]) >= 0)
    assert t.infiltration_mm.between(0, cfg.infiltration_max_mm).all()
    # mismatch falls with w, within [0, mismatch_max]; u and w are independent streams
    order = np.argsort(t.mismatch_w.to_numpy())
    assert np.all(np.diff(t.flair_mismatch.to_numpy()[order]) <= 0)
    assert t.flair_mismatch.between(0, cfg.mismatch_max).all()
    assert abs(np.corrcoef(t.mismatch_w, t.infiltration_u)[0, 1]) < 0.2
    # without the infiltration and mismatch terms grade depends on m alone, and m, the images'
    # seeds and the clinical draws do not move
    t0 = sample_patients(cfg.model_copy(update={"infiltration_slope": 0.0, "mismatch_slope": 0.0}))
    np.testing.assert_array_equal(t0.malignancy_m, t.malignancy_m)
    expected0 = 1 / (1 + np.exp(-(cfg.grade_slope * t0.malignancy_m + beta)))
    np.testing.assert_allclose(t0.grade_probability, expected0, rtol=1e-12)


def test_infiltration_lies_outside_the_tumour_labels_and_grows_with_u(small_cohort):
    """The unlabelled band has weight only outside the labelled tumour (and inside the brain), and
    across patients the T2 signal just outside the labels rises with u."""
    from scipy import ndimage
    from scipy.stats import spearmanr

    cfg = SynthConfig(n_patients=12, seed=5, spacing=4.0)
    row = sample_patients(cfg).sort_values("infiltration_u").iloc[-1]
    atlas = synthetic.load_atlas(cfg.spacing)
    maps, tx = synthetic._anatomy(atlas, row)
    rng = np.random.default_rng(int(row["image_seed"]))
    labels, soft, box = synthetic._tumour(rng, row, atlas.reference, tx, maps["mask"], maps["wm"])
    band = soft["infiltration"]
    assert band.max() > 0.5 and not band[labels > 0].any() and not band[~maps["mask"][box]].any()

    truth = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))["patients"]
    shell_t2, u = [], []
    for pid, facts in truth.items():
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(small_cohort / pid / f"{pid}_seg.nii.gz")))
        t2 = sitk.GetArrayFromImage(sitk.ReadImage(str(small_cohort / pid / f"{pid}_t2.nii.gz")))
        brain = t2 > 0
        shell = ndimage.binary_dilation(seg > 0, iterations=2) & (seg == 0) & brain
        shell_t2.append((t2[shell].mean() - t2[brain].mean()) / t2[brain].std())
        u.append(facts["infiltration_u"])
    assert spearmanr(u, shell_t2).statistic > 0.4


def test_mismatch_darkens_only_the_flair_lesion():
    """T2-FLAIR mismatch: the same patient rendered with and without it differs only on FLAIR, and
    there only in the lesion: the non-enhancing core darker by about flair_mismatch, the oedema
    by about half as much."""
    from scipy import ndimage

    cfg = SynthConfig(n_patients=6, seed=1, spacing=4.0)
    row = sample_patients(cfg).query("enhancement == 'no'").iloc[0].copy()
    row["flair_mismatch"] = 0.0
    plain, _ = render_patient(row, cfg)
    row["flair_mismatch"] = 0.4
    mism, _ = render_patient(row, cfg)
    arr = {k: (sitk.GetArrayFromImage(plain[k]).astype(float), sitk.GetArrayFromImage(mism[k]).astype(float))
           for k in ("t1", "t1ce", "t2", "flair")}
    for seq in ("t1", "t1ce", "t2"):
        np.testing.assert_array_equal(*arr[seq])
    seg = sitk.GetArrayFromImage(plain["seg"])
    before, after = arr["flair"]
    core = ndimage.binary_erosion(seg == 1)
    assert 0.55 < after[core].mean() / before[core].mean() < 0.75  # 1 - 0.4, blurred edges, noise
    oedema = seg == 2  # too thin to erode at 4 mm; edges blur with the core and the brain
    assert 0.72 < after[oedema].mean() / before[oedema].mean() < 0.92  # about 1 - 0.2
    far = ~ndimage.binary_dilation(seg > 0, iterations=3) & (before > 0)
    np.testing.assert_allclose(after[far], before[far], atol=1.0)


def test_oracle_reports_each_latent_variable_alone(small_cohort):
    oracle = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))["oracle"]
    for key in ("grade_auc_of_malignancy_only", "grade_auc_of_infiltration_only",
                "grade_auc_of_mismatch_only", "grade_auc_of_flair_tumour_cues",
                "grade_auc_of_t1_t1ce_t2_patch_cues"):
        assert 0.0 <= oracle[key] <= 1.0
    # each source's oracle is the AUC of its latent variables weighted by their slopes
    from sklearn.metrics import roc_auc_score

    truth = json.loads((small_cohort / "truth.json").read_text(encoding="utf-8"))
    t, cfg = pd.DataFrame(truth["patients"]).T, truth["config"]
    y = t["grade_group"] == "HGG"
    flair = cfg["grade_slope"] * t["malignancy_m"] + cfg["mismatch_slope"] * t["mismatch_w"]
    patch = cfg["grade_slope"] * t["malignancy_m"] + cfg["infiltration_slope"] * t["infiltration_u"]
    assert oracle["grade_auc_of_flair_tumour_cues"] == pytest.approx(roc_auc_score(y, flair.astype(float)))
    assert oracle["grade_auc_of_t1_t1ce_t2_patch_cues"] == pytest.approx(roc_auc_score(y, patch.astype(float)))
    assert oracle["grade_auc_of_true_probability"] >= max(
        oracle["grade_auc_of_malignancy_only"], oracle["grade_auc_of_infiltration_only"]) - 0.1
