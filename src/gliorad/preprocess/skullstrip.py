"""Skull stripping: a registry of strippers (name -> callable), so a better one drops in.

A stripper is ``fn(images, config) -> StripResult``: ``images`` maps sequence names to the
co-registered, bias-corrected (not normalised) images on the output grid; it returns a uint8 brain
mask on that grid and facts for the QC record. Register another with :func:`register_stripper`
(e.g. a wrapper around HD-BET) and select it with ``PreprocessConfig.stripper``.

Built in:

* ``atlas``: the MNI152 2009c T1 template and brain mask shipped in nilearn's wheel, registered to
  the patient (similarity -> affine -> optional coarse B-spline, Mattes MI restricted to the head),
  the brain mask warped and refined (see :func:`atlas_strip`).
* ``nonzero``: the voxels that are non-zero in any sequence, holes filled (already stripped data,
  e.g. BraTS).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from gliorad.errors import GlioradInputError, check_option
from gliorad.io import nibabel_to_image
from gliorad.preprocess.config import PreprocessConfig, RegistrationSettings
from gliorad.preprocess.steps import (
    affine_from,
    ball,
    fill_holes_slices,
    head_mask_array,
    isotropic_grid,
    largest_component,
    mask_image,
    metric_value,
    radius_vox,
    registration_method,
    resample_to,
    run_registration,
    transform_record,
)


@dataclass
class StripResult:
    mask: sitk.Image
    info: dict[str, Any] = field(default_factory=dict)


Stripper = Callable[[dict[str, sitk.Image], PreprocessConfig], StripResult]

STRIPPERS: dict[str, Stripper] = {}


def register_stripper(name: str, fn: Stripper, replace: bool = False) -> None:
    """Make ``fn`` available as ``PreprocessConfig(stripper=name)``."""
    if name in STRIPPERS and not replace:
        raise GlioradInputError(f"stripper {name!r} is already registered (pass replace=True)")
    STRIPPERS[name] = fn


def get_stripper(name: str) -> Stripper:
    return STRIPPERS[check_option("stripper", name, sorted(STRIPPERS))]


# --------------------------------------------------------------------------------------- nonzero
def nonzero_strip(images: dict[str, sitk.Image], config: PreprocessConfig) -> StripResult:
    """Brain = voxels non-zero in any sequence, enclosed holes filled."""
    ref = images[config.reference]
    m = np.zeros(sitk.GetArrayViewFromImage(ref).shape, bool)
    for img in images.values():
        m |= sitk.GetArrayViewFromImage(img) != 0
    m = ndimage.binary_fill_holes(m)
    return StripResult(mask_image(m, ref), {"method": "non-zero voxels of any sequence"})


# ----------------------------------------------------------------------------------------- atlas
@functools.lru_cache(maxsize=4)
def mni_template(spacing: float = 1.0) -> tuple[sitk.Image, sitk.Image]:
    """The MNI152 2009c T1 template (skull-stripped, 0..1) and its brain mask (float 0/1), from
    nilearn's wheel (no download), resampled to ``spacing`` mm."""
    from nilearn import datasets

    t1 = nibabel_to_image(datasets.load_mni152_template(resolution=1))
    mask = nibabel_to_image(datasets.load_mni152_brain_mask(resolution=1))
    if spacing != 1.0:
        grid = isotropic_grid(t1, spacing)
        t1 = resample_to(t1, grid)
        mask = resample_to(mask, grid)
    return t1, mask


def _centroid(mask: np.ndarray, image: sitk.Image) -> np.ndarray:
    zyx = np.argwhere(mask).mean(axis=0)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


def _stage(fixed, moving, tx, settings: RegistrationSettings, mask, shrink, smooth,
           iterations: int | None = None, lbfgs: bool = False) -> dict[str, Any]:
    reg = registration_method(settings, mask, shrink, smooth, iterations=iterations, lbfgs=lbfgs)
    return run_registration(reg, fixed, moving, tx, settings, "atlas")


