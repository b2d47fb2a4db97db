"""One training loop for every network of the project (segmentation U-Net, ResNet18 grade and
survival CNNs).

:func:`fit` trains a model on a dataset with a loss callable and an optional validation callable:

* Adam (or any optimizer from ``optimizer_factory``), learning rate multiplied by
  ``plateau_factor`` after ``plateau_patience`` epochs without improvement of the monitored value
  (the paper: lr 5e-4, halved after 10 epochs without validation improvement); optional early
  stopping; optional gradient clipping.
* Or (``schedule``) a poly / cosine decay over the epochs or over a time budget (``minutes``:
  no epoch starts once it is spent), floored at ``min_lr``; see :func:`scheduled_lr`.
* CPU or CUDA (``device``), mixed precision (float16 autocast + gradient scaling on CUDA; bfloat16
  autocast on CPU only when ``amp=True``). **The CUDA path is untested** (no GPU was available when
  it was written).
* Checkpoints in ``out_dir``: ``last.safetensors`` and ``best.safetensors`` (model weights, with the
  epoch in the safetensors metadata), ``train_state.pt`` (optimizer, scheduler and gradient-scaler
  state, saved with ``torch.save`` and read back with ``weights_only=True``), ``train_state.json``
  (epoch, best value, counters, the settings) and ``history.json`` (per epoch: train loss,
  validation values, learning rate, seconds). Every file is written atomically.
* Resume: calling :func:`fit` again on the same ``out_dir`` continues the run where it stopped.
  Every epoch reseeds Python, NumPy, torch, the data-loader order and MONAI's random transforms from
  ``(seed, epoch)``, so 2 epochs + resume for 2 more give the same weights as 4 epochs straight
  (on CPU, where the operations used are deterministic).
* A rich progress bar (stderr) with loss and validation values; ``progress=False`` turns it off.
* Batches (``loader``): MONAI's DataLoader (worker processes) or ThreadDataLoader (a background
  thread makes the next batch while the network trains on this one; MONAI's anchor for keeping
  a GPU fed, with CacheDataset-style volumes held in memory and ``ToDeviced``); pinned memory and
  non-blocking copies on CUDA; cuDNN autotuning on CUDA (fixed patch sizes).
* Several processes (``torchrun --nproc_per_node N``, see :func:`distributed_env`): PyTorch
  DistributedDataParallel, gloo on the CPU, NCCL on GPUs. Each epoch's order is cut into global
  batches of ``batch_size`` x N items, rank r training on its ``batch_size`` of each (the last
  global batch filled from the epoch's start, as DistributedSampler pads); gradients are averaged;
  items are seeded from (epoch seed, item) (``item_seeds``), so a run on N processes sees the same
  items and augmentations as one process with ``batch_size`` x N; batch norm stays per process
  (the paper's batch of 1 per GPU). Rank 0 validates (the others wait for its values), writes the
  checkpoints and the history; every rank reads them on resume (a shared folder across machines).

Data contract: ``train_data`` is a :class:`torch.utils.data.Dataset`; batches are made by MONAI's
:class:`~monai.data.DataLoader` (``list_data_collate``, so a transform returning several samples
per item, such as ``RandCropByPosNegLabeld``, just works). ``prepare_batch(batch, device)`` returns
``(inputs, targets)``; the default takes ``batch["image"], batch["label"]`` of a dict or
``batch[0], batch[1]`` of a tuple. ``loss_fn(model(inputs), targets)`` returns a scalar tensor.
``validate(model)`` (called under ``torch.no_grad`` with the model in eval mode) returns a dict of
numbers, e.g. ``{"val_loss": 0.3, "val_dice": 0.85}``; ``monitor`` names one of them (or
``train_loss``) and ``mode`` says whether higher (``max``) or lower (``min``) is better.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gliorad.errors import GlioradInputError
from gliorad.io import atomic_path, write_json
from gliorad.progress import ProgressBar
from gliorad.training_config import RESUMABLE_CHANGES, SCHEDULES, TrainConfig
from gliorad.training_runtime import (  # noqa: F401 (the device and torchrun helpers are re-exported)
    DistEnv,
    ItemSeeded,
    ShardedBatches,
    all_max,
    all_sum,
    barrier,
    data_device,
    distributed_env,
    from_rank0,
    item_seed,
    make_loader,
    resolve_device,
    resolved_loader,
    start_process_group,
    train_device,
)

log = logging.getLogger(__name__)

#: The epoch bar: "epoch 3/20 [bar] 0:01:02 eta 0:05:10 <loss and validation values>".
_EPOCH_COLUMNS = ("epoch", "count", "bar", "elapsed", "eta", "remaining", "{task.fields[info]}")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """Outcome of :func:`fit`; ``history`` has one dict per epoch run so far."""

    out_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    stopped_by_time: bool = False

    @property
    def best_weights(self) -> Path:
        return self.out_dir / "best.safetensors"

    @property
    def last_weights(self) -> Path:
        return self.out_dir / "last.safetensors"


# ---------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch, a function of the run's seed and the epoch number only."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(1)[0])


def default_prepare_batch(batch: Any, device: torch.device) -> tuple[Any, Any]:
    """``(batch["image"], batch["label"])`` or ``(batch[0], batch[1])``, moved to ``device``."""
    if isinstance(batch, Mapping):
        missing = [k for k in ("image", "label") if k not in batch]
        if missing:
            raise GlioradInputError(
                f"batch has keys {sorted(batch)}; the default prepare_batch needs 'image' and "
                "'label' (pass prepare_batch= for other layouts)"
            )
        x, y = batch["image"], batch["label"]
    elif isinstance(batch, list | tuple) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    else:
        raise GlioradInputError(
            f"batch of type {type(batch).__name__} is not a dict or (inputs, targets) pair; "
            "pass prepare_batch= for other layouts"
        )
    return to_device(x, device), to_device(y, device)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a tensor (or the tensors in a dict / list / tuple) to ``device`` as plain tensors."""
    if isinstance(obj, torch.Tensor):
        t = obj.as_tensor() if hasattr(obj, "as_tensor") else obj  # MONAI MetaTensor -> Tensor
        return t.to(device, non_blocking=device.type == "cuda")
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def adam(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The default optimizer: Adam with the config's learning rate and weight decay."""
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Model weights (parameters and buffers) to safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {})
    return Path(path)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load safetensors weights into ``model`` (strict); returns the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: weights file not found")
    try:
        state = load_file(str(p))
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad files
        raise GlioradInputError(f"{p}: cannot read safetensors weights: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise GlioradInputError(
            f"{p}: weights do not fit the network (another architecture or settings?): "
            f"{' '.join(first[:3])[:400]}"
        ) from err
    return meta


