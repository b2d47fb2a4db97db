"""Settings of the feature stages, light: no torch, MONAI, SimpleITK or pyradiomics is imported,
so that a run config is checked (``gliorad config check``) without them.

* the deep-feature networks: :class:`Deep3DConfig` (with :class:`Net3DConfig`) and
  :class:`Deep2DConfig` (with :class:`Net2DConfig`), their shared training augmentations
  (:class:`Augmented`) and presets (:data:`DEEP3D_PRESETS`, :data:`DEEP2D_PRESETS`), loading a
  preset or a YAML file (:func:`load_config`) and changes from the command line
  (:func:`with_changes`); :mod:`gliorad.features.deep3d`, :mod:`~gliorad.features.deep2d` and
  :mod:`~gliorad.features.deep` re-export them under their old names;
* the paper's network geometry the settings default to (patch and slice sizes, ResNet18 widths,
  head names), which :mod:`gliorad.crop` and :mod:`gliorad.nets.resnet` take from here;
* the radiomics parameter presets and regions (:data:`RADIOMICS_PRESETS`, :data:`REGIONS`),
  re-exported by :mod:`gliorad.features.radiomics`, and the check of the peritumoural ring
  boundaries (:func:`ring_bounds`, :mod:`gliorad.features.peritumoural`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from gliorad.errors import GlioradInputError, check_option
from gliorad.settings import Presets, Strict, merge, read_yaml_mapping, validate
from gliorad.training_config import TrainConfig

__all__ = [
    "BORDER_MODES",
    "CROSS_FIT_COLUMNS_2D",
    "DEEP2D_PRESETS",
    "DEEP3D_PRESETS",
    "DUAL_GRADE_HEADS",
    "HEADS_3D",
    "INPUTS",
    "PAPER_PATCH_SIZE",
    "PAPER_SLICE_SEQUENCES",
    "PAPER_SLICE_SIZE",
    "PAPER_WIDTHS",
    "RADIOMICS_PRESETS",
    "REGIONS",
    "SURVIVAL_LOSSES",
    "WEIGHTS",
    "Augmented",
    "Deep2DConfig",
    "Deep3DConfig",
    "Net2DConfig",
    "Net3DConfig",
    "check_inputs",
    "load_config",
    "radiomics_preset_path",
    "ring_bounds",
    "ring_problem",
    "with_changes",
]

C = TypeVar("C", bound=BaseModel)

# ------------------------------------------------------------------------ the paper's geometry
#: The paper's 3D patch size (z, y, x) = (x, y, z) = 96 x 128 x 96 (:func:`gliorad.crop.crop_patch`).
PAPER_PATCH_SIZE: tuple[int, int, int] = (96, 128, 96)
#: The paper's 2D input: three sequences as channels, 240 x 240 (:func:`gliorad.crop.slice_stack`).
PAPER_SLICE_SEQUENCES: tuple[str, str, str] = ("t1", "t2", "t1ce")
PAPER_SLICE_SIZE: tuple[int, int] = (240, 240)
#: How :func:`gliorad.crop.crop_patch` places a patch that reaches past the image border.
BORDER_MODES = {"pad": "pad outside the image with pad_value (patch centred on the tumour)",
                "shift": "shift the patch inside the image where it fits (no padding)"}
#: Channel widths of the four residual stages of the true ResNet18 (He et al. 2016;
#: :class:`gliorad.nets.ResNet18`).
PAPER_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
#: Grade-head types of the dual head of :class:`gliorad.nets.ResNet18` (the 2D network).
DUAL_GRADE_HEADS: tuple[str, ...] = ("two_fc", "linear")

# ------------------------------------------------------------------------------ deep features
#: Which weights of a training run give the features: the best validation epoch or the last.
WEIGHTS = {"best": "weights of the best monitored epoch (the last when there is no validation)",
           "last": "weights after the last epoch"}
#: Network inputs: name -> description (``full`` is the ablation's "complete MRI").
INPUTS: dict[str, str] = {
    "patch": "tumour-centred patch (coordinate cropping from the tumour mask)",
    "full": "complete MRI: the brain's bounding box resampled to the patch size",
}
#: Classification heads of the 3D network.
HEADS_3D: dict[str, str] = {
    "two_fc": "two fully connected layers (the paper's CNN-alone classifier)",
    "linear": "one fully connected layer",
}
#: Censoring-aware survival terms of the 2D network's dual-task loss.
SURVIVAL_LOSSES: dict[str, str] = {
    "cox": "negative Cox partial log-likelihood over the batch (Breslow ties), per event",
    "censored_l1": "L1 on log survival time in years; censored patients penalised only when the "
                   "prediction is below their censoring time",
}
#: The 2D network's cross-fitted columns (``deep2d.cross_fit``; :func:`gliorad.features.deep2d.
#: cnn2d_cross_fit`), per task of the dual head: the probability of grade III and the risk score
#: (higher = worse); named here so that the bundle's checks know them without torch.
CROSS_FIT_COLUMNS_2D: dict[str, str] = {"grade": "cnn2d_oof_grade", "risk": "cnn2d_oof_risk"}


def check_inputs(sequences: Sequence[str], size: Sequence[int]) -> None:
    """A network config's input checks (in its validator: ``ValueError``)."""
    if not sequences or len(set(sequences)) != len(sequences):
        raise ValueError(f"sequences {sequences} must be non-empty and without duplicates")
    if any(s < 1 for s in size):
        raise ValueError(f"size {size} must be positive")


