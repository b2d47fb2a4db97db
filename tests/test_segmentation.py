"""Segmentation: sliding window, post-processing, metrics, data preparation, configs, CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
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
from gliorad.segmentation import (
    BRATS2018_REGIONS,
    SegmentationConfig,
    dice_score,
    evaluate_masks,
    foreground_box,
    get_preset,
    hd95,
    load_case,
    load_model,
    load_segmentation_config,
    predict_cohort,
    predict_volume,
    probabilities_to_labels,
    remove_small_components,
    sliding_window_predict,
    split_ids,
    train_segmentation,
    with_overrides,
    working_grid,
)
from gliorad.settings import merge

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py


# --------------------------------------------------------------------------------- sliding window
def test_sliding_window_on_a_volume_not_a_multiple_of_the_window():
    x = torch.randn(1, 2, 37, 29, 41)
    y = sliding_window_predict(x, lambda t: 2 * t[:, :1], roi_size=(16, 16, 16), overlap=0.5)
    assert y.shape == (1, 1, 37, 29, 41)
    torch.testing.assert_close(y, 2 * x[:, :1], atol=1e-5, rtol=1e-5)


def test_sliding_window_window_larger_than_image_and_2d():
    x = torch.randn(2, 1, 9, 30)
    y = sliding_window_predict(x, lambda t: t + 1, roi_size=(16, 16), overlap=0.25)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x + 1, atol=1e-5, rtol=1e-5)


def test_sliding_window_tta_averages_flips():
    x = torch.randn(1, 1, 10, 12, 14)
    # a flip-equivariant predictor gives the same result with and without TTA
    plain = sliding_window_predict(x, torch.sigmoid, (8, 8, 8))
    tta = sliding_window_predict(x, torch.sigmoid, (8, 8, 8), tta=True)
    torch.testing.assert_close(plain, tta, atol=1e-5, rtol=1e-5)
    # a predictor that sees position: TTA averages over the 8 flips
    ramp = lambda t: torch.arange(t.shape[2], dtype=t.dtype).view(1, 1, -1, 1, 1).expand_as(t[:, :1]).clone()
    out = sliding_window_predict(x, ramp, (10, 12, 14), tta=True)
    torch.testing.assert_close(out, torch.full_like(out, 4.5))  # mean of i and 9 - i


class _Recorder(torch.nn.Module):
    """Returns its first channel as the logit and records the window shapes it saw."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[2:]))
        return x[:, :1].clone()


def test_predict_volume_single_window_or_sliding_windows():
    image = np.zeros((2, 40, 30, 20), np.float32)
    image[:, 5:25, 4:24, 3:17] = np.random.default_rng(0).normal(size=(2, 20, 20, 14))
    brain = image.any(axis=0)
    rec = _Recorder()
    base = SegmentationConfig(patch_size=(8, 8, 8), inference={"device": "cpu"})
    one = predict_volume(rec, image, brain, base, torch.device("cpu"), activation=False)
    assert rec.shapes == [(28, 28, 20)]  # the brain box with a 4-voxel margin, clipped to the array
    np.testing.assert_allclose(one[0][brain], image[0][brain], atol=1e-6)
    assert (one[0][~foreground_mask(brain)] == -20.0).all()
    rec.shapes.clear()
    slide = base.model_copy(update={"inference": base.inference.model_copy(update={"max_single_window_voxels": 0})})
    many = predict_volume(rec, image, brain, slide, torch.device("cpu"), activation=False)
    assert set(rec.shapes) == {(8, 8, 8)} and len(rec.shapes) > 1
    np.testing.assert_allclose(many, one, atol=1e-5)


def foreground_mask(brain):
    m = np.zeros_like(brain)
    m[foreground_box(brain)] = True
    return m


def test_sliding_window_bad_roi():
    with pytest.raises(GlioradInputError, match=r"roi_size \(8, 8\) has 2 axes; the image has 3"):
        sliding_window_predict(torch.zeros(1, 1, 8, 8, 8), lambda t: t, (8, 8))


