"""Preprocessing: file matching, N4, registration, resampling, skull stripping, z-score, the
per-patient pipeline (atomic, skip-if-done, failures collected) and the CLI command.

Synthetic "raw" heads are built at test time from the MNI152 tissue maps of
:func:`gliorad.synthetic.load_atlas` (3 mm): brain tissue, a CSF rim, a dark skull and a bright
scalp, placed in the "scanner" by a known rigid transform and optionally sampled on thick slices.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from typer.testing import CliRunner

from gliorad.errors import GlioradInputError
from gliorad.preprocess import (
    STRIPPERS,
    PreprocessConfig,
    StripResult,
    atlas_strip,
    dice,
    find_raw_patients,
    isotropic_grid,
    load_sequence,
    make_config,
    match_files,
    n4_correct,
    preprocess,
    register,
    register_stripper,
    resample_to,
    run_patient,
    zscore,
)
from gliorad.preprocess.config import (
    N4Settings,
    RegistrationSettings,
    load_preprocess_config,
    with_overrides,
)
from gliorad.preprocess.inputs import default_patient_id
from gliorad.synthetic import COMPARTMENTS, CONTRASTS, load_atlas
from gliorad.validation import validate

SCALP = {"t1": 1.15, "t1ce": 1.15, "t2": 0.75, "flair": 0.65}
TCGA_NAMES = {
    "t1": "T1_AX_OtherEXampleTCIA_TCGA-XX-0001_Si_TCGA-XX-0001_T1_AX_SE_10_se2d1_t1.nii.gz",
    "t1ce": "MRHR_T1_AX_POST_GAD_OtherEXampleTCIA_TCGA-XX-0001_SE_13_se2d1r_t1c.nii.gz",
    "t2": "MRHR_T2_AX_OtherEXampleTCIA_TCGA-XX-0001_MRHR_T2_AX_SE_2_tse2d1_11_t2.nii.gz",
    "flair": "MRHR_FLAIR_AX_OtherEXampleTCIA_TCGA-XX-0001_SE_IR_5_tir2d1_21_fla.nii.gz",
}


# ------------------------------------------------------------------------------ synthetic heads
class Head:
    """Tissue maps of a synthetic head on a padded 3 mm MNI grid, and images rendered from them."""

    def __init__(self, spacing: float = 3.0):
        atlas = load_atlas(spacing)
        pad = math.ceil(24.0 / spacing)
        self.gm, self.wm, self.csf = (np.pad(getattr(atlas, k), pad) for k in ("gm", "wm", "csf"))
        self.brain = np.pad(atlas.mask, pad)
        self.depth_out = ndimage.distance_transform_edt(~self.brain) * spacing
        ref = atlas.reference
        d = np.asarray(ref.GetDirection()).reshape(3, 3)
        self.grid = sitk.Image([int(n) + 2 * pad for n in ref.GetSize()], sitk.sitkUInt8)
        self.grid.SetSpacing(ref.GetSpacing())
        self.grid.SetDirection(ref.GetDirection())
        self.grid.SetOrigin(tuple(np.asarray(ref.GetOrigin()) - d @ np.full(3, pad * spacing)))

    def render(self, seq: str, seed: int = 0) -> sitk.Image:
        con = dict(zip(COMPARTMENTS, CONTRASTS[seq]))
        d = self.depth_out
        img = con["csf"] * self.csf + con["gm"] * self.gm + con["wm"] * self.wm
        img = np.where(self.brain, img, 0.0)
        img += np.where((d > 0) & (d <= 3), con["csf"], 0.0)
        img += np.where((d > 3) & (d <= 8), 0.05, 0.0)
        img += np.where((d > 8) & (d <= 14), SCALP[seq], 0.0)
        rng = np.random.default_rng(seed)
        img = np.abs(img + rng.normal(0, 0.02, img.shape)) * 1000.0
        return self._image(img.astype(np.float32))

    def brain_image(self) -> sitk.Image:
        return self._image(self.brain.astype(np.float32))

    def _image(self, arr: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(self.grid)
        return out


@pytest.fixture(scope="module")
def head() -> Head:
    return Head(3.0)


def rigid(angles_deg=(0.0, 0.0, 0.0), shift=(0.0, 0.0, 0.0), centre=(0.0, 20.0, 10.0)):
    a = [math.radians(v) for v in angles_deg]
    return sitk.Euler3DTransform(centre, a[0], a[1], a[2], shift)


def place(img: sitk.Image, tx: sitk.Transform, grid: sitk.Image, nearest: bool = False):
    """The head as the scanner sees it: value at scanner point y is the head's value at tx(y)."""
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(img, grid, tx, interp, 0.0, sitk.sitkFloat32)


