"""gliorad.serve.uploads: what the web service accepts, without a service. NIfTI checks (a real
image passes with its shape and spacing; text, truncated data, a wrong compression, a 2D or
colour image, too many voxels are refused naming the file), ZIP limits (paths leaving the folder,
symbolic links, encrypted members, file count, declared and actual unpacked size; nothing
written when refused), the sequence told from file names, and the patient folder laid out as
predict finds it (BraTS names, a bundle's custom templates)."""

from __future__ import annotations

import gzip
import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gliorad.serve.settings import ServeSettings, is_loopback
from gliorad.serve.uploads import (
    Limits,
    UploadError,
    check_nifti,
    extract_zip,
    patient_root,
    place_sequences,
    rel,
    sequence_from_name,
    study_kind,
)


def _image(path: Path, shape=(6, 7, 5), spacing=(1.0, 1.5, 2.0), dtype=np.int16) -> Path:
    arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def _zip(path: Path, members: dict[str, bytes], **kw) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# ------------------------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii"])
def test_a_nifti_image_passes_with_its_geometry(tmp_path, name):
    # SimpleITK writes it; nibabel's header reading gives the same shape (x, y, z) and spacing
    info = check_nifti(_image(tmp_path / name), "t1 (a)")
    assert info == {"shape": [5, 7, 6], "spacing": [1.0, 1.5, 2.0], "dtype": "int16"}


def test_non_image_files_named_nifti_are_refused(tmp_path):
    text = tmp_path / "notes.nii.gz"
    text.write_bytes(gzip.compress(b"patient notes, not an image\n" * 40))
    with pytest.raises(UploadError, match=r"^t1 \(notes\.nii\.gz\): not a NIfTI image \(.*\); "
                                          r"expected a NIfTI-1 or NIfTI-2 image file$") as e:
        check_nifti(text, "t1 (notes.nii.gz)")
    assert e.value.status == 422
    plain = tmp_path / "x.nii.gz"
    plain.write_bytes(b"plain text")
    with pytest.raises(UploadError, match=r"x\.nii\.gz: named \.nii\.gz but is not gzip-compressed"):
        check_nifti(plain, "x.nii.gz")
    packed = tmp_path / "y.nii"
    packed.write_bytes(gzip.compress(b"\x00" * 400))
    with pytest.raises(UploadError, match=r"y\.nii: named \.nii but is gzip-compressed"):
        check_nifti(packed, "y.nii")
    short = tmp_path / "s.nii"
    short.write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 20)
    with pytest.raises(UploadError, match=r"s\.nii: not a NIfTI image \(24 bytes, shorter than a "
                                          r"NIfTI header\)"):
        check_nifti(short, "s.nii")


def test_truncated_and_damaged_images_are_refused(tmp_path):
    good = _image(tmp_path / "a.nii.gz", shape=(20, 20, 20))
    raw = gzip.decompress(good.read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(UploadError, match=r"cut\.nii\.gz: truncated NIfTI image: 16252 bytes of "
                                          r"the 16352 its header announces"):
        check_nifti(cut, "cut.nii.gz")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(good.read_bytes()[:-30])  # the gzip stream itself cut off
    with pytest.raises(UploadError, match=r"broken\.nii\.gz: (the gzip data is damaged or truncated|"
                                          r"truncated NIfTI image)"):
        check_nifti(broken, "broken.nii.gz")


def test_shapes_types_and_sizes_refused(tmp_path):
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.int16)), str(flat))
    with pytest.raises(UploadError, match=r"flat\.nii\.gz: image of shape \(6, 5\); expected a 3D "
                                          r"volume"):
        check_nifti(flat, "flat.nii.gz")
    rgb = tmp_path / "rgb.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True), str(rgb))
    with pytest.raises(UploadError, match=r"rgb\.nii\.gz: (voxel type|image of shape)"):
        check_nifti(rgb, "rgb.nii.gz")
    big = _image(tmp_path / "big.nii.gz", shape=(10, 10, 10))
    with pytest.raises(UploadError, match=r"big\.nii\.gz: 1000 voxels \(10 x 10 x 10\); the limit "
                                          r"is 999 voxels per image") as e:
        check_nifti(big, "big.nii.gz", Limits(max_voxels=999))
    assert e.value.status == 413


