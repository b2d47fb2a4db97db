"""Cohort section: Table S2 (characteristics by centre), patients left out, validation,
synthetic ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.report.context import Context
from gliorad.report.files import present, read_json
from gliorad.report.inputs import ReportInputs, switched_off
from gliorad.report.markup import flatten, html_table, kv_table, not_run, note_list, para

__all__ = ["cohort_html", "cohort_ran", "table_s2"]

LABELS = {"age": "Age (years)", "os_days": "Overall survival (days)", "sex": "Sex",
          "grade": "WHO grade", "grade_group": "Grade group", "histology": "Histology",
          "location": "Location", "laterality": "Laterality", "enhancement": "Contrast enhancement",
          "event": "Status at last follow-up"}
CONTINUOUS = ("age", "os_days")
CATEGORICAL = ("sex", "grade", "grade_group", "histology", "location", "laterality", "enhancement",
               "event")


def table_s2(clin: pd.DataFrame, group_col: str = "centre") -> tuple[str, list[str]]:
    """Table S2 (characteristics by centre) of a canonical clinical table, or a count table with
    a note when the table does not hold exactly two centres."""
    from gliorad.stats import cohort_table

    notes: list[str] = []
    if group_col not in clin.columns or clin[group_col].notna().sum() == 0:
        return (para(f"The clinical table has no {group_col} values: no between-centre table."),
                notes)
    df = clin[clin[group_col].notna()].copy()
    if len(df) < len(clin):
        notes.append(f"{len(clin) - len(df)} patient(s) without a {group_col} left out")
    groups = sorted(df[group_col].astype(str).unique())
    df[group_col] = df[group_col].astype(str)
    if len(groups) != 2:
        counts = df[group_col].value_counts().sort_index()
        return (para(f"Table S2 compares two centres; this table has {len(groups)}.")
                + html_table(pd.DataFrame({"centre": counts.index, "patients": counts.to_numpy()})),
                notes)
    if "event" in df.columns:
        df["event"] = df["event"].map({1: "death", 0: "censored"}).astype(object)
    cont = [c for c in CONTINUOUS if c in df.columns
            and all(df.loc[df[group_col] == g, c].notna().any() for g in groups)]
    cat = [c for c in CATEGORICAL if c in df.columns and df[c].notna().any()]
    for c in CATEGORICAL:
        if c in df.columns:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    df = df.rename(columns=LABELS)
    table = cohort_table(df, group_col, [LABELS[c] for c in cont], [LABELS[c] for c in cat])
    n = df[group_col].value_counts()
    shown = pd.DataFrame({
        "Characteristic": [r.variable if not r.level else f"\u2003{r.level}"
                           for r in table.itertuples()],
        "Statistic": [r.statistic if not r.level else "" for r in table.itertuples()],
        **{f"Centre {g} (n={int(n[g])})": table[g] for g in groups},
        "Missing": [int(v) if not r.level else "" for v, r in
                    zip(table["n_missing"], table.itertuples(), strict=True)],
        "P": table["p"], "Test": table["test"],
    })
    return html_table(shown, p_cols=("P",), cls="s2"), notes


def cohort_html(ctx: Context) -> str:
    """The clinical table (Table S2 by centre, all patients and LGG), who each analysis left
    out, the validation summary and a synthetic cohort's ground truth."""
    inp = ctx.inputs
    parts: list[str] = []
    if present(inp.clinical, folder=False):
        clin = ctx.clinical()
        parts.append(para(f"{len(clin)} patients in {Path(inp.clinical).name}"
                          + (f" (cohort folder {inp.cohort_root})." if inp.cohort_root else ".")))
        body, notes = table_s2(clin)
        parts += ["<h3>Table S2. Characteristics by centre (all patients)</h3>", body]
        if "grade_group" in clin.columns and (clin["grade_group"] == "LGG").any():
            lgg = clin[clin["grade_group"] == "LGG"]
            if "centre" in lgg.columns and lgg["centre"].nunique() == 2:
                lgg_body, lgg_notes = table_s2(lgg.drop(columns=["grade_group"]))
                parts += ["<h3>LGG patients (the survival cohorts)</h3>", lgg_body]
                notes += lgg_notes
        parts.append(para("Continuous: median (IQR), Mann-Whitney U test; categorical: n (%), "
                          "chi-square or Fisher's exact test (gliorad.stats.cohort_table).",
                          "small"))
        parts.append(note_list(notes))
    else:
        parts.append(not_run("Clinical table"))
    parts.append(_excluded_html(inp.excluded, inp.config))
    if present(inp.validation, folder=False):
        v = read_json(Path(inp.validation))
        parts += ["<h3>Validation</h3>", kv_table(flatten(v))]
    if present(inp.truth, folder=False):
        t = read_json(Path(inp.truth))
        cfg = t.get("config", {}) if isinstance(t.get("config"), dict) else {}
        rows = [("generator", t.get("generator", "")), ("seed", cfg.get("seed", "")),
                ("patients", cfg.get("n_patients", "")),
                ("voxel spacing (mm)", cfg.get("spacing", ""))]
        rows += flatten(t.get("oracle", {}), "oracle")
        parts += ["<h3>Synthetic cohort (ground truth)</h3>",
                  para("The images and the clinical table are synthetic; the oracle values are "
                       "the best a model could reach given the generating model.", "small"),
                  kv_table(rows)]
    return "".join(parts)


