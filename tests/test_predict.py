"""Single-patient prediction with a real small bundle (built by ``tests/test_bundle.py``'s
:func:`build_bundle`): end to end on a held-out synthetic patient, agreement with the cohort
pipeline's features, determinism, resampling and naming, clinical factors, the command line,
bad inputs; and a local check on a real BraTS 2018 patient (skipped without the data)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

# the bundle is built by test_bundle.py's builder (tests/ is on sys.path under pytest)
from test_bundle import SEQUENCES, SURVIVAL, build_bundle
from typer.testing import CliRunner

from gliorad.bundle import load_model_bundle, save_model_bundle
from gliorad.commands.predict import app, parse_clinical_args
from gliorad.errors import GlioradInputError
from gliorad.io import Geometry
from gliorad.predict import OUTPUT_FILES, parse_clinical_values, predict_patient

CLINICAL = {"age": "45", "sex": "F", "grade": "III", "histology": "astrocytoma"}
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def bundle(built):
    return load_model_bundle(built.bundle)


@pytest.fixture(scope="module")
def predicted(built, bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred")
    result = predict_patient(built.cohort / built.held_out, bundle, out, clinical=CLINICAL)
    return result, out


def _stable(result: dict) -> dict:
    """The prediction without what differs between runs by design (time, output paths)."""
    return {k: v for k, v in result.items() if k not in ("run", "files")}


def _copy_patient(built, dest: Path, naming: str = "brats2018", drop=(), spacing=None) -> Path:
    """The held-out patient's files in ``dest`` (optionally renamed, without some sequences,
    resampled to another spacing)."""
    suffix = {"brats2018": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
              "brats2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"}}
    pid = built.held_out
    dest.mkdir(parents=True)
    for key, sfx in suffix["brats2018"].items():
        if key in drop:
            continue
        src = built.cohort / pid / f"{pid}{sfx}.nii.gz"
        target = dest / f"{pid}{suffix[naming][key]}.nii.gz"
        if spacing is None:
            shutil.copyfile(src, target)
            continue
        img = sitk.ReadImage(str(src))
        size = [int(np.ceil(n * s / spacing)) for n, s in zip(img.GetSize(), img.GetSpacing())]
        ref = sitk.Image(size, sitk.sitkUInt8)
        ref.SetOrigin(img.GetOrigin())
        ref.SetDirection(img.GetDirection())
        ref.SetSpacing([spacing] * 3)
        interp = sitk.sitkNearestNeighbor if key == "seg" else sitk.sitkLinear
        sitk.WriteImage(sitk.Resample(img, ref, sitk.Transform(), interp, 0, img.GetPixelID()), str(target))
    return dest


# ------------------------------------------------------------------------------------ end to end
def test_end_to_end_on_a_held_out_patient(built, bundle, predicted):
    result, out = predicted
    for name in OUTPUT_FILES.values():
        assert (out / name).is_file(), name
    assert json.loads((out / "prediction.json").read_text(encoding="utf-8")) == result
    pid = built.held_out
    assert result["patient_id"] == pid and pid not in built.train_ids
    # mask: on the patient's grid, whole-tumour labels, overlapping the manual mask
    mask = sitk.ReadImage(str(out / "mask.nii.gz"))
    t1 = sitk.ReadImage(str(built.cohort / pid / f"{pid}_t1.nii.gz"))
    assert not Geometry.of(t1).differences(Geometry.of(mask))
    arr = sitk.GetArrayFromImage(mask)
    assert set(np.unique(arr)) == {0, 1} and result["mask"]["voxels"] == int(arr.sum())
    manual = sitk.GetArrayFromImage(sitk.ReadImage(str(built.cohort / pid / f"{pid}_seg.nii.gz"))) > 0
    dice = 2 * np.logical_and(arr > 0, manual).sum() / ((arr > 0).sum() + manual.sum())
    assert result["mask"]["dice_vs_manual"] == pytest.approx(dice) and dice > 0.3
    assert result["mask"]["volume_ml"] == pytest.approx(arr.sum() * 64 / 1000)
    # grade
    g = result["grading"]
    assert 0.0 <= g["probability_hgg"] <= 1.0 and 0.0 <= g["cnn3d_probability_hgg"] <= 1.0
    assert g["predicted_grade"] == ("HGG" if g["probability_hgg"] >= g["threshold"] else "LGG")
    feats = pd.read_csv(out / "features.csv", index_col=0, float_precision="round_trip")
    X = feats[bundle.feature_columns("grading")]
    X.index = X.index.astype(str)
    assert bundle.grading.decision_score(X)[0] == pytest.approx(g["probability_hgg"], rel=1e-12)
    # survival: risk group from the cut-off, survival in [0, 1] and decreasing over 1/3/5 years
    s = result["survival"]
    assert s["risk_group"] == ("high" if s["signature_score"] > s["cutoff"] else "low")
    assert s["clinical_values"] == {"age": 45.0, "sex": "F", "grade": "III", "histology": "astrocytoma"}
    for which in ("integrated", "clinical"):
        nom = s["nomograms"][which]
        assert nom["computed"], nom
        surv = nom["survival"]
        assert list(surv) == ["1-year", "3-year", "5-year"]
        values = np.array(list(surv.values()))
        assert ((values >= 0) & (values <= 1)).all() and (np.diff(values) < 0).all()
    assert s["nomograms"]["integrated"]["values"]["signature"] == s["risk_group"]
    assert result["messages"] == []
    inp = result["inputs"]
    assert inp["resampled"] is False and inp["working_spacing_mm"] == [4.0, 4.0, 4.0]
    assert set(inp["sequences"]) == set(SEQUENCES) and inp["naming"] == "brats2018"
    assert result["bundle"]["manifest_sha256"] == bundle.manifest["manifest_sha256"]
    # summary: one self-contained page with three overlay pictures and the numbers
    page = (out / "summary.html").read_text(encoding="utf-8")
    pictures = page.split('src="data:image/png;base64,')[1:]
    assert len(pictures) == 3 and "http" not in page
    for pic in pictures:
        assert base64.b64decode(pic.split('"')[0]).startswith(b"\x89PNG")
    assert f"{g['probability_hgg']:.3f}" in page and bundle.manifest["manifest_sha256"] in page
    assert "3-year survival" in page and f"{s['nomograms']['clinical']['survival']['3-year']:.3f}" in page


def test_features_match_the_cohort_pipeline(built, bundle, tmp_path):
    """Two paths agree: a training patient's features from predict (with its manual mask) are the
    cohort stages' features (radiomics_manual, cnn3d and cnn2d tables), and its grade
    probability is run_fit's model on the fused row."""
    from gliorad.features.radiomics import read_feature_table

    pid = next(p for p in built.train_ids if p.startswith("SYNA"))
    res = predict_patient(built.cohort / pid, bundle, tmp_path / "o",
                          mask=built.cohort / pid / f"{pid}_seg.nii.gz")
    assert res["mask"]["source"] == "given"
    row = pd.read_csv(tmp_path / "o" / "features.csv", index_col=0, float_precision="round_trip").iloc[0]
    rad = read_feature_table(built.radiomics).loc[pid]
    cols = [c for c in row.index if not c.startswith("cnn")]
    assert len(cols) > 50
    np.testing.assert_array_equal(row[cols].to_numpy(float), rad[cols].to_numpy(float))
    for table in (built.cnn3d_table, built.cnn2d_table):
        ref = read_feature_table(table).loc[pid]
        np.testing.assert_allclose(row[ref.index].to_numpy(float), ref.to_numpy(float),
                                   rtol=1e-5, atol=1e-6)
    # the grading model's columns (constant ones, e.g. a dead CNN unit, were dropped at fit)
    fused = read_feature_table(built.fused).loc[[pid], bundle.feature_columns("grading")]
    assert res["grading"]["probability_hgg"] == pytest.approx(
        bundle.grading.decision_score(fused)[0], abs=1e-6)


