"""Slice-stack import (gliorad.slices, ``gliorad import slices``) on small seeded .tif slices
written at test time: the stacking (order, channels, geometry, labels), the FLAIR stand-in rule,
and every bad-input message (each naming its file). The real TCGA-LGG slice set is in
test_realdata.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from gliorad.cli import app
from gliorad.cohort import discover_cohort
from gliorad.errors import GlioradInputError
from gliorad.slices import import_slices, read_slice_stack
from gliorad.validation import validate

runner = CliRunner()
SHAPE = (12, 10)  # (y, x) of a slice


def slice_array(n: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Slice ``n``: channel c holds 10 * c + n everywhere but a seeded noise pixel, so order and
    channel are recoverable."""
    rng = np.random.default_rng(seed + n)
    arr = np.zeros((*SHAPE, channels), np.uint8)
    for c in range(channels):
        arr[..., c] = 10 * c + n
    arr[rng.integers(SHAPE[0]), rng.integers(SHAPE[1]), :] = 200
    return arr


def write_tif(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vector = arr.ndim == 3
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=vector), str(path))
    return path


def mask_array(n: int, value: int = 255) -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    if 2 <= n <= 3:
        m[3:6, 2:5] = value
    return m


def make_patient(root: Path, pid: str = "TCGA_AA_0001_20000101", n: int = 4,
                 masks: bool = True, channels: int = 3) -> Path:
    folder = root / pid
    for i in range(1, n + 1):
        write_tif(slice_array(i, channels=channels), folder / f"{pid}_{i}.tif")
        if masks:
            write_tif(mask_array(i), folder / f"{pid}_{i}_mask.tif")
    return folder


