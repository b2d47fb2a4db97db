"""Benchmark: `gliorad preprocess` on the real raw TCGA patient (../shared/data/tcga_raw).

    .venv/bin/python bench/preprocess.py [--quick]

Runs the default pipeline (N4, rigid co-registration to T1-Gd, atlas skull strip with the coarse
B-spline stage, 1 mm, z-score) on TCGA-FG-6692 and reports seconds and peak resident memory per
step, then the brain-mask Dice against the published pipeline's skull strip (BrainLes `raw_bet`,
SRI24 space) after rigid registration of the raw T1-Gd into that space. Without --quick it also
runs the atlas stripper without the B-spline stage (affine only). SimpleITK uses 2 threads.
Prints a table and writes bench/out/preprocess.json; skips with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tcga_raw" / "TCGA-FG-6692"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemoryHook:
    """A step hook: samples this process's resident memory every 10 ms during each step."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        peak = [_rss_mb()]
        start = peak[0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.01):
                peak[0] = max(peak[0], _rss_mb())

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            stop.set()
            th.join()
            peak[0] = max(peak[0], _rss_mb())
            self.rows[name] = {"seconds": time.perf_counter() - t0,
                               "cpu_seconds": time.process_time() - c0,
                               "rss_start_mb": start, "peak_rss_mb": peak[0]}


def run_case(name: str, overrides: dict) -> dict:
    import SimpleITK as sitk

    from gliorad.preprocess import load_sequence, make_config, mask_dice_in_reference, preprocess

    cfg = make_config(threads=2, **overrides)
    hook = MemoryHook()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        res = preprocess(DATA / "raw", tmp, cfg, step_hook=hook)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        if not res.ok:
            sys.exit(f"preprocess failed: {res.problems}")
        folder = Path(tmp) / "TCGA-FG-6692"
        qc = json.loads((folder / "qc.json").read_text())
        t1 = time.perf_counter()
        mask = sitk.ReadImage(str(folder / "TCGA-FG-6692_brainmask.nii.gz"))
        raw_t1ce = load_sequence(min((DATA / "raw").glob("*t1c.nii.gz")))
        ref = sitk.ReadImage(str(DATA / "brainles_reference" / "raw_bet" /
                                 "OtherEXampleFromTCIA_t1c_bet.nii.gz"))
        d, info = mask_dice_in_reference(mask, raw_t1ce, ref, seeds=(1, 2, 3))
        eval_s = time.perf_counter() - t1
    return {"case": name, "overrides": overrides, "steps": hook.rows,
            "total_seconds": total, "total_cpu_seconds": total_cpu, "dice_vs_brainles": d, "dice_eval_seconds": eval_s,
            "brain_ml": qc["skull_strip"]["brain_volume_ml"],
            "brain_ml_in_reference_space": info["mask_ml_in_reference"],
            "reference_brain_ml": info["reference_ml"],
            "registration_final_metric": {k: v.get("final_metric")
                                          for k, v in qc["registration"].items()},
            "output_size": qc["output_grid"]["size"],
            "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def machine() -> dict:
    import os

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    return {"cpus": os.cpu_count(), "memory_gb": round(mem_gb, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine(), "load_average_at_start": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="default pipeline only")
    args = ap.parse_args()
    out = ROOT / "bench" / "out" / "preprocess.json"
    if not (DATA / "raw").is_dir() or not (DATA / "brainles_reference" / "raw_bet").is_dir():
        print(f"skipped: {DATA} (real sample data) is absent")
        return
    info = machine()
    cases = [("default (affine + B-spline atlas)", {})]
    if not args.quick:
        cases.append(("atlas affine only", {"atlas": {"bspline": False}}))
    rows = [run_case(name, over) for name, over in cases]
    for r in rows:
        print(f"\n{r['case']}: {r['total_seconds']:.1f} s total ({r['total_cpu_seconds']:.1f} s "
              f"CPU), brain {r['brain_ml']:.0f} ml, Dice vs BrainLes raw_bet "
              f"{r['dice_vs_brainles']:.4f}")
        print(f"{'step':<12} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12} {'RSS at start MB':>16}")
        for step, s in r["steps"].items():
            print(f"{step:<12} {s['seconds']:>8.1f} {s['cpu_seconds']:>7.1f} "
                  f"{s['peak_rss_mb']:>12.0f} {s['rss_start_mb']:>16.0f}")
        print(f"{'dice eval':<12} {r['dice_eval_seconds']:>8.1f}")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