def test_deep_features_are_the_cohort_stage_features(built, bundle, tmp_path, monkeypatch):
    """predict_patient computes a patient's deep features with the deep stage's per-case function
    (``deep_case``, once per network) and gets, for a training patient with its manual mask,
    exactly the features and head outputs the cohort stages (deep_features_3d / _2d, whose
    networks the bundle holds) wrote for that patient."""
    from gliorad.features import deep
    from gliorad.features.deep2d import risk_score
    from gliorad.features.radiomics import read_feature_table

    calls = []
    per_case = deep.deep_case

    def spy(network, *args, **kwargs):
        calls.append(network.kind)
        return per_case(network, *args, **kwargs)

    monkeypatch.setattr(deep, "deep_case", spy)
    pid = next(p for p in built.train_ids if p.startswith("SYNA"))
    res = predict_patient(built.cohort / pid, bundle, tmp_path / "o",
                          mask=built.cohort / pid / f"{pid}_seg.nii.gz")
    assert calls == ["cnn3d", "cnn2d"]
    row = pd.read_csv(tmp_path / "o" / "features.csv", index_col=0, float_precision="round_trip").iloc[0]
    for table in (built.cnn3d_table, built.cnn2d_table):
        ref = read_feature_table(table).loc[pid]
        assert len(ref) == 16 and ref.index[0].endswith("_000")
        # No tolerance: the bundle's stages extracted one patient per forward pass
        # (predict_batch_size=1), as deep_case does, with the same weights in the same memory
        # layout, on the same inputs, on one thread; a batch of several patients would differ in
        # the last bits (tests/test_deep_features.py::test_deep_case_gives_the_stage_features...).
        np.testing.assert_array_equal(row[ref.index].to_numpy(float), ref.to_numpy(float))
    p3 = pd.read_csv(built.sources["cnn3d"] / "cnn3d_patch_se_predictions.csv",
                     dtype={"patient_id": str}, float_precision="round_trip").set_index("patient_id")
    assert res["grading"]["cnn3d_probability_hgg"] == pytest.approx(p3.at[pid, "probability"],
                                                                    rel=1e-15)
    p2 = pd.read_csv(built.sources["cnn2d"] / "cnn2d_dual_predictions.csv",
                     dtype={"patient_id": str}, float_precision="round_trip").set_index("patient_id")
    cnn2d = res["survival"]["cnn2d"]
    assert cnn2d["probability_grade_iii"] == pytest.approx(p2.at[pid, "probability_grade_iii"],
                                                           rel=1e-15)
    assert cnn2d["risk_score"] == p2.at[pid, "risk_score"] == risk_score(
        np.array([p2.at[pid, "survival_output"]]), bundle.cnn2d[1].survival_loss)[0]