def thick_grid(grid: sitk.Image, in_plane: float, slice_mm: float) -> sitk.Image:
    """A grid over the same box with thick slices (like a 2D clinical acquisition)."""
    sp = np.array([in_plane, in_plane, slice_mm])
    old = np.asarray(grid.GetSpacing())
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    size = [max(2, round(n * s / t)) for n, s, t in zip(grid.GetSize(), old, sp)]
    out = sitk.Image(size, sitk.sitkUInt8)
    out.SetSpacing(tuple(sp))
    out.SetDirection(grid.GetDirection())
    out.SetOrigin(tuple(np.asarray(grid.GetOrigin()) - d @ (old / 2) + d @ (sp / 2)))
    return out


def write_raw_patient(folder: Path, head: Head, seed: int = 0, names=None) -> dict:
    """A raw patient: T1/T1-Gd in one frame, T2 and FLAIR moved (the patient moved) and on thick
    slices; returns the truth (brain mask in the T1-Gd frame, the T2 transform)."""
    names = names or TCGA_NAMES
    folder.mkdir(parents=True, exist_ok=True)
    frame = rigid((4.0, -3.0, 5.0), (3.0, -4.0, 2.0))
    moved = sitk.CompositeTransform([frame, rigid((-6.0, 0.0, 4.0), (5.0, 3.0, -4.0))])
    thick = thick_grid(head.grid, 3.0, 5.0)
    for j, seq in enumerate(("t1", "t1ce", "t2", "flair")):
        if seq in names:
            tx, grid = (frame, head.grid) if seq in ("t1", "t1ce") else (moved, thick)
            img = sitk.Cast(place(head.render(seq, seed + j), tx, grid), sitk.sitkInt16)
            sitk.WriteImage(img, str(folder / names[seq]))
    truth = sitk.DICOMOrient(place(head.brain_image(), frame, head.grid) > 0.5, "LPS")
    return {"brain": sitk.GetArrayFromImage(truth).astype(bool)}  # outputs are LPS-oriented


FAST = {"spacing": 3.0, "n4": {"shrink_mm": 9.0}, "registration": {"working_spacing": 3.0, "shrink_factors": [2, 1],
                                         "smoothing_mm": [3.0, 0.0]},
        "atlas": {"working_spacing": 4.0, "bspline": False}}


def fast_config(**over) -> PreprocessConfig:
    return with_overrides(make_config(**FAST), **over)


