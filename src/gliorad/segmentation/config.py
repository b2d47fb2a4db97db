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
    "PlanConfig",
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
PRECISIONS: dict[str, str] = {"float32": "float32", "bfloat16": "bfloat16 autocast",
                              "float16": "float16 autocast (CUDA GPUs)"}
#: What ``gliorad run`` does with an automatic mask that fails the checks (``flagged``).
FLAGGED: dict[str, str] = {
    "manual": "replaced by the patient's manual mask where one exists (else the patient is "
              "excluded)",
    "exclude": "the patient is excluded from what reads the automatic masks",
}


class UNetConfig(Strict):
    """Network size (see :class:`gliorad.nets.RecombinationUNet`); ``strides`` (pooling factor
    per level and axis, z first; None: 2 everywhere) and ``deep_supervision`` (extra heads) are
    left out of the dump at their defaults."""

    OMITTED_AT_DEFAULT = ("strides", "deep_supervision")

    features: tuple[int, ...] = (16, 32, 64, 128)
    bottleneck: int | None = 256
    expand_channels: int = Field(64, ge=1)
    se_reduction: int = Field(4, ge=1)
    strides: tuple[tuple[int, int, int], ...] | None = Field(
        None, description="pooling factor of each level per axis (z, y, x); None: 2 on every axis")
    deep_supervision: int = Field(0, ge=0, description="extra 1x1x1 heads on the decoder levels "
                                  "below the top, trained with weights 1/2, 1/4, ... (nnU-Net)")

    @model_validator(mode="after")
    def _levels(self) -> UNetConfig:
        if self.strides is not None and len(self.strides) != len(self.features):
            raise ValueError(f"strides has {len(self.strides)} levels; features has {len(self.features)}")
        if self.strides is not None and min(min(s) for s in self.strides) < 1:
            raise ValueError(f"strides {self.strides} must be positive")
        if self.deep_supervision >= len(self.features):
            raise ValueError(f"deep_supervision {self.deep_supervision} must be below the number of "
                             f"levels ({len(self.features)})")
        return self


class AugmentConfig(Strict):
    """Training augmentations (MONAI): random flips and per-channel intensity scale / shift (the
    paper's). Beyond them, each off at probability 0 and left out of the dump at its default
    (nnU-Net's set, elastic deformation left out for its CPU cost): a random rotation and scaling
    of the patch (``affine_prob``), gamma (``gamma_prob``), Gaussian noise (``noise_prob``),
    Gaussian blur (``blur_prob``), simulated low resolution (``lowres_prob``) and, beyond nnU-Net,
    a random bias field (``bias_prob``: the smooth intensity inhomogeneity of uncorrected
    multi-centre MRI, applied to the intensities before their z-scoring, see
    :class:`gliorad.segmentation.train.BiasFieldd`)."""

    OMITTED_AT_DEFAULT = ("affine_prob", "rotate_deg", "zoom", "gamma_prob", "gamma", "noise_prob",
                          "noise_std", "blur_prob", "blur_sigma", "lowres_prob", "lowres_zoom",
                          "bias_prob", "bias_coeff")

    flip_prob: float = Field(0.5, ge=0, le=1)
    intensity_prob: float = Field(0.5, ge=0, le=1)
    scale: float = Field(0.1, ge=0, description="intensity x (1 + U(-scale, scale))")
    shift: float = Field(0.1, ge=0, description="intensity + U(-shift, shift) (z-score units)")
    affine_prob: float = Field(0.0, ge=0, le=1, description="chance of a random rotation + scaling")
    rotate_deg: float = Field(15.0, ge=0, le=180, description="rotation about each axis, U(-r, r)")
    zoom: float = Field(0.2, ge=0, lt=1, description="scaling 1 + U(-zoom, zoom)")
    gamma_prob: float = Field(0.0, ge=0, le=1)
    gamma: tuple[float, float] = Field((0.7, 1.5), description="gamma range (MONAI "
                                       "RandAdjustContrastd, mean and SD kept)")
    noise_prob: float = Field(0.0, ge=0, le=1)
    noise_std: float = Field(0.1, ge=0, description="Gaussian noise SD (z-score units)")
    blur_prob: float = Field(0.0, ge=0, le=1)
    blur_sigma: tuple[float, float] = Field((0.5, 1.0), description="blur sigma range (voxels)")
    lowres_prob: float = Field(0.0, ge=0, le=1)
    lowres_zoom: tuple[float, float] = Field((0.5, 1.0), description="down-sampling factor range")
    bias_prob: float = Field(0.0, ge=0, le=1, description="chance of a smooth multiplicative "
                             "intensity inhomogeneity (MONAI's random bias field, per sequence)")
    bias_coeff: float = Field(0.3, ge=0, description="bias field polynomial coefficients U(-c, c)")

    @property
    def affine(self) -> bool:
        return self.affine_prob > 0 and (self.rotate_deg > 0 or self.zoom > 0)