# ------------------------------------------------------------------------------------- the loop
def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str]) -> list[str]:
    skip = set(ignore)
    keys = sorted((set(old) | set(new)) - skip)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _load_state(out_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The saved state of an earlier run in ``out_dir`` (None if there is none)."""
    path = out_dir / "train_state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GlioradInputError(f"{path}: not valid JSON ({err}); remove the folder to start over") from err
    diff = _config_diff(state.get("config", {}), config.model_dump(mode="json"), RESUMABLE_CHANGES)
    if diff:
        raise GlioradInputError(
            f"{out_dir}: holds a run with other settings ({'; '.join(diff)}); resume with the same "
            "settings or start over in an empty folder"
        )
    return state


def fit(
    model: nn.Module,
    train_data: torch.utils.data.Dataset,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    prepare_batch: Callable[[Any, torch.device], tuple[Any, Any]] = default_prepare_batch,
    optimizer_factory: Callable[[Iterable[nn.Parameter], TrainConfig], torch.optim.Optimizer] = adam,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (in place) and checkpoint into ``out_dir``; see the module docstring.

    With ``resume=True`` an earlier run in ``out_dir`` with the same settings (``epochs``,
    ``early_stopping``, ``num_workers`` and ``device`` may differ) is continued; a finished run is
    returned as it is. With ``resume=False`` an earlier run is replaced.

    Under ``torchrun`` (:func:`distributed_env`) the process group is started (gloo on the CPU,
    NCCL on CUDA) unless the caller did, and the model is trained with DistributedDataParallel
    (the module docstring); every rank returns the same result.

    Raises :class:`GlioradInputError` for bad settings or an incompatible earlier run, and
    :class:`TrainingDivergedError` when the loss becomes non-finite.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = distributed_env()
    device = train_device(cfg, env)
    if env.active:
        start_process_group(device)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: autotuned convolutions
    if validate is None and cfg.monitor != "train_loss":
        raise GlioradInputError(
            f"monitor {cfg.monitor!r} needs a validate callable; without validation data use "
            "monitor='train_loss' (mode 'min')"
        )
    if len(train_data) == 0:  # type: ignore[arg-type]
        raise GlioradInputError("train_data is empty; expected at least one training item")
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    model.to(device)
    # bfloat16 autocast on CPU with channels-last 3D convolutions gives intermittent NaN after an
    # optimizer step (torch 2.13 CPU, seen in tests/test_training.py): keep contiguous memory there.
    cpu_bf16 = amp and device.type == "cpu"
    memory_format = _memory_format(model) if cfg.channels_last and not cpu_bf16 else None
    if memory_format is not None:
        model.to(memory_format=memory_format)
    optimizer = optimizer_factory(model.parameters(), cfg)
    progress = progress and env.main
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=cfg.mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience,
        min_lr=cfg.min_lr,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    state: dict[str, Any] = {"epoch": 0, "best_value": None, "best_epoch": None,
                             "since_best": 0, "stopped_early": False}
    history: list[dict[str, Any]] = []
    resumed_from = None
    old = _load_state(out, cfg) if resume else None
    net = model  # what is trained: the model, or its DistributedDataParallel wrapper
    blob = None
    if old is not None:
        initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        meta = load_weights(model, out / "last.safetensors")
        blob = torch.load(out / "train_state.pt", map_location=device, weights_only=True)
        epochs_found = {int(old["epoch"]), int(meta.get("epoch", -1)), int(blob["epoch"])}
        if len(epochs_found) != 1:
            # killed while saving a checkpoint: the earlier epoch's weights are overwritten, so
            # the only consistent state is the start; training is deterministic per (seed, epoch),
            # so starting over gives the same weights as an uninterrupted run
            log.warning("%s: checkpoint files disagree on the epoch (%s): the run was killed while "
                        "saving; training starts over", out, sorted(epochs_found))
            old = None
            model.load_state_dict(initial_state)
    if old is not None:
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        scaler.load_state_dict(blob["scaler"])
        state.update({k: old.get(k, state[k]) for k in state})
        hist_path = out / "history.json"
        history = json.loads(hist_path.read_text(encoding="utf-8")) if hist_path.is_file() else []
        resumed_from = state["epoch"]
    else:
        barrier(env)  # every rank has read the folder before rank 0 empties it
        if env.main:
            for name in ("last.safetensors", "best.safetensors", "train_state.pt", "train_state.json",
                         "history.json"):
                (out / name).unlink(missing_ok=True)
    if env.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # 1x1x1 convolution weights in channels-last layout have strides DDP's buckets do not
        # copy; harmless (torch warns "may impair performance" once per size-1 weight)
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    start = int(state["epoch"])
    if start >= cfg.epochs or state["stopped_early"]:
        return TrainResult(out, start, state["best_epoch"], state["best_value"],
                           bool(state["stopped_early"]), history, resumed_from)

    bar = ProgressBar(progress, cfg.epochs, "train", columns=_EPOCH_COLUMNS, completed=start, info="")
    try:
        for epoch in range(start + 1, cfg.epochs + 1):
            spent = sum(float(h.get("seconds", 0.0)) for h in history)
            if cfg.minutes is not None and spent >= 60.0 * cfg.minutes:
                state["stopped_by_time"] = True
                break
            if cfg.schedule != "plateau":
                lr = scheduled_lr(cfg, epoch, spent)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            t0 = time.perf_counter()
            es = epoch_seed(cfg.seed, epoch)
            seed_everything(es)
            loader = make_loader(train_data, cfg, device, es, env, pin=device.type == "cuda")
            net.train()
            total, count = 0.0, 0
            for step, batch in enumerate(loader, 1):
                inputs, targets = prepare_batch(batch, device)
                if memory_format is not None:
                    inputs = _as_format(inputs, memory_format)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    outputs = net(inputs)
                if amp:
                    outputs = [o.float() for o in outputs] if isinstance(outputs, list) else outputs.float()
                loss = loss_fn(outputs, targets)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"training loss is {loss.item()} at epoch {epoch}, step {step}; lower the "
                        f"learning rate (lr={cfg.lr}) or check the inputs for extreme values"
                    )
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                n = _batch_len(inputs)
                total += float(loss.detach()) * n
                count += n
                bar.update(info=f"epoch {epoch} step {step} loss {total / count:.4f}")
            total, count = all_sum(env, total, count)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1),
                                   "lr": optimizer.param_groups[0]["lr"]}
            if validate is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
                values = None
                if env.main:
                    model.eval()
                    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                        values = {k: float(v) for k, v in dict(validate(model)).items()}
                values = from_rank0(env, values)
                bad = {k: v for k, v in values.items() if not math.isfinite(float(v))}
                if bad:
                    raise TrainingDivergedError(f"validation at epoch {epoch} gave non-finite values {bad}")
                row.update({k: float(v) for k, v in values.items()})
            if cfg.monitor in row:
                value = float(row[cfg.monitor])
                if cfg.schedule == "plateau":
                    scheduler.step(value)
                if _better(value, state["best_value"], cfg.mode):
                    state.update(best_value=value, best_epoch=epoch, since_best=0)
                    if env.main:
                        save_weights(model, out / "best.safetensors", {"epoch": str(epoch)})
                else:
                    state["since_best"] += cfg.val_every if cfg.monitor != "train_loss" else 1
            elif epoch % cfg.val_every == 0 or epoch == cfg.epochs:
                raise GlioradInputError(
                    f"monitor {cfg.monitor!r} is not among the values at epoch {epoch}: "
                    f"{', '.join(sorted(k for k in row if k not in ('epoch', 'lr')))}"
                )
            row["seconds"] = all_max(env, time.perf_counter() - t0)  # the budget: the slowest rank's
            history.append(row)
            state["epoch"] = epoch
            state["stopped_early"] = bool(cfg.early_stopping and state["since_best"] >= cfg.early_stopping)
            if env.main:
                _save_checkpoint(out, model, optimizer, scheduler, scaler, state, history, cfg)
            barrier(env)  # the checkpoint is complete before any rank goes on (or resumes)
            info = " ".join(f"{k} {v:.4g}" for k, v in row.items()
                            if k not in ("epoch", "seconds") and isinstance(v, float))
            bar.advance(info=info)
            if state["stopped_early"]:
                break
    finally:
        bar.close()
    return TrainResult(out, int(state["epoch"]), state["best_epoch"], state["best_value"],
                       bool(state["stopped_early"]), history, resumed_from,
                       bool(state.get("stopped_by_time")))


def scheduled_lr(cfg: TrainConfig, epoch: int, spent_seconds: float) -> float:
    """The learning rate of ``epoch`` (1-based) under a ``poly`` or ``cosine`` schedule: progress
    is the share of the epochs run before it, or of the time budget (``minutes``) spent, whichever
    is larger; never below ``min_lr``. (With a time budget the schedule depends on the machine's
    speed, so two runs are no longer identical.)"""
    progress = (epoch - 1) / cfg.epochs
    if cfg.minutes is not None:
        progress = max(progress, spent_seconds / (60.0 * cfg.minutes))
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "poly":
        factor = (1.0 - progress) ** 0.9
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise GlioradInputError(f"schedule {cfg.schedule!r} has no per-epoch rate; expected one of "
                                f"{', '.join(k for k in SCHEDULES if k != 'plateau')}")
    return max(cfg.lr * factor, cfg.min_lr)


def _memory_format(model: nn.Module) -> torch.memory_format | None:
    """channels_last_3d for a model with 5D weights, channels_last for 4D, else None."""
    dims = {p.ndim for p in model.parameters()}
    return torch.channels_last_3d if 5 in dims else torch.channels_last if 4 in dims else None


def _as_format(inputs: Any, memory_format: torch.memory_format) -> Any:
    want = 5 if memory_format == torch.channels_last_3d else 4
    if isinstance(inputs, torch.Tensor):
        return inputs.contiguous(memory_format=memory_format) if inputs.ndim == want else inputs
    if isinstance(inputs, Mapping):
        return {k: _as_format(v, memory_format) for k, v in inputs.items()}
    if isinstance(inputs, list | tuple):
        return type(inputs)(_as_format(v, memory_format) for v in inputs)
    return inputs


def _batch_len(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, Mapping):
        return _batch_len(next(iter(inputs.values())))
    if isinstance(inputs, list | tuple):
        return _batch_len(inputs[0])
    return 1


def _save_checkpoint(out: Path, model: nn.Module, optimizer, scheduler, scaler,
                     state: dict[str, Any], history: list[dict[str, Any]], cfg: TrainConfig) -> None:
    """last weights, optimizer state, history, then the JSON state (written last)."""
    epoch = int(state["epoch"])
    save_weights(model, out / "last.safetensors", {"epoch": str(epoch)})
    with atomic_path(out / "train_state.pt") as tmp:
        torch.save({"epoch": epoch, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}, tmp)
    write_json(history, out / "history.json")
    write_json({**state, "config": cfg.model_dump(mode="json"), "torch": torch.__version__,
                "python": platform.python_version()}, out / "train_state.json")


# ----------------------------------------------------------------------------------------- losses
class DiceBCELoss(nn.Module):
    """The paper's joint loss (eq. 1-3): ``L = L_Dice + L_BCE`` on sigmoid probabilities.

    ``L_Dice = 1 - 2 sum(X*Y) / (sum(X) + sum(Y))`` (soft Dice; MONAI's ``DiceLoss`` with
    ``smooth`` added to numerator and denominator), computed per channel over the whole batch
    (``batch=True``) and averaged over channels; ``L_BCE`` is the binary cross-entropy **averaged**
    over voxels (eq. 3 writes a sum, which would make the loss scale with the patch size).
    Inputs are logits ``(B, C, *spatial)``; targets are 0/1 of the same shape.
    """

    def __init__(self, smooth: float = 1e-5, batch: bool = True):
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth, batch=batch)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise GlioradInputError(
                f"loss inputs of shape {tuple(logits.shape)} and target {tuple(target.shape)} differ; "
                "expected the same (batch, channels, *spatial) shape"
            )
        target = target.to(logits.dtype)
        return self.dice(logits, target) + self.bce(logits, target)


class DeepSupervisionLoss(nn.Module):
    """A loss over a deeply supervised network's outputs ``[full, 1/2, 1/4, ...]`` (see
    :class:`gliorad.nets.RecombinationUNet`): ``sum_i w_i loss(out_i, target_i)`` with weights
    ``1, 1/2, 1/4, ...`` normalised to sum 1 and each target resized to its output by nearest
    neighbour (nnU-Net's scheme); a single tensor output is passed to ``loss`` unchanged, so
    validation and networks without extra heads are scored as before."""

    def __init__(self, loss: nn.Module | None = None):
        super().__init__()
        self.loss = loss if loss is not None else DiceBCELoss()

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = [0.5**i for i in range(len(outputs))]
        total = sum(weights)
        value = None
        for w, out in zip(weights, outputs):
            t = target
            if out.shape[2:] != target.shape[2:]:
                t = F.interpolate(target.float(), size=out.shape[2:], mode="nearest")
            term = (w / total) * self.loss(out, t)
            value = term if value is None else value + term
        return value
