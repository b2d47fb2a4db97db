"""Deep features: 3D ResNet18(+SE) on patches, 2D dual-task ResNet18 on largest slices; leakage,
losses (against statsmodels), outputs, CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gliorad.clinical import read_clinical
from gliorad.cohort import discover_cohort
from gliorad.errors import GlioradInputError
from gliorad.features.deep import (
    deep_case,
    extract,
    stratified_split,
    with_changes,
    zscore_in_brain,
)
from gliorad.features.deep2d import (
    Deep2DConfig,
    DualTaskLoss,
    Net2DConfig,
    censored_l1_loss,
    cox_ph_loss,
    deep_features_2d,
    load_deep2d_config,
)
from gliorad.features.deep3d import (
    Deep3DConfig,
    Net3DConfig,
    build_network_3d,
    cnn3d_out_of_fold,
    deep_features_3d,
    load_cnn3d,
    load_deep3d_config,
)
from gliorad.training import TrainConfig

TINY = (4, 8, 8, 16)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


def small_cohort(root):
    """12 synthetic patients at 4 mm (seed 3, grade from malignancy only: 9 LGG (4 II, 5 III;
    5 deaths), 3 HGG) in ``root``: (cohort, clinical table)."""
    from gliorad.synthetic import SynthConfig, generate_cohort

    generate_cohort(root, SynthConfig(n_patients=12, seed=3, spacing=4.0, grade_slope=2.5,
                                      infiltration_slope=0.0, mismatch_slope=0.0), n_jobs=1)
    return discover_cohort(root), read_clinical(root / "clinical.csv")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp("deep") / "cohort")


def cfg3d(**kw) -> Deep3DConfig:
    base = Deep3DConfig(size=(16, 16, 16), net=Net3DConfig(widths=TINY, hidden=8),
                        val_fraction=0.0, weights="last", predict_batch_size=1,
                        train=TrainConfig(epochs=2, batch_size=4, monitor="train_loss"))
    return with_changes(base, kw) if kw else base


def cfg2d(**kw) -> Deep2DConfig:
    base = Deep2DConfig(size=(32, 32), net=Net2DConfig(widths=TINY, hidden=8), val_fraction=0.0,
                        weights="last", predict_batch_size=1,
                        train=TrainConfig(epochs=2, batch_size=4, monitor="train_loss"))
    return with_changes(base, kw) if kw else base


def split(clin):
    """Training: 6 LGG + 2 HGG; held out: the other 4 (3 LGG, 1 HGG)."""
    lgg = sorted(clin.index[clin["grade_group"] == "LGG"])
    hgg = sorted(clin.index[clin["grade_group"] == "HGG"])
    train = lgg[:6] + hgg[:2]
    return train, sorted(set(clin.index) - set(train))


# ------------------------------------------------------------------------------------ 3D
def test_cnn3d_outputs(cohort, tmp_path):
    coh, clin = cohort
    train, test = split(clin)
    res = deep_features_3d(coh, clin, train, tmp_path / "o", cfg3d(), progress=False)
    t = res.table
    assert t.shape == (12, 16) and t.index.name == "patient_id"
    assert list(t.columns) == [f"cnn3d_{j:03d}" for j in range(16)]
    assert np.isfinite(t.to_numpy()).all()
    out = tmp_path / "o"
    for name in ("cnn3d_patch_se.csv", "cnn3d_patch_se.parquet", "cnn3d_patch_se_predictions.csv",
                 "metrics.json", "provenance.json", "model/model.safetensors", "model/config.json"):
        assert (out / name).is_file(), name
    from gliorad.features.radiomics import read_feature_table

    for name in ("cnn3d_patch_se.csv", "cnn3d_patch_se.parquet"):
        pd.testing.assert_frame_equal(read_feature_table(out / name), t, check_exact=True)
    pred = res.predictions.set_index("patient_id")
    assert set(pred.loc[train, "split"]) == {"train"} and set(pred.loc[test, "split"]) == {"test"}
    assert ((pred["probability"] > 0) & (pred["probability"] < 1)).all()
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["train_ids"] == sorted(train) and prov["seed"] == 0
    assert prov["variant"] == "patch_se" and prov["n_features"] == 16
    assert len(prov["inputs"][train[0]]["mask"]["sha256"]) == 64
    assert res.metrics["test"]["n"] == 4  # held-out AUC computed after extraction
    # the saved network reproduces the table
    model, cfg = load_cnn3d(out / "model")
    from gliorad.features.deep3d import prepare_inputs_3d

    inputs, _, _ = prepare_inputs_3d(coh, test, cfg)
    feats, _ = extract(model, inputs)
    assert np.allclose(feats, t.loc[test].to_numpy(), rtol=1e-5, atol=1e-6)
    # unchanged rerun: skipped, same tables
    again = deep_features_3d(coh, clin, train, out, cfg3d(), progress=False)
    assert again.skipped and again.table.equals(t)
    # other settings: the trained network in the folder is not silently replaced
    with pytest.raises(GlioradInputError, match=r"holds a network trained with other settings"):
        deep_features_3d(coh, clin, train, out, cfg3d(train={"lr": 1e-2}), progress=False)
    assert (out / "model" / "model.safetensors").is_file() and (out / "cnn3d_patch_se.csv").is_file()


def test_cnn3d_no_label_leakage(cohort, tmp_path):
    """Test-set labels cannot change test features; a training label can (so the test can fail)."""
    coh, clin = cohort
    train, test = split(clin)
    base = deep_features_3d(coh, clin, train, tmp_path / "a", cfg3d(), progress=False)
    shuffled = clin.copy()
    flip = {"HGG": "LGG", "LGG": "HGG"}
    shuffled.loc[test, "grade_group"] = shuffled.loc[test, "grade_group"].map(flip)
    shuffled.loc[test, "grade"] = np.roll(shuffled.loc[test, "grade"].to_numpy(), 1)
    same = deep_features_3d(coh, shuffled, train, tmp_path / "b", cfg3d(), progress=False)
    assert np.array_equal(same.table.loc[test].to_numpy(), base.table.loc[test].to_numpy())
    altered = clin.copy()
    altered.loc[train[0], "grade_group"] = flip[altered.loc[train[0], "grade_group"]]
    other = deep_features_3d(coh, altered, train, tmp_path / "c", cfg3d(), progress=False)
    assert not np.allclose(other.table.loc[test].to_numpy(), base.table.loc[test].to_numpy())


def test_cnn3d_full_input_and_validation_split(cohort, tmp_path):
    coh, clin = cohort
    cfg = cfg3d(input="full", net={"se": False}, val_fraction=0.3, weights="best",
                train={"monitor": "val_loss", "batch_size": 2})
    res = deep_features_3d(coh, clin, coh.ids, tmp_path / "f", cfg, progress=False)
    assert (tmp_path / "f" / "cnn3d_full_nose.csv").is_file()
    assert len(res.val_ids) >= 2 and not set(res.val_ids) & set(res.train_ids)
    hist = json.loads((tmp_path / "f" / "model" / "history.json").read_text(encoding="utf-8"))
    assert "val_loss" in hist[-1]
    assert set(res.predictions["split"]) == {"train", "val"}


def test_cnn3d_out_of_fold(cohort, tmp_path):
    coh, clin = cohort
    ids = sorted(clin.index[clin["grade_group"] == "LGG"][:5].tolist()
                 + clin.index[clin["grade_group"] == "HGG"].tolist())
    pred = cnn3d_out_of_fold(coh, clin, ids, tmp_path / "cv", cfg3d(train={"batch_size": 2}),
                             folds=2, progress=False)
    assert sorted(pred["patient_id"]) == ids and set(pred["fold"]) == {1, 2}
    assert (tmp_path / "cv" / "cnn3d_patch_se_oof_predictions.csv").is_file()


def test_demo_and_paper_presets_are_true_resnet18():
    for name in ("demo", "paper"):
        cfg = load_deep3d_config(name)
        assert build_network_3d(cfg).n_features == 512
        assert load_deep2d_config(name).net.widths == (64, 128, 256, 512)
    paper = load_deep3d_config("paper")
    assert paper.size == (96, 128, 96) and paper.train.batch_size == 8
    assert paper.train.epochs == 200 and paper.net.se
    assert load_deep2d_config("paper").size == (240, 240)


def test_config_file_starts_from_preset(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("preset: demo\ninput: full\ntrain:\n  epochs: 3\n")
    cfg = load_deep3d_config(p)
    assert cfg.input == "full" and cfg.train.epochs == 3 and cfg.size == (32, 40, 32)
    p.write_text("preset: demo\ninput: half\n")
    with pytest.raises(GlioradInputError, match=r"deep\.yaml: input .half. is not valid; expected one of: patch, full$"):
        load_deep3d_config(p)
    with pytest.raises(GlioradInputError, match=r"neither a preset \(paper, demo\) nor a file"):
        load_deep3d_config("fast")


def test_cnn3d_margin_keeps_context_of_large_tumours(cohort, tmp_path):
    """``margin``: patients whose tumour box plus margins fits the patch get the same input as
    without it; larger ones are resampled down further (so their surroundings stay in view)."""
    from gliorad.features.deep3d import prepare_inputs_3d

    coh, _ = cohort
    ids = sorted(coh.ids)
    plain, rec0, _ = prepare_inputs_3d(coh, ids, cfg3d())
    wide, rec4, _ = prepare_inputs_3d(coh, ids, cfg3d(margin=4))
    fits = [p for p in ids if all(hi - lo + 8 <= 16 for lo, hi in rec0[p]["bbox"])]
    larger = [p for p in ids if p not in fits]
    assert fits and larger  # this cohort has both at 16 voxels (4 mm)
    for p in fits:
        np.testing.assert_array_equal(plain[p], wide[p])
    for p in larger:
        assert rec4[p]["downscaled"] and min(rec4[p]["scale"]) < min(rec0[p]["scale"])
    assert cfg3d(margin=4).margin == (4, 4, 4)
    # the default is left out of the settings, so runs made before the option keep their
    # fingerprints and trained networks; a margin is recorded and read back
    assert "margin" not in cfg3d().model_dump(mode="json")
    dumped = cfg3d(margin=(2, 3, 4)).model_dump(mode="json")
    assert dumped["margin"] == [2, 3, 4] and Deep3DConfig.model_validate(dumped).margin == (2, 3, 4)
    with pytest.raises(ValueError, match=r"margin \(-1, -1, -1\) must be non-negative"):
        cfg3d(margin=-1)
    p = tmp_path / "deep.yaml"
    p.write_text("preset: demo\nmargin: [2, 4, 4]\n")
    assert load_deep3d_config(p).margin == (2, 4, 4)


def test_cnn3d_bad_inputs(cohort, tmp_path):
    coh, clin = cohort
    train, _ = split(clin)
    lgg = sorted(clin.index[clin["grade_group"] == "LGG"])
    with pytest.raises(GlioradInputError, match=r"training patients are all LGG"):
        deep_features_3d(coh, clin, lgg[:4], tmp_path / "x", cfg3d(), progress=False)
    with pytest.raises(GlioradInputError, match=r"training patient\(s\) \['SYNA_0001'\] have no row"):
        deep_features_3d(coh, clin.drop(index="SYNA_0001"), train + ["SYNA_0001"], tmp_path / "x",
                         cfg3d(), progress=False)
    no_grade = clin.copy()
    no_grade.loc[train[0], "grade_group"] = None
    with pytest.raises(GlioradInputError, match=rf"\['{train[0]}'\] have no grade"):
        deep_features_3d(coh, no_grade, train, tmp_path / "x", cfg3d(), progress=False)
    with pytest.raises(GlioradInputError, match=r"\['NOPE'\] are not in the cohort"):
        deep_features_3d(coh, clin, train, tmp_path / "x", cfg3d(), ids=["NOPE"], progress=False)
    with pytest.raises(GlioradInputError, match=r"in both train_ids and val_ids"):
        deep_features_3d(coh, clin, train, tmp_path / "x", cfg3d(), val_ids=train[:1], progress=False)
    with pytest.raises(GlioradInputError, match=r"leave a batch of one sample"):
        deep_features_3d(coh, clin, train, tmp_path / "x", cfg3d(train={"batch_size": 7}),
                         progress=False)
    masks = tmp_path / "masks"
    masks.mkdir()
    import shutil

    shutil.copy(coh.patients[train[0]].seg, masks / f"{train[0]}_seg.nii.gz")
    with pytest.raises(GlioradInputError, match=rf"patient {train[1]}: no automatic mask in"):
        deep_features_3d(coh, clin, train, tmp_path / "x", cfg3d(), masks=masks, progress=False)


# ------------------------------------------------------------------------------------ 2D
def test_cnn2d_outputs_and_no_label_leakage(cohort, tmp_path):
    coh, clin = cohort
    train, test = split(clin)
    with pytest.warns(UserWarning, match=r"trained from scratch"):
        base = deep_features_2d(coh, clin, train, tmp_path / "a", cfg2d(), progress=False)
    t = base.table
    assert t.shape == (12, 16) and list(t.columns) == [f"cnn2d_{j:03d}" for j in range(16)]
    assert (tmp_path / "a" / "cnn2d_dual.parquet").is_file()
    pred = base.predictions.set_index("patient_id")
    hgg_train = [p for p in train if clin.at[p, "grade_group"] == "HGG"]
    assert set(pred.loc[hgg_train, "split"]) == {"excluded_hgg"}
    assert list(pred.columns) == ["probability_grade_iii", "survival_output", "risk_score", "split"]
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["initialisation"]["init"] == "scratch" and "from scratch" in prov["notes"][0]
    assert prov["train_counts"]["grade_II"] + prov["train_counts"]["grade_III"] == 6
    # held-out labels (grade, survival) altered: identical test features
    shuffled = clin.copy()
    shuffled.loc[test, "grade"] = shuffled.loc[test, "grade"].map({"II": "III", "III": "II", "IV": "IV"})
    shuffled.loc[test, "os_days"] = shuffled.loc[test, "os_days"] * 3 + 17
    shuffled.loc[test, "event"] = 1 - shuffled.loc[test, "event"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        same = deep_features_2d(coh, shuffled, train, tmp_path / "b", cfg2d(), progress=False)
        assert np.array_equal(same.table.loc[test].to_numpy(), t.loc[test].to_numpy())
        # one training death made a censoring after everyone else (the Cox term sees only the
        # order of times and the events): the test features change, so the test can fail
        altered = clin.copy()
        dead = [p for p in train if clin.at[p, "grade_group"] == "LGG" and clin.at[p, "event"] == 1]
        altered.loc[dead[0], "event"] = 0
        altered.loc[dead[0], "os_days"] = clin["os_days"].max() + 100
        other = deep_features_2d(coh, altered, train, tmp_path / "c", cfg2d(), progress=False)
    assert not np.allclose(other.table.loc[test].to_numpy(), t.loc[test].to_numpy())


def test_cnn2d_imagenet_initialisation(cohort, tmp_path):
    from gliorad.nets import ResNet18

    coh, clin = cohort
    train, _ = split(clin)
    torch.manual_seed(11)
    src = ResNet18(2, 3, widths=TINY)
    state = {**src.state_dict(), "fc.weight": torch.zeros(1000, 16), "fc.bias": torch.zeros(1000)}
    weights = tmp_path / "resnet18-tiny.pth"
    torch.save(state, weights)
    cfg = cfg2d(survival_loss="censored_l1", train={"epochs": 1})
    res = deep_features_2d(coh, clin, train, tmp_path / "i", cfg, imagenet_weights=weights,
                           progress=False)
    init = res.provenance["initialisation"]
    assert init["init"] == "imagenet" and init["n_loaded"] == 120 and init["skipped"] == ["fc.weight", "fc.bias"]
    assert res.notes == [] or "from scratch" not in res.notes[0]
    bad = tmp_path / "wide.pth"
    torch.save({**ResNet18(2, 3, widths=(4, 8, 8, 32)).state_dict()}, bad)
    with pytest.raises(GlioradInputError, match=r"'layer4\.0\.conv1\.weight' has shape \(32, 8, 3, 3\)"):
        deep_features_2d(coh, clin, train, tmp_path / "j", cfg, imagenet_weights=bad, progress=False)
    with pytest.raises(GlioradInputError, match=r"absent\.pth: ImageNet weights file not found"):
        deep_features_2d(coh, clin, train, tmp_path / "j", cfg, imagenet_weights=tmp_path / "absent.pth")


def test_cnn2d_bad_inputs(cohort, tmp_path):
    coh, clin = cohort
    train, _ = split(clin)
    # one task the training patients cannot teach is switched off, with a note; both: an error
    only_iii = clin.copy()
    only_iii.loc[only_iii["grade"] == "II", "grade"] = "III"
    with pytest.warns(UserWarning, match=r"grade II vs III task off: .* 0 grade II and 6 grade III"):
        res = deep_features_2d(coh, only_iii, train, tmp_path / "g", cfg2d(), progress=False)
    assert any(n.startswith("grade II vs III task off") for n in res.notes)
    assert len(res.table) == len(res.predictions) > 0
    no_event = clin.copy()
    no_event["event"] = 0
    with pytest.warns(UserWarning, match=r"survival task off: no death among the LGG training"):
        res = deep_features_2d(coh, no_event, train, tmp_path / "s", cfg2d(), progress=False)
    assert any(n.startswith("survival task off") for n in res.notes)
    neither = only_iii.copy()
    neither["event"] = 0
    with pytest.raises(GlioradInputError, match=r"0 grade II, 6 grade III and 0 death\(s\) .*"
                                                r"neither the grade II vs III task nor the survival"):
        deep_features_2d(coh, neither, train, tmp_path / "x", cfg2d(), progress=False)
    hgg = sorted(clin.index[clin["grade_group"] == "HGG"])
    with pytest.raises(GlioradInputError, match=r"0 LGG patient\(s\) among the training ids"):
        deep_features_2d(coh, clin, hgg, tmp_path / "x", cfg2d(), progress=False)
    with pytest.raises(GlioradInputError, match=r"survival_loss 'weibull' is not valid; expected "
                                                r"one of: cox, censored_l1"):
        DualTaskLoss("weibull")
    with pytest.raises(GlioradInputError, match=r"^overrides: survival_loss 'weibull' is not valid; "
                                                r"expected one of: cox, censored_l1$"):
        with_changes(cfg2d(), {"survival_loss": "weibull"})


# ------------------------------------------------------------------------------------ one case
def _stage_and_cases(network, run, coh, clin, train, out, cfg):
    """The cohort stage's result and, for every patient of its table, ``deep_case`` with the
    stage's saved network: ``(result, {pid: (features, head outputs, record)})``."""
    res = run(coh, clin, train, out, cfg, progress=False)
    model, saved = network.load(out / "model")
    cases = {pid: deep_case(network, model, saved, coh.patients[pid].files, coh.patients[pid].seg)
             for pid in res.table.index}
    return res, cases


