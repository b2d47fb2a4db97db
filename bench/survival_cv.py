"""Benchmark: ``gliorad survival cv`` (and ``fit``) on a 110-patient, 1,300-feature table, 2 cores.

    .venv/bin/python bench/survival_cv.py [--quick] [--preset paper|demo] [--jobs 2]

Input: 110 synthetic LGG patients (``gliorad.synthetic.sample_patients``; clinical table with
age, sex, grade, histology, location, laterality, enhancement, centre, os_time in days, event) and
``synthetic_feature_table``: 1,300 features = 788 radiomics (3 sequences: 263 + 263 + 262) + 512 deep
(``cnn2d_``). The commands run in-process through the typer app, exactly as on the command line
(``--split none``: all 110 patients train; sequence choice, signature, cut-off and Cox selection
are redone in each of the preset's folds). Target: ``cv`` under 5 minutes on 2 cores. Prints a
table and writes ``bench/out/survival_cv.json``. ``--quick`` skips ``fit``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_PATIENTS, N_FEATURES, N_DEEP = 110, 1300, 512
LIMIT_S = 300.0


def make_inputs(folder: Path) -> dict[str, int]:
    from gliorad.survival.analysis import synthetic_feature_table
    from gliorad.synthetic import CLINICAL_COLUMNS, SynthConfig, sample_patients

    patients = sample_patients(SynthConfig(n_patients=180, seed=7, hgg_fraction=0.15))
    lgg = patients[patients["grade_group"] == "LGG"].iloc[:N_PATIENTS]
    if len(lgg) < N_PATIENTS:
        raise SystemExit(f"only {len(lgg)} LGG patients generated")
    lgg.reset_index()[CLINICAL_COLUMNS].to_csv(folder / "clinical.csv", index=False)
    feats = synthetic_feature_table(lgg, n_features=N_FEATURES, n_deep=N_DEEP, seed=7)
    feats.to_csv(folder / "features.csv", index_label="patient_id")
    return {"patients": len(lgg), "events": int(lgg["event"].sum()), "features": feats.shape[1]}


def run(args: list[str]) -> tuple[float, str]:
    from typer.testing import CliRunner

    from gliorad.commands.survival import app

    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    wall = time.perf_counter() - t0
    if res.exit_code != 0:
        raise SystemExit(f"gliorad survival {args[0]} failed ({res.exit_code}):\n{res.output}")
    return wall, res.output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cv only (no fit)")
    parser.add_argument("--repeats", type=int, default=1, help="ignored (one timed run per case)")
    parser.add_argument("--preset", default="paper", choices=["paper", "demo"])
    parser.add_argument("--jobs", type=int, default=2)
    a = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="gliorad-bench-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        size = make_inputs(d)
        prep = time.perf_counter() - t0
        common = [str(d / "features.csv"), str(d / "clinical.csv"), "--preset", a.preset,
                  "--split", "none", "--jobs", str(a.jobs)]
        cases = [("cv", ["cv", *common, "--out", str(d / "cv")])]
        if not a.quick:
            cases.append(("fit", ["fit", *common, "--out", str(d / "fit")]))
        for name, args in cases:
            wall, output = run(args)
            metrics = json.loads((d / name / "metrics.json").read_text())
            row = {"case": f"survival {name} ({a.preset}, {a.jobs} jobs)", "wall_s": wall, **size}
            if name == "cv":
                s = metrics["summary"]
                row.update(folds=s["folds"], c_index_integrated_mean=s["c_index_integrated_mean"],
                           c_index_clinical_mean=s["c_index_clinical_mean"],
                           c_index_signature_mean=s["c_index_signature_mean"])
            else:
                c = metrics["cohorts"]["training"]
                row.update(c_index_integrated=c["c_index_integrated"],
                           c_index_clinical=c["c_index_clinical"])
            results.append(row)
            print(output.strip().splitlines()[0])
    print(f"\ninputs: {size['patients']} patients ({size['events']} events), {size['features']} "
          f"features; generated in {prep:.1f} s")
    print(f"{'case':<32}  {'wall s':>8}  {'limit s':>8}  {'C integrated':>12}  {'C clinical':>10}")
    for r in results:
        ci = r.get("c_index_integrated_mean", r.get("c_index_integrated"))
        cc = r.get("c_index_clinical_mean", r.get("c_index_clinical"))
        fmt = lambda v: "-" if v is None else f"{v:.3f}"
        print(f"{r['case']:<32}  {r['wall_s']:8.1f}  {LIMIT_S:8.0f}  {fmt(ci):>12}  {fmt(cc):>10}")
    machine = {"platform": platform.platform(), "machine": platform.machine(),
               "python": platform.python_version(), "numpy": np.__version__,
               "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}
    out = Path(__file__).parent / "out" / "survival_cv.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "limit_s": LIMIT_S, "results": results}, indent=2))
    print(f"wrote {out}")
    cv_wall = results[0]["wall_s"]
    if cv_wall > LIMIT_S:
        print(f"FAIL: survival cv took {cv_wall:.0f} s > {LIMIT_S:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