class PlanConfig(Strict):
    """Planning from the training cohort's fingerprint (:mod:`gliorad.segmentation.plan`): the
    working spacing, patch size, pooling strides and depth are chosen from the data within these
    budgets, as nnU-Net does, and written to the model folder's ``plans.json``."""

    volume_voxels: int = Field(
        800_000, ge=4096, description="the median brain box at the working spacing has at most "
        "this many voxels (the spacing is coarsened, keeping its anisotropy, until it does)")
    patch_voxels: int = Field(262_144, ge=512, description="voxels of a training patch at most")
    min_bottleneck: int = Field(4, ge=1, description="an axis is pooled while it stays >= this")
    max_levels: int = Field(5, ge=1, le=6)
    base_features: int = Field(16, ge=1, description="channels of the top level, doubled per "
                               "level up to max_features")
    max_features: int = Field(256, ge=1)
    all_sequences: bool = Field(True, description="read every standard sequence (t1, t1ce, t2, "
                                "flair) that all training patients have, not only `sequences`")
    anisotropy: float = Field(3.0, gt=1, description="a cohort whose median spacing has a ratio "
                              "above this is anisotropic: its through-plane spacing is kept and "
                              "the thick axis pooled only once in-plane spacing has caught up")


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

    OMITTED_AT_DEFAULT = ("min_fold_agreement",)

    quantile: float = Field(0.01, ge=0, lt=0.5, description="reference quantile of the training "
                            "volumes (0: their minimum and maximum)")
    small: float = Field(0.5, gt=0, le=1, description="flag below small x the low reference")
    large: float = Field(2.0, ge=1, description="flag above large x the high reference")
    min_fold_agreement: float = Field(0.5, ge=0, le=1, description="a k-fold ensemble's mask is "
                                      "flagged when its folds' mean pairwise Dice is below this")


class SegmentationConfig(Strict):
    """Everything needed to train the segmentation network and to rebuild it for prediction."""

    #: the mask checks at their defaults are left out of the dump (see the module docstring)
    OMITTED_AT_DEFAULT = ("qc", "flagged", "plan", "patches_per_epoch", "folds",
                          "choose_postprocessing")

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    spacing: float | tuple[float, float, float] | None = Field(
        1.0, description="mm: one number (isotropic) or (x, y, z) (anisotropic); None keeps the "
        "input grid")
    plan: PlanConfig | None = Field(None, description="choose spacing, patch size and network "
                                    "depth from the training cohort (preset auto); None: as set")
    patches_per_epoch: int | None = Field(None, ge=1, description="training patches per epoch "
                                          "(None: samples_per_volume per training patient)")
    folds: int = Field(1, ge=1, description="k-fold training on the training patients, the folds "
                       "averaged at inference (1: one network, val_fraction held out)")
    choose_postprocessing: bool = Field(False, description="choose keep-largest-component and "
                                        "the minimum component size on the validation patients")
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
        spacing = self.spacing if isinstance(self.spacing, tuple) else (self.spacing,)
        if any(v is not None and not v > 0 for v in spacing):
            raise ValueError(f"spacing {self.spacing} must be positive")
        return self

    @property
    def out_channels(self) -> int:
        return 1 if self.label_mode == "wt" else 3

    @property
    def roi_size(self) -> tuple[int, int, int]:
        return self.inference.roi_size or self.patch_size


#: Presets: ``paper`` (the paper's settings at 1 mm, for a GPU), ``demo`` (minutes on 2 CPU
#: cores at 3 mm with a narrow network) and ``auto`` (planned from the training cohort within a
#: time budget, :class:`PlanConfig`).
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
    # planned from the training cohort (plans.json), nnU-Net's augmentations, deep supervision,
    # poly decay over a 15-minute budget (--minutes / train.minutes), post-processing chosen on
    # the validation patients; see bench/RESULTS.md ("Segmentation: real BraTS 2018 cases,
    # leave-one-out") for what it gives on 2 CPU cores
    "auto": {
        # voxel budgets sized for 2 CPU cores (about 3 mm for a BraTS brain, 48^3 patches); on a
        # GPU raise them (e.g. plan.volume_voxels 8000000, plan.patch_voxels 2000000)
        "plan": {"volume_voxels": 130_000, "patch_voxels": 110_592, "base_features": 8},
        "samples_per_volume": 2,
        "patches_per_epoch": 32,
        "augment": {"affine_prob": 0.2, "gamma_prob": 0.3, "noise_prob": 0.15, "blur_prob": 0.2,
                    "lowres_prob": 0.25, "bias_prob": 0.3},
        "net": {"expand_channels": 16, "deep_supervision": 2},
        "train": {"epochs": 1000, "batch_size": 2, "lr": 3e-3, "schedule": "poly", "minutes": 15,
                  "val_every": 10, "monitor": "val_dice", "mode": "max"},
        "val_fraction": 0.2,
        "choose_postprocessing": True,
        "inference": {"overlap": 0.25, "min_component_ml": 0.5},
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
                   device: str | None = None, minutes: float | None = None,
                   folds: int | None = None) -> SegmentationConfig:
    """The config with the command line's overrides applied (None leaves a setting as it is)."""
    data = cfg.model_dump()
    train = {k: v for k, v in {"epochs": epochs, "seed": seed, "device": device,
                               "minutes": minutes}.items() if v is not None}
    data = merge(data, {"train": train})
    if folds is not None:
        data["folds"] = folds
    if device is not None:
        data = merge(data, {"inference": {"device": device}})
    if sequences is not None:
        data["sequences"] = list(sequences)
        if data.get("plan") is not None:  # sequences named on the command line are not replanned
            data["plan"] = {**data["plan"], "all_sequences": False}
    return validate_config(data, "command line")


def default_regions(naming: str) -> dict[str, list[int]]:
    """The BraTS region labels of a cohort naming (2023: ET = 3; else 2018: ET = 4)."""
    return {k: list(v) for k, v in (BRATS2023_REGIONS if naming == "brats2023" else BRATS2018_REGIONS).items()}


def resolve_regions(cfg: SegmentationConfig, naming: str) -> dict[str, list[int]]:
    """The region labels used with a cohort of the given naming."""
    if cfg.regions is not None:
        return {k: list(v) for k, v in cfg.regions.items()}
    return default_regions(naming)


