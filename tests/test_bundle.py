"""Model bundle: a real small bundle (every stage's own writer, tiny settings), its manifest,
checksum and version checks, and the save-time checks.

The bundle is built once per session by :func:`build_bundle` (also used by ``test_predict.py``):
a 30-patient synthetic cohort at 4 mm; the U-Net, the 3D and 2D CNNs, radiomics (``fast``
preset) and the grading model on it, all but one held-out patient. The survival models need far
more LGG patients than such a cohort has, so they are fitted on a seeded
:func:`~gliorad.synthetic.synthetic_feature_table` of 240 synthetic patients whose columns
are renamed to, and scaled like, the real ``t1ce`` radiomics and ``cnn2d`` columns of the cohort:
the signature then reads exactly the features ``gliorad predict`` computes.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from gliorad.bundle import (
    COMPATIBILITY,
    MANIFEST,
    installed_versions,
    load_model_bundle,
    manifest_digest,
    save_model_bundle,
    version_problems,
)
from gliorad.errors import GlioradInputError
from gliorad.io import file_hash, write_json

TINY = (4, 8, 8, 16)
SEQUENCES = ["t1", "t1ce", "t2"]
#: Survival settings of the test bundle (the ``demo`` preset, smaller, T1-Gd radiomics + cnn2d).
SURVIVAL = {"sequence": {"sequences": ["t1ce"], "force": "t1ce", "evaluate": False},
            "calibration_boot": 0, "force_signature": True,
            "signature": {"top_k": 5, "n_estimators": 50, "n_alphas": 10, "l1_ratios": [1.0],
                          "cv_folds": 3}}


@dataclass(frozen=True)
class Built:
    """Everything the bundle was made from."""

    root: Path
    cohort: Path
    clinical: Path
    bundle: Path
    held_out: str
    train_ids: list[str]
    sources: dict[str, Path]
    radiomics: Path  # manual-mask radiomics table of the cohort
    cnn3d_table: Path
    cnn2d_table: Path
    fused: Path
    survival_features: Path  # the synthetic survival table and its clinical table
    survival_clinical: Path


def _config() -> dict:
    return {"cohort": {"naming": "brats2018", "sequences": SEQUENCES, "mapping": {}},
            "clinical": {"time_unit": "days"}, "preprocess": None, "note": "test bundle"}


def build_bundle(base: Path) -> Built:
    """Build (once per pytest session and process: a marker file in ``base``) the test bundle."""
    from gliorad.clinical import read_clinical
    from gliorad.cohort import discover_cohort
    from gliorad.config import CohortConfig
    from gliorad.features.deep2d import Deep2DConfig, Net2DConfig, deep_features_2d
    from gliorad.features.deep3d import Deep3DConfig, Net3DConfig, deep_features_3d
    from gliorad.features.radiomics import extract_radiomics, load_params
    from gliorad.grading.config import GradingConfig
    from gliorad.grading.run import run_fit
    from gliorad.segmentation import SegmentationConfig, get_preset, train_segmentation
    from gliorad.settings import merge
    from gliorad.survival.bundle import save_bundle
    from gliorad.survival.config import SurvivalConfig
    from gliorad.survival.evaluation import run_analysis
    from gliorad.synthetic import (
        CLINICAL_COLUMNS,
        SynthConfig,
        generate_cohort,
        sample_patients,
        synthetic_feature_table,
    )
    from gliorad.training import TrainConfig

    root = base / "model_bundle"
    ws = root / "ws"
    cohort_dir = ws / "cohort"
    marker = root / "built.json"
    if marker.is_file():
        return _from_json(json.loads(marker.read_text(encoding="utf-8")))
    shutil.rmtree(root, ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generate_cohort(cohort_dir, SynthConfig(n_patients=30, seed=1, spacing=4.0), n_jobs=2)
        cohort = discover_cohort(cohort_dir, CohortConfig(sequences=SEQUENCES))
        clin = read_clinical(cohort_dir / "clinical.csv")
        # held out: the LGG patient with the largest tumour (its auto mask is then surely non-empty)
        sizes = {p: int((sitk.GetArrayFromImage(sitk.ReadImage(str(cohort.patients[p].seg))) > 0).sum())
                 for p in cohort.ids}
        lgg = [p for p in cohort.ids if clin.at[p, "grade_group"] == "LGG"]
        held = max(lgg, key=lambda p: sizes[p])
        rad = extract_radiomics(cohort, ws / "radiomics", params="fast", sequences=["t1ce", "t2"],
                                n_jobs=1, progress=False, raise_on_failure=False)
        table = rad.tables["manual"]
        train = [p for p in cohort.ids if p != held and p in table.index]

        seg = {"spacing": 4.0, "patch_size": [32, 32, 32], "samples_per_volume": 1,
               "net": {"features": [8, 16], "bottleneck": 32, "expand_channels": 4},
               "train": {"epochs": 10, "batch_size": 4, "lr": 1e-2, "device": "cpu",
                         "monitor": "train_loss"},
               "val_fraction": 0.0,
               "inference": {"roi_size": [32, 32, 32], "device": "cpu", "min_component_ml": 0.0}}
        scfg = SegmentationConfig.model_validate(merge(get_preset("demo").model_dump(), seg))
        train_segmentation(cohort, ws / "segment" / "model", scfg, ids=train[:12], progress=False)

        c3 = Deep3DConfig(size=(16, 16, 16), net=Net3DConfig(widths=TINY, hidden=8), val_fraction=0.0,
                          weights="last", predict_batch_size=1,
                          # batch size 5: no batch of one sample for the tiny 1-voxel maps
                          train=TrainConfig(epochs=2, batch_size=5, monitor="train_loss"))
        r3 = deep_features_3d(cohort, clin, train, ws / "deep3d" / "patch_se", c3, ids=train,
                              progress=False)
        c2 = Deep2DConfig(size=(32, 32), net=Net2DConfig(widths=TINY, hidden=8), val_fraction=0.0,
                          weights="last", predict_batch_size=1,
                          train=TrainConfig(epochs=2, batch_size=4, monitor="train_loss"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trained from scratch (no ImageNet file): warned
            r2 = deep_features_2d(cohort, clin, train, ws / "deep2d", c2, ids=train, progress=False)

        fused = table.loc[train].join(r3.table.loc[train])
        fused.to_csv(ws / "fused.csv")
        run_fit(ws / "fused.csv", cohort_dir / "clinical.csv", ws / "grade" / "model",
                GradingConfig.preset("demo"))

        # survival: 240 synthetic patients, columns named and scaled as the real features
        pats = sample_patients(SynthConfig(n_patients=240, seed=7, grade_slope=2.5,
                                           infiltration_slope=0.0, mismatch_slope=0.0))
        rad_cols = [c for c in table.columns if c.startswith("t1ce_")]
        real = table.loc[train, rad_cols].join(r2.table.loc[train])
        syn = synthetic_feature_table(pats, n_features=real.shape[1], n_deep=r2.table.shape[1],
                                      sequences=("t1ce",), seed=0)
        syn.columns = list(real.columns)
        syn = syn * real.std().replace(0.0, 1.0) + real.mean()
        syn.to_csv(ws / "survival_features.csv", index_label="patient_id",
                   float_format=lambda v: repr(float(v)))
        pats.reset_index()[CLINICAL_COLUMNS].to_csv(ws / "survival_clinical.csv", index=False)
        surv_clin = read_clinical(ws / "survival_clinical.csv")
        scfg2 = SurvivalConfig.preset("demo", **SURVIVAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = run_analysis(syn, surv_clin, scfg2)
        save_bundle(analysis.models, ws / "survival" / "bundle")

        sources = {"segmentation": ws / "segment" / "model", "cnn3d": ws / "deep3d" / "patch_se",
                   "cnn2d": ws / "deep2d", "grading": ws / "grade" / "model",
                   "survival": ws / "survival" / "bundle"}
        bundle = save_model_bundle(ws / "bundle", config=_config(), **sources,
                                   radiomics_params=load_params("fast"), info={"built_by": "tests"})
    finally:
        torch.set_num_threads(threads)
    built = Built(root, cohort_dir, cohort_dir / "clinical.csv", bundle, held, train, sources,
                  ws / "radiomics" / "radiomics_manual.csv",
                  ws / "deep3d" / "patch_se" / "cnn3d_patch_se.csv", ws / "deep2d" / "cnn2d_dual.csv",
                  ws / "fused.csv", ws / "survival_features.csv", ws / "survival_clinical.csv")
    write_json(built.__dict__, marker)
    return built


def _from_json(d: dict) -> Built:
    paths = ("root", "cohort", "clinical", "bundle", "radiomics", "cnn3d_table", "cnn2d_table", "fused",
             "survival_features", "survival_clinical")
    return Built(**{k: Path(d[k]) for k in paths}, held_out=d["held_out"], train_ids=d["train_ids"],
                 sources={k: Path(v) for k, v in d["sources"].items()})


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture
def copy(built, tmp_path) -> Path:
    """A private copy of the bundle to damage."""
    dest = tmp_path / "bundle"
    shutil.copytree(built.bundle, dest)
    return dest


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text(encoding="utf-8"))


def _reseal(path: Path, manifest: dict) -> None:
    """Rewrite a manifest with a valid digest, as a bundle made elsewhere would have."""
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------ manifest
def test_manifest_lists_every_file_with_its_hash(built):
    m = _manifest(built.bundle)
    assert m["format"] == "gliorad-model-bundle" and m["format_version"] == 1
    assert m["manifest_sha256"] == manifest_digest(m)
    files = {p.relative_to(built.bundle).as_posix() for p in built.bundle.rglob("*") if p.is_file()}
    assert set(m["files"]) == files - {MANIFEST}
    for rel, sha in m["files"].items():
        assert file_hash(built.bundle / rel) == sha
    assert set(m["components"]) == {"segmentation", "cnn3d", "cnn2d", "grading", "survival"}
    per_component = {rel: sha for c in m["components"].values() for rel, sha in c["files"].items()}
    assert per_component == m["files"]
    assert set(m["components"]["survival"]["files"]) >= {"survival/bundle.json", "survival/signature.skops"}
    # the training checkpoints are not copied; the deep stage folder resolved to its model/
    assert not any("checkpoints" in rel or rel.endswith(".pt") for rel in m["files"])
    assert m["components"]["cnn3d"]["source"].endswith("patch_se/model")
    for key in ("gliorad", "torch", "monai", "scikit-learn", "skops", "numpy", "scikit-survival",
                "lifelines", "pyradiomics"):
        assert m["versions"][key] == installed_versions()[key], key
    assert m["config"]["note"] == "test bundle" and m["info"] == {"built_by": "tests"}


def test_manifest_records_what_a_patient_must_provide(built):
    inputs = _manifest(built.bundle)["inputs"]
    assert inputs["sequences"] == SEQUENCES
    assert inputs["working_spacing_mm"] == [4.0, 4.0, 4.0]
    assert "segmentation training patients" in inputs["working_spacing_source"]
    assert inputs["radiomics"]["region"] == "whole" and inputs["radiomics"]["min_voxels"] == 27
    assert inputs["radiomics"]["sequences"] == ["t1ce", "t2"]
    assert inputs["radiomics"]["params"]["imageType"] == {"Original": {}}
    fused = pd.read_csv(built.fused, index_col=0)
    # empty and constant columns (e.g. a dead CNN unit) are dropped when the model is fitted
    assert inputs["feature_columns"]["grading"] == [c for c in fused.columns
                                                    if fused[c].nunique() > 1]
    comps = _manifest(built.bundle)["components"]
    assert comps["cnn3d"]["needs"]["n_features"] == 16 and comps["cnn3d"]["needs"]["variant"] == "patch_se"
    assert comps["segmentation"]["needs"]["spacing_mm"] == 4.0
    surv = comps["survival"]["needs"]
    assert set(inputs["feature_columns"]["survival"]) == set(surv["signature_features"])
    assert set(surv["levels"]["grade"]) == {"II", "III"}


def test_weights_are_safetensors(built):
    from safetensors import safe_open

    for comp in ("segmentation", "cnn3d", "cnn2d"):
        with safe_open(str(built.bundle / comp / "model.safetensors"), framework="pt") as fh:
            assert len(list(fh.keys())) > 0


def test_loaded_bundle_reproduces_the_stage_models(built):
    """Two paths agree: the bundle's grading model scores the fused table as run_fit's model."""
    from gliorad.grading.persist import load_model

    b = load_model_bundle(built.bundle)
    assert b.sequences == SEQUENCES and b.working_spacing == (4.0, 4.0, 4.0)
    X = pd.read_csv(built.fused, index_col=0)
    X.index = X.index.astype(str)
    X = X[b.feature_columns("grading")]  # constant columns were dropped when it was fitted
    original = load_model(built.sources["grading"]).decision_score(X)
    np.testing.assert_array_equal(b.grading.decision_score(X), original)
    assert b.survival.cutoff == pytest.approx(_manifest(built.bundle)["components"]["survival"]["needs"]["cutoff"])
    assert b.cnn3d[1].variant == "patch_se" and b.segmentation.config.spacing == 4.0
    assert b.provenance()["manifest_sha256"] == _manifest(built.bundle)["manifest_sha256"]


# ------------------------------------------------------------------------------------ refusals
def test_tampered_weight_file_refused(copy):
    path = copy / "cnn3d" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(GlioradInputError, match=r"cnn3d/model\.safetensors: modified since the bundle "
                                                 r"was written"):
        load_model_bundle(copy)


def test_removed_file_refused(copy):
    (copy / "grading" / "model.skops").unlink()
    with pytest.raises(GlioradInputError, match=r"grading/model\.skops: listed in manifest\.json but "
                                                 r"missing"):
        load_model_bundle(copy)


def test_unlisted_extra_weights_refused(copy):
    (copy / "segmentation" / "other.safetensors").write_bytes(
        (copy / "segmentation" / "model.safetensors").read_bytes())
    with pytest.raises(GlioradInputError, match=r"segmentation/other\.safetensors: not listed in "
                                                 r"manifest\.json \(unlisted file\)"):
        load_model_bundle(copy)


def test_edited_manifest_refused(copy):
    m = _manifest(copy)
    m["inputs"]["working_spacing_mm"] = [1.0, 1.0, 1.0]
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(GlioradInputError, match=r"manifest\.json: modified since the bundle was "
                                                 r"written \(its manifest_sha256 does not match"):
        load_model_bundle(copy)


@pytest.mark.parametrize("package, made", [
    ("scikit-learn", "1.0.2"), ("skops", "0.9.0"), ("gliorad", "0.0.5"), ("numpy", "1.26.4"),
    ("pyradiomics", "2.2.0"),
])
def test_incompatible_version_refused(copy, package, made):
    m = _manifest(copy)
    m["versions"][package] = made
    _reseal(copy, m)
    have = installed_versions()[package]
    with pytest.raises(GlioradInputError, match=rf"the bundle was made with {package} {made}, "
                                                 rf"installed is {package} {have}"):
        load_model_bundle(copy)


def test_other_format_version_refused(copy):
    m = _manifest(copy)
    m["format_version"] = 2
    _reseal(copy, m)
    with pytest.raises(GlioradInputError, match=r"bundle format version 2 is not supported by this "
                                                 r"gliorad \(reads version 1\)"):
        load_model_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(GlioradInputError, match=r"model bundle folder not found"):
        load_model_bundle(tmp_path / "nope")
    with pytest.raises(GlioradInputError, match=r"not a gliorad model bundle \(no manifest\.json\)"):
        load_model_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(GlioradInputError, match=r"manifest\.json: not valid JSON"):
        load_model_bundle(tmp_path)


# ------------------------------------------------------------------------------------ versions
def test_version_rule():
    have = {"gliorad": "0.1.0", "scikit-learn": "1.9.1", "skops": "0.16.0", "numpy": "2.4.6",
            "torch": "2.13.0+cpu", "monai": "1.6.1", "pyradiomics": "3.1.4", "lifelines": "0.30.3"}
    same_minor = {"gliorad": "0.1.7", "scikit-learn": "1.9.0", "skops": "0.16.2", "numpy": "2.0.0",
                  "torch": "2.1.0", "monai": "1.2.0", "pyradiomics": "v3.1.0",
                  "lifelines": "0.27.0", "scikit-survival": "0.1"}
    assert version_problems(same_minor, have, "b") == []  # lifelines / sksurv: recorded only
    assert set(COMPATIBILITY) >= {"gliorad", "scikit-learn", "skops", "torch", "monai"}
    probs = version_problems({**same_minor, "torch": "3.0.0", "scikit-learn": "1.10.0"}, have, "b")
    assert len(probs) == 2
    assert "scikit-learn 1.10.0, installed is scikit-learn 1.9.1; a bundle needs scikit-learn 1.10.x" in probs[0]
    assert "torch 3.0.0, installed is torch 2.13.0+cpu; a bundle needs torch 3.x" in probs[1]
    assert "not installed here" in version_problems({"skops": "0.16"}, {}, "b")[0]


# ------------------------------------------------------------------------------------ columns
def test_deep_columns_a_network_produces():
    """A model may read a network's numbered features below its feature count and the columns
    predict computes from that network's head: the 3D network's HGG probability (stacked
    grading) and the 2D network's cross-fitted head outputs (deep2d.cross_fit); nothing else."""
    from gliorad.bundle import _deep_column_problems, _split_columns
    from gliorad.features.config import CROSS_FIT_COLUMNS_2D

    head_2d = list(CROSS_FIT_COLUMNS_2D.values())
    assert head_2d == ["cnn2d_oof_grade", "cnn2d_oof_risk"]
    cols = ["t1ce_original_firstorder_Mean", "cnn2d_003", *head_2d]
    assert _split_columns(cols)["cnn2d"] == ["cnn2d_003", *head_2d]
    assert _deep_column_problems("cnn2d", ["cnn2d_003", *head_2d], 16, "survival") == []
    assert _deep_column_problems("cnn3d", ["cnn3d_015", "cnn3d_probability"], 16, "grading") == []
    for kind, bad in (("cnn2d", "cnn2d_016"), ("cnn2d", "cnn2d_oof_survival"),
                      ("cnn2d", "cnn2d_probability"), ("cnn3d", "cnn3d_oof_risk")):
        problems = _deep_column_problems(kind, [bad], 16, "survival")
        assert problems == [(f"the survival model uses {kind} column(s) ['{bad}'] that the {kind} "
                             "network (16 features) does not produce")]
    assert _deep_column_problems("cnn2d", head_2d, None, "survival") == [(
        "the survival model uses 2 cnn2d feature column(s) (e.g. cnn2d_oof_grade) but no cnn2d "
        "network was given")]


