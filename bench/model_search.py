"""Benchmark: the model search (issue 18) against the oracle and the paper's recipe, over draws.

    .venv/bin/python bench/model_search.py [--draws 3] [--first-seed 1] [--workspace DIR]
                                           [--quick] [--set KEY=VALUE ...]

One draw is the ``demo`` run preset with ``run.seed = s`` (a new synthetic cohort, split, CNNs
and models) and what the ``best`` preset adds to the paper's recipe switched on: ``grading.model
auto``, ``survival.model auto``, ``survival.search.factor_rules [paper, prespecified]`` (the
search also chooses the Cox factor rule), ``survival.signature_term continuous`` (the signature's z-scored
score in the integrated Cox model, not the median split), ``deep2d.cross_fit 3`` (the signature
reads the cross-fitted 2D CNN's out-of-fold head outputs), and peritumoural ring radiomics
(``radiomics.peritumoural_mm [0, 5, 10]``: first-order features of each sequence in the 0-5 and
5-10 mm shells outside the tumour mask, joining each sequence's radiomics set) with a grading set
of every sequence's radiomics together (``grading.all_sequences``), run with the manual masks
(``segmentation.enabled false``, as bench/fusion.py) through the survival stage, without the
report. ``--set synthetic.n_patients=600`` gives the issue's
600-patient draws.

Grading, per draw (the grade stage's test part; ``grade/tables/metrics.json``): for the fused set
(radiomics + 3D CNN features, Table 1) and the radiomics set the fusion used, the test AUC of
``auto`` (the nested choice, made on the training part only), of every candidate (each refitted
on the same training part; ``candidates`` block) with its DeLong 95% CI, the best single
candidate (highest test AUC: an optimistic comparator, picked on the test patients), and the
oracle (truth.json's Bayes-optimal probability on the same test patients). Checks: ``auto``
within 0.05 of the oracle; ``auto`` not below the best single candidate's CI.

Survival, per draw (``survival/analysis/metrics.json``; the demo trains on centre B and
validates on centre A): the candidate ``auto`` chose, the external C-index of the integrated
model (clinical factors + the chosen signature), of the clinical model, their paired difference
(``compare_diff``; 0 when the integrated model is the clinical one), each candidate's external
C (``model_search``, reporting only) and the oracle: Harrell's C of the generator's true log
hazard (truth.json ``latent_risk``) on the same external patients. Pooled over draws: the paired
difference integrated - clinical by a random-effects meta-analysis (statsmodels'
``combine_effects``, as bench/fusion.py) and a one-sided sign count.

Draws are resumable (a rerun with the same workspace reuses finished stages). Prints a table and
writes bench/out/model_search.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import OUT_DIR, Column, format_table, machine_info, run_demo_draw, write_results

from gliorad.stats import roc_auc

COMMON = ["segmentation.enabled=false", "report.enabled=false", "survival.model=auto",
          "survival.signature_term=continuous",
          "survival.search.factor_rules=[paper,prespecified]", "deep2d.cross_fit=3",
          "radiomics.peritumoural_mm=[0,5,10]"]
SETTINGS = [*COMMON, "grading.model=auto", "grading.all_sequences=true"]
#: ``--survival-only``: grading off (so the 3D CNN too); the survival stage's inputs are the same.
SURVIVAL_ONLY = [*COMMON, "grading.enabled=false"]
FUSED = "fused_patch_se"
ORACLE_GAP_GRADE, ORACLE_GAP_SURV = 0.05, 0.07


def run_draw(seed: int, workspace: Path, extra: list[str], survival_only: bool = False) -> float:
    """Run the demo preset's stages up to survival for one seed; return the wall seconds."""
    return run_demo_draw(seed, workspace, "survival",
                         [*(SURVIVAL_ONLY if survival_only else SETTINGS), *extra])


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def grading_set(metrics: dict, name: str, oracle: float) -> dict:
    """One evaluated set's test AUCs: auto, every candidate (with CI), the best single one."""
    m = metrics[name]
    table = {r["candidate"]: r for r in m["candidates"]["table"]}
    singles = {k: r for k, r in table.items() if k != "auto" and r["auc"] is not None}
    best = max(singles, key=lambda k: singles[k]["auc"])
    auto = float(m["auc"])
    return {"set": name, "auto": auto, "chosen": [c.get("chosen") for c in m["candidates"]["choices"]],
            "paper": table["paper"]["auc"] if "paper" in table else None,
            "candidates": {k: {"auc": r["auc"], "ci": [r["auc_ci_low"], r["auc_ci_high"]],
                               "p_vs_paper": r["p_vs_paper"]} for k, r in table.items()},
            "best_single": best, "best_single_auc": singles[best]["auc"],
            "best_single_ci_low": singles[best]["auc_ci_low"],
            "within_oracle": bool(oracle - auto <= ORACLE_GAP_GRADE),
            "not_below_best_ci": bool(auto >= singles[best]["auc_ci_low"])}