def test_deep_case_gives_the_stage_features_of_every_patient(cohort, tmp_path):
    """The per-case function (what ``gliorad predict`` calls for a new patient) and the cohort
    stage agree on every patient: features, head outputs and input records, both networks."""
    from gliorad.features.deep2d import CNN2D
    from gliorad.features.deep3d import CNN3D

    coh, clin = cohort
    train, _ = split(clin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 2D network is trained from scratch
        runs = {"3d": _stage_and_cases(CNN3D, deep_features_3d, coh, clin, train, tmp_path / "a",
                                       cfg3d()),
                "2d": _stage_and_cases(CNN2D, deep_features_2d, coh, clin, train, tmp_path / "b",
                                       cfg2d()),
                # the stage extracts 4 patients per forward pass here, deep_case one
                "3d_batch4": _stage_and_cases(CNN3D, deep_features_3d, coh, clin, train,
                                              tmp_path / "c", cfg3d(predict_batch_size=4))}
    for name, (res, cases) in runs.items():
        assert sorted(cases) == sorted(coh.ids), name
        feats = pd.DataFrame({p: c[0] for p, c in cases.items()}).T.loc[res.table.index]
        assert list(feats.columns) == list(res.table.columns)
        outs = np.stack([cases[p][1] for p in res.table.index]).astype(np.float64)
        pred = res.predictions.set_index("patient_id").loc[res.table.index]
        head = pred["logit"] if name.startswith("3d") else pred["survival_output"]
        col = 0 if name.startswith("3d") else 1
        if name == "3d_batch4":
            # Same network, inputs and eval mode, but 4 patients per convolution call in the
            # stage: CPU kernels may then sum in another order, so only float32 rounding may
            # differ (a few units in the last place, far below any feature's scale).
            np.testing.assert_allclose(feats.to_numpy(), res.table.to_numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(outs[:, col], head.to_numpy(), rtol=1e-5, atol=1e-6)
        else:  # predict_batch_size 1: the very same computation, to the last bit
            np.testing.assert_array_equal(feats.to_numpy(), res.table.to_numpy())
            np.testing.assert_array_equal(outs[:, col], head.to_numpy())
    records = runs["2d"][1]
    prov = runs["2d"][0].provenance["slices"]
    assert {p: c[2] for p, c in records.items()} == {p: prov[p] for p in records}
    assert all(isinstance(c[2]["start"], list) for c in runs["3d"][1].values())  # crop records


def test_deep_case_inputs(cohort, tmp_path):
    """deep_case needs every sequence of the network and, unless it reads the complete MRI, the
    tumour mask; each missing input is named."""
    from gliorad.features.deep3d import CNN3D

    coh, _ = cohort
    pid = coh.ids[0]
    files = coh.patients[pid].files
    torch.manual_seed(0)
    cfg = cfg3d()
    model = build_network_3d(cfg)
    feats, out, rec = deep_case(CNN3D, model, cfg, files, coh.patients[pid].seg)
    assert len(feats) == 16 and out.shape == (1,) and "bbox" in rec
    with pytest.raises(GlioradInputError, match=r"^no t2 image; the 3D network reads t1, t1ce, t2$"):
        deep_case(CNN3D, model, cfg, {k: v for k, v in files.items() if k != "t2"}, None)
    with pytest.raises(GlioradInputError, match=r"^no tumour mask; the 3D network reads the tumour"):
        deep_case(CNN3D, model, cfg, files, None)
    full = cfg3d(input="full")
    feats, _, rec = deep_case(CNN3D, model, full, files)  # the complete MRI needs no mask
    assert len(feats) == 16 and "box" in rec


# ------------------------------------------------------------------------------------ losses
def test_cox_loss_against_statsmodels_breslow():
    # Reference: statsmodels PHReg with Breslow ties, one covariate x = risk and beta = 1:
    #   PHReg(time, x[:, None], status=event, ties="breslow").loglike(np.array([1.0]))
    # is the Breslow partial log-likelihood of the linear predictor `risk`.
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(0)
    time = np.array([5, 3, 3, 8, 1, 9, 3, 7, 7, 2], float)  # tied times, tied events
    event = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 1], float)
    risk = rng.normal(size=10)
    ll = PHReg(time, risk[:, None], status=event, ties="breslow").loglike(np.array([1.0]))
    got = cox_ph_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert float(got) == pytest.approx(-ll / event.sum(), rel=1e-12)


