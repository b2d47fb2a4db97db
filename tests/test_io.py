from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gliorad.errors import GlioradInputError
from gliorad.io import (
    Geometry,
    array_hash,
    array_to_image,
    atomic_dir,
    atomic_path,
    file_hash,
    image_extension,
    read_array,
    read_geometry,
    read_image,
    read_yaml_mapping,
    write_image,
    write_json,
)
from tests.conftest import make_image


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_roundtrip_keeps_geometry_and_voxels(tmp_path, ext):
    img = make_image(spacing=(0.9, 1.1, 5.5), origin=(-10.0, 20.0, 3.5))
    img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = write_image(img, tmp_path / f"a{ext}")
    back = read_image(path)
    # NIfTI stores spacing as float32: equal within tolerance, not bit for bit
    assert Geometry.of(img).differences(Geometry.of(back), 1e-6, 1e-4, 1e-6) == []
    assert read_geometry(path) == Geometry.of(back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert image_extension(path) == ext


def test_dicom_series_folder_is_read_as_one_volume(tmp_path):
    arr = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    img = make_image(array=arr, spacing=(0.8, 0.8, 3.0), origin=(1.0, 2.0, 3.0))
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.1"
    for z in range(img.GetDepth()):
        sl = img[:, :, z]
        sl.SetMetaData("0020|000d", uid + ".1")  # study
        sl.SetMetaData("0020|000e", uid + ".2")  # series
        sl.SetMetaData("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, z)))))
        sl.SetMetaData("0020|0013", str(z))
        sl.SetMetaData("0018|0050", "3.0")
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        sl.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(folder / f"{z:03d}.dcm"))
        writer.Execute(sl)
    back = read_image(folder)
    assert back.GetSize() == img.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(GlioradInputError, match=r"nope\.nii\.gz: file not found"):
        read_image(tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_reported_as_unreadable(tmp_path, ext):
    path = write_image(make_image(shape=(20, 20, 20)), tmp_path / f"t{ext}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GlioradInputError, match=r"t\.\w+(\.gz)?: cannot read image \(unreadable or truncated"):
        read_image(path)


def test_garbage_file_is_reported_as_unreadable(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti file at all" * 10))
    with pytest.raises(GlioradInputError, match=r"junk\.nii\.gz: cannot read image"):
        read_image(path)


def test_empty_folder_is_not_a_dicom_series(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(GlioradInputError, match=r"folder holds no DICOM series"):
        read_image(tmp_path / "d")


def test_atomic_path_leaves_nothing_on_failure_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.json"
    write_json({"a": 1}, target)
    with pytest.raises(ZeroDivisionError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ZeroDivisionError("simulated failure")
    assert target.read_text(encoding="utf-8").strip().startswith("{")
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_write_image_failure_leaves_no_partial_file(tmp_path):
    with pytest.raises(RuntimeError):
        write_image(make_image(), tmp_path / "x.unknownformat")
    assert os.listdir(tmp_path) == []


def test_hashes_are_stable_and_content_sensitive(tmp_path):
    a = write_json({"x": 1}, tmp_path / "a.json")
    b = write_json({"x": 1}, tmp_path / "b.json")
    c = write_json({"x": 2}, tmp_path / "c.json")
    assert file_hash(a) == file_hash(b) != file_hash(c)
    arr = np.arange(6).reshape(2, 3)
    assert array_hash(arr) == array_hash(arr.copy())
    assert array_hash(arr) != array_hash(arr.reshape(3, 2))
    assert array_hash(arr) != array_hash(arr.astype(np.float32))


def test_read_array_and_array_to_image_share_geometry(tmp_path):
    img = make_image(spacing=(2.0, 2.0, 2.0), origin=(5.0, 5.0, 5.0))
    path = write_image(img, tmp_path / "a.nii.gz")
    arr, ref = read_array(path, dtype=np.float32)
    assert arr.dtype == np.float32 and arr.shape == (10, 12, 8)
    out = array_to_image(arr * 2, ref)
    assert Geometry.of(out) == Geometry.of(img)
    with pytest.raises(GlioradInputError, match=r"does not match the reference grid size"):
        array_to_image(arr[:-1], ref)


def test_geometry_differences_respect_tolerances():
    a = Geometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert a.differences(Geometry((2, 2, 2), (1.0005, 1.0, 1.0), (0.005, 0.0, 0.0), a.direction)) == []
    diffs = a.differences(Geometry((2, 2, 2), (1.2, 1.0, 1.0), (3.0, 0.0, 0.0),
                                   (0, 1, 0, 1, 0, 0, 0, 0, 1)))
    assert [d.split()[0] for d in diffs] == ["spacing", "origin", "direction"]
    assert a.differences(Geometry((2, 2, 3), a.spacing, a.origin, a.direction)) == [
        "shape (2, 2, 3) differs from (2, 2, 2)"]


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "m.json")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_read_yaml_mapping_reads_a_mapping_and_an_empty_file_as_empty(tmp_path):
    (tmp_path / "c.yaml").write_text("a: 1\nb:\n  c: [x, y]\n", encoding="utf-8")
    assert read_yaml_mapping(tmp_path / "c.yaml") == {"a": 1, "b": {"c": ["x", "y"]}}
    (tmp_path / "empty.yaml").write_text("# only a comment\n")
    assert read_yaml_mapping(str(tmp_path / "empty.yaml")) == {}


@pytest.mark.parametrize(("content", "message"), [
    (None, r"nope\.yaml: config file not found"),
    (b"a: [1, 2\n", r"c\.yaml: not valid YAML: "),
    (b"- 1\n- 2\n", r"c\.yaml: expected a mapping at the top level, got list"),
    (b"just text\n", r"c\.yaml: expected a mapping at the top level, got str"),
    (b"a: \xff\xfe\n", r"c\.yaml: not a text file"),
])
def test_read_yaml_mapping_refuses_bad_files_naming_them(tmp_path, content, message):
    path = tmp_path / ("nope.yaml" if content is None else "c.yaml")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GlioradInputError, match=message):
        read_yaml_mapping(path)


def test_read_yaml_mapping_names_what_is_missing(tmp_path):
    with pytest.raises(GlioradInputError, match=r"run\.yaml: run config not found"):
        read_yaml_mapping(tmp_path / "run.yaml", what="run config")


def _tree(folder):
    return {str(f.relative_to(folder)): f.read_text(encoding="utf-8") for f in sorted(folder.rglob("*")) if f.is_file()}


def test_atomic_dir_creates_the_folder_only_when_complete(tmp_path):
    final = tmp_path / "sub" / "run"
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".run.tmp-")
        assert not final.exists()  # nothing under the final name while writing
        (tmp / "a.txt").write_text("A")
        (tmp / "deep").mkdir()
        (tmp / "deep" / "b.txt").write_text("B")
    assert _tree(final) == {"a.txt": "A", "deep/b.txt": "B"}
    assert os.listdir(final.parent) == ["run"]


def test_atomic_dir_replaces_an_existing_folder_as_a_whole(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    (final / "a.txt").write_text("old A")
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("new A")
        assert _tree(final) == {"a.txt": "old A", "stale.txt": "old"}  # old one intact meanwhile
    assert _tree(final) == {"a.txt": "new A"}  # no stale file survives
    assert os.listdir(tmp_path) == ["run"]


def test_atomic_dir_failure_keeps_the_old_folder_and_leaves_nothing_behind(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "a.txt").write_text("old A")
    with pytest.raises(ZeroDivisionError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise ZeroDivisionError("simulated failure")
    assert _tree(final) == {"a.txt": "old A"}
    assert os.listdir(tmp_path) == ["run"]
    with pytest.raises(ZeroDivisionError), atomic_dir(tmp_path / "new"):
        raise ZeroDivisionError("simulated failure")
    assert os.listdir(tmp_path) == ["run"]  # a failed first write leaves no folder at all


def test_atomic_dir_removes_a_killed_process_leftover_and_replaces_a_file(tmp_path):
    final = tmp_path / "run"
    final.write_text("a file in the way")
    leftover = tmp_path / f".run.old-{os.getpid()}"  # what a killed process with this id left
    leftover.mkdir()
    (leftover / "x.txt").write_text("x")
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("A")
    assert _tree(final) == {"a.txt": "A"}
    assert os.listdir(tmp_path) == ["run"]


def test_atomic_dir_gets_the_usual_folder_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "run"):
            pass
    finally:
        os.umask(umask)
    assert ((tmp_path / "run").stat().st_mode & 0o777) == 0o755


def test_atomic_dir_puts_the_old_folder_back_when_the_last_rename_fails(tmp_path, monkeypatch):
    final = tmp_path / "run"
    final.mkdir()
    (final / "a.txt").write_text("old A")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".run.tmp-"):
            raise OSError("simulated rename failure")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated rename failure"), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("new A")
    assert _tree(final) == {"a.txt": "old A"}
    assert os.listdir(tmp_path) == ["run"]
