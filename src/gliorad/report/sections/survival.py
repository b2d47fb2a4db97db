"""Survival sections: signature, Kaplan-Meier, Cox Tables 3 and 4, nomograms, C-index,
calibration, all read from one analysis folder (``gliorad.survival.artifacts.write_analysis``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import gliorad.report.figures as F
from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import get, need, read_csv
from gliorad.report.markup import (
    esc,
    fmt_ci,
    fmt_num,
    fmt_p,
    html_table,
    is_missing,
    kv_table,
    note_list,
    para,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["calibration_html", "cindex_html", "cox_html", "km_html", "nomograms_html",
           "signature_html"]


_NULL_LABELS = {
    "logrank_p": "log-rank test", "c_index_signature": "C-index of the signature",
    "hr_signature_univariate": "hazard ratio of the signature groups (univariate)",
    "hr_signature": "hazard ratio of the signature groups",
    "hr_signature_per_sd": "hazard ratio per SD of the signature (integrated model)",
    "c_index_integrated": "C-index of the integrated model",
    "c_index_clinical": "C-index of the clinical model", "compare_p": "paired C-index comparison",
    "table_integrated": "Table 3 column (integrated model refit)",
    "table_clinical": "Table 4 column (clinical model refit)",
}


def _null_reasons(ctx: Context, keys: Sequence[str] | None = None, prefix: str = "") -> list[str]:
    """``cohort X: <metric> not computed: <why>`` for the null metrics of every cohort (the
    ``null_reasons`` of the survival metrics.json); ``keys`` or a key ``prefix`` select them."""
    out = []
    for name, c in ctx.survival_cohorts().items():
        for key, why in (c.get("null_reasons") or {}).items():
            if (keys is not None and key in keys) or (prefix and key.startswith(prefix)):
                label = _NULL_LABELS.get(key, key.replace("calibration.", "calibration "))
                out.append(f"cohort {name}: {label} not computed: {why}")
    return out


def _reasons_html(lines: Sequence[str], title: str = "Not computed") -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{esc(x)}</li>" for x in lines)
    return f'<p class="small"><b>{esc(title)}</b></p><ul class="small">{items}</ul>'


_RULES = {
    "paper": ("the paper's rule: univariate P < {p}, then multivariable P < {p}, refitted with the "
              "factors kept"),
    "prespecified": ("pre-specified: every usable candidate factor{sig}, no P-value selection "
                     "(factors with one level or that cannot be estimated are left out, with a "
                     "warning)"),
}


def _model_lines(metrics: Mapping[str, Any]) -> list[str]:
    """One sentence per Cox model: its factor rule, its factors, and why it is absent or equals
    the other model (``metrics["models"]``; older metrics.json files lack it)."""
    models = metrics.get("models") or {}
    out = []
    for which in ("integrated", "clinical"):
        info = models.get(which)
        if not info:
            continue
        rule = _RULES.get(info.get("rule"), str(info.get("rule")))
        rule = rule.format(p=f"{info.get('p_threshold', 0.05):g}",
                           sig=" plus the signature" if which == "integrated" else "")
        factors = ", ".join(map(str, info.get("factors") or [])) or "none"
        text = f"{which.capitalize()} model: {rule}. Factors: {factors}."
        if not info.get("fitted"):
            text += f" No model: {info.get('reason')}."
        elif info.get("same_as_clinical"):
            text += f" It is the clinical model ({info.get('reason')})."
        elif info.get("reason"):
            text += f" {info.get('reason')[:1].upper()}{info.get('reason')[1:]}."
        out.append(text)
    return out


def signature_html(ctx: Context) -> str:
    """The signature formula, its weights and cut-off, and the sequence choice."""
    files = ctx.survival_files()
    metrics = ctx.survival_metrics()
    sig = get(metrics, "signature", files.metrics)
    formula = read_csv(need(files.signature_formula, "the signature (write_analysis)"),
                       required=("feature", "weight"))
    rows = [("training cohort", metrics.get("training", "")),
            ("sequence", sig.get("sequence") or "(none chosen)"),
            ("features", len(formula)), ("non-zero weights", int((formula["weight"] != 0).sum())),
            ("cut-off", (f"{fmt_num(sig.get('cutoff'), 4)} ({sig.get('cutoff_method', '')}); "
                        "high risk: signature > cut-off"))]
    parts = [f'<p class="formula"><code>{esc(sig.get("formula", ""))}</code></p>',
             para("z(f) = (f - centre) / scale with the training cohort's centre and scale.",
                  "small"),
             kv_table(rows)]
    cols = [c for c in ("rank", "feature", "weight", "raw_weight", "center", "scale")
            if c in formula.columns]
    parts.append(html_table(formula[cols], digits=4))
    if len(formula):
        parts.append(ctx.figures.add("signature_weights", F.signature_weights_figure(formula),
                                     "Signature weights per standard deviation of each feature.",
                                     "signature_formula.csv"))
    if sig.get("constant"):
        parts.insert(0, para(f"The signature is constant (every weight is 0): "
                             f"{sig.get('constant_reason')}. It is left out of the Cox models; its "
                             "C-index, hazard ratio and log-rank test are not computed."))
    seq_path = files.sequence_choice
    choice = metrics.get("sequence_choice") or {}
    if seq_path.is_file():
        seq = read_csv(seq_path)
        if not seq.empty:
            parts += ["<h3>Sequence choice</h3>",
                      para("Prognosis (median-OS) model per sequence on the training cohort; the "
                           "best AUC chooses the radiomics that join the deep features.", "small"),
                      html_table(seq)]
            if choice.get("fallback"):
                parts.append(para(f"Fallback: {choice['fallback']}."))
    return "".join(parts)


def km_html(ctx: Context) -> str:
    """One Kaplan-Meier figure per cohort with its log-rank P and hazard ratio."""
    files = ctx.survival_files()
    parts = []
    for name, c in ctx.survival_cohorts().items():
        png = files.km(name)
        if not png.is_file():
            parts.append(para(f"Cohort {name}: no Kaplan-Meier figure (no survival data)."))
            continue
        hr = c.get("hr_signature") or {}
        per_sd = c.get("hr_signature_per_sd") or {}  # survival.signature_term: continuous
        why_no_lr = (c.get("null_reasons") or {}).get("logrank_p")
        caption = (f"Cohort {name} ({c.get('role', '')}): {c.get('n_analysed', '?')} patients, "
                   f"{c.get('n_events', '?')} events; high risk {c.get('n_high', '?')}, low risk "
                   f"{c.get('n_low', '?')}; log-rank P {fmt_p(c.get('logrank_p')) or 'n/a'}"
                   + (f" ({why_no_lr})" if why_no_lr and is_missing(c.get("logrank_p")) else "")
                   + (f"; HR high vs low {fmt_ci(hr.get('hr'), hr.get('ci'), 2)}"
                      f" ({c.get('hr_signature_model', '')})" if hr else "")
                   + (f"; in the integrated model HR per SD of the signature "
                      f"{fmt_ci(per_sd.get('hr'), per_sd.get('ci'), 2)}" if per_sd else "") + ".")
        parts.append(ctx.figures.add_png(f"km_{name}", png, caption))
    if not parts:
        parts.append(para("The survival analysis lists no cohort."))
    return f'<div class="fig-grid">{"".join(parts)}</div>'


def cox_html(ctx: Context) -> str:
    """Tables 3 and 4, each model's factor rule, the univariate screen."""
    files = ctx.survival_files()
    metrics = ctx.survival_metrics()
    lines = _model_lines(metrics)
    if lines:
        parts = [para(x) for x in lines]
        parts.append(para("Factors chosen on the training cohort; validation columns refit the same "
                          "factors in that cohort.", "small"))
    else:  # a metrics.json written before the factor rule was a setting
        parts = [para("Factors chosen on the training cohort by the paper's rule (univariate P < "
                      "0.05, then multivariable P < 0.05, refitted); validation columns refit the "
                      "same factors in that cohort.")]
    tables = (("Table 3. Integrated model (clinical factors + signature)", "integrated"),
              ("Table 4. Clinical model", "clinical"))
    for caption, which in tables:
        factors = metrics.get(f"{which}_factors") or []
        parts.append(f"<h3>{esc(caption)}</h3>")
        parts.append(para(f"Factors: {', '.join(map(str, factors)) or '(none selected)'}.",
                          "small"))
        path = files.paper_table(which)
        info = (metrics.get("models") or {}).get(which) or {}
        if path.is_file():
            parts.append(html_table(read_csv(path)))
        elif info.get("reason"):
            parts.append(para(f"No table: {info['reason']}."))
        else:
            parts.append(para("No table: no factor was selected or the model is not estimable."))
    uni = files.univariate
    if uni.is_file():
        t = read_csv(uni, required=("label", "hr", "ci_lower", "ci_upper", "p_value"))
        shown = pd.DataFrame({"Characteristic": t["label"],
                              "HR (95% CI)": [
                                  fmt_ci(h, [lo, hi], 2) for h, lo, hi in
                                  zip(t["hr"], t["ci_lower"], t["ci_upper"], strict=True)],
                              "P": t["p_value"]})
        parts.append(f"<details><summary>Univariate screen, training cohort ({len(t)} rows)"
                     f"</summary>{html_table(shown, p_cols=('P',))}</details>")
    parts.append(_reasons_html(_null_reasons(ctx, ("table_integrated", "table_clinical"))))
    parts.append(note_list(metrics.get("warnings") or [], "Warnings"))
    return "".join(parts)


