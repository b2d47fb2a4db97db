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
import sys
import tempfile
import threading
from pathlib import Path

from _harness import Column, Stopwatch, format_table, machine_info, peak_rss_mb, write_results

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
        try:
            with Stopwatch() as clock:
                yield
        finally:
            stop.set()
            th.join()
            peak[0] = max(peak[0], _rss_mb())
            self.rows[name] = {"seconds": clock.wall_s, "cpu_seconds": clock.cpu_s,
                               "rss_start_mb": start, "peak_rss_mb": peak[0]}


def run_case(name: str, overrides: dict) -> dict:
    import SimpleITK as sitk

    from gliorad.preprocess import load_sequence, make_config, mask_dice_in_reference, preprocess

    cfg = make_config(threads=2, **overrides)
    hook = MemoryHook()
    with tempfile.TemporaryDirectory() as tmp:
        with Stopwatch() as total:
            res = preprocess(DATA / "raw", tmp, cfg, step_hook=hook)
        if not res.ok:
            sys.exit(f"preprocess failed: {res.problems}")
        folder = Path(tmp) / "TCGA-FG-6692"
        qc = json.loads((folder / "qc.json").read_text(encoding="utf-8"))
        with Stopwatch() as dice_eval:
            mask = sitk.ReadImage(str(folder / "TCGA-FG-6692_brainmask.nii.gz"))
            raw_t1ce = load_sequence(min((DATA / "raw").glob("*t1c.nii.gz")))
            ref = sitk.ReadImage(str(DATA / "brainles_reference" / "raw_bet" /
                                     "OtherEXampleFromTCIA_t1c_bet.nii.gz"))
            d, info = mask_dice_in_reference(mask, raw_t1ce, ref, seeds=(1, 2, 3))
    return {"case": name, "overrides": overrides, "steps": hook.rows,
            "total_seconds": total.wall_s, "total_cpu_seconds": total.cpu_s, "dice_vs_brainles": d,
            "dice_eval_seconds": dice_eval.wall_s,
            "brain_ml": qc["skull_strip"]["brain_volume_ml"],
            "brain_ml_in_reference_space": info["mask_ml_in_reference"],
            "reference_brain_ml": info["reference_ml"],
            "registration_final_metric": {k: v.get("final_metric")
                                          for k, v in qc["registration"].items()},
            "output_size": qc["output_grid"]["size"],
            "peak_rss_process_mb": peak_rss_mb()}


STEP_COLUMNS = (Column("step", "step", width=12, align="<"), Column("seconds", "seconds", ".1f", 8),
                Column("CPU s", "cpu_seconds", ".1f", 7),
                Column("peak RSS MB", "peak_rss_mb", ".0f", 12),
                Column("RSS at start MB", "rss_start_mb", ".0f", 16))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="default pipeline only")
    args = ap.parse_args()
    if not (DATA / "raw").is_dir() or not (DATA / "brainles_reference" / "raw_bet").is_dir():
        print(f"skipped: {DATA} (real sample data) is absent")
        return
    info = machine_info("cpus", "memory_gb", "python", "platform", "processor",
                        "load_average_at_start")
    cases = [("default (affine + B-spline atlas)", {})]
    if not args.quick:
        cases.append(("atlas affine only", {"atlas": {"bspline": False}}))
    rows = [run_case(name, over) for name, over in cases]
    for r in rows:
        print(f"\n{r['case']}: {r['total_seconds']:.1f} s total ({r['total_cpu_seconds']:.1f} s "
              f"CPU), brain {r['brain_ml']:.0f} ml, Dice vs BrainLes raw_bet "
              f"{r['dice_vs_brainles']:.4f}")
        steps = [{"step": step, **s} for step, s in r["steps"].items()]
        print(format_table(steps, STEP_COLUMNS, sep=" "))
        print(f"{'dice eval':<12} {r['dice_eval_seconds']:>8.1f}")
    write_results("preprocess", {"machine": info, "results": rows})


if __name__ == "__main__":
    main()
