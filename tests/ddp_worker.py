"""Run by ``torchrun`` in tests/test_ddp.py (not a test module): one rank of a DDP launch.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT COHORT CONFIG_YAML

1. :func:`gliorad.training.fit` of a tiny convolutional network with a per-voxel mean squared
   error (no batch norm: every sample's gradient is independent of the others') on a seeded
   dataset with a MONAI random flip, two epochs, batch 1 per rank, into ``OUT/fit``; each rank
   writes ``OUT/fit_rank<r>.json`` (its history and a checksum of its final weights).
2. ``gliorad segment train COHORT --config CONFIG_YAML --out OUT/model`` through the command
   line's own function, as ``torchrun ... gliorad segment train`` runs it; each rank that gets
   through writes ``OUT/seg_rank<r>.json``; then ``--epochs 3`` (resumed from the checkpoint)
   and ``OUT/resumed_rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from monai.transforms import RandFlip


class FlipData(torch.utils.data.Dataset):
    """Eight seeded 1 x 8 x 8 x 8 volumes; the target is a bright cube; a random flip per item."""

    def __init__(self, n: int = 8):
        rng = np.random.default_rng(0)
        self.items = []
        for _ in range(n):
            y = np.zeros((1, 8, 8, 8), np.float32)
            a = rng.integers(0, 4, 3)
            y[0, a[0]:a[0] + 4, a[1]:a[1] + 4, a[2]:a[2] + 4] = 1
            self.items.append((y + rng.normal(0, 0.3, y.shape).astype(np.float32), y))
        self.flip = RandFlip(prob=0.5, spatial_axis=0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        x, y = self.items[i]
        self.flip.randomize(None)
        return {"image": torch.as_tensor(self.flip(x, randomize=False)).as_tensor(),
                "label": torch.as_tensor(self.flip(y, randomize=False)).as_tensor()}


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv3d(4, 1, 3, padding=1))


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((out - target) ** 2)


def checksum(model: torch.nn.Module) -> list[float]:
    return [float(v.double().sum()) for v in model.state_dict().values()]


def main() -> None:
    from gliorad.training import TrainConfig, fit

    out, cohort, config = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=2, batch_size=1, lr=1e-2, seed=3, device="cpu", monitor="train_loss",
                      channels_last=False)
    model = small_net()
    res = fit(model, FlipData(), mse, out / "fit", cfg, progress=False)
    (out / f"fit_rank{rank}.json").write_text(json.dumps(
        {"history": res.history, "checksum": checksum(model)}), encoding="utf-8")

    from gliorad.commands.segment import train as train_command

    train_command(Path(cohort), out / "model", config=config, progress=False)
    (out / f"seg_rank{rank}.json").write_text(json.dumps({"finished": True}), encoding="utf-8")
    # one epoch more: every rank resumes from rank 0's checkpoint
    train_command(Path(cohort), out / "model", config=config, epochs=3, progress=False)
    (out / f"resumed_rank{rank}.json").write_text(json.dumps({"finished": True}), encoding="utf-8")

if __name__ == "__main__":
    main()