def harrell(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(time, -risk, event))


def collect(seed: int, ws: Path, seconds: float, survival_only: bool = False) -> dict:
    truth = _read(ws / "cohort" / "cohort" / "truth.json")
    pats = truth["patients"]
    return {"seed": seed, "seconds": seconds,
            **({} if survival_only else collect_grading(ws, pats)),
            "survival": collect_survival(ws, pats)}


def collect_grading(ws: Path, pats: dict) -> dict:
    """The grade stage's test part: ``n_test``, ``oracle_auc`` and the ``grading`` sets."""
    metrics = _read(ws / "grade" / "tables" / "metrics.json")
    notes = _read(ws / "grade" / "tables" / "notes.json")["notes"]
    used = [n.split(": ", 1)[1].split(" ")[0] for n in notes
            if n.startswith("radiomics set fused with the CNN: ")]
    split = pd.read_csv(ws / "split" / "split.csv", dtype={"patient_id": str})
    test = split.loc[split["grade_split"] == "test", "patient_id"]
    y = np.array([pats[p]["grade_group"] == "HGG" for p in test])
    oracle_auc = roc_auc(y, np.array([pats[p]["grade_probability"] for p in test]))
    grading = {"fused": grading_set(metrics, FUSED, oracle_auc)}
    if used:
        grading["radiomics"] = grading_set(metrics, used[0], oracle_auc)
    return {"n_test": len(test), "oracle_auc": oracle_auc, "grading": grading}


def collect_survival(ws: Path, pats: dict) -> dict:
    """The survival stage's validation cohort(s) against the oracle."""
    sm = _read(ws / "survival" / "analysis" / "metrics.json")
    search = sm["model_search"]
    cand = {c["name"]: c for c in search["candidates"]}
    survival = {"chosen": search["chosen"], "why": search["why"], "cohorts": {}}
    for name, c in sm["cohorts"].items():
        if c["role"] == "training":
            continue
        pred = pd.read_csv(ws / "survival" / "analysis" / f"predictions_{_slug(name)}.csv",
                           dtype={"patient_id": str}).set_index("patient_id")
        ids = [p for p in pred.index if p in pats]
        t = np.array([pats[p]["os_time"] for p in ids], float)
        e = np.array([pats[p]["event"] for p in ids], float)
        oracle = harrell(t, e, np.array([pats[p]["latent_risk"] for p in ids]))
        same = c["c_index_integrated"] == c["c_index_clinical"] and c.get("compare_diff") is None
        diff = 0.0 if same else c.get("compare_diff")
        ci = c.get("compare_diff_ci")
        se = None if same or ci is None else (ci[1] - ci[0]) / (2 * 1.959964)
        ext = {k: (v.get("external") or {}).get(name, {}).get("c_index") for k, v in cand.items()}
        survival["cohorts"][name] = {
            "n": c.get("n_patients", len(ids)), "events": c.get("n_events"),
            "auto": c["c_index_integrated"], "auto_ci": c.get("c_index_integrated_ci"),
            "clinical": c["c_index_clinical"], "diff": diff, "se": se,
            "p": c.get("compare_p"), "candidates": ext, "oracle": oracle,
            "within_oracle": bool(c["c_index_integrated"] is not None
                                  and oracle - c["c_index_integrated"] <= ORACLE_GAP_SURV)}
    return survival


def _slug(text: str) -> str:
    from gliorad.survival.artifacts import cohort_slug

    return cohort_slug(text)


def pooled(d: list[float], var: list[float]) -> dict | None:
    """Random-effects (Paule-Mandel) meta-analysis of per-draw paired differences."""
    from scipy.stats import norm
    from statsmodels.stats.meta_analysis import combine_effects

    if len(d) < 2:
        return None
    res = combine_effects(np.array(d), np.array(var), method_re="iterated")
    re_ = res.summary_frame().loc["random effect"]
    est, se = float(re_["eff"]), float(re_["sd_eff"])
    return {"estimate": est, "se": se, "ci_low": float(re_["ci_low"]),
            "ci_high": float(re_["ci_upp"]), "p_two_sided": float(2 * norm.sf(abs(est / se))),
            "p_one_sided": float(norm.sf(est / se)), "draws": len(d)}


