"""Planning the U-Net from the training cohort (``segmentation.plan``; the ``auto`` preset), as
nnU-Net configures itself from a dataset fingerprint.

:func:`fingerprint` reads every training patient once: native spacing and size, the brain's
bounding box in mm (voxels where any sequence is nonzero), per-sequence intensity statistics
inside the brain, and the manual whole-tumour volume. :func:`plan_from_fingerprint` turns it into
settings, each decision with its reason (``plans.json`` in the model folder):

* **Working spacing**: the cohort's median spacing per axis. A cohort whose median spacing has a
  ratio above ``plan.anisotropy`` (a stack of thick slices, e.g. 0.9 x 0.9 x 5.5 mm) keeps its
  through-plane spacing instead of being resampled to an isotropic grid. Then, while the median
  brain box would hold more than ``plan.volume_voxels`` voxels, the finest axes are coarsened
  (by 10 % a step, never beyond the coarsest axis): the time / memory budget.
* **Patch size**: the median brain box at that spacing, shrunk along its longest extent (mm) until
  it has at most ``plan.patch_voxels`` voxels, then rounded to the nearest multiple of the
  pooling (smaller volumes are zero-padded for training; prediction covers the whole brain).
* **Pooling and depth**: level by level, an axis is pooled (factor 2) while its patch size stays
  at least ``plan.min_bottleneck`` voxels and its current spacing is at most twice the finest
  current spacing (so a thick-slice axis is pooled only once the in-plane axes have caught up),
  up to ``plan.max_levels`` levels.
* **Widths**: ``base_features`` doubled per level up to ``max_features``; the bottleneck twice
  the last level (capped the same way).

Spacings are in SimpleITK's (x, y, z) order; patch sizes and strides in the arrays' (z, y, x).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError
from gliorad.io import Geometry, read_image
from gliorad.segmentation.config import PlanConfig, SegmentationConfig, validate_config

__all__ = ["fingerprint", "plan_from_fingerprint", "plan_segmentation"]


def _case_fingerprint(cohort: Cohort, pid: str, sequences: Sequence[str]) -> dict[str, Any]:
    images = [read_image(cohort.image_path(pid, s), sitk.sitkFloat32) for s in sequences]
    geo = Geometry.of(images[0])
    arrays = [sitk.GetArrayFromImage(img) for img in images]
    brain = np.zeros(arrays[0].shape, bool)
    for a in arrays:
        if a.shape == brain.shape:
            brain |= a != 0
    idx = np.argwhere(brain)
    box_vox = (idx.max(0) - idx.min(0) + 1) if idx.size else np.asarray(brain.shape)
    box_mm = [float(n * s) for n, s in zip(box_vox[::-1], geo.spacing)]  # (x, y, z)
    intensity = {}
    for seq, a in zip(sequences, arrays):
        vals = a[brain] if a.shape == brain.shape and brain.any() else a.ravel()
        q = np.percentile(vals, [0.5, 50, 99.5]) if vals.size else [math.nan] * 3
        intensity[seq] = {"p0.5": float(q[0]), "median": float(q[1]), "p99.5": float(q[2]),
                          "mean": float(vals.mean()) if vals.size else math.nan,
                          "sd": float(vals.std()) if vals.size else math.nan}
    tumour_ml = None
    seg = cohort.patients[pid].files.get(SEG)
    if seg is not None:
        s = sitk.GetArrayFromImage(read_image(seg))
        tumour_ml = float((s > 0).sum() * np.prod(geo.spacing) / 1000.0)
    return {"spacing": [float(v) for v in geo.spacing], "size": [int(v) for v in geo.size],
            "brain_box_mm": box_mm, "brain_ml": float(brain.sum() * np.prod(geo.spacing) / 1000.0),
            "intensity": intensity, "tumour_ml": tumour_ml}


def _files_key(cohort: Cohort, pid: str, sequences: Sequence[str]) -> dict[str, list[Any]]:
    """What a patient's fingerprint was read from: each file's path, size and modification time."""
    keys = [*sequences, SEG] if SEG in cohort.patients[pid].files else list(sequences)
    out = {}
    for k in keys:
        path = cohort.patients[pid].files[k]
        st = path.stat()
        out[k] = [str(path), st.st_size, st.st_mtime_ns]
    return out


def fingerprint(cohort: Cohort, ids: Sequence[str], sequences: Sequence[str],
                previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training cohort's fingerprint (see the module docstring): per patient and pooled.
    ``previous`` (an earlier ``plans.json``'s ``patients``): a patient whose files (path, size,
    modification time) are unchanged is not read again, so re-running a finished or interrupted
    training does not re-read the cohort."""
    if not ids:
        raise GlioradInputError(f"{cohort.root}: no training patient to plan from")
    cases = {}
    for pid in ids:
        files = _files_key(cohort, pid, sequences)
        old = (previous or {}).get(pid)
        cases[pid] = (old if old is not None and old.get("files") == files
                      else {**_case_fingerprint(cohort, pid, sequences), "files": files})
    spacing = np.array([c["spacing"] for c in cases.values()])
    box = np.array([c["brain_box_mm"] for c in cases.values()])
    tumours = [c["tumour_ml"] for c in cases.values() if c["tumour_ml"] is not None]
    return {
        "n_patients": len(cases), "sequences": list(sequences),
        "median_spacing": [float(v) for v in np.median(spacing, 0)],
        "median_brain_box_mm": [float(v) for v in np.median(box, 0)],
        "tumour_ml": ({"median": float(np.median(tumours)), "min": float(min(tumours)),
                       "max": float(max(tumours))} if tumours else None),
        "patients": cases,
    }


