"""A patient's input for the U-Net: sequences and manual mask read, checked, resampled and
normalised (:func:`load_case`), the grids involved, the volumes cached between epochs.

Each patient's chosen sequences are read as channels (all must share one grid), resampled to
``spacing`` mm (isotropic; linear for images, nearest for the mask) when the cohort's spacing
differs, and z-scored per channel inside the brain (voxels where any sequence is nonzero; 0
outside). Z-scoring is always applied; it leaves data that is already z-scored inside the brain
unchanged. Labels follow ``label_mode`` (see :mod:`gliorad.segmentation.config`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError
from gliorad.io import Geometry, read_image
from gliorad.segmentation.config import BRATS2018_REGIONS, REGION_NAMES, SegmentationConfig

__all__ = [
    "Case",
    "CaseCache",
    "load_case",
    "reference_image",
    "region_masks",
    "resample_to",
    "usable_ids",
    "versions",
    "working_grid",
]


@dataclass
class Case:
    """One patient on the working grid. Arrays are numpy (z, y, x) order."""

    pid: str
    image: np.ndarray  # (C, z, y, x) float32, z-scored inside the brain, 0 outside
    brain: np.ndarray  # (z, y, x) bool
    label: np.ndarray | None  # (K, z, y, x) uint8 or None
    grid: Geometry  # geometry of the arrays
    native: Geometry  # geometry of the input images
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def resampled(self) -> bool:
        return self.grid != self.native


def reference_image(geo: Geometry) -> sitk.Image:
    """An empty image on grid ``geo``: the reference of a resampling onto that grid."""
    img = sitk.Image([int(s) for s in geo.size], sitk.sitkUInt8)
    img.SetSpacing(geo.spacing)
    img.SetOrigin(geo.origin)
    img.SetDirection(geo.direction)
    return img


def working_grid(native: Geometry, spacing: float | Sequence[float] | None) -> Geometry:
    """The grid of the arrays: ``native`` itself, or the same box at ``spacing`` (one number:
    isotropic; else per axis in SimpleITK's (x, y, z) order, e.g. a slice stack's
    (0.9, 0.9, 5.5) kept anisotropic)."""
    if spacing is None:
        return native
    target = ((float(spacing),) * len(native.size) if isinstance(spacing, int | float)
              else tuple(float(v) for v in spacing))
    if len(target) != len(native.size):
        raise GlioradInputError(f"spacing {tuple(target)} has {len(target)} axes; the images have "
                                f"{len(native.size)}")
    if np.allclose(native.spacing, target, rtol=1e-3, atol=0):
        return native
    size = tuple(max(1, math.ceil(n * s / t - 1e-6))
                 for n, s, t in zip(native.size, native.spacing, target))
    return Geometry(size, target, native.origin, native.direction)


def resample_to(img: sitk.Image, grid: Geometry, interpolator: int) -> sitk.Image:
    return sitk.Resample(img, reference_image(grid), sitk.Transform(), interpolator, 0.0, img.GetPixelID())


def region_masks(seg: np.ndarray, label_mode: str, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Manual labels (z, y, x) -> training targets (K, z, y, x) uint8."""
    if label_mode == "wt":
        return (seg > 0)[None].astype(np.uint8)
    return np.stack([np.isin(seg, regions[r]) for r in REGION_NAMES]).astype(np.uint8)


