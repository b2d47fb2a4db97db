"""Training the U-Net (:func:`train_segmentation`) with Dice + BCE.

Patches of ``patch_size`` are drawn with MONAI's ``RandCropByPosNegLabeld`` (centred on tumour with
probability ``pos_fraction``, else on brain), flipped along each axis with probability
``augment.flip_prob`` and scaled / shifted in intensity. The loop is :func:`gliorad.training.fit`
(Adam, lr halved on plateau, checkpoints, resume). Validation runs the sliding-window prediction
(:func:`gliorad.segmentation.infer.predict_volume`) on whole held-out volumes and reports
``val_loss`` and ``val_dice``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable

from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError
from gliorad.io import file_hash, write_bytes, write_json
from gliorad.provenance import read_record
from gliorad.segmentation.config import SegmentationConfig, resolve_regions
from gliorad.segmentation.data import CaseCache, usable_ids, versions
from gliorad.segmentation.evaluate import dice_score
from gliorad.segmentation.infer import FoldEnsemble, build_network, predict_volume
from gliorad.training import (
    RESUMABLE_CHANGES,
    DeepSupervisionLoss,
    DiceBCELoss,
    TrainResult,
    fit,
    load_weights,
    resolve_device,
    save_weights,
    seed_everything,
)

__all__ = ["MODEL_FILES", "PatchDataset", "SegmentationTrainResult", "fold_splits", "model_config_json",
           "patch_transforms", "split_ids", "train_segmentation"]


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches: tumour-biased crops, flips, intensity scale / shift (MONAI), and
    the augmentations of :class:`~gliorad.segmentation.config.AugmentConfig` that are switched on.

    ``length`` items an epoch (default: one per patient; ``patches_per_epoch`` sets it), each
    item ``samples_per_volume`` patches of one patient, the patients taken in turn.

    ``device`` (a CUDA GPU; MONAI's CacheDataset + ``ToDeviced`` anchor): the volumes the cache
    holds in memory are copied there once and the patches are cut and augmented there (MONAI's
    transforms run on CUDA tensors); a volume read from disk is cut on the CPU and its patches
    copied. :meth:`seeded_item` draws an item with its own seed in a per-thread copy of the
    transforms (thread workers, torchrun)."""

    def __init__(self, cache: CaseCache, ids: Sequence[str], length: int | None = None,
                 device: torch.device | None = None):
        self.cache, self.ids = cache, list(ids)
        self.length = int(length) if length else len(self.ids)
        self.transform = patch_transforms(cache.cfg)
        self.device = device if device is not None and device.type != "cpu" else None
        self._on_device: dict[str, dict[str, Any]] = {}
        self._local = threading.local()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        return self._draw(self.transform, i)

    def seeded_item(self, i: int, seed: int) -> list[dict[str, Any]]:
        """Item ``i`` with the random transforms seeded by ``seed`` (thread-safe)."""
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = copy.deepcopy(self.transform)
        transform.set_random_state(seed=seed)
        return self._draw(transform, i)

    def _volume(self, pid: str) -> dict[str, Any]:
        item = self.cache.get(pid)
        if self.device is None or pid not in self.cache.items:
            return item
        if pid not in self._on_device:
            self._on_device[pid] = {**item, "image": torch.as_tensor(item["image"], device=self.device),
                                    "label": torch.as_tensor(item["label"], device=self.device)}
        return self._on_device[pid]

    def _draw(self, transform: Any, i: int) -> list[dict[str, Any]]:
        with warnings.catch_warnings():  # memory-mapped volumes are read-only: cut, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            samples = transform(self._volume(self.ids[i % len(self.ids)]))
        out = [{"image": _plain(s["image"]), "label": _plain(s["label"])} for s in samples]
        if self.device is not None:
            out = [{k: v.to(self.device, non_blocking=True) for k, v in s.items()} for s in out]
        return out


#: The crop before a random rotation / scaling is this much larger than the patch per axis, so
#: that the rotated and scaled patch is filled with image (15 degrees about each axis, 20 %).
AFFINE_MARGIN = 1.3