def _working_spacing(median: Sequence[float], box_mm: Sequence[float], plan: PlanConfig
                     ) -> tuple[list[float], bool, list[str]]:
    sp = [float(v) for v in median]
    anisotropic = max(sp) / min(sp) > plan.anisotropy
    why = [f"median spacing {_fmt(sp)} mm" + (f" (anisotropic: ratio {max(sp) / min(sp):.1f} > "
                                             f"{plan.anisotropy}; through-plane kept)" if anisotropic else "")]
    if not anisotropic:
        sp = [min(sp)] * len(sp)  # isotropic at the finest median spacing
    start = list(sp)
    while math.prod(b / s for b, s in zip(box_mm, sp)) > plan.volume_voxels:
        finest = min(sp)
        coarsest = max(sp)
        if math.isclose(finest, coarsest):
            sp = [s * 1.1 for s in sp]
        else:
            sp = [min(s * 1.1, coarsest) if math.isclose(s, finest) else s for s in sp]
    sp = [round(s, 3) for s in sp]
    if sp != [round(s, 3) for s in start]:
        why.append(f"coarsened to {_fmt(sp)} mm so that the median brain box "
                   f"({_fmt(box_mm)} mm) holds at most {plan.volume_voxels} voxels")
    return sp, anisotropic, why


def _strides(patch: Sequence[int], spacing: Sequence[float], plan: PlanConfig) -> list[tuple[int, ...]]:
    size, sp, levels = list(patch), list(spacing), []
    for _ in range(plan.max_levels):
        finest = min(sp)
        st = tuple(2 if size[a] // 2 >= plan.min_bottleneck and sp[a] <= 2 * finest else 1
                   for a in range(len(size)))
        if max(st) == 1:
            break
        levels.append(st)
        size = [n // s for n, s in zip(size, st)]
        sp = [v * s for v, s in zip(sp, st)]
    return levels


def plan_from_fingerprint(fp: dict[str, Any], cfg: SegmentationConfig) -> tuple[SegmentationConfig, dict[str, Any]]:
    """The settings ``cfg.plan`` chooses for the fingerprinted cohort, and the plan's record."""
    plan = cfg.plan
    if plan is None:
        raise GlioradInputError("segmentation.plan is not set; nothing to plan")
    box_mm = fp["median_brain_box_mm"]
    spacing_xyz, anisotropic, why = _working_spacing(fp["median_spacing"], box_mm, plan)
    sp_zyx = spacing_xyz[::-1]
    shape = [max(1, math.ceil(b / s)) for b, s in zip(box_mm[::-1], sp_zyx)]
    patch = list(shape)
    while math.prod(patch) > plan.patch_voxels:
        axis = int(np.argmax([n * s for n, s in zip(patch, sp_zyx)]))
        patch[axis] = max(plan.min_bottleneck, int(patch[axis] * 0.9))
    strides = _strides(patch, sp_zyx, plan)
    multiple = [math.prod(st[a] for st in strides) for a in range(3)]
    patch = [max(m, math.floor(n / m + 0.5) * m) for n, m in zip(patch, multiple)]
    why.append(f"median brain box {shape} voxels (z, y, x) at that spacing; patch {patch} "
               f"(about {plan.patch_voxels} voxels at most, the nearest multiple of the pooling {multiple})")
    levels = len(strides)
    if levels == 0:
        raise GlioradInputError(
            f"the planned patch {patch} is too small to pool (plan.min_bottleneck "
            f"{plan.min_bottleneck}); raise plan.patch_voxels")
    features = tuple(min(plan.base_features * 2**i, plan.max_features) for i in range(levels))
    bottleneck = min(2 * features[-1], plan.max_features)
    why.append(f"{levels} levels, strides {[list(s) for s in strides]}, features {list(features)}, "
               f"bottleneck {bottleneck}")
    net = {**cfg.net.model_dump(), "features": features, "bottleneck": bottleneck,
           "strides": tuple(tuple(s) for s in strides),
           "deep_supervision": min(cfg.net.deep_supervision, levels - 1)}
    data = cfg.model_dump()
    data.update(spacing=tuple(spacing_xyz) if anisotropic else spacing_xyz[0], patch_size=tuple(patch),
                net=net)
    planned = validate_config(data, "plan")
    record = {"fingerprint": {k: v for k, v in fp.items() if k != "patients"},
              "patients": fp["patients"],
              "decisions": {"spacing_xyz_mm": spacing_xyz, "anisotropic": anisotropic,
                            "patch_size_zyx": patch, "strides_zyx": [list(s) for s in strides],
                            "features": list(features), "bottleneck": bottleneck,
                            "deep_supervision": net["deep_supervision"]},
              "why": why, "budget": plan.model_dump()}
    return planned, record


def plan_segmentation(cohort: Cohort, ids: Sequence[str], cfg: SegmentationConfig,
                      previous: str | Path | None = None) -> tuple[SegmentationConfig, dict[str, Any]]:
    """:func:`fingerprint` of the training patients (reusing the unchanged patients of an earlier
    ``plans.json`` at ``previous``), then :func:`plan_from_fingerprint`."""
    old = None
    if previous is not None and Path(previous).is_file():
        try:
            old = json.loads(Path(previous).read_text(encoding="utf-8")).get("patients")
        except (json.JSONDecodeError, AttributeError):
            old = None  # unreadable: fingerprint again
    return plan_from_fingerprint(fingerprint(cohort, ids, cfg.sequences, old), cfg)


def _fmt(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values)