def load_case(cohort: Cohort, pid: str, cfg: SegmentationConfig, *, with_label: bool,
              regions: Mapping[str, Sequence[int]] | None = None) -> Case:
    """Read, check, resample and normalise one patient (see the module docstring)."""
    files = {seq: cohort.image_path(pid, seq) for seq in cfg.sequences}
    images = [read_image(files[s], sitk.sitkFloat32) for s in cfg.sequences]
    native = Geometry.of(images[0])
    for seq, img in zip(cfg.sequences[1:], images[1:]):
        diff = native.differences(Geometry.of(img))
        if diff:
            raise GlioradInputError(
                f"{files[seq]}: grid differs from {files[cfg.sequences[0]].name} ({'; '.join(diff)}); "
                "expected co-registered sequences on one grid (run gliorad preprocess)"
            )
    grid = working_grid(native, cfg.spacing)
    if grid != native:
        images = [resample_to(img, grid, sitk.sitkLinear) for img in images]
    arr = np.stack([sitk.GetArrayFromImage(img) for img in images]).astype(np.float32)
    brain = np.any(arr != 0, axis=0)
    if not brain.any():
        raise GlioradInputError(f"patient {pid!r}: every voxel of {', '.join(cfg.sequences)} is 0")
    for c, seq in enumerate(cfg.sequences):
        vals = arr[c][brain]
        sd = float(vals.std())
        if not sd > 0:
            raise GlioradInputError(f"{files[seq]}: constant inside the brain; expected an MRI image")
        arr[c] = np.where(brain, (arr[c] - float(vals.mean())) / sd, 0.0)
    label = None
    if with_label:
        seg_path = cohort.patients[pid].files.get(SEG)
        if seg_path is None:
            raise GlioradInputError(f"patient {pid!r}: no manual segmentation (seg) in {cohort.root}")
        seg_img = read_image(seg_path)
        diff = native.differences(Geometry.of(seg_img))
        if diff:
            raise GlioradInputError(
                f"{seg_path}: grid differs from {files[cfg.sequences[0]].name} ({'; '.join(diff)})"
            )
        if grid != native:
            seg_img = resample_to(seg_img, grid, sitk.sitkNearestNeighbor)
        seg = sitk.GetArrayFromImage(seg_img)
        if cfg.label_mode == "regions":
            known = set(regions["WT"]) | {0}
            extra = sorted(set(np.unique(seg).tolist()) - known)
            if extra:
                raise GlioradInputError(
                    f"{seg_path}: labels {extra} are in no region; expected labels in {sorted(known)}"
                )
        label = region_masks(seg, cfg.label_mode, regions or BRATS2018_REGIONS)
        if seg_path is not None:
            files[SEG] = seg_path
    return Case(pid, arr, brain, label, grid, native, files)


