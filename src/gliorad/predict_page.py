"""The summary page of a single-patient prediction (``summary.html`` of
:func:`gliorad.predict.predict_patient`): the numbers, the tumour mask over three orthogonal
slices as embedded PNG (:func:`overlays`), the bundle's provenance. Self-contained: no file or
address outside the page.
"""

from __future__ import annotations

import base64
import html
import io as _io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

__all__ = ["fmt_values", "overlays", "summary_page"]


def fmt_values(values: Sequence[float]) -> str:
    """Sizes or spacings as ``1 x 1 x 2``."""
    return " x ".join(f"{v:g}" for v in values)


def overlays(image: sitk.Image, mask: sitk.Image) -> dict[str, str]:
    """Base64 PNGs of the mask over the image on the axial, coronal and sagittal slices through
    the tumour's centre (radiological orientation: patient left on the right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "LPS")
    msk = sitk.DICOMOrient(mask, "LPS")
    a = sitk.GetArrayFromImage(img)  # (z: S, y: P, x: L)
    m = sitk.GetArrayFromImage(msk) > 0
    sx, sy, sz = img.GetSpacing()
    cz, cy, cx = (round(float(v)) for v in np.argwhere(m).mean(axis=0))
    brain = a[a != 0]
    lo, hi = (np.percentile(brain, [1, 99]) if brain.size else (float(a.min()), float(a.max())))
    views = {
        "axial": (a[cz], m[cz], sy / sx, "upper"),
        "coronal": (a[:, cy, :], m[:, cy, :], sz / sx, "lower"),
        "sagittal": (a[:, :, cx], m[:, :, cx], sz / sy, "lower"),
    }
    out = {}
    for name, (sl, ms, aspect, origin) in views.items():
        fig, ax = plt.subplots(figsize=(3.4, 3.4), dpi=100)
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect,
                  origin=origin, interpolation="nearest")
        ax.imshow(np.ma.masked_where(~ms, ms.astype(float)), cmap="autumn", alpha=0.45,
                  aspect=aspect, origin=origin, interpolation="nearest", vmin=0, vmax=1)
        if ms.any() and not ms.all():
            ax.contour(ms.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        out[name] = base64.b64encode(buf.getvalue()).decode("ascii")
    return out


def _row(label: str, value: Any) -> str:
    return f"<tr><th>{html.escape(str(label))}</th><td>{html.escape(str(value))}</td></tr>"


def _num(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def summary_page(result: Mapping[str, Any], overlays: Mapping[str, str], display: str) -> str:
    """``summary.html``: one self-contained page of a prediction (``result``, the content of
    ``prediction.json``) with the ``overlays`` (:func:`overlays`) of the mask on ``display``."""
    g, s, m, inp, bnd = (result["grading"], result.get("survival"), result["mask"],
                         result["inputs"], result["bundle"])
    rows = []
    if g is not None:
        rows += [_row("HGG probability", _num(g["probability_hgg"])),
                 _row("Predicted grade", f"{g['predicted_grade']} (threshold {_num(g['threshold'], 2)})")]
        if "cnn3d_probability_hgg" in g:
            rows.append(_row("3D CNN alone: HGG probability", _num(g["cnn3d_probability_hgg"])))
    else:
        rows.append(_row("Grade", "not predicted (the bundle has no grading model)"))
    rows.append(_row("Tumour volume", f"{_num(m['volume_ml'], 1)} ml ({m['source']} mask)"))
    if "dice_vs_manual" in m:
        rows.append(_row("Dice vs the manual mask in the folder", _num(m["dice_vs_manual"])))
    surv_html = ""
    if s is not None:
        if s["signature_score"] is None:  # survival.model 'clinical'
            rows.append(_row("Signature", "none: the survival model is the clinical model"))
        else:
            rows += [_row("Signature score", _num(s["signature_score"])),
                     _row("Risk group", f"{s['risk_group']} (cut-off {_num(s['cutoff'])})")]
        parts = []
        for which, nom in s["nomograms"].items():
            if not nom.get("computed"):
                parts.append(f"<p><b>{html.escape(which)} nomogram</b>: not computed. "
                             f"{html.escape(nom.get('reason', ''))}</p>")
                continue
            head = "".join(f"<th>{html.escape(k)} survival</th>" for k in nom["survival"])
            cells = "".join(f"<td>{_num(v)}</td>" for v in nom["survival"].values())
            vals = ", ".join(f"{k} = {v}" for k, v in nom["values"].items())
            parts.append(f"<p><b>{html.escape(which)} nomogram</b> ({html.escape(vals)}; "
                         f"{_num(nom['total_points'], 1)} points)</p>"
                         f"<table><tr>{head}</tr><tr>{cells}</tr></table>")
        surv_html = "<h2>Survival (LGG models)</h2>" + "".join(parts)
    warn_html = ""
    if result.get("warnings"):
        warn_html = ('<div class="warn"><h2>Warnings: outside the training data</h2><ul>'
                     + "".join(f"<li>{html.escape(x)}</li>" for x in result["warnings"])
                     + "</ul></div>")
    msgs = [*result.get("messages", []), *result.get("notes", [])]
    msg_html = ("<h2>Messages</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in msgs)
                + "</ul>") if msgs else ""
    imgs = "".join(f'<figure><img alt="{k}" src="data:image/png;base64,{v}"><figcaption>{k}'
                   "</figcaption></figure>" for k, v in overlays.items())
    prov = [_row("Bundle", bnd["path"]), _row("Bundle created", bnd["created_utc"]),
            _row("gliorad (bundle)", bnd["gliorad_version"]),
            _row("Manifest SHA-256", bnd["manifest_sha256"]),
            _row("Components", ", ".join(bnd["components"])),
            _row("Patient folder", result["patient_dir"]),
            _row("Voxel spacing", f"{fmt_values(inp['native_spacing_mm'])} mm"
                 + (f", resampled to {fmt_values(inp['working_spacing_mm'])} mm" if inp["resampled"] else "")),
            _row("Predicted", result["run"]["created_utc"])]
    prov += [_row(f"{k} file", f"{v['file']} (SHA-256 {v['sha256'][:16]}...)")
             for k, v in inp["sequences"].items()]
    prov += [_row(f"{k} (bundle / here)", f"{v} / {result.get('versions', {}).get(k, '?')}")
             for k, v in sorted(bnd.get("versions", {}).items())]
    title = f"gliorad prediction: {result['patient_id']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }}
figure {{ display: inline-block; margin: 0.3em; text-align: center; }}
.note {{ color: #666; font-size: 0.85em; }}
.warn {{ border: 2px solid #c60; background: #fff4e5; padding: 0.2em 1em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Research software: model outputs, not a diagnosis.</p>
{warn_html}
<h2>Results</h2><table>{''.join(rows)}</table>
{surv_html}
<h2>Tumour mask on {html.escape(display)}</h2>{imgs}
{msg_html}
<h2>Provenance</h2><table>{''.join(prov)}</table>
</body></html>
"""
