"""Benchmark: does the fused model beat radiomics alone and the CNN alone, over cohort draws?

    .venv/bin/python bench/fusion.py [--draws 6] [--first-seed 1] [--workspace DIR] [--quick]

One draw is the ``demo`` run preset with ``run.seed = s`` (a new synthetic cohort, split, 3D CNN
and grading models), run up to its grade stage with the manual masks (``segmentation.enabled
false``: the U-Net's masks agree with them, ICC median ~0.92, and skipping it saves ~3.5 minutes
a draw) and without the survival stages. Each draw's grade stage reports on its own 48-patient
test part, where an AUC has a standard error of ~0.06: one draw cannot tell a 0.05 difference
from noise, several can. Per draw: the test-part AUC of the best radiomics sequence (Table S3,
chosen on the test part as the paper does, so slightly optimistic), the 3D CNN alone (Table 2),
the fused model (Table 1) and the Bayes-optimal score (truth.json's true probability); then the
mean and SD over draws, how many draws the fused model won, and the Wilcoxon signed-rank P of the
paired differences. Draws are resumable: a rerun with the same workspace reuses finished stages.
Prints a table and writes bench/out/fusion.json. About 5 minutes a draw on 2 cores; ``--quick``
runs two draws.

With ``--cross-fit k`` (default 3; ``deep3d.cross_fit``) each draw also trains k cross-fitted
CNNs on folds of its training part (about 2.5 minutes each) and reports the stacked row of Table
1 (radiomics model + out-of-sample CNN scores, :mod:`gliorad.grading.stacking`); the radiomics
set that the fused and stacked models use is the one with the best validation-part AUC
("radiomics (val)" in the table). "late-fusion bound" is a diagnostic: a logistic regression of
the test labels on the two sources' test scores fitted on the test patients themselves, an upper
bound for any late fusion of those two scores.

Two more diagnostics per draw: the paired DeLong difference of each fused model and each source,
pooled over the draws by a random-effects meta-analysis (statsmodels' ``combine_effects``,
Paule-Mandel between-draw variance), which uses every draw's test-set size where a Wilcoxon test
of a handful of draws cannot reach P < 0.05; and ``latent weights``, what each source learnt: the
least-squares weights of the generator's cues (m, u, w; truth.json) in the logit of its test-part
probability (the true grade logit weighs them equally). ``--set KEY=VALUE`` passes more run-config
settings to every draw, e.g. ``--set synthetic.n_patients=600`` for larger cohorts (11-13 minutes
a draw on 2 cores; bench/RESULTS.md has five such draws).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import OUT_DIR, Column, format_table, machine_info, run_demo_draw, write_results
from scipy.stats import wilcoxon

from gliorad.stats import roc_auc

SETTINGS = ["segmentation.enabled=false", "deep2d.enabled=false", "survival.enabled=false"]


def run_draw(seed: int, workspace: Path, cross_fit: int, extra: list[str] = ()) -> float:
    """Run the demo preset's stages up to grading for one seed; return the wall seconds."""
    return run_demo_draw(seed, workspace, "grade", [*SETTINGS, f"deep3d.cross_fit={cross_fit}", *extra])


