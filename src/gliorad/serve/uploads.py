"""What ``gliorad serve`` accepts from a browser: NIfTI files checked as images, ZIP archives
unpacked under limits, and the patient folder that ``predict`` reads laid out from them.

Nothing here trusts the client: a file name is only ever used to tell which sequence a file is
(never as a path), a ZIP member's path is checked before anything is written (no absolute path,
no ``..``, no symbolic link or device, no encrypted member), the archive's file count and
unpacked size are limited before unpacking and the bytes are counted again while unpacking
(headers can lie), and a file named ``.nii`` / ``.nii.gz`` must be a NIfTI image: its header is
parsed (nibabel, no pickle) and its voxel data read to the end (a truncated or non-image file is
refused before a job is queued). DICOM files are read only by GDCM (:mod:`gliorad.dicom`).

Every refusal is an :class:`UploadError` with an HTTP status (413 for sizes, 422 for content)
and one line per problem naming the file or archive member.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["NIFTI_SUFFIXES", "Limits", "UploadError", "check_nifti", "extract_zip", "nifti_suffix",
           "patient_root", "place_sequences", "sequence_from_name", "study_kind"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Archive members that operating systems add and that are never part of a study.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$|\._[^/]*$)",
                   re.IGNORECASE)
_CHUNK = 1 << 20
_MAX_OFFSET = 1 << 20  # header + extensions of a NIfTI file
#: Safe patient ids (they become file names).
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UploadError(Exception):
    """A refused upload: ``status`` (HTTP) and one line per problem."""

    def __init__(self, status: int, problems: str | Iterable[str]):
        self.status = status
        self.problems = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Limits:
    """Upload limits (bytes and counts)."""

    max_upload_bytes: int = 1024 * 2**20
    max_unzipped_bytes: int = 4096 * 2**20
    max_files: int = 10_000
    #: voxels of one image (a 1 mm brain is 9 million; 512 x 512 x 512 is 134 million)
    max_voxels: int = 256 * 2**20


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


# ------------------------------------------------------------------------------------- NIfTI
def nifti_suffix(name: str) -> str | None:
    """``.nii.gz`` or ``.nii`` when ``name`` ends so (any case), else None."""
    low = name.lower()
    return next((s for s in NIFTI_SUFFIXES if low.endswith(s)), None)


def check_nifti(path: Path, label: str, limits: Limits = Limits()) -> dict[str, Any]:
    """Check that ``path`` (named ``.nii`` or ``.nii.gz``; shown as ``label``) is a readable 3D
    NIfTI image; return its shape, voxel size and data type. Raises :class:`UploadError` (422;
    413 over ``limits.max_voxels``) naming ``label``."""
    import nibabel as nib
    import numpy as np

    suffix = nifti_suffix(path.name)
    if suffix is None:
        raise UploadError(422, f"{label}: not a NIfTI file name; expected .nii or .nii.gz")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if (magic == b"\x1f\x8b") != (suffix == ".nii.gz"):
        raise UploadError(422, f"{label}: named {suffix} but "
                          + ("is gzip-compressed" if magic == b"\x1f\x8b" else "is not gzip-compressed")
                          + "; expected a NIfTI image (.nii, or .nii.gz compressed with gzip)")
    try:
        opener = gzip.open if suffix == ".nii.gz" else open
        with opener(path, "rb") as fh:
            head = fh.read(540)
        klass = nib.Nifti2Header if head[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") \
            else nib.Nifti1Header
        if len(head) < klass.sizeof_hdr:
            raise ValueError(f"{len(head)} bytes, shorter than a NIfTI header")
        header = klass(head[: klass.sizeof_hdr], check=True)
        magic = header["magic"].item()
        if magic not in (b"n+1", b"n+2", b"ni1", b"ni2"):
            raise ValueError("no NIfTI magic string")
        if magic in (b"ni1", b"ni2"):
            raise UploadError(422, f"{label}: a NIfTI header without its image (.hdr/.img pair); "
                              "expected a single-file NIfTI image")
        shape = tuple(int(d) for d in header.get_data_shape())
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        if not 0 <= offset <= _MAX_OFFSET:
            raise ValueError(f"voxel data offset {offset}")
    except UploadError:
        raise
    except Exception as err:  # nibabel raises several types for a non-NIfTI file
        raise UploadError(422, f"{label}: not a NIfTI image ({_short(err)}); expected a NIfTI-1 "
                          "or NIfTI-2 image file") from err
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3 or min(shape) < 1:
        raise UploadError(422, f"{label}: image of shape {shape}; expected a 3D volume")
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise UploadError(422, f"{label}: voxel type {dtype}; expected integer or floating-point "
                          "intensities (no RGB or complex images)")
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > limits.max_voxels:
        raise UploadError(413, f"{label}: {voxels} voxels ({' x '.join(map(str, shape))}); the "
                          f"limit is {limits.max_voxels} voxels per image")
    need = offset + voxels * dtype.itemsize
    have = _stream_length(path, suffix == ".nii.gz", need, label)
    if have < need:
        raise UploadError(422, f"{label}: truncated NIfTI image: {have} bytes of the {need} its "
                          "header announces")
    zooms = [float(z) for z in header.get_zooms()[:3]]
    return {"shape": list(shape), "spacing": zooms, "dtype": str(dtype)}


def _stream_length(path: Path, compressed: bool, need: int, label: str) -> int:
    """Bytes the file holds (decompressed), read up to ``need``: a gzip bomb is never unpacked
    beyond what the header announces."""
    if not compressed:
        return path.stat().st_size
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while total < need:
                block = fh.read(min(_CHUNK, need - total))
                if not block:
                    break
                total += len(block)
    except (EOFError, OSError, zlib.error) as err:
        raise UploadError(422, f"{label}: the gzip data is damaged or truncated ({_short(err)})") \
            from err
    return total


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------------------- ZIP
def _member_parts(name: str) -> tuple[str, ...] | None:
    """The path components of a ZIP member name, or None when it points outside the folder."""
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return None
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return None
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def extract_zip(archive: Path, dest: Path, limits: Limits = Limits(), label: str = "ZIP") -> int:
    """Unpack ``archive`` into ``dest`` (created) under ``limits``; return the number of files.

    Refused (:class:`UploadError`, nothing written): not a ZIP archive, a member whose path leaves
    ``dest`` (absolute, ``..``, a drive letter), a symbolic link, device or other special file,
    an encrypted member, two members with one name, more than ``max_files`` files, or an
    unpacked size over ``max_unzipped_bytes`` (declared, then counted while unpacking).
    Archive junk (``__MACOSX/``, ``.DS_Store``, ``._*``) is skipped.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadError(422, f"{label}: not a ZIP archive ({_short(err)})") from err
    with zf:
        problems: list[str] = []
        members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        seen: set[tuple[str, ...]] = set()
        for info in zf.infolist():
            name = info.filename
            parts = _member_parts(name)
            if parts is None:
                problems.append(f"{label}: member {name!r} has a path outside the upload folder "
                                "(absolute, '..' or a drive letter); expected relative paths")
                continue
            if _JUNK.search("/".join(parts) + ("/" if info.is_dir() else "")):
                continue
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                problems.append(f"{label}: member {name!r} is a symbolic link; links are not "
                                "accepted (archive the files themselves)")
                continue
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                problems.append(f"{label}: member {name!r} is not a regular file (a device, "
                                "pipe or socket)")
                continue
            if info.flag_bits & 0x1:
                problems.append(f"{label}: member {name!r} is encrypted; expected an archive "
                                "without a password")
                continue
            if info.is_dir() or not parts:
                continue
            if parts in seen:
                problems.append(f"{label}: member {name!r} appears twice")
                continue
            seen.add(parts)
            members.append((info, parts))
        if problems:
            raise UploadError(422, problems)
        if len(members) > limits.max_files:
            raise UploadError(413, f"{label}: {len(members)} files; the limit is "
                              f"{limits.max_files} files per archive")
        declared = sum(i.file_size for i, _ in members)
        if declared > limits.max_unzipped_bytes:
            raise UploadError(413, f"{label}: unpacks to {_mb(declared)}; the limit is "
                              f"{_mb(limits.max_unzipped_bytes)} (a ZIP bomb, or too large a study)")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        try:
            for info, parts in members:
                target = root.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):
                    raise UploadError(422, f"{label}: member {info.filename!r} resolves outside "
                                      "the upload folder")
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    size = 0
                    while block := src.read(_CHUNK):
                        size += len(block)
                        written += len(block)
                        if size > info.file_size or written > limits.max_unzipped_bytes:
                            raise UploadError(413, f"{label}: member {info.filename!r} unpacks to "
                                              f"more than its header declares; the archive is "
                                              "refused (a ZIP bomb?)")
                        out.write(block)
        except UploadError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as err:
            shutil.rmtree(dest, ignore_errors=True)
            raise UploadError(422, f"{label}: damaged or unsupported archive ({_short(err)})") \
                from err
    return len(members)


