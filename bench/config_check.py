"""Benchmark: ``gliorad config check`` on the paper preset (issue 17: under 2 s, no torch, no
SimpleITK).

    .venv/bin/python bench/config_check.py [--repeats 5]

Each repeat runs the console command in a fresh process (interpreter start, the command line,
validating every section of the paper preset, reading a 30-patient clinical table and checking
that the grading split and the survival cohorts can be made) on a config file with a cohort
folder and a clinical table written here; one more process reports which heavy libraries the
command imported. Target: median wall time under 2 s; exit 1 when it is not met or a heavy
library was imported. Prints a table and writes bench/out/config_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import load_average, machine_info, write_results

TARGET_S = 2.0
HEAVY = ("torch", "SimpleITK", "monai", "radiomics", "nilearn", "matplotlib", "sklearn", "scipy")


def write_config(folder: Path) -> Path:
    """The paper preset over a cohort folder and a clinical table of 30 patients (grades II/IV,
    centres A and B)."""
    (folder / "cohort").mkdir()
    rows = ["patient_id,age,sex,grade,centre,os_time,event"]
    rows += [f"P{i:02d},{40 + i},{'MF'[i % 2]},{4 if i % 2 else 2},{'A' if i % 3 == 0 else 'B'},"
             f"{100 * i},{i % 2}" for i in range(1, 31)]
    (folder / "clinical.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = folder / "run.yaml"
    cfg.write_text("preset: paper\ncohort:\n  root: cohort\nclinical:\n  path: clinical.csv\n",
                   encoding="utf-8")
    return cfg


def command(cfg: Path) -> list[str]:
    """The installed console script next to this interpreter (else ``python -m gliorad.cli``)."""
    script = Path(sys.executable).with_name("gliorad")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "gliorad.cli"]
    return [*head, "config", "check", str(cfg)]


def imported_heavy(cfg: Path) -> list[str]:
    code = (f"import contextlib, io, json, sys; sys.argv = ['gliorad', 'config', 'check', "
            f"{str(cfg)!r}]\n"
            "from gliorad.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp))
        load_before = load_average()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            proc = subprocess.run(command(cfg), capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"gliorad config check failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        heavy = imported_heavy(cfg)
    row = {"case": "gliorad config check (paper preset, 30-patient clinical table)",
           "median_s": statistics.median(times), "min_s": min(times), "repeats": repeats,
           "heavy_imported": heavy, "under_2_s": statistics.median(times) < TARGET_S,
           "load_average_before_after": [load_before, load_average()]}
    print("| case | median s | min s | heavy libraries imported |")
    print("|---|---:|---:|---|")
    print(f"| {row['case']} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
          f"{', '.join(heavy) or 'none'} |")
    print(f"load average (1/5/15 min) before {load_before}, after {load_average()} on "
          f"{os.cpu_count()} CPUs (shared machine: wall time grows with other jobs)")
    write_results("config_check", {"machine": machine_info("platform", "python", "cpus"),
                                   "results": [row]})
    return 0 if row["under_2_s"] and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
