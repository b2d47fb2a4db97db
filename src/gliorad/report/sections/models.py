"""Model comparison section (not in the paper; issue 18): the candidates of a model search.

Shown only when the run searched: ``grading.model: auto`` (the ``candidates`` block that
:func:`gliorad.grading.comparison.candidate_results` adds to each evaluated set's metrics in the
grading tables' ``metrics.json``) or ``survival.model`` other than ``paper`` (the
``model_search`` block of the survival analysis' ``metrics.json``,
:meth:`gliorad.survival.search.ModelSearch.to_dict`). A run of the paper's models has neither:
the section is left out and the report is what it was before the search existed.

Grading, per evaluated set: each candidate's outer AUC with its DeLong 95% CI (the headline
patients of the set's evaluation), the paired DeLong difference and P against the paper's recipe
on the same patients, how often the inner search chose it over the outer folds, its mean inner
AUC and its most often selected features; ``auto`` (the nested choice itself) first. The bundle's
grading model (fitted on every graded patient) with its choice, when the bundle records one.
Survival: each candidate's inner cross-validated C-index in the training cohort, and its C-index
with 95% CI in each validation cohort (computed after the choice, for reporting only); the chosen
one, why, and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import get, present, read_csv, read_json
from gliorad.report.inputs import switched_off
from gliorad.report.markup import esc, fmt_ci, fmt_num, html_table, is_missing, note_list, para

__all__ = ["model_comparison_html", "model_search_ran"]

CHOSEN = "chosen"
_TABLES = ("table_s3", "table_1", "table_2")


# ------------------------------------------------------------------------------------ inputs
def _grading_blocks(ctx: Context) -> dict[str, dict[str, Any]]:
    """Evaluated set -> its ``candidates`` block (sets without one left out), in the order of
    the grading tables' ``metrics.json``."""
    if "grading" in switched_off(ctx.config()) or not present(ctx.inputs.grade_tables):
        return {}
    path = Path(ctx.inputs.grade_tables) / "metrics.json"
    if not path.is_file():
        return {}

    def make() -> dict[str, dict[str, Any]]:
        out = {}
        for name, m in read_json(path).items():
            if isinstance(m, Mapping) and m.get("candidates") is not None:
                block = get(m, "candidates", path)
                table = block.get("table")
                if not isinstance(table, list) or not all(isinstance(r, Mapping) for r in table):
                    raise GlioradInputError(f"{path}: {name}.candidates.table: expected a list of "
                                            "rows (gliorad.grading.comparison)")
                out[str(name)] = dict(block)
        return out

    return ctx._once("grading_candidates", make)


def _survival_search(ctx: Context) -> dict[str, Any] | None:
    """The survival analysis' ``model_search`` block, or None."""
    if "survival" in switched_off(ctx.config()) or not present(ctx.inputs.survival):
        return None
    if not ctx.survival_files().metrics.is_file():
        return None
    block = ctx.survival_metrics().get("model_search")
    if block is None:
        return None
    source = ctx.survival_files().metrics
    if not isinstance(block, Mapping):
        raise GlioradInputError(f"{source}: 'model_search' is a {type(block).__name__}, not a dict")
    get(block, "candidates", source, list)
    return dict(block)


def model_search_ran(ctx: Context) -> bool:
    """Whether the run searched a grading or survival model (else the section is left out)."""
    return bool(_grading_blocks(ctx)) or _survival_search(ctx) is not None


# ------------------------------------------------------------------------------------ grading
def _set_labels(folder: Path) -> dict[str, str]:
    """Set name -> its row label in the grading tables (``Methods``)."""
    out: dict[str, str] = {}
    for key in _TABLES:
        path = folder / f"{key}.csv"
        if path.is_file():
            df = read_csv(path)
            if {"Methods", "set"} <= set(df.columns):
                out.update(zip(df["set"].astype(str), df["Methods"].astype(str), strict=True))
    return out


