"""Benchmark: segmentation training at demo settings and inference at paper / demo settings.

    .venv/bin/python bench/segment.py [--quick] [--threads 2] [--train-config auto --train-only]

Cases, each in a fresh process with ``torch.set_num_threads(threads)`` and OMP_WAIT_POLICY=PASSIVE
(idle OpenMP threads sleep instead of spinning, which matters on a machine shared with other jobs):

* ``demo_train``: synthetic cohorts at 3 mm (48 training patients, seed 0; 12 held-out patients,
  seed 1, a separate cohort), ``gliorad segment train`` with the ``demo`` preset (``--train-config
  auto``: the planned preset, ``--minutes`` its budget), then prediction and
  evaluation of the held-out patients: wall and CPU seconds, seconds per epoch, peak memory,
  held-out whole-tumour Dice / HD95.
* ``infer_<preset>_<input>[_<setting>=<value>]``: prediction of one 240x240x155 1 mm patient with
  an (untrained) network of the preset, end to end (read, normalise, sliding window, post-process,
  write): ``brain`` is a synthetic 1 mm brain placed in a 240x240x155 grid (the brain's bounding
  box is cropped first, as for real skull-stripped data, and predicted in one window when it has at
  most ``max_single_window_voxels``); ``random`` fills the whole grid (worst case: nothing to crop,
  too large for one window, so overlapping 128^3 windows); ``max_single_window_voxels=0`` forces
  128^3 windows on the brain; ``precision=bfloat16`` uses bfloat16 autocast on the CPU;
  ``brats`` is the first real BraTS 2018 case of ../shared/data/brats2018 (when present).
* ``paper_net``: parameters and FLOPs (torch.utils.flop_counter) of the paper network for one
  128^3 window with three input sequences.

Prints a table and writes bench/out/segment.json. Peak memory is the process's maximum resident
set size (ru_maxrss), Python, torch and MONAI included.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _harness import Column, format_table, machine_info, run_child, write_results

COMMON = r"""
import json, resource, sys, time, os
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
args = json.loads(sys.argv[1])
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

DEMO_TRAIN = COMMON + r"""
from gliorad.cohort import discover_cohort
from gliorad.config import CohortConfig
from gliorad.segmentation import (evaluate_masks, get_preset, load_model, predict_cohort,
                                  train_segmentation, with_overrides)
from gliorad.synthetic import SynthConfig, generate_cohort
tmp = args["tmp"]
t0 = time.perf_counter()
generate_cohort(f"{tmp}/train", SynthConfig(n_patients=args["n_train"], seed=0, spacing=3.0), n_jobs=2)
generate_cohort(f"{tmp}/test", SynthConfig(n_patients=args["n_test"], seed=1, spacing=3.0), n_jobs=2)
gen = time.perf_counter() - t0
cfg = get_preset(args.get("config", "demo"))
if args.get("epochs"):
    cfg = with_overrides(cfg, epochs=args["epochs"])
if args.get("minutes"):
    cfg = with_overrides(cfg, minutes=args["minutes"])
train = discover_cohort(f"{tmp}/train", CohortConfig(sequences=cfg.sequences))
w0, c0 = time.perf_counter(), time.process_time()
res = train_segmentation(train, f"{tmp}/model", cfg, progress=False)
train_wall, train_cpu = time.perf_counter() - w0, time.process_time() - c0
train_peak = peak_mb()
test = discover_cohort(f"{tmp}/test", CohortConfig(sequences=cfg.sequences))
w0 = time.perf_counter()
predict_cohort(test, load_model(f"{tmp}/model"), f"{tmp}/masks", progress=False)
pred_wall = time.perf_counter() - w0
ev = evaluate_masks(f"{tmp}/masks", test)
hist = res.fit.history
secs = sorted(h["seconds"] for h in hist)
wt = ev.summary["WT"]
print(json.dumps({
    "generate_seconds": gen, "n_train": len(res.train_ids), "n_val": len(res.val_ids),
    "n_test": wt["dice"]["n"], "epochs": len(hist), "train_wall_s": train_wall, "train_cpu_s": train_cpu,
    "epoch_s_mean": sum(secs) / len(secs), "epoch_s_median": secs[len(secs) // 2],
    "train_peak_mb": train_peak, "best_epoch": res.fit.best_epoch,
    "final_val_dice": hist[-1].get("val_dice"), "predict_s_per_patient": pred_wall / wt["dice"]["n"],
    "test_dice": wt["dice"], "test_hd95_mm": wt["hd95_mm"], "hd95_undefined": wt["hd95_undefined"]["n"],
    "per_patient_dice": {r["patient_id"]: r["dice"] for r in ev.rows},
}))
"""