class Augmented(Strict):
    """Training augmentations shared by the 3D and 2D deep-feature networks (the training dataset
    :meth:`gliorad.features.deep_train.ArrayDataset.augmented`); the defaults change nothing but
    left-right flips."""

    flip_prob: float = Field(0.5, ge=0, le=1, description="random left-right flips in training")
    shift_voxels: int = Field(0, ge=0, description="random translation (voxels) in training")
    intensity_prob: float = Field(0.0, ge=0, le=1, description="probability of intensity jitter")
    intensity_scale: float = Field(0.1, ge=0, description="per channel x (1 + U(-s, s))")
    intensity_shift: float = Field(0.1, ge=0, description="per channel + U(-s, s), z-score units")


class Net3DConfig(Strict):
    """The 3D ResNet18 (see :class:`gliorad.nets.ResNet18`)."""

    widths: tuple[int, int, int, int] = PAPER_WIDTHS
    se: bool = True
    se_reduction: int = Field(16, ge=1)
    head: str = "two_fc"
    hidden: int = Field(256, ge=1, description="width of the first layer of the two_fc head")
    dropout: float = Field(0.0, ge=0, lt=1)


class Deep3DConfig(Augmented):
    """Settings of the 3D deep-feature network (paper values are the defaults)."""

    #: a zero margin is left out of the dump: runs made before the option keep their
    #: fingerprints (no retraining)
    OMITTED_AT_DEFAULT = ("margin",)

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    input: str = "patch"
    size: tuple[int, int, int] = PAPER_PATCH_SIZE
    border: str = "pad"
    margin: tuple[int, int, int] = Field(
        (0, 0, 0), description="voxels of context kept around the tumour's box (z, y, x; one "
        "number for all axes): a tumour whose box plus margins exceeds the patch is resampled "
        "down until both fit (0: the paper's cropping; gliorad.crop.crop_patch)")
    net: Net3DConfig = Field(default_factory=Net3DConfig)
    val_fraction: float = Field(0.25, ge=0, lt=1, description="of the training patients")
    weights: str = "best"
    predict_batch_size: int = Field(4, ge=1)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=200, batch_size=8))

    @field_validator("margin", mode="before")
    @classmethod
    def _one_margin_for_all_axes(cls, v: Any) -> Any:
        return (v, v, v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _check(self) -> Deep3DConfig:
        check_option("input", self.input, INPUTS)
        check_option("border", self.border, BORDER_MODES)
        check_option("weights", self.weights, WEIGHTS)
        check_option("net.head", self.net.head, HEADS_3D)
        check_inputs(self.sequences, self.size)
        if any(g < 0 for g in self.margin):
            raise ValueError(f"margin {self.margin} must be non-negative (voxels)")
        return self

    @property
    def variant(self) -> str:
        """``<patch|full>_<se|nose>``, the grading tables' naming."""
        return f"{self.input}_{'se' if self.net.se else 'nose'}"


class Net2DConfig(Strict):
    """The 2D dual-task ResNet18 (see :class:`gliorad.nets.ResNet18`, ``head="dual"``)."""

    widths: tuple[int, int, int, int] = PAPER_WIDTHS
    grade_head: str = "two_fc"
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class Deep2DConfig(Augmented):
    """Settings of the 2D dual-task network (paper values are the defaults)."""

    sequences: list[str] = Field(default_factory=lambda: list(PAPER_SLICE_SEQUENCES))
    size: tuple[int, int] = PAPER_SLICE_SIZE
    axis: int = Field(0, ge=0, le=2, description="slicing axis of the (z, y, x) arrays; 0 = axial")
    net: Net2DConfig = Field(default_factory=Net2DConfig)
    survival_loss: str = "cox"
    survival_weight: float = Field(1.0, ge=0, description="weight of the survival term (grade: 1)")
    val_fraction: float = Field(0.25, ge=0, lt=1, description="of the LGG training patients")
    weights: str = "best"
    predict_batch_size: int = Field(8, ge=1)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=200, batch_size=8))

    @model_validator(mode="after")
    def _check(self) -> Deep2DConfig:
        check_option("survival_loss", self.survival_loss, SURVIVAL_LOSSES)
        check_option("weights", self.weights, WEIGHTS)
        check_option("net.grade_head", self.net.grade_head, DUAL_GRADE_HEADS)
        check_inputs(self.sequences, self.size)
        return self