def _diff(est: Any, low: Any, high: Any) -> str:
    """A signed difference with its CI (``+0.050 (-0.010 to +0.110)``)."""
    if is_missing(est):
        return ""
    text = f"{float(est):+.3f}"
    if not (is_missing(low) or is_missing(high)):
        text += f" ({float(low):+.3f} to {float(high):+.3f})"
    return text


def _count(v: Any) -> int | None:
    return None if is_missing(v) else round(float(v))


def _grading_table(rows: Sequence[Mapping[str, Any]], n_fits: int) -> pd.DataFrame:
    """The candidates of one set as shown: ``auto`` first, the most often chosen marked."""
    counts = {r["candidate"]: _count(r.get("n_chosen")) or 0 for r in rows
              if r.get("candidate") != "auto"}
    top = max(counts.values(), default=0)
    cv = any(not is_missing(r.get("auc_mean")) for r in rows)
    split = any(not is_missing(r.get("validation_auc")) for r in rows)
    out = []
    for r in sorted(rows, key=lambda r: r.get("candidate") != "auto"):  # stable: auto first
        name = str(r.get("candidate"))
        n = counts.get(name)
        row: dict[str, Any] = {
            "Candidate": "auto (nested choice)" if name == "auto" else name,
            "Chosen": (CHOSEN if n and n == top and n_fits == 1 else
                       "most often" if n and n == top else ""),
            "Outer AUC (95% CI)": fmt_ci(r.get("auc"), [r.get("auc_ci_low"), r.get("auc_ci_high")]),
        }
        if cv:
            row["Mean AUC (SD) over repeats"] = (
                "" if is_missing(r.get("auc_mean")) else
                f"{fmt_num(r.get('auc_mean'))} ({fmt_num(r.get('auc_sd'))})"
                if not is_missing(r.get("auc_sd")) else fmt_num(r.get("auc_mean")))
        if split:
            row["Validation AUC"] = r.get("validation_auc")
        row.update({
            "AUC minus paper (95% CI)": _diff(r.get("diff_vs_paper"), r.get("diff_ci_low"),
                                              r.get("diff_ci_high")),
            "P vs paper": r.get("p_vs_paper"),
            "Chosen in outer folds": ("" if n is None else
                                      f"{n} of {n_fits} ({100 * n / n_fits:.0f}%)" if n_fits
                                      else str(n)),
            "Inner AUC (mean)": r.get("inner_auc_mean"),
            "Features (mean)": ("" if is_missing(r.get("n_features_mean"))
                                else fmt_num(r.get("n_features_mean"), 1)),
            "Most often selected (frequency over outer folds)": r.get("top_features") or "",
            "Note": r.get("note") or "",
        })
        out.append(row)
    return pd.DataFrame(out)


def _bundle_choice(ctx: Context) -> list[str]:
    """The bundle's grading model and its choice (``grading/model.json``), when it records one."""
    if not present(ctx.inputs.bundle):
        return []
    folder = Path(ctx.inputs.bundle)
    if not (folder / "manifest.json").is_file() and (folder / "bundle" / "manifest.json").is_file():
        folder = folder / "bundle"  # a workspace's bundle stage folder holds the bundle
    path = folder / "grading" / "model.json"
    if not path.is_file():
        return []
    info = read_json(path)
    if "model" not in info:  # the paper's recipe: model.json records no choice
        return []
    parts = [f"grading.model {info['model']}"]
    if info.get("chosen"):
        parts.append(f"chose {info['chosen']}: {info.get('choice_reason', '')}")
    return ["<h3>" + esc("The bundle's grading model") + "</h3>", para(
        "Fitted on every graded patient with the fused features (what gliorad predict uses): "
        + "; ".join(parts) + ".")]