# ---------------------------------------------------------------------------- matching raw files
def _touch(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")
    return folder


def test_default_patterns_match_tcga_names(tmp_path):
    folder = _touch(tmp_path / "TCGA-XX-0001" / "raw", [*TCGA_NAMES.values(), "notes.txt"])
    files = match_files(folder, PreprocessConfig())
    assert {k: v.name for k, v in files.items()} == TCGA_NAMES
    assert default_patient_id(folder) == "TCGA-XX-0001"
    assert default_patient_id(tmp_path / "TCGA-XX-0001") == "TCGA-XX-0001"


@pytest.mark.parametrize("suffixes", [("_t1", "_t1ce", "_t2", "_flair"),
                                      ("-t1n", "-t1c", "-t2w", "-t2f"),
                                      ("_T1", "_T1GD", "_T2", "_FLAIR")])
def test_default_patterns_match_brats_names_any_case(tmp_path, suffixes):
    names = [f"P1{s}.nii.gz" for s in suffixes] + ["P1_seg.nii.gz"]
    files = match_files(_touch(tmp_path / "P1", names), PreprocessConfig())
    assert [files[s].name for s in ("t1", "t1ce", "t2", "flair")] == names[:4]


def test_ambiguous_match_lists_candidates(tmp_path):
    folder = _touch(tmp_path / "p", [*TCGA_NAMES.values(), "second_post_gad_t1c.nii.gz"])
    with pytest.raises(GlioradInputError, match=r"ambiguous t1ce image: 2 files match .*"
                       r"MRHR_T1_AX_POST_GAD.*t1c\.nii\.gz, second_post_gad_t1c\.nii\.gz"):
        match_files(folder, PreprocessConfig())


def test_missing_sequence_names_patterns_and_files(tmp_path):
    folder = _touch(tmp_path / "p", [n for s, n in TCGA_NAMES.items() if s != "flair"])
    with pytest.raises(GlioradInputError, match=r"missing flair image: no file matches patterns "
                       r"\['\*fla', .*\(files: .*t1c\.nii\.gz"):
        match_files(folder, PreprocessConfig())


def test_file_claimed_by_two_sequences_is_an_error(tmp_path):
    folder = _touch(tmp_path / "p", ["a_t1.nii.gz", "b_t1c.nii.gz"])
    cfg = make_config(sequences=["t1", "t1ce"], patterns={"t1ce": ["*t1*"]})
    with pytest.raises(GlioradInputError, match=r"a_t1\.nii\.gz: file matches the patterns of "
                       r"several sequences \(t1, t1ce\)"):
        match_files(folder, cfg)


def test_pattern_override_regex_and_exclusion(tmp_path):
    folder = _touch(tmp_path / "p", ["scan_T1_gado.nrrd", "scan_T1.nrrd", "scan_T1_gado_old.nrrd"])
    cfg = make_config(sequences=["t1", "t1ce"], patterns={"t1ce": ["re:gado", "!*old"]})
    files = match_files(folder, cfg)
    assert files["t1ce"].name == "scan_T1_gado.nrrd" and files["t1"].name == "scan_T1.nrrd"
    with pytest.raises(GlioradInputError, match=r"preprocess.patterns.t1ce: pattern 're:\(' is not "
                       "a valid regular expression"):
        match_files(folder, make_config(sequences=["t1", "t1ce"], patterns={"t1ce": ["re:("]}))
    with pytest.raises(GlioradInputError, match=r"has no positive pattern"):
        match_files(folder, make_config(sequences=["t1", "t1ce"], patterns={"t1ce": ["!*x"]}))


def test_layouts_patient_cohort_folders(tmp_path, make_cohort):
    single = _touch(tmp_path / "X1" / "raw", TCGA_NAMES.values())
    layout, pats = find_raw_patients(single, PreprocessConfig())
    assert layout == "patient" and pats[0].id == "X1" and not pats[0].problems
    assert find_raw_patients(single, PreprocessConfig(), patient_id="abc")[1][0].id == "abc"
    brats = make_cohort(ids=("B1", "B2"), naming="brats2023")
    layout, pats = find_raw_patients(brats, PreprocessConfig())
    assert layout == "cohort" and [p.id for p in pats] == ["B1", "B2"]
    assert set(pats[0].files) == {"t1", "t1ce", "t2", "flair", "seg"}
    folders = tmp_path / "many"
    _touch(folders / "A", TCGA_NAMES.values())
    _touch(folders / "B", list(TCGA_NAMES.values())[:3])
    layout, pats = find_raw_patients(folders, PreprocessConfig())
    assert layout == "folders" and [p.id for p in pats] == ["A", "B"]
    assert not pats[0].problems and "patient B:" in pats[1].problems[0]
    with pytest.raises(GlioradInputError, match=r"--patient-id 'x' applies to a single-patient "
                       "folder, but .*many holds no image files"):
        find_raw_patients(folders, PreprocessConfig(), patient_id="x")
    with pytest.raises(GlioradInputError, match=r"nowhere: raw folder not found"):
        find_raw_patients(tmp_path / "nowhere", PreprocessConfig())
    with pytest.raises(GlioradInputError, match=r"no patients found"):
        find_raw_patients(_touch(tmp_path / "empty" / "sub", []).parent, PreprocessConfig())


# ------------------------------------------------------------------------------------- settings
def test_config_errors_name_the_key_and_choices(tmp_path):
    with pytest.raises(GlioradInputError, match=r"preprocess.colour: Extra inputs are not permitted"):
        make_config(colour="red")
    with pytest.raises(GlioradInputError, match=r"preprocess.steps.n5: Extra inputs"):
        make_config(steps={"n5": False})
    with pytest.raises(GlioradInputError, match=r"reference 'dwi' is not one of the sequences"):
        make_config(reference="dwi")
    with pytest.raises(GlioradInputError, match=r"registration.transform: Input should be 'rigid' "
                       "or 'affine'"):
        make_config(registration={"transform": "elastic"})
    with pytest.raises(GlioradInputError, match=r"preset 'nnunet' is not valid; expected one of: "
                       "raw, brats"):
        make_config("nnunet")
    yml = tmp_path / "c.yaml"
    yml.write_text("preprocess:\n  preset: brats\n  spacing: 2.0\ncohort:\n  naming: brats2018\n")
    cfg, cohort = load_preprocess_config(yml)
    assert not cfg.steps.n4 and not cfg.steps.skull_strip and cfg.spacing == 2.0
    assert cohort.naming == "brats2018"
    yml.write_text("preprocess:\n  stripper: atlas\n  atlas: {bspline: maybe}\n")
    with pytest.raises(GlioradInputError, match=r"c.yaml: preprocess.atlas.bspline: Input should "
                       "be a valid boolean"):
        load_preprocess_config(yml)


def test_unknown_stripper_lists_registered_names(tmp_path):
    folder = _touch(tmp_path / "p", TCGA_NAMES.values())
    with pytest.raises(GlioradInputError, match=r"stripper 'hdbet' is not valid; expected one of: "
                       "atlas, nonzero"):
        preprocess(folder, tmp_path / "out", make_config(stripper="hdbet"))


# ----------------------------------------------------------------------------------- numerics
def test_isotropic_grid_keeps_box_and_centre():
    img = sitk.Image([256, 224, 26], sitk.sitkFloat32)
    img.SetSpacing((0.898, 0.898, 5.5))
    img.SetDirection(tuple(sitk.Euler3DTransform((0, 0, 0), 0.3, -0.1, 0.05).GetMatrix()))
    img.SetOrigin((-110.0, -90.0, -40.0))
    for spacing in (1.0, 2.0, 3.0):
        grid = isotropic_grid(img, spacing)
        assert grid.GetSpacing() == (spacing,) * 3
        assert grid.GetDirection() == img.GetDirection()
        ext_in = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
        ext_out = np.asarray(grid.GetSize()) * spacing
        assert np.all(np.abs(ext_out - ext_in) <= spacing / 2 + 1e-9)
        c_in = img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()])
        c_out = grid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in grid.GetSize()])
        # centres agree up to the half-voxel the rounding of the size moves the far edge
        assert np.linalg.norm(np.subtract(c_in, c_out)) <= math.sqrt(3) * spacing / 2 + 1e-6


