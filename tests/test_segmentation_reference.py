"""Dice and HD95 against the BraTS challenge's own evaluation package, as the statistics are checked
against R.

The reference is ``brats-evaluation`` (PyPI; github.com/BraTS/BraTS_evaluation, "Official package
to compute metrics for the BraTS segmentation challenges"), 0.0.10, which runs panoptica 2.1.7 with
the challenge's bundled ``gli`` config and parses its output into the leaderboard columns
``global_dsc_<region>`` / ``global_hd95_<region>``. (``brats`` on PyPI is the BraTS Orchestrator,
which runs the challenge's algorithms in containers and computes no metric.) Both pin numpy < 2.3,
so they are not in the ``dev`` extra (pip would downgrade numpy); where they are installed
(``pip install --no-deps brats-evaluation==0.0.10 panoptica==2.1.7`` plus
``"connected-components-3d<4" scikit-image "plotly<6"``) these tests run, else they skip.

Each case is a pair of BraTS 2018 label volumes ({0, 1, 2, 4}); the reference call, per case:

    # ref/pred relabelled 4 -> 3 (the gli config's labels; its label 4 is a resection cavity)
    # and written as NIfTI with the case's spacing, then, as `brats-evaluate` and
    # `brats-parse-metrics seg` do:
    evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    result = evaluate_single_exam(pred_path, ref_path, "case", evaluator)
    json.dump({"metrics": [result], "missings": []}, open(js, "w"))  # numpy scalars as numbers
    parse_seg_results(js, csv)   # -> global_dsc_wt, global_hd95_wt, ... (inf -> 373)

What agrees and what differs (see the docstring of gliorad.segmentation.evaluate):
- Dice: equal to 1e-12 whenever a mask is non-empty; both empty: gliorad 1, the package NaN.
- HD95: the surfaces and distances are the same; gliorad's default is the larger of the two
  directed 95th percentiles, the package's the 95th percentile of both directions pooled, which
  is ``hd95(..., pooled=True)``. The package's global HD95 ignores the voxel spacing (voxels, not
  mm), so it equals gliorad's pooled HD95 at unit spacing (and in mm on 1 mm grids).
- One region empty, or no overlap: the package 373 (inf); gliorad None (one empty) or the measured
  distance (no overlap). Both empty: the package NaN, gliorad 0.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from gliorad.cohort import discover_cohort
from gliorad.segmentation.config import default_regions
from gliorad.segmentation.evaluate import dice_score, evaluate_masks, hd95

brats_evaluation = pytest.importorskip("brats_evaluation")
panoptica = pytest.importorskip("panoptica")

from panoptica.metrics import Metric
from panoptica.metrics._surface_distances import _surface_distance_pair

REGIONS = default_regions("brats2018")  # WT [1, 2, 4], TC [1, 4], ET [4]
PENALTY = 373  # brats_evaluation.metrics_parser: an infinite global HD95 is written as 373


@pytest.fixture(scope="module")
def evaluator():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return panoptica.Panoptica_Evaluator.load_from_config(str(brats_evaluation.config_path("gli")))


def brats_reference(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], evaluator,
                    folder: Path) -> dict[str, tuple[float, float]]:
    """(global Dice, global HD95) per region WT/TC/ET from the package, as its CLI reports them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in (("pred", pred), ("ref", ref)):
        relabelled = np.where(arr == 4, 3, arr).astype(np.uint8)
        img = sitk.GetImageFromArray(relabelled)
        img.SetSpacing(tuple(float(s) for s in reversed(spacing)))  # (x, y, z)
        paths.append(str(folder / f"{name}.nii.gz"))
        sitk.WriteImage(img, paths[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = brats_evaluation.evaluate_single_exam(paths[0], paths[1], "case", evaluator)
    assert "error" not in result, result  # evaluate_single_exam returns errors instead of raising
    js, csv = folder / "summary.json", folder / "parsed.csv"
    # numpy >= 2.3 returns np.int64 from count_nonzero (panoptica's global_bin_volume_*), which
    # the package's own json.dump (brats-evaluate) cannot write: numpy scalars as Python numbers
    js.write_text(json.dumps({"metrics": [result], "missings": []}, default=lambda o: o.item()),
                  encoding="utf-8")
    brats_evaluation.parse_seg_results(str(js), str(csv))
    import pandas as pd

    row = pd.read_csv(csv).iloc[0]
    return {name: (float(row[f"global_dsc_{name.lower()}"]), float(row[f"global_hd95_{name.lower()}"]))
            for name in REGIONS}


def cropped(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box plus one voxel (within the volume): the same
    surfaces and distances (a face of the volume stays a face), far less distance transform."""
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(p | t))
    return p[box], t[box]


def directed_and_pooled(p: np.ndarray, t: np.ndarray, spacing) -> tuple[float, float]:
    """From panoptica's own surface distances (mm): max of the directed 95th percentiles, and the
    95th percentile pooled (its HD95)."""
    d_ref, d_pred = _surface_distance_pair(t, p, voxelspacing=spacing)
    return (max(np.percentile(d_ref, 95), np.percentile(d_pred, 95)),
            float(np.percentile(np.hstack((d_ref, d_pred)), 95)))


def check_case(pred, ref, spacing, evaluator, folder) -> dict[str, dict]:
    """Compare every region of one case; returns the numbers (for the messages and callers)."""
    reference = brats_reference(pred, ref, spacing, evaluator, folder)
    out = {}
    for name, labels in REGIONS.items():
        p, t = np.isin(pred, labels), np.isin(ref, labels)
        ref_dsc, ref_hd = reference[name]
        dsc, directed, pooled = dice_score(p, t), hd95(p, t, spacing), hd95(p, t, spacing, pooled=True)
        out[name] = {"dice": dsc, "brats_dice": ref_dsc, "hd95": directed, "hd95_pooled": pooled,
                     "brats_hd95": ref_hd}
        msg = f"{name}: {out[name]}"
        if not p.any() and not t.any():
            assert math.isnan(ref_dsc) and math.isnan(ref_hd), msg
            assert (dsc, directed, pooled) == (1.0, 0.0, 0.0), msg
            continue
        assert dsc == pytest.approx(ref_dsc, rel=1e-12, abs=1e-12), msg
        if not p.any() or not t.any():
            assert ref_hd == PENALTY and directed is None and pooled is None, msg
            continue
        # panoptica's surface distances in mm: gliorad's two reductions of them
        pc, tc = cropped(p, t)
        pan_directed, pan_pooled = directed_and_pooled(pc, tc, spacing)
        assert directed == pytest.approx(pan_directed, rel=1e-6), msg
        assert pooled == pytest.approx(pan_pooled, rel=1e-6), msg
        # panoptica's public metric (its HD95 at the given spacing) is the pooled one
        assert pooled == pytest.approx(Metric.HD95(tc, pc, voxelspacing=spacing), rel=1e-6), msg
        assert pooled <= directed + 1e-6, msg
        if not (p & t).any():  # no overlap: the package's zero-TP edge case, not a distance
            assert ref_dsc == 0.0 and ref_hd == PENALTY and directed > 0, msg
            continue
        # the package's global HD95 is gliorad's pooled HD95 at unit spacing (voxels)
        assert ref_hd == pytest.approx(hd95(p, t, (1.0,) * p.ndim, pooled=True), rel=1e-6), msg
        if all(s == 1.0 for s in spacing):
            assert ref_hd == pytest.approx(pooled, rel=1e-6), msg
    return out


# ------------------------------------------------------------------------------ synthetic cases
def tumour(shape, centre, radii, seed: int, labels=(2, 4, 1)) -> np.ndarray:
    """A BraTS-like tumour: oedema (2) around an enhancing rim (4) around necrosis (1), with a
    smooth seeded boundary; ``centre``/``radii`` in voxels, numpy axis order."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=float)
    r = np.sqrt(sum(((g - c) / rad) ** 2 for g, c, rad in zip(grid, centre, radii, strict=True)))
    r = r + 0.15 * ndi.gaussian_filter(rng.normal(size=shape), 2.0) / 0.1
    out = np.zeros(shape, np.uint8)
    out[r < 1.0] = labels[0]
    out[r < 0.6] = labels[1]
    out[r < 0.35] = labels[2]
    return out


def perturbed(ref: np.ndarray, seed: int, shift=(1, 0, -1)) -> np.ndarray:
    """A plausible automatic mask: shifted, enhancing rim partly eroded, boundary voxels flipped."""
    rng = np.random.default_rng(seed)
    pred = np.roll(ref, shift, axis=(0, 1, 2))
    et = pred == 4
    rim = et & ~ndi.binary_erosion(et)
    pred[rim & (rng.random(ref.shape) < 0.4)] = 1
    wt = pred > 0
    outer = ndi.binary_dilation(wt) & ~wt
    pred[outer & (rng.random(ref.shape) < 0.3)] = 2
    return pred


def case_two_tumours():
    """48^3 at 1 mm: a main tumour and a small satellite; the prediction misses the satellite and
    adds a false-positive blob (multi-component masks on both sides)."""
    shape = (48, 48, 48)
    ref = tumour(shape, (22, 24, 22), (11, 13, 12), seed=1)
    sat = tumour(shape, (40, 40, 40), (4, 4, 4), seed=2)
    ref[sat > 0] = sat[sat > 0]
    pred = perturbed(np.where(sat > 0, 0, ref), seed=3)
    pred[4:9, 38:43, 4:8] = 2
    return pred, ref, (1.0, 1.0, 1.0)


def case_anisotropic():
    """16 x 48 x 48 at 3 x 0.9 x 0.9 mm (a thick-slice stack): one tumour, the prediction one slice
    and two rows off."""
    shape = (16, 48, 48)
    ref = tumour(shape, (8, 24, 24), (4, 14, 13), seed=4)
    return perturbed(ref, seed=5, shift=(1, 2, 0)), ref, (3.0, 0.9, 0.9)


def case_at_the_edge():
    """40^3 at 1 mm: a tumour cut by the volume's faces (edge voxels are surface in both)."""
    shape = (40, 40, 40)
    ref = tumour(shape, (3, 20, 36), (10, 10, 10), seed=6)
    return perturbed(ref, seed=7, shift=(0, 1, 0)), ref, (1.0, 1.0, 1.0)


def case_missed_satellite():
    """40^3 at 1 mm: the prediction is exactly the main tumour and misses a far satellite, the
    case where the directed and the pooled HD95 part most."""
    shape = (40, 40, 40)
    ref = tumour(shape, (14, 14, 14), (8, 8, 8), seed=8)
    pred = ref.copy()
    ref[30:34, 30:34, 30:34] = 2
    return pred, ref, (1.0, 1.0, 1.0)


def case_et_elsewhere():
    """40^3 at 1 mm: whole tumour and core overlap, the enhancing tumour is predicted in the wrong
    place (no overlap), and there is no necrosis in the prediction."""
    shape = (40, 40, 40)
    ref = tumour(shape, (20, 20, 20), (12, 12, 12), seed=9)
    pred = np.where(ref > 0, 2, 0).astype(np.uint8)
    pred[8:11, 10:13, 20:24] = 4
    return pred, ref, (1.0, 1.0, 1.0)


CASES = {"two_tumours": case_two_tumours, "anisotropic": case_anisotropic,
         "at_the_edge": case_at_the_edge, "missed_satellite": case_missed_satellite,
         "et_elsewhere": case_et_elsewhere}


@pytest.mark.parametrize("name", list(CASES))
def test_dice_and_hd95_against_brats_evaluation(name, evaluator, tmp_path):
    pred, ref, spacing = CASES[name]()
    out = check_case(pred, ref, spacing, evaluator, tmp_path / name)
    for region in REGIONS:  # every case has both masks non-empty in every region but ET elsewhere
        assert out[region]["hd95"] is not None, out


def test_where_the_definitions_part(evaluator, tmp_path):
    """The numbers behind the docstring: a missed satellite (56 of the manual mask's 720 surface
    voxels, 4% of both surfaces) moves the directed HD95 (22.5 mm) and not the pooled one (0),
    which is the package's; with 3 mm slices the package reports voxels; a misplaced enhancing
    tumour gets 373 there and a distance (18.4 mm) here."""
    pred, ref, spacing = case_missed_satellite()
    wt = check_case(pred, ref, spacing, evaluator, tmp_path / "sat")["WT"]
    assert wt["brats_hd95"] == wt["hd95_pooled"] == 0.0 and wt["hd95"] > 15.0

    pred, ref, spacing = case_anisotropic()
    wt = check_case(pred, ref, spacing, evaluator, tmp_path / "aniso")["WT"]
    assert wt["brats_hd95"] < wt["hd95_pooled"]  # voxels vs mm (3 mm slices)

    pred, ref, spacing = case_et_elsewhere()
    out = check_case(pred, ref, spacing, evaluator, tmp_path / "et")
    assert out["ET"]["brats_hd95"] == PENALTY and 5.0 < out["ET"]["hd95"] < 30.0
    assert out["ET"]["dice"] == out["ET"]["brats_dice"] == 0.0


@pytest.mark.parametrize("which", ["empty_prediction", "empty_reference", "both_empty"])
def test_empty_masks_against_brats_evaluation(which, evaluator, tmp_path):
    """Whole volumes empty: Dice 0 and the package's 373 vs gliorad's undefined HD95 (one empty);
    NaN there vs Dice 1 / HD95 0 here (both empty)."""
    _, ref, spacing = case_two_tumours()
    empty = np.zeros_like(ref)
    pred, ref = {"empty_prediction": (empty, ref), "empty_reference": (ref, empty),
                 "both_empty": (empty, empty)}[which]
    out = check_case(pred, ref, spacing, evaluator, tmp_path / which)
    for region in REGIONS:
        if which == "both_empty":
            assert math.isnan(out[region]["brats_dice"]) and out[region]["dice"] == 1.0
        else:
            assert out[region]["brats_hd95"] == PENALTY and out[region]["hd95"] is None


def test_evaluate_masks_per_region_against_brats_evaluation(make_cohort, evaluator, tmp_path):
    """gliorad's cohort evaluation (files, WT/TC/ET from BraTS 2018 labels, spacing read from the
    NIfTI header) against the package on three patients: 1 mm, 3 mm slices, ET not predicted."""
    cases = {"P001": case_two_tumours(), "P002": case_anisotropic()}
    pred, ref, spacing = case_et_elsewhere()
    cases["P003"] = (np.where(pred == 4, 2, pred).astype(np.uint8), ref, spacing)
    root = make_cohort(ids=tuple(cases))
    masks = tmp_path / "masks"
    masks.mkdir()
    for pid, (pred, ref, spacing) in cases.items():
        for arr, path in ((ref, root / pid / f"{pid}_seg.nii.gz"), (pred, masks / f"{pid}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(tuple(reversed(spacing)))
            sitk.WriteImage(img, str(path))
    ev = evaluate_masks(masks, discover_cohort(root), label_mode="regions")
    rows = {(r["patient_id"], r["region"]): r for r in ev.rows}
    for pid, (pred, ref, spacing) in cases.items():
        out = check_case(pred, ref, spacing, evaluator, tmp_path / pid)
        for region in REGIONS:
            row = rows[(pid, region)]
            assert row["dice"] == out[region]["dice"] == pytest.approx(out[region]["brats_dice"])
            assert row["hd95_mm"] == out[region]["hd95"]
    assert rows[("P003", "ET")]["note"] == "empty prediction"
    assert ev.summary["ET"]["hd95_undefined"]["patients"] == ["P003"]


# ------------------------------------------------------------------------------------ real case
@pytest.mark.realdata
@pytest.mark.slow
def test_real_brats_case_against_brats_evaluation(shared_data, evaluator, tmp_path):
    """A BraTS 2018 LGG case (240 x 240 x 155, 1 mm): its manual mask vs a seeded perturbation of
    it (shifted, enhancing rim eroded, boundary flipped, a false-positive blob)."""
    case = "Brats18_TCIA10_628_1"
    path = shared_data / "brats2018" / case / f"{case}_seg.nii.gz"
    if not path.is_file():
        pytest.skip("brats2018 sample absent")
    img = sitk.ReadImage(str(path))
    ref = sitk.GetArrayFromImage(img).astype(np.uint8)
    assert set(np.unique(ref)) <= {0, 1, 2, 4}
    pred = perturbed(ref, seed=11, shift=(2, -1, 1))
    pred[20:26, 40:46, 60:66] = 2
    spacing = tuple(reversed(img.GetSpacing()))
    assert spacing == (1.0, 1.0, 1.0)
    out = check_case(pred, ref, spacing, evaluator, tmp_path)
    for region in REGIONS:
        assert 0.3 < out[region]["dice"] < 0.99 and out[region]["hd95"] < 10.0, out