def test_predict_uses_the_cohort_stages_per_case_functions(built, bundle, tmp_path, monkeypatch):
    """predict_patient and the cohort stages share their per-case functions (segment_case,
    radiomics_case, deep_case): a patient's mask and features from predict (the bundle's
    U-Net's mask) are, exactly, those of the cohort stages run on the same images with the
    bundle's models: predict_cohort's mask, extract_radiomics' row on that mask, the deep
    stages' per-case features on that mask."""
    from gliorad.features import deep
    from gliorad.features import radiomics as R
    from gliorad.features.deep2d import CNN2D
    from gliorad.features.deep3d import CNN3D
    from gliorad.predict import find_patient
    from gliorad.segmentation import infer, predict_cohort

    calls: list[tuple] = []
    functions = {"segment_case": (infer, infer.segment_case),
                 "radiomics_case": (R, R.radiomics_case), "deep_case": (deep, deep.deep_case)}

    def spying(name, function):
        def spy(*args, **kwargs):
            what = {"segment_case": lambda: args[2], "radiomics_case": lambda: tuple(args[0]),
                    "deep_case": lambda: args[0].kind}[name]()
            calls.append((name, what))
            return function(*args, **kwargs)
        return spy

    for name, (module, function) in functions.items():
        monkeypatch.setattr(module, name, spying(name, function))
    pid = next(p for p in built.train_ids if p.startswith("SYNA"))
    res = predict_patient(built.cohort / pid, bundle, tmp_path / "o")
    assert res["mask"]["source"] == "segmentation" and not res["inputs"]["resampled"]
    rad = bundle.radiomics
    assert calls == [("segment_case", pid), ("radiomics_case", tuple(rad["sequences"])),
                     ("deep_case", "cnn3d"), ("deep_case", "cnn2d")]
    row = pd.read_csv(tmp_path / "o" / "features.csv", index_col=0, float_precision="round_trip").iloc[0]
    mask = sitk.ReadImage(str(tmp_path / "o" / "mask.nii.gz"))

    # the cohort stages on the patient's folder with the bundle's models
    calls.clear()
    cohort, _ = find_patient(built.cohort / pid, SEQUENCES)
    predict_cohort(cohort, bundle.segmentation, tmp_path / "masks", progress=False)
    stage_mask = sitk.ReadImage(str(tmp_path / "masks" / f"{pid}.nii.gz"))
    assert not Geometry.of(stage_mask).differences(Geometry.of(mask))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(stage_mask))
    table = R.extract_radiomics(cohort, tmp_path / "radiomics", params=rad["params"],
                                sequences=rad["sequences"], manual=False,
                                auto_masks=tmp_path / "masks", region=rad["region"],
                                min_voxels=rad["min_voxels"], n_jobs=1,
                                progress=False).tables["auto"]
    assert calls == [("segment_case", pid)] + [("radiomics_case", (s,)) for s in rad["sequences"]]
    cols = [c for c in row.index if not c.startswith("cnn")]
    assert len(cols) > 50
    # No tolerance: the same function on the same image, mask and parameters, one thread each
    np.testing.assert_array_equal(row[cols].to_numpy(float), table.loc[pid, cols].to_numpy(float))
    files = cohort.patients[pid].files
    for hooks, (model, cfg) in ((CNN3D, bundle.cnn3d), (CNN2D, bundle.cnn2d)):
        # the deep stages' per-case function, which gives the stages' rows to the last bit
        # (test_deep_features_are_the_cohort_stage_features)
        values, _, _ = deep.deep_case(hooks, model, cfg, files, tmp_path / "masks" / f"{pid}.nii.gz")
        np.testing.assert_array_equal(row[list(values)].to_numpy(float), list(values.values()))