def nomograms_html(ctx: Context) -> str:
    """The integrated and the clinical nomogram, or why one is absent."""
    files = ctx.survival_files()
    metrics = ctx.survival_metrics()
    times = ", ".join(f"{t:g}" for t in metrics.get("times_days") or [])
    parts = []
    for which in ("integrated", "clinical"):
        png = files.nomogram(which)
        factors = ", ".join(map(str, metrics.get(f"{which}_factors") or [])) or "(none)"
        info = (metrics.get("models") or {}).get(which) or {}
        if png.is_file():
            same = (" It is the clinical model's nomogram." if info.get("same_as_clinical") else "")
            parts.append(ctx.figures.add_png(
                f"nomogram_{which}", png,
                f"Nomogram of the {which} model (factors: {factors}); survival at {times} days."
                + same))
        else:
            why = info.get("reason") or f"the {which} model has no factor"
            parts.append(para(f"No {which} nomogram: {why}."))
    return "".join(parts)


def cindex_html(ctx: Context) -> str:
    """Harrell's C of both models per cohort, their paired comparison and figure."""
    rows, fig_rows = [], []
    for name, c in ctx.survival_cohorts().items():
        sig = c.get("c_index_signature") or {}
        rows.append({
            "Cohort": name, "Role": c.get("role", ""), "Patients": c.get("n_analysed"),
            "Events": c.get("n_events"),
            "C integrated (95% CI)": fmt_ci(c.get("c_index_integrated"),
                                            c.get("c_index_integrated_ci")),
            "C clinical (95% CI)": fmt_ci(c.get("c_index_clinical"), c.get("c_index_clinical_ci")),
            "Difference (95% CI)": fmt_ci(c.get("compare_diff"), c.get("compare_diff_ci")),
            "Paired P": c.get("compare_p"),
            "C signature (95% CI)": fmt_ci(sig.get("c_index"), sig.get("ci")),
        })
        fig_rows.append({"cohort": name, "integrated": c.get("c_index_integrated"),
                         "integrated_ci": c.get("c_index_integrated_ci"),
                         "clinical": c.get("c_index_clinical"),
                         "clinical_ci": c.get("c_index_clinical_ci"), "p": c.get("compare_p")})
    if not rows:
        return para("The survival analysis lists no cohort.")
    parts = [para("Harrell's C with infinitesimal-jackknife 95% CIs; the paired P compares the "
                  "two models' C on the same patients."),
             html_table(pd.DataFrame(rows), p_cols=("Paired P",))]
    integrated = (ctx.survival_metrics().get("models") or {}).get("integrated") or {}
    if integrated.get("same_as_clinical"):
        parts.append(para(f"The integrated model is the clinical model ({integrated.get('reason')}): "
                          "their C-indices are equal and not compared."))
    parts.append(_reasons_html(_null_reasons(
        ctx, ("c_index_signature", "c_index_integrated", "c_index_clinical", "compare_p"))))
    if any(r["integrated"] is not None or r["clinical"] is not None for r in fig_rows):
        parts.append(ctx.figures.add("c_index", F.cindex_figure(fig_rows),
                                     "C-index of the integrated and the clinical model per cohort.",
                                     "the survival metrics.json"))
    return "".join(parts)


