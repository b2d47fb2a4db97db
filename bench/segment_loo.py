"""Benchmark: the segmentation U-Net trained and tested leave-one-out on real BraTS cases.

    .venv/bin/python bench/segment_loo.py [--config auto] [--minutes 15] [--threads 2]
        [--data ../shared/data/brats2018] [--workspace W] [--only 0,3] [--set key=value ...]

For each patient of the cohort (the six BraTS 2018 cases of ``../shared/data/brats2018`` by
default) a fresh process trains ``gliorad segment train`` on the others with the given preset
(``auto``: planned from the training cases, 15-minute budget; ``--minutes`` overrides the budget,
``--set`` any setting, e.g. ``--set folds=1``), predicts the held-out patient and evaluates its
whole-tumour Dice and HD95 against the manual mask. Recorded per fold: the held-out patient, Dice,
HD95, predicted and manual volume (ml), empty mask or not, the mask check's flag, training wall and
CPU seconds (the process's, ``time.process_time``), epochs run, prediction seconds, peak memory
(ru_maxrss), the planned spacing / patch / network, and the chosen post-processing.

Each fold's result is kept in ``<workspace>/fold<i>.json``: an interrupted benchmark resumes with
the folds still missing (a new ``--workspace`` or deleting the files starts over). Prints a table
and writes bench/out/segment_loo.json. The held-out patient is never read during training.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _harness import Column, format_table, machine_info, run_child, write_results

FOLD = r"""
import json, os, resource, sys, time
import numpy as np
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
args = json.loads(sys.argv[1])
from gliorad.cohort import discover_cohort
from gliorad.config import CohortConfig
from gliorad.segmentation import (evaluate_masks, load_model, load_segmentation_config,
                                  predict_cohort, train_segmentation, validate_config, with_overrides)
from gliorad.segmentation.qc import check_masks, reference_volumes, volume_bounds
from gliorad.commands.run import parse_overrides
from gliorad.settings import merge
cfg = load_segmentation_config(args["config"])
if args["sets"]:
    cfg = validate_config(merge(cfg.model_dump(), parse_overrides(args["sets"])), "--set")
