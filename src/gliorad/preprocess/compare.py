"""Compare a brain mask with another pipeline's in that pipeline's space (Dice)."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.errors import GlioradInputError
from gliorad.preprocess.config import RegistrationSettings
from gliorad.preprocess.steps import isotropic_grid, mask_image, register, resample_to


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays of one shape (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise GlioradInputError(f"dice: shapes {a.shape} and {b.shape} differ")
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def mask_dice_in_reference(
    mask: sitk.Image,
    image: sitk.Image,
    reference_image: sitk.Image,
    reference_mask: sitk.Image | None = None,
    settings: RegistrationSettings | None = None,
    seeds: tuple[int, ...] = (1,),
) -> tuple[float, dict[str, Any]]:
    """Dice of ``mask`` against ``reference_mask`` after both are in the reference's space.

    ``image`` is an (unstripped) image in ``mask``'s physical space, e.g. the raw T1-Gd the output
    grid was made from; it is registered (rigid by default, Mattes MI sampled inside the reference
    brain only, so the alignment follows the anatomy inside the brain and not either mask's outline)
    to ``reference_image`` (another pipeline's skull-stripped image, brain = non-zero voxels unless
    ``reference_mask`` is given), and ``mask`` is resampled into the reference grid (linear, > 0.5).
    The registration runs once per sampling seed in ``seeds`` and the transform with the best
    mutual information (all evaluated on the same voxels) is used, so a local optimum reached by
    one sampling does not decide the figure.
    """
    rset = settings or RegistrationSettings(transform="rigid", working_spacing=1.5, sampling=0.2)
    ref_img = sitk.Cast(reference_image, sitk.sitkFloat32)
    ref_mask = (sitk.GetArrayFromImage(reference_mask) > 0 if reference_mask is not None
                else sitk.GetArrayFromImage(ref_img) != 0)
    fixed = resample_to(ref_img, isotropic_grid(ref_img, rset.working_spacing))
    fmask = resample_to(mask_image(ref_mask, ref_img), fixed, None, "nearest", sitk.sitkUInt8)
    moving = resample_to(sitk.Cast(image, sitk.sitkFloat32),
                         isotropic_grid(image, rset.working_spacing))
    runs = [register(fixed, moving, rset.model_copy(update={"seed": sd}), fmask) for sd in seeds]
    best = min(range(len(runs)), key=lambda i: runs[i][1]["final_metric"])
    tx, info = runs[best]
    info = {**info, "seed": seeds[best],
            "final_metric_per_seed": {sd: r[1]["final_metric"] for sd, r in zip(seeds, runs)}}
    warped = sitk.GetArrayFromImage(
        resample_to(sitk.Cast(mask, sitk.sitkFloat32), ref_img, tx, "linear")) > 0.5
    vox_ml = float(np.prod(ref_img.GetSpacing())) / 1000.0
    out = {"registration": info, "mask_ml_in_reference": float(warped.sum() * vox_ml),
           "reference_ml": float(ref_mask.sum() * vox_ml)}
    return dice(warped, ref_mask), out