class BiasFieldd(Randomizable):
    """A random smooth bias field per sequence (MONAI's ``RandBiasField``: exp of a random
    polynomial of ``degree`` 3 with coefficients U(-coeff, coeff)), applied to the patch's brain
    voxels as if to the raw intensities: the patch holds z-scores ``z = (x - m) / s``, and a
    field ``b`` on ``x`` gives ``z' = (z + k) b - k`` with ``k = m / s``, taken as
    :data:`BIAS_OFFSET` (so a bias field both scales the contrast and shifts the brightness
    locally, as in an uncorrected scan). Voxels outside the brain (0) stay 0."""

    def __init__(self, prob: float, coeff: float, degree: int = 3):
        from monai.transforms import RandBiasField

        self.prob = prob
        self.field = RandBiasField(degree=degree, coeff_range=(-coeff, coeff), prob=1.0)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> BiasFieldd:
        super().set_random_state(seed, state)
        self.field.set_random_state(seed=int(self.R.randint(2**31 - 1)))
        return self

    def randomize(self, data: Any = None) -> None:
        self._do = self.R.rand() < self.prob

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        d = dict(data)
        self.randomize()
        if not self._do:
            return d
        img = d["image"]
        x = img.as_tensor() if hasattr(img, "as_tensor") else torch.as_tensor(img)
        out = x.clone()
        for c in range(x.shape[0]):
            ones = torch.ones((1, *x.shape[1:]), dtype=x.dtype)
            b = torch.as_tensor(self.field(ones, randomize=True))[0].to(x.dtype)
            inside = x[c] != 0
            out[c] = torch.where(inside, (x[c] + BIAS_OFFSET) * b - BIAS_OFFSET, x[c])
        d["image"] = out
        return d


#: The ratio mean / SD of a brain MRI's raw intensities assumed by :class:`BiasFieldd`.
BIAS_OFFSET = 3.0


def crop_size(cfg: SegmentationConfig) -> tuple[int, ...]:
    """The size of the crop a training patch is drawn from: the patch, or with a random
    rotation / scaling :data:`AFFINE_MARGIN` times it (smaller volumes are zero-padded to it)."""
    if cfg.augment.affine:
        return tuple(math.ceil(p * AFFINE_MARGIN) for p in cfg.patch_size)
    return tuple(cfg.patch_size)


