"""Slice-stack import: folders of 2D multi-channel ``.tif`` slices -> BraTS 2018 NIfTI volumes.

Some public sets ship each patient as 2D slices, e.g. the TCGA-LGG slice set of Buda et al. 2019
(one folder per patient, ``<id>_<n>.tif`` slices of 3 channels -- pre-contrast T1, FLAIR,
post-contrast T1 -- and ``<id>_<n>_mask.tif`` FLAIR-abnormality masks). :func:`import_slices`
stacks each patient's slices in slice-number order into volumes written in BraTS 2018 naming
(``<id>/<id>_t1.nii.gz``, ``_flair``, ``_t1ce``, ``_seg``), which every gliorad command reads.

What the slices do not record, and is therefore an assumption stated in each patient's
``<id>_import.json``:

* **Voxel spacing.** TIFF slices carry no slice spacing (and their pixel size is not the
  scanner's). The default :data:`DEFAULT_SPACING` (1 x 1 x 5 mm: 256-pixel slices of a 22-26 cm
  field of view, 5 mm axial slices, typical of the set's 20-88-slice clinical acquisitions) is a
  guess; give the real one (``--spacing``) where the original DICOM headers are known. Shape and
  texture features depend on it; intensity statistics do not.
* **Orientation.** Slices are taken as displayed: rows run anterior -> posterior, columns
  patient right -> left (radiological view), slice 1 is the most inferior; that is the identity
  direction in SimpleITK's LPS frame, origin 0.

Mask labels: every non-zero mask pixel becomes label ``label`` (default 1) -- here "FLAIR
abnormality", *not* BraTS' "necrotic core". Set ``cohort.seg_labels: [0, 1]`` so that a stray
label is caught, and use the ``whole`` radiomics region (``core`` / ``enhancing`` mean nothing
for such masks).

The set replaced a missing sequence by a copy of FLAIR; a channel identical to the FLAIR channel
on every slice is therefore not written (a warning says so), and the patient lacks that sequence.
Every slice is checked (one file-name series per folder, consecutive slice numbers, a mask for
each slice, one size and channel count, binary masks); each problem names the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.errors import GlioradInputError

#: Channel order of the TCGA-LGG slice set (Buda et al. 2019).
DEFAULT_CHANNELS: tuple[str, ...] = ("t1", "flair", "t1ce")
#: Assumed voxel spacing x, y, z in mm (see the module docstring): the slices do not record it.
DEFAULT_SPACING: tuple[float, float, float] = (1.0, 1.0, 5.0)
SEQUENCES = ("t1", "t1ce", "t2", "flair")
SLICE_EXTENSIONS = (".tif", ".tiff")
_NAME = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)


@dataclass
class SliceImportResult:
    """What :func:`import_slices` did: patients written, skipped (already there), failed."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """The sequence name of each channel: standard names (t1, t1ce, t2, flair), each once."""
    out = tuple(c.strip() for c in channels)
    bad = [c for c in out if c not in SEQUENCES]
    if not out or bad:
        raise GlioradInputError(
            f"channels {list(out)}: {', '.join(map(repr, bad)) or 'empty'} not valid; expected "
            f"sequence names from: {', '.join(SEQUENCES)} (one per channel, in channel order)")
    if len(set(out)) != len(out):
        raise GlioradInputError(f"channels {list(out)}: a sequence is named twice")
    return out


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    vals = tuple(float(s) for s in spacing)
    if len(vals) != 3 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise GlioradInputError(f"spacing {list(spacing)}: expected three positive numbers x, y, z "
                                "in mm, e.g. 1,1,5")
    return vals  # type: ignore[return-value]


def slice_patients(src: str | Path) -> dict[str, Path]:
    """Patient id -> folder of its slices: each sub-folder of ``src`` holding ``.tif`` files, or
    ``src`` itself (named by its folder) when the slices lie directly in it."""
    src = Path(src)
    if not src.is_dir():
        raise GlioradInputError(f"{src}: folder not found")

    def has_tif(d: Path) -> bool:
        return any(p.is_file() and p.suffix.lower() in SLICE_EXTENSIONS for p in d.iterdir())

    if has_tif(src):
        return {src.name: src}
    out = {d.name: d for d in sorted(src.iterdir()) if d.is_dir() and has_tif(d)}
    if not out:
        raise GlioradInputError(
            f"{src}: no .tif slices found (expected one folder per patient holding "
            "<id>_<n>.tif slices and optional <id>_<n>_mask.tif masks)")
    return out


def _read(path: Path) -> sitk.Image | str:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        return f"{path}: cannot be read as an image ({detail[:200]})"


def read_slice_stack(folder: str | Path, channels: Sequence[str] = DEFAULT_CHANNELS
                     ) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, Any]]:
    """One patient's slices as volumes: ``({sequence: (z, y, x) array}, mask or None, info)``.

    ``mask`` is boolean (any non-zero pixel); ``info`` holds the slice numbers, the source file
    series and the sequences left out as copies of FLAIR. Raises :class:`GlioradInputError`
    listing every problem, each naming its file.
    """
    folder = Path(folder)
    channels = check_channels(channels)
    problems: list[str] = []
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    stems: set[str] = set()
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in SLICE_EXTENSIONS:
            continue
        m = _NAME.match(p.name)
        if m is None:
            problems.append(f"{p}: file name does not end with _<slice number>.tif or "
                            "_<slice number>_mask.tif")
            continue
        stems.add(m["stem"])
        n, target = int(m["n"]), (masks if m["mask"] else images)
        if n in target:
            problems.append(f"{p}: slice {n} given twice (also {target[n].name})")
            continue
        target[n] = p
    if len(stems) > 1:
        problems.append(f"{folder}: slices of {len(stems)} series ({', '.join(sorted(stems))}); "
                        "expected one <id>_<n>.tif series per patient folder")
    if not images and not problems:
        problems.append(f"{folder}: no image slices (only masks)")
    if problems:
        raise GlioradInputError(problems)
    numbers = sorted(images)
    gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if gaps:
        problems.append(f"{folder}: slice number(s) {_ranges(gaps)} missing (found "
                        f"{numbers[0]}-{numbers[-1]}); a volume needs every slice")
    for n in sorted(set(masks) - set(images)):
        problems.append(f"{masks[n]}: mask of slice {n}, which has no image slice")
    if masks:
        for n in numbers:
            if n not in masks:
                problems.append(f"{images[n]}: slice {n} has no mask (expected "
                                f"{images[n].stem}_mask{images[n].suffix})")
    if problems:
        raise GlioradInputError(problems)

    ref: tuple[Path, tuple[int, ...]] | None = None
    planes: list[np.ndarray] = []
    mplanes: list[np.ndarray] = []
    for n in numbers:
        img = _read(images[n])
        if isinstance(img, str):
            problems.append(img)
            continue
        size = _plane_size(img)
        ncomp = img.GetNumberOfComponentsPerPixel()
        if size is None:
            problems.append(f"{images[n]}: image of size {_size(img.GetSize())}; expected a 2D "
                            "slice")
            continue
        if ref is None:
            ref = (images[n], size)
        elif size != ref[1]:
            problems.append(f"{images[n]}: slice size {_size(size)} differs from "
                            f"{_size(ref[1])} of {ref[0].name} (every slice of a patient must "
                            "have one size)")
            continue
        if ncomp != len(channels):
            problems.append(f"{images[n]}: {ncomp} channel(s); expected {len(channels)} "
                            f"({', '.join(channels)}; set the channels to match)")
            continue
        arr = sitk.GetArrayFromImage(img).reshape(size[1], size[0], ncomp)
        planes.append(arr)
        if n in masks:
            mask = _read_mask(masks[n], size)
            if isinstance(mask, str):
                problems.append(mask)
                continue
            mplanes.append(mask)
    if problems:
        raise GlioradInputError(problems)
    stack = np.stack(planes)  # (z, y, x, c)
    volumes = {seq: np.ascontiguousarray(stack[..., i]) for i, seq in enumerate(channels)}
    copies: list[str] = []
    if "flair" in volumes:
        copies = [s for s in channels
                  if s != "flair" and np.array_equal(volumes[s], volumes["flair"])]
        for s in copies:
            del volumes[s]
    info = {"slices": len(numbers), "first_slice": numbers[0], "last_slice": numbers[-1],
            "series": next(iter(stems)), "channels": list(channels),
            "copies_of_flair": copies, "slice_size_xy": list(ref[1]) if ref else None}
    return volumes, (np.stack(mplanes) if mplanes else None), info


def _plane_size(img: sitk.Image) -> tuple[int, int] | None:
    size = img.GetSize()
    if len(size) == 2:
        return int(size[0]), int(size[1])
    if len(size) == 3 and size[2] == 1:
        return int(size[0]), int(size[1])
    return None


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray | str:
    img = _read(path)
    if isinstance(img, str):
        return img
    if _plane_size(img) != size:
        return (f"{path}: mask size {_size(img.GetSize())} differs from its slice's "
                f"{_size(size)}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        return (f"{path}: mask has {img.GetNumberOfComponentsPerPixel()} channels; expected a "
                "1-channel binary mask")
    arr = sitk.GetArrayFromImage(img).reshape(size[1], size[0])
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0) or np.any(values < 0):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        return (f"{path}: mask values {shown}; expected a binary mask (0 and one other value, "
                "e.g. 0/255)")
    return arr != 0


def _size(size: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in size)


def _ranges(numbers: list[int]) -> str:
    out, start = [], numbers[0]
    for a, b in zip(numbers, [*numbers[1:], None], strict=True):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


def volume_image(array: np.ndarray, spacing: Sequence[float]) -> sitk.Image:
    """A (z, y, x) array as an image with ``spacing`` (x, y, z), origin 0, identity direction."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def import_slices(
    src: str | Path,
    out: str | Path,
    spacing: Sequence[float] = DEFAULT_SPACING,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    label: int = 1,
    overwrite: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SliceImportResult:
    """Stack every patient folder of ``src`` into ``out/<id>/<id>_<sequence>.nii.gz`` (and
    ``_seg`` from the masks, label ``label``), with ``<id>_import.json`` recording the source and
    the assumptions. A patient already in ``out`` is skipped unless ``overwrite``. A patient with
    bad slices is not written; the others are, and every problem is listed in the result (the
    command exits 2 with them). Each patient folder is written whole or not at all."""
    from gliorad import __version__
    from gliorad.io import atomic_dir, write_json

    spacing = check_spacing(spacing)
    channels = check_channels(channels)
    if not 1 <= int(label) <= 255:
        raise GlioradInputError(f"label {label}: expected an integer from 1 to 255")
    out = Path(out)
    patients = slice_patients(src)
    res = SliceImportResult(out_dir=out)
    for pid, folder in patients.items():
        dest = out / pid
        if dest.exists() and not overwrite:
            res.skipped.append(pid)
            continue
        try:
            volumes, mask, info = read_slice_stack(folder, channels)
        except GlioradInputError as err:
            res.failed.append(pid)
            res.problems.extend(err.problems)
            continue
        notes = [f"{s} is a copy of the FLAIR channel on every slice (the set's stand-in for a "
                 f"missing sequence): not written" for s in info["copies_of_flair"]]
        record = {
            "gliorad_version": __version__, "source": str(folder), **info,
            "sequences_written": sorted(volumes),
            "spacing_mm": list(spacing),
            "spacing_assumed": True,
            "orientation": "as displayed: rows anterior->posterior, columns right->left, slice "
                           "numbers inferior->superior (identity direction, LPS); assumed",
            "mask_label": {"value": int(label), "meaning": "non-zero pixel of the slice masks "
                           "(FLAIR abnormality in the TCGA-LGG slice set)"} if mask is not None
            else None,
            "mask_voxels": int(mask.sum()) if mask is not None else None,
            "warnings": notes,
        }
        with atomic_dir(dest) as tmp:
            for seq, arr in volumes.items():
                sitk.WriteImage(volume_image(arr, spacing), str(tmp / f"{pid}_{seq}.nii.gz"),
                                useCompression=True)
            if mask is not None:
                sitk.WriteImage(volume_image(mask.astype(np.uint8) * np.uint8(label), spacing),
                                str(tmp / f"{pid}_seg.nii.gz"), useCompression=True)
            write_json(record, tmp / f"{pid}_import.json")
        res.done.append(pid)
        res.records[pid] = record
        if notes:
            res.warnings[pid] = notes
        if echo is not None:
            echo(f"{pid}: {info['slices']} slices -> {', '.join(sorted(volumes))}"
                 f"{' + seg' if mask is not None else ''}")
    return res
