"""Settings of :func:`gliorad.training.fit` (:class:`TrainConfig`), without torch.

Kept apart from :mod:`gliorad.training` so that the settings models that embed a
:class:`TrainConfig` (segmentation, deep features) validate a config without importing torch;
:mod:`gliorad.training` re-exports every name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from gliorad.errors import check_option
from gliorad.settings import Strict

__all__ = ["DATA_DEVICES", "DEVICES", "LOADERS", "RESUMABLE_CHANGES", "SCHEDULES", "TrainConfig"]

DEVICES: dict[str, str] = {
    "auto": "CUDA when available, else CPU",
    "cpu": "CPU",
    "cuda": "the first CUDA GPU",
}

#: Learning-rate schedules of :func:`gliorad.training.fit`.
SCHEDULES: dict[str, str] = {
    "plateau": "multiplied by plateau_factor after plateau_patience epochs without improvement "
               "(the paper)",
    "poly": "lr x (1 - progress) ** 0.9 (nnU-Net), progress = share of the epochs or of the "
            "time budget spent, whichever is larger",
    "cosine": "lr x (1 + cos(pi x progress)) / 2",
}

#: How :func:`gliorad.training.fit` makes its batches (``loader``).
LOADERS: dict[str, str] = {
    "auto": "thread on CUDA, process on the CPU",
    "process": "MONAI DataLoader: batches made in num_workers worker processes (0: in the "
               "training loop itself, between steps)",
    "thread": "MONAI ThreadDataLoader: batches made in a background thread while the network "
              "trains (num_workers > 0: in that many threads, each item's augmentations seeded "
              "from the epoch and the item, as with item_seeds)",
}

#: Where a dataset that supports it (the segmentation patches) keeps its volumes and cuts and
#: augments its training patches (``data_device``).
DATA_DEVICES: dict[str, str] = {
    "auto": "the training device when it is a CUDA GPU and the loader is thread, else the CPU",
    "cpu": "the CPU (patches are moved to the training device batch by batch)",
}

#: Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("epochs", "early_stopping", "num_workers", "device", "minutes", "loader",
                     "data_device")


#: The choices of each option-valued setting of :class:`TrainConfig`.
_OPTIONS: dict[str, dict[str, str]] = {"device": DEVICES, "schedule": SCHEDULES, "loader": LOADERS,
                                       "data_device": DATA_DEVICES}


class TrainConfig(Strict):
    """Settings of :func:`gliorad.training.fit` (the paper's values are the defaults where it gives them)."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(1, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    plateau_patience: int = Field(10, ge=0, description="epochs without improvement before lr drops")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    min_lr: float = Field(0.0, ge=0)
    early_stopping: int | None = Field(None, ge=1, description="epochs without improvement to stop")
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    val_every: int = Field(1, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    seed: int = 0
    device: str = "auto"
    amp: bool | None = Field(None, description="None: float16 autocast on CUDA, off on CPU")
    num_workers: int = Field(0, ge=0)
    channels_last: bool = Field(True, description="channels-last memory format (faster CPU convolutions)")
    schedule: str = Field("plateau", description="learning-rate schedule: "
                          + "; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()))
    minutes: float | None = Field(None, gt=0, description="time budget of the training loop: no "
                                  "epoch starts after it is spent (None: epochs only)")
    loader: str = Field("auto", description="how batches are made: "
                        + "; ".join(f"{k}: {v}" for k, v in LOADERS.items()))
    data_device: str = Field("auto", description="where volumes are kept and patches cut and "
                             "augmented: " + "; ".join(f"{k}: {v}" for k, v in DATA_DEVICES.items()))
    item_seeds: bool = Field(False, description="seed each item's random augmentations from "
                             "(epoch seed, item index), so that an epoch's batches do not depend "
                             "on the number of workers or of torchrun processes (always on under "
                             "torchrun and with thread workers)")

    #: new settings at their defaults are left out of dumps (fingerprints of older runs unchanged)
    OMITTED_AT_DEFAULT = ("schedule", "minutes", "loader", "data_device", "item_seeds")

    @field_validator("device", "schedule", "loader", "data_device")
    @classmethod
    def _known_option(cls, v: str, info: ValidationInfo) -> str:
        return check_option(info.field_name, v, _OPTIONS[info.field_name])