def test_cox_loss_properties():
    t = torch.tensor([4.0, 2.0, 6.0, 1.0])
    e = torch.tensor([1.0, 0.0, 1.0, 1.0])
    r = torch.tensor([0.3, -1.0, 2.0, 0.5], requires_grad=True)
    base = cox_ph_loss(r, t, e).detach()
    assert float(cox_ph_loss(r + 5.0, t, e).detach()) == pytest.approx(float(base))  # shift invariant
    zero = cox_ph_loss(r, t, torch.zeros(4))
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.equal(r.grad, torch.zeros(4))
    # risk ordered with time (shorter = higher risk) beats the reverse
    good = cox_ph_loss(-t.log(), t, torch.ones(4))
    bad = cox_ph_loss(t.log(), t, torch.ones(4))
    assert float(good) < float(bad)


def test_censored_l1_loss_by_hand():
    u = torch.tensor([0.0, 1.0, 2.0])
    years = torch.tensor([np.e, np.e, np.e], dtype=torch.float32)  # log t = 1
    ev = torch.tensor([1.0, 0.0, 0.0])
    # death: |0 - 1| = 1; censored below c: 1 - 1 = 0; censored above c: max(0, 1 - 2) = 0
    assert float(censored_l1_loss(u, years, ev)) == pytest.approx(1.0 / 3.0, rel=1e-6)
    ev0 = torch.tensor([0.0, 0.0, 0.0])
    assert float(censored_l1_loss(torch.tensor([0.5, 0.5, 0.5]), years, ev0)) == pytest.approx(0.5, rel=1e-6)