# ------------------------------------------------------------------------------ post-processing
def test_remove_small_components_and_keep_largest():
    m = np.zeros((10, 10, 10), bool)
    m[1:4, 1:4, 1:4] = True  # 27 voxels
    m[7:9, 7:9, 7] = True  # 4 voxels
    m[5, 5, 5] = True  # 1 voxel, touches nothing
    assert remove_small_components(m).sum() == 32
    assert remove_small_components(m, min_voxels=4).sum() == 31
    assert remove_small_components(m, min_voxels=5).sum() == 27
    assert remove_small_components(m, keep_largest=True).sum() == 27
    # 26-connectivity: a diagonal neighbour belongs to the component
    m[4, 4, 4] = True
    assert remove_small_components(m, keep_largest=True).sum() == 29  # 27 + (4,4,4) + (5,5,5)
    assert not remove_small_components(np.zeros((3, 3, 3), bool), keep_largest=True).any()


def test_probabilities_to_brats_labels_nest_regions():
    cfg = SegmentationConfig(label_mode="regions")
    prob = np.zeros((3, 1, 1, 5), np.float32)
    prob[0, ..., :4] = 0.9  # WT on voxels 0-3
    prob[1, ..., 1:5] = 0.9  # TC on 1-4 (4 is outside WT -> dropped)
    prob[2, ..., 2:5] = 0.9  # ET on 2-4
    labels = probabilities_to_labels(prob, cfg, BRATS2018_REGIONS, voxel_ml=0.001)
    assert labels.ravel().tolist() == [2, 1, 4, 4, 0]
    wt = probabilities_to_labels(prob[:1], SegmentationConfig(), BRATS2018_REGIONS, voxel_ml=0.001)
    assert wt.ravel().tolist() == [1, 1, 1, 1, 0]


def test_foreground_box():
    m = np.zeros((10, 12, 14), bool)
    m[3:5, 4, 10:12] = True
    assert foreground_box(m, margin=2) == (slice(1, 7), slice(2, 7), slice(8, 14))
    assert foreground_box(np.zeros((3, 4), bool)) == (slice(0, 3), slice(0, 4))


# ------------------------------------------------------------------------------------- metrics
def test_dice_hand_values_and_empty_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 voxels
    b[0, 1:] = True  # 3 voxels, 2 shared
    assert dice_score(a, b) == pytest.approx(4 / 6)
    assert dice_score(np.zeros(3), np.zeros(3)) == 1.0
    assert dice_score(a, np.zeros_like(a)) == 0.0


@pytest.mark.parametrize(("axis", "spacing", "expected"), [(2, (1.0, 1.0, 1.0), 2.0),
                                                          (2, (3.0, 2.0, 0.5), 1.0),
                                                          (0, (3.0, 2.0, 0.5), 6.0)])
def test_hd95_of_a_shifted_cube_in_mm(axis, spacing, expected):
    """A 10-voxel cube shifted by 2 voxels: the shifted faces (1/6 of the surface > 5%) are 2
    voxels from the other surface, everything else closer, so HD95 = 2 * spacing along the shift."""
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=axis)
    assert hd95(a, b, spacing) == pytest.approx(expected)
    assert hd95(a, a, spacing) == 0.0


def test_hd95_empty_cases():
    a = np.zeros((5, 5, 5), bool)
    b = a.copy()
    b[2, 2, 2] = True
    assert hd95(a, a, (1, 1, 1)) == 0.0
    assert hd95(a, b, (1, 1, 1)) is None
    assert hd95(b, a, (1, 1, 1)) is None


# --------------------------------------------------------------------------------------- config
def test_presets_and_overrides(tmp_path):
    paper, demo = get_preset("paper"), get_preset("demo")
    assert paper.net.expand_channels == 64 and len(paper.net.features) == 4
    assert paper.train.epochs == 200 and paper.train.batch_size == 1 and paper.train.lr == 5e-4
    assert paper.train.plateau_patience == 10 and paper.train.plateau_factor == 0.5
    assert paper.spacing == 1.0 and demo.spacing == 3.0
    over = with_overrides(demo, epochs=3, sequences=["flair"], seed=7, device="cpu")
    assert (over.train.epochs, over.sequences, over.train.seed, over.inference.device) == (3, ["flair"], 7, "cpu")
    f = tmp_path / "seg.yaml"
    f.write_text(yaml.safe_dump({"preset": "demo", "train": {"epochs": 2}, "label_mode": "regions"}))
    cfg = load_segmentation_config(f)
    assert cfg.train.epochs == 2 and cfg.train.batch_size == demo.train.batch_size and cfg.out_channels == 3