def test_resampling_preserves_a_linear_ramp():
    img = sitk.GetImageFromArray(np.tile(np.arange(20, dtype=np.float32)[:, None, None],
                                         (1, 12, 10)))
    img.SetSpacing((2.0, 2.0, 4.0))
    out = resample_to(img, isotropic_grid(img, 1.0))
    arr = sitk.GetArrayFromImage(out)
    assert out.GetSize() == (20, 24, 80)
    # ramp in physical z: value = (z_mm - origin) / 4 inside the sampled range
    z_mm = np.arange(80) * 1.0 + 0.5 - 2.0
    inside = (z_mm >= 0) & (z_mm <= 76)
    np.testing.assert_allclose(arr[inside, 5, 5], z_mm[inside] / 4.0, atol=1e-5)


def test_zscore_against_scipy_and_properties():
    rng = np.random.default_rng(3)
    arr = rng.gamma(3.0, 100.0, (9, 11, 13)).astype(np.float32)
    mask = rng.random(arr.shape) > 0.4
    out = zscore(arr, mask)
    # reference: scipy.stats.zscore(arr[mask])  (population SD, ddof=0)
    from scipy.stats import zscore as sp_zscore

    np.testing.assert_allclose(out[mask], sp_zscore(arr[mask].astype(np.float64)), atol=1e-5)
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1) < 1e-5
    assert np.all(out[~mask] == 0) and out.dtype == np.float32
    with pytest.raises(GlioradInputError, match=r"z-score: intensities inside the brain are "
                       r"constant \(5\)"):
        zscore(np.full(arr.shape, 5.0), mask)
    with pytest.raises(GlioradInputError, match=r"z-score: the brain mask is empty"):
        zscore(arr, np.zeros(arr.shape, bool))


def _cov(arr, region):
    v = arr[region]
    return float(v.std() / v.mean())


def test_n4_reduces_bias_inside_white_matter(head):
    img = head.render("t1", seed=1)
    arr = sitk.GetArrayFromImage(img)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in arr.shape], indexing="ij")
    bias = np.exp(0.25 * x + 0.2 * z - 0.15 * y * y).astype(np.float32)
    biased = sitk.GetImageFromArray(arr * bias)
    biased.CopyInformation(img)
    wm = (head.wm > 0.9) & head.brain
    corrected, info = n4_correct(biased, N4Settings())
    before = _cov(sitk.GetArrayFromImage(biased), wm)
    after = _cov(sitk.GetArrayFromImage(corrected), wm)
    truth = _cov(arr, wm)
    assert after < 0.6 * before, (before, after, truth)
    assert info["bias_max"] > info["bias_min"] and info["iterations_run"] >= 1


