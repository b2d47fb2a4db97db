"""Benchmark: ``gliorad grade cv --model auto`` on a radiomics-shaped table (issue 18).

    .venv/bin/python bench/grading_models.py [--quick] [--jobs 2] [--preset paper]
        [--table FEATURES.csv --labels LABELS.csv|COLUMN [--id-column COL] [--exclude a,b]]

Runs the command line itself (``gliorad grade cv --model auto``, a child process) and times it
end to end: read the table, the preset's repeated stratified CV (``paper``: 5 folds x 3
repeats), in every outer training part the inner 5-fold search over every candidate (the
paper's recipe, L1 / elastic-net logistic, RBF SVM on all features, random forest, extra trees,
gradient boosting, the soft-vote ensemble) and the refit of every candidate, then
candidates.csv, metrics.json, roc.png, .... Prints each candidate's outer AUC (repeat 1, DeLong
95% CI), its mean over repeats, the paired DeLong P against the paper's recipe and how often
the inner search chose it; writes bench/out/grading_models.json. Target (issue 18): under 10
minutes for 170 x 724 on 2 cores.

The default table is synthetic and shaped like a real radiomic one (:func:`make_table`): 170
patients x 724 features in 28 families (4 MR sequences x pyradiomics' 7 feature classes), the
features of a family correlated (one family factor, correlation 0.5-0.95), skewed and on
different scales (log-normal, squared, logistic, powers of ten), 12 missing cells, HGG:LGG
113:57 (about 2:1), and a grade signal through six latent tumour traits -- level shifts, a
larger spread in HGG (the paper's Levene cue) and a trait present only in large tumours (a
nonlinear cue) -- so that the candidates' AUCs lie around 0.85-0.95. ``--quick`` uses 90 x 200.

``--table``/``--labels`` run it on any real table instead (the labels: a clinical CSV with a
grade column or the name of a label column in the table, as ``gliorad grade cv`` takes them).
No such table is part of ../shared/data (its README: images, masks and a clinical table of
three patients, pyradiomics' two test cases), so the figures in bench/RESULTS.md are the
synthetic table's.

CPU seconds (this process's children: the command and its worker processes) are reported
beside the wall time: on a machine shared with other jobs (load average above the core count)
the wall time grows, the CPU time much less; CPU seconds / cores is the wall time the run would
need on idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import Column, Stopwatch, format_table, load_average, machine_info, write_results

N_PATIENTS, N_FEATURES = 170, 724
QUICK_PATIENTS, QUICK_FEATURES = 90, 200
LIMIT_S = 600.0
SEQUENCES = ("t1", "t1ce", "t2", "flair")
#: pyradiomics' original-image feature classes and how many features each has (107 in all).
FAMILIES = {"shape": 14, "firstorder": 18, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14,
            "ngtdm": 5}
#: HGG shift of the six latent tumour traits (size, enhancement, heterogeneity, necrosis, and
#: two traits unrelated to grade), in SDs, at ``signal`` 1.
SHIFT = np.array([0.9, 1.1, 0.7, 0.8, 0.0, 0.0])


def make_table(n: int = N_PATIENTS, p: int = N_FEATURES, signal: float = 1.5,
               hgg_fraction: float = 2 / 3, n_missing: int = 12,
               seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A radiomics-shaped feature table (patients x features, NaN in ``n_missing`` cells) and
    its 0/1 grades (1 = HGG), both indexed by patient id; see the module text."""
    rng = np.random.default_rng(seed)
    n_hgg = round(n * hgg_fraction)
    y = rng.permutation(np.r_[np.ones(n_hgg, int), np.zeros(n - n_hgg, int)])
    z = rng.normal(size=(n, len(SHIFT))) + y[:, None] * SHIFT * signal
    z[:, 2] *= np.where(y == 1, 1.4, 1.0)  # HGG more heterogeneous: a variance cue
    z[:, 3] *= z[:, 0] > -0.3  # necrosis only in larger tumours: an interaction
    families = [(s, f, k) for s in SEQUENCES for f, k in FAMILIES.items()]
    sizes = np.floor(np.array([k for *_, k in families]) * p / sum(FAMILIES.values())
                     / len(SEQUENCES)).astype(int)
    sizes[: p - sizes.sum()] += 1
    names, cols = [], []
    for (seq, fam, _), k in zip(families, sizes, strict=True):
        loads = rng.normal(size=len(SHIFT)) * rng.integers(0, 2, size=len(SHIFT)) * 0.5
        factor = z @ loads + rng.normal(size=n) * 0.7
        factor = (factor - factor.mean()) / factor.std()
        rho = rng.uniform(0.5, 0.95)
        for j in range(k):
            v = rho * factor + np.sqrt(1 - rho**2) * rng.normal(size=n)
            v = (v - v.mean()) / v.std()
            kind = rng.choice(["log", "raw", "square", "ratio"], p=[0.4, 0.3, 0.15, 0.15])
            v = {"log": lambda t: np.exp(0.8 * t), "raw": lambda t: t,
                 "square": lambda t: t**2 + 0.1 * t,
                 "ratio": lambda t: 1 / (1 + np.exp(-t))}[kind](v)
            cols.append(v * 10.0 ** int(rng.integers(-3, 5)))
            names.append(f"{seq}_original_{fam}_F{j:02d}")
    X = np.column_stack(cols)
    X.flat[rng.choice(X.size, size=n_missing, replace=False)] = np.nan
    ids = pd.Index([f"SYN-{i:04d}" for i in range(n)], name="patient_id")
    return pd.DataFrame(X, index=ids, columns=names), pd.Series(y, index=ids, name="label")