def cohort_ran(inputs: ReportInputs) -> bool:
    """The cohort section ran when the clinical table, the validation or the ground truth is
    there (the list of patients left out alone does not make it run)."""
    return any(present(p, folder=False) for p in (inputs.clinical, inputs.validation, inputs.truth))


def _excluded_html(files: Mapping[str, Path], config: Mapping[str, Any]) -> str:
    """Which parts the run's config switched off, and which patients each analysis left out
    (``excluded.json`` of the split and deep-feature stages), counted and listed."""
    out = []
    off = switched_off(dict(config or {}))
    if off:
        out.append(para(f"Switched off in this run's config: {', '.join(off)}; their sections are "
                        "left out of this report."))
    rows = []
    why = {"grading": "no grade in the clinical table",
           "survival": "no survival time or event in the clinical table"}
    for stage, path in sorted((files or {}).items()):
        data = read_json(Path(path))
        if stage == "split":
            for analysis in ("grading", "survival"):
                recs = data.get(analysis) or []
                if recs:
                    rows.append({"Left out of": analysis, "Patients": len(recs), "Why": why[analysis],
                                 "Who": _id_list(r.get("patient_id") for r in recs)})
            missing = data.get("not_in_clinical_table") or []
            if missing:
                rows.append({"Left out of": "every analysis", "Patients": len(missing),
                             "Why": "images without a row in the clinical table",
                             "Who": _id_list(missing)})
        else:
            empty = data.get("empty_automatic_mask") or []
            if empty:
                rows.append({"Left out of": f"{stage} (and what uses its features)",
                             "Patients": len(empty), "Why": "the automatic mask is empty",
                             "Who": _id_list(empty)})
            absent = data.get("no_automatic_mask") or []
            if absent:
                rows.append({"Left out of": f"{stage} (and what uses its features)",
                             "Patients": len(absent),
                             "Why": "the automatic mask failed the segmentation checks and was "
                                    "not replaced (segment/qc.csv)",
                             "Who": _id_list(absent)})
    if rows:
        out += ["<h3>Patients left out of an analysis</h3>", html_table(pd.DataFrame(rows)),
                para("clinical.missing: exclude leaves a patient without the values an analysis "
                     "needs out of that analysis only; clinical.missing: error refuses the table "
                     "instead.", "small")]
    return "".join(out)


def _id_list(ids: Iterable[Any], limit: int = 20) -> str:
    ids = [str(i) for i in ids]
    return ", ".join(ids[:limit]) + (f" ... (+{len(ids) - limit})" if len(ids) > limit else "")