@pytest.mark.parametrize(("content", "pattern"), [
    ({"preset": "fast"}, r"segmentation preset 'fast' is not valid; expected one of: paper, demo"),
    ({"label_mode": "et"}, r"label_mode 'et' is not valid; expected one of: wt, regions"),
    ({"net": {"width": 3}}, r"seg.yaml: net.width: Extra inputs are not permitted"),
    ({"train": {"device": "gpu"}}, r"train.device: .*'gpu' is not valid; expected one of: auto, cpu, cuda"),
    ({"inference": {"precision": "half"}}, r"inference.precision 'half' is not valid; expected one of: float32, bfloat16"),
    ({"regions": {"WT": [1]}}, r"regions has keys \['WT'\]; expected \['WT', 'TC', 'ET'\]"),
    ([1, 2], r"expected a mapping at the top level, got list"),
])
def test_bad_config_files(tmp_path, content, pattern):
    f = tmp_path / "seg.yaml"
    f.write_text(yaml.safe_dump(content))
    with pytest.raises(GlioradInputError, match=pattern):
        load_segmentation_config(f)


def test_unknown_preset_name():
    with pytest.raises(GlioradInputError, match=r"config 'fast' is neither a preset \(paper, demo, auto\) nor a file"):
        load_segmentation_config("fast")