def test_registration_recovers_rigid_transform(head):
    """Target registration error over brain points < 2 mm for a 10-degree, 11 mm move of a T2
    image on 3 x 3 x 5 mm slices registered to a T1-Gd image."""
    fixed = head.render("t1ce", seed=2)
    truth = rigid((7.0, -5.0, 4.0), (6.0, -7.0, 5.0))
    moving = place(head.render("t2", seed=3), truth, thick_grid(head.grid, 3.0, 5.0))
    rset = RegistrationSettings(working_spacing=3.0, shrink_factors=[2, 1], smoothing_mm=[3, 0])
    moving_iso = resample_to(moving, isotropic_grid(moving, 3.0))
    tx, info = register(fixed, moving_iso, rset)
    inverse = truth.GetInverse()
    pts = np.argwhere(head.brain)[::7]
    err = [np.linalg.norm(np.subtract(
        tx.TransformPoint(p), inverse.TransformPoint(p)))
        for p in (fixed.TransformIndexToPhysicalPoint([int(i) for i in q[::-1]]) for q in pts)]
    assert np.mean(err) < 2.0 and np.max(err) < 3.0, (np.mean(err), np.max(err))
    assert info["final_metric"] < info["initial_metric"]
    # same input, same answer (one-thread registration with a fixed sampling seed)
    tx2, _ = register(fixed, moving_iso, rset)
    assert tx2.GetParameters() == tx.GetParameters()


def test_atlas_stripper_on_synthetic_head(head):
    tx = rigid((6.0, 4.0, -5.0), (-5.0, 6.0, 4.0))
    images = {s: place(head.render(s, seed=4 + i), tx, head.grid)
              for i, s in enumerate(("t1", "t1ce"))}
    truth = sitk.GetArrayFromImage(place(head.brain_image(), tx, head.grid)) > 0.5
    cfg = fast_config(sequences=["t1", "t1ce"])
    res = atlas_strip(images, cfg)
    mask = sitk.GetArrayFromImage(res.mask).astype(bool)
    assert dice(mask, truth) > 0.85, dice(mask, truth)
    assert res.info["sequence"] == "t1" and res.info["final_metric"] < res.info["initial_metric"]


def test_dice_reference_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0 and dice(~a & a, ~a & a) == 1.0
    with pytest.raises(GlioradInputError, match=r"dice: shapes"):
        dice(a, np.zeros((3, 3), bool))


# ------------------------------------------------------------------------------ whole pipeline
@pytest.fixture(scope="module")
def raw_patient(tmp_path_factory, head):
    root = tmp_path_factory.mktemp("raw") / "TCGA-XX-0001" / "raw"
    truth = write_raw_patient(root, head)
    return root, truth


@pytest.fixture(scope="module")
def processed(tmp_path_factory, raw_patient):
    root, truth = raw_patient
    out = tmp_path_factory.mktemp("out")
    result = preprocess(root, out, fast_config())
    return out, result, truth


def test_pipeline_outputs_validate_and_qc(processed):
    out, result, truth = processed
    assert result.ok and result.done == ["TCGA-XX-0001"], result.failed
    folder = out / "TCGA-XX-0001"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["TCGA-XX-0001_brainmask.nii.gz", "TCGA-XX-0001_flair.nii.gz",
                     "TCGA-XX-0001_t1.nii.gz", "TCGA-XX-0001_t1ce.nii.gz",
                     "TCGA-XX-0001_t2.nii.gz", "qc.json", "qc.png"]
    assert not (out / ".preprocess-tmp").exists()
    report = validate(out)
    assert report.ok, report.problems
    mask_img = sitk.ReadImage(str(folder / "TCGA-XX-0001_brainmask.nii.gz"))
    mask = sitk.GetArrayFromImage(mask_img).astype(bool)
    assert mask_img.GetSpacing() == (3.0, 3.0, 3.0)
    # the output grid is the T1-Gd's box: the truth (on the T1-Gd grid) compares directly
    assert mask.shape == truth["brain"].shape
    assert dice(mask, truth["brain"]) > 0.85
    for seq in ("t1", "t1ce", "t2", "flair"):
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"TCGA-XX-0001_{seq}.nii.gz")))
        assert arr.dtype == np.float32
        assert abs(arr[mask].mean()) < 1e-4 and abs(arr[mask].std() - 1) < 1e-4
        assert np.all(arr[~mask] == 0)
    qc = json.loads((folder / "qc.json").read_text(encoding="utf-8"))
    for key in ("fingerprint", "input_hashes", "settings", "versions", "timings_s", "n4",
                "registration", "skull_strip", "intensity", "output_grid"):
        assert key in qc
    assert set(qc["registration"]) == {"t1", "t1ce", "t2", "flair"}
    assert qc["registration"]["t2"]["final_metric"] < qc["registration"]["t2"]["initial_metric"]
    assert qc["intensity"]["t2"]["after"]["mean"] == pytest.approx(0, abs=1e-4)
    assert qc["skull_strip"]["brain_volume_ml"] == pytest.approx(mask.sum() * 27 / 1000, rel=1e-3)
    assert (folder / "qc.png").read_bytes()[:4] == b"\x89PNG"