def test_deterministic(built, bundle, predicted, tmp_path):
    first, out1 = predicted
    again = predict_patient(built.cohort / built.held_out, bundle, tmp_path, clinical=CLINICAL)
    assert _stable(again) == _stable(first)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(out1 / "mask.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask.nii.gz")))
    np.testing.assert_array_equal(a, b)
    assert (out1 / "features.csv").read_text(encoding="utf-8") == (tmp_path / "features.csv").read_text(encoding="utf-8")


def test_brats2023_naming_gives_the_same_prediction(built, bundle, predicted, tmp_path):
    folder = _copy_patient(built, tmp_path / "p", naming="brats2023")
    res = predict_patient(folder, bundle, tmp_path / "o", clinical=CLINICAL)
    assert res["inputs"]["naming"] == "brats2023"
    first = _stable(predicted[0])
    for key in ("grading", "survival", "mask"):
        a, b = dict(res[key]), dict(first[key])
        a.pop("manual_mask", None), b.pop("manual_mask", None)
        assert a == b, key


def test_other_spacing_is_resampled_to_the_training_spacing(built, bundle, tmp_path):
    folder = _copy_patient(built, tmp_path / "p", spacing=3.0)
    res = predict_patient(folder, bundle, tmp_path / "o", clinical=CLINICAL)
    inp = res["inputs"]
    assert inp["resampled"] is True
    assert inp["native_spacing_mm"] == [3.0, 3.0, 3.0] and inp["working_spacing_mm"] == [4.0, 4.0, 4.0]
    assert any("resampled from 3 x 3 x 3 mm to the training cohort's 4 x 4 x 4 mm" in n
               for n in res["notes"])
    mask = sitk.ReadImage(str(tmp_path / "o" / "mask.nii.gz"))
    assert mask.GetSpacing() == (3.0, 3.0, 3.0)
    assert 0 <= res["grading"]["probability_hgg"] <= 1
    assert res["mask"]["dice_vs_manual"] > 0.3


def test_custom_file_templates_of_the_bundle(built, tmp_path):
    """A run with custom file templates (relative to the cohort folder, ``{id}/anat/...``): the
    patient's folder is read with them."""
    from gliorad.features.radiomics import load_params

    s = built.sources
    mapping = {"t1": "{id}/anat/{id}_T1w.nii.gz", "t1ce": "{id}/anat/{id}_ce-gd_T1w.nii.gz",
               "t2": "{id}/anat/{id}_T2w.nii.gz"}
    b = load_model_bundle(save_model_bundle(
        tmp_path / "b", config={"cohort": {"naming": "custom", "mapping": mapping}},
        segmentation=s["segmentation"], cnn3d=s["cnn3d"], cnn2d=None, grading=s["grading"],
        survival=None, radiomics_params=load_params("fast")))
    pid = built.held_out
    anat = tmp_path / "cohort" / pid / "anat"
    anat.mkdir(parents=True)
    for seq in ("t1", "t1ce"):
        shutil.copyfile(built.cohort / pid / f"{pid}_{seq}.nii.gz", tmp_path / "cohort" / mapping[seq].format(id=pid))
    with pytest.raises(GlioradInputError, match=rf"patient {pid} has no t2 image \(expected "
                                                 rf"{pid}/anat/{pid}_T2w\.nii\.gz\)"):
        predict_patient(tmp_path / "cohort" / pid, b, tmp_path / "o")
    shutil.copyfile(built.cohort / pid / f"{pid}_t2.nii.gz", anat / f"{pid}_T2w.nii.gz")
    res = predict_patient(tmp_path / "cohort" / pid, b, tmp_path / "o")
    assert res["patient_id"] == pid and res["inputs"]["naming"] == "custom"
    assert res["inputs"]["sequences"]["t1ce"]["file"].endswith(f"anat/{pid}_ce-gd_T1w.nii.gz")