def test_working_grid_and_split():
    native = Geometry((10, 20, 5), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert working_grid(native, None) == native
    g = working_grid(native, 2.0)
    assert g.size == (5, 10, 7) and g.spacing == (2.0, 2.0, 2.0) and g.origin == native.origin
    train, val = split_ids([f"P{i}" for i in range(10)], 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == [f"P{i}" for i in range(10)]
    assert split_ids(["A"], 0.5, 0) == (["A"], [])
    assert split_ids(["A", "B"], 0.0, 0) == (["A", "B"], [])


def test_config_module_imports_no_heavy_library():
    """A run config's check imports the settings only: no torch, MONAI, SimpleITK, NumPy."""
    code = ("import sys, gliorad.segmentation.config as c, gliorad.segmentation as s; "
            "c.load_segmentation_config('demo'); s.get_preset('paper'); "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_names_resolve_to_their_role_modules():
    import gliorad.segmentation as seg

    roles = {"config", "data", "train", "infer", "evaluate", "qc"}
    for name in seg.__all__:
        obj = getattr(seg, name)
        module = getattr(obj, "__module__", None)
        if module is not None and module.startswith("gliorad.segmentation."):
            assert module.rsplit(".", 1)[1] in roles, name
    assert seg.mask_path.__module__ == "gliorad.segmentation.infer"
    assert seg.evaluate_masks.__module__ == "gliorad.segmentation.evaluate"
    assert seg.train_segmentation.__module__ == "gliorad.segmentation.train"
    assert set(seg.__all__) <= set(dir(seg))
    with pytest.raises(AttributeError, match=r"module 'gliorad.segmentation' has no attribute '_deep_merge'"):
        seg._deep_merge  # noqa: B018  (the old merge helper: gliorad.settings.merge replaces it)


# ------------------------------------------------------------------------------ data preparation
def _write(arr, path: Path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


@pytest.fixture
def small_cohort(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    brain = np.zeros((12, 14, 16), bool)
    brain[2:10, 2:12, 2:14] = True
    seg = np.zeros(brain.shape, np.uint8)
    seg[4:7, 5:8, 6:9] = 2
    seg[5, 6, 7] = 4
    seg[5, 6, 6] = 1
    for pid in ("P1", "P2"):
        for k, seq in enumerate(("t1", "t1ce", "t2")):
            arr = np.where(brain, rng.normal(300 * (k + 1), 40, brain.shape), 0).astype(np.float32)
            _write(arr, tmp_path / "c" / pid / f"{pid}_{seq}.nii.gz", (2.0, 2.0, 2.0))
        _write(seg, tmp_path / "c" / pid / f"{pid}_seg.nii.gz", (2.0, 2.0, 2.0))
    return tmp_path / "c"


def test_load_case_zscores_in_brain_and_resamples(small_cohort):
    cohort = discover_cohort(small_cohort, CohortConfig(sequences=["t1", "t1ce", "t2"]))
    cfg = SegmentationConfig(spacing=None, label_mode="regions")
    case = load_case(cohort, "P1", cfg, with_label=True, regions=BRATS2018_REGIONS)
    assert case.image.shape == (3, 12, 14, 16) and not case.resampled
    for c in range(3):
        inside = case.image[c][case.brain]
        assert abs(inside.mean()) < 1e-5 and inside.std() == pytest.approx(1.0, rel=1e-4)
        assert not case.image[c][~case.brain].any()
    assert case.label.shape == (3, 12, 14, 16)
    assert case.label[0].sum() == 27 and case.label[1].sum() == 2 and case.label[2].sum() == 1
    coarse = load_case(cohort, "P1", SegmentationConfig(spacing=4.0), with_label=True)
    assert coarse.resampled and coarse.image.shape == (3, 6, 7, 8) and coarse.label.shape == (1, 6, 7, 8)
    assert coarse.grid.spacing == (4.0, 4.0, 4.0) and coarse.native.spacing == (2.0, 2.0, 2.0)


def test_load_case_bad_inputs(small_cohort):
    cohort = discover_cohort(small_cohort, CohortConfig(sequences=["t1", "t1ce", "t2"]))
    _write(np.ones((12, 14, 15), np.float32), small_cohort / "P2" / "P2_t2.nii.gz")
    cfg = SegmentationConfig(spacing=None)
    with pytest.raises(GlioradInputError, match=r"P2_t2.nii.gz: grid differs from P2_t1.nii.gz \(shape"):
        load_case(cohort, "P2", cfg, with_label=False)
    seg = np.zeros((12, 14, 16), np.uint8)
    seg[3, 3, 3] = 3
    _write(seg, small_cohort / "P1" / "P1_seg.nii.gz", (2.0, 2.0, 2.0))
    with pytest.raises(GlioradInputError, match=r"P1_seg.nii.gz: labels \[3\] are in no region"):
        load_case(cohort, "P1", cfg.model_copy(update={"label_mode": "regions"}), with_label=True,
                  regions=BRATS2018_REGIONS)
    _write(np.full((12, 14, 16), 5.0, np.float32), small_cohort / "P1" / "P1_t1.nii.gz", (2.0, 2.0, 2.0))
    with pytest.raises(GlioradInputError, match=r"P1_t1.nii.gz: constant inside the brain"):
        load_case(cohort, "P1", cfg, with_label=False)


# ------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def synth_cohort(tmp_path_factory) -> Path:
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("segsynth") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=3, seed=2, spacing=4.0), n_jobs=1)
    return root


TINY = {"preset": "demo", "spacing": 4.0, "patch_size": [16, 16, 16], "samples_per_volume": 1,
        "net": {"features": [2, 4], "bottleneck": 4, "expand_channels": 4},
        "train": {"epochs": 1, "batch_size": 1, "device": "cpu"}, "val_fraction": 0.34,
        "inference": {"roi_size": [32, 32, 32], "device": "cpu", "min_component_ml": 0.0}}


def test_cli_train_predict_evaluate(synth_cohort, tmp_path):
    runner = CliRunner()
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    model, masks = tmp_path / "model", tmp_path / "masks"
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(model), "--config", str(cfg), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "trained on 2 patients, validated on 1; 1 epochs" in r.output
    for name in ("model.safetensors", "config.json", "history.json", "provenance.json"):
        assert (model / name).is_file()
    prov = json.loads((model / "provenance.json").read_text(encoding="utf-8"))
    assert len(prov["train_ids"]) == 2 and prov["seed"] == 0 and prov["inputs"]
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(model), "--config", str(cfg)])
    assert r.exit_code == 0 and "skipped" in r.output
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(model), "--config", str(cfg), "--seed", "5"])
    assert r.exit_code == 2 and "holds a model trained with other settings" in r.output
    # more epochs: the run resumes from its checkpoint
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(model), "--config", str(cfg),
                            "--epochs", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    hist = json.loads((model / "history.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in hist] == [1, 2]
    assert json.loads((model / "provenance.json").read_text(encoding="utf-8"))["resumed_from_epoch"] == 1

    r = runner.invoke(app, ["predict", str(synth_cohort), "--model", str(model), "--out", str(masks), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "3 masks" in r.output
    cohort = discover_cohort(synth_cohort)
    for pid in cohort.ids:
        mask = sitk.ReadImage(str(masks / f"{pid}.nii.gz"))
        ref = sitk.ReadImage(str(cohort.image_path(pid, "t1")))
        assert not Geometry.of(ref).differences(Geometry.of(mask))
        assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 1}
    pred = json.loads((masks / "prediction.json").read_text(encoding="utf-8"))
    assert pred["label_mode"] == "wt" and pred["labels"] == {"1": "whole tumour"}
    first = pred["patients"][cohort.ids[0]]
    assert first["window"] == first["predicted_box"]  # a small volume: one window
    stamp = (masks / f"{cohort.ids[0]}.nii.gz").stat().st_mtime_ns
    r = runner.invoke(app, ["predict", str(synth_cohort), "--model", str(model), "--out", str(masks), "--no-progress"])
    assert r.exit_code == 0 and (masks / f"{cohort.ids[0]}.nii.gz").stat().st_mtime_ns == stamp  # skipped

    r = runner.invoke(app, ["evaluate", str(masks), str(synth_cohort)])
    assert r.exit_code == 0, r.output
    assert "3 patients" in r.output and "WT" in r.output
    ev = json.loads((masks / "evaluation.json").read_text(encoding="utf-8"))
    assert {row["patient_id"] for row in ev["patients"]} == set(cohort.ids)
    assert ev["summary"]["WT"]["dice"]["n"] == 3
    assert (masks / "evaluation.csv").read_text(encoding="utf-8").startswith("patient_id,region,dice,hd95_mm")


def test_cli_evaluate_perfect_masks_and_regions(synth_cohort, tmp_path):
    """Manual masks as predictions: Dice 1 and HD95 0 for WT, TC and ET."""
    cohort = discover_cohort(synth_cohort)
    masks = tmp_path / "m"
    masks.mkdir()
    for pid in cohort.ids:
        (masks / f"{pid}.nii.gz").write_bytes(cohort.patients[pid].seg.read_bytes())
    r = CliRunner().invoke(app, ["evaluate", str(masks), str(synth_cohort), "--label-mode", "regions",
                                 "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "ev" / "evaluation.json").read_text(encoding="utf-8"))["summary"]
    for name in ("WT", "TC", "ET"):
        assert s[name]["dice"]["mean"] == 1.0 and s[name]["hd95_mm"]["mean"] == 0.0


def test_evaluate_in_parallel_gives_the_same_rows_and_names_a_bad_grid(synth_cohort, tmp_path):
    """jobs=2 (loky processes) gives the serial rows in the serial order; a mask on another grid
    stops it with the file named, as in one process, and writes no evaluation file."""
    from gliorad.segmentation import evaluate_masks

    cohort = discover_cohort(synth_cohort)
    masks = tmp_path / "m"
    masks.mkdir()
    for pid in cohort.ids:
        seg = sitk.ReadImage(str(cohort.patients[pid].seg))
        arr = sitk.GetArrayFromImage(seg)
        arr[:, :, : arr.shape[2] // 2] = 0  # half the tumour: Dice and HD95 away from 1 and 0
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(seg)
        sitk.WriteImage(out, str(masks / f"{pid}.nii.gz"))
    serial = evaluate_masks(masks, cohort, out_dir=tmp_path / "s", label_mode="regions")
    parallel = evaluate_masks(masks, cohort, out_dir=tmp_path / "p", label_mode="regions", jobs=2)
    assert parallel.rows == serial.rows and parallel.summary == serial.summary
    assert [r["patient_id"] for r in serial.rows] == [p for p in cohort.ids for _ in range(3)]
    bad = cohort.ids[1]
    img = sitk.ReadImage(str(masks / f"{bad}.nii.gz"))
    img.SetSpacing(tuple(2 * s for s in img.GetSpacing()))
    sitk.WriteImage(img, str(masks / f"{bad}.nii.gz"))
    for jobs in (1, 2):
        with pytest.raises(GlioradInputError, match=rf"{bad}\.nii\.gz: grid differs from the manual mask"):
            evaluate_masks(masks, cohort, out_dir=tmp_path / f"bad{jobs}", jobs=jobs)
        assert not (tmp_path / f"bad{jobs}" / "evaluation.json").exists()


def test_cli_evaluate_reports_empty_predictions(synth_cohort, tmp_path):
    cohort = discover_cohort(synth_cohort)
    masks = tmp_path / "m"
    pid = cohort.ids[0]
    seg = sitk.ReadImage(str(cohort.patients[pid].seg))
    empty = sitk.Image(seg.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(seg)
    masks.mkdir()
    sitk.WriteImage(empty, str(masks / f"{pid}.nii.gz"))
    r = CliRunner().invoke(app, ["evaluate", str(masks), str(synth_cohort)])
    assert r.exit_code == 0, r.output
    assert f"HD95 undefined for 1 patients (one mask empty): {pid}" in r.output
    assert "patients with a manual mask but no prediction" in r.output
    row = json.loads((masks / "evaluation.json").read_text(encoding="utf-8"))["patients"][0]
    assert row["dice"] == 0.0 and row["hd95_mm"] is None and row["note"] == "empty prediction"


def test_cli_bad_inputs(synth_cohort, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(tmp_path / "m"), "--config", "fast"])
    assert r.exit_code == 2 and "error: segmentation config 'fast' is neither a preset" in r.output
    r = runner.invoke(app, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "m"), "--config", "demo"])
    assert r.exit_code == 2 and "cohort folder not found" in r.output
    r = runner.invoke(app, ["train", str(synth_cohort), "--out", str(tmp_path / "m"), "--config", "demo",
                            "--sequences", "t1,dwi"])
    assert r.exit_code == 2 and "cohort.sequences ['dwi'] not known" in r.output
    r = runner.invoke(app, ["predict", str(synth_cohort), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "config.json: not found; expected a model folder" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), str(synth_cohort)])
    assert r.exit_code == 2 and "no mask <patient>.nii.gz matches a patient" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), str(synth_cohort), "--label-mode", "all"])
    assert r.exit_code == 2 and "label_mode 'all' is not valid; expected one of: wt, regions" in r.output


