"""Peritumoural (ring) radiomics: first-order features of each sequence in shells just outside
the tumour region.

Manual delineation leaves out the non-enhancing infiltration that surrounds a glioma; its signal
shows in the tissue just outside the mask (peritumoural or "habitat" radiomics, e.g. Prasanna et
al. 2017). With ``peritumoural_mm = [0, 5, 10]`` (the run config's ``radiomics.peritumoural_mm``,
``gliorad features radiomics --peritumoural-mm 0,5,10``) each sequence gets, besides its
radiomics inside the region, pyradiomics' first-order features in the rings (0, 5] and (5, 10] mm
outside the region:

* **Ring masks** (:func:`ring_masks`): the signed Euclidean distance of every voxel to the region
  (SimpleITK ``SignedMaurerDistanceMap`` in mm, with the image's spacing, so anisotropic voxels
  are measured correctly; positive outside), ring = ``lo < d <= hi``. The distance is computed in
  the box of the region grown by the outermost boundary (the same distances, far less work).
  The region is gliorad's region of interest (``region``: whole tumour by default; for ``core``
  or ``enhancing`` the rings hold the other tumour labels around it).
* **Inside the brain**: each ring is intersected with the image's nonzero voxels. For a
  skull-stripped image (BraTS, gliorad's preprocess stage) these are the brain, so a ring stops
  at the brain's edge instead of reaching into the zero background. On an image that is not
  skull-stripped, rings take in whatever lies outside the region (skull, scalp): skull-strip first.
* **Features**: pyradiomics' ``firstorder`` class (all its non-deprecated features) on the
  ``Original`` image, with the ``setting`` block of the user's parameters, so intensity
  normalisation, resampling, bin width and voxel-array shift are those of the region's features
  (with resampling, pyradiomics resamples the ring mask as it does the region's).
* **Names**: the ring is the pyradiomics image type, ``peri<lo>-<hi>mm`` (:func:`ring_name`), so a
  key is ``peri0-5mm_firstorder_Mean`` and a table column ``flair_peri0-5mm_firstorder_Mean``,
  read by :func:`gliorad.features.radiomics_tables.parse_column` as (sequence, image type,
  class, feature) like any other column. Each ring adds ``diagnostics_<ring>_VoxelNum``.
* **Small rings are a result**: a ring with fewer than ``min_voxels`` voxels (a tumour at the
  brain's edge, a zero-filled image) or one pyradiomics refuses gives NaN features for that ring
  and a note in the case's warnings, not an error (the models impute missing cells).

The per-case function :func:`gliorad.features.radiomics.extract_case` calls :func:`ring_features`
when ``peritumoural_mm`` is given; cohort runs, caches and ``gliorad predict`` go through it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.features.config import ring_bounds

__all__ = ["RING_CLASS", "ring_bounds", "ring_features", "ring_masks", "ring_name", "ring_params"]

#: The pyradiomics feature class computed in the rings.
RING_CLASS = "firstorder"


def ring_name(lo: float, hi: float) -> str:
    """The image-type name of the ring (lo, hi] mm: ``peri0-5mm``, ``peri2.5-7.5mm``."""
    return f"peri{lo:g}-{hi:g}mm"


def ring_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """pyradiomics parameters of the rings: first-order features of the original image, with the
    ``setting`` block of ``params`` (normalisation, resampling, bin width as the region's)."""
    return {"imageType": {"Original": {}}, "featureClass": {RING_CLASS: []},
            "setting": dict(params.get("setting") or {})}


def _ring_feature_names() -> list[str]:
    from radiomics.firstorder import RadiomicsFirstOrder

    return sorted(n for n, deprecated in RadiomicsFirstOrder.getFeatureNames().items()
                  if not deprecated)


def ring_masks(region: sitk.Image, image: sitk.Image, bounds: Sequence[float]
               ) -> list[tuple[str, sitk.Image, int]]:
    """(name, binary UInt8 mask, voxel count) of each ring (lo, hi] mm outside ``region`` (a
    binary mask on the grid of ``image``), restricted to ``image``'s nonzero voxels."""
    bounds = ring_bounds(bounds)
    sel = sitk.GetArrayViewFromImage(region) > 0
    shape = sel.shape
    dists = np.full(shape, np.inf, dtype=np.float64)
    if sel.any():
        spacing = np.asarray(image.GetSpacing(), dtype=float)[::-1]  # (z, y, x) as the array
        grow = np.ceil(bounds[-1] / spacing).astype(int) + 1
        nz = np.nonzero(sel)
        lo = [max(0, int(i.min()) - g) for i, g in zip(nz, grow)]
        hi = [min(n, int(i.max()) + 1 + g) for i, n, g in zip(nz, shape, grow)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        sub = sitk.GetImageFromArray(sel[box].astype(np.uint8))
        sub.SetSpacing(image.GetSpacing())
        sub.SetDirection(image.GetDirection())
        d = sitk.SignedMaurerDistanceMap(sub, insideIsPositive=False, squaredDistance=False,
                                         useImageSpacing=True)
        dists[box] = sitk.GetArrayFromImage(d)
    brain = sitk.GetArrayViewFromImage(image) != 0
    out = []
    for a, b in pairwise(bounds):
        ring = (dists > a) & (dists <= b) & brain & ~sel
        mask = sitk.GetImageFromArray(ring.astype(np.uint8))
        mask.CopyInformation(image)
        out.append((ring_name(a, b), mask, int(np.count_nonzero(ring))))
    return out


def ring_features(image: sitk.Image, region: sitk.Image, params: Mapping[str, Any],
                  bounds: Sequence[float], min_voxels: int,
                  extractor: Callable[[str], Any]) -> tuple[dict[str, float], dict[str, Any],
                                                            list[str]]:
    """Features, diagnostics and notes of the rings of one image (see the module docstring).

    ``extractor`` makes a pyradiomics ``RadiomicsFeatureExtractor`` from parameters as JSON
    (:func:`gliorad.features.radiomics._extractor`, cached per process). Features are keyed
    ``<ring>_firstorder_<feature>``; a ring that is too small or refused gives NaN features and
    a note.
    """
    rparams = ring_params(params)
    ext = extractor(json.dumps(rparams, sort_keys=True))
    names = _ring_feature_names()
    feats: dict[str, float] = {}
    diags: dict[str, Any] = {}
    notes: list[str] = []
    for name, mask, n in ring_masks(region, image, bounds):
        diags[f"diagnostics_{name}_VoxelNum"] = n
        values: dict[str, float] = {}
        if n < min_voxels:
            notes.append(f"peritumoural ring {name}: {n} voxel(s) inside the image's nonzero "
                         f"voxels, fewer than min_voxels {min_voxels}; its features are NaN")
        else:
            try:
                result = ext.execute(image, mask, label=1)
            except ValueError as err:  # pyradiomics refusing the mask (e.g. after resampling)
                notes.append(f"peritumoural ring {name}: pyradiomics cannot use it ({err}); its "
                             "features are NaN")
            else:
                prefix = f"original_{RING_CLASS}_"
                values = {k[len(prefix):]: float(v) for k, v in result.items()
                          if k.startswith(prefix)}
        for f in names:
            feats[f"{name}_{RING_CLASS}_{f}"] = values.get(f, math.nan)
    return feats, diags, notes