def summarise(rows: list[dict]) -> dict:
    out: dict = {"grading": {}, "survival": {}}
    for key in ("fused", "radiomics"):
        rs = [r["grading"][key] for r in rows if key in r.get("grading", {})]
        if not rs:
            continue
        gap = [r["oracle_auc"] - r["grading"][key]["auto"] for r in rows
               if key in r.get("grading", {})]
        out["grading"][key] = {
            "auto_mean": float(np.mean([g["auto"] for g in rs])),
            "paper_mean": float(np.mean([g["paper"] for g in rs if g["paper"] is not None])),
            "best_single_mean": float(np.mean([g["best_single_auc"] for g in rs])),
            "oracle_gap_mean": float(np.mean(gap)),
            "draws_within_oracle": int(sum(g["within_oracle"] for g in rs)),
            "draws_not_below_best_ci": int(sum(g["not_below_best_ci"] for g in rs)),
            "draws": len(rs)}
    cohorts = sorted({c for r in rows for c in r["survival"]["cohorts"]})
    for c in cohorts:
        rs = [r["survival"]["cohorts"][c] for r in rows if c in r["survival"]["cohorts"]]
        ok = [s for s in rs if s["auto"] is not None and s["clinical"] is not None]
        with_var = [s for s in ok if s["se"]]
        out["survival"][c] = {
            "auto_mean": float(np.mean([s["auto"] for s in ok])) if ok else None,
            "clinical_mean": float(np.mean([s["clinical"] for s in ok])) if ok else None,
            "oracle_mean": float(np.mean([s["oracle"] for s in rs])),
            "oracle_gap_mean": (float(np.mean([s["oracle"] - s["auto"] for s in ok]))
                                if ok else None),
            "draws_within_oracle": int(sum(s["within_oracle"] for s in rs)),
            "draws_above_clinical": int(sum(s["diff"] > 0 for s in ok)),
            "draws_same_as_clinical": int(sum(s["se"] is None for s in ok)),
            "pooled_diff": pooled([s["diff"] for s in with_var], [s["se"] ** 2 for s in with_var]),
            "draws": len(rs)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one draw of 100 patients (a smoke run of the harness)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workspace", type=Path, default=OUT_DIR / "model_search_ws")
    parser.add_argument("--survival-only", action="store_true",
                        help="grading (and the 3D CNN) off: the survival search alone, faster")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="more run-config settings, e.g. synthetic.n_patients=600")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws, args.extra = 1, ["synthetic.n_patients=100", *args.extra]
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.draws):
        ws = args.workspace / f"seed{seed}"
        seconds = run_draw(seed, ws, args.extra, args.survival_only)
        rows.append(collect(seed, ws, seconds, args.survival_only))
        r = rows[-1]
        g = r.get("grading", {}).get("fused")
        graded = ("" if g is None else
                  f"grading fused auto {g['auto']:.3f} (paper {g['paper']:.3f}, best single "
                  f"{g['best_single']} {g['best_single_auc']:.3f}), oracle {r['oracle_auc']:.3f}; ")
        print(f"draw seed {seed}: {graded}survival auto chose {r['survival']['chosen']} "
              f"({seconds:.0f} s)", flush=True)
        for c, s in r["survival"]["cohorts"].items():
            print(f"  survival {c}: auto {s['auto']}, clinical {s['clinical']}, oracle "
                  f"{s['oracle']:.3f}, candidates {s['candidates']}", flush=True)
    flat = []
    for r in rows:
        row = {"seed": r["seed"], "surv_chosen": r["survival"]["chosen"], "seconds": r["seconds"]}
        if "grading" in r:
            g = r["grading"]["fused"]
            row.update(paper=g["paper"], auto=g["auto"], oracle=r["oracle_auc"],
                       best=f"{g['best_single']} {g['best_single_auc']:.3f}")
        for c, s in r["survival"]["cohorts"].items():
            row.update(s_auto=s["auto"] if s["auto"] is not None else float("nan"),
                       s_clin=s["clinical"] if s["clinical"] is not None else float("nan"),
                       s_oracle=s["oracle"])
            break
        flat.append(row)
    grade_cols = [Column("grade paper", "paper", ".3f"), Column("grade auto", "auto", ".3f"),
                  Column("best single", "best", align="<"), Column("grade oracle", "oracle", ".3f")]
    cols = [Column("seed", "seed"), *([] if args.survival_only else grade_cols),
            Column("surv chosen", "surv_chosen", align="<"),
            Column("ext C auto", "s_auto", ".3f"), Column("ext C clinical", "s_clin", ".3f"),
            Column("ext C oracle", "s_oracle", ".3f"), Column("seconds", "seconds", ".0f")]
    print(format_table(flat, cols, rule="-+-"))
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    settings = SURVIVAL_ONLY if args.survival_only else SETTINGS
    write_results("model_search", {"machine": machine_info("platform", "python", "cpus"),
                                   "settings": ["preset demo", *settings, *args.extra],
                                   "draws": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