def test_pipeline_coregisters_the_moved_sequences(processed, head):
    """The T2 was moved by a 7-degree / 7 mm transform; after preprocessing its brain lines up
    with the T1-Gd's (correlation of the brain tissue maps)."""
    out, _, truth = processed
    folder = out / "TCGA-XX-0001"
    t1ce = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "TCGA-XX-0001_t1ce.nii.gz")))
    t2 = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "TCGA-XX-0001_t2.nii.gz")))
    brain = truth["brain"]
    # T2 and T1 contrasts are inverted for CSF/WM: aligned images anti-correlate strongly
    assert np.corrcoef(t1ce[brain], t2[brain])[0, 1] < -0.6


def test_skip_if_done_stale_and_overwrite(processed, raw_patient):
    out, _, _ = processed
    root, _ = raw_patient
    qc = out / "TCGA-XX-0001" / "qc.json"
    before = qc.read_text(encoding="utf-8")
    again = preprocess(root, out, fast_config())
    assert again.skipped == ["TCGA-XX-0001"] and not again.done and qc.read_text(encoding="utf-8") == before
    cheap = fast_config(steps={"n4": False, "coregister": False}, stripper="nonzero")
    stale = preprocess(root, out, cheap)
    assert stale.failed and re.search(r"exists but was made from other settings",
                                      stale.problems[0])
    assert qc.read_text(encoding="utf-8") == before
    redo = preprocess(root, out, cheap, overwrite=True)
    assert redo.done == ["TCGA-XX-0001"] and qc.read_text(encoding="utf-8") != before
    assert sorted(p.name for p in out.iterdir()) == ["TCGA-XX-0001"]


def test_failed_patient_reported_others_go_on_no_partial_output(tmp_path, head, monkeypatch):
    raw = tmp_path / "raw"
    write_raw_patient(raw / "GOOD", head, names={"t1ce": "scan_post_gad.nii.gz"})
    write_raw_patient(raw / "BAD", head, names={"t1ce": "scan_post_gad.nii.gz"})
    bad = raw / "BAD" / "scan_post_gad.nii.gz"
    data = gzip.decompress(bad.read_bytes())
    bad.write_bytes(gzip.compress(data[: len(data) // 2]))
    cfg = fast_config(sequences=["t1ce"], steps={"n4": False}, stripper="nonzero")
    out = tmp_path / "out"
    res = preprocess(raw, out, cfg)
    assert res.layout == "folders" and res.done == ["GOOD"] and list(res.failed) == ["BAD"]
    assert re.search(r"patient BAD: .*BAD/scan_post_gad\.nii\.gz: cannot read image", res.problems[0])
    assert sorted(p.name for p in out.iterdir()) == ["GOOD"]

    def boom(*args, **kwargs):
        raise GlioradInputError("disk full")

    monkeypatch.setattr("gliorad.preprocess.pipeline.qc_figure", boom)
    res = preprocess(raw / "GOOD", tmp_path / "out2", cfg, patient_id="P9")
    assert res.failed == {"P9": ["patient P9: disk full"]}
    assert list((tmp_path / "out2").iterdir()) == []


def test_brats_preset_zscore_only_keeps_grid_and_seg(make_cohort, tmp_path):
    root = make_cohort(ids=("B1",))
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "B1" / "B1_t1.nii.gz")))
    arr[:2] = 0  # background
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(img, str(root / "B1" / "B1_t1.nii.gz"))
    out = tmp_path / "out"
    res = preprocess(root, out, make_config("brats"))
    assert res.ok and res.layout == "cohort"
    folder = out / "B1"
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "B1_brainmask.nii.gz"))).astype(bool)
    assert mask.all()  # the other sequences are non-zero everywhere
    t1 = sitk.ReadImage(str(folder / "B1_t1.nii.gz"))
    assert t1.GetSize() == img.GetSize() and t1.GetSpacing() == (1.0, 1.0, 1.0)
    assert abs(sitk.GetArrayFromImage(t1).mean()) < 1e-4
    seg_in = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "B1" / "B1_seg.nii.gz")))
    seg_out = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "B1_seg.nii.gz")))
    np.testing.assert_array_equal(seg_in, seg_out)
    qc = json.loads((folder / "qc.json").read_text(encoding="utf-8"))
    assert qc["n4"] == {} and qc["registration"]["t1"] == {"skipped": "coregister step off"}
    assert validate(out).ok


