"""Image and file I/O: SimpleITK readers that keep geometry, YAML config files, atomic writes,
content hashes.

Every reader raises :class:`~gliorad.errors.GlioradInputError` naming the file when it cannot read
it; every writer writes to a temporary name in the destination folder and renames it into place, so
a crash never leaves a half-written file under the final name (:func:`atomic_dir` does the same
for a whole folder).

A DICOM series is read either from a folder that holds exactly one series, or from a
:class:`DicomSeries` (its files, already split from a study by SeriesInstanceUID: see
:mod:`gliorad.dicom`). Either way the slices are checked before the volume is trusted: one
orientation, no two slices at one position, evenly spaced (a gap means missing slices).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.errors import GlioradInputError
from gliorad.settings import read_yaml_mapping  # noqa: F401  (re-exported; light home)

#: File name endings SimpleITK reads as one volume. A folder is read as a DICOM series.
IMAGE_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def image_extension(path: str | os.PathLike) -> str | None:
    """Return the recognised image extension of ``path`` (``.nii.gz`` counts as one), else None."""
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


# --------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """Physical grid of an image in SimpleITK (LPS) convention; ``size`` is (x, y, z)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> Geometry:
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def differences(
        self,
        other: Geometry,
        spacing_tol: float = 1e-3,
        origin_tol: float = 1e-2,
        direction_tol: float = 1e-3,
    ) -> list[str]:
        """Describe how ``other`` differs from this grid beyond the tolerances (empty if it does not).

        ``spacing_tol`` is relative, ``origin_tol`` is in mm, ``direction_tol`` is absolute on the
        direction-cosine matrix entries.
        """
        out: list[str] = []
        if self.size != other.size:
            out.append(f"shape {other.size} differs from {self.size}")
            return out
        sp_a, sp_b = np.asarray(self.spacing), np.asarray(other.spacing)
        if np.any(np.abs(sp_a - sp_b) > spacing_tol * np.maximum(sp_a, 1e-12)):
            out.append(f"spacing {_fmt(other.spacing)} differs from {_fmt(self.spacing)}")
        if np.any(np.abs(np.subtract(self.origin, other.origin)) > origin_tol):
            out.append(f"origin {_fmt(other.origin)} differs from {_fmt(self.origin)}")
        if np.any(np.abs(np.subtract(self.direction, other.direction)) > direction_tol):
            out.append(f"direction {_fmt(other.direction)} differs from {_fmt(self.direction)}")
        return out


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