# --------------------------------------------------------------------------------------- ZIP
def test_zip_unpacks_and_skips_archive_junk(tmp_path):
    z = _zip(tmp_path / "a.zip", {"P1/P1_t1.nii.gz": b"x" * 10, "P1/sub/readme.txt": b"hi",
                                  "__MACOSX/P1/._P1_t1.nii.gz": b"junk", "P1/.DS_Store": b"j"})
    assert extract_zip(z, tmp_path / "out") == 2
    files = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files == ["P1/P1_t1.nii.gz", "P1/sub/readme.txt"]
    assert patient_root(tmp_path / "out") == tmp_path / "out" / "P1"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_paths_outside_the_folder_refused(tmp_path, name):
    z = _zip(tmp_path / "a.zip", {"ok.txt": b"1", name: b"2"})
    with pytest.raises(UploadError, match=r"^study: member '.*evil\.txt' has a path outside the "
                                          r"upload folder \(absolute, '\.\.' or a drive letter\)") as e:
        extract_zip(z, tmp_path / "out", label="study")
    assert e.value.status == 422
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlinks_and_special_files_refused(tmp_path):
    buf = tmp_path / "a.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("P1/P1_t1.nii.gz")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        fifo = zipfile.ZipInfo("P1/pipe")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(fifo, "")
    with pytest.raises(UploadError, match=r"member 'P1/P1_t1\.nii\.gz' is a symbolic link; links "
                                          r"are not accepted") as e:
        extract_zip(buf, tmp_path / "out")
    assert "member 'P1/pipe' is not a regular file" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_zip_bomb_refused_before_unpacking(tmp_path):
    # 64 MB of zeros deflate to about 64 kB: the declared size gives it away
    z = _zip(tmp_path / "bomb.zip", {"P1_t1.nii": b"\0" * (64 << 20)})
    assert z.stat().st_size < 200_000
    with pytest.raises(UploadError, match=r"^study: unpacks to 64\.0 MB; the limit is 10\.0 MB "
                                          r"\(a ZIP bomb, or too large a study\)$") as e:
        extract_zip(z, tmp_path / "out", Limits(max_unzipped_bytes=10 << 20), label="study")
    assert e.value.status == 413 and not (tmp_path / "out").exists()


def test_zip_lying_about_its_size_refused_while_unpacking(tmp_path):
    """A member whose header declares fewer bytes than it unpacks to: the count stops it, and
    what was unpacked is removed."""
    z = _zip(tmp_path / "a.zip", {"a.txt": b"a" * 1000, "b.txt": b"b" * 5000})
    data = bytearray(z.read_bytes())
    # shrink b.txt's declared size in its central directory record (offset 24 of the record)
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("b.txt")
    cd = data.rfind(b"PK\x01\x02")
    assert data[cd + 46:cd + 46 + 5] == b"b.txt"
    data[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    assert info.file_size == 5000
    with pytest.raises(UploadError, match=r"member 'b\.txt' (unpacks to more than its header "
                                          r"declares|.*damaged)|damaged or unsupported archive"):
        extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_counts_encryption_and_garbage(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"f{i}.dcm": b"x" for i in range(6)})
    with pytest.raises(UploadError, match=r"6 files; the limit is 5 files per archive") as e:
        extract_zip(z, tmp_path / "out", Limits(max_files=5))
    assert e.value.status == 413
    enc = _zip(tmp_path / "enc.zip", {"secret.nii.gz": b"x"})
    data = bytearray(enc.read_bytes())  # zipfile writes no encrypted member: set the flag bit
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = data.find(sig)
        data[i + at] |= 0x1
    enc.write_bytes(bytes(data))
    with pytest.raises(UploadError, match=r"member 'secret\.nii\.gz' is encrypted"):
        extract_zip(enc, tmp_path / "out")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(UploadError, match=r"^study: not a ZIP archive \(File is not a zip file\)$"):
        extract_zip(junk, tmp_path / "out", label="study")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.txt", b"2")
    (tmp_path / "dup.zip").write_bytes(buf.getvalue())
    with pytest.raises(UploadError, match=r"member 'a\.txt' appears twice"):
        extract_zip(tmp_path / "dup.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_study_kind(tmp_path):
    _image(tmp_path / "n" / "P1" / "P1_t1.nii.gz")
    assert study_kind(tmp_path / "n") == "nifti"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "IM0001").write_bytes(b"DICM")
    assert study_kind(tmp_path / "d") == "dicom"
    (tmp_path / "n" / "P1" / "P1_t2.nii.gz").write_bytes(b"not an image")
    with pytest.raises(UploadError, match=r"^P1/P1_t2\.nii\.gz: named \.nii\.gz but is not gzip"):
        study_kind(tmp_path / "n" / "P1", base=tmp_path / "n")
    (tmp_path / "e").mkdir()
    with pytest.raises(UploadError, match=r"the archive holds no file"):
        study_kind(tmp_path / "e")