def patient_root(folder: Path) -> Path:
    """``folder``, or the one sub-folder it holds, followed down while a folder holds nothing
    but one sub-folder (an archive of the patient's folder)."""
    while True:
        entries = list(folder.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            folder = entries[0]
        else:
            return folder


def study_kind(folder: Path, limits: Limits = Limits(), base: Path | None = None) -> str:
    """``nifti`` when ``folder`` holds NIfTI files (each checked with :func:`check_nifti`),
    else ``dicom`` (other files, left to GDCM); an empty folder is refused."""
    base = base or folder
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise UploadError(422, "the archive holds no file")
    nifti = [p for p in files if nifti_suffix(p.name)]
    problems = []
    for p in nifti:
        try:
            check_nifti(p, p.relative_to(base).as_posix(), limits)
        except UploadError as err:
            if err.status == 413:
                raise
            problems += err.problems
    if problems:
        raise UploadError(422, problems)
    return "nifti" if nifti else "dicom"


# --------------------------------------------------------------------------- sequence names
_NAME_SEQUENCE = tuple((seq, re.compile(rx, re.IGNORECASE)) for seq, rx in (
    ("t1ce", r"(t1ce|t1c|t1gd|t1[-_]?gd|t1[-_]?post|post[-_]?gad|t1[-_]?contrast)$"),
    ("flair", r"(flair|t2f|t2[-_]flair)$"),
    ("t2", r"(t2|t2w)$"),
    ("t1", r"(t1|t1n|t1w|t1[-_]?pre|t1[-_]?native)$"),
))


def sequence_from_name(name: str) -> tuple[str | None, str | None]:
    """(sequence, patient id) told from a file name such as ``P01_t1ce.nii.gz`` or
    ``BraTS-GLI-00001-000-t2f.nii.gz``; None where the name does not tell."""
    suffix = nifti_suffix(name)
    if suffix is None:
        return None, None
    stem = name[: -len(suffix)]
    for seq, rx in _NAME_SEQUENCE:
        m = rx.search(stem)
        if m and (m.start() == 0 or stem[m.start() - 1] in "_-. "):
            pid = stem[: m.start()].rstrip("_-. ")
            return seq, (pid if pid and PATIENT_ID.match(pid) else None)
    return None, None


def place_sequences(files: Mapping[str, Path], dest: Path, pid: str,
                    mapping: Mapping[str, str] | None = None) -> Path:
    """Move each sequence's file (``{seq: path}``) into ``dest`` as ``predict`` finds it, and
    return the patient folder: BraTS 2018 names (``<pid>_<seq>.nii.gz``) in ``dest/<pid>``, or
    the bundle's custom file templates (``mapping``, ``{id}`` the patient id) under ``dest``."""
    from gliorad.cohort import NAMING_SCHEMES

    scheme = NAMING_SCHEMES["brats2018"]
    if mapping:
        missing = [s for s in files if s not in mapping]
        not_nifti = [s for s in files if s in mapping and nifti_suffix(mapping[s]) is None]
        if missing or not_nifti:
            raise UploadError(422, f"this bundle's file templates {dict(mapping)} do not name a "
                              f"NIfTI file for {', '.join(missing + not_nifti)}; upload a ZIP laid "
                              "out as the templates say")
        for seq, src in files.items():
            target = dest.joinpath(*PurePosixPath(mapping[seq].replace("{id}", pid)).parts)
            if not target.resolve().is_relative_to(dest.resolve()):
                raise UploadError(422, f"the bundle's file template {mapping[seq]!r} leaves the "
                                  "upload folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            _move_as(src, target)
        starts = {PurePosixPath(t.replace("{id}", pid)).parts[0] for t in mapping.values()}
        return dest / pid if starts == {pid} else dest
    folder = dest / pid
    folder.mkdir(parents=True, exist_ok=True)
    for seq, src in files.items():
        if seq in scheme.suffixes:
            shutil.move(src, folder / scheme.filename(pid, seq, nifti_suffix(src.name) or ".nii.gz"))
        else:
            shutil.move(src, folder / f"{pid}_{seq}{nifti_suffix(src.name) or '.nii.gz'}")
    return folder


def _move_as(src: Path, target: Path) -> None:
    """Move ``src`` to ``target``, gzip-compressing or decompressing it when the two NIfTI
    suffixes differ (a template may say .nii.gz for a .nii upload)."""
    t, s = nifti_suffix(target.name), nifti_suffix(src.name)
    if t == s:
        shutil.move(src, target)
        return
    opener_in = gzip.open if s == ".nii.gz" else open
    opener_out = gzip.open if t == ".nii.gz" else open
    with opener_in(src, "rb") as fin, opener_out(target, "wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
    src.unlink()


def rel(text: str, job_dir: Path) -> str:
    """``text`` with the server's paths of a job's folders cut to what the uploader knows
    (``study/P01/P01_t1.nii.gz``, not the service's data folder)."""
    up = job_dir / "upload"
    for root in (up / "patient", up / "study", up / "converted", up, job_dir / "result", job_dir):
        text = text.replace(f"{root}/", "").replace(str(root), root.name)
    return text