# ------------------------------------------------------------------------------------- DICOM
@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series: its files in slice order (GDCM's sort) and a label for messages.

    Several series may share a folder (PACS exports mix them), so a series is its file list, not
    a folder. ``str()`` gives ``<folder>: <label> (<SeriesInstanceUID>)``, the name used in
    messages and provenance records; :func:`read_image`, :func:`read_geometry` and
    :func:`file_hash` accept it wherever they accept a path.
    """

    uid: str
    files: tuple[Path, ...]
    label: str = "DICOM series"

    @property
    def folder(self) -> Path:
        """The deepest folder holding every file of the series."""
        if not self.files:
            return Path()
        return Path(os.path.commonpath([str(f.parent) for f in self.files]))

    @property
    def name(self) -> str:
        return self.label

    def __str__(self) -> str:
        return f"{self.folder}: {self.label} ({self.uid})"


def _dicom_files(folder: Path) -> list[str]:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise GlioradInputError(f"{folder}: folder holds no DICOM series")
    if len(series) > 1:
        raise GlioradInputError(
            f"{folder}: folder holds {len(series)} DICOM series ({', '.join(series)}); "
            "expected exactly one per sequence (a study folder is split by series with "
            "gliorad.dicom / `gliorad dicom scan`)"
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _ds_floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.strip().split("\\")], dtype=float)


def check_slices(reader: sitk.ImageSeriesReader, n_files: int, where: str) -> None:
    """The slices of a series read with ``MetaDataDictionaryArrayUpdateOn`` are one volume.

    Refuses (naming ``where``) a series whose slices have several orientations (a localizer or a
    multi-plane series), share a position (several echoes, phases or acquisitions under one
    SeriesInstanceUID) or are unevenly spaced (missing slices): ITK only warns about the last and
    reads a distorted volume. A single file (a multi-frame object) is left to GDCM.
    """
    if n_files < 2:
        return
    keys = ("0020|0032", "0020|0037")
    try:
        pos = np.array([_ds_floats(reader.GetMetaData(i, keys[0])) for i in range(n_files)])
        ori = np.array([_ds_floats(reader.GetMetaData(i, keys[1])) for i in range(n_files)])
    except (RuntimeError, ValueError) as err:
        raise GlioradInputError(
            f"{where}: slices lack a readable ImagePositionPatient / ImageOrientationPatient "
            f"(0020,0032 / 0020,0037): {str(err).strip()[:120]}; expected both in every slice"
        ) from err
    if pos.shape[1] != 3 or ori.shape[1] != 6:
        raise GlioradInputError(f"{where}: malformed ImagePositionPatient / "
                                "ImageOrientationPatient; expected 3 and 6 numbers")
    n_orient = len({tuple(np.round(o, 3)) for o in ori})
    if n_orient > 1:
        raise GlioradInputError(
            f"{where}: slices have {n_orient} different orientations (a localizer or a "
            "multi-plane series); expected one stack of parallel slices")
    normal = np.cross(ori[0, :3], ori[0, 3:])
    depth = np.sort(pos @ normal)
    gaps = np.diff(depth)
    n_same = int(np.count_nonzero(gaps < 1e-3))
    if n_same:
        raise GlioradInputError(
            f"{where}: {n_same + 1 if n_same == 1 else n_same} slices share a position with "
            "another slice (several echoes, phases or acquisitions under one SeriesInstanceUID); "
            "expected one slice per position (export the parts as separate series)")
    step = float(np.median(gaps))
    if np.any(np.abs(gaps - step) > 0.01 + 0.02 * step):
        big = float(gaps.max())
        raise GlioradInputError(
            f"{where}: slice spacing is not uniform ({float(gaps.min()):.3g} to {big:.3g} mm "
            f"between neighbours, usually {step:.3g} mm: about {max(round(big / step) - 1, 1)} "
            f"slice(s) missing?); expected evenly spaced slices (re-export the complete series)")


def _read_dicom(files: list[str], where: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's spacing warning: checked below
    try:
        img = reader.Execute()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
    check_slices(reader, len(files), where)
    return img


def read_image(path: str | os.PathLike | DicomSeries,
               pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    """Read a NIfTI / NRRD / MHA volume, a folder holding one DICOM series, or a
    :class:`DicomSeries`, keeping geometry (spacing, origin, direction).

    Raises :class:`GlioradInputError` naming the file for a missing, unreadable or truncated file,
    and the series for slices that do not make one evenly spaced volume (:func:`check_slices`).
    """
    if isinstance(path, DicomSeries):
        missing = [f for f in path.files if not f.is_file()]
        if not path.files or missing:
            raise GlioradInputError(f"{path}: {len(missing)} of {len(path.files)} files not found"
                                    + (f" ({missing[0]}, ...)" if missing else ""))
        try:
            img = _read_dicom([str(f) for f in path.files], str(path))
        except RuntimeError as err:
            raise GlioradInputError(f"{path}: cannot read DICOM series (unreadable or truncated "
                                    f"file): {_itk_detail(err)}") from err
        return img if pixel_type == sitk.sitkUnknown else sitk.Cast(img, pixel_type)
    p = Path(path)
    if not p.exists():
        raise GlioradInputError(f"{p}: file not found")
    try:
        if p.is_dir():
            img = _read_dicom(_dicom_files(p), str(p))
            return img if pixel_type == sitk.sitkUnknown else sitk.Cast(img, pixel_type)
        img = sitk.ReadImage(str(p), pixel_type)
    except GlioradInputError:
        raise
    except RuntimeError as err:
        raise GlioradInputError(
            f"{p}: cannot read image (unreadable or truncated file): {_itk_detail(err)}"
        ) from err
    is_nifti = image_extension(p) in (".nii", ".nii.gz")
    if is_nifti:
        _check_nifti_complete(p)
    if img.GetPixelID() in _FLOAT_TYPES:
        # ITK's NIfTI reader turns NaN and inf into 0 silently: count them in the file itself.
        n_bad = _nifti_nonfinite(p) if is_nifti else int(
            np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(img))))
        if n_bad:
            raise GlioradInputError(
                f"{p}: {n_bad} non-finite voxels (NaN or inf); expected finite intensities"
            )
    return img


def _itk_detail(err: RuntimeError) -> str:
    """The telling line of an ITK exception (its last error line), at most 200 characters."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = next((ln for ln in reversed(lines) if "rror" in ln or "xception" in ln),
                  lines[-1] if lines else "")
    return detail[:200]


_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64}


def _nifti_nonfinite(path: Path) -> int:
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    return int(np.count_nonzero(~np.isfinite(data))) if np.issubdtype(data.dtype, np.floating) else 0