# ---------------------------------------------------------------------------- names, folders
@pytest.mark.parametrize("name, expected", [
    ("P01_t1.nii.gz", ("t1", "P01")), ("P01_t1ce.nii.gz", ("t1ce", "P01")),
    ("BraTS-GLI-00001-000-t1c.nii.gz", ("t1ce", "BraTS-GLI-00001-000")),
    ("BraTS-GLI-00001-000-t2f.nii.gz", ("flair", "BraTS-GLI-00001-000")),
    ("case7_T2W.nii", ("t2", "case7")), ("flair.nii.gz", ("flair", None)),
    ("sub-01_T1w.nii.gz", ("t1", "sub-01")), ("x_t1_post.nii.gz", ("t1ce", "x")),
    ("scan.nii.gz", (None, None)), ("P01_t1.txt", (None, None)), ("notat1.nii.gz", (None, None)),
])
def test_sequence_from_name(name, expected):
    assert sequence_from_name(name) == expected


def test_place_sequences_brats_names_and_templates(tmp_path):
    src = {s: _image(tmp_path / "in" / f"{s}.nii.gz") for s in ("t1", "t2")}
    folder = place_sequences(src, tmp_path / "out", "P7")
    assert folder == tmp_path / "out" / "P7"
    assert sorted(p.name for p in folder.iterdir()) == ["P7_t1.nii.gz", "P7_t2.nii.gz"]
    # a bundle's custom templates; a .nii upload where the template says .nii.gz is compressed
    src = {"t1": _image(tmp_path / "in2" / "t1.nii"), "t2": _image(tmp_path / "in2" / "t2.nii.gz")}
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(src["t1"])))
    folder = place_sequences(src, tmp_path / "cust", "P7",
                             {"t1": "{id}/anat/{id}_T1w.nii.gz", "t2": "{id}/anat/{id}_T2w.nii.gz"})
    assert folder == tmp_path / "cust" / "P7"
    t1 = folder / "anat" / "P7_T1w.nii.gz"
    assert t1.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(t1))), ref)
    with pytest.raises(UploadError, match=r"do not name a NIfTI file for t1; upload a ZIP"):
        place_sequences({"t1": _image(tmp_path / "in3" / "t1.nii.gz")}, tmp_path / "c2", "P",
                        {"t1": "{id}/dicom/T1"})


def test_messages_name_upload_paths_not_the_servers(tmp_path):
    job = tmp_path / "jobs" / "abc"
    text = f"{job}/upload/study/P1: holds 2 patients; {job}/upload/patient: x; {job}/result/mask"
    assert rel(text, job) == "P1: holds 2 patients; patient: x; mask"


def test_settings_token_and_checks(tmp_path):
    s = ServeSettings(bundle=tmp_path).checked()
    assert s.token is None and not s.token_required
    s = ServeSettings(bundle=tmp_path, host="0.0.0.0").checked()
    assert s.token is not None and len(s.token) >= 30
    assert ServeSettings(bundle=tmp_path, host="::1").checked().token is None
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and not is_loopback("10.1.2.3")
    from gliorad.errors import GlioradInputError

    with pytest.raises(GlioradInputError, match=r"--port 0: expected a port number 1-65535\n"
                                                 r"--workers 0: expected at least 1\n"
                                                 r"--time-limit 0: expected a positive number\n"
                                                 r"--token: too short"):
        ServeSettings(bundle=tmp_path, port=0, workers=0, time_limit_s=0, token="short").checked()