def _grading_html(ctx: Context, blocks: Mapping[str, Mapping[str, Any]]) -> str:
    folder = Path(ctx.inputs.grade_tables)
    labels = _set_labels(folder)
    first = next(iter(blocks.values()))
    parts = ["<h3>Grading (HGG vs LGG): the candidates of grading.model</h3>",
             para("Each outer fold (or the split's training part) chose a candidate by inner "
                  "cross-validation of its training patients only and refitted every candidate "
                  "there, so each candidate's outer AUC is measured on patients no choice saw; "
                  "'auto' is the nested choice itself, its estimate honest. Outer AUC with "
                  "DeLong 95% CI on the patients of the set's headline metrics; "
                  f"{first.get('comparison', 'paired DeLong test against paper')}."),
             para(f"Choice rule: {first.get('rule', '')}.", "small")]
    order = [n for n in labels if n in blocks] + [n for n in blocks if n not in labels]
    for name in order:  # the sets in the grading tables' order
        block = blocks[name]
        choices = block.get("choices") or []
        label = labels.get(name)
        parts.append(f"<h3>{esc(label + ' (' + name + ')' if label else name)}</h3>")
        table = _grading_table(block["table"], len(choices))
        parts.append(html_table(table, p_cols=("P vs paper",)))
        parts.append(note_list(
            [f"repeat {c.get('repeat')} fold {c.get('fold')}: {c.get('chosen')} "
             f"({c.get('reason', '')})" for c in choices], "Choice in each outer fold"))
    return "".join(parts) + "".join(_bundle_choice(ctx))


# ------------------------------------------------------------------------------------ survival
def _sentence(text: Any) -> str:
    text = "" if text is None else str(text).strip()
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def _survival_html(block: Mapping[str, Any]) -> str:
    rows = block["candidates"]
    chosen = block.get("chosen")
    cohorts: list[str] = list(dict.fromkeys(c for r in rows
                                            for c in (r.get("external") or {})))
    out = []
    for r in rows:
        name = str(r.get("name"))
        row: dict[str, Any] = {"Candidate": name, "Chosen": CHOSEN if name == chosen else "",
                               "Inner C-index": r.get("inner_c_index"),
                               "Inner C-index of the signature": r.get("inner_c_index_signature"),
                               "Inner folds": r.get("inner_folds")}
        notes = [str(r["reason"])] if r.get("reason") else []
        for cohort in cohorts:
            ext = (r.get("external") or {}).get(cohort) or {}
            role = f" ({ext['role']})" if ext.get("role") else ""
            row[f"C-index {cohort}{role} (95% CI)"] = fmt_ci(ext.get("c_index"), ext.get("ci"))
            row[f"Signature C-index {cohort}"] = ext.get("c_index_signature")
            if ext.get("reason"):
                notes.append(f"{cohort}: {ext['reason']}")
        row["Note"] = "; ".join(notes)
        out.append(row)
    table = pd.DataFrame(out)
    auto = block.get("setting") == "auto"
    rule = (f"Choice rule: {block.get('measure', '')}; the best inner C-index is chosen, ties "
            "going to the first of " + ", ".join(map(str, block.get("tie_order") or []))
            + "; only the training cohort decides." if auto else
            f"Not chosen: set by the run config; {block.get('measure', '')} of it and of the "
            "clinical model, for comparison.")
    parts = ["<h3>LGG survival: the candidates of survival.model</h3>",
             para(f"survival.model {block.get('setting')}: {chosen} "
                  f"{'chosen' if auto else 'used'} ({block.get('why', '')})."),
             para(f"{rule} {_sentence(block.get('external_note'))}", "small"),
             html_table(table, digits=4),
             note_list(block.get("notes") or [], "Notes of the search")]
    return "".join(parts)


# ------------------------------------------------------------------------------------ section
def model_comparison_html(ctx: Context) -> str:
    """The grading and survival model searches of the run (see the module docstring)."""
    blocks = _grading_blocks(ctx)
    search = _survival_search(ctx)
    parts = [para("Not in the paper: besides the paper's recipe, other models were evaluated "
                  "and one was chosen by cross-validation inside the training patients only.")]
    if blocks:
        parts.append(_grading_html(ctx, blocks))
    if search is not None:
        parts.append(_survival_html(search))
    return "".join(parts)
