"""Benchmark: ``gliorad survival cv`` (and ``fit``) on a 110-patient, 1,300-feature table, 2 cores.

    .venv/bin/python bench/survival_cv.py [--quick] [--preset paper|demo] [--jobs 2]

Input: 110 synthetic LGG patients (``gliorad.synthetic.sample_patients``; clinical table with
age, sex, grade, histology, location, laterality, enhancement, centre, os_time in days, event) and
``gliorad.synthetic.synthetic_feature_table``: 1,300 features = 788 radiomics (3 sequences: 263 + 263 + 262) + 512 deep
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
import sys
import tempfile
from pathlib import Path

from _harness import Column, Stopwatch, format_table, machine_info, write_results

N_PATIENTS, N_FEATURES, N_DEEP = 110, 1300, 512
LIMIT_S = 300.0


def make_inputs(folder: Path) -> dict[str, int]:
    from gliorad.synthetic import (
        CLINICAL_COLUMNS,
        SynthConfig,
        sample_patients,
        synthetic_feature_table,
    )

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

    with Stopwatch() as clock:
        res = CliRunner().invoke(app, args)
    if res.exit_code != 0:
        raise SystemExit(f"gliorad survival {args[0]} failed ({res.exit_code}):\n{res.output}")
    return clock.wall_s, res.output


def _c_index(key: str):
    """Cell of the C-index ``key``: the cross-validation mean (cv) or the fitted value (fit)."""
    def cell(row: dict) -> str:
        v = row.get(f"{key}_mean", row.get(key))
        return "-" if v is None else f"{v:.3f}"
    return cell


COLUMNS = (Column("case", "case", width=32, align="<"), Column("wall s", "wall_s", ".1f", 8),
           Column("limit s", lambda r: LIMIT_S, ".0f", 8),
           Column("C integrated", _c_index("c_index_integrated"), width=12),
           Column("C clinical", _c_index("c_index_clinical"), width=10))


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
        with Stopwatch() as prep:
            size = make_inputs(d)
        common = [str(d / "features.csv"), str(d / "clinical.csv"), "--preset", a.preset,
                  "--split", "none", "--jobs", str(a.jobs)]
        cases = [("cv", ["cv", *common, "--out", str(d / "cv")])]
        if not a.quick:
            cases.append(("fit", ["fit", *common, "--out", str(d / "fit")]))
        for name, args in cases:
            wall, output = run(args)
            metrics = json.loads((d / name / "metrics.json").read_text(encoding="utf-8"))
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
          f"features; generated in {prep.wall_s:.1f} s")
    print(format_table(results, COLUMNS))
    machine = machine_info("platform", "machine", "python", "numpy", "cpus",
                           omp_threads=os.environ.get("OMP_NUM_THREADS"))
    write_results("survival_cv", {"machine": machine, "limit_s": LIMIT_S, "results": results})
    cv_wall = results[0]["wall_s"]
    if cv_wall > LIMIT_S:
        print(f"FAIL: survival cv took {cv_wall:.0f} s > {LIMIT_S:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