# ------------------------------------------------------------------------------------ clinical
def test_clinical_values_are_read_as_the_clinical_table_and_coded(bundle):
    coding = bundle.survival.coding
    values, problems, _ = parse_clinical_values({"Age": " 61.5 ", "sex": "female", "grade": "3"}, coding)
    assert values == {"age": 61.5, "sex": "F", "grade": "III"} and problems == []
    values, problems, _ = parse_clinical_values(
        {"age": "abc", "sex": "X", "grade": "IV", "shoe": "42", "histology": "GBM"}, coding)
    assert values == {}
    text = "\n".join(problems)
    assert "--clinical age='abc': not valid; expected a number of years within [0, 120]" in text
    assert "--clinical sex='X': not an allowed sex; expected one of: F, M" in text
    assert "--clinical grade='IV': level 'IV' is not among the training levels; expected one of: II, III" in text
    assert "--clinical histology='GBM': level 'GBM' is not among the training levels" in text
    assert "--clinical shoe='42': 'shoe' is not a clinical factor of this bundle's survival models; " \
           "expected one of: age" in text
    values, problems, _ = parse_clinical_values({"age": "130"}, coding)
    assert values == {} and "within [0, 120]" in problems[0]


def test_signature_only_nomogram(built, tmp_path):
    """A survival analysis without clinical factors: the integrated nomogram is the signature
    alone and needs no clinical value; there is no clinical nomogram."""
    import warnings

    from gliorad.clinical import read_clinical
    from gliorad.features.radiomics import load_params
    from gliorad.survival.bundle import save_bundle
    from gliorad.survival.coding import read_feature_table
    from gliorad.survival.config import SurvivalConfig
    from gliorad.survival.evaluation import run_analysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = run_analysis(read_feature_table(built.survival_features),
                                read_clinical(built.survival_clinical),
                                SurvivalConfig.preset("demo", **SURVIVAL, factors=[]))
    save_bundle(analysis.models, tmp_path / "surv")
    sources = {**built.sources, "survival": tmp_path / "surv"}
    b = load_model_bundle(save_model_bundle(tmp_path / "b", config={}, **sources,
                                            radiomics_params=load_params("fast")))
    res = predict_patient(built.cohort / built.held_out, b, tmp_path / "o")
    noms = res["survival"]["nomograms"]
    assert noms["integrated"]["computed"] and noms["integrated"]["factors"] == ["signature"]
    values = np.array(list(noms["integrated"]["survival"].values()))
    assert ((values >= 0) & (values <= 1)).all() and (np.diff(values) < 0).all()
    assert not noms["clinical"]["computed"] and "no clinical model" in noms["clinical"]["reason"]
    assert res["messages"] == []