INFER = COMMON + r"""
import numpy as np, SimpleITK as sitk
from gliorad.cohort import discover_cohort
from gliorad.config import CohortConfig
from gliorad.io import write_json
from gliorad.segmentation import (model_config_json, build_network, get_preset, load_model,
                                  predict_cohort, BRATS2018_REGIONS, validate_config)
from gliorad.settings import merge
from gliorad.training import save_weights
tmp, preset, kind = args["tmp"], args["preset"], args["input"]
cfg = get_preset(preset)
if args.get("inference"):
    cfg = validate_config(merge(cfg.model_dump(), {"inference": args["inference"]}), "bench")
torch.manual_seed(0)
net = build_network(cfg)
model_dir = f"{tmp}/model_{preset}"
os.makedirs(model_dir, exist_ok=True)
save_weights(net, f"{model_dir}/model.safetensors")
write_json(model_config_json(cfg, BRATS2018_REGIONS, "brats2018"), f"{model_dir}/config.json")
root = args["brats"] if kind == "brats" else f"{tmp}/cohort_{kind}"
if not os.path.isdir(root):
    pid = "P001"
    os.makedirs(f"{root}/{pid}")
    shape = (155, 240, 240)
    if kind == "random":
        rng = np.random.default_rng(0)
        arrays = {s: rng.normal(500, 100, shape).astype(np.float32) for s in cfg.sequences}
    else:
        from gliorad.synthetic import SynthConfig, generate_cohort
        generate_cohort(f"{tmp}/synth1mm", SynthConfig(n_patients=2, seed=5, spacing=1.0), n_jobs=1)
        src = discover_cohort(f"{tmp}/synth1mm")
        first = src.ids[0]
        arrays = {}
        for s in cfg.sequences:
            a = sitk.GetArrayFromImage(sitk.ReadImage(str(src.image_path(first, s)))).astype(np.float32)
            a = a[:155]  # the MNI brain spans z 4-150 of 189 slices
            pad = [(0, 0)] + [((240 - n) // 2, 240 - n - (240 - n) // 2) for n in a.shape[1:]]
            arrays[s] = np.pad(a, pad)
    for s, a in arrays.items():
        img = sitk.GetImageFromArray(a)
        sitk.WriteImage(img, f"{root}/{pid}/{pid}_{s}.nii.gz")
cohort = discover_cohort(root, CohortConfig(sequences=cfg.sequences))
m = load_model(model_dir)
w0, c0 = time.perf_counter(), time.process_time()
prov = predict_cohort(cohort, m, f"{tmp}/masks_{preset}_{kind}", ids=cohort.ids[:1], overwrite=True,
                      progress=False)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
one = next(iter(prov["patients"].values()))
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_mb": peak_mb(), "roi_size": list(cfg.roi_size),
                  "box": one["predicted_box"], "window": one["window"],
                  "overlap": cfg.inference.overlap, "precision": cfg.inference.precision,
                  "spacing_mm": cfg.spacing}))
"""

FLOPS = COMMON + r"""
from torch.utils.flop_counter import FlopCounterMode
from gliorad.segmentation import build_network, get_preset
cfg = get_preset("paper")
net = build_network(cfg).eval()
x = torch.zeros(1, len(cfg.sequences), *cfg.patch_size)
with FlopCounterMode(display=False) as fc, torch.no_grad():
    net(x)
print(json.dumps({"parameters": sum(p.numel() for p in net.parameters()),
                  "gflop_per_window": fc.get_total_flops() / 1e9, "window": list(cfg.patch_size),
                  "in_channels": len(cfg.sequences)}))
"""


def run(code: str, args: dict, threads: int) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    return run_child(["-c", code, json.dumps(args)], env=env)