def test_dual_loss_masks_and_weight():
    out = torch.tensor([[0.2, 0.1], [-1.0, 0.4], [2.0, -0.3], [0.5, 0.0]])
    tg = {"grade": torch.tensor([1.0, 0.0, 1.0, 0.0]), "grade_mask": torch.tensor([1.0, 1.0, 0.0, 1.0]),
          "time": torch.tensor([100.0, 300.0, 200.0, 50.0]), "event": torch.tensor([1.0, 1.0, 0.0, 1.0]),
          "surv_mask": torch.tensor([1.0, 1.0, 1.0, 0.0])}
    loss = DualTaskLoss("cox", 0.5)
    grade, surv = loss.parts(out, tg)
    want_grade = torch.nn.functional.binary_cross_entropy_with_logits(
        out[[0, 1, 3], 0], tg["grade"][[0, 1, 3]])
    assert float(grade) == pytest.approx(float(want_grade))
    assert float(surv) == pytest.approx(float(cox_ph_loss(out[:3, 1], tg["time"][:3], tg["event"][:3])))
    assert float(loss(out, tg)) == pytest.approx(float(grade + 0.5 * surv))
    tg2 = {**tg, "grade": torch.tensor([1.0, 0.0, 0.0, 0.0]), "time": torch.tensor([100.0, 300.0, 200.0, 1.0])}
    assert float(loss(out, tg2)) == pytest.approx(float(loss(out, tg)))  # masked values unused