def collect(seed: int, ws: Path, seconds: float) -> dict:
    """Test-part AUCs of one draw's grade stage and the oracle on the same patients."""
    metrics = json.loads((ws / "grade" / "tables" / "metrics.json").read_text(encoding="utf-8"))
    rad = {k.removeprefix("radiomics_"): v["auc"] for k, v in metrics.items()
           if k.startswith("radiomics_")}
    rad_val = {k.removeprefix("radiomics_"): v["validation"]["auc"] for k, v in metrics.items()
               if k.startswith("radiomics_")}
    best = max(rad, key=rad.get)
    # the set the fused and stacked models used (best validation AUC; ties: the tables' order)
    notes = json.loads((ws / "grade" / "tables" / "notes.json").read_text(encoding="utf-8"))
    used = [n.split(": ", 1)[1].split(" ")[0] for n in notes["notes"]
            if n.startswith("radiomics set fused with the CNN: ")]
    chosen = (used[0].removeprefix("radiomics_") if used else max(rad_val, key=rad_val.get))
    fused = next(v["auc"] for k, v in metrics.items() if k.startswith("fused_"))
    stacked = next((v["auc"] for k, v in metrics.items() if k.startswith("stacked_")), None)
    cnn = json.loads((ws / "deep3d" / "patch_se" / "metrics.json").read_text(encoding="utf-8"))
    truth = json.loads((ws / "cohort" / "cohort" / "truth.json").read_text(encoding="utf-8"))
    split = pd.read_csv(ws / "split" / "split.csv", dtype={"patient_id": str})
    test = split.loc[split["grade_split"] == "test", "patient_id"]
    pats = truth["patients"]
    y = np.array([pats[p]["grade_group"] == "HGG" for p in test])
    prob = np.array([pats[p]["grade_probability"] for p in test])
    files = {"radiomics_best": f"radiomics_{best}", "radiomics_val_chosen": f"radiomics_{chosen}",
             "cnn": "cnn_patch_se", "fused": "fused_patch_se",
             **({"stacked": "stacked_patch_se"} if stacked is not None else {})}
    folder = ws / "grade" / "tables" / "predictions"  # test-part predictions of each row
    preds = {k: pd.read_csv(folder / f"{f}.csv", dtype={"patient_id": str}).set_index("patient_id")
             for k, f in files.items()}
    bound = late_fusion_bound(preds["radiomics_val_chosen"], preds["cnn"])
    paired = paired_differences(preds)
    weights = latent_weights({"radiomics": preds["radiomics_val_chosen"], "cnn": preds["cnn"]}, pats)
    return {"seed": seed, "seconds": seconds, "n_test": len(test),
            "radiomics_best": rad[best], "radiomics_sequence": best, "radiomics": rad,
            "radiomics_val_chosen": rad[chosen], "radiomics_val_sequence": chosen,
            "cnn": cnn["test"]["auc"], "cnn_train": cnn["train"]["auc"], "fused": fused,
            "stacked": stacked, "late_fusion_bound": bound, "latent_weights": weights,
            "paired": paired,
            "oracle_test": roc_auc(y, prob), "oracle": truth["oracle"]}


MODELS = ("fused", "stacked")
SOURCES = ("radiomics_best", "radiomics_val_chosen", "cnn")


def late_fusion_bound(r: pd.DataFrame, c: pd.DataFrame) -> float:
    """A diagnostic, not a model: the test AUC of a logistic regression of the test labels on the
    two sources' test logits (radiomics predictions ``r``, the CNN's ``c``), fitted on those same
    test patients. No late fusion of these two scores can do much better; when this is barely above
    the better source, fusion is limited by what each source learnt, not by how they are
    combined."""
    from sklearn.linear_model import LogisticRegression

    from gliorad.grading.stacking import logit

    Z = np.column_stack([logit(r["probability"]), logit(c["probability"].loc[r.index])])
    fit = LogisticRegression(C=1e6).fit(Z, r["label"].to_numpy())
    return roc_auc(r["label"].to_numpy(), fit.predict_proba(Z)[:, 1])


def paired_differences(preds: dict[str, pd.DataFrame]) -> dict:
    """DeLong paired AUC difference (and its variance) of each fused model minus each source on
    this draw's test patients (``preds``: the test-part predictions by row kind)."""
    from gliorad.stats import delong_test

    out = {}
    for model in MODELS:
        if model not in preds:
            continue
        a = preds[model]
        for other in SOURCES:
            b = preds[other].loc[a.index]
            t = delong_test(a["label"].to_numpy(), a["probability"].to_numpy(),
                            b["probability"].to_numpy())
            out[f"{model}_minus_{other}"] = {"diff": t.diff, "var": t.se_diff**2, "p": t.p}
    return out


def pooled(rows: list[dict], key: str) -> dict | None:
    """Random-effects (Paule-Mandel) meta-analysis of one paired AUC difference over the draws:
    each draw's DeLong difference weighted by its variance, plus the between-draw variance
    (model training differs from draw to draw). With few draws a Wilcoxon test cannot reach
    P < 0.05 (six draws: 0.031 at best, five: 0.0625); this uses each draw's test-set size."""
    from scipy.stats import norm
    from statsmodels.stats.meta_analysis import combine_effects

    d = [r["paired"][key] for r in rows if key in r.get("paired", {})]
    if len(d) < 2:
        return None
    res = combine_effects(np.array([x["diff"] for x in d]), np.array([x["var"] for x in d]),
                          method_re="iterated")
    re_ = res.summary_frame().loc["random effect"]
    est, se = float(re_["eff"]), float(re_["sd_eff"])
    return {"estimate": est, "se": se, "ci_low": float(re_["ci_low"]),
            "ci_high": float(re_["ci_upp"]), "p": float(2 * norm.sf(abs(est / se))),
            "tau2": float(res.tau2), "draws": len(d)}