# ------------------------------------------------------------------------------------ save
def test_save_refuses_inconsistent_inputs(built, tmp_path):
    from gliorad.features.radiomics import load_params

    s = built.sources
    args = {"config": _config(), "radiomics_params": load_params("fast")}
    with pytest.raises(GlioradInputError, match=r"a bundle needs at least one model: the grading "
                                                 r"model .*, the survival models or the segmentation"):
        save_model_bundle(tmp_path / "b", **args, segmentation=None, cnn3d=s["cnn3d"],
                          cnn2d=None, grading=None, survival=None)
    assert not (tmp_path / "b").exists()
    with pytest.raises(GlioradInputError, match=r"grading: .*: no model\.skops, model\.json; expected "
                                                 r"the model folder written by gliorad\.grading\.run\.run_fit"):
        save_model_bundle(tmp_path / "b", **args, segmentation=None, cnn3d=s["cnn3d"], cnn2d=None,
                          grading=s["cnn3d"], survival=None)
    with pytest.raises(GlioradInputError, match=r"the grading model uses \d+ cnn3d feature column\(s\) "
                                                 r"\(e\.g\. cnn3d_000\) but no cnn3d network was given"):
        save_model_bundle(tmp_path / "b", **args, segmentation=None, cnn3d=None, cnn2d=None,
                          grading=s["grading"], survival=None)
    with pytest.raises(GlioradInputError, match=r"the survival model uses \d+ cnn2d feature"):
        save_model_bundle(tmp_path / "b", **args, segmentation=None, cnn3d=s["cnn3d"], cnn2d=None,
                          grading=s["grading"], survival=s["survival"])
    with pytest.raises(GlioradInputError, match=r"not valid pyradiomics parameters"):
        save_model_bundle(tmp_path / "b", config=_config(), radiomics_params={"imageType": 3},
                          segmentation=None, cnn3d=s["cnn3d"], cnn2d=None, grading=s["grading"],
                          survival=None)
    other = tmp_path / "occupied"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(GlioradInputError, match=r"occupied: exists and is not a gliorad model bundle"):
        save_model_bundle(other, **args, segmentation=None, cnn3d=s["cnn3d"], cnn2d=None,
                          grading=s["grading"], survival=None)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]  # no bundle, no temp folder