cfg = with_overrides(cfg, minutes=args["minutes"], device="cpu")
cohort = discover_cohort(args["data"], CohortConfig(sequences=cfg.sequences))
ids = sorted(cohort.ids)
test = ids[args["fold"]]
train = [p for p in ids if p != test]
out = args["out"]
w0, c0 = time.perf_counter(), time.process_time()
res = train_segmentation(cohort, f"{out}/model", cfg, ids=train, progress=False)
train_wall, train_cpu = time.perf_counter() - w0, time.process_time() - c0
model = load_model(f"{out}/model")
w0 = time.perf_counter()
prov = predict_cohort(cohort, model, f"{out}/masks", ids=[test], progress=False, overwrite=True)
predict_s = time.perf_counter() - w0
ev = evaluate_masks(f"{out}/masks", cohort)
row = next(r for r in ev.rows if r["patient_id"] == test)
bounds = volume_bounds(reference_volumes(cohort, train).values(), cfg.qc)
qc = check_masks(f"{out}/masks", [test], bounds).iloc[0]
manual = reference_volumes(cohort, [test])[test]
plans = f"{out}/model/plans.json"
post = f"{out}/model/postprocessing.json"
used = json.load(open(f"{out}/model/config.json"))["segmentation"]
hist = res.fit.history if res.fit else []
print(json.dumps({
    "fold": args["fold"], "test": test, "train_ids": train, "val_ids": res.val_ids,
    "dice": row["dice"], "hd95_mm": row.get("hd95_mm"), "predicted_ml": float(qc["volume_ml"]),
    "manual_ml": manual, "empty": bool(qc["volume_ml"] == 0), "qc_flag": qc["flag"],
    "train_wall_s": train_wall, "train_cpu_s": train_cpu, "epochs": len(hist),
    "stopped_by_time": bool(res.fit.stopped_by_time) if res.fit else None,
    "predict_s": predict_s, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "spacing": used["spacing"], "patch_size": used["patch_size"], "sequences": used["sequences"],
    "features": used["net"]["features"],
    "plan": json.load(open(plans))["why"] if os.path.exists(plans) else None,
    "postprocessing": json.load(open(post))["chosen"] if os.path.exists(post) else None,
}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="auto", help="preset or YAML file (default auto)")
    ap.add_argument("--minutes", type=float, default=None, help="training budget per fold")
    ap.add_argument("--threads", type=int, default=2)
    here = Path(__file__).resolve()
    ap.add_argument("--data", type=Path, default=here.parents[2] / "shared" / "data" / "brats2018")
    ap.add_argument("--workspace", type=Path, default=here.parent / "out" / "segment_loo")
    ap.add_argument("--only", default=None, help="comma-separated fold numbers (default: all)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    if not a.data.is_dir():
        raise SystemExit(f"{a.data}: not found (the real BraTS cases of ../shared/data)")
    n = len([p for p in a.data.iterdir() if p.is_dir()])
    folds = [int(f) for f in a.only.split(",")] if a.only else list(range(n))
    a.workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BENCH_THREADS": str(a.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    rows = []
    for k in folds:
        done = a.workspace / f"fold{k}.json"
        if done.is_file():
            rows.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        args = {"fold": k, "config": a.config, "minutes": a.minutes, "sets": a.sets,
                "data": str(a.data), "out": str(a.workspace / f"fold{k}")}
        row = run_child(["-c", FOLD, json.dumps(args)], env=env, what=f"fold {k}")
        done.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
        rows.append(row)
        print(f"fold {k}: {row['test']} Dice {row['dice']:.3f} ({row['train_wall_s'] / 60:.1f} min)",
              flush=True)
    results = {"machine": machine_info("cpu_count", "machine", "python", "memory_gb",
                                       "load_average_at_start"),
               "threads": a.threads, "config": a.config, "minutes": a.minutes, "sets": a.sets,
               "folds": rows, "summary": summary(rows)}
    report(results)
    write_results("segment_loo", results)


def summary(rows: list[dict]) -> dict:
    import numpy as np

    d = np.array([r["dice"] for r in rows], float)
    return {"n": len(rows), "dice_mean": float(d.mean()), "dice_median": float(np.median(d)),
            "dice_min": float(d.min()), "empty_masks": sum(r["empty"] for r in rows),
            "train_wall_s_max": max(r["train_wall_s"] for r in rows),
            "train_cpu_s_max": max(r["train_cpu_s"] for r in rows)}


COLUMNS = (Column("fold", "fold", width=4), Column("held-out patient", "test", width=22, align="<"),
           Column("WT Dice", "dice", ".3f", 7), Column("HD95 mm", "hd95_mm", ".1f", 7),
           Column("pred ml", "predicted_ml", ".1f", 8), Column("manual ml", "manual_ml", ".1f", 9),
           Column("flag", "qc_flag", width=8), Column("train min", lambda r: r["train_wall_s"] / 60, ".1f", 9),
           Column("CPU min", lambda r: r["train_cpu_s"] / 60, ".1f", 7), Column("epochs", "epochs", width=6),
           Column("peak MB", "peak_mb", ".0f", 7))


def report(r: dict) -> None:
    print(f"\nmachine: {r['machine']['cpu_count']} CPUs, torch threads {r['threads']}, config "
          f"{r['config']}, minutes {r['minutes']}, settings {r['sets']}")
    print(format_table(r["folds"], COLUMNS, sep=" "))
    s = r["summary"]
    print(f"mean WT Dice {s['dice_mean']:.3f} (median {s['dice_median']:.3f}, min {s['dice_min']:.3f}); "
          f"{s['empty_masks']} empty mask(s); longest training {s['train_wall_s_max'] / 60:.1f} min wall, "
          f"{s['train_cpu_s_max'] / 60:.1f} min CPU")


if __name__ == "__main__":
    main()
