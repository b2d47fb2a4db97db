"""Coordinate cropping (Xu et al. 2022): tumour-centred patches, largest-area slices, whole volumes.

The paper "obtain[s] the coordinate information of the tumor" from the segmentation, then crops
patches "at the center of the tumor ... to ensure that the tumor area is all in the patches"
(3D ResNet input 96x128x96), and, for the 2D dual-task network, takes "the slice with the largest
tumor area" with T1, T2 and T1-Gd "fused on the channel" (3x240x240). The ablation's "complete MRI"
input is the whole volume.

**Axis convention.** Every function works on numpy arrays in the order :mod:`gliorad.io` returns
them, ``(z, y, x)`` for 3D (2D arrays ``(y, x)`` work too), and every size is given in that same
order. The paper's 96x128x96 reads the same in (x, y, z) and (z, y, x) order: 128 is the middle
axis, y (anterior-posterior, the brain's longest), 96 is x (left-right) and z (slices). Sizes are
in voxels of the preprocessed grid (1 mm isotropic in the paper).

**Patch placement** (:func:`crop_patch`). The tumour's bounding box ``[lo, hi)`` per axis (from
the mask, label > 0) fixes the centre; the patch starts at ``floor((lo + hi - size) / 2)``, so the
patch centre is within half a voxel of the box centre and the whole box is inside whenever it fits.
Near the image border the patch runs outside the image and is padded with ``pad_value``
(``border="pad"``, the default), or it is shifted back inside the image so no padding is needed
(``border="shift"``; the tumour then is off-centre but still wholly inside). A tumour larger than
the patch along any axis is handled by cutting a larger region, ``ceil(size / f)`` with
``f = min(size / extent)``, and resampling it down to ``size`` (Gaussian anti-aliasing and linear
interpolation for images, nearest neighbour for the mask); the record says so (``downscaled``,
``scale``).

**Context margin** (not in the paper; ``margin``, voxels per axis, default 0). The paper's rule
keeps only the box when a tumour is larger than the patch, so the tissue around a large tumour
(e.g. non-enhancing infiltration beyond the delineated oedema) is cut away for exactly the largest
tumours. With ``margin = g`` the box is grown by ``g`` voxels on each side before the rule above:
a tumour whose box plus margins fits is cropped exactly as before (same centre, same patch); a
larger one is resampled down until box and margins fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gliorad.errors import GlioradInputError, check_option

# The paper's patch and slice geometry and the border modes are settings' defaults: defined once
# in the light gliorad.features.config (the deep-feature settings validate without NumPy / SciPy).
from gliorad.features.config import (
    BORDER_MODES,
    PAPER_PATCH_SIZE,
    PAPER_SLICE_SEQUENCES,
    PAPER_SLICE_SIZE,
)
from gliorad.provenance import read_record

Volumes = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CropRecord:
    """Where a patch came from, in input voxel coordinates (axis order of the arrays).

    ``bbox``: tumour bounding box ``[lo, hi)`` per axis; ``centre``: its centre; ``start`` and
    ``region``: the input region cut (``start`` may be negative, ``region`` is larger than
    ``size`` when the region was resampled down); ``padding``: voxels of ``pad_value`` added
    before / after per axis (in the region's voxels); ``scale``: output voxels per input voxel per
    axis (1.0 when not resampled); ``offset``: patch centre minus tumour centre, in input voxels.
    """

    size: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]
    centre: tuple[float, ...]
    start: tuple[int, ...]
    region: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    downscaled: bool
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    tumour_voxels: int
    border: str
    margin: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -------------------------------------------------------------------------------------- checks
def _check_size(size: Sequence[int], ndim: int, name: str = "size") -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in size)
    except (TypeError, ValueError) as err:
        raise GlioradInputError(f"{name} {size!r}: expected {ndim} positive integers") from err
    if len(out) != ndim or any(s < 1 for s in out) or any(float(a) != b for a, b in zip(size, out)):
        raise GlioradInputError(
            f"{name} {tuple(size)}: expected {ndim} positive integers (one per array axis, "
            f"in the arrays' (z, y, x) order)"
        )
    return out


def _check_margin(margin: int | Sequence[int], ndim: int, name: str = "margin") -> tuple[int, ...]:
    """Context margin in voxels: one non-negative integer for every axis, or one per axis."""
    values = [margin] * ndim if np.isscalar(margin) else list(margin)
    try:
        out = tuple(int(v) for v in values)
        ok = len(out) == ndim and all(o >= 0 and float(v) == o for v, o in zip(values, out))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise GlioradInputError(
            f"{name} {margin!r}: expected a non-negative integer number of voxels, or {ndim} of "
            f"them (one per array axis, in the arrays' (z, y, x) order)"
        )
    return out


def _as_dict(volumes: Volumes) -> tuple[dict[str, np.ndarray], bool]:
    if isinstance(volumes, np.ndarray):
        return {"": volumes}, True
    if isinstance(volumes, Mapping):
        if not volumes:
            raise GlioradInputError("volumes: empty mapping; expected at least one image")
        return {str(k): np.asarray(v) for k, v in volumes.items()}, False
    raise GlioradInputError(
        f"volumes: got {type(volumes).__name__}; expected a numpy array or a dict of arrays"
    )


def _check_shapes(vols: Mapping[str, np.ndarray], shape: tuple[int, ...], what: str) -> None:
    bad = [f"{k or 'volume'} {v.shape}" for k, v in vols.items() if v.shape != shape]
    if bad:
        raise GlioradInputError(
            f"{', '.join(bad)} do(es) not match the {what} shape {shape}; expected arrays on one grid"
        )


# -------------------------------------------------------------------------------------- bbox
def tumour_bbox(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Bounding box ``((lo, hi), ...)`` (``hi`` exclusive) of the voxels with label > 0.

    Raises :class:`GlioradInputError` for an empty mask.
    """
    m = np.asarray(mask)
    if m.ndim < 1:
        raise GlioradInputError("mask: expected an array with at least one axis")
    fg = m > 0
    if not fg.any():
        raise GlioradInputError(
            f"mask of shape {m.shape} is empty (no voxel with label > 0); expected a tumour mask"
        )
    out = []
    for ax in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != ax)
        idx = np.flatnonzero(fg.any(axis=other) if other else fg)
        out.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