def patch_transforms(cfg: SegmentationConfig) -> Any:
    """The MONAI transforms drawing and augmenting the training patches of ``cfg``: with only the
    paper's augmentations switched on, exactly the paper's chain (crop, flips, intensity scale
    and shift)."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSimulateLowResolutiond,
    )

    aug = cfg.augment
    keys = ["image", "label"]
    crop = crop_size(cfg)
    chain: list[Any] = [RandCropByPosNegLabeld(
        keys, label_key="label", spatial_size=crop, pos=cfg.pos_fraction,
        neg=1.0 - cfg.pos_fraction, num_samples=cfg.samples_per_volume,
        fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices",
    )]
    if aug.affine:
        rad = math.radians(aug.rotate_deg)
        # a stack of thick slices (an axis not pooled at the first level) turns in-plane only,
        # about the array's first (through-plane) axis, as nnU-Net does
        thick = cfg.net.strides is not None and cfg.net.strides[0][0] == 1
        chain.append(RandAffined(
            keys, spatial_size=cfg.patch_size, prob=aug.affine_prob,
            rotate_range=(rad, 0.0, 0.0) if thick else (rad, rad, rad),
            scale_range=(aug.zoom,) * 3, mode=("bilinear", "nearest"), padding_mode="zeros",
        ))
    chain += [
        *[RandFlipd(keys, prob=aug.flip_prob, spatial_axis=a) for a in range(3)],
        RandScaleIntensityd("image", factors=aug.scale, prob=aug.intensity_prob, channel_wise=True),
        RandShiftIntensityd("image", offsets=aug.shift, prob=aug.intensity_prob, channel_wise=True),
    ]
    if aug.gamma_prob > 0:
        chain.append(RandAdjustContrastd("image", prob=aug.gamma_prob, gamma=aug.gamma,
                                         retain_stats=True))
    if aug.noise_prob > 0:
        chain.append(RandGaussianNoised("image", prob=aug.noise_prob, std=aug.noise_std))
    if aug.blur_prob > 0:
        sig = tuple(aug.blur_sigma)
        chain.append(RandGaussianSmoothd("image", sigma_x=sig, sigma_y=sig, sigma_z=sig,
                                         prob=aug.blur_prob))
    if aug.bias_prob > 0:
        chain.append(BiasFieldd(aug.bias_prob, aug.bias_coeff))
    if aug.lowres_prob > 0:
        chain.append(RandSimulateLowResolutiond("image", prob=aug.lowres_prob,
                                                zoom_range=tuple(aug.lowres_zoom)))
    return Compose(chain)


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
#: Written besides :data:`MODEL_FILES` when the settings ask for them.
EXTRA_FILES = ("plans.json", "postprocessing.json")


@dataclass
class SegmentationTrainResult:
    model_dir: Path
    train_ids: list[str]
    val_ids: list[str]
    fit: TrainResult | None
    skipped: bool = False
    folds: list[TrainResult] | None = None


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


def fold_splits(ids: Sequence[str], folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``folds`` seeded (training, validation) splits of ``ids``: every patient validates in
    exactly one fold (scikit-learn's KFold on the sorted ids, shuffled with ``seed``)."""
    from sklearn.model_selection import KFold

    ids = sorted(ids)
    if len(ids) < folds:
        raise GlioradInputError(
            f"{folds} folds need at least {folds} patients with a manual mask; there are {len(ids)} "
            "(lower segmentation.folds)")
    kf = KFold(folds, shuffle=True, random_state=seed % 2**32)
    return [([ids[i] for i in tr], [ids[i] for i in va]) for tr, va in kf.split(ids)]


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


def _available_sequences(cohort: Cohort, ids: Sequence[str] | None) -> list[str]:
    """The standard sequences every patient of ``ids`` (default: those with a manual mask) has."""
    from gliorad.cohort import STANDARD_SEQUENCES

    chosen = list(ids) if ids is not None else [p for p in cohort.ids if SEG in cohort.patients[p].files]
    have = [s for s in STANDARD_SEQUENCES
            if chosen and all(s in cohort.patients[p].files for p in chosen if p in cohort.patients)]
    if not have:
        raise GlioradInputError(f"{cohort.root}: no sequence ({', '.join(STANDARD_SEQUENCES)}) is "
                                "present for every training patient")
    return have