def _check_nifti_complete(path: Path) -> None:
    """ITK zero-fills a truncated NIfTI without complaint; compare the data length with the header.

    ``.nii``: the file must hold ``vox_offset + voxels * bytes``. ``.nii.gz``: the gzip trailer's
    uncompressed length (mod 2**32) must match; when it does not (also for multi-member gzip files),
    the stream is decompressed to be sure.
    """
    import gzip
    import zlib

    import nibabel as nib

    try:
        hdr = nib.load(str(path)).header
    except Exception as err:  # nibabel raises several types for bad headers
        raise GlioradInputError(f"{path}: cannot read NIfTI header: {err}") from err
    expected = int(hdr.get_data_offset()) + int(np.prod(hdr.get_data_shape())) * hdr.get_data_dtype().itemsize
    if path.name.lower().endswith(".nii"):
        actual = path.stat().st_size
    else:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            actual = int.from_bytes(fh.read(4), "little")
        if actual == expected % 2**32:
            return
        actual = 0
        try:
            with gzip.open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    actual += len(block)
        except (EOFError, OSError, zlib.error) as err:
            raise GlioradInputError(
                f"{path}: cannot read image (unreadable or truncated file): compressed data ends "
                f"early ({err})"
            ) from err
    if actual < expected:
        raise GlioradInputError(
            f"{path}: cannot read image (unreadable or truncated file): holds {actual} bytes of "
            f"header and voxels, header promises {expected}"
        )


def read_geometry(path: str | os.PathLike | DicomSeries) -> Geometry:
    """Geometry from the header only (fast; does not load voxels). DICOM series are loaded."""
    if isinstance(path, DicomSeries):
        return Geometry.of(read_image(path))
    p = Path(path)
    if p.is_dir():
        return Geometry.of(read_image(p))
    if not p.exists():
        raise GlioradInputError(f"{p}: file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise GlioradInputError(f"{p}: cannot read image header: {str(err).strip()[:200]}") from err
    return Geometry.of(reader)


def read_array(path: str | os.PathLike, dtype: Any = None) -> tuple[np.ndarray, sitk.Image]:
    """Voxels as a numpy array in (z, y, x) order, plus the image (for its geometry)."""
    img = read_image(path)
    arr = sitk.GetArrayFromImage(img)
    return (arr.astype(dtype, copy=False) if dtype is not None else arr), img


def array_to_image(array: np.ndarray, reference: sitk.Image | Geometry | None = None) -> sitk.Image:
    """Wrap a (z, y, x) array as an image with the geometry of ``reference`` (if given)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    if reference is not None:
        geo = reference if isinstance(reference, Geometry) else Geometry.of(reference)
        if tuple(img.GetSize()) != geo.size:
            raise GlioradInputError(
                f"array of shape {array.shape} (x,y,z size {img.GetSize()}) does not match the "
                f"reference grid size {geo.size}"
            )
        img.SetSpacing(geo.spacing)
        img.SetOrigin(geo.origin)
        img.SetDirection(geo.direction)
    return img


def nibabel_to_image(img: Any) -> sitk.Image:
    """A nibabel image (RAS affine; e.g. nilearn's MNI152 templates) as a SimpleITK image (LPS)
    at the same physical place."""
    arr = np.asarray(img.dataobj, dtype=np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    flip = np.diag([-1.0, -1.0, 1.0])
    m = flip @ img.affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    out.SetSpacing(tuple(float(s) for s in spacing))
    out.SetDirection(tuple(float(v) for v in (m / spacing).ravel()))
    out.SetOrigin(tuple(float(v) for v in flip @ img.affine[:3, 3]))
    return out


# ----------------------------------------------------------------------------------------- write
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.

    The temporary name keeps the file's extension so that format-by-extension writers work.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    ext = image_extension(final) or final.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{ext}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 & ~umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``final`` to write into; on success it takes ``final``'s
    place as a whole, on failure it is deleted and ``final`` is left as it was.

    The temporary folder is ``.<name>.tmp-<random>`` and gets the mode a plain ``mkdir`` would. An
    existing ``final`` (folder or file) is first renamed to ``.<name>.old-<pid>``, then removed once
    the new folder is in place; if that last rename fails, the old one is put back. Checking whether
    ``final`` may be replaced is the caller's business.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates the folder 0700
        yield tmp
        if not final.exists() and not final.is_symlink():
            os.replace(tmp, final)
            return
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)  # a leftover of a killed process that had the same id
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        _remove(old)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree if it is there (ignoring what cannot be deleted)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting and restoring (not thread-safe)
    os.umask(mask)
    return mask


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` atomically; the format follows the extension of ``path``."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    return write_bytes(text.encode("utf-8"), path)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (sorted keys, numpy scalars and arrays converted)."""
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n", path)


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------- hashes
def file_hash(path: str | os.PathLike | DicomSeries, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (of every file, in name order, for a DICOM folder; of the
    series' files in slice order, with their names, for a :class:`DicomSeries`)."""
    h = hashlib.sha256()
    if isinstance(path, DicomSeries):
        for f in path.files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                while block := fh.read(chunk):
                    h.update(block)
        return h.hexdigest()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def array_hash(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()