def test_working_spacing_from_the_deep_stage_without_segmentation(built, tmp_path):
    """No segmentation model, no preprocessing: the spacing of the images the 3D CNN stage
    recorded (its provenance.json) is the training spacing."""
    from gliorad.features.radiomics import load_params

    s = built.sources
    for cnn3d in (s["cnn3d"], s["cnn3d"] / "model"):
        b = save_model_bundle(tmp_path / "b", config=_config(), segmentation=None, cnn3d=cnn3d,
                              cnn2d=None, grading=s["grading"], survival=None,
                              radiomics_params=load_params("fast"))
        inputs = _manifest(b)["inputs"]
        assert inputs["working_spacing_mm"] == [4.0, 4.0, 4.0]
        assert inputs["working_spacing_source"].startswith(f"median of the {len(built.train_ids)} "
                                                           "deep-feature training images")


def test_save_replaces_a_bundle_as_a_whole(built, tmp_path):
    """A smaller bundle (no segmentation, no survival) over a full one: the old files are gone,
    the new bundle verifies; a failing save leaves the previous bundle intact."""
    from gliorad.features.radiomics import load_params

    s = built.sources
    dest = tmp_path / "bundle"
    shutil.copytree(built.bundle, dest)
    save_model_bundle(dest, config=_config(), segmentation=None, cnn3d=s["cnn3d"] / "model",
                      cnn2d=None, grading=s["grading"], survival=None,
                      radiomics_params={"params": load_params("fast"), "region": "core"},
                      info={"working_spacing": 4.0})
    b = load_model_bundle(dest)
    assert b.segmentation is None and b.survival is None and b.cnn3d is not None
    assert not (dest / "segmentation").exists()
    assert b.radiomics["region"] == "core" and b.working_spacing == (4.0, 4.0, 4.0)
    assert b.inputs["working_spacing_source"] == "info.working_spacing"
    before = _manifest(dest)
    with pytest.raises(GlioradInputError):
        save_model_bundle(dest, config=_config(), segmentation=None, cnn3d=None, cnn2d=None,
                          grading=s["grading"], survival=None, radiomics_params=load_params("fast"))
    assert _manifest(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