def atlas_strip(images: dict[str, sitk.Image], config: PreprocessConfig) -> StripResult:
    """Atlas skull stripping.

    1. Head mask of the strip image (first of ``config.atlas.sequences`` present, else the
       reference sequence): Otsu, closing, largest component, holes filled.
    2. The skull-stripped MNI152 T1 template is registered to the patient on an isotropic
       ``working_spacing`` grid with Mattes MI sampled inside the head mask only: start with the
       template brain's centroid on the centroid of the head's deep part (>= 15 mm from its
       surface), then similarity, affine and (``bspline``) a coarse B-spline stage.
    3. The template brain mask is warped onto the output grid (linear, > 0.5).
    4. ``refine``: inside the head mask only; voxels brighter than the brain's 99.5th percentile
       (fat, marrow, vessels) at the mask's rim (outer 6 mm) are dropped; 1 mm opening; largest
       component; holes filled.
    """
    acfg = config.atlas
    seq = next((s for s in acfg.sequences if s in images), config.reference)
    image = images[seq]
    rset = config.registration.model_copy(update={
        "seed": acfg.seed, "sampling": acfg.sampling, "learning_rate": acfg.learning_rate,
        "min_step": acfg.min_step})
    grid = isotropic_grid(image, acfg.working_spacing)
    fixed = resample_to(image, grid)
    farr = sitk.GetArrayViewFromImage(fixed)
    head = head_mask_array(farr, fixed)
    if head.sum() < 1000:
        raise GlioradInputError(f"atlas skull strip: no head found in the {seq} image")
    depth = ndimage.distance_transform_edt(head, sampling=(acfg.working_spacing,) * 3)
    head_img = mask_image(depth > acfg.scalp_mm, fixed)
    deep = largest_component(depth >= 15.0)
    if deep.sum() < 100:
        deep = head
    tpl, tpl_mask = mni_template(acfg.working_spacing)
    tmask = sitk.GetArrayViewFromImage(tpl_mask) > 0.5
    shift = _centroid(tmask, tpl_mask) - _centroid(deep, fixed)
    sim = sitk.Similarity3DTransform()
    sim.SetCenter(tuple(float(v) for v in _centroid(tmask, tpl_mask)))
    sim.SetTranslation(tuple(float(v) for v in shift))
    info: dict[str, Any] = {"sequence": seq, "template": "MNI152 2009c (nilearn)", "stages": []}
    info["initial_metric"] = metric_value(fixed, tpl, sim, rset, head_img)
    st = _stage(fixed, tpl, sim, rset, head_img, [4, 2, 1], [4.0, 2.0, 1.0])
    info["stages"].append({"stage": "similarity", **st})
    aff = affine_from(sim)
    st = _stage(fixed, tpl, aff, rset, head_img, [2, 1], [2.0, 1.0])
    info["stages"].append({"stage": "affine", **st})
    info["affine"] = transform_record(aff)
    final: sitk.Transform = aff
    if acfg.bspline:
        mesh = [max(1, round(n * s / acfg.bspline_mesh_mm))
                for n, s in zip(fixed.GetSize(), fixed.GetSpacing())]
        bsp = sitk.BSplineTransformInitializer(fixed, mesh, 3)
        comp = sitk.CompositeTransform([aff, bsp])
        st = _stage(fixed, tpl, comp, rset, head_img, acfg.bspline_shrink,
                    [float(f) for f in acfg.bspline_shrink], iterations=acfg.bspline_iterations,
                    lbfgs=True)
        info["stages"].append({"stage": "bspline", "mesh": mesh, **st})
        final = comp
    info["final_metric"] = metric_value(fixed, tpl, final, rset, head_img)
    _, full_mask = mni_template(1.0)
    if acfg.bspline:  # a dense field is much cheaper to evaluate on the fine grid than B-splines
        final = _as_displacement_field(final, fixed)
    warped = sitk.GetArrayFromImage(resample_to(full_mask, image, final)) > 0.5
    out_head = head_mask_array(sitk.GetArrayViewFromImage(image), image)
    info["atlas_mask_ml"] = float(warped.sum() * np.prod(image.GetSpacing()) / 1000)
    if acfg.refine:
        warped = refine_mask(warped, out_head, sitk.GetArrayViewFromImage(image), image)
    if warped.sum() == 0:
        raise GlioradInputError(f"atlas skull strip: empty brain mask for the {seq} image")
    return StripResult(mask_image(warped, image), info)


def _as_displacement_field(tx: sitk.Transform, grid: sitk.Image, pad: int = 2) -> sitk.Transform:
    """``tx`` sampled on ``grid`` padded by ``pad`` voxels per side (linear interpolation)."""
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    sp = np.asarray(grid.GetSpacing())
    origin = np.asarray(grid.GetOrigin()) - d @ (pad * sp)
    size = [int(n) + 2 * pad for n in grid.GetSize()]
    field = sitk.TransformToDisplacementField(
        tx, sitk.sitkVectorFloat64, size, tuple(float(v) for v in origin),
        tuple(float(v) for v in sp), grid.GetDirection())
    return sitk.DisplacementFieldTransform(field)


def refine_mask(mask: np.ndarray, head: np.ndarray, arr: np.ndarray, image: sitk.Image,
                rim_mm: float = 6.0) -> np.ndarray:
    """Keep the mask inside the head; drop very bright voxels (fat, marrow, vessels: above the
    99.5th percentile of the brain's inner part) in the outer ``rim_mm`` of the mask; 1 mm
    opening, largest component, holes filled."""
    m = mask & head
    if not m.any():
        return m
    inner = ndimage.distance_transform_edt(m, sampling=image.GetSpacing()[::-1]) > rim_mm
    core = arr[inner] if inner.sum() > 1000 else arr[m]
    hi = float(np.percentile(core, 99.5))
    rim = m & ~inner
    m = m & ~(rim & (arr > hi))
    m = ndimage.binary_opening(m, ball(radius_vox(image, 1.0)))
    m = largest_component(m)
    return fill_holes_slices(m)


register_stripper("atlas", atlas_strip)
register_stripper("nonzero", nonzero_strip)
