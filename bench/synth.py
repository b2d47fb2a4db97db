"""Benchmark: time and peak memory to generate synthetic cohorts.

    .venv/bin/python bench/synth.py [--quick]

Cases: 100 patients at the demo spacing (3 mm) and 10 patients at 1 mm, each in a fresh process
with 2 workers. Prints a table and writes bench/out/synth.json. Peak memory is the maximum resident
set size of the main process and of the largest worker (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

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
        out = subprocess.run([sys.executable, "-c", CASE, str(n), str(spacing), f"{tmp}/c"],
                             capture_output=True, text=True, check=True)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(patients=n, spacing_mm=spacing, seconds_per_patient=res["seconds"] / n,
               disk_mb=size / 2**20)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 patients at 3 mm, 2 at 1 mm")
    args = ap.parse_args()
    cases = [(10, 3.0), (2, 1.0)] if args.quick else [(100, 3.0), (10, 1.0)]
    rows = [run_case(n, sp) for n, sp in cases]
    header = f"{'patients':>8} {'spacing':>8} {'seconds':>9} {'s/patient':>10} {'main MB':>9} {'worker MB':>10} {'disk MB':>8}"
    print(header)
    for r in rows:
        print(f"{r['patients']:>8} {r['spacing_mm']:>7g}mm {r['seconds']:>9.1f} {r['seconds_per_patient']:>10.2f} "
              f"{r['peak_rss_main_mb']:>9.0f} {r['peak_rss_worker_mb']:>10.0f} {r['disk_mb']:>8.1f}")
    out = Path(__file__).parent / "out" / "synth.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))
    print(f"wrote {out}")


def machine() -> dict:
    import os

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "memory_gb": round(mem_gb, 1), "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.machine()}


if __name__ == "__main__":
    main()