def train_segmentation(
    cohort: Cohort,
    model_dir: str | Path,
    config: SegmentationConfig,
    *,
    ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None | bool = None,
) -> SegmentationTrainResult:
    """Train the U-Net on the cohort's patients that have a manual mask; write the model folder.

    ``model_dir`` gets ``model.safetensors`` (the trained weights: the best validation epoch
    under the paper's plateau schedule, the last one under a poly / cosine schedule; with
    ``folds`` > 1 the k networks in one file), ``config.json`` (all that is needed to rebuild the
    network and prepare its input), ``history.json``, ``provenance.json``, ``checkpoints/`` (for
    resuming; ``folds/fold_<i>/checkpoints`` with folds), and where asked ``plans.json`` (the
    settings planned from the data, ``plan``) and ``postprocessing.json`` (the post-processing
    chosen on the validation patients, ``choose_postprocessing``). A finished model with the same
    settings is kept as it is (skip); an interrupted one is resumed; other settings need
    ``overwrite=True``. ``val_ids`` fixes the validation patients (default: a seeded
    ``val_fraction`` split; with folds each patient validates in one fold).

    ``cache_dir``: the on-disk cache of ready volumes (:class:`CaseCache`): a folder (every volume
    kept there for later runs with the same inputs and settings), None (only the volumes beyond
    ``cache_gb`` of memory, in :func:`default_cache_dir`) or False (none: those are read again
    each time). Under ``torchrun`` every process trains (:func:`gliorad.training.fit`) and rank 0
    alone writes the model folder.
    """
    from gliorad.training_runtime import barrier, distributed_env, start_process_group, train_device

    cfg = config
    out = Path(model_dir)
    regions = resolve_regions(cfg, cohort.naming)
    env = distributed_env()
    if env.active:
        start_process_group(train_device(cfg.train, env))
    if overwrite and env.main:
        for name in (*MODEL_FILES, *EXTRA_FILES):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / "folds", ignore_errors=True)
    barrier(env)  # removed before any rank reads the folder
    plan_record = None
    if cfg.plan is not None and cfg.plan.all_sequences:
        cfg = cfg.model_copy(update={"sequences": _available_sequences(cohort, ids)})
    usable = usable_ids(cohort, cfg, ids, need_seg=True)
    if cfg.folds > 1:
        if val_ids is not None:
            raise GlioradInputError("val_ids cannot be fixed with segmentation.folds > 1: every "
                                    "patient validates in one fold")
        splits = fold_splits(usable, cfg.folds, cfg.train.seed)
        train, val = list(usable), []
    else:
        if val_ids is not None:
            val = sorted(val_ids)
            unknown = [p for p in val if p not in usable]
            if unknown:
                raise GlioradInputError(f"val_ids {unknown} are not training-ready patients of {cohort.root}")
            train = [p for p in usable if p not in val]
        else:
            train, val = split_ids(usable, cfg.val_fraction, cfg.train.seed)
        splits = [(train, val)]
    if not train:
        raise GlioradInputError(
            f"{cohort.root}: no patient with {', '.join(cfg.sequences)} and a manual mask to train on"
        )
    if cfg.plan is not None:
        from gliorad.segmentation.plan import plan_segmentation

        cfg, plan_record = plan_segmentation(cohort, sorted(set(train) | set(val)), cfg,
                                             previous=out / "plans.json")
    cfg_json = model_config_json(cfg, regions, cohort.naming)
    old_cfg = out / "config.json"
    if old_cfg.is_file():
        old = read_record(old_cfg)
        if _comparable(old) != _comparable(cfg_json):
            raise GlioradInputError(
                f"{out}: holds a model trained with other settings; pass overwrite (--overwrite) to "
                "replace it or choose another folder"
            )
    if all(not v for _, v in splits) and cfg.train.monitor != "train_loss":
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"monitor": "train_loss", "mode": "min"})})
    fold_dirs = [out / "checkpoints"] if cfg.folds == 1 else [out / "folds" / f"fold_{i}" / "checkpoints"
                                                              for i in range(cfg.folds)]
    if (out / "model.safetensors").is_file() and all(_finished(d, cfg) for d in fold_dirs):
        return SegmentationTrainResult(out, train, val, None, skipped=True)
    barrier(env)  # every rank has checked the folder before rank 0 writes into it

    out.mkdir(parents=True, exist_ok=True)
    if env.main:
        if plan_record is not None:
            write_json(plan_record, out / "plans.json")
        write_json(cfg_json, out / "config.json")
    disk = default_cache_dir() if cache_dir is None else cache_dir or None
    cache = CaseCache(cohort, cfg, regions, crop_size(cfg), disk_dir=disk,
                      disk_all=cache_dir not in (None, False))
    t0 = time.perf_counter()
    results, members = [], []
    for k, ((tr, va), ckpt) in enumerate(zip(splits, fold_dirs)):
        if cfg.folds > 1 and progress:
            print(f"fold {k + 1}/{cfg.folds}: {len(tr)} training, {len(va)} validation patients")
        res, net = _train_network(cfg, cache, tr, va, ckpt, progress)
        results.append(res)
        members.append(net)
    seconds = time.perf_counter() - t0
    if not env.main:  # rank 0 writes the model folder
        return SegmentationTrainResult(out, train, val, results[0], folds=results if cfg.folds > 1 else None)
    if cfg.folds == 1:  # the chosen checkpoint file itself (its metadata names the epoch)
        write_bytes(_chosen_weights(cfg, fold_dirs[0]).read_bytes(), out / "model.safetensors")
    else:
        save_weights(FoldEnsemble(members), out / "model.safetensors")
    postprocessing = None
    if cfg.choose_postprocessing:
        postprocessing = choose_postprocessing(cfg, cache, members, [va for _, va in splits])
        write_json(postprocessing, out / "postprocessing.json")
        if postprocessing["chosen"] is not None:
            chosen = postprocessing["chosen"]
            cfg_json["segmentation"]["inference"].update(
                keep_largest=chosen["keep_largest"], min_component_ml=chosen["min_component_ml"])
            write_json(cfg_json, out / "config.json")
    history = results[0].history if cfg.folds == 1 else [
        {**row, "fold": k} for k, r in enumerate(results) for row in r.history]
    write_json(history, out / "history.json")
    write_json({
        "versions": versions(), "seed": cfg.train.seed, "cohort": str(cohort.root),
        "naming": cohort.naming, "train_ids": train, "val_ids": val,
        "folds": ([{"train_ids": tr, "val_ids": va, "best_epoch": r.best_epoch,
                    "epochs_run": r.epochs_run, "stopped_by_time": r.stopped_by_time}
                   for (tr, va), r in zip(splits, results)] if cfg.folds > 1 else None),
        "best_epoch": results[0].best_epoch, "best_value": results[0].best_value,
        "monitor": cfg.train.monitor, "weights": _which_weights(cfg),
        "epochs_run": results[0].epochs_run, "stopped_early": results[0].stopped_early,
        "stopped_by_time": results[0].stopped_by_time,
        "training_seconds_this_call": seconds, "resumed_from_epoch": results[0].resumed_from,
        "inputs": {pid: {k: {"file": str(p), "sha256": file_hash(p)}
                         for k, p in cohort.patients[pid].files.items() if k in (*cfg.sequences, SEG)}
                   for pid in train + val},
        "grids": cache.meta,
    }, out / "provenance.json")
    return SegmentationTrainResult(out, train, val, results[0], folds=results if cfg.folds > 1 else None)