def test_regions_model_writes_brats_labels_and_evaluates_tc_et(synth_cohort, tmp_path):
    cohort = discover_cohort(synth_cohort, CohortConfig(sequences=["t1", "t1ce", "t2"]))
    data = {**TINY, "label_mode": "regions"}
    data.pop("preset")
    cfg = SegmentationConfig.model_validate(merge(get_preset("demo").model_dump(), data))
    res = train_segmentation(cohort, tmp_path / "model", cfg, progress=False)
    assert res.fit.epochs_run == 1 and len(res.val_ids) == 1
    model = load_model(tmp_path / "model")
    assert model.regions == {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}
    prov = predict_cohort(cohort, model, tmp_path / "masks", progress=False)
    assert prov["label_mode"] == "regions" and prov["labels"]["4"] == "enhancing tumour"
    for pid in cohort.ids:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "masks" / f"{pid}.nii.gz")))
        assert set(np.unique(arr)) <= {0, 1, 2, 4}
    ev = evaluate_masks(tmp_path / "masks", cohort)
    assert ev.summary["label_mode"] == "regions" and {"WT", "TC", "ET"} <= set(ev.summary)
    assert len(ev.rows) == 3 * len(cohort.ids)


def test_predict_cohort_segments_each_patient_with_segment_case(synth_cohort, tmp_path, monkeypatch):
    """The cohort loop's unit of work is segment_case (what gliorad predict calls for one
    patient): predict_cohort calls it once per patient, after prepare_model, and writes exactly
    its mask and record; segment_case on its own gives the same mask."""
    from gliorad.segmentation import (
        SegmentationModel,
        build_network,
        default_regions,
        infer,
        label_names,
        prepare_model,
        segment_case,
    )

    data = {k: v for k, v in TINY.items() if k != "preset"}
    cfg = SegmentationConfig.model_validate(merge(get_preset("demo").model_dump(), data))
    torch.manual_seed(0)  # an untrained network: its masks are arbitrary but deterministic
    model = SegmentationModel(build_network(cfg), cfg, default_regions("brats2018"), tmp_path / "m",
                              "0" * 64)
    cohort = discover_cohort(synth_cohort)
    ids = cohort.ids[:2]
    calls: list[tuple[str, torch.device]] = []
    masks: dict[str, np.ndarray] = {}
    records: dict[str, dict] = {}

    def spy(model_, cohort_, pid, device):
        calls.append((pid, device))
        mask, record = segment_case(model_, cohort_, pid, device)
        masks[pid], records[pid] = sitk.GetArrayFromImage(mask), record
        return mask, record

    monkeypatch.setattr(infer, "segment_case", spy)
    prov = predict_cohort(cohort, model, tmp_path / "masks", ids=ids, progress=False)
    assert calls == [(pid, torch.device("cpu")) for pid in ids]
    assert prov["labels"] == label_names(cfg, model.regions) == {"1": "whole tumour"}
    for pid in ids:
        written = sitk.ReadImage(str(tmp_path / "masks" / f"{pid}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), masks[pid])
        entry = prov["patients"][pid]
        assert {k: entry[k] for k in records[pid]} == records[pid]
        assert entry["tumour_voxels"] == int((masks[pid] > 0).sum())
    # the same function on its own (the model prepared once more: nothing changes)
    device = prepare_model(model)
    weight = next(p for p in model.network.parameters() if p.ndim == 5)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)  # the CPU inference layout
    again, record = segment_case(model, cohort, ids[1], device)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), masks[ids[1]])
    assert record == records[ids[1]]
    ref = sitk.ReadImage(str(cohort.image_path(ids[1], "t1")))
    assert not Geometry.of(ref).differences(Geometry.of(again))


