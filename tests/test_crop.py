"""Coordinate cropping: whole tumour inside and centred, odd shapes and sizes, tumours at the
border (padding / shift), tumours larger than the patch (downscaled + reported), largest slice,
slice stacks, complete volumes, the cohort run (npy / NIfTI geometry) and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from gliorad import crop as C
from gliorad.commands.features import app
from gliorad.errors import GlioradInputError

runner = CliRunner()


def blob(shape, centre, radii, seed=0) -> np.ndarray:
    """An irregular ellipsoidal tumour (labels 1/2/4) with a random bumpy boundary."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    bumpy = r2 * (1 + 0.3 * rng.random(shape))
    m = np.zeros(shape, np.uint8)
    m[bumpy < 1.0] = 2
    m[bumpy < 0.5] = 1
    m[bumpy < 0.2] = 4
    return m


def ramp(shape) -> np.ndarray:
    """A volume whose value encodes the voxel's position (to check where a patch came from)."""
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) + 1.0


def check_patch(vol, mask, patch, mpatch, rec, pad_value=0.0):
    """Every property a non-downscaled patch must have."""
    assert patch.shape == mpatch.shape == rec.size
    assert np.count_nonzero(mpatch) == np.count_nonzero(mask)  # the whole tumour is inside
    # each patch voxel is the input voxel at start + index, or pad_value outside the image
    idx = np.indices(rec.size).reshape(len(rec.size), -1).T + np.array(rec.start)
    inside = np.all((idx >= 0) & (idx < np.array(vol.shape)), axis=1)
    flat = patch.reshape(-1)
    np.testing.assert_array_equal(flat[inside], vol[tuple(idx[inside].T)])
    assert np.all(flat[~inside] == pad_value)
    assert rec.padding == tuple((max(0, -s), max(0, s + r - n))
                                for s, r, n in zip(rec.start, rec.region, vol.shape, strict=True))


def assert_centred(rec) -> None:
    """The tumour centre is within half a voxel of the patch centre along every axis (an
    offset per axis: an empty one would pass an ``all(...)`` unseen)."""
    assert len(rec.offset) == len(rec.size)
    assert np.max(np.abs(rec.offset)) <= 0.5, rec.offset


# ---------------------------------------------------------------------------------------- bbox
def test_tumour_bbox():
    m = np.zeros((5, 6, 7), np.uint8)
    m[1:3, 2, 4:7] = 2
    m[4, 5, 0] = 4
    assert C.tumour_bbox(m) == ((1, 5), (2, 6), (0, 7))
    assert C.tumour_bbox(np.array([0, 0, 1, 1, 0])) == ((2, 4),)
    with pytest.raises(GlioradInputError, match=r"mask of shape \(5, 6, 7\) is empty"):
        C.tumour_bbox(np.zeros((5, 6, 7)))


