"""The check of each automatic mask (issue 19 item 3, gliorad.segmentation.qc): empty, implausibly
small or large against the U-Net's training volumes -> flagged in the segment stage's qc.csv /
qc.json, replaced by the manual mask (segmentation.flagged: manual) or the patient excluded
(exclude), a warning at the end of ``gliorad run``, a table in the report.

Disagreement between the folds of a k-fold ensemble is not checked: the segment stage trains one
network. The stage is run inside ``gliorad run`` (in-process) with its training and prediction
replaced by a fake that writes known masks: one a copy of the manual mask, one empty, one filling
the whole image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from gliorad.cli import app
from gliorad.cohort import discover_cohort
from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from gliorad.run_config import load_run_config
from gliorad.segmentation.config import MaskCheckConfig, SegmentationConfig
from gliorad.segmentation.qc import (
    MIN_REFERENCE,
    check_masks,
    flag_volume,
    handle_flagged,
    mask_measures,
    qc_summary,
    volume_bounds,
)

runner = CliRunner()


def _write_mask(arr: np.ndarray, path: Path, spacing=(2.0, 2.0, 2.0)) -> Path:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


# ------------------------------------------------------------------------------ the rule
def test_volume_bounds_reference_values():
    vols = [30.0, 10.0, 60.0, 20.0, 50.0, 40.0, 0.0]  # the empty manual mask is left out
    b = volume_bounds(vols)
    # numpy's linear quantile (Hyndman-Fan type 7), by hand: position (n - 1) q = 5 x 0.01 = 0.05
    # from 10 towards 20 -> 10.5; from 60 towards 50 -> 59.5
    assert b.n == 6 and b.reference_low == pytest.approx(10.5) and b.reference_high == pytest.approx(59.5)
    assert b.low == pytest.approx(0.5 * 10.5) and b.high == pytest.approx(2 * 59.5)
    assert "0.5 x the 1st percentile of the 6 training" in b.rule() and "99th percentile" in b.rule()
    mm = volume_bounds(vols, MaskCheckConfig(quantile=0, small=0.25, large=3))
    assert (mm.low, mm.high) == (2.5, 180.0) and "minimum" in mm.rule() and "maximum" in mm.rule()
    # flags at and around the bounds (the bounds themselves pass)
    assert flag_volume(0.0, b) == ("empty", "no tumour voxel")
    assert flag_volume(5.25, b)[0] == "ok" and flag_volume(5.2, b)[0] == "small"
    assert flag_volume(119.0, b)[0] == "ok" and flag_volume(119.5, b)[0] == "large"
    assert flag_volume(5.2, b)[1] == "5.2 ml < 0.5 x 10.5 ml (the 1st percentile of 6 training masks)"


def test_flags_follow_the_bounds_for_any_volume():
    rng = np.random.default_rng(0)
    for _ in range(20):
        train = rng.lognormal(3, 1, size=int(rng.integers(MIN_REFERENCE, 40)))
        cfg = MaskCheckConfig(quantile=float(rng.uniform(0, 0.2)), small=float(rng.uniform(0.1, 1)),
                              large=float(rng.uniform(1, 4)))
        b = volume_bounds(train, cfg)
        # a quantile lies between the minimum and the maximum
        assert cfg.small * train.min() - 1e-9 <= b.low <= cfg.small * train.max() + 1e-9
        assert cfg.large * train.min() - 1e-9 <= b.high <= cfg.large * train.max() + 1e-9
        assert b.low < b.high
        for v in rng.lognormal(3, 2, size=50):
            flag = flag_volume(float(v), b)[0]
            assert flag == ("small" if v < b.low else "large" if v > b.high else "ok")


def test_too_few_training_volumes_flag_only_empty_masks():
    b = volume_bounds([5.0] * (MIN_REFERENCE - 1) + [0.0])
    assert b.low is None and b.high is None and b.n == MIN_REFERENCE - 1
    assert flag_volume(1e-6, b)[0] == "ok" and flag_volume(1e6, b)[0] == "ok"
    assert flag_volume(0, b)[0] == "empty"
    assert f"no volume bounds ({MIN_REFERENCE - 1} training mask volume(s)" in b.rule()


def test_mask_measures_of_hand_made_masks(tmp_path):
    arr = np.zeros((10, 10, 10), np.uint8)
    arr[1:3, 1:3, 1:3] = 1          # 8 voxels
    arr[6, 6, 6:8] = 2              # 2 voxels, not touching the first blob (26-connectivity)
    m = mask_measures(arr, voxel_ml=0.008)
    assert m == {"volume_ml": pytest.approx(10 * 0.008), "components": 2,
                 "largest_fraction": pytest.approx(0.8)}
    arr[3, 3, 3] = 1                # diagonal neighbour of the first blob: same component
    assert mask_measures(arr, 1.0)["components"] == 2
    assert mask_measures(np.zeros((4, 4, 4)), 1.0) == {"volume_ml": 0.0, "components": 0,
                                                       "largest_fraction": None}


def test_check_masks_flags_each_kind(tmp_path):
    masks = tmp_path / "masks"
    voxel_ml = 0.008  # 2 mm voxels
    b = volume_bounds([1.0, 1.2, 1.5, 2.0, 2.5])  # low 0.5 x 1.008 ml, high 2 x 2.48 ml
    shapes = {"E": 0, "S": 40, "K": 200, "L": 800}  # 0, 0.32, 1.6, 6.4 ml
    for pid, n in shapes.items():
        arr = np.zeros((20, 20, 20), np.uint8)
        arr.flat[:n] = 1
        _write_mask(arr, masks / f"{pid}.nii.gz")
    table = check_masks(masks, ["E", "S", "K", "L", "absent"], b)
    assert list(table["patient_id"]) == ["E", "S", "K", "L"]
    assert list(table["flag"]) == ["empty", "small", "ok", "large"]
    assert table["volume_ml"].tolist() == pytest.approx([n * voxel_ml for n in shapes.values()])
    assert (table["action"] == "kept").all()
    summary = qc_summary(table, b, "manual")
    assert summary["counts"] == {"ok": 1, "empty": 1, "small": 1, "large": 1, "disagree": 0}
    assert [r["patient_id"] for r in summary["flagged"]] == ["E", "S", "L"]
    assert "disagreement between folds" in summary["not_checked"]


# ------------------------------------------------------------------------------ handling
@pytest.fixture
def flagged_cohort(make_cohort, tmp_path):
    root = make_cohort(ids=("P001", "P002"))
    make_cohort(ids=("P003",), seg=False, root=root)
    cohort = discover_cohort(root, CohortConfig(sequences=["t1", "t1ce", "t2", "flair"]))
    masks = tmp_path / "masks"
    masks.mkdir()
    ref = sitk.ReadImage(str(root / "P001" / "P001_t1.nii.gz"))
    for pid in ("P001", "P002", "P003"):  # P002's fills the image, the others are empty
        arr = np.full(sitk.GetArrayFromImage(ref).shape, int(pid == "P002"), np.uint8)
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(ref)
        sitk.WriteImage(img, str(masks / f"{pid}.nii.gz"))
    return cohort, masks


@pytest.mark.parametrize("mode", ["manual", "exclude"])
def test_handle_flagged(flagged_cohort, tmp_path, mode):
    cohort, masks = flagged_cohort
    b = volume_bounds([0.05] * MIN_REFERENCE)  # the manual masks' 64 voxels: 0.064 ml
    table = check_masks(masks, cohort.ids, b)
    assert list(table["flag"]) == ["empty", "large", "empty"]
    raw_before = {p: (masks / f"{p}.nii.gz").read_bytes() for p in cohort.ids}
    out = handle_flagged(table, masks, tmp_path / "flagged", cohort, mode, "wt")
    for pid in cohort.ids:  # the raw predictions are kept, byte for byte
        assert (tmp_path / "flagged" / f"{pid}.nii.gz").read_bytes() == raw_before[pid]
    if mode == "manual":
        assert list(out["action"]) == ["replaced_by_manual", "replaced_by_manual", "excluded"]
        for pid in ("P001", "P002"):
            new = sitk.ReadImage(str(masks / f"{pid}.nii.gz"))
            manual = sitk.ReadImage(str(cohort.patients[pid].seg))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(new),
                                          (sitk.GetArrayFromImage(manual) > 0).astype(np.uint8))
            assert new.GetSpacing() == manual.GetSpacing() and new.GetOrigin() == manual.GetOrigin()
        assert not (masks / "P003.nii.gz").exists()  # no manual mask to take its place
    else:
        assert list(out["action"]) == ["excluded"] * 3
        assert not list(masks.glob("*.nii.gz"))
    summary = qc_summary(out, b, mode)
    assert summary["actions"]["excluded"] == (1 if mode == "manual" else 3)


def test_handle_flagged_keeps_region_labels(flagged_cohort, tmp_path):
    cohort, masks = flagged_cohort
    table = check_masks(masks, ["P001"], volume_bounds([]))
    handle_flagged(table, masks, tmp_path / "flagged", cohort, "manual", "regions")
    new = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / "P001.nii.gz")))
    assert sorted(np.unique(new)) == [0, 1, 2, 4]


def test_bad_settings_name_the_key(flagged_cohort, tmp_path):
    with pytest.raises(GlioradInputError, match=r"segmentation.flagged: flagged 'drop' is not "
                                                 r"valid; expected one of: manual, exclude"):
        load_run_config("demo", {"segmentation": {"flagged": "drop"}})
    with pytest.raises(GlioradInputError, match=r"segmentation.qc.large: .*greater than or equal "
                                                 r"to 1 \(got 0.5\)"):
        load_run_config("demo", {"segmentation": {"qc": {"large": 0.5}}})
    with pytest.raises(GlioradInputError, match=r"segmentation.qc.quantile: .*\(got 0.5\)"):
        load_run_config("demo", {"segmentation": {"qc": {"quantile": 0.5}}})
    cohort, masks = flagged_cohort
    with pytest.raises(GlioradInputError, match=r"segmentation.flagged 'keep' is not valid"):
        handle_flagged(check_masks(masks, ["P001"], volume_bounds([])), masks, tmp_path / "f",
                       cohort, "keep")


def test_settings_dumps_unchanged_at_default():
    from gliorad.workflow import build_stages

    assert not {"qc", "flagged"} & set(SegmentationConfig().model_dump(mode="json"))
    demo = load_run_config("demo")
    assert not {"qc", "flagged"} & set(demo.resolved()["segmentation"])
    ref = json.loads((Path(__file__).parent / "reference" / "run_presets" / "demo.json")
                     .read_text(encoding="utf-8"))
    seg_ref = ref.get("segmentation", ref)
    if isinstance(seg_ref, dict) and "sequences" in seg_ref:
        assert demo.resolved()["segmentation"] == seg_ref
    changed = load_run_config("demo", {"segmentation": {"flagged": "exclude",
                                                        "qc": {"small": 0.25}}})
    seg = next(s for s in build_stages(changed) if s.name == "segment").settings["segmentation"]
    assert seg["flagged"] == "exclude" and seg["qc"] == {"quantile": 0.01, "small": 0.25,
                                                         "large": 2.0}
    # a model folder's config (the dump) validates back to the same settings
    assert SegmentationConfig.model_validate(changed.segmentation.model_dump()) == changed.segmentation


# ------------------------------------------------------------------------------ in a run
RUN = {
    "preset": "demo",
    "run": {"seed": 0, "n_jobs": 1},
    "synthetic": {"n_patients": 16, "spacing": 4.0, "hgg_fraction": 0.4},
    "radiomics": {"sequences": ["t1ce"]},
    "grading": {"enabled": False},
    "deep2d": {"enabled": False},
    "report": {"enabled": False},
}


def _fake_segmentation(monkeypatch, empty: str, huge: str, seen: dict):
    """The segment stage's training and prediction replaced: every mask is the manual one,
    ``empty``'s has no voxel, ``huge``'s fills the image."""
    import gliorad.segmentation as seg

    def train(cohort, model_dir, cfg, ids=None, val_ids=None, progress=False):
        seen["train_ids"] = list(ids)
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        (Path(model_dir) / "fake.txt").write_text("fake")

    def predict(cohort, model, mask_dir, progress=False, **kw):
        out = Path(mask_dir)
        out.mkdir(parents=True, exist_ok=True)
        for pid in cohort.ids:
            img = sitk.ReadImage(str(cohort.patients[pid].seg))
            arr = (sitk.GetArrayFromImage(img) > 0).astype(np.uint8)
            arr = np.zeros_like(arr) if pid == empty else np.ones_like(arr) if pid == huge else arr
            new = sitk.GetImageFromArray(arr)
            new.CopyInformation(img)
            sitk.WriteImage(new, str(out / f"{pid}.nii.gz"))
        (out / "prediction.json").write_text(json.dumps({"label_mode": "wt", "patients": {}}))

    monkeypatch.setattr(seg, "train_segmentation", train)
    monkeypatch.setattr(seg, "load_model", lambda path: None)
    monkeypatch.setattr(seg, "predict_cohort", predict)


def test_run_flags_replaces_or_excludes_and_warns(tmp_path, monkeypatch):
    import yaml

    from gliorad.report import ReportInputs, build_report

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(RUN))
    ws = tmp_path / "ws"
    # the synthetic cohort first, to pick the patients whose masks go wrong
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws), "--until", "split"])
    assert res.exit_code == 0, res.output
    ids = sorted(p.name for p in (ws / "cohort" / "cohort").iterdir() if p.is_dir())
    empty, huge = ids[0], ids[1]
    seen: dict = {}
    _fake_segmentation(monkeypatch, empty, huge, seen)

    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws), "--until", "radiomics"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(ws / "segment" / "qc.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert list(qc.columns) == ["volume_ml", "components", "largest_fraction", "fold_agreement",
                                "flag", "reason",
                                "action"]
    assert qc.loc[empty, "flag"] == "empty" and qc.loc[huge, "flag"] == "large"
    assert (qc.drop(index=[empty, huge])["flag"] == "ok").all()
    assert set(qc.loc[[empty, huge], "action"]) == {"replaced_by_manual"}
    summary = json.loads((ws / "segment" / "qc.json").read_text(encoding="utf-8"))
    assert summary["counts"] == {"ok": len(ids) - 2, "empty": 1, "small": 0, "large": 1,
                                 "disagree": 0}
    assert summary["bounds"]["n_reference"] == len(seen["train_ids"])
    # the evaluation is of the raw predictions: Dice 0 for the empty one, not 1
    ev = pd.read_csv(ws / "segment" / "evaluation" / "evaluation.csv", dtype={"patient_id": str})
    assert ev.set_index("patient_id").loc[empty, "dice"] == 0.0
    assert (ws / "segment" / "flagged" / f"{empty}.nii.gz").is_file()
    prov = json.loads((ws / "segment" / "masks" / "prediction.json").read_text(encoding="utf-8"))
    assert prov["patients"][empty]["qc"]["action"] == "replaced_by_manual"
    # downstream the replacement is used: the automatic-mask features are the manual ones
    auto = pd.read_csv(ws / "radiomics" / "radiomics_auto.csv", dtype={"patient_id": str})
    manual = pd.read_csv(ws / "radiomics" / "radiomics_manual.csv", dtype={"patient_id": str})
    assert set(auto["patient_id"]) == set(ids)
    cols = [c for c in auto.columns if c.startswith("t1ce_original_shape")]
    pd.testing.assert_frame_equal(auto.set_index("patient_id").loc[[empty], cols],
                                  manual.set_index("patient_id").loc[[empty], cols])
    assert re.search(rf"warning: segmentation: 2 of {len(ids)} automatic mask\(s\) failed the "
                     r"checks \(1 empty, 1 large; empty: no tumour voxel; small: below 0.5 x",
                     res.output)
    assert f"replaced by the manual mask (2): {empty} (empty), {huge} (large)" in res.output
    log = (ws / "pipeline.log").read_text(encoding="utf-8")
    assert f"the automatic mask of {empty} is empty (no tumour voxel); replaced by manual" in log

    # exclude: the segment stage reruns (its settings changed); the two are left out downstream
    res = runner.invoke(app, ["run", str(cfg), "--workspace", str(ws), "--until", "radiomics",
                              "--set", "segmentation.flagged=exclude"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(ws / "segment" / "qc.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert set(qc.loc[[empty, huge], "action"]) == {"excluded"}
    assert not (ws / "segment" / "masks" / f"{empty}.nii.gz").exists()
    auto = pd.read_csv(ws / "radiomics" / "radiomics_auto.csv", dtype={"patient_id": str})
    assert set(auto["patient_id"]) == set(ids) - {empty, huge}
    assert re.search(rf"warning: segmentation: excluded from what reads the automatic masks "
                     rf"\(radiomics, CNNs, grading, survival\) \(2\): {empty} \(empty\), "
                     rf"{huge} \(large\)", res.output)

    # the report: counts and a table of the flagged masks; overlays of the raw predictions
    inp = ReportInputs(seg_evaluation=ws / "segment" / "evaluation", masks=ws / "segment" / "masks",
                       seg_qc=ws / "segment" / "qc.json", cohort_root=ws / "cohort" / "cohort")
    html = build_report(inp, tmp_path / "r").read_text(encoding="utf-8")
    assert "<h3>Mask checks</h3>" in html
    assert re.search(rf"2 of {len(ids)} automatic masks failed the checks \(1 empty, 0 small, "
                     r"1 large\)", html)
    assert "segmentation.flagged: exclude" in html and f"worst {empty} (Dice 0.000)" in html
    assert re.search(rf"<td>{huge}</td><td[^>]*>[\d.]+</td><td>large</td>", html)
    assert "patient excluded (no automatic mask downstream)" in html


def test_report_says_every_mask_passed(tmp_path):
    from gliorad.report.sections.segmentation import _qc_html

    b = volume_bounds([1.0] * MIN_REFERENCE)
    table = pd.DataFrame([{"patient_id": "A", "volume_ml": 1.0, "components": 1,
                           "largest_fraction": 1.0, "flag": "ok", "reason": "", "action": "kept"}])
    html = _qc_html(qc_summary(table, b, "manual"))
    assert "Every automatic mask passed the checks (1 masks; rule: empty: no tumour voxel" in html


def test_deep_stages_leave_out_patients_without_a_mask(tmp_path):
    from gliorad.stages.deep import _with_tumour

    ws = tmp_path / "ws"
    (ws / "split").mkdir(parents=True)
    pd.DataFrame({"patient_id": ["A", "B", "C"]}).to_csv(ws / "split" / "split.csv", index=False)
    arr = np.zeros((4, 4, 4), np.uint8)
    _write_mask(arr, ws / "segment" / "masks" / "A.nii.gz")
    arr[1, 1, 1] = 1
    _write_mask(arr, ws / "segment" / "masks" / "B.nii.gz")
    ctx = SimpleNamespace(input_dir=lambda name: ws / name)
    sp, masks = _with_tumour(ctx, SimpleNamespace(segmentation=object()), tmp_path / "ex.json")
    assert list(sp["patient_id"]) == ["B"] and masks == ws / "segment" / "masks"
    assert json.loads((tmp_path / "ex.json").read_text()) == {"empty_automatic_mask": ["A"],
                                                              "no_automatic_mask": ["C"]}