# -------------------------------------------------------------------------------------- patches
def _cut(arr: np.ndarray, start: Sequence[int], region: Sequence[int], fill: float) -> np.ndarray:
    """``arr[start:start+region]`` with out-of-image voxels set to ``fill``."""
    out = np.full(tuple(region), fill, dtype=arr.dtype)
    src, dst = [], []
    for s, r, n in zip(start, region, arr.shape):
        a, b = max(s, 0), min(s + r, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _resize(arr: np.ndarray, size: Sequence[int], order: int) -> np.ndarray:
    """Resample ``arr`` to ``size`` treating voxels as cells (grid corners aligned).

    Images (``order > 0``) shrunk by a factor ``f < 1`` along an axis are first smoothed with a
    Gaussian of sigma ``(1/f - 1) / 2`` voxels there (anti-aliasing, as scikit-image's resize);
    masks (``order = 0``) are sampled nearest-neighbour.
    """
    if tuple(arr.shape) == tuple(size):
        return arr
    zoom = [s / n for s, n in zip(size, arr.shape)]
    if order > 0 and min(zoom) < 1.0:
        sigma = [max(0.0, (1.0 / z - 1.0) / 2.0) for z in zoom]
        arr = ndimage.gaussian_filter(arr, sigma, mode="nearest")
    out = ndimage.zoom(arr, zoom, order=order, mode="nearest", grid_mode=True, prefilter=False)
    if out.shape != tuple(size):  # rounding in ndimage.zoom: cannot happen with exact ratios
        raise RuntimeError(f"resampled shape {out.shape} != {tuple(size)}")
    return out


def _fill(value: float | str, arr: np.ndarray) -> float:
    if isinstance(value, str):
        check_option("pad_value", value, ["min"])
        return float(arr.min())
    return float(value)


def crop_patch(
    volumes: Volumes,
    mask: np.ndarray,
    size: Sequence[int] = PAPER_PATCH_SIZE,
    *,
    border: str = "pad",
    pad_value: float | str = 0.0,
    margin: int | Sequence[int] = 0,
) -> tuple[Volumes, np.ndarray, CropRecord]:
    """Cut a patch of ``size`` voxels centred on the tumour from each volume (and the mask).

    Parameters
    ----------
    volumes : array or dict of arrays
        Images on the mask's grid, in (z, y, x) order (any number of axes equal to the mask's).
    mask : array
        Tumour mask; the region is every voxel with label > 0.
    size : sequence of int
        Patch size per axis, in the arrays' axis order (paper: 96 x 128 x 96).
    border : {"pad", "shift"}
        See the module docstring.
    pad_value : float or "min"
        Value for voxels outside the image (``"min"``: each volume's minimum).
    margin : int or sequence of int
        Voxels of context kept on every side of the tumour's box (one value, or one per axis);
        see the module docstring. 0 (default) is the paper's cropping.

    Returns
    -------
    patches, mask_patch, record
        ``patches`` has the type of ``volumes`` (array or dict, same keys), each ``size`` shaped,
        float32; ``mask_patch`` keeps the mask's labels; ``record`` is a :class:`CropRecord`.
    """
    check_option("border", border, BORDER_MODES)
    m = np.asarray(mask)
    vols, single = _as_dict(volumes)
    _check_shapes(vols, m.shape, "mask")
    size_t = _check_size(size, m.ndim)
    margin_t = _check_margin(margin, m.ndim)
    bbox = tumour_bbox(m)
    box = [(lo - g, hi + g) for (lo, hi), g in zip(bbox, margin_t)]  # same centre as bbox
    extent = [hi - lo for lo, hi in box]
    f = min(1.0, min(s / e for s, e in zip(size_t, extent)))
    downscaled = f < 1.0
    region = tuple(s if not downscaled else max(s, math.ceil(s / f - 1e-9)) for s in size_t)
    start = []
    for (lo, hi), r, n in zip(box, region, m.shape):
        s0 = (lo + hi - r) // 2
        if border == "shift" and r <= n:
            s0 = min(max(s0, 0), n - r)
        start.append(int(s0))
    padding = tuple((max(0, -s0), max(0, s0 + r - n)) for s0, r, n in zip(start, region, m.shape))
    centre = tuple((lo + hi - 1) / 2 for lo, hi in bbox)
    offset = tuple(s0 + (r - 1) / 2 - c for s0, r, c in zip(start, region, centre))
    patches = {}
    for k, v in vols.items():
        cut = _cut(v.astype(np.float32, copy=False), start, region, _fill(pad_value, v))
        patches[k] = _resize(cut, size_t, order=1)
    mcut = _cut(m, start, region, 0)
    mask_patch = _resize(mcut, size_t, order=0)
    record = CropRecord(
        size=size_t, bbox=bbox, centre=centre, start=tuple(start), region=region,
        padding=padding, downscaled=downscaled,
        scale=tuple(s / r for s, r in zip(size_t, region)), offset=offset,
        tumour_voxels=int(np.count_nonzero(m > 0)), border=border, margin=margin_t,
    )
    return (patches[""] if single else patches), mask_patch, record


# -------------------------------------------------------------------------------------- slices
def slice_areas(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Tumour area (voxels with label > 0) of every slice along ``axis``."""
    m = np.asarray(mask)
    if not -m.ndim <= axis < m.ndim:
        raise GlioradInputError(f"axis {axis}: expected an axis of a {m.ndim}-D mask")
    other = tuple(a for a in range(m.ndim) if a != axis % m.ndim)
    return np.count_nonzero(m > 0, axis=other)


def largest_slice(mask: np.ndarray, axis: int = 0) -> int:
    """Index of the slice along ``axis`` with the largest tumour area (axial: ``axis=0`` for
    (z, y, x) arrays). Ties go to the slice nearest the tumour's bounding-box centre, then the lower
    index. Raises :class:`GlioradInputError` for an empty mask."""
    areas = slice_areas(mask, axis)
    if areas.max() == 0:
        raise GlioradInputError(
            f"mask of shape {np.shape(mask)} is empty (no voxel with label > 0); expected a tumour mask"
        )
    best = np.flatnonzero(areas == areas.max())
    nz = np.flatnonzero(areas)
    centre = (nz[0] + nz[-1]) / 2
    return int(best[np.argmin(np.abs(best - centre))])


def _fit(arr: np.ndarray, size: tuple[int, ...], order: int, fill: float
         ) -> tuple[np.ndarray, float, tuple[tuple[int, int], ...], tuple[int, ...]]:
    """Scale uniformly so ``arr`` fits ``size`` (aspect kept), then pad centred with ``fill``."""
    f = min(s / n for s, n in zip(size, arr.shape))
    inner = tuple(min(s, max(1, round(n * f))) for s, n in zip(size, arr.shape))
    scaled = _resize(arr, inner, order)
    pads = tuple(((s - i) // 2, s - i - (s - i) // 2) for s, i in zip(size, inner))
    return np.pad(scaled, pads, constant_values=fill), f, pads, inner


def slice_stack(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    sequences: Sequence[str] = PAPER_SLICE_SEQUENCES,
    size: Sequence[int] = PAPER_SLICE_SIZE,
    *,
    axis: int = 0,
    pad_value: float = 0.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The largest-tumour slice of each chosen sequence, stacked as channels: ``(C, *size)``.

    The whole slice is kept (as in the paper); when its shape is not ``size`` it is scaled
    uniformly to fit and padded centred (recorded). Channel order = ``sequences`` order
    (paper: T1, T2, T1-Gd).
    """
    m = np.asarray(mask)
    if not isinstance(images, Mapping):
        raise GlioradInputError("images: expected a dict of sequence name -> array")
    missing = [s for s in sequences if s not in images]
    if missing:
        raise GlioradInputError(
            f"slice_stack: sequence(s) {missing} not among the images {sorted(images)}"
        )
    if not sequences:
        raise GlioradInputError("slice_stack: sequences is empty; expected at least one")
    vols = {s: np.asarray(images[s]) for s in sequences}
    _check_shapes(vols, m.shape, "mask")
    if m.ndim != 3:
        raise GlioradInputError(f"slice_stack: mask has {m.ndim} axes; expected a 3-D volume")
    size_t = _check_size(size, 2)
    idx = largest_slice(m, axis)
    chans = []
    f, pads = 1.0, ((0, 0), (0, 0))
    for s in sequences:
        sl = np.take(vols[s], idx, axis=axis).astype(np.float32, copy=False)
        out, f, pads, _ = _fit(sl, size_t, 1, pad_value)
        chans.append(out)
    record = {"axis": axis, "index": idx, "area": int(slice_areas(m, axis)[idx]),
              "sequences": list(sequences), "size": list(size_t),
              "slice_shape": list(np.take(m, idx, axis=axis).shape), "scale": f,
              "padding": [list(p) for p in pads]}
    return np.stack(chans), record


# -------------------------------------------------------------------------------------- complete
def complete_volume(
    volumes: Volumes,
    size: Sequence[int] = PAPER_PATCH_SIZE,
    *,
    crop_to_brain: bool = True,
    pad_value: float = 0.0,
) -> tuple[Volumes, dict[str, Any]]:
    """The "complete MRI" input of the ablation: each whole volume resampled to a fixed ``size``.

    With ``crop_to_brain`` the volumes are first cut to the bounding box of the voxels that are
    non-zero in any volume (the skull-stripped brain), so the fixed size is spent on the brain. The
    box is then scaled uniformly (aspect kept) to fit ``size`` and padded centred with
    ``pad_value``. Returns the resampled volume(s) (float32) and a record (box, scale, padding).
    """
    vols, single = _as_dict(volumes)
    shape = next(iter(vols.values())).shape
    _check_shapes(vols, shape, "first volume")
    size_t = _check_size(size, len(shape))
    if crop_to_brain:
        union = np.zeros(shape, bool)
        for v in vols.values():
            union |= v != 0
        if not union.any():
            raise GlioradInputError(
                f"complete_volume: every volume is zero everywhere (shape {shape}); expected images"
            )
        box = tumour_bbox(union)
    else:
        box = tuple((0, n) for n in shape)
    region = tuple(slice(lo, hi) for lo, hi in box)
    out = {}
    f, pads, inner = 1.0, tuple((0, 0) for _ in shape), shape
    for k, v in vols.items():
        out[k], f, pads, inner = _fit(v[region].astype(np.float32, copy=False), size_t, 1,
                                      pad_value)
    record = {"box": [list(b) for b in box], "size": list(size_t), "scale": f,
              "inner": list(inner), "padding": [list(p) for p in pads],
              "crop_to_brain": crop_to_brain}
    return (out[""] if single else out), record


# -------------------------------------------------------------------------------------- cohort
@dataclass
class CropResult:
    """Outcome of :func:`crop_cohort`: one JSON record per patient, failures, downscaled ids."""

    out_dir: Path
    records: dict[str, dict[str, Any]]
    failures: dict[str, str]
    downscaled: list[str]
    n_skipped: int


class CropFailedError(GlioradInputError):
    """Some patients failed; ``result`` holds the others."""

    def __init__(self, problems: Sequence[str], result: CropResult):
        super().__init__(problems)
        self.result = result


def _settings(**kw: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def _output_geometry(ref: Any, start: Sequence[int], region: Sequence[int], inner: Sequence[int],
                     pad_before: Sequence[int], size: Sequence[int]) -> Any:
    """SimpleITK geometry of the input region ``[start, start+region)`` (z, y, x) resampled to
    ``inner`` voxels (cell-aligned, as :func:`_resize`) and then padded by ``pad_before`` voxels to
    ``size``."""
    from gliorad.io import Geometry

    sx, rx, ix = start[::-1], region[::-1], inner[::-1]
    ratio = np.array([r / n for r, n in zip(rx, ix)], float)
    cidx = [float(s + 0.5 * q - 0.5) for s, q in zip(sx, ratio)]
    first = np.array(ref.TransformContinuousIndexToPhysicalPoint(cidx))
    spacing = np.array(ref.GetSpacing()) * ratio
    direction = np.array(ref.GetDirection()).reshape(3, 3)
    origin = first - direction @ (spacing * np.array(pad_before[::-1], float))
    return Geometry(tuple(int(n) for n in size[::-1]), tuple(spacing.tolist()),
                    tuple(origin.tolist()), tuple(ref.GetDirection()))


def _input_stats(images: Mapping[str, str], mask: str) -> dict[str, list]:
    """(path, size, mtime) of every input: a cropped patient is redone when any changed."""
    def one(p: str) -> list:
        st = Path(p).stat()
        return [str(p), int(st.st_size), int(st.st_mtime_ns)]

    return {"mask": one(mask), **{s: one(p) for s, p in images.items()}}


def _crop_one(pid: str, images: dict[str, str], mask: str, out_dir: str, settings: dict[str, Any]
              ) -> tuple[str, dict[str, Any] | None, str | None]:
    """Worker: crop one patient, write its arrays and JSON record; (pid, record, error)."""
    from gliorad.io import (
        array_to_image,
        file_hash,
        read_array,
        write_bytes,
        write_image,
        write_json,
    )

    try:
        seg, _ = read_array(mask)
        arrays, ref = {}, None
        for seq, path in images.items():
            arrays[seq], img = read_array(path, np.float32)
            if arrays[seq].shape != seg.shape:
                raise GlioradInputError(
                    f"{mask}: mask shape {seg.shape} (z, y, x) differs from {path} {arrays[seq].shape}"
                )
            ref = ref or img
        folder = Path(out_dir) / pid
        seqs = list(images)
        patches, mpatch, rec = crop_patch(arrays, seg, settings["size"], border=settings["border"],
                                          pad_value=settings["pad_value"],
                                          margin=settings.get("margin", 0))
        written: dict[str, str] = {}

        def save_npy(name: str, arr: np.ndarray) -> None:
            import io as _io

            buf = _io.BytesIO()
            np.save(buf, arr)
            written[name] = str(write_bytes(buf.getvalue(), folder / f"{name}.npy"))

        if settings["format"] == "npy":
            save_npy("patch", np.stack([patches[s] for s in seqs]))
            save_npy("patch_mask", mpatch.astype(np.uint8))
        else:
            geo = _output_geometry(ref, rec.start, rec.region, rec.size, (0,) * 3, rec.size)
            for s in seqs:
                written[f"patch_{s}"] = str(write_image(array_to_image(patches[s], geo),
                                                        folder / f"patch_{s}.nii.gz"))
            written["patch_mask"] = str(write_image(array_to_image(mpatch.astype(np.uint8), geo),
                                                    folder / "patch_mask.nii.gz"))
        record: dict[str, Any] = {"patient_id": pid, "sequences": seqs, "patch": rec.to_dict(),
                                  "settings": settings}
        if settings["slice_sequences"]:
            stack, srec = slice_stack(arrays, seg, settings["slice_sequences"],
                                      settings["slice_size"])
            save_npy("slice", stack)
            record["slice"] = srec
        if settings["complete_size"]:
            comp, crec = complete_volume(arrays, settings["complete_size"])
            if settings["format"] == "npy":
                save_npy("complete", np.stack([comp[s] for s in seqs]))
            else:
                box = crec["box"]
                cgeo = _output_geometry(ref, [lo for lo, _ in box], [hi - lo for lo, hi in box],
                                        crec["inner"], [p[0] for p in crec["padding"]],
                                        crec["size"])
                for s in seqs:
                    written[f"complete_{s}"] = str(write_image(array_to_image(comp[s], cgeo),
                                                               folder / f"complete_{s}.nii.gz"))
            record["complete"] = crec
        record["files"] = written
        record["inputs"] = {"mask": mask, "mask_sha256": file_hash(mask),
                            **{s: {"path": p, "sha256": file_hash(p)} for s, p in images.items()}}
        record["input_stats"] = _input_stats(images, mask)
        write_json(record, folder / f"{pid}.json")
        return pid, record, None
    except GlioradInputError as err:
        return pid, None, " ".join(err.problems)
    except Exception as err:  # noqa: BLE001 - one patient's failure must not lose the others
        return pid, None, f"{type(err).__name__}: {err}"


def crop_cohort(
    cohort: Any,
    out_dir: str | os.PathLike,
    *,
    masks: str | os.PathLike | None = None,
    sequences: Sequence[str] | None = None,
    size: Sequence[int] = PAPER_PATCH_SIZE,
    border: str = "pad",
    pad_value: float | str = 0.0,
    margin: int | Sequence[int] = 0,
    slice_sequences: Sequence[str] | None = PAPER_SLICE_SEQUENCES,
    slice_size: Sequence[int] = PAPER_SLICE_SIZE,
    complete_size: Sequence[int] | None = PAPER_PATCH_SIZE,
    fmt: str = "npy",
    n_jobs: int = -1,
    overwrite: bool = False,
    raise_on_failure: bool = True,
) -> CropResult:
    """Crop every patient of a cohort: tumour patch, largest slice stack, complete volume.

    ``masks`` is a folder of automatic masks (``<id>_seg.nii.gz`` / ``<id>.nii.gz``, see
    :func:`gliorad.features.radiomics.find_auto_masks`); ``None`` uses the cohort's manual ``seg``
    files. Per patient ``<out>/<id>/`` receives ``patch.npy`` (channels = ``sequences`` order,
    then (z, y, x)) and ``patch_mask.npy`` (``fmt="npy"``) or ``patch_<seq>.nii.gz`` /
    ``patch_mask.nii.gz`` with the patch's physical geometry (``fmt="nifti"``), ``slice.npy``
    (channels = ``slice_sequences``; skipped when None), ``complete.npy`` or ``complete_<seq>.nii.gz``
    (skipped when ``complete_size`` is None), and ``<id>.json`` (records, settings, input hashes;
    written last). A patient whose JSON record has the same settings and whose input files have
    the same size and modification time is skipped unless ``overwrite``. Failures (empty mask, unreadable file, ...) are collected; the others are kept,
    then :class:`CropFailedError` lists them (unless ``raise_on_failure=False``).
    """
    import json

    from gliorad.cohort import Cohort, discover_cohort
    from gliorad.executor import resolve_jobs
    from gliorad.features.radiomics import find_auto_masks

    check_option("format", fmt, ["npy", "nifti"])
    check_option("border", border, BORDER_MODES)
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    if isinstance(sequences, str):
        sequences = [sequences]
    if isinstance(slice_sequences, str):
        slice_sequences = [slice_sequences]
    seqs = list(sequences) if sequences is not None else list(cohort.sequences)
    unknown = [s for s in seqs if not any(s in p.files for p in cohort.patients.values())]
    if unknown or not seqs:
        raise GlioradInputError(
            f"sequences {unknown or seqs} not found in cohort {cohort.root}; expected a non-empty "
            f"subset of: {', '.join(sorted({k for p in cohort.patients.values() for k in p.files} - {'seg'}))}"
        )
    size_t = _check_size(size, 3)
    margin_t = _check_margin(margin, 3)
    slice_seqs = list(slice_sequences) if slice_sequences else []
    missing = [s for s in slice_seqs if s not in seqs]
    if missing:
        raise GlioradInputError(
            f"slice sequences {missing} are not among the cropped sequences {seqs}"
        )
    settings = _settings(
        size=size_t, border=border, pad_value=pad_value, sequences=seqs, slice_sequences=slice_seqs,
        **({"margin": margin_t} if any(margin_t) else {}),
        slice_size=_check_size(slice_size, 2, "slice_size"),
        complete_size=_check_size(complete_size, 3, "complete_size") if complete_size else None,
        format=fmt, masks=str(masks) if masks is not None else "manual",
    )
    failures: dict[str, str] = {}
    if masks is None:
        mask_of = {pid: p.seg for pid, p in cohort.patients.items() if p.seg is not None}
        for pid in cohort.ids:
            if pid not in mask_of:
                failures[pid] = f"patient {pid}: no manual mask (seg file) in {cohort.root}"
    else:
        mask_of, probs = find_auto_masks(masks, cohort.ids)
        failures.update({pid: f"patient {pid}: {why}" for pid, why in probs.items()})
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: output path exists and is not a folder")
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for pid in cohort.ids:
        if pid not in mask_of:
            continue
        files = cohort.patients[pid].files
        absent = [s for s in seqs if s not in files]
        if absent:
            failures[pid] = f"patient {pid}: no {', '.join(absent)} image in {cohort.root}"
            continue
        rec_path = out / pid / f"{pid}.json"
        if rec_path.is_file() and not overwrite:
            old = read_record(rec_path)
            images = {s: str(files[s]) for s in seqs}
            if (old.get("settings") == json.loads(json.dumps(settings))
                    and old.get("input_stats") == _input_stats(images, str(mask_of[pid]))):
                records[pid] = old
                continue
        todo.append((pid, {s: str(files[s]) for s in seqs}, str(mask_of[pid])))
    n_skipped = len(records)
    jobs = min(resolve_jobs(n_jobs), max(1, len(todo)))
    if jobs == 1:
        results = [_crop_one(*t, str(out), settings) for t in todo]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, backend="loky")(
            delayed(_crop_one)(*t, str(out), settings) for t in todo)
    for pid, rec, err in results:
        if err is not None:
            failures[pid] = err
        else:
            records[pid] = rec
    downscaled = sorted(pid for pid, r in records.items() if r["patch"]["downscaled"])
    result = CropResult(out, dict(sorted(records.items())), dict(sorted(failures.items())),
                        downscaled, n_skipped)
    if failures and raise_on_failure:
        raise CropFailedError(
            [f"cropping failed for {len(failures)} patient(s); the others were written to {out}"]
            + [f"{pid}: {why}" for pid, why in sorted(failures.items())],
            result,
        )
    return result
