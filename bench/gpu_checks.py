"""The GPU checks of issue 20, run by bench/gpu.sh in one device call (about 5 minutes on one H100
/ H200 with 16 cores); ``--smoke`` runs the same steps on the CPU at toy sizes (a check of the
script, not a measurement).

    python3 bench/gpu_checks.py --out DIR [--patients 16] [--epochs 4] [--smoke]

Steps (each timed; the results in DIR/gpu_checks.json and a table on stdout):

1. ``patients`` seeded synthetic 1 mm patients (240 x 240 x 155, ``gliorad.synthetic``).
2. The paper U-Net's own training step (3 sequences, 128^3, batch 1, Adam, float16 autocast,
   cuDNN autotuned) with and without the channels-last-3D layout that ``fit`` uses: the
   yardstick of the data path.
3. The training data path alone (bench/loader.py's ``draw``): the thread loader with the
   volumes on the GPU (``data_device`` auto: cut and augmented there), and on the CPU with 0 and
   4 threads.
4. ``train_segmentation`` with the paper preset for ``epochs`` epochs (volumes cached on disk by
   a first run, so every timed epoch has them), validation every epoch (the preset) and only at
   the end (``val_every`` = epochs); per epoch seconds; seconds per training patch without
   validation = (epoch seconds with val_every = epochs, epochs 2 .. n-1) / patches per epoch;
   the ratio to the network's step (target <= 1.5); GPU utilisation sampled by nvidia-smi
   every 200 ms during training (target >= 65 %).
5. ``predict_cohort`` of 4 patients, float32 and float16: seconds per patient (target < 3 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def step_time(channels_last: bool, device, smoke: bool, steps: int = 10) -> dict:
    import torch

    from gliorad.segmentation import get_preset
    from gliorad.segmentation.infer import build_network

    cfg = get_preset("demo" if smoke else "paper")
    torch.manual_seed(0)
    net = build_network(cfg, members=False).to(device)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    x = torch.randn(1, 3, *cfg.patch_size, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(1, 1, *cfg.patch_size, device=device) > 0.9).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    torch.backends.cudnn.benchmark = True
    times = []
    for i in range(3 + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out = net(x)
        loss = loss_fn(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"channels_last": channels_last, "s_per_step": statistics.median(times), "peak_gb": peak}


class GpuSampler:
    """nvidia-smi utilisation every 200 ms while a block runs (None without nvidia-smi)."""

    def __enter__(self):
        self.values: list[float] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.values.append(float(line.strip().split(",")[0]))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.values) if self.values else None


def train_runs(cohort, cfg, out: Path, epochs: int, cache: Path) -> dict:
    from gliorad.segmentation import train_segmentation, with_overrides

    cfg = with_overrides(cfg, epochs=epochs)
    # a first run of one epoch fills the disk cache (reading and resampling once)
    t0 = time.perf_counter()
    train_segmentation(cohort, out / "warm", with_overrides(cfg, epochs=1), progress=False,
                       cache_dir=cache)
    first = time.perf_counter() - t0
    runs = {}
    for name, val_every in (("val_every_epoch", 1), ("val_at_end", epochs)):
        c = cfg.model_copy(update={"train": cfg.train.model_copy(update={"val_every": val_every})})
        with GpuSampler() as gpu:
            t0 = time.perf_counter()
            res = train_segmentation(cohort, out / name, c, progress=False, cache_dir=cache)
            wall = time.perf_counter() - t0
        runs[name] = {"wall_s": wall, "epoch_s": [h["seconds"] for h in res.fit.history],
                      "gpu_util_mean": gpu.mean, "train_patients": len(res.train_ids),
                      "val_patients": len(res.val_ids)}
    return {"first_run_1_epoch_s": first, **runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--smoke", action="store_true", help="CPU, toy sizes: checks the script")
    args = ap.parse_args()
    import torch
    from loader import draw

    from gliorad.cohort import discover_cohort
    from gliorad.segmentation import (
        get_preset,
        load_model,
        predict_cohort,
        resolve_regions,
        with_overrides,
    )
    from gliorad.segmentation.data import CaseCache
    from gliorad.segmentation.train import crop_size
    from gliorad.synthetic import SynthConfig, generate_cohort

    smoke = args.smoke
    device = torch.device("cpu" if smoke else "cuda")
    dev_name = "cpu" if smoke else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if not smoke else "cpu",
                    "smoke": smoke}
    table = []

    def row(what, value, unit, target=""):
        table.append((what, value, unit, target))
        print(f"{what:55s} {value:10.4g} {unit:10s} {target}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        spacing = 3.0 if smoke else 1.0
        n = 6 if smoke else args.patients
        generate_cohort(tmp / "c", SynthConfig(n_patients=n, seed=0, spacing=spacing), n_jobs=16)
        result["generate_s"] = time.perf_counter() - t0
        cohort = discover_cohort(tmp / "c")

        steps = [step_time(cl, device, smoke) for cl in (True, False)]
        result["network_step"] = steps
        for s in steps:
            row(f"U-Net step, float16, channels_last={s['channels_last']}", s["s_per_step"], "s")
        net_step = min(s["s_per_step"] for s in steps)

        cfg = get_preset("demo" if smoke else "paper")
        cfg = with_overrides(cfg, device=dev_name)
        ids = cohort.ids[:4]
        mem = CaseCache(cohort, cfg, resolve_regions(cfg, cohort.naming), crop_size(cfg))
        mem.preload(ids)
        loaders = []
        for loader, workers, where in (("thread", 0, "auto"), ("thread", 0, "cpu"), ("thread", 4, "cpu"),
                                       ("process", 0, "cpu")):
            c = cfg.model_copy(update={"train": cfg.train.model_copy(update={"data_device": where})})
            r = draw(mem, ids, c, loader, workers, 16 if smoke else 64, dev_name)
            r["data_device"] = where
            loaders.append(r)
            row(f"data path: {loader}, {workers} workers, volumes on {where}", r["patches_per_s"],
                "patches/s", f">= {1 / net_step:.0f} (1 / step)")
        result["loader"] = loaders

        train = train_runs(cohort, cfg, tmp / "models", 3 if smoke else args.epochs, tmp / "volumes")
        result["train"] = train
        per_epoch = train["val_at_end"]["epoch_s"]
        middle = per_epoch[1:-1] or per_epoch
        patches = train["val_at_end"]["train_patients"] * cfg.samples_per_volume
        per_patch = statistics.mean(middle) / patches
        result["train_s_per_patch"] = per_patch
        result["train_ratio_to_step"] = per_patch / net_step
        row("segment train: s per patch (epochs without validation)", per_patch, "s")
        row("  ratio to the network's step", per_patch / net_step, "x", "<= 1.5")
        row("  GPU utilisation, val at end (mean %)", train["val_at_end"]["gpu_util_mean"] or -1, "%", ">= 65")
        row("  epoch s, validation every epoch (median)", statistics.median(train["val_every_epoch"]["epoch_s"]), "s")

        model_dir = tmp / "models" / "val_at_end"
        preds = {}
        for precision in ("float32", "float16"):
            model = load_model(model_dir, {"precision": precision, "device": dev_name})
            t0 = time.perf_counter()
            prov = predict_cohort(cohort, model, tmp / f"masks_{precision}", ids=cohort.ids[-4:],
                                  progress=False)
            wall = time.perf_counter() - t0
            per = [p["seconds"] for p in prov["patients"].values()]
            preds[precision] = {"wall_s": wall, "s_per_patient": per}
            row(f"predict, {precision}: s per patient (mean of 4)", statistics.mean(per), "s", "< 3")
        result["predict"] = preds
    (args.out / "gpu_checks.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.out / 'gpu_checks.json'}")


if __name__ == "__main__":
    main()