def latent_weights(sources: dict[str, pd.DataFrame], patients: dict) -> dict:
    """A diagnostic: what each source learnt. The least-squares weights of the generator's latent
    cues (malignancy m, infiltration u, mismatch w; truth.json) in the logit of each source's
    test-part probability, and the R^2. The true grade logit weighs the three equally
    (``grade_slope``, ``infiltration_slope``, ``mismatch_slope``); a source that can see its own
    cue but weighs it far below m has under-learnt it."""
    import statsmodels.api as sm

    from gliorad.grading.stacking import logit

    out = {}
    for name, p in sources.items():
        lat = pd.DataFrame({k: [patients[i][k] for i in p.index]
                            for k in ("malignancy_m", "infiltration_u", "mismatch_w")}, index=p.index)
        fit = sm.OLS(logit(p["probability"].to_numpy()), sm.add_constant(lat.astype(float))).fit()
        out[name] = {"m": float(fit.params["malignancy_m"]), "u": float(fit.params["infiltration_u"]),
                     "w": float(fit.params["mismatch_w"]), "r2": float(fit.rsquared)}
    return out


def summarise(rows: list[dict]) -> dict:
    out = {}
    for key in (*SOURCES, *MODELS, "late_fusion_bound", "oracle_test"):
        if any(r[key] is None for r in rows):
            continue
        v = np.array([r[key] for r in rows])
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None}
    for model in MODELS:
        if model not in out:
            continue
        for other in SOURCES:
            d = np.array([r[model] - r[other] for r in rows])
            p = float(wilcoxon(d).pvalue) if len(d) > 1 and np.any(d != 0) else None
            out[f"{model}_minus_{other}"] = {"mean": float(d.mean()), "wins": int((d > 0).sum()),
                                             "draws": len(d), "wilcoxon_p": p,
                                             "pooled": pooled(rows, f"{model}_minus_{other}")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="two draws (about 10 minutes)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workspace", type=Path, default=OUT_DIR / "fusion_ws")
    parser.add_argument("--cross-fit", type=int, default=3,
                        help="deep3d.cross_fit: folds of the cross-fitted CNNs behind the stacked "
                        "row (0: no stacked row)")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="more run-config settings for every draw (e.g. synthetic.mismatch_max=0.8)")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws = 2
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.draws):
        ws = args.workspace / f"seed{seed}"
        seconds = run_draw(seed, ws, args.cross_fit, args.extra)
        rows.append(collect(seed, ws, seconds))
        r = rows[-1]
        st = "" if r["stacked"] is None else f", stacked {r['stacked']:.3f}"
        print(f"draw seed {seed}: radiomics ({r['radiomics_sequence']}) {r['radiomics_best']:.3f}, "
              f"CNN {r['cnn']:.3f}, fused {r['fused']:.3f}{st}, oracle {r['oracle_test']:.3f} "
              f"({seconds:.0f} s)", flush=True)
        print("  latent weights (m, u, w; R^2): " + "; ".join(
            f"{k} {v['m']:.2f} {v['u']:.2f} {v['w']:.2f} ({v['r2']:.2f})"
            for k, v in r["latent_weights"].items()), flush=True)
    summary = summarise(rows)
    cols = [Column("seed", "seed"), Column("best radiomics", "radiomics_best", ".3f"),
            Column("sequence", "radiomics_sequence", align="<"),
            Column("radiomics (val)", "radiomics_val_chosen", ".3f"),
            Column("CNN alone", "cnn", ".3f"), Column("fused", "fused", ".3f"),
            *([Column("stacked", "stacked", ".3f")] if "stacked" in summary else []),
            Column("late-fusion bound", "late_fusion_bound", ".3f"),
            Column("oracle", "oracle_test", ".3f"), Column("seconds", "seconds", ".0f")]
    print(format_table(rows, cols, rule="-+-"))
    for key in (*SOURCES, *MODELS, "late_fusion_bound", "oracle_test"):
        if key not in summary:
            continue
        s = summary[key]
        print(f"mean {key}: {s['mean']:.3f}" + (f" (SD {s['sd']:.3f})" if s["sd"] is not None else ""))
    for model in MODELS:
        for other in SOURCES:
            s = summary.get(f"{model}_minus_{other}")
            if s is None:
                continue
            p = "n/a" if s["wilcoxon_p"] is None else f"{s['wilcoxon_p']:.3f}"
            pl = s["pooled"]
            pool = ("" if pl is None else f"; pooled (random effects, DeLong variances) "
                    f"{pl['estimate']:+.3f} ({pl['ci_low']:+.3f} to {pl['ci_high']:+.3f}), P {pl['p']:.3f}")
            print(f"{model} - {other}: mean {s['mean']:+.3f}, {model} higher in {s['wins']} of "
                  f"{s['draws']} draws, Wilcoxon P {p}{pool}")
    write_results("fusion", {"machine": machine_info("platform", "python", "cpus"),
                             "settings": ["preset demo", *SETTINGS,
                                          f"deep3d.cross_fit={args.cross_fit}", *args.extra],
                             "draws": rows,
                             "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