def test_custom_stripper_plugs_in_and_bad_masks_are_refused(make_cohort, tmp_path):
    root = make_cohort(ids=("C1",), seg=False)

    def box(images, config):
        ref = images[config.reference]
        arr = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
        arr[2:8, 3:9, 2:6] = 1
        m = sitk.GetImageFromArray(arr)
        m.CopyInformation(ref)
        return StripResult(m, {"method": "box"})

    def wrong_grid(images, config):
        return StripResult(sitk.Image([3, 3, 3], sitk.sitkUInt8))

    register_stripper("box", box)
    register_stripper("wrong", wrong_grid)
    try:
        with pytest.raises(GlioradInputError, match=r"stripper 'box' is already registered"):
            register_stripper("box", box)
        cfg = make_config("brats", steps={"skull_strip": True}, stripper="box")
        res = preprocess(root, tmp_path / "o1", cfg)
        assert res.ok, res.failed
        m = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o1/C1/C1_brainmask.nii.gz")))
        assert m.sum() == 6 * 6 * 4
        res = preprocess(root, tmp_path / "o2", cfg.model_copy(update={"stripper": "wrong"}))
        assert re.search(r"stripper 'wrong' returned a mask that is not on the output grid",
                         res.problems[0])
    finally:
        STRIPPERS.pop("box", None)
        STRIPPERS.pop("wrong", None)


def test_run_patient_missing_sequence_and_constant_image(tmp_path):
    with pytest.raises(GlioradInputError, match=r"patient P: no file for sequence\(s\) \['t1ce', 't2', 'flair'\]"):
        run_patient({"t1": tmp_path / "a.nii.gz"}, make_config(), "P")
    const = tmp_path / "const.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkInt16), str(const))
    with pytest.raises(GlioradInputError, match=r"const\.nii\.gz: image is constant"):
        load_sequence(const)


# ----------------------------------------------------------------------------------------- CLI
def test_cli_exit_codes_and_messages(make_cohort, tmp_path):
    from gliorad.commands.preprocess import app

    runner = CliRunner()
    root = make_cohort(ids=("C1", "C2"), seg=False)
    out = tmp_path / "out"
    res = runner.invoke(app, [str(root), str(out), "--preset", "brats"])
    assert res.exit_code == 0, res.output
    assert "C1: done" in res.output and "2 done, 0 skipped, 0 failed" in res.output
    res = runner.invoke(app, [str(root), str(out), "--preset", "brats"])
    assert res.exit_code == 0 and "0 done, 2 skipped" in res.output
    res = runner.invoke(app, [str(root), str(out), "--skip", "n4,bet"])
    assert res.exit_code == 2
    assert ("error: --skip step 'bet' is not valid; expected one of: n4, coregister, skull_strip, "
            "resample, zscore") in res.output
    res = runner.invoke(app, [str(root), str(out), "--pattern", "t1ce"])
    assert res.exit_code == 2 and "--pattern 't1ce' is not valid; expected SEQUENCE=PATTERN" in \
        res.output
    (root / "C2" / "C2_t2.nii.gz").unlink()
    res = runner.invoke(app, [str(root), str(tmp_path / "o3"), "--preset", "brats"])
    assert res.exit_code == 2
    assert "error: patient C2: missing t2 file (expected C2_t2.nii.gz)" in res.output
    assert (tmp_path / "o3" / "C1").is_dir()


