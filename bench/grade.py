"""Benchmark: ``gliorad grade cv`` on a plain CSV of 170 patients x 724 features.

    .venv/bin/python bench/grade.py [--quick] [--jobs 2] [--preset paper]

The table is ``make_classification`` data (seeded; 10 informative, 10 redundant features, the
rest noise) written as CSV with a ``patient_id`` and a ``grade`` (HGG/LGG) column. It is graded
by the same function the command line calls (:func:`gliorad.grading.run.run_cv`: read the CSV,
5 x 3 repeated stratified CV with the nested 11 x 11 SVM grid of the ``paper`` preset, write
metrics.json, predictions.csv, roc.png, ...), with the folds on ``--jobs`` worker processes.
Target: under 5 minutes on 2 cores. ``--quick`` runs 5 x 1 with the ``demo`` preset.
Prints a table and writes bench/out/grade.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import Stopwatch, load_average, machine_info, peak_rss_mb, write_results
from sklearn.datasets import make_classification

from gliorad.grading import GradingConfig
from gliorad.grading.run import run_cv

N_PATIENTS, N_FEATURES = 170, 724


def make_table(folder: Path, seed: int = 0) -> Path:
    X, y = make_classification(n_samples=N_PATIENTS, n_features=N_FEATURES, n_informative=10,
                               n_redundant=10, weights=[0.45], class_sep=1.0, random_state=seed)
    df = pd.DataFrame(X, columns=[f"feature_{j:03d}" for j in range(N_FEATURES)])
    df.insert(0, "patient_id", [f"BENCH_{i:03d}" for i in range(N_PATIENTS)])
    df["grade"] = np.where(y == 1, "HGG", "LGG")
    path = folder / "features.csv"
    df.to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo preset, 5 x 1 CV")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--preset", default=None)
    args = parser.parse_args(argv)
    preset = args.preset or ("demo" if args.quick else "paper")
    config = GradingConfig.preset(preset, cv_splits=5, cv_repeats=1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = make_table(tmp)
        load_before = load_average()
        with Stopwatch() as clock:
            res = run_cv(table, "grade", tmp / "out", config, n_jobs=args.jobs)
        seconds = clock.wall_s
        written = sorted(p.name for p in (tmp / "out").iterdir())
    m = res.metrics
    row = {
        "case": f"grade cv, {N_PATIENTS} x {N_FEATURES} CSV, {config.cv_splits}x"
                f"{config.cv_repeats} CV, preset {preset}, n_jobs={args.jobs}",
        "seconds": seconds,
        "fits": config.cv_splits * config.cv_repeats,
        "seconds_per_fit_per_worker": seconds * args.jobs / (config.cv_splits * config.cv_repeats),
        "grid_points": len(config.svm_C) * len(config.svm_gamma),
        "auc": m["auc"], "auc_ci": [m["auc_ci_low"], m["auc_ci_high"]],
        "auc_mean": m["auc_mean"], "auc_sd": m["auc_sd"],
        "peak_rss_main_mb": peak_rss_mb(),
        "under_5_min": seconds < 300,
        "load_average_before_after": [load_before, load_average()],
        "files": written,
    }
    print("| case | seconds | fits | s/fit/worker | grid | AUC (repeat 1, 95% CI) | "
          "mean AUC (SD) | peak RSS main |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    print(f"| {row['case']} | {seconds:.1f} | {row['fits']} | "
          f"{row['seconds_per_fit_per_worker']:.1f} | {row['grid_points']} | {m['auc']:.3f} "
          f"({m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}) | {m['auc_mean']:.3f} "
          f"({'n/a' if m['auc_sd'] is None else format(m['auc_sd'], '.3f')}) | "
          f"{row['peak_rss_main_mb']:.0f} MB |")
    print(f"load average (1/5/15 min) before {load_before}, after {load_average()} "
          f"on {os.cpu_count()} CPUs (shared machine: wall time grows with other jobs)")
    write_results("grade", {"machine": machine_info("platform", "python", "cpus"),
                            "results": [row]})
    return 0 if row["under_5_min"] else 1


if __name__ == "__main__":
    sys.exit(main())