def _cross_fitted_survival_bundle(built, tmp_path) -> Path:
    """A bundle whose survival signature reads the cross-fitted 2D head outputs
    (``deep2d.cross_fit``): the survival models fitted on the synthetic survival table with three
    T1-Gd radiomics columns and ``cnn2d_oof_grade`` / ``cnn2d_oof_risk`` made from the 240
    patients' grades and survival times and scaled like the bundle network's head outputs, so
    that the signature keeps them."""
    import warnings

    from gliorad.clinical import read_clinical
    from gliorad.features.radiomics import load_params
    from gliorad.survival.bundle import save_bundle
    from gliorad.survival.coding import read_feature_table
    from gliorad.survival.config import SurvivalConfig
    from gliorad.survival.evaluation import run_analysis

    feats = read_feature_table(built.survival_features)
    clin = read_clinical(built.survival_clinical)
    p2 = pd.read_csv(built.sources["cnn2d"] / "cnn2d_dual_predictions.csv")
    rng = np.random.default_rng(11)
    rows = clin.loc[feats.index]
    risk = -np.log(rows["os_days"].to_numpy(float)) + rng.normal(scale=0.3, size=len(rows))
    risk = (risk - risk.mean()) / risk.std() * p2["risk_score"].std() + p2["risk_score"].mean()
    logit = 1.5 * (rows["grade"] == "III").to_numpy(float) - 0.75 + rng.normal(size=len(rows))
    table = feats[[c for c in feats.columns if c.startswith("t1ce_")][:3]].assign(
        cnn2d_oof_grade=1 / (1 + np.exp(-logit)), cnn2d_oof_risk=risk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = run_analysis(table, clin, SurvivalConfig.preset("demo", **SURVIVAL))
    save_bundle(analysis.models, tmp_path / "surv")
    return save_model_bundle(tmp_path / "b", config={}, **{**built.sources,
                                                          "survival": tmp_path / "surv"},
                             radiomics_params=load_params("fast"))


def test_cross_fitted_2d_columns_of_the_signature(built, bundle, tmp_path):
    """A signature on the cross-fitted 2D head outputs (``deep2d.cross_fit``): the bundle accepts
    it, and predict gives a patient the head outputs of the bundle's network (the one trained on
    every training patient): for a training patient with its manual mask, exactly the
    probability of grade III and risk score the deep stage wrote for it
    (``cnn2d_dual_predictions.csv``), which the signature scores. A bundle whose signature
    reads the numbered features has no such column (features.csv as before)."""
    from gliorad.features.config import CROSS_FIT_COLUMNS_2D

    head = list(CROSS_FIT_COLUMNS_2D.values())
    b = load_model_bundle(_cross_fitted_survival_bundle(built, tmp_path))
    assert set(head) <= set(b.feature_columns("survival"))
    assert b.manifest["components"]["survival"]["needs"]["signature_features"] == \
        b.feature_columns("survival")
    pid = next(p for p in built.train_ids if p.startswith("SYNA"))
    res = predict_patient(built.cohort / pid, b, tmp_path / "o",
                          mask=built.cohort / pid / f"{pid}_seg.nii.gz")
    row = pd.read_csv(tmp_path / "o" / "features.csv", index_col=0,
                      float_precision="round_trip").iloc[0]
    p2 = pd.read_csv(built.sources["cnn2d"] / "cnn2d_dual_predictions.csv",
                     dtype={"patient_id": str}, float_precision="round_trip").set_index("patient_id")
    assert row[CROSS_FIT_COLUMNS_2D["grade"]] == pytest.approx(p2.at[pid, "probability_grade_iii"],
                                                               rel=1e-15)
    assert row[CROSS_FIT_COLUMNS_2D["risk"]] == p2.at[pid, "risk_score"]
    X = row[b.feature_columns("survival")].to_frame().T.astype(float)
    X.index = pd.Index([pid])
    assert res["survival"]["signature_score"] == pytest.approx(
        float(b.survival.signature.predict(X)[0]), rel=1e-12)
    # the numbered-feature signature of the session's bundle: no head column computed
    res = predict_patient(built.cohort / pid, bundle, tmp_path / "o2",
                          mask=built.cohort / pid / f"{pid}_seg.nii.gz")
    cols = pd.read_csv(tmp_path / "o2" / "features.csv", index_col=0).columns
    assert not set(head) & set(cols) and not set(head) & set(bundle.feature_columns("survival"))


def test_cli_prints_the_prediction(built, tmp_path):
    r = runner.invoke(app, [str(built.cohort / built.held_out), "--bundle", str(built.bundle),
                            "--out", str(tmp_path), "--clinical", "age=45",
                            "--clinical", "sex=F,grade=III,histology=astrocytoma"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    assert printed == json.loads((tmp_path / "prediction.json").read_text(encoding="utf-8"))
    assert printed["survival"]["nomograms"]["clinical"]["computed"]


def test_cli_bad_clinical_values_are_named_and_the_rest_is_returned(built, tmp_path):
    r = runner.invoke(app, [str(built.cohort / built.held_out), "--bundle", str(built.bundle),
                            "--out", str(tmp_path), "--clinical", "age=abc,grade=IV,shoe=42"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    msgs = "\n".join(res["messages"])
    assert "--clinical age='abc': not valid; expected a number of years" in msgs
    assert "--clinical grade='IV': level 'IV' is not among the training levels; expected one of: II, III" in msgs
    assert "'shoe' is not a clinical factor" in msgs
    integrated = res["survival"]["nomograms"]["integrated"]
    assert not integrated["computed"]
    assert "clinical factor(s) age, grade missing or not valid" in integrated["reason"]
    assert "Give them as --clinical age=... grade=..." in integrated["reason"]
    assert 0 <= res["grading"]["probability_hgg"] <= 1 and res["survival"]["risk_group"] in ("high", "low")
    # no clinical values at all: the same messages about the missing factors
    r = runner.invoke(app, [str(built.cohort / built.held_out), "--bundle", str(built.bundle),
                            "--out", str(tmp_path / "none")])
    assert r.exit_code == 0 and "integrated nomogram not computed" in r.stdout


def test_cli_bad_input_exits_2(built, tmp_path):
    patient = str(built.cohort / built.held_out)
    args = ["--bundle", str(built.bundle), "--out", str(tmp_path / "o")]
    r = runner.invoke(app, [patient, *args, "--clinical", "age45"])
    assert r.exit_code == 2
    assert "error: --clinical 'age45' is not valid; expected KEY=VALUE, e.g. age=45" in r.output
    r = runner.invoke(app, [patient, *args, "--clinical", "age=45", "--clinical", "age=50"])
    assert r.exit_code == 2 and "--clinical age given twice ('45' and '50')" in r.output
    folder = _copy_patient(built, tmp_path / "p", drop=("t2",))
    r = runner.invoke(app, [str(folder), *args])
    assert r.exit_code == 2
    assert (f"error: {folder}: patient {built.held_out} has no t2 image (expected "
            f"{built.held_out}_t2.nii.gz); the bundle's models need t1, t1ce, t2") in r.output
    r = runner.invoke(app, [patient, "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "model bundle folder not found" in r.output
    r = runner.invoke(app, [patient, *args, "--jobs", "0"])
    assert r.exit_code == 2 and "n_jobs 0 is not valid" in r.output
    assert not (tmp_path / "o" / "prediction.json").exists()


def test_parse_clinical_args():
    assert parse_clinical_args(["age=45", "Sex = F , grade=III"]) == {"age": "45", "sex": "F", "grade": "III"}
    assert parse_clinical_args(None) == {}
    with pytest.raises(GlioradInputError, match=r"--clinical '=3' is not valid"):
        parse_clinical_args(["=3"])


# ------------------------------------------------------------------------------------ bad input
def test_missing_sequence_named(built, bundle, tmp_path):
    folder = _copy_patient(built, tmp_path / "p", drop=("t1ce",))
    with pytest.raises(GlioradInputError, match=rf"patient {built.held_out} has no t1ce image \(expected "
                                                 rf"{built.held_out}_t1ce\.nii\.gz\)"):
        predict_patient(folder, bundle, tmp_path / "o")
    assert not (tmp_path / "o" / "prediction.json").exists()


def test_folder_with_two_patients_refused(built, bundle, tmp_path):
    with pytest.raises(GlioradInputError, match=r"holds 30 patients \(SYNA_0001, .*\); give the folder "
                                                 r"of one patient"):
        predict_patient(built.cohort, bundle, tmp_path)
    with pytest.raises(GlioradInputError, match=r"patient folder not found"):
        predict_patient(tmp_path / "nope", bundle, tmp_path)


def test_given_mask_checks(built, bundle, tmp_path):
    pid = built.held_out
    seg = sitk.ReadImage(str(built.cohort / pid / f"{pid}_seg.nii.gz"))
    small = sitk.RegionOfInterest(seg, [s - 2 for s in seg.GetSize()], [0, 0, 0])
    sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
    with pytest.raises(GlioradInputError, match=r"small\.nii\.gz: mask grid differs from "
                                                 rf"{pid}_t1\.nii\.gz \(shape"):
        predict_patient(built.cohort / pid, bundle, tmp_path / "o", mask=tmp_path / "small.nii.gz")
    empty = sitk.Image(seg.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(seg)
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(GlioradInputError, match=rf"patient {pid}: the tumour mask is empty \(.*empty\.nii\.gz "
                                                 r"has no voxel > 0\)"):
        predict_patient(built.cohort / pid, bundle, tmp_path / "o", mask=tmp_path / "empty.nii.gz")
    tiny = sitk.GetArrayFromImage(empty)
    tiny[20:22, 25:27, 20:22] = 1
    tiny_img = sitk.GetImageFromArray(tiny)
    tiny_img.CopyInformation(seg)
    sitk.WriteImage(tiny_img, str(tmp_path / "tiny.nii.gz"))
    with pytest.raises(GlioradInputError, match=r"^radiomics: the tumour mask: region has only 8 voxel\(s\) "
                                                 r"with label > 0; at least 27 are needed"):
        predict_patient(built.cohort / pid, bundle, tmp_path / "o", mask=tmp_path / "tiny.nii.gz")
    assert not (tmp_path / "o").exists()  # nothing written for a failed prediction


def test_bundle_without_segmentation_and_with_preprocessing(built, tmp_path):
    """A bundle whose run preprocessed the images (here the cheap ``brats`` preset: z-score in
    the brain) and has no segmentation model: predict preprocesses the patient the same way,
    needs a mask, and carries it to the preprocessed grid."""
    from gliorad.features.radiomics import load_params
    from gliorad.preprocess.config import make_config

    s = built.sources
    pre = make_config("brats", sequences=SEQUENCES, reference="t1ce").model_dump(mode="json")
    b = save_model_bundle(tmp_path / "b", config={"preprocess": pre}, segmentation=None,
                          cnn3d=s["cnn3d"], cnn2d=None, grading=s["grading"], survival=None,
                          radiomics_params=load_params("fast"), info={"working_spacing": [4, 4, 4]})
    bundle = load_model_bundle(b)
    pid = built.held_out
    with pytest.raises(GlioradInputError, match=r"the bundle has no segmentation model; give the tumour "
                                                 r"mask \(--mask\)"):
        predict_patient(built.cohort / pid, bundle, tmp_path / "o")
    seg = built.cohort / pid / f"{pid}_seg.nii.gz"
    res = predict_patient(built.cohort / pid, bundle, tmp_path / "o", mask=seg,
                          clinical={"age": "50"})
    pre_dir = tmp_path / "o" / "preprocessed" / pid
    assert res["inputs"]["preprocessed"]["folder"] == str(pre_dir)
    assert (pre_dir / f"{pid}_t1ce.nii.gz").is_file()
    assert res["mask"]["given_file"] == str(seg) and res["survival"] is None
    assert "clinical values were given but the bundle has no survival models" in res["messages"][0]
    t1ce = sitk.GetArrayFromImage(sitk.ReadImage(str(pre_dir / f"{pid}_t1ce.nii.gz")))
    brain = t1ce != 0
    assert abs(t1ce[brain].mean()) < 1e-3 and abs(t1ce[brain].std() - 1) < 1e-3  # z-scored
    manual = int((sitk.GetArrayFromImage(sitk.ReadImage(str(seg))) > 0).sum())
    assert res["mask"]["voxels"] == manual  # same grid: the mask is carried unchanged


# ------------------------------------------------------------------------------------ real data
@pytest.mark.realdata
@pytest.mark.slow
def test_real_brats2018_patient(shared_data, built, bundle, tmp_path):
    """A real BraTS 2018 LGG case (1 mm, 240x240x155) through the synthetic 4 mm bundle: runs end
    to end, the mask on the input grid, features at the training spacing. The case's manual mask
    is given: whether the tiny U-Net trained on 12 synthetic 4 mm brains finds this real tumour is
    luck (the demo-bundle test covers the automatic mask on real data)."""
    folder = shared_data / "brats2018" / "Brats18_TCIA10_628_1"
    res = predict_patient(folder, bundle, tmp_path, clinical={"age": "45", "grade": "II"},
                          mask=folder / "Brats18_TCIA10_628_1_seg.nii.gz")
    mask = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    ref = sitk.ReadImage(str(folder / "Brats18_TCIA10_628_1_t1.nii.gz"))
    assert mask.GetSize() == (240, 240, 155) and not Geometry.of(ref).differences(Geometry.of(mask))
    assert res["inputs"]["resampled"] is True and res["inputs"]["native_spacing_mm"] == [1.0, 1.0, 1.0]
    assert 0 <= res["grading"]["probability_hgg"] <= 1
    assert res["survival"]["nomograms"]["integrated"]["computed"]
    assert (tmp_path / "summary.html").stat().st_size > 10_000
