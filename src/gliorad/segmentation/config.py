"""Settings of the segmentation stage: :class:`SegmentationConfig` and its parts, the presets,
loading a preset or YAML file and the command line's overrides.

Imports no heavy library (no torch, MONAI, SimpleITK or NumPy), so that a run config is checked
without them. Label modes: ``wt`` is the whole tumour (any nonzero manual label, one channel, as
in the paper); ``regions`` are the BraTS regions WT / TC / ET as three overlapping channels
(BraTS 2018 labels WT = {1, 2, 4}, TC = {1, 4}, ET = {4}; with BraTS 2023 naming ET is label 3).

The sanity check of each predicted mask (``qc``, :class:`MaskCheckConfig`, done by
:mod:`gliorad.segmentation.qc`) and what ``gliorad run`` does with a mask that fails it
(``flagged``, :data:`FLAGGED`) are left out of the dumped settings while at their defaults, so
the settings (stage fingerprints, model folders, bundles) of runs made before they existed stay
the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from gliorad.errors import GlioradInputError, check_option
from gliorad.settings import Presets, Strict, merge, read_yaml_mapping, validate
from gliorad.training_config import DEVICES, TrainConfig

__all__ = [
    "BRATS2018_REGIONS",
    "BRATS2023_REGIONS",
    "FLAGGED",
    "LABEL_MODES",
    "PRECISIONS",
    "PRESETS",
    "REGION_NAMES",
    "AugmentConfig",
    "InferenceConfig",
    "MaskCheckConfig",
    "SegmentationConfig",
    "UNetConfig",
    "default_regions",
    "get_preset",
    "load_segmentation_config",
    "resolve_regions",
    "validate_config",
    "with_overrides",
]

LABEL_MODES: dict[str, str] = {
    "wt": "whole tumour (any nonzero manual label), one output channel",
    "regions": "BraTS regions WT, TC, ET, three overlapping output channels",
}
REGION_NAMES = ("WT", "TC", "ET")
BRATS2018_REGIONS: dict[str, list[int]] = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}
BRATS2023_REGIONS: dict[str, list[int]] = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
#: Inference precisions (the torch dtypes are in :mod:`gliorad.segmentation.infer`).
PRECISIONS: dict[str, str] = {"float32": "float32", "bfloat16": "bfloat16 autocast"}
#: What ``gliorad run`` does with an automatic mask that fails the checks (``flagged``).
FLAGGED: dict[str, str] = {
    "manual": "replaced by the patient's manual mask where one exists (else the patient is "
              "excluded)",
    "exclude": "the patient is excluded from what reads the automatic masks",
}


class UNetConfig(Strict):
    """Network size (see :class:`gliorad.nets.RecombinationUNet`)."""

    features: tuple[int, ...] = (16, 32, 64, 128)
    bottleneck: int | None = 256
    expand_channels: int = Field(64, ge=1)
    se_reduction: int = Field(4, ge=1)


class AugmentConfig(Strict):
    """Training augmentations (MONAI): random flips and per-channel intensity scale / shift."""

    flip_prob: float = Field(0.5, ge=0, le=1)
    intensity_prob: float = Field(0.5, ge=0, le=1)
    scale: float = Field(0.1, ge=0, description="intensity x (1 + U(-scale, scale))")
    shift: float = Field(0.1, ge=0, description="intensity + U(-shift, shift) (z-score units)")


class InferenceConfig(Strict):
    """Sliding-window prediction and post-processing."""

    roi_size: tuple[int, int, int] | None = Field(None, description="window; None = patch_size")
    overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(1, ge=1)
    tta: bool = Field(False, description="average over all flips of the spatial axes (8x time)")
    threshold: float = Field(0.5, gt=0, lt=1)
    keep_largest: bool = Field(False, description="keep only the largest tumour component")
    min_component_ml: float = Field(0.0, ge=0, description="remove components smaller than this")
    crop_foreground: bool = Field(True, description="predict inside the brain's bounding box only")
    max_single_window_voxels: int = Field(
        5_500_000, ge=0,
        description="predict a (cropped) volume of up to this many voxels in one window; larger "
                    "volumes, or 0, slide windows of roi_size")
    precision: str = "float32"
    device: str = "auto"


class MaskCheckConfig(Strict):
    """The sanity check of each predicted mask against the whole-tumour volumes of the U-Net's
    training patients' manual masks (:func:`gliorad.segmentation.qc.volume_bounds`): a mask is
    ``empty`` without a tumour voxel, ``small`` below ``small`` x the ``quantile`` of the
    training volumes, ``large`` above ``large`` x their ``1 - quantile`` (numpy's linear
    quantile; with 0.01 and fewer than 100 training masks, close to the minimum / maximum).
    Fewer than :data:`gliorad.segmentation.qc.MIN_REFERENCE` training volumes: only empty masks
    are flagged."""

    quantile: float = Field(0.01, ge=0, lt=0.5, description="reference quantile of the training "
                            "volumes (0: their minimum and maximum)")
    small: float = Field(0.5, gt=0, le=1, description="flag below small x the low reference")
    large: float = Field(2.0, ge=1, description="flag above large x the high reference")


class SegmentationConfig(Strict):
    """Everything needed to train the segmentation network and to rebuild it for prediction."""

    #: the mask checks at their defaults are left out of the dump (see the module docstring)
    OMITTED_AT_DEFAULT = ("qc", "flagged")

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    spacing: float | None = Field(1.0, gt=0, description="isotropic mm; None keeps the input grid")
    label_mode: str = "wt"
    regions: dict[str, list[int]] | None = Field(
        None, description="labels of WT/TC/ET; None: BraTS 2018 labels (2023 naming: ET = 3)")
    net: UNetConfig = Field(default_factory=UNetConfig)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    samples_per_volume: int = Field(1, ge=1)
    pos_fraction: float = Field(0.5, ge=0, le=1, description="share of patches centred on tumour")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    cache_gb: float = Field(4.0, ge=0, description="memory for volumes kept between epochs")
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    qc: MaskCheckConfig = Field(default_factory=MaskCheckConfig)
    flagged: str = Field("manual", description="what gliorad run does with a mask that fails "
                         "the checks: " + "; ".join(f"{k}: {v}" for k, v in FLAGGED.items()))

    @field_validator("flagged")
    @classmethod
    def _known_handling(cls, v: str) -> str:
        return check_option("flagged", v, FLAGGED)

    @model_validator(mode="after")
    def _check(self) -> SegmentationConfig:
        check_option("label_mode", self.label_mode, LABEL_MODES)
        check_option("inference.precision", self.inference.precision, PRECISIONS)
        check_option("inference.device", self.inference.device, DEVICES)
        if not self.sequences or len(set(self.sequences)) != len(self.sequences):
            raise ValueError(f"sequences {self.sequences} must be non-empty and without duplicates")
        if self.regions is not None and sorted(self.regions) != sorted(REGION_NAMES):
            raise ValueError(f"regions has keys {sorted(self.regions)}; expected {list(REGION_NAMES)}")
        if any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must be positive")
        return self

    @property
    def out_channels(self) -> int:
        return 1 if self.label_mode == "wt" else 3

    @property
    def roi_size(self) -> tuple[int, int, int]:
        return self.inference.roi_size or self.patch_size


#: Presets: ``paper`` (the paper's settings at 1 mm, for a GPU) and ``demo`` (minutes on 2 CPU
#: cores at 3 mm with a narrow network).
PRESETS = Presets(SegmentationConfig, {
    "paper": {},
    "demo": {
        "spacing": 3.0,
        "net": {"features": (8, 16, 32, 64), "bottleneck": 64, "expand_channels": 16,
                "se_reduction": 4},
        "patch_size": (48, 48, 48),
        "samples_per_volume": 2,
        # 16 epochs at lr 3e-3 (the demo's time budget): trained on 27 + 5 patients of the
        # 160-patient demo cohort, mean Dice 0.863 on the 128 others in 165 s; 41 + 7 patients,
        # 20 epochs at lr 2e-3: 0.887 on the 112 others in 376 s (bench/RESULTS.md, "Synthetic
        # cohort: full feature set")
        "train": {"epochs": 16, "batch_size": 2, "lr": 3e-3, "plateau_patience": 5},
        "val_fraction": 0.15,
        "inference": {"roi_size": (64, 64, 64), "overlap": 0.25, "min_component_ml": 0.5},
    },
}, what="segmentation preset")


def get_preset(name: str) -> SegmentationConfig:
    return PRESETS.config(name)


def load_segmentation_config(spec: str | Path) -> SegmentationConfig:
    """A preset name (``paper``, ``demo``) or a YAML file of :class:`SegmentationConfig` fields;
    a file may start from a preset with ``preset: demo`` and override some fields."""
    if isinstance(spec, str) and spec in PRESETS:
        return get_preset(spec)
    path = Path(spec)
    if not path.is_file():
        raise GlioradInputError(
            f"segmentation config {str(spec)!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    data = read_yaml_mapping(path)
    base = get_preset(str(data.pop("preset"))).model_dump() if "preset" in data else {}
    return validate_config(merge(base, data), str(path))


def validate_config(data: Mapping[str, Any], where: str) -> SegmentationConfig:
    """``data`` as a :class:`SegmentationConfig`; each problem a line starting with ``where``
    (:func:`gliorad.settings.validate`)."""
    return validate(SegmentationConfig, data, where)


def with_overrides(cfg: SegmentationConfig, *, epochs: int | None = None,
                   sequences: Sequence[str] | None = None, seed: int | None = None,
                   device: str | None = None) -> SegmentationConfig:
    """The config with the command line's overrides applied (None leaves a setting as it is)."""
    data = cfg.model_dump()
    train = {k: v for k, v in {"epochs": epochs, "seed": seed, "device": device}.items() if v is not None}
    data = merge(data, {"train": train})
    if device is not None:
        data = merge(data, {"inference": {"device": device}})
    if sequences is not None:
        data["sequences"] = list(sequences)
    return validate_config(data, "command line")


def default_regions(naming: str) -> dict[str, list[int]]:
    """The BraTS region labels of a cohort naming (2023: ET = 3; else 2018: ET = 4)."""
    return {k: list(v) for k, v in (BRATS2023_REGIONS if naming == "brats2023" else BRATS2018_REGIONS).items()}


def resolve_regions(cfg: SegmentationConfig, naming: str) -> dict[str, list[int]]:
    """The region labels used with a cohort of the given naming."""
    if cfg.regions is not None:
        return {k: list(v) for k, v in cfg.regions.items()}
    return default_regions(naming)