def machine() -> dict:
    return machine_info("cpu_count", "machine", "python", "memory_gb", "load_average_at_start",
                        note="shared with other developers' jobs; wall times are inflated by their "
                             "load, CPU seconds less so")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16+4 patients, 2 epochs; demo inference only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true", help="inference and FLOPs only")
    ap.add_argument("--train-config", default="demo", help="segmentation preset of the training "
                    "case (demo; auto: planned, 15 minutes unless --minutes)")
    ap.add_argument("--minutes", type=float, default=None, help="training budget (auto)")
    ap.add_argument("--train-only", action="store_true", help="the training case only")
    a = ap.parse_args()
    results: dict = {"machine": machine(), "threads": a.threads}
    with tempfile.TemporaryDirectory() as tmp:
        results["paper_net"] = run(FLOPS, {}, a.threads)
        cases = [] if a.train_only else [("demo", "brain", None), ("demo", "random", None)]
        if not a.quick:
            cases += [("paper", "brain", None), ("paper", "random", None),
                      ("paper", "brain", {"precision": "bfloat16"}),
                      ("paper", "brain", {"max_single_window_voxels": 0})]
        brats = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"
        if brats.is_dir() and not a.quick and not a.train_only:  # real BraTS 2018 case (when present)
            cases += [("paper", "brats", None)]
        for preset, kind, inf in cases:
            suffix = "".join(f"_{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}"
                             for k, v in (inf or {}).items())
            name = f"infer_{preset}_{kind}{suffix}"
            results[name] = run(INFER, {"tmp": tmp, "preset": preset, "input": kind, "inference": inf,
                                        "brats": str(brats)}, a.threads)
            print(f"{name}: {results[name]}", flush=True)
        if not a.skip_train:
            train_args = {"tmp": tmp, "n_train": 16, "n_test": 4, "epochs": 2} if a.quick else \
                {"tmp": tmp, "n_train": 48, "n_test": 12}
            train_args.update(config=a.train_config, minutes=a.minutes)
            results["demo_train"] = run(DEMO_TRAIN, train_args, a.threads)
            results["demo_train"]["config"] = a.train_config
    report(results)
    write_results("segment", results)


def _size(key: str):
    return lambda row: "x".join(map(str, row[key]))


INFER_COLUMNS = (Column("inference (one 240x240x155 patient)", "name", width=48, align="<"),
                 Column("box (z,y,x)", _size("box"), width=13),
                 Column("window", _size("window"), width=13), Column("overlap", "overlap", width=7),
                 Column("wall s", "wall_s", ".1f", 7), Column("CPU s", "cpu_s", ".1f", 7),
                 Column("peak MB", "peak_mb", ".0f", 8))


def report(r: dict) -> None:
    net = r["paper_net"]
    print(f"\nmachine: {r['machine']['cpu_count']} CPUs {r['machine']['machine']}, torch threads {r['threads']}, "
          f"load average at start {r['machine']['load_average_at_start']} (shared machine)")
    print(f"paper network: {net['parameters']:,} parameters, {net['gflop_per_window']:.1f} GFLOP per "
          f"{'x'.join(map(str, net['window']))} window ({net['in_channels']} sequences)")
    infer = [{"name": k, **v} for k, v in r.items() if k.startswith("infer_")]
    print()
    print(format_table(infer, INFER_COLUMNS, sep=" "))
    t = r.get("demo_train")
    if t:
        d, h = t["test_dice"], t["test_hd95_mm"]
        print(f"\n{t.get('config', 'demo')} training: {t['n_train']} train + {t['n_val']} validation "
              f"patients (3 mm cohort), {t['epochs']} epochs")
        print(f"  wall {t['train_wall_s'] / 60:.1f} min (CPU {t['train_cpu_s'] / 60:.1f} min), "
              f"{t['epoch_s_mean']:.1f} s/epoch (median {t['epoch_s_median']:.1f}), peak {t['train_peak_mb']:.0f} MB")
        print(f"  held-out ({t['n_test']} patients): WT Dice mean {d['mean']:.3f} (95% CI {d['ci95_low']:.3f}-"
              f"{d['ci95_high']:.3f}), median {d['median']:.3f}; HD95 mean {h['mean']:.1f} mm "
              f"(undefined for {t['hd95_undefined']}); {t['predict_s_per_patient']:.1f} s/patient")


if __name__ == "__main__":
    main()
