"""The numerical steps, each a small function on SimpleITK images (LPS physical space).

* :func:`load_sequence`: read, check it is a scalar 3D volume, reorient to LPS axes (a permutation
  / flip of the voxel axes; no resampling), float32.
* :func:`head_mask`: Otsu foreground, largest component, holes filled slice by slice.
* :func:`n4_correct`: N4 on a shrunk copy, bias field evaluated at full resolution.
* :func:`isotropic_grid` / :func:`resample_to`: a grid with the same physical extent at a new
  spacing, and resampling onto a grid through a transform.
* :func:`register`: multi-resolution Mattes-MI rigid (optionally then affine) registration.
* :func:`zscore` / :func:`intensity_stats`: normalisation inside a mask.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from gliorad.errors import GlioradInputError
from gliorad.io import read_image
from gliorad.preprocess.config import N4Settings, RegistrationSettings

INTERPOLATORS: dict[str, int] = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "nearest": sitk.sitkNearestNeighbor,
}


@contextlib.contextmanager
def sitk_threads(n: int | None) -> Iterator[None]:
    """Set SimpleITK's default thread count for the duration (None: leave it), then restore it."""
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if n is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


# ------------------------------------------------------------------------------------------ load
def load_sequence(path: str) -> sitk.Image:
    """A raw sequence as a float32 LPS-oriented 3D image (raises naming the file)."""
    img = read_image(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise GlioradInputError(
            f"{path}: image has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
            "expected a scalar MRI volume"
        )
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise GlioradInputError(
            f"{path}: image has {img.GetDimension()} dimensions (size {img.GetSize()}); expected a "
            "3D volume"
        )
    if min(img.GetSize()) < 2:
        raise GlioradInputError(f"{path}: image size {img.GetSize()} is not a 3D volume")
    img = sitk.DICOMOrient(sitk.Cast(img, sitk.sitkFloat32), "LPS")
    arr = sitk.GetArrayViewFromImage(img)
    if float(arr.max()) == float(arr.min()):
        raise GlioradInputError(f"{path}: image is constant (every voxel = {float(arr.min()):g}); "
                                "expected an MRI volume")
    return img


# ----------------------------------------------------------------------------------------- masks
def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    return lab == int(np.argmax(counts))


def fill_holes_slices(mask: np.ndarray) -> np.ndarray:
    """Fill holes in 3D and then in every slice along each axis (heads cut by the field of view
    are open in 3D but closed in most slices)."""
    out = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        moved = np.moveaxis(out, axis, 0)
        for i in range(moved.shape[0]):
            if moved[i].any():
                moved[i] = ndimage.binary_fill_holes(moved[i])
    return out


def ball(radius_vox: tuple[float, float, float]) -> np.ndarray:
    """Ellipsoidal structuring element with radii in voxels per (z, y, x) axis."""
    r = [max(math.floor(v), 0) for v in radius_vox]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    rad = [max(v, 1e-6) for v in radius_vox]
    return (zz / rad[0]) ** 2 + (yy / rad[1]) ** 2 + (xx / rad[2]) ** 2 <= 1.0


def radius_vox(image: sitk.Image, mm: float) -> tuple[float, float, float]:
    """A radius in mm as voxels along (z, y, x)."""
    sx, sy, sz = image.GetSpacing()
    return (mm / sz, mm / sy, mm / sx)


def head_mask_array(arr: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Foreground (head) of a (z, y, x) array: Otsu threshold of the positive voxels, a 2 mm
    closing, the largest component, holes filled."""
    pos = arr[arr > 0]
    if pos.size < 10:
        return np.zeros(arr.shape, bool)
    thr = otsu_threshold(pos)
    fg = arr > thr
    fg = ndimage.binary_closing(fg, ball(radius_vox(image, 2.0)), border_value=0)
    fg = largest_component(fg)
    return fill_holes_slices(fg)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (intensities above the 99.5th percentile are clipped so a
    few very bright voxels do not squeeze the histogram)."""
    hi = float(np.percentile(values, 99.5))
    lo = float(values.min())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def head_mask(image: sitk.Image) -> sitk.Image:
    """:func:`head_mask_array` as a uint8 image on ``image``'s grid."""
    arr = sitk.GetArrayViewFromImage(image)
    return mask_image(head_mask_array(arr, image), image)


def mask_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(reference)
    return out


# -------------------------------------------------------------------------------------------- N4
def n4_correct(
    image: sitk.Image, settings: N4Settings, mask: sitk.Image | None = None
) -> tuple[sitk.Image, dict[str, Any]]:
    """N4 bias-field correction (Tustison et al. 2010) fitted on a copy shrunk to about
    ``settings.shrink_mm`` voxels inside ``mask`` (default: the head mask), the log bias field then
    evaluated on the full grid; returns the corrected image and facts for the QC record."""
    arr = sitk.GetArrayViewFromImage(image)
    m = head_mask_array(arr, image) if mask is None else sitk.GetArrayFromImage(mask).astype(bool)
    m &= arr > 0  # N4 works on log intensities
    if m.sum() < 100:
        raise GlioradInputError("N4: fewer than 100 positive foreground voxels to fit a bias field")
    shrink = [max(1, round(settings.shrink_mm / s)) for s in image.GetSpacing()]
    shrink = [min(f, max(1, n // 4)) for f, n in zip(shrink, image.GetSize())]
    mimg = mask_image(m, image)
    small = sitk.Shrink(image, shrink)
    small_mask = sitk.Shrink(mimg, shrink)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in settings.iterations])
    n4.SetConvergenceThreshold(settings.convergence)
    n4.SetNumberOfControlPoints([settings.control_points] * 3)
    n4.Execute(small, small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(image)
    corrected = sitk.Cast(image / sitk.Exp(log_bias), sitk.sitkFloat32)
    lb = sitk.GetArrayViewFromImage(log_bias)[m]
    return corrected, {
        "shrink_factors": shrink,
        "iterations_run": int(n4.GetElapsedIterations()),
        "bias_min": float(np.exp(lb.min())),
        "bias_max": float(np.exp(lb.max())),
        "mask_voxels": int(m.sum()),
    }


# ------------------------------------------------------------------------------------ resampling
def isotropic_grid(image: sitk.Image, spacing: float) -> sitk.Image:
    """An empty (uint8) image covering the same physical box as ``image`` at ``spacing`` mm, same
    direction. Voxel edges, not centres, are kept: the first voxel's outer edge stays in place."""
    old_sp = np.asarray(image.GetSpacing())
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    size = [max(1, round(n * s / spacing)) for n, s in zip(image.GetSize(), old_sp)]
    edge = np.asarray(image.GetOrigin()) - d @ (0.5 * old_sp)
    origin = edge + d @ (0.5 * np.full(3, spacing))
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing((float(spacing),) * 3)
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return grid


def resample_to(
    image: sitk.Image,
    grid: sitk.Image,
    transform: sitk.Transform | None = None,
    interpolation: str = "linear",
    pixel_type: int = sitk.sitkFloat32,
) -> sitk.Image:
    """``image`` on ``grid``'s voxels; ``transform`` maps grid (fixed) points to image points."""
    tx = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    return sitk.Resample(image, grid, tx, INTERPOLATORS[interpolation], 0.0, pixel_type)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


# ---------------------------------------------------------------------------------- registration
def registration_method(
    settings: RegistrationSettings, fixed_mask: sitk.Image | None,
    shrink: list[int] | None = None, smooth: list[float] | None = None,
    *, iterations: int | None = None, lbfgs: bool = False,
) -> sitk.ImageRegistrationMethod:
    """Mattes MI sampled at random (``settings.sampling``, seeded) inside ``fixed_mask``, linear
    interpolation, multi-resolution ``shrink`` / ``smooth`` (mm; default the settings'); regular-
    step gradient descent with physical-shift scales (``iterations`` or the settings'), or with
    ``lbfgs`` L-BFGS-B (``iterations`` or 50; for B-spline stages)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(settings.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    if lbfgs:
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5,
                                 numberOfIterations=iterations or 50,
                                 maximumNumberOfCorrections=5,
                                 maximumNumberOfFunctionEvaluations=400)
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=settings.learning_rate, minStep=settings.min_step,
            numberOfIterations=iterations or settings.iterations, relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(settings.shrink_factors if shrink is None else shrink)
    reg.SetSmoothingSigmasPerLevel(settings.smoothing_mm if smooth is None else smooth)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def run_registration(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
                     transform: sitk.Transform, settings: RegistrationSettings,
                     what: str) -> dict[str, Any]:
    """Optimise ``transform`` in place (one ITK thread when ``settings.deterministic``); the
    optimiser's iterations and stop condition. Raises :class:`GlioradInputError` (``<what>
    registration failed: <ITK's reason>``) when ITK cannot register the pair."""
    reg.SetInitialTransform(transform, inPlace=True)
    try:
        with sitk_threads(1 if settings.deterministic else None):
            reg.Execute(fixed, moving)
    except RuntimeError as err:
        raise GlioradInputError(f"{what} registration failed: {_itk_reason(err)}") from err
    return {"iterations": int(reg.GetOptimizerIteration()),
            "stop": reg.GetOptimizerStopConditionDescription()}


def affine_from(transform: sitk.Transform) -> sitk.AffineTransform:
    """The affine transform equal to a rigid or similarity ``transform`` (its next stage's
    start)."""
    aff = sitk.AffineTransform(3)
    aff.SetCenter(transform.GetCenter())
    aff.SetMatrix(transform.GetMatrix())
    aff.SetTranslation(transform.GetTranslation())
    return aff


def metric_value(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                 settings: RegistrationSettings, fixed_mask: sitk.Image | None = None) -> float:
    """Mattes MI (negative: lower is better) of ``moving`` under ``transform`` on a fixed random
    quarter of the fixed voxels inside ``fixed_mask`` (the same voxels for every candidate
    transform, so the values compare)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(settings.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.25, 12345)
    reg.SetMetricUseFixedImageGradientFilter(False)  # no gradient images: only the value is used
    reg.SetMetricUseMovingImageGradientFilter(False)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform)
    try:
        return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:  # every sample maps outside the moving image
        return 0.0


def _centred_rigid(fixed: sitk.Image, moving: sitk.Image, mode: str) -> sitk.Euler3DTransform:
    if mode == "identity":
        centre = fixed.TransformContinuousIndexToPhysicalPoint(
            [(n - 1) / 2 for n in fixed.GetSize()])
        return sitk.Euler3DTransform(centre, 0.0, 0.0, 0.0, (0.0, 0.0, 0.0))
    flag = {"moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
            "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY}[mode]
    tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), flag)
    return sitk.Euler3DTransform(tx)


def register(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
    fixed_mask: sitk.Image | None = None,
) -> tuple[sitk.Transform, dict[str, Any]]:
    """Rigid (then, if ``settings.transform == 'affine'``, affine) registration of ``moving`` to
    ``fixed`` by Mattes mutual information, multi-resolution (``shrink_factors`` /
    ``smoothing_mm``), regular-step gradient descent with physical-shift scales.

    Start: the best (by the metric) of the identity (same scanner frame, e.g. sequences of one
    session), the image centres aligned (GEOMETRY) and the intensity centroids aligned (MOMENTS).
    The returned transform maps fixed points to moving points (as ``sitk.Resample`` wants).
    Raises :class:`GlioradInputError` when ITK cannot register the pair.
    """
    starts = {m: _centred_rigid(fixed, moving, m) for m in ("identity", "geometry", "moments")}
    scores = {m: metric_value(fixed, moving, t, settings, fixed_mask) for m, t in starts.items()}
    start = min(scores, key=lambda m: scores[m])
    rigid = sitk.Euler3DTransform(starts[start])
    info: dict[str, Any] = {"start": start, "start_metrics": scores, "stages": []}
    stages: list[tuple[str, sitk.Transform]] = [("rigid", rigid)]
    if settings.transform == "affine":
        stages.append(("affine", None))  # type: ignore[arg-type]
    final: sitk.Transform = rigid
    for name, tx in stages:
        if name == "affine":
            tx = affine_from(rigid)
        run = run_registration(registration_method(settings, fixed_mask), fixed, moving, tx,
                               settings, name)
        info["stages"].append({"stage": name, **run})
        final = tx
    info["initial_metric"] = scores[start]
    info["final_metric"] = metric_value(fixed, moving, final, settings, fixed_mask)
    info["transform"] = transform_record(final)
    return final, info


def transform_record(tx: sitk.Transform) -> dict[str, Any]:
    """Parameters of a rigid/affine transform for the QC record (matrix, translation, angles)."""
    out: dict[str, Any] = {"type": tx.GetName()}
    if hasattr(tx, "GetMatrix"):
        mat = np.asarray(tx.GetMatrix()).reshape(3, 3)
        out["matrix"] = mat.round(6).tolist()
        out["translation_mm"] = [round(float(v), 4) for v in tx.GetTranslation()]
        out["center_mm"] = [round(float(v), 4) for v in tx.GetCenter()]
        u, s, vt = np.linalg.svd(mat)
        rot = u @ vt
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rot) - 1) / 2))))
        out["rotation_deg"] = round(angle, 4)
        out["scales"] = [round(float(v), 5) for v in s]
    return out


def _itk_reason(err: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "description" in ln.lower() or "error" in ln.lower():
            return ln.split(":", 1)[-1].strip()[:200]
    return (lines[-1] if lines else "unknown ITK error")[:200]


# ----------------------------------------------------------------------------------- intensities
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def intensity_stats(arr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, SD and percentiles of ``arr`` inside ``mask``."""
    v = np.asarray(arr[mask], dtype=np.float64)
    if v.size == 0:
        raise GlioradInputError("intensity statistics: the mask is empty")
    pct = np.percentile(v, PERCENTILES)
    out = {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()),
           "max": float(v.max())}
    out.update({f"p{p}": float(q) for p, q in zip(PERCENTILES, pct)})
    return out


def zscore(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(arr - mean) / SD with mean and SD of the voxels in ``mask``; 0 outside the mask; float32.

    Raises when the mask is empty or the intensities inside it are constant.
    """
    v = np.asarray(arr[mask], dtype=np.float64)
    if v.size == 0:
        raise GlioradInputError("z-score: the brain mask is empty")
    mean, sd = float(v.mean()), float(v.std())
    if not sd > 0:
        raise GlioradInputError(f"z-score: intensities inside the brain are constant ({mean:g})")
    out = np.zeros(arr.shape, np.float32)
    out[mask] = ((v - mean) / sd).astype(np.float32)
    return out
