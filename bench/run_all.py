"""Run every benchmark in bench/ (each prints a table and writes bench/out/<name>.json)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).parent
    failed = []
    for script in sorted(here.glob("*.py")):
        if script.name == "run_all.py" or script.name.startswith("_"):  # _harness.py is shared
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), *sys.argv[1:]], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
