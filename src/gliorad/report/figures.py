"""Figures the report draws itself, and PNG/SVG rendering.

Every function builds a new matplotlib ``Figure`` (no pyplot state) from data the stages wrote;
:func:`render` turns one figure into PNG and SVG bytes, :func:`svg_wrapping_png` makes an SVG
that shows a PNG (for stage figures whose data is not in the stage's files).
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gliorad.errors import GlioradInputError
from gliorad.features.agreement import icc_histogram_figure  # the stage's own drawing
from gliorad.grading.outputs import roc_figure  # the stage's own drawing

__all__ = ["OverlayCase", "cindex_figure", "icc_histogram_figure", "overlay_figure", "png_size",
           "render", "roc_figure", "signature_weights_figure", "svg_wrapping_png", "tumour_slice"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 120
MANUAL_COLOUR, AUTO_COLOUR = "#00c853", "#ff1744"


def render(fig: Figure, png: bool = True) -> tuple[bytes, bytes]:
    """PNG (120 dpi; ``b""`` when ``png`` is false) and SVG bytes of ``fig``; the SVG has no
    date and stable element ids."""
    import matplotlib

    png_buf, svg = io.BytesIO(), io.BytesIO()
    if png:
        fig.savefig(png_buf, format="png", dpi=DPI, metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": "gliorad-report"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png_buf.getvalue(), svg.getvalue()


def png_size(data: bytes, source: str) -> tuple[int, int]:
    """Width and height from a PNG header; raise naming ``source`` when it is not a PNG."""
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise GlioradInputError(f"{source}: not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise GlioradInputError(f"{source}: PNG image of size {width}x{height}")
    return width, height


def svg_wrapping_png(data: bytes, source: str) -> bytes:
    """An SVG document that shows the PNG ``data`` at its pixel size (embedded, no link)."""
    w, h = png_size(data, source)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{w}" height="{h}" viewBox="0 0 {w} {h}">\n'
        f'  <image x="0" y="0" width="{w}" height="{h}" href="{uri}" xlink:href="{uri}"/>\n'
        "</svg>\n"
    ).encode()


# ------------------------------------------------------------------------------ overlays
@dataclass
class OverlayCase:
    """One panel: an axial slice with the manual and the automatic mask."""

    label: str
    patient_id: str
    dice: float
    sequence: str
    image: np.ndarray
    manual: np.ndarray
    auto: np.ndarray
    aspect: float  # row spacing / column spacing


def _lps_array(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    import SimpleITK as sitk

    from gliorad.io import read_image

    img = sitk.DICOMOrient(read_image(path), "LPS")
    return sitk.GetArrayFromImage(img), img.GetSpacing()


def tumour_slice(image: Path, manual: Path, auto: Path
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The axial slice with the largest manual-mask area (the automatic one's if the manual
    mask is empty), as ``(image, manual, auto, aspect)`` in radiological display (patient's
    right on the left, anterior up)."""
    img, spacing = _lps_array(image)
    man, _ = _lps_array(manual)
    aut, _ = _lps_array(auto)
    for path, arr in ((manual, man), (auto, aut)):
        if arr.shape != img.shape:
            raise GlioradInputError(f"{path}: mask grid {arr.shape[::-1]} differs from the image "
                                    f"{image.name} {img.shape[::-1]}")
    if img.ndim != 3:
        raise GlioradInputError(f"{image}: expected a 3D image, got {img.ndim} dimensions")
    ref = man > 0 if (man > 0).any() else aut > 0
    area = ref.reshape(ref.shape[0], -1).sum(axis=1)
    k = int(np.argmax(area)) if area.any() else img.shape[0] // 2
    # LPS array order is (S, P, L): rows run anterior -> posterior, columns right -> left
    return img[k].astype(float), man[k] > 0, aut[k] > 0, float(spacing[1] / spacing[0])


def overlay_figure(cases: Sequence[OverlayCase]) -> Figure:
    """One panel per case: greyscale slice, manual (green) and automatic (red) contours."""
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(3.4 * len(cases), 3.9))
    axes = fig.subplots(1, len(cases), squeeze=False)[0]
    for ax, case in zip(axes, cases, strict=True):
        inside = case.image[case.image != 0]
        lo, hi = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
        ax.imshow(case.image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  aspect=case.aspect, interpolation="nearest")
        for mask, colour in ((case.manual, MANUAL_COLOUR), (case.auto, AUTO_COLOUR)):
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.3)
        ax.set_title(f"{case.label}: {case.patient_id}\nDice {case.dice:.3f} ({case.sequence})",
                     fontsize=9)
        ax.set_axis_off()
    handles = [Line2D([], [], color=MANUAL_COLOUR, label="manual mask"),
               Line2D([], [], color=AUTO_COLOUR, label="automatic mask")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.08, wspace=0.05)
    return fig


# ------------------------------------------------------------------------------ survival
def signature_weights_figure(formula: pd.DataFrame) -> Figure:
    """Horizontal bars of the signature weights (on z-scored features), in rank order."""
    names = [str(f) for f in formula["feature"]]
    weights = formula["weight"].to_numpy(float)
    fig = Figure(figsize=(6.4, 0.32 * len(names) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    colours = ["#c62828" if w > 0 else "#1565c0" if w < 0 else "0.7" for w in weights]
    ax.barh(y, weights, color=colours)
    ax.set_yticks(y, names, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("weight per SD of the feature (red: higher risk)")
    ax.set_title("Deep-radiomics signature", fontsize=10)
    fig.tight_layout()
    return fig


def cindex_figure(rows: Sequence[Mapping[str, object]]) -> Figure:
    """C-index with 95 % CI of the integrated and the clinical model per cohort.

    ``rows``: ``cohort``, ``integrated`` / ``clinical`` (C or None), ``integrated_ci`` /
    ``clinical_ci`` ((low, high) or None), ``p`` (paired P or None).
    """
    fig = Figure(figsize=(6.0, 0.9 * len(rows) + 1.4))
    ax = fig.add_subplot()
    labelled: set[str] = set()
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        for which, dy, colour in (("integrated", 0.15, "#c62828"), ("clinical", -0.15, "#1565c0")):
            c, ci = row.get(which), row.get(f"{which}_ci")
            if c is None:
                continue
            err = None if ci is None or None in ci else [[c - ci[0]], [ci[1] - c]]
            ax.errorbar([c], [y + dy], xerr=err, fmt="o", color=colour, capsize=3,
                        label=None if which in labelled else which)
            labelled.add(which)
        p = row.get("p")
        if p is not None:
            ax.text(1.005, y, "P < 0.001" if p < 0.001 else f"P = {p:.3f}", va="center",
                    fontsize=8, transform=ax.get_yaxis_transform())
    ax.axvline(0.5, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_yticks(np.arange(len(rows))[::-1], [str(r["cohort"]) for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("Harrell's C-index (95% CI)")
    ax.set_title("Integrated vs clinical model (paired P)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    fig.tight_layout()
    fig.subplots_adjust(right=0.84)
    return fig
