"""The committed R reference JSON is reproducible: re-run the R script (skipped without R)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "reference" / "make_survival_reference.R"
REF = ROOT / "tests" / "reference" / "survival"
FILES = ["km.json", "logrank.json", "cox.json", "nomogram.json", "calibrate.json", "maxstat.json"]


def _close(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            if k != "meta":
                _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12), path
    else:
        assert a == b, path


@pytest.mark.needs_r
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed")
def test_r_script_reproduces_committed_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["Rscript", str(SCRIPT), str(REF), str(tmp_path)],
        check=False, capture_output=True, text=True, encoding="utf-8", errors="replace",
        timeout=300, cwd=ROOT,
    )
    if proc.returncode != 0 and "there is no package called" in proc.stderr:
        pytest.skip(f"an R package is missing: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    for name in FILES:
        _close(json.loads((tmp_path / name).read_text(encoding="utf-8")), json.loads((REF / name).read_text(encoding="utf-8")),
               name)
