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


class CaseCache:
    """Training / validation volumes, kept in memory up to ``cache_gb`` (then read each time).

    Volumes smaller than ``min_size`` are zero-padded at the far end; the tumour and brain voxel
    indices that the tumour-biased crop needs are computed once per volume.
    """

    def __init__(self, cohort: Cohort, cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]],
                 min_size: Sequence[int]):
        self.cohort, self.cfg, self.regions, self.min_size = cohort, cfg, regions, tuple(min_size)
        self.items: dict[str, dict[str, Any]] = {}
        self.budget = int(cfg.cache_gb * 2**30)
        self.used = 0
        self.meta: dict[str, dict[str, Any]] = {}

    def get(self, pid: str) -> dict[str, Any]:
        if pid in self.items:
            return self.items[pid]
        case = load_case(self.cohort, pid, self.cfg, with_label=True, regions=self.regions)
        image, label = _pad_to(case.image, self.min_size), _pad_to(case.label, self.min_size)
        brain = _pad_to(case.brain, self.min_size)
        fg = np.flatnonzero(label.any(axis=0))
        bg = np.flatnonzero(brain & ~label.any(axis=0))
        if bg.size == 0:
            bg = np.flatnonzero(~label.any(axis=0))
        item = {"pid": pid, "image": image, "label": label,
                "label_fg_indices": fg, "label_bg_indices": bg}
        self.meta[pid] = {"native_spacing": list(case.native.spacing), "resampled": case.resampled,
                          "shape": list(case.image.shape[1:]),
                          "working_spacing": list(case.grid.spacing)}
        size = image.nbytes + label.nbytes + fg.nbytes + bg.nbytes
        if self.used + size <= self.budget:
            self.items[pid] = item
            self.used += size
        return item


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
