"""The volumes of the page's slice viewer: each sequence predict read and the tumour mask, in LPS
voxel order (numpy ``z, y, x``: superior, posterior, left increasing), as gzip-compressed raw
``uint8`` arrays.

The intensities are windowed between the 0.5th and 99.5th percentile of the non-zero voxels (the
brain) and scaled to 0-255; the mask keeps its labels. The browser gets the files as they are,
with ``Content-Encoding: gzip`` (it unpacks them itself). A volume over ``max_voxels`` is
subsampled by a whole-number step (recorded in ``viewer.json``). The slices are shown in
radiological orientation: patient left on the right of the screen, as on ``summary.html``.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VIEWER_JSON", "write_viewer"]

VIEWER_JSON = "viewer.json"
MAX_VOXELS = 40_000_000


def _lps(path: Path, pixel: int | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    import SimpleITK as sitk

    from gliorad.io import read_image

    img = read_image(path)
    if pixel is not None:
        img = sitk.Cast(img, pixel)
    img = sitk.DICOMOrient(img, "LPS")
    return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing())


def _window(a: np.ndarray) -> tuple[np.ndarray, float, float]:
    brain = a[a != 0]
    if brain.size:
        lo, hi = (float(v) for v in np.percentile(brain, [0.5, 99.5]))
    else:
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((a.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    return np.rint(scaled).astype(np.uint8), lo, hi


def _write(arr: np.ndarray, path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=6) as fh:
        fh.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def write_viewer(images: Mapping[str, Path], mask: Path, out_dir: Path,
                 max_voxels: int = MAX_VOXELS) -> dict[str, Any]:
    """Write ``<seq>.u8.gz`` for each of ``images``, ``mask.u8.gz`` and :data:`VIEWER_JSON`
    into ``out_dir``; return the JSON (shape ``[z, y, x]``, spacing ``[x, y, z]`` mm, each
    sequence's window, the mask labels and its centre voxel, the subsampling step)."""
    import SimpleITK as sitk

    out_dir.mkdir(parents=True, exist_ok=True)
    m, spacing = _lps(mask, sitk.sitkUInt8)
    step = max(1, math.ceil((m.size / max_voxels) ** (1 / 3) - 1e-9)) if m.size > max_voxels else 1
    sub = (slice(None, None, step),) * 3
    m = m[sub]
    windows = {}
    for seq, path in images.items():
        a, sp = _lps(path)
        if not np.allclose(sp, spacing, rtol=1e-3) or a[sub].shape != m.shape:
            raise ValueError(f"{seq}: grid differs from the mask's")
        u8, lo, hi = _window(a[sub])
        _write(u8, out_dir / f"{seq}.u8.gz")
        windows[seq] = [lo, hi]
    _write(m, out_dir / "mask.u8.gz")
    inside = np.argwhere(m > 0)
    centre = [round(float(v)) for v in inside.mean(axis=0)] if inside.size else \
        [s // 2 for s in m.shape]
    meta = {"shape": list(m.shape), "spacing": [s * step for s in spacing], "step": step,
            "orientation": "LPS", "sequences": list(images), "window": windows,
            "labels": sorted(int(v) for v in np.unique(m) if v), "centre": centre,
            "files": {**{s: f"{s}.u8.gz" for s in images}, "mask": "mask.u8.gz"}}
    from gliorad.io import write_json

    write_json(meta, out_dir / VIEWER_JSON)
    return meta
