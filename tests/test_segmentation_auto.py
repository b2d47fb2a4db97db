"""Segmentation beyond the paper: planning from the data (plans.json), anisotropic grids and
pooling, deep supervision, the poly / cosine schedules and the time budget, nnU-Net's
augmentations, k-fold training with the folds ensembled, post-processing chosen on validation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from typer.testing import CliRunner

from gliorad.cohort import discover_cohort
from gliorad.commands.segment import app
from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from gliorad.io import Geometry
from gliorad.nets import RecombinationUNet
from gliorad.segmentation import (
    SegmentationConfig,
    get_preset,
    load_model,
    predict_cohort,
    train_segmentation,
    validate_config,
    with_overrides,
    working_grid,
)
from gliorad.segmentation.infer import FoldEnsemble
from gliorad.segmentation.plan import fingerprint, plan_from_fingerprint
from gliorad.segmentation.train import fold_splits, patch_transforms, postprocessing_candidates
from gliorad.training import DeepSupervisionLoss, DiceBCELoss, TrainConfig, fit, scheduled_lr

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


# ----------------------------------------------------------------------------------- network
def test_anisotropic_strides_keep_thin_axis_and_restore_shape():
    net = RecombinationUNet(3, 2, 1, features=(4, 8, 8), bottleneck=8, expand_channels=4,
                            strides=((1, 2, 2), (2, 2, 2), (2, 2, 2))).eval()
    assert net.multiples == [4, 8, 8]
    x = torch.randn(1, 2, 6, 20, 17)  # 6 thick slices: padded to 8, not to 8 x 8 x 8
    with torch.no_grad():
        assert net(x).shape == (1, 1, 6, 20, 17)


def test_deep_supervision_heads_in_training_only():
    net = RecombinationUNet(3, 1, 2, features=(2, 4, 4), bottleneck=4, expand_channels=2,
                            deep_supervision=2)
    x = torch.randn(2, 1, 16, 16, 16)
    net.train()
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8), (2, 2, 4, 4, 4)]
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 2, 16, 16, 16)
    # the paper's network has no extra weights (its checkpoints stay loadable)
    plain = RecombinationUNet(3, 1, 2, features=(2, 4, 4), bottleneck=4, expand_channels=2)
    assert not any(k.startswith("aux_heads") for k in plain.state_dict())


@pytest.mark.parametrize("kwargs, pattern", [
    ({"strides": ((2, 2, 2),)}, r"strides .* expected 2 levels of 3 positive factors"),
    ({"strides": ((2, 2, 0), (2, 2, 2))}, r"expected 2 levels of 3 positive factors"),
    ({"deep_supervision": 2}, r"deep_supervision 2 is not valid; expected 0 to 1"),
])
def test_network_bad_settings(kwargs, pattern):
    with pytest.raises(GlioradInputError, match=pattern):
        RecombinationUNet(3, 1, 1, features=(2, 4), bottleneck=4, expand_channels=2, **kwargs)


def test_deep_supervision_loss_weights_and_resized_targets():
    base = DiceBCELoss()
    loss = DeepSupervisionLoss(base)
    torch.manual_seed(0)
    target = (torch.rand(1, 1, 8, 8, 8) > 0.5).float()
    full, half = torch.randn(1, 1, 8, 8, 8), torch.randn(1, 1, 4, 4, 4)
    assert torch.allclose(loss(full, target), base(full, target))
    half_target = torch.nn.functional.interpolate(target, size=(4, 4, 4), mode="nearest")
    expected = (1.0 * base(full, target) + 0.5 * base(half, half_target)) / 1.5
    assert torch.allclose(loss([full, half], target), expected)


# ---------------------------------------------------------------------------------- schedule
def test_poly_and_cosine_rates_by_hand():
    poly = TrainConfig(epochs=10, lr=0.01, schedule="poly")
    assert scheduled_lr(poly, 1, 0.0) == pytest.approx(0.01)
    assert scheduled_lr(poly, 6, 0.0) == pytest.approx(0.01 * 0.5**0.9)
    cos = TrainConfig(epochs=10, lr=0.01, schedule="cosine", min_lr=1e-3)
    assert scheduled_lr(cos, 6, 0.0) == pytest.approx(0.005)
    assert scheduled_lr(cos, 11, 0.0) == pytest.approx(1e-3)  # floored at min_lr
    # with a time budget, progress is the larger of the epochs' and the time's share
    timed = TrainConfig(epochs=100, lr=0.01, schedule="poly", minutes=1.0)
    assert scheduled_lr(timed, 2, 45.0) == pytest.approx(0.01 * 0.25**0.9)


def test_schedule_settings_left_out_at_default_and_checked():
    assert "schedule" not in TrainConfig().model_dump() and "minutes" not in TrainConfig().model_dump()
    assert TrainConfig(schedule="poly", minutes=2).model_dump()["minutes"] == 2
    with pytest.raises(ValueError, match=r"schedule 'step' is not valid; expected one of: plateau, poly, cosine"):
        TrainConfig(schedule="step")


class _Tiny(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(1, 8, 8, 8, generator=g)
        return {"image": x, "label": (x > 0).float()}


def test_fit_stops_when_the_time_budget_is_spent_and_decays_the_rate(tmp_path):
    net = RecombinationUNet(3, 1, 1, features=(2, 2), bottleneck=2, expand_channels=2)
    cfg = TrainConfig(epochs=50, lr=1e-3, schedule="poly", minutes=1e-6, monitor="train_loss",
                      device="cpu")
    res = fit(net, _Tiny(), DiceBCELoss(), tmp_path / "ck", cfg, progress=False)
    assert res.stopped_by_time and res.epochs_run == 1  # the first epoch always runs
    again = fit(net, _Tiny(), DiceBCELoss(), tmp_path / "ck", cfg, progress=False)
    assert again.epochs_run == 1 and again.stopped_by_time  # resumed: nothing left to do
    cfg3 = TrainConfig(epochs=3, lr=1e-3, schedule="poly", monitor="train_loss", device="cpu")
    res3 = fit(RecombinationUNet(3, 1, 1, features=(2, 2), bottleneck=2, expand_channels=2),
               _Tiny(), DiceBCELoss(), tmp_path / "ck3", cfg3, progress=False)
    assert [h["lr"] for h in res3.history] == pytest.approx(
        [1e-3 * (1 - e / 3) ** 0.9 for e in range(3)])


# ----------------------------------------------------------------------------------- planning
def _fp(spacing, box_mm, n=5, tumour=30.0):
    return {"n_patients": n, "sequences": ["t1", "t2"], "median_spacing": list(spacing),
            "median_brain_box_mm": list(box_mm),
            "tumour_ml": {"median": tumour, "min": tumour, "max": tumour}, "patients": {}}


def test_plan_isotropic_brain_is_coarsened_to_the_budget():
    cfg = get_preset("auto")
    planned, rec = plan_from_fingerprint(_fp((1.0, 1.0, 1.0), (140.0, 170.0, 140.0)), cfg)
    sp = planned.spacing
    assert isinstance(sp, float) and sp > 1.0
    # the median brain box fits the voxel budget at the planned spacing, and 10 % finer would not
    assert 140 * 170 * 140 / sp**3 <= cfg.plan.volume_voxels < 140 * 170 * 140 / (sp / 1.1) ** 3
    patch, strides = planned.patch_size, planned.net.strides
    mult = [math.prod(s[a] for s in strides) for a in range(3)]
    assert all(p % m == 0 for p, m in zip(patch, mult))
    assert len(planned.net.features) == len(strides) >= 3
    assert planned.net.deep_supervision == 2
    assert rec["decisions"]["patch_size_zyx"] == list(patch) and rec["why"]


def test_plan_thick_slices_stay_anisotropic_and_pool_in_plane_first():
    # a GPU-sized budget: in-plane stays fine (about 1.1 mm), far finer than the 5.5 mm slices
    cfg = validate_config({**get_preset("auto").model_dump(), "plan": {"volume_voxels": 800_000,
                           "patch_voxels": 262_144}}, "test")
    planned, rec = plan_from_fingerprint(_fp((0.9, 0.9, 5.5), (200.0, 200.0, 140.0)), cfg)
    assert isinstance(planned.spacing, tuple) and planned.spacing[2] == pytest.approx(5.5)
    assert planned.spacing[0] == planned.spacing[1] < 5.5
    assert planned.net.strides[0] == (1, 2, 2)  # the slice axis (z, first) is not pooled at first
    assert rec["decisions"]["anisotropic"] is True
    assert "anisotropic" in rec["why"][0]
    # the working grid keeps the thick slices: a 26-slice stack stays 26 slices
    native = Geometry((256, 224, 26), (0.9, 0.9, 5.5), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    grid = working_grid(native, planned.spacing)
    assert grid.size[2] == 26 and grid.spacing == tuple(planned.spacing)


def test_plan_needs_a_plan_and_a_poolable_patch():
    with pytest.raises(GlioradInputError, match=r"segmentation.plan is not set"):
        plan_from_fingerprint(_fp((1, 1, 1), (100, 100, 100)), get_preset("demo"))
    tiny = validate_config({**get_preset("auto").model_dump(), "plan": {"patch_voxels": 512,
                            "min_bottleneck": 8}}, "test")
    with pytest.raises(GlioradInputError, match=r"too small to pool .* raise plan.patch_voxels"):
        plan_from_fingerprint(_fp((1, 1, 1), (100, 100, 100)), tiny)


def _write(arr, path: Path, spacing):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def test_fingerprint_of_a_small_cohort(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    brain = np.zeros((10, 12, 14), bool)
    brain[2:8, 2:10, 3:11] = True  # box 6 x 8 x 8 voxels (z, y, x)
    seg = np.zeros(brain.shape, np.uint8)
    seg[4:6, 4:6, 4:6] = 2  # 8 voxels
    for pid in ("A", "B"):
        for seq in ("t1", "t2"):
            _write(np.where(brain, rng.normal(100, 10, brain.shape), 0).astype(np.float32),
                   tmp_path / pid / f"{pid}_{seq}.nii.gz", (1.0, 1.0, 3.0))
        _write(seg, tmp_path / pid / f"{pid}_seg.nii.gz", (1.0, 1.0, 3.0))
    cohort = discover_cohort(tmp_path, CohortConfig(sequences=["t1", "t2"]))
    fp = fingerprint(cohort, ["A", "B"], ["t1", "t2"])
    assert fp["median_spacing"] == [1.0, 1.0, 3.0]
    assert fp["median_brain_box_mm"] == [8.0, 8.0, 18.0]  # (x, y, z) mm
    assert fp["tumour_ml"]["median"] == pytest.approx(8 * 3.0 / 1000)
    assert fp["patients"]["A"]["intensity"]["t1"]["median"] == pytest.approx(100, abs=5)
    # an earlier fingerprint is reused for unchanged files; a rewritten file is read again
    import gliorad.segmentation.plan as plan_module

    read = []
    real = plan_module._case_fingerprint
    monkeypatch.setattr(plan_module, "_case_fingerprint",
                        lambda c, pid, seqs: read.append(pid) or real(c, pid, seqs))
    assert fingerprint(cohort, ["A", "B"], ["t1", "t2"], fp["patients"]) == fp and read == []
    _write(np.where(brain, 50.0, 0).astype(np.float32), tmp_path / "B" / "B_t2.nii.gz", (1.0, 1.0, 3.0))
    again = fingerprint(cohort, ["A", "B"], ["t1", "t2"], fp["patients"])
    assert read == ["B"] and again["patients"]["B"]["intensity"]["t2"]["median"] == 50.0


# ------------------------------------------------------------------------------ augmentation
def test_augmented_patches_keep_size_and_binary_labels():
    cfg = validate_config({**get_preset("auto").model_dump(), "patch_size": (16, 16, 16),
                           "augment": {"affine_prob": 1.0, "gamma_prob": 1.0, "noise_prob": 1.0,
                                       "blur_prob": 1.0, "lowres_prob": 1.0, "bias_prob": 1.0}},
                          "test")
    rng = np.random.default_rng(1)
    label = np.zeros((1, 24, 24, 24), np.uint8)
    label[0, 8:16, 8:16, 8:16] = 1
    item = {"image": rng.normal(size=(2, 24, 24, 24)).astype(np.float32), "label": label,
            "label_fg_indices": np.flatnonzero(label[0]), "label_bg_indices": np.flatnonzero(label[0] == 0)}
    t = patch_transforms(cfg)
    t.set_random_state(0)
    for s in t(item):
        assert tuple(s["image"].shape) == (2, 16, 16, 16) and tuple(s["label"].shape) == (1, 16, 16, 16)
        assert set(np.unique(np.asarray(s["label"]))) <= {0, 1}


def test_bias_field_acts_on_raw_intensities_inside_the_brain_only():
    from monai.transforms import Compose

    from gliorad.segmentation.train import BIAS_OFFSET, BiasFieldd

    rng = np.random.default_rng(2)
    x = np.zeros((2, 12, 12, 12), np.float32)
    x[:, 3:9, 3:9, 3:9] = rng.normal(size=(2, 6, 6, 6))
    chain = Compose([BiasFieldd(1.0, 0.3)])
    chain.set_random_state(5)
    a = chain({"image": x})["image"]
    chain.set_random_state(5)
    assert torch.equal(a, chain({"image": x})["image"])  # seeded: reproducible
    assert not a[:, :3].any() and not a[:, 9:].any()  # outside the brain stays 0
    inside = torch.as_tensor(x) != 0
    field = (a[inside] + BIAS_OFFSET) / (torch.as_tensor(x)[inside] + BIAS_OFFSET)
    assert float(field.min()) > 0 and not torch.allclose(field, torch.ones_like(field))
    assert BiasFieldd(0.0, 0.3)({"image": x})["image"] is x  # probability 0: unchanged


def test_paper_chain_is_unchanged():
    names = [type(t).__name__ for t in patch_transforms(get_preset("paper")).transforms]
    assert names == ["RandCropByPosNegLabeld", "RandFlipd", "RandFlipd", "RandFlipd",
                     "RandScaleIntensityd", "RandShiftIntensityd"]
    dump = get_preset("paper").model_dump()
    for key in ("plan", "folds", "patches_per_epoch", "choose_postprocessing"):
        assert key not in dump
    assert "affine_prob" not in dump["augment"] and "strides" not in dump["net"]


# --------------------------------------------------------------------------------- folds
def test_fold_splits_validate_each_patient_once():
    ids = [f"P{i}" for i in range(7)]
    splits = fold_splits(ids, 3, seed=4)
    vals = [p for _, va in splits for p in va]
    assert sorted(vals) == sorted(ids)
    for tr, va in splits:
        assert not set(tr) & set(va) and sorted(tr + va) == sorted(ids)
    with pytest.raises(GlioradInputError, match=r"3 folds need at least 3 patients .* there are 2"):
        fold_splits(["a", "b"], 3, seed=0)


def test_fold_ensemble_averages_probabilities():
    class Const(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.v = v

        def forward(self, x):
            return torch.full_like(x[:, :1], self.v)

    ens = FoldEnsemble([Const(0.0), Const(math.log(3.0))])  # p = 0.5 and 0.75
    out = torch.sigmoid(ens(torch.zeros(1, 1, 2, 2, 2)))
    assert torch.allclose(out, torch.full_like(out, 0.625))


def test_postprocessing_candidates_simplest_first():
    c = postprocessing_candidates(get_preset("demo"))
    assert c[0] == {"keep_largest": False, "min_component_ml": 0.0}
    assert c[-1] == {"keep_largest": True, "min_component_ml": 0.0}
    assert {"keep_largest": False, "min_component_ml": 0.5} in c


@pytest.fixture(scope="module")
def synth4(tmp_path_factory) -> Path:
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("segauto") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=4, seed=3, spacing=4.0), n_jobs=1)
    return root


TINY_AUTO = {"preset": "auto", "plan": {"volume_voxels": 20_000, "patch_voxels": 4096,
                                        "base_features": 2, "max_features": 4, "max_levels": 2},
             "net": {"expand_channels": 2, "deep_supervision": 1}, "patches_per_epoch": 2,
             "train": {"epochs": 2, "minutes": 5, "val_every": 1, "device": "cpu"},
             "inference": {"device": "cpu"}}


def test_cli_auto_two_folds_plans_ensembles_and_chooses_postprocessing(synth4, tmp_path):
    cfg_path = tmp_path / "auto.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY_AUTO))
    model = tmp_path / "model"
    r = CliRunner().invoke(app, ["train", str(synth4), "--out", str(model), "--config", str(cfg_path),
                                 "--folds", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "trained 2 folds on 4 patients" in r.output
    plans = json.loads((model / "plans.json").read_text())
    assert plans["fingerprint"]["n_patients"] == 4 and plans["decisions"]["spacing_xyz_mm"]
    conf = json.loads((model / "config.json").read_text())["segmentation"]
    assert conf["folds"] == 2 and conf["sequences"] == ["t1", "t1ce", "t2", "flair"]
    assert conf["patch_size"] == plans["decisions"]["patch_size_zyx"]
    post = json.loads((model / "postprocessing.json").read_text())
    assert len(post["patients"]) == 4  # each patient predicted by the fold that did not train on it
    chosen = post["chosen"]
    assert conf["inference"]["keep_largest"] == chosen["keep_largest"]
    assert conf["inference"]["min_component_ml"] == chosen["min_component_ml"]
    assert sum(c["chosen"] for c in post["candidates"]) == 1
    for k in range(2):
        assert (model / "folds" / f"fold_{k}" / "checkpoints" / "last.safetensors").is_file()
    m = load_model(model)
    assert isinstance(m.network, FoldEnsemble) and len(m.network.members) == 2
    cohort = discover_cohort(synth4, CohortConfig(sequences=m.config.sequences))
    prov = predict_cohort(cohort, m, tmp_path / "masks", progress=False)
    assert len(prov["patients"]) == 4
    assert all(0 <= r["fold_agreement"] <= 1 for r in prov["patients"].values())
    # finished: a second call keeps the model
    r = CliRunner().invoke(app, ["train", str(synth4), "--out", str(model), "--config", str(cfg_path),
                                 "--folds", "2", "--no-progress"])
    assert r.exit_code == 0 and "skipped" in r.output


def test_sequences_named_on_the_command_line_are_not_replanned():
    cfg = with_overrides(get_preset("auto"), sequences=["t1", "t2"])
    assert cfg.plan.all_sequences is False and cfg.sequences == ["t1", "t2"]
    assert with_overrides(get_preset("auto"), minutes=3, folds=2).train.minutes == 3


def test_config_check_says_which_settings_the_plan_chooses():
    from gliorad.run_config import load_run_config

    auto = load_run_config("demo", {"segmentation": {"preset": "auto"}}).notes
    assert any(re.match(r"segmentation\.plan: spacing, patch_size, net\.features and the pooling "
                        r"strides and sequences .*/plans\.json", n) for n in auto)
    fixed = load_run_config("demo", {"segmentation": {"preset": "auto",
                                                      "plan": {"all_sequences": False}}}).notes
    assert any(n.startswith("segmentation.plan: spacing") and "sequences (" not in n for n in fixed)
    assert not any(n.startswith("segmentation.plan") for n in load_run_config("demo").notes)


def test_folds_refuse_fixed_validation_patients(synth4, tmp_path):
    cfg = validate_config({**get_preset("demo").model_dump(), "folds": 2}, "test")
    cohort = discover_cohort(synth4, CohortConfig(sequences=cfg.sequences))
    with pytest.raises(GlioradInputError, match=r"val_ids cannot be fixed with segmentation.folds > 1"):
        train_segmentation(cohort, tmp_path / "m", cfg, val_ids=[cohort.ids[0]], progress=False)


def test_spacing_setting_checks():
    assert SegmentationConfig(spacing=(0.9, 0.9, 5.5)).spacing == (0.9, 0.9, 5.5)
    with pytest.raises(ValueError, match=r"spacing .* must be positive"):
        SegmentationConfig(spacing=(1.0, 0.0, 1.0))


def test_fold_agreement_and_the_disagree_flag(tmp_path):
    from gliorad.segmentation.infer import fold_agreement
    from gliorad.segmentation.qc import check_masks, qc_summary, volume_bounds

    a = np.zeros((1, 4, 4, 4), np.float32)
    a[0, :2] = 0.9  # 32 voxels
    b = np.zeros_like(a)
    b[0, 1:3] = 0.9  # 32 voxels, 16 shared: Dice 0.5
    assert fold_agreement([a, a], 0.5) == 1.0
    assert fold_agreement([a, b], 0.5) == pytest.approx(0.5)
    assert fold_agreement([a, b, a], 0.5) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert fold_agreement([np.zeros_like(a)] * 2, 0.5) == 1.0  # two empty masks agree
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    for pid in ("A", "B", "C"):
        _write(mask, tmp_path / f"{pid}.nii.gz", (1.0, 1.0, 1.0))
    bounds = volume_bounds([])
    table = check_masks(tmp_path, ["A", "B", "C"], bounds, {"A": 0.9, "B": 0.3}, 0.5)
    flags = dict(zip(table["patient_id"], table["flag"]))
    assert flags == {"A": "ok", "B": "disagree", "C": "ok"}
    assert "mean pairwise Dice 0.300 < 0.5" in table.set_index("patient_id").loc["B", "reason"]
    summary = qc_summary(table, bounds, "manual", 0.5)
    assert summary["counts"]["disagree"] == 1 and "not_checked" not in summary
    assert "folds' mean pairwise Dice below 0.5" in summary["rule"]
    assert "not_checked" in qc_summary(check_masks(tmp_path, ["A"], bounds), bounds, "manual")


@pytest.mark.realdata
def test_real_thick_slice_scans_are_planned_anisotropic_and_segmented(shared_data, tmp_path):
    """pyradiomics' brain1 / brain2 (T1 post-Gd of TCGA-GBM patients, 0.78 x 0.78 x 6.5 mm, 25 and
    23 slices) as a two-patient cohort: the plan keeps the 6.5 mm slices (no isotropic resampling),
    does not pool the slice axis at the first level, and a tiny network trains on the stack and
    writes masks on the native 25-slice grid."""
    src = shared_data / "pyradiomics"
    root = tmp_path / "stack"
    for k, name in enumerate(("brain1", "brain2"), 1):
        pid = f"P{k}"
        (root / pid).mkdir(parents=True)
        sitk.WriteImage(sitk.ReadImage(str(src / f"{name}_image.nrrd")), str(root / pid / f"{pid}_t1ce.nii.gz"))
        sitk.WriteImage(sitk.ReadImage(str(src / f"{name}_label.nrrd")), str(root / pid / f"{pid}_seg.nii.gz"))
    cohort = discover_cohort(root, CohortConfig(sequences=["t1ce"]))
    cfg = get_preset("auto")
    planned, rec = plan_from_fingerprint(fingerprint(cohort, cohort.ids, ["t1ce"]), cfg)
    assert rec["decisions"]["anisotropic"] is True
    assert planned.spacing[2] == pytest.approx(6.5) and planned.spacing[0] < 6.5
    assert planned.net.strides[0] == (1, 2, 2)
    tiny = validate_config({**cfg.model_dump(), "plan": {"volume_voxels": 60_000, "patch_voxels": 8192,
                                                         "base_features": 2, "max_levels": 3},
                            "net": {"expand_channels": 2, "deep_supervision": 1},
                            "patches_per_epoch": 2, "val_fraction": 0.0,
                            "train": {"epochs": 1, "minutes": None, "device": "cpu"},
                            "inference": {"device": "cpu"}}, "test")
    res = train_segmentation(cohort, tmp_path / "model", tiny, progress=False)
    conf = json.loads((tmp_path / "model" / "config.json").read_text())["segmentation"]
    assert conf["spacing"][2] == pytest.approx(6.5) and res.fit.epochs_run == 1
    m = load_model(tmp_path / "model")
    predict_cohort(cohort, m, tmp_path / "masks", progress=False)
    mask = sitk.ReadImage(str(tmp_path / "masks" / "P1.nii.gz"))
    assert mask.GetSize() == (256, 256, 25) and mask.GetSpacing()[2] == pytest.approx(6.5)