# ------------------------------------------------------------------------------------ helpers
def test_zscore_in_brain():
    rng = np.random.default_rng(1)
    a = np.zeros((2, 6, 7, 8), np.float32)
    a[:, 1:5, 2:6, 1:7] = rng.normal(100, 20, (2, 4, 4, 6))
    z = zscore_in_brain(a)
    brain = np.any(a != 0, axis=0)
    assert np.allclose(z[:, brain].mean(axis=1), 0, atol=1e-5)
    assert np.allclose(z[:, brain].std(axis=1), 1, atol=1e-5)
    assert (z[:, ~brain] == 0).all()
    a[1][brain] = 3.0
    with pytest.raises(GlioradInputError, match=r"t2: constant inside the brain"):
        zscore_in_brain(a, ["t1", "t2"])


def test_stratified_split():
    y = pd.Series([1] * 10 + [0] * 20, index=[f"P{i:02d}" for i in range(30)])
    rest, held = stratified_split(y, 0.3, 7)
    assert len(held) == 9 and y[held].sum() == 3 and not set(rest) & set(held)
    assert sorted(rest + held) == sorted(y.index)
    assert stratified_split(y, 0.3, 7) == (rest, held)
    assert stratified_split(y, 0.3, 8) != (rest, held)
    with pytest.raises(GlioradInputError, match=r"fraction 1.5: expected a value between 0 and 1"):
        stratified_split(y, 1.5, 0)


