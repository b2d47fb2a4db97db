"""Training and running a feature network (:mod:`gliorad.features.deep`): the training
dataset and its augmentations, the batch-norm check, the training wrapper around
:func:`gliorad.training.fit` with its model-folder check, and feature extraction in eval mode.

Nothing here knows a stage, a cohort or a label: :mod:`gliorad.features.deep` re-exports these
names and its runner calls them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gliorad.errors import GlioradInputError
from gliorad.io import write_bytes, write_json

__all__ = ["ArrayDataset", "TrainedNetwork", "check_batchnorm", "check_model_folder", "extract",
           "feature_table", "seeded_network", "train_network", "training_inputs", "training_layout",
           "validation"]


# ------------------------------------------------------------------------------------ dataset
class ArrayDataset(torch.utils.data.Dataset):
    """``{"image": float tensor (C, *spatial), "label": target}`` per training patient.

    Augmentations (MONAI transforms), drawn from torch's global generator, which the training
    loop reseeds every epoch (so a run is reproducible and a resumed run equals an uninterrupted
    one): a flip along the last axis (left-right for (z, y, x) volumes and (y, x) slices) with
    probability ``flip_prob``; a random translation by up to ``shift_voxels`` voxels along every
    spatial axis (zero fill: the input is 0 outside the brain); per-channel intensity
    ``x * (1 + U(-intensity_scale, intensity_scale)) + U(-intensity_shift, intensity_shift)``
    (z-score units) with probability ``intensity_prob``."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[Any], flip_prob: float = 0.0,
                 shift_voxels: int = 0, intensity_prob: float = 0.0, intensity_scale: float = 0.0,
                 intensity_shift: float = 0.0):
        if len(images) != len(targets):
            raise GlioradInputError(f"{len(images)} images but {len(targets)} targets")
        self.images = list(images)
        self.targets = list(targets)
        self.flip_prob = float(flip_prob)
        self.transform = None
        steps = []
        if self.images and shift_voxels > 0:
            from monai.transforms import RandSpatialCrop, SpatialPad

            size = self.images[0].shape[1:]
            steps += [SpatialPad([n + 2 * shift_voxels for n in size]),
                      RandSpatialCrop(size, random_center=True, random_size=False)]
        if intensity_prob > 0 and (intensity_scale > 0 or intensity_shift > 0):
            from monai.transforms import RandScaleIntensity, RandShiftIntensity

            steps += [RandScaleIntensity(intensity_scale, prob=intensity_prob, channel_wise=True),
                      RandShiftIntensity(intensity_shift, prob=intensity_prob, channel_wise=True)]
        if steps:
            from monai.transforms import Compose

            self.transform = Compose(steps)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i], dtype=np.float32))
        if self.flip_prob > 0 and float(torch.rand(())) < self.flip_prob:
            x = torch.flip(x, dims=(-1,))
        if self.transform is not None:
            self.transform.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ())))
            out = self.transform(x)
            x = (out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)).contiguous()
        t = self.targets[i]
        label = ({k: torch.tensor(v, dtype=torch.float32) for k, v in t.items()}
                 if isinstance(t, Mapping) else torch.tensor(t, dtype=torch.float32))
        return {"image": x, "label": label}

    @classmethod
    def augmented(cls, cfg: Any, images: Sequence[np.ndarray], targets: Sequence[Any]
                  ) -> ArrayDataset:
        """The training dataset with the augmentations of ``cfg``
        (:class:`gliorad.features.config.Augmented`)."""
        return cls(images, targets, cfg.flip_prob, shift_voxels=cfg.shift_voxels,
                   intensity_prob=cfg.intensity_prob, intensity_scale=cfg.intensity_scale,
                   intensity_shift=cfg.intensity_shift)


def check_batchnorm(n_train: int, batch_size: int, size: Sequence[int]) -> None:
    """Refuse a training set whose last batch would hold one sample when the fourth stage's map
    is one voxel (batch norm in training mode needs more than one value per channel)."""
    from gliorad.nets.resnet import stage4_size

    if int(np.prod(stage4_size(size))) == 1 and (n_train % batch_size == 1 or n_train == 1):
        raise GlioradInputError(
            f"{n_train} training patients in batches of {batch_size} leave a batch of one sample, "
            f"and the input size {tuple(size)} gives a 1-voxel map after the fourth stage: batch "
            "norm cannot train on that; change the batch size by one or use a larger input size "
            "(more than 32 voxels along some axis)"
        )


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainedNetwork:
    """A trained network, its model folder and the training loop's outcome."""

    model: torch.nn.Module
    model_dir: Path
    weights: Path
    result: Any
    seconds: float


def _comparable(cfg_json: Mapping[str, Any]) -> Any:
    from gliorad.training import RESUMABLE_CHANGES

    data = json.loads(json.dumps(cfg_json))
    for k in RESUMABLE_CHANGES:
        data.get("config", {}).get("train", {}).pop(k, None)
    return data