@pytest.mark.realdata
@pytest.mark.slow
def test_real_brats_smoke(shared_data, tmp_path):
    """Real BraTS 2018 cases: 1 mm -> 4 mm for a tiny network, one epoch, masks back on the
    240x240x155 grid of the input, evaluation against the manual masks."""
    root = shared_data / "brats2018"
    cohort = discover_cohort(root, CohortConfig(sequences=["t1", "t1ce", "t2"]))
    ids = cohort.ids[:3]
    data = {k: v for k, v in TINY.items() if k != "preset"}
    cfg = SegmentationConfig.model_validate(merge(get_preset("demo").model_dump(), data))
    res = train_segmentation(cohort, tmp_path / "model", cfg, ids=ids, progress=False)
    assert res.fit.epochs_run == 1
    model = load_model(tmp_path / "model")
    prov = predict_cohort(cohort, model, tmp_path / "masks", ids=ids[:1], progress=False)
    entry = prov["patients"][ids[0]]
    assert entry["native_spacing"] == [1.0, 1.0, 1.0] and entry["working_spacing"] == [4.0, 4.0, 4.0]
    mask = sitk.ReadImage(str(tmp_path / "masks" / f"{ids[0]}.nii.gz"))
    ref = sitk.ReadImage(str(cohort.image_path(ids[0], "t1")))
    assert mask.GetSize() == (240, 240, 155) and not Geometry.of(ref).differences(Geometry.of(mask))
    ev = evaluate_masks(tmp_path / "masks", cohort)
    assert ev.summary["n_patients"] == 1 and len(ev.summary["patients_without_mask"]) == 5
