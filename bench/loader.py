"""Benchmark: patches per second of the U-Net's training data path alone (no network), issue 20.

    .venv/bin/python bench/loader.py [--quick] [--patients N] [--patches N] [--workers 0,1,2]
                                     [--cohort DIR] [--device cpu|cuda]

What is timed: the batches :func:`gliorad.training.fit` draws for ``gliorad segment train
--config paper`` (``--config`` another preset or YAML), made by the same code (the loader of
``fit``, :class:`gliorad.segmentation.train.PatchDataset` over a
:class:`~gliorad.segmentation.data.CaseCache`), with the network left out: tumour-biased 128^3
crops of three sequences (t1, t1ce, t2), the paper's augmentations (three random flips,
per-channel intensity scale and shift), batches of the preset's size, collated (and on CUDA
copied to the GPU). The volumes are read, resampled and z-scored once before the clock starts
(the cache: in memory, or ``disk`` rows: float32 ``.npy`` memory maps written by the cache,
which the page cache then holds), as in every epoch after the first.

Rows: the loader (``process``: MONAI DataLoader, N worker processes, 0 = in the training loop,
as before issue 20; ``thread``: N threads, 0 = one background thread making the next batch while
the network would train), the number of workers and where the volumes come from. Each row draws
``--patches`` patches after a warm-up batch; patches/s = patches / wall seconds. The last row
(``nnU-Net set``) adds the auto preset's extra augmentations (random rotation and scaling,
gamma, noise, blur, low resolution) to show their cost.

The cohort: ``--patients`` seeded synthetic patients generated at 1 mm (``gliorad.synthetic``,
about 3 s each on 2 cores), or ``--cohort DIR``. Prints a table and writes bench/out/loader.json
with the machine and its load average (the cores are shared with other jobs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _harness import Column, format_table, load_average, machine_info, write_results

TARGET = 30.0  # patches/s that feed the U-Net's measured 0.035 s float16 step on an H200


def draw(cache, ids, cfg, loader: str, workers: int, patches: int, device: str) -> dict:
    """Patches per second of ``fit``'s batches for one loader setting."""
    import torch

    from gliorad.segmentation.train import PatchDataset
    from gliorad.training import epoch_seed
    from gliorad.training_runtime import DistEnv, data_device, make_loader, train_device

    tcfg = cfg.train.model_copy(update={"loader": loader, "num_workers": workers, "device": device})
    dev = train_device(tcfg, DistEnv())
    per_batch = tcfg.batch_size * cfg.samples_per_volume
    n_items = max(2, -(-patches // cfg.samples_per_volume) + tcfg.batch_size)
    data = PatchDataset(cache, ids, n_items, device=data_device(tcfg, dev))
    it = iter(make_loader(data, tcfg, dev, epoch_seed(0, 1), DistEnv(), pin=dev.type == "cuda"))
    first = next(it)  # warm-up: worker start, first crops
    n, t0 = 0, time.perf_counter()
    shape = tuple(first["image"].shape[1:])
    for batch in it:
        x = batch["image"].to(dev, non_blocking=True)
        n += int(x.shape[0])
        if n >= patches:
            break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    del it
    return {"loader": loader, "workers": workers, "patches": n, "seconds": dt,
            "patches_per_s": n / dt, "batch": per_batch, "patch_shape": list(shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 patients, 16 patches a row")
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--patches", type=int, default=48)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--cohort", type=Path, help="a cohort folder instead of a synthetic one")
    ap.add_argument("--config", default="paper", help="segmentation preset or YAML")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (batches copied there)")
    ap.add_argument("--no-nnunet", action="store_true", help="skip the nnU-Net augmentation row")
    args = ap.parse_args()
    if args.quick:
        args.patients, args.patches = 2, 16

    from gliorad.cohort import discover_cohort
    from gliorad.segmentation import load_segmentation_config, resolve_regions
    from gliorad.segmentation.data import CaseCache
    from gliorad.segmentation.train import crop_size
    from gliorad.synthetic import SynthConfig, generate_cohort

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    cfg = load_segmentation_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cohort
        t0 = time.perf_counter()
        if root is None:
            root = Path(tmp) / "cohort"
            generate_cohort(root, SynthConfig(n_patients=args.patients, seed=0, spacing=1.0), n_jobs=2)
        gen_s = time.perf_counter() - t0
        cohort = discover_cohort(root)
        ids = [p for p in cohort.ids if "seg" in cohort.patients[p].files][:args.patients]
        regions = resolve_regions(cfg, cohort.naming)
        t0 = time.perf_counter()
        memory = CaseCache(cohort, cfg, regions, crop_size(cfg))
        memory.preload(ids)
        load_s = (time.perf_counter() - t0) / len(ids)
        disk = CaseCache(cohort, cfg.model_copy(update={"cache_gb": 0.0}), regions, crop_size(cfg),
                         disk_dir=Path(tmp) / "volumes", disk_all=True)
        disk.preload(ids)
        rows = []
        for loader in ("process", "thread"):
            for w in workers:
                rows.append({**draw(memory, ids, cfg, loader, w, args.patches, args.device), "volumes": "memory"})
                print(format_table([rows[-1]], COLUMNS), flush=True)
        best = max((r for r in rows if r["loader"] == "thread"), key=lambda r: r["patches_per_s"])
        rows.append({**draw(disk, ids, cfg, "thread", best["workers"], args.patches, args.device),
                     "volumes": "disk"})
        if not args.no_nnunet:
            from gliorad.segmentation import get_preset

            aug = get_preset("auto").augment
            nn = cfg.model_copy(update={"augment": aug})
            nn_cache = CaseCache(cohort, nn, regions, crop_size(nn))
            nn_cache.preload(ids)
            rows.append({**draw(nn_cache, ids, nn, "thread", best["workers"], args.patches, args.device),
                         "volumes": "memory, nnU-Net set"})
    print()
    print(format_table(rows, COLUMNS, rule="-+-"))
    print(f"\nvolumes: {len(ids)} patients at 1 mm, {load_s:.1f} s each to read, resample and z-score "
          f"once; target {TARGET:.0f} patches/s; load average {load_average()}")
    write_results("loader", {
        "machine": machine_info("platform", "processor", "python", "cpus", "memory_gb",
                                "load_average_at_start", load_average_at_end=load_average()),
        "config": args.config, "patients": len(ids), "generate_seconds": gen_s,
        "read_seconds_per_patient": load_s, "target_patches_per_s": TARGET, "rows": rows,
    })


COLUMNS = (Column("loader", "loader", align="<"), Column("workers", "workers"),
           Column("volumes", "volumes", align="<"), Column("batch", "batch"),
           Column("patches", "patches"), Column("seconds", "seconds", ".2f"),
           Column("patches/s", "patches_per_s", ".1f"))


if __name__ == "__main__":
    main()
