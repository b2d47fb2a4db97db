"""Grading section: HGG vs LGG tables and ROC curves (``gliorad.grading.run.run_tables``).
"""

from __future__ import annotations

from pathlib import Path

import gliorad.report.figures as F
from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import need, read_csv, read_json
from gliorad.report.markup import esc, html_table, para

__all__ = ["GRADING_TABLES", "grading_html"]


GRADING_TABLES = (("table_s3", "Table S3. Grading with the radiomics of each sequence"),
                  ("table_1", "Table 1. Grading with fused CNN + radiomics features"),
                  ("table_2", "Table 2. Grading with the CNN alone"))


def grading_html(ctx: Context) -> str:
    """Tables S3, 1 and 2 with their ROC curves, how fused and stacked rows were built, the
    paired DeLong comparisons."""
    folder = Path(ctx.inputs.grade_tables)
    scheme = None
    if (folder / "provenance.json").is_file():
        prov = read_json(folder / "provenance.json")
        settings = prov.get("settings")
        scheme = settings.get("scheme") if isinstance(settings, dict) else None
    what = {"cv": "repeated stratified cross-validation (out-of-fold predictions of repeat 1)",
            "split": "the test part of a stratified train/validation/test split"}.get(
        scheme or "", "the stage's evaluation scheme")
    parts = [para(f"HGG is the positive class; AUC with DeLong 95% CI; metrics on {what}.")]
    shown = ["Methods", "AUC (95% CI)", "Accuracy", "Sensitivity", "Precision", "Specificity"]
    for key, caption in GRADING_TABLES:
        path = need(folder / f"{key}.csv", "the output of gliorad.grading.run.run_tables")
        df = read_csv(path)
        parts.append(f"<h3>{esc(caption)}</h3>")
        if df.empty:
            parts.append(para("No feature set of this kind was given to the stage."))
            continue
        absent = [c for c in ("Methods", "AUC (95% CI)", "set") if c not in df.columns]
        if absent:
            raise GlioradInputError(f"{path}: no column(s) {', '.join(map(repr, absent))}")
        if "n_pos" in df.columns and "n_neg" in df.columns:
            parts.append(para(f"{int(df['n_pos'].iloc[0])} HGG, {int(df['n_neg'].iloc[0])} LGG "
                              "patients evaluated.", "small"))
        parts.append(html_table(df[[c for c in shown if c in df.columns]]))
        curves = {}
        for method, name in zip(df["Methods"], df["set"], strict=True):
            pred_path = need(folder / "predictions" / f"{name}.csv", f"the predictions of {name}")
            pred = read_csv(pred_path, required=("label", "probability"))
            curves[str(method)] = (pred["label"].to_numpy(int), pred["probability"].to_numpy(float))
        parts.append(ctx.figures.add(f"roc_{key}", F.roc_figure(curves, caption.split(". ")[0]),
                                     f"ROC curves, {caption.split('. ')[0]}.",
                                     "predictions/<set>.csv"))
    notes_path = folder / "notes.json"
    if notes_path.is_file():
        notes = read_json(notes_path).get("notes") or []
        if notes:
            parts += ["<h3>How the fused and stacked rows were built</h3>", "<ul>",
                      *(f"<li>{esc(str(n))}</li>" for n in notes), "</ul>"]
            if any(str(n).startswith("stacked_") for n in notes):
                parts.append(para(
                    "Stacked rows (not in the paper): the radiomics model's out-of-fold scores "
                    "and the 3D CNN's out-of-sample scores (cross-fitted networks for the CNN's "
                    "own training patients) combined by a logistic regression. The fused rows "
                    "concatenate the CNN's deep features as the paper does; on the patients the "
                    "CNN was trained on those features are in-sample.", "small"))
    comp_path = folder / "comparisons.csv"
    if comp_path.is_file():
        comp = read_csv(comp_path)
        if not comp.empty:
            cols = [c for c in ("comparison", "model_a", "model_b", "auc_a", "auc_b", "diff",
                                "ci_low", "ci_high", "p") if c in comp.columns]
            parts += ["<h3>Paired DeLong comparisons (same patients)</h3>",
                      html_table(comp[cols], p_cols=("p",))]
    return "".join(parts)