def write_inputs(folder: Path, n: int, p: int) -> tuple[Path, Path]:
    """features.csv (patient_id + features) and labels.csv (patient_id, grade HGG/LGG)."""
    X, y = make_table(n, p)
    X.reset_index().to_csv(folder / "features.csv", index=False)
    pd.DataFrame({"patient_id": y.index, "grade": np.where(y == 1, "HGG", "LGG")}).to_csv(
        folder / "labels.csv", index=False)
    return folder / "features.csv", folder / "labels.csv"


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (and theirs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(features: Path, labels: str, out: Path, args: argparse.Namespace) -> dict:
    """``gliorad grade cv --model auto`` as a child process: wall and CPU seconds."""
    exe = Path(sys.executable).with_name("gliorad")
    cmd = [str(exe), "grade", "cv", "--features", str(features), "--labels", labels,
           "--out", str(out), "--model", "auto", "--jobs", str(args.jobs),
           "--preset", args.preset]
    cmd += ["--id-column", args.id_column] if args.id_column else []
    cmd += ["--exclude", args.exclude] if args.exclude else []
    cmd += ["--candidates", args.candidates] if args.candidates else []
    cpu0 = children_cpu_s()
    with Stopwatch() as clock:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"gliorad grade cv failed (exit {done.returncode}):\n"
                 f"{(done.stderr or done.stdout)[-3000:]}")
    return {"command": " ".join(cmd[1:]), "wall_s": clock.wall_s,
            "cpu_s": children_cpu_s() - cpu0, "stdout": done.stdout}


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


COLUMNS = (
    Column("candidate", "candidate", align="<"),
    Column("AUC rep 1 (95% CI)", lambda r: f"{_fmt(r['auc'])} ({_fmt(r['auc_ci_low'])}-"
                                           f"{_fmt(r['auc_ci_high'])})", align="<"),
    Column("mean AUC (SD)", lambda r: f"{_fmt(r['auc_mean'])} ({_fmt(r['auc_sd'])})", align="<"),
    Column("diff vs paper", lambda r: _fmt(r["diff_vs_paper"], "+.3f")),
    Column("P vs paper", lambda r: _fmt(r["p_vs_paper"], ".3g")),
    Column("chosen", lambda r: _fmt(r["n_chosen"], ".0f")),
    Column("inner AUC", lambda r: _fmt(r["inner_auc_mean"])),
    Column("features", lambda r: _fmt(r["n_features_mean"], ".0f")),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a {QUICK_PATIENTS} x {QUICK_FEATURES} synthetic table")
    parser.add_argument("--jobs", type=int, default=2, help="gliorad grade cv --jobs")
    parser.add_argument("--preset", default="paper", help="gliorad grade cv --preset")
    parser.add_argument("--candidates", default=None, help="gliorad grade cv --candidates")
    parser.add_argument("--table", type=Path, default=None,
                        help="a real feature table (CSV/TSV/Parquet) instead of the synthetic one")
    parser.add_argument("--labels", default=None,
                        help="with --table: clinical CSV with a grade column, or a column name")
    parser.add_argument("--id-column", default=None)
    parser.add_argument("--exclude", default=None)
    args = parser.parse_args(argv)
    if (args.table is None) != (args.labels is None):
        parser.error("--table and --labels go together")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.table is None:
            n, p = (QUICK_PATIENTS, QUICK_FEATURES) if args.quick else (N_PATIENTS, N_FEATURES)
            features, labels = write_inputs(tmp, n, p)
            source = f"synthetic radiomics-shaped table, {n} x {p}"
        else:
            features, labels = args.table, args.labels
            source = f"{args.table} (labels {args.labels})"
        load_before = load_average()
        run = run_cli(features, str(labels), tmp / "out", args)
        load_after = load_average()
        table = pd.read_csv(tmp / "out" / "candidates.csv")
        metrics = json.loads((tmp / "out" / "metrics.json").read_text(encoding="utf-8"))
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    scheme = metrics["scheme"]
    full = args.table is None and not args.quick
    result = {
        "case": f"grade cv --model auto, {source}, {scheme['n_splits']}x{scheme['n_repeats']} "
                f"CV, preset {args.preset}, --jobs {args.jobs}",
        "n_patients": metrics["n_patients"], "n_features": metrics["n_features"],
        "class_counts": metrics["class_counts"], "n_missing_cells": metrics["n_missing_cells"],
        "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
        "cpu_s_per_core": run["cpu_s"] / min(args.jobs, os.cpu_count() or 1),
        "target_s": LIMIT_S if full else None,
        "under_target": run["wall_s"] < LIMIT_S if full else None,
        "load_average_before_after": [load_before, load_after],
        "auto_auc": metrics["auc"], "auto_auc_mean": metrics["auc_mean"],
        "candidates": rows, "choices": metrics["candidates"]["choices"],
        "command": run["command"],
    }
    print(result["case"])
    print(format_table(rows, COLUMNS, rule="-+-"))
    print(f"wall {run['wall_s']:.1f} s, CPU {run['cpu_s']:.1f} s "
          f"({result['cpu_s_per_core']:.1f} s per core); load average (1/5/15 min) before "
          f"{load_before}, after {load_after} on {os.cpu_count()} CPUs")
    if full:
        print(f"target: under {LIMIT_S:.0f} s on 2 cores: "
              f"{'met' if result['under_target'] else 'NOT met'}")
    write_results("grading_models", {
        "machine": machine_info("platform", "machine", "python", "numpy", "cpus", "memory_gb"),
        "results": [result]})
    return 1 if full and not result["under_target"] else 0


if __name__ == "__main__":
    sys.exit(main())