def calibration_html(ctx: Context) -> str:
    """Calibration figures per model, cohort and time."""
    from gliorad.survival.config import time_label

    files = ctx.survival_files()
    csv_path = files.calibration
    table = (read_csv(csv_path, required=("model", "cohort", "t_days", "predicted", "observed"),
                      dtype={"cohort": str}) if csv_path.is_file() else None)
    intro = para("Training cohort: bootstrap-corrected calibration of the fitted model; "
                 "validation cohorts: the training model's predictions against Kaplan-Meier, "
                 "without refitting.")
    parts: list[str] = []
    for name, c in ctx.survival_cohorts().items():
        cal = c.get("calibration") or {}
        for key, entry in cal.items():
            if entry is None:  # not computed; the reason is in null_reasons
                continue
            which = key.split("/")[0]
            t = float(entry.get("t_days", key.split("/")[-1]))
            png = files.calibration_figure(which, name, t)
            if not png.is_file():
                raise GlioradInputError(f"{png}: not found; metrics.json lists calibration {key!r} "
                                        f"of cohort {name}")
            label = f"{time_label(t)} survival"
            boot = f"; {entry['n_boot']} bootstrap resamples" if entry.get("n_boot") else ""
            caption = (f"{which.capitalize()} nomogram, cohort {name}: {label}; mean absolute "
                       f"error {fmt_num(entry.get('mean_abs_error'))}{boot}.")
            svg_from = None
            if table is not None:
                sub = table[(table["model"] == which) & (table["cohort"] == str(name))
                            & np.isclose(table["t_days"].astype(float), t)]
                if not sub.empty:
                    svg_from = _calibration_plot(sub, t, int(entry.get("n_boot") or 0), which,
                                                 name, label)
            parts.append(ctx.figures.add_png(f"calibration_{which}_{name}_{t:g}d", png, caption,
                                             svg_from, "calibration.csv"))
    reasons = _reasons_html(_null_reasons(ctx, prefix="calibration."))
    if not parts:
        return intro + para(
            "No calibration curve was computed (calibration times beyond the follow-up, no model, "
            "or calibration disabled).") + reasons
    return intro + f'<div class="fig-grid">{"".join(parts)}</div>' + reasons


def _calibration_plot(sub: pd.DataFrame, t: float, n_boot: int, which: str, name: str,
                      label: str) -> Callable[[], Figure]:
    def make() -> Figure:
        from gliorad.survival.calibration import CalibrationResult
        from gliorad.survival.plots import plot_calibration

        tab = sub.drop(columns=["model", "cohort", "t_days"]).reset_index(drop=True)
        res = CalibrationResult(tab, t, np.array([]), np.array([]), n_boot)
        fig = plot_calibration(res, xlabel=f"Nomogram-predicted {label}",
                               ylabel=f"Observed {label} (Kaplan-Meier)")
        fig.axes[0].set_title(f"{which} nomogram, {name}", fontsize=9)
        return fig

    return make