# ------------------------------------------------------------------------------------ CLI
def test_cli(cohort, tmp_path):
    from gliorad.commands.deep import app

    coh, clin = cohort
    train, _ = split(clin)
    ids_file = tmp_path / "train.txt"
    ids_file.write_text("patient_id\n" + "\n".join(train) + "\n")
    yaml3d = tmp_path / "d3.yaml"
    yaml3d.write_text("preset: demo\nsize: [16, 16, 16]\nnet:\n  widths: [4, 8, 8, 16]\n  hidden: 8\n"
                      "train:\n  epochs: 1\n  batch_size: 3\n")
    runner = CliRunner()
    r = runner.invoke(app, ["cnn3d", str(coh.root), "--out", str(tmp_path / "o3"), "--config",
                            str(yaml3d), "--train-ids", str(ids_file), "--no-se", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "cnn3d patch_nose: 12 patients x 16 features" in r.output
    assert (tmp_path / "o3" / "cnn3d_patch_nose.csv").is_file()
    yaml2d = tmp_path / "d2.yaml"
    yaml2d.write_text("preset: demo\nsize: [32, 32]\nnet:\n  widths: [4, 8, 8, 16]\n  hidden: 8\n"
                      "train:\n  epochs: 1\n  batch_size: 4\n")
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(tmp_path / "o2"), "--config",
                            str(yaml2d), "--train-ids", str(ids_file), "--no-progress",
                            "--seed", "3", "--survival-loss", "censored_l1"])
    assert r.exit_code == 0, r.output
    assert "cnn2d dual-task: 12 patients x 16 features" in r.output and "from scratch" in r.output
    prov = json.loads((tmp_path / "o2" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["seed"] == 3 and prov["loss"]["survival_loss"] == "censored_l1"
    # both commands take the shared argument and options (declared once), then their own
    shared = ["--out", "--clinical", "--preset", "--config", "--val-ids", "--ids", "--test-fraction",
              "--split-seed", "--masks", "--epochs", "--seed", "--device", "--jobs", "--overwrite",
              "--progress", "--cohort-config", "--sequences", "--train-ids"]
    own = {"cnn3d": ["--input", "--se", "--cv-folds"],
           "cnn2d": ["--imagenet-weights", "--survival-loss", "--survival-weight"]}
    for command, options in own.items():
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert all(f" {o} " in text for o in shared + options), (command, text)
        assert not any(f" {o} " in text for o in own["cnn2d" if command == "cnn3d" else "cnn3d"])
    r = runner.invoke(app, ["cnn3d", str(coh.root), "--out", str(tmp_path / "x"), "--preset", "huge"])
    assert r.exit_code == 2 and "error: --preset 'huge' is not valid; expected one of: paper, demo" in r.output
    r = runner.invoke(app, ["cnn2d", str(coh.root), "--out", str(tmp_path / "x"),
                            "--train-ids", str(tmp_path / "none.txt")])
    assert r.exit_code == 2 and "error: --train-ids" in r.output and "file not found" in r.output


def test_cli_sequences_option(cohort, tmp_path):
    """--sequences chooses the input channels; without it a preset's sequences the cohort lacks
    give way to the cohort's (the real LGG slice cohort has no T2: test_realdata.py)."""
    from gliorad.commands.deep import app

    coh, clin = cohort
    train, _ = split(clin)
    ids_file = tmp_path / "train.txt"
    ids_file.write_text("\n".join(train) + "\n")
    yaml3d = tmp_path / "d3.yaml"
    yaml3d.write_text("preset: demo\nsize: [16, 16, 16]\nnet:\n  widths: [4, 8, 8, 16]\n  hidden: 8\n"
                      "train:\n  epochs: 1\n  batch_size: 3\n")
    runner = CliRunner()
    r = runner.invoke(app, ["cnn3d", str(coh.root), "--out", str(tmp_path / "o3"), "--config",
                            str(yaml3d), "--train-ids", str(ids_file), "--sequences", "t1ce,flair",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    prov = json.loads((tmp_path / "o3" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["config"]["sequences"] == ["t1ce", "flair"]
    r = runner.invoke(app, ["cnn3d", str(coh.root), "--out", str(tmp_path / "x"),
                            "--train-ids", str(ids_file), "--sequences", " , "])
    assert r.exit_code == 2 and "error: --sequences ' , ': expected a comma-separated list" in r.output


def test_training_augmentation_is_seeded_and_keeps_shapes():
    from gliorad.features.deep import ArrayDataset

    rng = np.random.default_rng(0)
    img = np.zeros((2, 12, 14, 10), np.float32)
    img[:, 4:8, 5:9, 3:7] = rng.normal(1, 0.1, (2, 4, 4, 4))
    plain = ArrayDataset([img], [1.0])
    np.testing.assert_array_equal(plain[0]["image"].numpy(), img)  # defaults: identity
    aug = ArrayDataset([img], [1.0], shift_voxels=2, intensity_prob=1.0, intensity_scale=0.2,
                       intensity_shift=0.3)

    def draw(seed):
        torch.manual_seed(seed)
        return aug[0]["image"].numpy()

    a, b, c = draw(1), draw(1), draw(2)
    np.testing.assert_array_equal(a, b)  # reproducible from torch's generator (reseeded per epoch)
    assert a.shape == img.shape and not np.array_equal(a, c)
    # translation only (no intensity change): the content moves by at most 2 voxels per axis
    shift = ArrayDataset([img], [1.0], shift_voxels=2)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        x = shift[0]["image"].numpy()
        nz = np.argwhere(x[0] != 0)
        offset = tuple(nz.min(0) - np.array([4, 5, 3]))
        assert all(abs(o) <= 2 for o in offset)
        np.testing.assert_array_equal(x[:, 4 + offset[0]:8 + offset[0], 5 + offset[1]:9 + offset[1],
                                        3 + offset[2]:7 + offset[2]], img[:, 4:8, 5:9, 3:7])
        seen.add(offset)
    assert len(seen) > 5
    # intensity only: per channel x * a + b with a in [0.8, 1.2], |b| <= 0.3
    inten = ArrayDataset([img], [1.0], intensity_prob=1.0, intensity_scale=0.2, intensity_shift=0.3)
    x = inten[0]["image"].numpy()
    for ch in range(2):
        inside = img[ch] != 0
        slope, icpt = np.polyfit(img[ch][inside], x[ch][inside], 1)
        assert 0.8 - 1e-4 <= slope <= 1.2 + 1e-4 and abs(icpt) <= 0.3 + 1e-4


def test_augmentation_settings_are_validated():
    with pytest.raises(GlioradInputError, match=r"shift_voxels"):
        with_changes(load_deep3d_config("demo"), {"shift_voxels": -1})
    with pytest.raises(GlioradInputError, match=r"intensity_prob"):
        with_changes(load_deep2d_config("demo"), {"intensity_prob": 1.5})