#: 3D presets: ``paper`` (for a GPU, 1 mm data) and ``demo`` (2 CPU cores, 3-4 mm data; see
#: :mod:`gliorad.features.deep3d`).
DEEP3D_PRESETS = Presets(Deep3DConfig, {
    "paper": {},
    "demo": {"size": (32, 40, 32), "val_fraction": 0.25, "weights": "best", "shift_voxels": 3,
             "intensity_prob": 0.8,
             "train": {"epochs": 12, "batch_size": 8, "lr": 3e-4, "plateau_patience": 5,
                       "monitor": "val_loss"}},
}, what="3D deep-feature preset")

#: 2D presets: ``paper`` (for a GPU, 1 mm data, ImageNet weights) and ``demo`` (2 CPU cores).
DEEP2D_PRESETS = Presets(Deep2DConfig, {
    "paper": {},
    "demo": {"size": (80, 80), "val_fraction": 0.25, "weights": "best", "shift_voxels": 4,
             "intensity_prob": 0.8,
             "train": {"epochs": 20, "batch_size": 8, "lr": 3e-4, "plateau_patience": 5,
                       "monitor": "val_loss"}},
}, what="2D deep-feature preset")


def load_config(spec: str | os.PathLike | BaseModel, presets: Presets, cls: type[C],
                what: str) -> C:
    """A config object, a preset name, or a YAML file of fields (``preset: demo`` in the file
    starts from that preset and overrides the fields it gives, by :func:`gliorad.settings.merge`)."""
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, str) and spec in presets:
        return presets.config(spec)
    path = Path(str(spec))
    if not path.is_file():
        raise GlioradInputError(
            f"{what} config {str(spec)!r} is neither a preset ({', '.join(presets)}) nor a file"
        )
    data = read_yaml_mapping(path)
    base = {}
    if "preset" in data:
        base = presets.config(str(data.pop("preset")), where=f"{path}: preset").model_dump()
    return validate(cls, merge(base, data), str(path))


def with_changes(cfg: C, changes: Mapping[str, Any], where: str = "overrides") -> C:
    """``cfg`` with nested changes (``{"train": {"epochs": 3}}``) applied and validated."""
    return validate(type(cfg), merge(cfg.model_dump(), changes), where)


# ---------------------------------------------------------------------------------- radiomics
#: Presets shipped in ``gliorad/features/params/<name>.yaml`` (name -> one-line description).
RADIOMICS_PRESETS: dict[str, str] = {
    "fast": "original image only, every feature class (107 features per sequence)",
    "paper": "original + 8 wavelet + 3 LoG images, every feature class (1130 per sequence)",
    "paper788": "original + 8 wavelet images, pyradiomics' example-MR feature list "
                "(788 per sequence, the paper's count)",
}

#: Named regions of interest: label values of a BraTS mask (``None`` = every label > 0).
REGIONS: dict[str, tuple[int, ...] | None] = {
    "whole": None,
    "core": (1, 4),
    "enhancing": (4,),
}


def radiomics_preset_path(name: str) -> Path:
    """Path of a shipped radiomics preset's pyradiomics parameter file."""
    if name not in RADIOMICS_PRESETS:
        raise GlioradInputError(
            f"radiomics preset {name!r} is not valid; expected one of: "
            f"{', '.join(RADIOMICS_PRESETS)} (or the path of a pyradiomics parameter file)"
        )
    return Path(str(resources.files("gliorad.features").joinpath("params", f"{name}.yaml")))


def ring_bounds(values: Any, where: str = "peritumoural_mm") -> tuple[float, ...]:
    """Peritumoural ring boundaries in mm (:mod:`gliorad.features.peritumoural`) as floats:
    ``()`` (off) or at least two finite values, strictly increasing, the first >= 0
    (``[0, 5, 10]``: the rings (0, 5] and (5, 10] mm outside the region). Raises
    :class:`GlioradInputError` naming ``where`` (the setting or option) and the value otherwise."""
    out, problem = ring_problem(values)
    if problem:
        shown = list(values) if isinstance(values, Sequence) and not isinstance(values, str) \
            else values
        raise GlioradInputError(f"{where} {shown!r}: {problem}")
    return out


def ring_problem(values: Any) -> tuple[tuple[float, ...], str | None]:
    """(boundaries, None), or ((), what is wrong with them) (:func:`ring_bounds`' rule)."""
    if values is None:
        return (), None
    if isinstance(values, str) or not isinstance(values, Sequence):
        return (), "expected a list of ring boundaries in mm such as [0, 5, 10]"
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return (), "expected numbers (ring boundaries in mm such as [0, 5, 10])"
    out = tuple(float(v) for v in values)
    if not out:
        problem = None
    elif len(out) < 2:
        problem = ("expected at least two boundaries (mm), e.g. [0, 5] for one ring 0-5 mm "
                   "outside the region ([] = off)")
    elif not all(math.isfinite(v) for v in out):
        problem = "boundaries must be finite numbers of mm"
    elif out[0] < 0:
        problem = "the first boundary must be >= 0 mm (the rings lie outside the region)"
    elif any(b <= a for a, b in pairwise(out)):
        problem = "boundaries must be strictly increasing, e.g. [0, 5, 10]"
    else:
        problem = None
    return ((), problem) if problem else (out, None)
