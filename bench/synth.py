"""Benchmark: time and peak memory to generate synthetic cohorts.

    .venv/bin/python bench/synth.py [--quick]

Cases: 100 patients at the demo spacing (3 mm) and 10 patients at 1 mm, each in a fresh process
with 2 workers. Prints a table and writes bench/out/synth.json. Peak memory is the maximum resident
set size of the main process and of the largest worker (ru_maxrss).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _harness import Column, format_table, machine_info, run_child, write_results

CASE = """
import json, resource, sys, time
from gliorad.synthetic import SynthConfig, generate_cohort
n, spacing, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
generate_cohort(out, SynthConfig(n_patients=n, seed=0, spacing=spacing), n_jobs=2)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt,
                  "peak_rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_case(n: int, spacing: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = run_child(["-c", CASE, str(n), str(spacing), f"{tmp}/c"])
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    res.update(patients=n, spacing_mm=spacing, seconds_per_patient=res["seconds"] / n,
               disk_mb=size / 2**20)
    return res


COLUMNS = (Column("patients", "patients", width=8),
           Column("spacing", lambda r: f"{r['spacing_mm']:g}mm", width=8),
           Column("seconds", "seconds", ".1f", 9),
           Column("s/patient", "seconds_per_patient", ".2f", 10),
           Column("main MB", "peak_rss_main_mb", ".0f", 9),
           Column("worker MB", "peak_rss_worker_mb", ".0f", 10),
           Column("disk MB", "disk_mb", ".1f", 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 patients at 3 mm, 2 at 1 mm")
    args = ap.parse_args()
    cases = [(10, 3.0), (2, 1.0)] if args.quick else [(100, 3.0), (10, 1.0)]
    rows = [run_case(n, sp) for n, sp in cases]
    print(format_table(rows, COLUMNS, sep=" "))
    write_results("synth", {"machine": machine_info("cpus", "memory_gb", "python", "platform",
                                                    "processor"), "results": rows})


if __name__ == "__main__":
    main()
