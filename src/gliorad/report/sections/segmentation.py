"""Segmentation section: automatic vs manual masks (``gliorad.segmentation.evaluate_masks``)
and the check of each automatic mask (``qc.json`` / ``qc.csv``: :mod:`gliorad.segmentation.qc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

import gliorad.report.figures as F
from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import get, need, read_csv, read_json
from gliorad.report.markup import fmt_ci, html_table, note_list, para

__all__ = ["segmentation_html"]


def _summary_rows(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for region, s in summary.items():
        if not isinstance(s, dict) or "dice" not in s:
            continue
        d, h = s.get("dice") or {}, s.get("hd95_mm") or {}
        rows.append({
            "Region": region, "n": d.get("n"),
            "Dice mean (95% CI)": fmt_ci(d.get("mean"), [d.get("ci95_low"), d.get("ci95_high")]),
            "Dice median": d.get("median"), "Dice SD": d.get("sd"), "Dice min": d.get("min"),
            "Dice max": d.get("max"), "HD95 mean (mm)": h.get("mean"),
            "HD95 median (mm)": h.get("median"),
            "HD95 undefined": (s.get("hd95_undefined") or {}).get("n"),
        })
    return pd.DataFrame(rows)


_ACTION = {"kept": "kept", "replaced_by_manual": "replaced by the manual mask",
           "excluded": "patient excluded (no automatic mask downstream)"}


def _read_qc(ctx: Context) -> dict[str, Any] | None:
    path = ctx.inputs.seg_qc
    if path is None:
        return None
    qc = read_json(need(Path(path), "the segment stage's mask checks (qc.json)"))
    get(qc, "counts", Path(path))
    get(qc, "flagged", Path(path), list)
    return qc


def _qc_html(qc: dict[str, Any] | None) -> str:
    """The counts of the mask checks and a table of the masks that failed them."""
    if qc is None:
        return ""
    counts, flagged = qc["counts"], qc["flagged"]
    rule = str(qc.get("rule", ""))
    parts = ["<h3>Mask checks</h3>"]
    if not flagged:
        parts.append(para(f"Every automatic mask passed the checks ({qc.get('n_masks')} masks; "
                          f"rule: {rule})."))
        return "".join(parts)
    handling = qc.get("flagged_handling", "manual")
    actions = qc.get("actions") or {}
    parts.append(para(
        f"{len(flagged)} of {qc.get('n_masks')} automatic masks failed the checks "
        f"({', '.join(f'{counts.get(f, 0)} {f}' for f in ('empty', 'small', 'large'))}); rule: "
        f"{rule}. Handling (segmentation.flagged: {handling}): "
        f"{actions.get('replaced_by_manual', 0)} replaced by the patient's manual mask, "
        f"{actions.get('excluded', 0)} patient(s) excluded from what reads the automatic masks. "
        "The Dice above is of the raw predictions."))
    table = pd.DataFrame([{"Patient": r.get("patient_id"), "Volume (ml)": r.get("volume_ml"),
                           "Flag": r.get("flag"), "Why": r.get("reason"),
                           "Action": _ACTION.get(str(r.get("action")), r.get("action"))}
                          for r in flagged])
    parts.append(html_table(table, caption="Automatic masks that failed the checks"))
    if qc.get("not_checked"):
        parts.append(para(f"Not checked: {qc['not_checked']}.", "small"))
    return "".join(parts)


def _overlays(ctx: Context, ev: dict[str, Any], ev_path: Path, rows: pd.DataFrame,
              qc: dict[str, Any] | None = None) -> str:
    from gliorad.segmentation import mask_path
    from gliorad.stages.artifacts import SegmentFiles

    inp = ctx.inputs
    region = "WT" if (rows["region"] == "WT").any() else str(rows["region"].iloc[0])
    scored = rows[(rows["region"] == region) & rows["dice"].notna()].sort_values(
        ["dice", "patient_id"], kind="stable")
    if scored.empty:
        return para("No Dice value to pick example cases from.")
    # the evaluation records the cohort and the mask folder it compared
    root = inp.cohort_root or ev.get("cohort")
    masks = inp.masks or ev.get("mask_dir")
    root = Path(root) if root else None
    masks = Path(masks) if masks else None
    if root is None or not root.is_dir():
        return para(f"Example overlays need the cohort images; cohort folder {root} not found.")
    if masks is None or not masks.is_dir():
        return para(f"Example overlays need the predicted masks; mask folder {masks} not found.")
    cohort = ctx.cohort(root)
    n = len(scored)
    picks: list[tuple[str, int]] = []
    for label, i in (("best", n - 1), ("median", (n - 1) // 2), ("worst", 0)):
        if all(i != j for _, j in picks):
            picks.append((label, i))
    cases = []
    for label, i in picks:
        row = scored.iloc[i]
        pid = str(row["patient_id"])
        if pid not in cohort.patients:
            raise GlioradInputError(f"{ev_path}: patient {pid} is not in the cohort {root}")
        patient = cohort.patients[pid]
        if patient.seg is None:
            raise GlioradInputError(f"{root}: patient {pid} has no manual segmentation")
        seq = "t1ce" if "t1ce" in patient.files else next(
            (s for s in cohort.sequences if s in patient.files), None)
        if seq is None:
            raise GlioradInputError(f"{root}: patient {pid} has no image of {cohort.sequences}")
        auto = mask_path(masks, pid)
        if qc is not None and pid in {str(r.get("patient_id")) for r in qc["flagged"]}:
            # the raw prediction, not its manual replacement (or its absence)
            auto = mask_path(SegmentFiles(Path(ctx.inputs.seg_qc).parent).flagged, pid)
        if not auto.is_file():
            raise GlioradInputError(f"{auto}: predicted mask not found (listed in {ev_path.name})")
        image, man, aut, aspect = F.tumour_slice(cohort.image_path(pid, seq), patient.seg, auto)
        cases.append(F.OverlayCase(label, pid, float(row["dice"]), seq, image, man, aut, aspect))
    picked = "; ".join(f"{c.label} {c.patient_id} (Dice {c.dice:.3f})" for c in cases)
    caption = (f"Best, median and worst {region} Dice ({picked}): axial slice with the largest "
               "manual tumour area; manual mask green, automatic mask red (radiological view: "
               "the patient's right on the left).")
    return ctx.figures.add("segmentation_overlays", F.overlay_figure(cases), caption,
                           "the cohort images, the manual masks and the predicted masks")


def segmentation_html(ctx: Context) -> str:
    """Dice / HD95 by region, the mask checks, best / median / worst overlays, per-patient
    rows."""
    folder = Path(ctx.inputs.seg_evaluation)
    ev_path = need(folder / "evaluation.json", "the output of gliorad.segmentation.evaluate_masks")
    ev = read_json(ev_path)
    summary = get(ev, "summary", ev_path)
    rows = read_csv(need(folder / "evaluation.csv", "per-patient Dice (evaluate_masks)"),
                    required=("patient_id", "region", "dice"), dtype={"patient_id": str})
    if rows.empty:
        raise GlioradInputError(f"{folder / 'evaluation.csv'}: no rows")
    parts = [para(f"{summary.get('n_patients', rows['patient_id'].nunique())} patients with a "
                  f"manual and an automatic mask; label mode {summary.get('label_mode', 'wt')}. "
                  "Dice of the automatic vs the manual mask; mean with a percentile-bootstrap "
                  "95% CI."),
             html_table(_summary_rows(summary), caption="Dice and HD95 by region")]
    notes = []
    if summary.get("patients_without_mask"):
        notes.append("patients with a manual mask but no prediction: "
                     + ", ".join(map(str, summary["patients_without_mask"])))
    if summary.get("masks_without_manual_segmentation"):
        notes.append("predicted masks without a manual mask: "
                     + ", ".join(map(str, summary["masks_without_manual_segmentation"])))
    parts.append(note_list(notes))
    qc = _read_qc(ctx)
    parts.append(_qc_html(qc))
    parts.append("<h3>Examples</h3>")
    parts.append(_overlays(ctx, ev, ev_path, rows, qc))
    cols = [c for c in ("patient_id", "region", "dice", "hd95_mm", "pred_ml", "truth_ml", "note")
            if c in rows.columns]
    per = rows[cols].sort_values(["region", "dice"], ascending=[True, False], kind="stable")
    per = per.rename(columns={"patient_id": "Patient", "region": "Region", "dice": "Dice",
                              "hd95_mm": "HD95 (mm)", "pred_ml": "Automatic (ml)",
                              "truth_ml": "Manual (ml)", "note": "Note"})
    parts.append(f"<details><summary>Per patient ({len(per)} rows)</summary>"
                 f"{html_table(per)}</details>")
    return "".join(parts)
