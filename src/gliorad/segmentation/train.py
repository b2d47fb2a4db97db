"""Training the U-Net (:func:`train_segmentation`) with Dice + BCE.

Patches of ``patch_size`` are drawn with MONAI's ``RandCropByPosNegLabeld`` (centred on tumour with
probability ``pos_fraction``, else on brain), flipped along each axis with probability
``augment.flip_prob`` and scaled / shifted in intensity. The loop is :func:`gliorad.training.fit`
(Adam, lr halved on plateau, checkpoints, resume). Validation runs the sliding-window prediction
(:func:`gliorad.segmentation.infer.predict_volume`) on whole held-out volumes and reports
``val_loss`` and ``val_dice``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError
from gliorad.io import file_hash, write_bytes, write_json
from gliorad.provenance import read_record
from gliorad.segmentation.config import SegmentationConfig, resolve_regions
from gliorad.segmentation.data import CaseCache, usable_ids, versions
from gliorad.segmentation.evaluate import dice_score
from gliorad.segmentation.infer import build_network, predict_volume
from gliorad.training import (
    RESUMABLE_CHANGES,
    DiceBCELoss,
    TrainResult,
    fit,
    resolve_device,
    seed_everything,
)

__all__ = ["MODEL_FILES", "PatchDataset", "SegmentationTrainResult", "model_config_json", "split_ids",
           "train_segmentation"]


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches: tumour-biased crops, flips, intensity scale / shift (MONAI)."""

    def __init__(self, cache: CaseCache, ids: Sequence[str]):
        from monai.transforms import (
            Compose,
            RandCropByPosNegLabeld,
            RandFlipd,
            RandScaleIntensityd,
            RandShiftIntensityd,
        )

        cfg = cache.cfg
        self.cache, self.ids = cache, list(ids)
        aug = cfg.augment
        keys = ["image", "label"]
        self.transform = Compose([
            RandCropByPosNegLabeld(
                keys, label_key="label", spatial_size=cfg.patch_size, pos=cfg.pos_fraction,
                neg=1.0 - cfg.pos_fraction, num_samples=cfg.samples_per_volume,
                fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices",
            ),
            *[RandFlipd(keys, prob=aug.flip_prob, spatial_axis=a) for a in range(3)],
            RandScaleIntensityd("image", factors=aug.scale, prob=aug.intensity_prob, channel_wise=True),
            RandShiftIntensityd("image", offsets=aug.shift, prob=aug.intensity_prob, channel_wise=True),
        ])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        samples = self.transform(self.cache.get(self.ids[i]))
        return [{"image": _plain(s["image"]), "label": _plain(s["label"])} for s in samples]


def _plain(x: Any) -> torch.Tensor:
    t = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return t.contiguous()