# ------------------------------------------------------------------------------------ real data
@pytest.mark.slow
@pytest.mark.realdata
def test_tcga_raw_patient_matches_published_skull_strip(shared_data, tmp_path):
    """TCGA-FG-6692 as acquired -> 1 mm, stripped, co-registered; brain-mask Dice >= 0.90 against
    the published pipeline's (BrainLes) skull strip after rigid registration into its space."""
    from gliorad.preprocess import mask_dice_in_reference

    raw = shared_data / "tcga_raw" / "TCGA-FG-6692" / "raw"
    ref = shared_data / "tcga_raw" / "TCGA-FG-6692" / "brainles_reference" / "raw_bet"
    if not raw.is_dir() or not ref.is_dir():
        pytest.skip("tcga_raw sample is absent")
    res = preprocess(raw, tmp_path, make_config())
    assert res.ok and res.done == ["TCGA-FG-6692"], res.failed
    folder = tmp_path / "TCGA-FG-6692"
    assert validate(tmp_path).ok
    mask = sitk.ReadImage(str(folder / "TCGA-FG-6692_brainmask.nii.gz"))
    assert mask.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    t1ce = load_sequence(min(raw.glob("*t1c.nii.gz")))
    d, info = mask_dice_in_reference(
        mask, t1ce, sitk.ReadImage(str(ref / "OtherEXampleFromTCIA_t1c_bet.nii.gz")))
    assert d >= 0.90, (d, info)



def _write_dicom_series(img: sitk.Image, folder: Path, series: str) -> None:
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125." + series
    for z in range(img.GetDepth()):
        sl = img[:, :, z]
        sl.SetMetaData("0020|000d", uid + ".1")
        sl.SetMetaData("0020|000e", uid + ".2")
        sl.SetMetaData("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, z)))))
        sl.SetMetaData("0020|0013", str(z))
        sl.SetMetaData("0018|0050", str(img.GetSpacing()[2]))
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        sl.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(folder / f"{z:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folders_and_field_of_view_warning(tmp_path):
    """A patient folder of DICOM series sub-folders named T1, T1_POST_GAD, T2, FLAIR; the FLAIR
    covers only half the head, which the QC record flags. (Series this short would be skipped as
    localizers by default: cohort.dicom.min_slices is lowered.)"""
    from gliorad.config import CohortConfig

    short = CohortConfig(dicom={"min_slices": 3})
    rng = np.random.default_rng(5)
    patient = tmp_path / "P7"
    for i, (name, nz) in enumerate((("T1", 8), ("T1_POST_GAD", 8), ("T2", 8), ("FLAIR", 4))):
        arr = rng.integers(100, 1000, (nz, 10, 12)).astype(np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((2.0, 2.0, 3.0))
        _write_dicom_series(img, patient / name, str(i + 1))
    layout, pats = find_raw_patients(patient, PreprocessConfig(), short)
    assert layout == "patient" and pats[0].files["t1ce"].folder.name == "T1_POST_GAD"
    cfg = make_config(steps={"n4": False, "coregister": False, "skull_strip": False},
                      spacing=2.0)
    res = preprocess(patient, tmp_path / "out", cfg, short)
    assert res.ok, res.failed
    qc = json.loads((tmp_path / "out" / "P7" / "qc.json").read_text(encoding="utf-8"))
    assert qc["output_grid"]["size"] == [12, 10, 12] and qc["coverage"]["t2"] == 1.0
    assert qc["coverage"]["flair"] == pytest.approx(0.5, abs=0.01)
    assert any(w.startswith("flair: 50.0% of the brain lies outside its field of view")
               for w in res.warnings["P7"])


def test_cohort_with_custom_mapping_from_yaml(tmp_path):
    from gliorad.commands.preprocess import app

    root = tmp_path / "bids"
    rng = np.random.default_rng(9)
    for pid in ("s01", "s02"):
        (root / pid / "anat").mkdir(parents=True)
        for key in ("T1w", "ce-gd_T1w", "T2w", "FLAIR"):
            img = sitk.GetImageFromArray(rng.integers(50, 900, (6, 8, 7)).astype(np.int16))
            sitk.WriteImage(img, str(root / pid / "anat" / f"{pid}_{key}.nii.gz"))
    yml = tmp_path / "cfg.yaml"
    yml.write_text(
        "preprocess:\n  preset: brats\n  layout: cohort\n"
        "cohort:\n  naming: custom\n  mapping:\n"
        "    t1: '{id}/anat/{id}_T1w.nii.gz'\n    t1ce: '{id}/anat/{id}_ce-gd_T1w.nii.gz'\n"
        "    t2: '{id}/anat/{id}_T2w.nii.gz'\n    flair: '{id}/anat/{id}_FLAIR.nii.gz'\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [str(root), str(out), "--config", str(yml)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["s01", "s02"]
    assert (out / "s02" / "s02_t1ce.nii.gz").is_file() and validate(out).ok
