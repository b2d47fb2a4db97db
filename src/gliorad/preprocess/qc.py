"""The QC picture: mid slices of every output sequence with the brain outline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gliorad.io import atomic_path


def _slices(arr: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices of a (z, y, x) LPS array, each oriented for display with
    the patient's anterior / superior at the top and the patient's left on the picture's right."""
    z, y, x = centre
    return [arr[z], arr[::-1, y, :], arr[::-1, :, x]]


def qc_figure(
    images: dict[str, sitk.Image], mask: sitk.Image, path: str | Path, title: str = ""
) -> Path:
    """Write a PNG: one row per sequence, columns axial / coronal / sagittal through the brain's
    centroid, the brain mask's outline in red (matplotlib Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    m = sitk.GetArrayFromImage(mask).astype(bool)
    centre = tuple(round(v) for v in np.argwhere(m).mean(axis=0)) if m.any() else tuple(
        s // 2 for s in m.shape)
    sx, sy, sz = mask.GetSpacing()
    aspects = [sy / sx, sz / sx, sz / sy]
    names = list(images)
    fig = Figure(figsize=(9, 3 * len(names) + 0.4), dpi=80)
    axes = fig.subplots(len(names), 3, squeeze=False)
    mslices = _slices(m, centre)  # type: ignore[arg-type]
    for row, name in enumerate(names):
        arr = sitk.GetArrayFromImage(images[name])
        vals = arr[m] if m.any() else arr.ravel()
        lo, hi = np.percentile(vals, [0.5, 99.5]) if vals.size else (0.0, 1.0)
        for col, (sl, ms, asp) in enumerate(zip(_slices(arr, centre), mslices, aspects)):  # type: ignore[arg-type]
            ax = axes[row, col]
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, aspect=asp, interpolation="nearest")
            if ms.any():
                ax.contour(ms.astype(float), levels=[0.5], colors="red", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name)
            if row == 0:
                ax.set_title(("axial", "coronal", "sagittal")[col])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