# ------------------------------------------------------------------------- stacking
def test_stack_order_channels_geometry_and_labels(tmp_path):
    src = tmp_path / "src"
    make_patient(src, n=11)  # 11 slices: "_10" and "_11" sort before "_2" as text
    res = import_slices(src, tmp_path / "out", spacing=(0.9, 0.9, 6.5))
    pid = "TCGA_AA_0001_20000101"
    assert res.ok and res.done == [pid]
    folder = tmp_path / "out" / pid
    for c, seq in enumerate(("t1", "flair", "t1ce")):
        img = sitk.ReadImage(str(folder / f"{pid}_{seq}.nii.gz"))
        assert img.GetSize() == (SHAPE[1], SHAPE[0], 11)
        assert img.GetSpacing() == pytest.approx((0.9, 0.9, 6.5))
        assert img.GetOrigin() == (0.0, 0.0, 0.0)
        assert img.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
        arr = sitk.GetArrayFromImage(img)
        assert arr.dtype == np.uint8
        # slice k of the volume is file _<k+1>, channel c
        np.testing.assert_array_equal(arr[:, 0, 0], 10 * c + np.arange(1, 12))
        np.testing.assert_array_equal(arr[4], slice_array(5)[..., c])
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{pid}_seg.nii.gz")))
    assert set(np.unique(seg)) == {0, 1} and seg.sum() == 2 * 9
    np.testing.assert_array_equal(seg[1], mask_array(2) // 255)
    record = json.loads((folder / f"{pid}_import.json").read_text())
    assert record["spacing_assumed"] is True and record["mask_voxels"] == 18
    assert record["slices"] == 11 and record["sequences_written"] == ["flair", "t1", "t1ce"]
    # a cohort gliorad reads: BraTS 2018 naming, mask label 1
    cohort = discover_cohort(tmp_path / "out")
    assert cohort.naming == "brats2018" and cohort.ids == [pid]
    from gliorad.config import CohortConfig, GlioradConfig

    report = validate(tmp_path / "out", config=GlioradConfig(cohort=CohortConfig(
        sequences=["t1", "t1ce", "flair"], seg_labels=[0, 1], require_seg=True)))
    assert report.ok, report.problems


def test_label_channels_one_patient_folder_and_no_masks(tmp_path):
    folder = make_patient(tmp_path / "src", pid="P7", n=3, masks=False, channels=2)
    res = import_slices(folder, tmp_path / "out", channels=["t2", "flair"], label=4)
    assert res.done == ["P7"]
    files = sorted(p.name for p in (tmp_path / "out" / "P7").iterdir())
    assert files == ["P7_flair.nii.gz", "P7_import.json", "P7_t2.nii.gz"]  # no masks: no seg
    make_patient(tmp_path / "src2", pid="P8", n=4)
    import_slices(tmp_path / "src2", tmp_path / "out2", label=4)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out2" / "P8" / "P8_seg.nii.gz")))
    assert set(np.unique(seg)) == {0, 4}


def test_flair_copy_is_not_written(tmp_path):
    pid = "P1"
    for i in range(1, 4):
        arr = slice_array(i)
        arr[..., 2] = arr[..., 1]  # post-contrast missing: the set put FLAIR in its place
        write_tif(arr, tmp_path / "src" / pid / f"{pid}_{i}.tif")
    res = import_slices(tmp_path / "src", tmp_path / "out")
    assert res.ok and re.search(r"t1ce is a copy of the FLAIR channel on every slice .*not "
                                r"written", res.warnings[pid][0])
    assert not (tmp_path / "out" / pid / f"{pid}_t1ce.nii.gz").exists()
    assert (tmp_path / "out" / pid / f"{pid}_t1.nii.gz").is_file()


def test_existing_patients_skipped_unless_overwrite(tmp_path):
    make_patient(tmp_path / "src", pid="P1")
    out = tmp_path / "out"
    assert import_slices(tmp_path / "src", out).done == ["P1"]
    (out / "P1" / "P1_t1.nii.gz").write_bytes(b"stale")
    res = import_slices(tmp_path / "src", out)
    assert res.skipped == ["P1"] and res.done == []
    assert (out / "P1" / "P1_t1.nii.gz").read_bytes() == b"stale"
    assert import_slices(tmp_path / "src", out, overwrite=True).done == ["P1"]
    assert sitk.ReadImage(str(out / "P1" / "P1_t1.nii.gz")).GetSize()[2] == 4


# ------------------------------------------------------------------------- bad input
def _problems(folder: Path, **kw) -> str:
    with pytest.raises(GlioradInputError) as info:
        read_slice_stack(folder, **kw)
    return str(info.value)


def test_bad_slices_name_the_file(tmp_path):
    pid = "P1"
    f = make_patient(tmp_path, pid=pid, n=6)
    (f / f"{pid}_4.tif").unlink()
    (f / f"{pid}_4_mask.tif").unlink()
    (f / f"{pid}_5_mask.tif").unlink()
    write_tif(slice_array(1), f / f"{pid}_x.tif")
    text = _problems(f)
    assert re.search(r"P1_x\.tif: file name does not end with _<slice number>\.tif or "
                     r"_<slice number>_mask\.tif", text)
    f2 = make_patient(tmp_path / "b", pid=pid, n=6)
    (f2 / f"{pid}_4.tif").unlink()
    (f2 / f"{pid}_4_mask.tif").unlink()
    (f2 / f"{pid}_5_mask.tif").unlink()
    write_tif(mask_array(9), f2 / f"{pid}_9_mask.tif")
    text = _problems(f2)
    assert re.search(r": slice number\(s\) 4 missing \(found 1-6\); a volume needs every slice",
                     text)
    assert re.search(r"P1_9_mask\.tif: mask of slice 9, which has no image slice", text)
    assert re.search(r"P1_5\.tif: slice 5 has no mask \(expected P1_5_mask\.tif\)", text)


def test_sizes_channels_masks_and_series(tmp_path):
    pid = "P1"
    f = make_patient(tmp_path / "a", pid=pid, n=3)
    write_tif(np.zeros((8, 8, 3), np.uint8), f / f"{pid}_2.tif")
    assert re.search(r"P1_2\.tif: slice size 8x8 differs from 10x12 of P1_1\.tif \(every slice "
                     r"of a patient must have one size\)", _problems(f))
    f = make_patient(tmp_path / "b", pid=pid, n=3)
    write_tif(slice_array(2)[..., 0], f / f"{pid}_2.tif")
    assert re.search(r"P1_2\.tif: 1 channel\(s\); expected 3 \(t1, flair, t1ce; set the "
                     r"channels to match\)", _problems(f))
    f = make_patient(tmp_path / "c", pid=pid, n=3)
    m = mask_array(2)
    m[0, 0] = 128
    write_tif(m, f / f"{pid}_2_mask.tif")
    assert re.search(r"P1_2_mask\.tif: mask values 0, 128, 255; expected a binary mask \(0 and "
                     r"one other value, e\.g\. 0/255\)", _problems(f))
    f = make_patient(tmp_path / "d", pid=pid, n=3)
    write_tif(np.stack([mask_array(2)] * 3, axis=-1), f / f"{pid}_2_mask.tif")
    assert re.search(r"P1_2_mask\.tif: mask has 3 channels; expected a 1-channel binary mask",
                     _problems(f))
    f = make_patient(tmp_path / "e", pid=pid, n=3)
    write_tif(mask_array(2)[:5], f / f"{pid}_2_mask.tif")
    assert re.search(r"P1_2_mask\.tif: mask size 10x5 differs from its slice's 10x12",
                     _problems(f))
    f = make_patient(tmp_path / "f", pid=pid, n=2)
    make_patient(tmp_path / "f", pid="P1", n=2).joinpath("Q9_3.tif").write_bytes(b"")
    assert re.search(r"slices of 2 series \(P1, Q9\); expected one <id>_<n>\.tif series per "
                     r"patient folder", _problems(f))
    f = make_patient(tmp_path / "g", pid=pid, n=2)
    (f / f"{pid}_2.tif").write_bytes(b"not a tiff")
    assert re.search(r"P1_2\.tif: cannot be read as an image", _problems(f))
    f = make_patient(tmp_path / "h", pid=pid, n=2)
    write_tif(slice_array(1), f / f"{pid}_01.tif")
    assert re.search(r"P1_1\.tif: slice 1 given twice \(also P1_01\.tif\)|P1_01\.tif: slice 1 "
                     r"given twice \(also P1_1\.tif\)", _problems(f))


def test_options_checked(tmp_path):
    make_patient(tmp_path / "src", pid="P1", n=2)
    for kw, pattern in (
            ({"spacing": (1, 1)}, r"spacing \[1, 1\]: expected three positive numbers x, y, z"),
            ({"spacing": (1, 0, 5)}, r"expected three positive numbers"),
            ({"channels": ["t1", "dwi"]},
             r"'dwi' not valid; expected sequence names from: t1, t1ce, t2, flair"),
            ({"channels": ["t1", "t1"]}, r"a sequence is named twice"),
            ({"label": 0}, r"label 0: expected an integer from 1 to 255")):
        with pytest.raises(GlioradInputError, match=pattern):
            import_slices(tmp_path / "src", tmp_path / "out", **kw)
    with pytest.raises(GlioradInputError, match=r"nothing: folder not found"):
        import_slices(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty" / "P2").mkdir(parents=True)
    with pytest.raises(GlioradInputError, match=r"empty: no \.tif slices found \(expected one "
                                                r"folder per patient"):
        import_slices(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_bad_patient_the_others_written(tmp_path):
    make_patient(tmp_path / "src", pid="GOOD", n=3)
    bad = make_patient(tmp_path / "src", pid="BAD", n=3)
    (bad / "BAD_2.tif").unlink()
    res = import_slices(tmp_path / "src", tmp_path / "out")
    assert res.done == ["GOOD"] and res.failed == ["BAD"] and not res.ok
    assert not (tmp_path / "out" / "BAD").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------- command
def test_cli(tmp_path):
    make_patient(tmp_path / "src", pid="P1", n=3)
    out = tmp_path / "out"
    res = runner.invoke(app, ["import", "slices", str(tmp_path / "src"), str(out),
                              "--spacing", "0.5,0.5,3"])
    assert res.exit_code == 0, res.output
    assert "P1: 3 slices -> flair, t1, t1ce + seg" in res.output
    assert "1 imported, 0 skipped" in res.output
    assert sitk.ReadImage(str(out / "P1" / "P1_t1.nii.gz")).GetSpacing() == (0.5, 0.5, 3.0)
    res = runner.invoke(app, ["import", "slices", str(tmp_path / "src"), str(out)])
    assert res.exit_code == 0 and "0 imported, 1 skipped" in res.output
    for argv, pattern in (
            (["--spacing", "1,1"], r"error: --spacing '1,1': expected three positive numbers"),
            (["--spacing", "a,b,c"], r"error: --spacing 'a,b,c': expected three numbers x,y,z"),
            (["--channels", "t1,pd,t1ce"], r"error: channels .*'pd' not valid")):
        res = runner.invoke(app, ["import", "slices", str(tmp_path / "src"),
                                  str(tmp_path / "o2"), *argv])
        assert res.exit_code == 2 and re.search(pattern, res.output), (argv, res.output)
    (tmp_path / "src" / "P1" / "P1_2_mask.tif").unlink()
    res = runner.invoke(app, ["import", "slices", str(tmp_path / "src"), str(tmp_path / "o3")])
    assert res.exit_code == 2
    assert re.search(r"error: .*P1_2\.tif: slice 2 has no mask", res.output)
    assert "0 imported, 0 skipped (already there; --overwrite replaces), 1 failed" in res.output