def default_cache_dir() -> Path:
    """Where volumes beyond the memory budget are cached on disk when no folder is given:
    ``$GLIORAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/gliorad/volumes`` (``~/.cache/...``)."""
    import os

    if os.environ.get("GLIORAD_CACHE_DIR"):
        return Path(os.environ["GLIORAD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gliorad" / "volumes"


def _finished(ckpt: Path, cfg: SegmentationConfig) -> bool:
    state = ckpt / "train_state.json"
    if not state.is_file():
        return False
    st = read_record(state)
    if st.get("stopped_early") or st.get("epoch", 0) >= cfg.train.epochs:
        return True
    if cfg.train.minutes is None:
        return False
    hist = ckpt / "history.json"
    spent = sum(float(h.get("seconds", 0)) for h in read_record(hist)) if hist.is_file() else 0.0
    return spent >= 60.0 * cfg.train.minutes


def _which_weights(cfg: SegmentationConfig) -> str:
    """``best`` (the best validation epoch) under the plateau schedule, else ``last``."""
    return "best" if cfg.train.schedule == "plateau" else "last"


def _train_network(cfg: SegmentationConfig, cache: CaseCache, train: list[str], val: list[str],
                   ckpt: Path, progress: bool) -> tuple[TrainResult, torch.nn.Module]:
    """One network trained on ``train`` (validated on ``val``) with checkpoints in ``ckpt``;
    returns the fit and the network holding the weights the model keeps."""
    from gliorad.training_runtime import data_device, resolved_loader, train_device

    per_item = cfg.samples_per_volume
    length = math.ceil(cfg.patches_per_epoch / per_item) if cfg.patches_per_epoch else None
    device = train_device(cfg.train)
    dataset = PatchDataset(cache, train, length, device=data_device(cfg.train, device))
    if resolved_loader(cfg.train, device) == "process" and cfg.train.num_workers > 0:
        cache.preload(train)  # the worker processes share these instead of reading their own
    seed_everything(cfg.train.seed)
    model = build_network(cfg, members=False)
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

    loss = DeepSupervisionLoss(DiceBCELoss()) if cfg.net.deep_supervision else DiceBCELoss()
    result = fit(model, dataset, loss, ckpt, cfg.train, validate=validate if val else None,
                 progress=progress)
    net = build_network(cfg, members=False)
    load_weights(net, _chosen_weights(cfg, ckpt))
    net.eval()
    return result, net


def _chosen_weights(cfg: SegmentationConfig, ckpt: Path) -> Path:
    best = ckpt / "best.safetensors"
    return best if _which_weights(cfg) == "best" and best.is_file() else ckpt / "last.safetensors"


def postprocessing_candidates(cfg: SegmentationConfig) -> list[dict[str, Any]]:
    """The post-processings tried on the validation patients, simplest first: none, small
    components removed (0.1, 0.5, 1, 5 ml; a configured size is added), largest component only."""
    sizes = sorted({0.1, 0.5, 1.0, 5.0, float(cfg.inference.min_component_ml)} - {0.0})
    return ([{"keep_largest": False, "min_component_ml": 0.0}]
            + [{"keep_largest": False, "min_component_ml": m} for m in sizes]
            + [{"keep_largest": True, "min_component_ml": 0.0}])


def choose_postprocessing(cfg: SegmentationConfig, cache: CaseCache, members: Sequence[torch.nn.Module],
                          val_sets: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The post-processing (:func:`postprocessing_candidates`) with the highest mean
    whole-tumour Dice over the validation patients, each predicted by the network that did not
    train on it (its fold's), on the working grid; a candidate must beat the simpler ones by more
    than 0.001 to be chosen (nnU-Net keeps a post-processing only when it helps). Without
    validation patients nothing is chosen (the configured post-processing stays)."""
    from gliorad.segmentation.infer import probabilities_to_labels

    device = resolve_device(cfg.inference.device)
    cands = postprocessing_candidates(cfg)
    scores: dict[int, list[float]] = {i: [] for i in range(len(cands))}
    patients = []
    for net, val in zip(members, val_sets):
        net.to(device)
        for pid in val:
            item = cache.get(pid)
            prob = predict_volume(net, item["image"], item["image"].any(axis=0), cfg, device)
            voxel_ml = float(np.prod(cache.meta[pid]["working_spacing"])) / 1000.0
            truth = item["label"][0] > 0
            row = {"patient_id": pid}
            for i, c in enumerate(cands):
                inf = cfg.inference.model_copy(update=c)
                labels = probabilities_to_labels(prob, cfg.model_copy(update={"inference": inf}),
                                                 cache.regions, voxel_ml)
                d = dice_score(labels > 0, truth)
                scores[i].append(d)
                row[_candidate_name(c)] = d
            patients.append(row)
    if not patients:
        return {"chosen": None, "reason": "no validation patient (val_fraction 0 and one fold): the "
                "configured post-processing is kept", "candidates": [], "patients": []}
    means = {i: float(np.mean(v)) for i, v in scores.items()}
    best = 0
    for i in range(1, len(cands)):
        if means[i] > means[best] + 1e-3:
            best = i
    table = [{**c, "name": _candidate_name(c), "mean_dice": means[i], "chosen": i == best}
             for i, c in enumerate(cands)]
    return {"chosen": cands[best], "reason": f"highest mean whole-tumour Dice on {len(patients)} "
            f"validation patient(s): {means[best]:.4f} (none: {means[0]:.4f})",
            "candidates": table, "patients": patients}


def _candidate_name(c: Mapping[str, Any]) -> str:
    if c["keep_largest"]:
        return "largest_component"
    return "none" if c["min_component_ml"] <= 0 else f"min_{c['min_component_ml']:g}ml"