def _pad_to(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    pad = [(0, 0)] * (arr.ndim - len(size)) + [(0, max(0, s - n)) for n, s in zip(arr.shape[-len(size):], size)]
    return np.pad(arr, pad) if any(p[1] for p in pad) else arr


#: Version of the on-disk volume cache's layout (part of each entry's key).
DISK_FORMAT = "gliorad-volume-cache-1"


class CaseCache:
    """Training / validation volumes, kept in memory up to ``cache_gb``; beyond it, with a
    ``disk_dir``, as ready arrays on disk (``.npy`` memory maps: a patch reads only its own bytes,
    worker processes share the page cache), else read again each time.

    Volumes smaller than ``min_size`` are zero-padded at the far end; the tumour and brain voxel
    indices that the tumour-biased crop needs are computed once per volume. A disk entry is a
    folder ``<disk_dir>/<key>`` (image float32, label uint8, the two index arrays, meta.json),
    ``key`` the SHA-256 of the patient's input files' SHA-256, the settings that make the arrays
    (sequences, spacing, label mode, regions, minimum size) and :data:`DISK_FORMAT`; it survives
    between epochs and runs and is shared by runs with the same inputs and settings. The arrays
    are float32 as in memory, so a patch is the same whichever way its volume came.
    ``disk_all``: every volume goes to disk (a cache for later runs), not only those beyond the
    memory budget.
    """

    def __init__(self, cohort: Cohort, cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]],
                 min_size: Sequence[int], disk_dir: str | Path | None = None, disk_all: bool = False):
        self.cohort, self.cfg, self.regions, self.min_size = cohort, cfg, regions, tuple(min_size)
        self.items: dict[str, dict[str, Any]] = {}
        self.budget = int(cfg.cache_gb * 2**30)
        self.used = 0
        self.meta: dict[str, dict[str, Any]] = {}
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.disk_all = disk_all
        self.on_disk: dict[str, Path] = {}

    def get(self, pid: str) -> dict[str, Any]:
        if pid in self.items:
            return self.items[pid]
        item = self._from_disk(pid) if self.disk_dir is not None else None
        if item is None:
            item = self._load(pid)
        size = sum(item[k].nbytes for k in ("image", "label", "label_fg_indices", "label_bg_indices"))
        if self.used + size <= self.budget:
            if pid in self.on_disk:  # read the memory map into memory once
                item = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}
            self.items[pid] = item
            self.used += size
            if self.disk_all and pid not in self.on_disk:
                self._to_disk(pid, item)
        elif self.disk_dir is not None and pid not in self.on_disk:
            item = self._to_disk(pid, item)
        return item

    def _load(self, pid: str) -> dict[str, Any]:
        case = load_case(self.cohort, pid, self.cfg, with_label=True, regions=self.regions)
        image, label = _pad_to(case.image, self.min_size), _pad_to(case.label, self.min_size)
        brain = _pad_to(case.brain, self.min_size)
        fg = np.flatnonzero(label.any(axis=0))
        bg = np.flatnonzero(brain & ~label.any(axis=0))
        if bg.size == 0:
            bg = np.flatnonzero(~label.any(axis=0))
        self.meta[pid] = {"native_spacing": list(case.native.spacing), "resampled": case.resampled,
                          "shape": list(case.image.shape[1:]),
                          "working_spacing": list(case.grid.spacing)}
        return {"pid": pid, "image": image, "label": label, "label_fg_indices": fg,
                "label_bg_indices": bg}

    def disk_key(self, pid: str) -> str:
        """The disk entry's name of patient ``pid`` (see the class docstring)."""
        import hashlib
        import json

        from gliorad.io import file_hash

        files = {s: self.cohort.image_path(pid, s) for s in self.cfg.sequences}
        seg = self.cohort.patients[pid].files.get(SEG)
        if seg is None:
            raise GlioradInputError(f"patient {pid!r}: no manual segmentation (seg) in {self.cohort.root}")
        files[SEG] = seg
        spacing = self.cfg.spacing
        payload = {"format": DISK_FORMAT, "inputs": {k: file_hash(p) for k, p in files.items()},
                   "sequences": list(self.cfg.sequences), "label_mode": self.cfg.label_mode,
                   "spacing": list(spacing) if isinstance(spacing, tuple) else spacing,
                   "regions": {k: list(v) for k, v in sorted(dict(self.regions).items())},
                   "min_size": list(self.min_size)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    _ARRAYS = ("image", "label", "label_fg_indices", "label_bg_indices")

    def _from_disk(self, pid: str) -> dict[str, Any] | None:
        import json

        folder = self.disk_dir / self.disk_key(pid)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            return None
        try:
            item = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in self._ARRAYS}
            self.meta[pid] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a damaged entry is made again
            return None
        self.on_disk[pid] = folder
        return {"pid": pid, **item}

    def _to_disk(self, pid: str, item: dict[str, Any]) -> dict[str, Any]:
        """Write ``item`` as a disk entry (atomically: a folder renamed into place) and return
        it read back as memory maps."""
        import json
        import os
        import shutil
        import tempfile

        self.disk_dir.mkdir(parents=True, exist_ok=True)
        folder = self.disk_dir / self.disk_key(pid)
        if not (folder / "meta.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=self.disk_dir))
            try:
                for k in self._ARRAYS:
                    np.save(tmp / f"{k}.npy", np.ascontiguousarray(item[k]))
                (tmp / "meta.json").write_text(json.dumps(self.meta.get(pid, {})), encoding="utf-8")
                try:
                    os.rename(tmp, folder)
                except OSError:  # another process wrote the same entry first
                    if not (folder / "meta.json").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self.on_disk[pid] = folder
        return {"pid": pid, **{k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in self._ARRAYS}}

    def preload(self, ids: Sequence[str]) -> None:
        """Load (or find on disk) every volume of ``ids`` now, e.g. before worker processes are
        started, which then share them instead of each reading its own copies."""
        for pid in ids:
            self.get(pid)


def usable_ids(cohort: Cohort, cfg: SegmentationConfig, ids: Sequence[str] | None, need_seg: bool) -> list[str]:
    """The patients of ``ids`` (default: the cohort's) that have the sequences (and with
    ``need_seg`` the manual mask); a patient named in ``ids`` that lacks one is an error."""
    chosen = list(ids) if ids is not None else cohort.ids
    unknown = [p for p in chosen if p not in cohort.patients]
    if unknown:
        raise GlioradInputError(f"patients {unknown} are not in the cohort {cohort.root}")
    keys = list(cfg.sequences) + ([SEG] if need_seg else [])
    problems = []
    usable = []
    for pid in chosen:
        missing = cohort.patients[pid].missing(keys)
        if missing and (ids is not None or set(missing) != {SEG}):
            problems.append(f"patient {pid!r}: missing {', '.join(missing)} in {cohort.root}")
        elif not missing:
            usable.append(pid)
    if problems:
        raise GlioradInputError(problems)
    return usable


def versions() -> dict[str, str]:
    """The versions recorded in the stage's provenance files."""
    from gliorad.provenance import versions as recorded

    return recorded("gliorad", "torch", "monai", "SimpleITK", "numpy", "python")