def check_model_folder(model_dir: Path, config_json: Mapping[str, Any]) -> None:
    """Refuse a model folder holding a network trained with other settings, patients, labels or
    input files (settings the training loop may resume with, such as ``epochs``, may differ)."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return
    try:
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        old = None
    if old is None or _comparable(old) != _comparable(config_json):
        raise GlioradInputError(
            f"{model_dir}: holds a network trained with other settings, patients or labels; pass "
            "overwrite (--overwrite) to replace it or choose another folder"
        )


def train_network(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, loss_fn: Callable, model_dir: Path,
    train_cfg: Any, config_json: Mapping[str, Any], *, weights: str = "best",
    validate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    progress: bool = True,
) -> TrainedNetwork:
    """Train with :func:`gliorad.training.fit` into ``model_dir/checkpoints`` (resumable), then
    copy the chosen weights to ``model_dir/model.safetensors`` and load them into ``model``.

    ``config_json`` (settings, ids, training labels) is kept in ``model_dir/config.json``; a
    folder holding another run is an error (the caller removes it for ``overwrite``).
    """
    from gliorad.training import fit, load_weights

    out = Path(model_dir)
    check_model_folder(out, config_json)
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_json, out / "config.json")
    if validate is None and train_cfg.monitor != "train_loss":
        train_cfg = train_cfg.model_copy(update={"monitor": "train_loss", "mode": "min"})
    t0 = time.perf_counter()
    result = fit(model, dataset, loss_fn, out / "checkpoints", train_cfg, validate=validate,
                 progress=progress)
    seconds = time.perf_counter() - t0
    ckpt = out / "checkpoints"
    chosen = ckpt / "best.safetensors" if weights == "best" else ckpt / "last.safetensors"
    if not chosen.is_file():
        chosen = ckpt / "last.safetensors"
    load_weights(model, chosen)
    final = write_bytes(chosen.read_bytes(), out / "model.safetensors")
    write_json(result.history, out / "history.json")
    return TrainedNetwork(model, out, final, result, seconds)


@torch.no_grad()
def extract(model: torch.nn.Module, images: Mapping[str, np.ndarray], device: str = "auto",
            batch_size: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features ``(N, widths[-1])`` and head outputs ``(N, k)`` (None without a head) of
    every patient, in ``images`` order, with the network in eval mode (float32, ``batch_size``
    patients per forward pass). In eval mode a patient's output does not depend on the others in
    its batch, up to floating-point rounding (convolution kernels can differ with the batch size
    in the last bits); ``batch_size=1`` makes each patient's values exactly reproducible alone."""
    from gliorad.training import resolve_device

    dev = resolve_device(device)
    model = model.to(dev).eval()
    feats, outs = [], []
    ids = list(images)
    for i in range(0, len(ids), batch_size):
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(images[p], dtype=np.float32))
                         for p in ids[i:i + batch_size]]).to(dev)
        f = model.features(x)
        feats.append(f.float().cpu().numpy())
        if model.head_type != "none":
            outs.append(model.head_outputs(f).float().cpu().numpy())
    if not ids:
        return np.zeros((0, model.n_features), np.float32), None
    return np.concatenate(feats), (np.concatenate(outs) if outs else None)


def feature_table(values: np.ndarray, ids: Sequence[str], prefix: str) -> pd.DataFrame:
    """Patients x features, index ``patient_id``, columns ``<prefix>000`` ... (three digits or
    more)."""
    width = max(3, len(str(values.shape[1] - 1)))
    df = pd.DataFrame(values.astype(np.float64), index=pd.Index(list(ids), name="patient_id"),
                      columns=[f"{prefix}{j:0{width}d}" for j in range(values.shape[1])])
    bad = df.index[~np.isfinite(df.to_numpy()).all(axis=1)].tolist()
    if bad:
        raise RuntimeError(f"non-finite deep features for patients {bad[:5]} (diverged network?)")
    return df


def training_inputs(images: Mapping[str, np.ndarray], ids: Sequence[str]) -> list[np.ndarray]:
    """The inputs of the training patients ``ids``, in that order; one without an input is an
    error."""
    missing = [p for p in ids if p not in images]
    if missing:
        raise GlioradInputError(f"training patients {missing[:10]} have no input image")
    return [images[p] for p in ids]


def seeded_network(build: Callable[[Any], torch.nn.Module], cfg: Any, n_train: int
                   ) -> torch.nn.Module:
    """``build(cfg)`` after :func:`check_batchnorm` of ``n_train`` training patients, with torch
    seeded by ``cfg.train.seed`` first (reproducible initial weights)."""
    from gliorad.training import seed_everything

    check_batchnorm(n_train, cfg.train.batch_size, cfg.size)
    seed_everything(cfg.train.seed)
    return build(cfg)


def validation(cfg: Any, images: Mapping[str, np.ndarray] | None, targets: Mapping[str, Any] | None,
               score: Callable[[np.ndarray], dict[str, float]]
               ) -> Callable[[torch.nn.Module], dict[str, float]] | None:
    """The training loop's ``validate`` hook: ``score`` of the head outputs ``(N, k)`` of the
    validation patients (in ``targets`` order; eval mode, ``cfg.predict_batch_size`` a batch);
    None without validation patients."""
    if not images or not targets:
        return None
    ids = list(targets)

    def validate(net: torch.nn.Module) -> dict[str, float]:
        _, out = extract(net, {p: images[p] for p in ids}, cfg.train.device, cfg.predict_batch_size)
        return score(out)

    return validate


def training_layout(model: torch.nn.Module, train_cfg: Any) -> torch.nn.Module:
    """``model`` with its weights in the memory layout :func:`gliorad.training.fit` trains them in
    (channels-last convolution weights, unless ``channels_last`` is off or bfloat16 autocast runs
    on the CPU). A network rebuilt from its folder then runs the kernels of the stage's
    just-trained one, so its features are the stage's to the last bit (another layout gives
    other floating-point rounding)."""
    from gliorad.training import resolve_device

    device = resolve_device(train_cfg.device)
    amp = train_cfg.amp if train_cfg.amp is not None else device.type == "cuda"
    if not train_cfg.channels_last or (amp and device.type == "cpu"):
        return model
    dims = {p.ndim for p in model.parameters()}
    layout = torch.channels_last_3d if 5 in dims else torch.channels_last if 4 in dims else None
    return model.to(memory_format=layout) if layout is not None else model