# ---------------------------------------------------------------------------------- crop_patch
@pytest.mark.parametrize("seed", range(12))
def test_patch_contains_whole_tumour_and_is_centred(seed):
    """Random shapes, sizes (odd and even), tumour positions including the image border."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(15, 40, 3))
    radii = tuple(float(v) for v in rng.uniform(1.5, 5, 3))
    centre = tuple(float(rng.uniform(0, n - 1)) for n in shape)  # anywhere, borders included
    mask = blob(shape, centre, radii, seed)
    if not mask.any():
        mask[tuple(int(c) for c in centre)] = 1
    size = tuple(int(v) for v in rng.integers(11, 24, 3))
    vol = ramp(shape)
    patch, mpatch, rec = C.crop_patch(vol, mask, size)
    assert not rec.downscaled and rec.scale == (1.0, 1.0, 1.0)
    check_patch(vol, mask, patch, mpatch, rec)
    assert_centred(rec)
    assert rec.tumour_voxels == np.count_nonzero(mask)


def test_tumour_at_the_border_is_padded_and_still_centred():
    mask = np.zeros((20, 24, 22), np.uint8)
    mask[0:3, 20:24, 5:9] = 1  # touches z=0 and y=end
    vol = ramp(mask.shape)
    patch, mpatch, rec = C.crop_patch(vol, mask, (9, 10, 8), pad_value=-5.0)
    check_patch(vol, mask, patch, mpatch, rec, pad_value=-5.0)
    assert rec.padding[0][0] > 0 and rec.padding[1][1] > 0 and rec.padding[2] == (0, 0)
    assert_centred(rec)
    assert np.count_nonzero(patch == -5.0) > 0
    p_min, _, _ = C.crop_patch(vol, mask, (9, 10, 8), pad_value="min")
    assert p_min[0, 0, 0] == vol.min()


def test_shift_mode_keeps_patch_inside_the_image():
    mask = np.zeros((20, 24, 22), np.uint8)
    mask[0:3, 20:24, 5:9] = 1
    vol = ramp(mask.shape)
    patch, mpatch, rec = C.crop_patch(vol, mask, (9, 10, 8), border="shift")
    check_patch(vol, mask, patch, mpatch, rec)
    assert rec.padding == ((0, 0), (0, 0), (0, 0))
    assert rec.start[0] == 0 and rec.start[1] == 24 - 10
    assert abs(rec.offset[0]) > 1 and abs(rec.offset[2]) <= 0.5  # off-centre only at the border
    # an image smaller than the patch along an axis still needs padding there
    _, _, rec2 = C.crop_patch(vol, mask, (25, 10, 8), border="shift")
    assert rec2.padding[0] != (0, 0)


def test_tumour_larger_than_patch_is_downscaled_and_reported():
    mask = np.zeros((30, 40, 36), np.uint8)
    mask[5:25, 4:36, 10:26] = 2  # extent 20 x 32 x 16
    mask[10, 10, 12] = 4
    vol = ramp(mask.shape)
    patch, mpatch, rec = C.crop_patch({"t1": vol, "t2": 2 * vol}, mask, (10, 12, 16))
    assert rec.downscaled
    f = min(10 / 20, 12 / 32, 16 / 16)
    assert all(r >= e for r, e in zip(rec.region, (20, 32, 16), strict=True))  # holds the tumour
    assert rec.region == tuple(int(np.ceil(s / f - 1e-9)) for s in (10, 12, 16))
    assert len(rec.scale) == 3 and np.max(np.abs(np.subtract(rec.scale, f))) < 0.06  # uniform
    assert patch["t1"].shape == patch["t2"].shape == mpatch.shape == (10, 12, 16)
    np.testing.assert_allclose(patch["t2"], 2 * patch["t1"], rtol=1e-6)
    assert set(np.unique(mpatch)) <= {0, 2, 4}  # nearest neighbour keeps labels
    bb = C.tumour_bbox(mpatch)
    assert bb[1][1] - bb[1][0] >= 11  # the limiting axis is nearly filled
    assert_centred(rec)


def test_margin_keeps_context_around_a_large_tumour():
    """A ring of 'infiltration' around the box is cut away by the paper's rule when the tumour
    fills the patch, and kept (resampled down further) with a context margin."""
    mask = np.zeros((40, 48, 40), np.uint8)
    mask[10:30, 12:36, 10:30] = 2  # extent 20 x 24 x 20: exactly the patch
    ring = np.zeros(mask.shape, np.float32)
    ring[6:34, 8:40, 6:34] = 1.0
    ring[mask > 0] = 0.0  # 4 voxels of signal on every side of the box, none inside
    size = (20, 24, 20)
    p0, _, r0 = C.crop_patch(ring, mask, size)
    assert not r0.downscaled and r0.margin == (0, 0, 0) and p0.sum() == 0  # context lost
    p4, m4, r4 = C.crop_patch(ring, mask, size, margin=4)
    assert r4.downscaled and r4.margin == (4, 4, 4) and r4.bbox == r0.bbox
    f = min(s / (e + 8) for s, e in zip(size, (20, 24, 20), strict=True))
    assert r4.region == tuple(int(np.ceil(s / f - 1e-9)) for s in size)
    assert_centred(r4)  # still centred on the tumour
    assert p4.sum() > 0.2 * p4.size  # the ring is in view
    bb = C.tumour_bbox(m4)  # the tumour keeps ~4 * f voxels of context on each side
    assert all(lo >= 2 and s - hi >= 2 for (lo, hi), s in zip(bb, size, strict=True))
    # a small tumour that fits with its margins is cropped exactly as without them
    small = np.zeros(mask.shape, np.uint8)
    small[18:22, 20:26, 18:22] = 1
    vol = ramp(mask.shape)
    a, _, ra = C.crop_patch(vol, small, size)
    b, _, rb = C.crop_patch(vol, small, size, margin=(2, 3, 2))
    np.testing.assert_array_equal(a, b)
    assert ra.start == rb.start and not rb.downscaled and rb.margin == (2, 3, 2)


@pytest.mark.parametrize("ndim", [2, 3])
def test_odd_sizes_and_2d(ndim):
    shape = (17, 13, 9)[:ndim]
    mask = np.zeros(shape, np.uint8)
    mask[(slice(4, 7),) * ndim] = 1
    vol = ramp(shape)
    patch, mpatch, rec = C.crop_patch(vol, mask, (5, 7, 3)[:ndim])
    assert patch.shape == (5, 7, 3)[:ndim] and patch.dtype == np.float32
    assert not rec.downscaled  # an extent of 3 fits a patch of 3 exactly
    check_patch(vol, mask, patch, mpatch, rec)
    assert_centred(rec)
    small, msmall, rsmall = C.crop_patch(vol, mask, (2,) * ndim)
    assert rsmall.downscaled and small.shape == msmall.shape == (2,) * ndim
    assert np.all(msmall == 1)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"size": (8, 8)}, r"size \(8, 8\): expected 3 positive integers"),
    ({"size": (8, 0, 8)}, r"size \(8, 0, 8\): expected 3 positive integers"),
    ({"size": (8, 8.5, 8)}, r"expected 3 positive integers"),
    ({"border": "wrap"}, r"border 'wrap' is not valid; expected one of: pad, shift"),
    ({"pad_value": "max"}, r"pad_value 'max' is not valid; expected one of: min"),
    ({"margin": -1}, r"margin -1: expected a non-negative integer number of voxels, or 3"),
    ({"margin": (1, 2)}, r"margin \(1, 2\): expected a non-negative integer"),
    ({"margin": 1.5}, r"margin 1.5: expected a non-negative integer"),
    ({"margin": "wide"}, r"margin 'wide': expected a non-negative integer"),
])
def test_crop_patch_bad_arguments(kwargs, pattern):
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    with pytest.raises(GlioradInputError, match=pattern):
        C.crop_patch(ramp(mask.shape), mask, **{"size": (4, 4, 4), **kwargs})


def test_crop_patch_bad_inputs():
    mask = np.zeros((6, 6, 6), np.uint8)
    with pytest.raises(GlioradInputError, match=r"mask of shape \(6, 6, 6\) is empty"):
        C.crop_patch(ramp(mask.shape), mask, (4, 4, 4))
    mask[2, 2, 2] = 1
    with pytest.raises(GlioradInputError, match=r"t2 \(6, 6, 5\) do\(es\) not match the mask shape"):
        C.crop_patch({"t1": ramp((6, 6, 6)), "t2": ramp((6, 6, 5))}, mask, (4, 4, 4))
    with pytest.raises(GlioradInputError, match=r"volumes: got list"):
        C.crop_patch([1, 2], mask, (4, 4, 4))
    with pytest.raises(GlioradInputError, match=r"volumes: empty mapping"):
        C.crop_patch({}, mask, (4, 4, 4))


# ------------------------------------------------------------------------------- slices
def test_largest_slice_and_ties():
    m = np.zeros((6, 5, 5), np.uint8)
    m[1, :2, :2] = 1  # area 4
    m[3, :3, :3] = 1  # area 9
    m[4, 1:4, 1:4] = 2  # area 9, tie
    assert C.largest_slice(m) in (3, 4)
    assert C.largest_slice(m) == 3  # bbox z 1..4, centre 2.5: both 0.5/1.5 away -> 3
    np.testing.assert_array_equal(C.slice_areas(m, axis=0), [0, 4, 0, 9, 9, 0])
    assert C.largest_slice(m, axis=2) == 1
    with pytest.raises(GlioradInputError, match=r"is empty"):
        C.largest_slice(np.zeros((3, 3, 3)))
    with pytest.raises(GlioradInputError, match=r"axis 3: expected an axis of a 3-D mask"):
        C.largest_slice(m, axis=3)


def test_slice_stack_channels_and_size():
    shape = (10, 240, 240)
    m = blob(shape, (6, 100, 130), (2, 20, 25))
    imgs = {s: np.full(shape, v, np.float32) for s, v in (("t1", 1), ("t2", 2), ("t1ce", 3),
                                                           ("flair", 4))}
    stack, rec = C.slice_stack(imgs, m)
    assert stack.shape == (3, 240, 240) and stack.dtype == np.float32
    assert [stack[i, 0, 0] for i in range(3)] == [1.0, 2.0, 3.0]  # paper order T1, T2, T1-Gd
    assert rec["index"] == C.largest_slice(m) and rec["scale"] == 1.0
    assert rec["area"] == C.slice_areas(m)[rec["index"]]
    # a non-square slice is scaled to fit (aspect kept) and padded centred
    shape2 = (8, 60, 40)
    m2 = np.zeros(shape2, np.uint8)
    m2[3, 20:30, 10:20] = 1
    stack2, rec2 = C.slice_stack({"a": ramp(shape2)}, m2, sequences=("a",), size=(30, 30))
    assert stack2.shape == (1, 30, 30) and rec2["scale"] == 0.5
    assert rec2["padding"] == [[0, 0], [5, 5]]
    assert np.all(stack2[0, :, :5] == 0) and np.all(stack2[0, :, 5:25] > 0)


def test_slice_stack_bad_input():
    m = np.zeros((4, 8, 8), np.uint8)
    m[1, 2:4, 2:4] = 1
    with pytest.raises(GlioradInputError, match=r"sequence\(s\) \['t1ce'\] not among the images"):
        C.slice_stack({"t1": ramp(m.shape), "t2": ramp(m.shape)}, m)
    with pytest.raises(GlioradInputError, match=r"slice_size|size \(8,\): expected 2"):
        C.slice_stack({"a": ramp(m.shape)}, m, ("a",), size=(8,))
    with pytest.raises(GlioradInputError, match=r"expected a 3-D volume"):
        C.slice_stack({"a": ramp((8, 8))}, m[1], ("a",), size=(8, 8))


def test_complete_volume_crops_brain_and_keeps_aspect():
    vol = np.zeros((40, 60, 50), np.float32)
    vol[5:35, 10:50, 10:40] = 1.0  # "brain" box 30 x 40 x 30
    out, rec = C.complete_volume({"t1": vol, "t2": vol * 3}, size=(24, 32, 24))
    assert out["t1"].shape == (24, 32, 24) and rec["box"] == [[5, 35], [10, 50], [10, 40]]
    assert rec["scale"] == pytest.approx(0.8) and rec["inner"] == [24, 32, 24]
    assert np.allclose(out["t2"], 3 * out["t1"]) and out["t1"].min() > 0.99
    whole, rec2 = C.complete_volume(vol, size=(20, 20, 20), crop_to_brain=False)
    assert whole.shape == (20, 20, 20) and rec2["box"] == [[0, 40], [0, 60], [0, 50]]
    assert rec2["inner"][1] == 20 and rec2["padding"][0] == [3, 4]
    with pytest.raises(GlioradInputError, match=r"every volume is zero everywhere"):
        C.complete_volume(np.zeros((4, 4, 4)), size=(2, 2, 2))


# ------------------------------------------------------------------------------- cohort run
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("crop") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=4, seed=5, spacing=4.0), n_jobs=1)
    return root


def _auto_masks(cohort: Path, out: Path, empty: str | None = None) -> Path:
    """Stand-in for network masks: the manual mask dilated by one voxel (one left empty)."""
    from scipy import ndimage

    out.mkdir(parents=True, exist_ok=True)
    for d in sorted(p for p in cohort.iterdir() if p.is_dir()):
        seg = sitk.ReadImage(str(d / f"{d.name}_seg.nii.gz"))
        m = ndimage.binary_dilation(sitk.GetArrayFromImage(seg) > 0).astype(np.uint8)
        if d.name == empty:
            m[:] = 0
        img = sitk.GetImageFromArray(m)
        img.CopyInformation(seg)
        sitk.WriteImage(img, str(out / f"{d.name}.nii.gz"))
    return out


def test_crop_cohort_npy(cohort, tmp_path):
    masks = _auto_masks(cohort, tmp_path / "auto")
    out = tmp_path / "out"
    res = C.crop_cohort(cohort, out, masks=masks, size=(16, 20, 16), slice_size=(48, 48),
                        complete_size=(24, 28, 24), n_jobs=2)
    assert len(res.records) == 4 and not res.failures and res.n_skipped == 0
    pid = next(iter(res.records))
    assert not res.records[pid]["patch"]["downscaled"]
    patch = np.load(out / pid / "patch.npy")
    assert patch.shape == (4, 16, 20, 16) and patch.dtype == np.float32
    pmask = np.load(out / pid / "patch_mask.npy")
    auto = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / f"{pid}.nii.gz")))
    rec = json.loads((out / pid / f"{pid}.json").read_text(encoding="utf-8"))
    assert not rec["patch"]["downscaled"]
    assert np.count_nonzero(pmask) == np.count_nonzero(auto)
    assert rec["sequences"] == ["t1", "t1ce", "t2", "flair"]
    assert np.load(out / pid / "slice.npy").shape == (3, 48, 48)
    assert np.load(out / pid / "complete.npy").shape == (4, 24, 28, 24)
    assert rec["slice"]["sequences"] == ["t1", "t2", "t1ce"]
    assert len(rec["inputs"]["mask_sha256"]) == 64
    # channel 0 is T1, cut at the recorded start (not downscaled, asserted above)
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / pid / f"{pid}_t1.nii.gz")))
    start = rec["patch"]["start"]
    idx = np.indices((16, 20, 16)).reshape(3, -1).T + np.array(start)
    inside = np.all((idx >= 0) & (idx < np.array(t1.shape)), axis=1)
    assert inside.sum() > 0
    np.testing.assert_array_equal(patch[0].reshape(-1)[inside], t1[tuple(idx[inside].T)])
    again = C.crop_cohort(cohort, out, masks=masks, size=(16, 20, 16), slice_size=(48, 48),
                          complete_size=(24, 28, 24), n_jobs=1)
    assert again.n_skipped == 4
    (masks / f"{pid}.nii.gz").touch()  # a changed input is cropped again
    touched = C.crop_cohort(cohort, out, masks=masks, size=(16, 20, 16), slice_size=(48, 48),
                            complete_size=(24, 28, 24), n_jobs=1)
    assert touched.n_skipped == 3
    other = C.crop_cohort(cohort, out, masks=masks, size=(12, 20, 16), slice_sequences=None,
                          complete_size=None, n_jobs=1)
    assert other.n_skipped == 0 and np.load(out / pid / "patch.npy").shape == (4, 12, 20, 16)
    # a context margin is a setting: those patients are cropped again, and it is recorded
    wide = C.crop_cohort(cohort, out, masks=masks, size=(12, 20, 16), slice_sequences=None,
                         complete_size=None, margin=3, n_jobs=1)
    assert wide.n_skipped == 0
    rec = json.loads((out / pid / f"{pid}.json").read_text(encoding="utf-8"))
    assert rec["settings"]["margin"] == [3, 3, 3] and rec["patch"]["margin"] == [3, 3, 3]


def test_crop_cohort_nifti_geometry(cohort, tmp_path):
    """The written patch sits where it came from: resampling the original image onto the patch's
    grid reproduces the patch (exactly without downscaling, closely with it)."""
    out = tmp_path / "nii"
    res = C.crop_cohort(cohort, out, sequences=["t1ce"], size=(30, 36, 30), slice_sequences=None,
                        complete_size=(16, 20, 16), fmt="nifti", n_jobs=1)
    assert len(res.records) == 4 and not res.failures  # the loop below checks every patient
    assert not any(r["patch"]["downscaled"] for r in res.records.values())
    for pid in res.records:
        src = sitk.ReadImage(str(cohort / pid / f"{pid}_t1ce.nii.gz"), sitk.sitkFloat32)
        for name in ("patch_t1ce", "complete_t1ce"):
            got = sitk.ReadImage(str(out / pid / f"{name}.nii.gz"))
            back = sitk.Resample(src, got, sitk.Transform(), sitk.sitkLinear, 0.0)
            a, b = sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(back)
            if name == "patch_t1ce":  # not downscaled (asserted above): exact
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
            else:  # linear-resampled content: compare the overall agreement
                inside = (a != 0) & (b != 0)
                assert inside.sum() > 100
                assert np.corrcoef(a[inside], b[inside])[0, 1] > 0.9
        pm = sitk.ReadImage(str(out / pid / "patch_mask.nii.gz"))
        assert pm.GetSize() == (30, 36, 30)


def test_crop_cohort_failure_keeps_others_and_cli(cohort, tmp_path):
    ids = sorted(p.name for p in cohort.iterdir() if p.is_dir())
    masks = _auto_masks(cohort, tmp_path / "auto", empty=ids[1])
    with pytest.raises(C.CropFailedError, match=r"cropping failed for 1 patient") as info:
        C.crop_cohort(cohort, tmp_path / "o", masks=masks, size=(16, 16, 16), slice_size=(32, 32),
                      complete_size=None, n_jobs=1)
    assert set(info.value.result.records) == set(ids) - {ids[1]}
    (tmp_path / "file").write_text("x")
    with pytest.raises(GlioradInputError, match=r"output path exists and is not a folder"):
        C.crop_cohort(cohort, tmp_path / "file", masks=masks)
    assert "is empty" in info.value.result.failures[ids[1]]
    res = runner.invoke(app, ["crop", str(cohort), "--out", str(tmp_path / "c"), "--masks",
                              str(masks), "--size", "16,16,16", "--slice-size", "32,32",
                              "--complete-size", "none", "--jobs", "1"])
    assert res.exit_code == 2
    assert "cropped 3 patients" in res.output and f"error: {ids[1]}: " in res.output
    good = _auto_masks(cohort, tmp_path / "good")
    res = runner.invoke(app, ["crop", str(cohort), "--out", str(tmp_path / "c"), "--masks",
                              str(good), "--size", "8x8x8", "--slice-sequences", "none",
                              "--complete-size", "none", "--format", "nifti", "--jobs", "1",
                              "--margin", "1,2,2"])
    assert res.exit_code == 0, res.output
    assert "cropped 4 patients" in res.output
    assert "note: tumour larger than the patch, resampled down" in res.output
    pid = ids[0]
    rec = json.loads((tmp_path / "c" / pid / f"{pid}.json").read_text(encoding="utf-8"))
    assert rec["patch"]["margin"] == [1, 2, 2]
    for argv, pattern in [
        (["--size", "8,8"], "--size '8,8': expected 3 positive integers"),
        (["--format", "png"], "format 'png' is not valid; expected one of: npy, nifti"),
        (["--slice-sequences", "t1,dwi"], "slice sequences ['dwi'] are not among the cropped"),
        (["--border", "x"], "border 'x' is not valid"),
        (["--sequences", "dwi"], "sequences ['dwi'] not found in cohort"),
        (["--margin", "wide"], "--margin 'wide': expected a number of voxels such as 8"),
        (["--margin", "4,8"], "margin (4, 8): expected a non-negative integer number of voxels"),
        (["--margin", "-2"], "margin -2: expected a non-negative integer number of voxels"),
    ]:
        res = runner.invoke(app, ["crop", str(cohort), "--out", str(tmp_path / "d"), *argv])
        assert res.exit_code == 2 and pattern in res.output, (argv, res.output)


def test_downscaled_patch_geometry(cohort, tmp_path):
    res = C.crop_cohort(cohort, tmp_path, sequences=["t2"], size=(8, 10, 8), slice_sequences=None,
                        complete_size=None, fmt="nifti", n_jobs=1)
    assert len(res.records) == 4 and not res.failures  # the loop below checks every patient
    assert res.downscaled == sorted(res.records)  # every tumour is larger than 8 voxels
    for pid, rec in res.records.items():
        src = sitk.ReadImage(str(cohort / pid / f"{pid}_t2.nii.gz"), sitk.sitkFloat32)
        got = sitk.ReadImage(str(tmp_path / pid / "patch_t2.nii.gz"))
        ratio = np.array(got.GetSpacing()) / np.array(src.GetSpacing())
        np.testing.assert_allclose(ratio, 1 / np.array(rec["patch"]["scale"][::-1]))
        back = sitk.GetArrayFromImage(sitk.Resample(src, got, sitk.Transform(), sitk.sitkLinear))
        a = sitk.GetArrayFromImage(got)
        assert np.corrcoef(a.ravel(), back.ravel())[0, 1] > 0.9