def _soft_dice_loss_value(logits: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(Dice + BCE loss, hard Dice averaged over channels) of one whole volume."""
    x = torch.from_numpy(logits)[None]
    y = torch.from_numpy(target.astype(np.float32))[None]
    loss = float(DiceBCELoss()(x, y))
    dices = [dice_score(logits[k] > 0, target[k] > 0) for k in range(target.shape[0])]
    return loss, float(np.mean(dices))


MODEL_FILES = ("model.safetensors", "config.json", "history.json", "provenance.json")


@dataclass
class SegmentationTrainResult:
    model_dir: Path
    train_ids: list[str]
    val_ids: list[str]
    fit: TrainResult | None
    skipped: bool = False


def split_ids(ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded random split into training and validation patients (at least one of each when
    ``val_fraction > 0`` and there are two patients or more)."""
    ids = sorted(ids)
    if val_fraction <= 0 or len(ids) < 2:
        return ids, []
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    val = sorted(ids[i] for i in order[:n_val])
    return [p for p in ids if p not in val], val


def model_config_json(cfg: SegmentationConfig, regions: dict[str, list[int]], naming: str) -> dict[str, Any]:
    return {"segmentation": cfg.model_dump(mode="json"), "regions": regions, "naming": naming,
            "in_channels": len(cfg.sequences), "out_channels": cfg.out_channels,
            "format": "gliorad-segmentation-model-1"}


def _comparable(cfg_json: Mapping[str, Any]) -> dict[str, Any]:
    """The model config without the settings that may change when a run is resumed."""
    seg = json.loads(json.dumps(cfg_json["segmentation"]))
    for k in RESUMABLE_CHANGES:
        seg["train"].pop(k, None)
    seg.pop("cache_gb", None)
    seg.pop("inference", None)
    return {**cfg_json, "segmentation": seg}


def train_segmentation(
    cohort: Cohort,
    model_dir: str | Path,
    config: SegmentationConfig,
    *,
    ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SegmentationTrainResult:
    """Train the U-Net on the cohort's patients that have a manual mask; write the model folder.

    ``model_dir`` gets ``model.safetensors`` (best validation weights), ``config.json`` (all that is
    needed to rebuild the network and prepare its input), ``history.json``, ``provenance.json``
    and ``checkpoints/`` (for resuming). A finished model with the same settings is kept as it is
    (skip); an interrupted one is resumed; other settings need ``overwrite=True``.
    ``val_ids`` fixes the validation patients (default: a seeded ``val_fraction`` split).
    """
    cfg = config
    out = Path(model_dir)
    regions = resolve_regions(cfg, cohort.naming)
    cfg_json = model_config_json(cfg, regions, cohort.naming)
    if overwrite:
        for name in MODEL_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    old_cfg = out / "config.json"
    if old_cfg.is_file():
        old = read_record(old_cfg)
        if _comparable(old) != _comparable(cfg_json):
            raise GlioradInputError(
                f"{out}: holds a model trained with other settings; pass overwrite (--overwrite) to "
                "replace it or choose another folder"
            )
    usable = usable_ids(cohort, cfg, ids, need_seg=True)
    if val_ids is not None:
        val = sorted(val_ids)
        unknown = [p for p in val if p not in usable]
        if unknown:
            raise GlioradInputError(f"val_ids {unknown} are not training-ready patients of {cohort.root}")
        train = [p for p in usable if p not in val]
    else:
        train, val = split_ids(usable, cfg.val_fraction, cfg.train.seed)
    if not train:
        raise GlioradInputError(
            f"{cohort.root}: no patient with {', '.join(cfg.sequences)} and a manual mask to train on"
        )
    if not val and cfg.train.monitor != "train_loss":
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"monitor": "train_loss", "mode": "min"})})
    state = out / "checkpoints" / "train_state.json"
    if (out / "model.safetensors").is_file() and state.is_file():
        st = read_record(state)
        if st.get("stopped_early") or st.get("epoch", 0) >= cfg.train.epochs:
            return SegmentationTrainResult(out, train, val, None, skipped=True)

    out.mkdir(parents=True, exist_ok=True)
    write_json(cfg_json, out / "config.json")
    cache = CaseCache(cohort, cfg, regions, cfg.patch_size)
    dataset = PatchDataset(cache, train)
    seed_everything(cfg.train.seed)
    model = build_network(cfg)
    device_name = cfg.train.device

    def validate(net: torch.nn.Module) -> dict[str, float]:
        device = resolve_device(device_name)
        losses, dices = [], []
        for pid in val:
            item = cache.get(pid)
            logits = predict_volume(net, item["image"], item["image"].any(axis=0), cfg, device,
                                    activation=False)
            loss, dice = _soft_dice_loss_value(logits, item["label"])
            losses.append(loss)
            dices.append(dice)
        return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dices))}

    t0 = time.perf_counter()
    result = fit(model, dataset, DiceBCELoss(), out / "checkpoints", cfg.train,
                 validate=validate if val else None, progress=progress)
    seconds = time.perf_counter() - t0
    ckpt = out / "checkpoints"
    best = ckpt / "best.safetensors"
    write_bytes((best if best.is_file() else ckpt / "last.safetensors").read_bytes(), out / "model.safetensors")
    write_json(result.history, out / "history.json")
    write_json({
        "versions": versions(), "seed": cfg.train.seed, "cohort": str(cohort.root),
        "naming": cohort.naming, "train_ids": train, "val_ids": val,
        "best_epoch": result.best_epoch, "best_value": result.best_value, "monitor": cfg.train.monitor,
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "training_seconds_this_call": seconds, "resumed_from_epoch": result.resumed_from,
        "inputs": {pid: {k: {"file": str(p), "sha256": file_hash(p)}
                         for k, p in cohort.patients[pid].files.items() if k in (*cfg.sequences, SEG)}
                   for pid in train + val},
        "grids": cache.meta,
    }, out / "provenance.json")
    return SegmentationTrainResult(out, train, val, result)
