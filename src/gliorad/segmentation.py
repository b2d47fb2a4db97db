"""Tumour segmentation: the paper's 3D U-Net trained with Dice + BCE, sliding-window prediction,
Dice / HD95 evaluation against manual masks.

Data
    Each patient's chosen sequences are read as channels (all must share one grid), resampled to
    ``spacing`` mm (isotropic; linear for images, nearest for the mask) when the cohort's spacing
    differs, and z-scored per channel inside the brain (voxels where any sequence is nonzero;
    0 outside). Z-scoring is always applied; it leaves data that is already z-scored inside the
    brain unchanged. Labels: ``label_mode='wt'`` is the whole tumour (any nonzero manual label, one
    channel, as in the paper); ``'regions'`` are the BraTS regions WT / TC / ET as three
    overlapping channels (BraTS 2018 labels WT = {1, 2, 4}, TC = {1, 4}, ET = {4}; with BraTS 2023
    naming ET is label 3).

Training (:func:`train_segmentation`)
    Patches of ``patch_size`` are drawn with MONAI's ``RandCropByPosNegLabeld`` (centred on tumour
    with probability ``pos_fraction``, else on brain), flipped along each axis with probability
    ``augment.flip_prob`` and scaled / shifted in intensity. The loop is :func:`gliorad.training.fit`
    (Adam, lr halved on plateau, checkpoints, resume). Validation runs the sliding-window
    prediction on whole held-out volumes and reports ``val_loss`` and ``val_dice``.

Prediction (:func:`predict_cohort`)
    MONAI sliding-window inference with Gaussian weighting over the brain's bounding box (a box
    of at most ``max_single_window_voxels`` voxels, e.g. a whole 1 mm brain, is predicted in one
    window: 2-3x less computation than overlapping 128^3 windows, peak memory about 5 GB on CPU
    for the paper network; on the demo model a whole-volume window gave the same held-out Dice as
    training-size windows), optional flip test-time augmentation, probabilities resampled back to the input grid, threshold
    0.5, optional removal of small connected components / all but the largest. Masks are written in
    the geometry of the patient's first sequence (they overlay the input in ITK-SNAP / 3D Slicer)
    as ``<MASK_DIR>/<patient>.nii.gz``: a whole-tumour model writes {0, 1} (1 = tumour); a regions
    model writes BraTS labels (1 = necrotic/non-enhancing core, 2 = oedema, ET label 4 or 3).

Evaluation (:func:`evaluate_masks`)
    Dice and HD95 (mm, 95th percentile of the symmetric surface distances, MONAI) per patient and
    region; the whole tumour compares any nonzero predicted label with any nonzero manual label.
    Empty masks are reported, not turned into NaN: both empty -> Dice 1, HD95 0 ("both empty");
    one empty -> Dice 0 and HD95 undefined (``null`` in JSON, empty in CSV, with a note), and the
    summary counts the undefined HD95 values and lists their patients.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError, check_option
from gliorad.io import (
    Geometry,
    array_to_image,
    file_hash,
    read_image,
    write_bytes,
    write_image,
    write_json,
    write_text,
)
from gliorad.training import DEVICES, TrainConfig, TrainResult

LABEL_MODES: dict[str, str] = {
    "wt": "whole tumour (any nonzero manual label), one output channel",
    "regions": "BraTS regions WT, TC, ET, three overlapping output channels",
}
REGION_NAMES = ("WT", "TC", "ET")
BRATS2018_REGIONS: dict[str, list[int]] = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}
BRATS2023_REGIONS: dict[str, list[int]] = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UNetConfig(_Strict):
    """Network size (see :class:`gliorad.nets.RecombinationUNet`)."""

    features: tuple[int, ...] = (16, 32, 64, 128)
    bottleneck: int | None = 256
    expand_channels: int = Field(64, ge=1)
    se_reduction: int = Field(4, ge=1)


class AugmentConfig(_Strict):
    """Training augmentations (MONAI): random flips and per-channel intensity scale / shift."""

    flip_prob: float = Field(0.5, ge=0, le=1)
    intensity_prob: float = Field(0.5, ge=0, le=1)
    scale: float = Field(0.1, ge=0, description="intensity x (1 + U(-scale, scale))")
    shift: float = Field(0.1, ge=0, description="intensity + U(-shift, shift) (z-score units)")


class InferenceConfig(_Strict):
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


class SegmentationConfig(_Strict):
    """Everything needed to train the segmentation network and to rebuild it for prediction."""

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


def _paper() -> SegmentationConfig:
    return SegmentationConfig()


def _demo() -> SegmentationConfig:
    return SegmentationConfig(
        spacing=3.0,
        net=UNetConfig(features=(8, 16, 32, 64), bottleneck=64, expand_channels=16, se_reduction=4),
        patch_size=(48, 48, 48),
        samples_per_volume=2,
        # 16 epochs at lr 3e-3 (the demo's time budget): trained on 27 + 5 patients of the
        # 160-patient demo cohort, mean Dice 0.863 on the 128 others in 165 s; 41 + 7 patients,
        # 20 epochs at lr 2e-3: 0.887 on the 112 others in 376 s (bench/RESULTS.md, "Synthetic
        # cohort: full feature set")
        train=TrainConfig(epochs=16, batch_size=2, lr=3e-3, plateau_patience=5),
        val_fraction=0.15,
        inference=InferenceConfig(roi_size=(64, 64, 64), overlap=0.25, min_component_ml=0.5),
    )


#: Presets: ``paper`` (the paper's settings at 1 mm, for a GPU) and ``demo`` (minutes on 2 CPU
#: cores at 3 mm with a narrow network).
PRESETS: dict[str, Callable[[], SegmentationConfig]] = {"paper": _paper, "demo": _demo}


def get_preset(name: str) -> SegmentationConfig:
    check_option("segmentation preset", name, PRESETS)
    return PRESETS[name]()


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_segmentation_config(spec: str | Path) -> SegmentationConfig:
    """A preset name (``paper``, ``demo``) or a YAML file of :class:`SegmentationConfig` fields;
    a file may start from a preset with ``preset: demo`` and override some fields."""
    from gliorad.io import read_yaml_mapping

    if isinstance(spec, str) and spec in PRESETS:
        return get_preset(spec)
    path = Path(spec)
    if not path.is_file():
        raise GlioradInputError(
            f"segmentation config {str(spec)!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    data = read_yaml_mapping(path)
    base = get_preset(str(data.pop("preset"))).model_dump() if "preset" in data else {}
    return _validate_config(_deep_merge(base, data), str(path))


def _validate_config(data: Mapping[str, Any], where: str) -> SegmentationConfig:
    try:
        return SegmentationConfig.model_validate(data)
    except ValidationError as err:
        raise GlioradInputError(
            [f"{where}: {'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}"
             f" (got {e.get('input')!r})"[:500] for e in err.errors()]
        ) from err


def with_overrides(cfg: SegmentationConfig, *, epochs: int | None = None,
                   sequences: Sequence[str] | None = None, seed: int | None = None,
                   device: str | None = None) -> SegmentationConfig:
    """The config with the command line's overrides applied (None leaves a setting as it is)."""
    data = cfg.model_dump()
    train = {k: v for k, v in {"epochs": epochs, "seed": seed, "device": device}.items() if v is not None}
    data = _deep_merge(data, {"train": train})
    if device is not None:
        data = _deep_merge(data, {"inference": {"device": device}})
    if sequences is not None:
        data["sequences"] = list(sequences)
    return _validate_config(data, "command line")


def resolve_regions(cfg: SegmentationConfig, naming: str) -> dict[str, list[int]]:
    """The region labels used with a cohort of the given naming."""
    if cfg.regions is not None:
        return {k: list(v) for k, v in cfg.regions.items()}
    return {k: list(v) for k, v in (BRATS2023_REGIONS if naming == "brats2023" else BRATS2018_REGIONS).items()}


# ------------------------------------------------------------------------------------ data
@dataclass
class Case:
    """One patient on the working grid. Arrays are numpy (z, y, x) order."""

    pid: str
    image: np.ndarray  # (C, z, y, x) float32, z-scored inside the brain, 0 outside
    brain: np.ndarray  # (z, y, x) bool
    label: np.ndarray | None  # (K, z, y, x) uint8 or None
    grid: Geometry  # geometry of the arrays
    native: Geometry  # geometry of the input images
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def resampled(self) -> bool:
        return self.grid != self.native


def reference_image(geo: Geometry) -> sitk.Image:
    """An empty image on grid ``geo``: the reference of a resampling onto that grid."""
    img = sitk.Image([int(s) for s in geo.size], sitk.sitkUInt8)
    img.SetSpacing(geo.spacing)
    img.SetOrigin(geo.origin)
    img.SetDirection(geo.direction)
    return img


def working_grid(native: Geometry, spacing: float | None) -> Geometry:
    """The grid of the arrays: ``native`` itself, or the same box at isotropic ``spacing``."""
    if spacing is None or np.allclose(native.spacing, spacing, rtol=1e-3, atol=0):
        return native
    size = tuple(max(1, math.ceil(n * s / spacing - 1e-6)) for n, s in zip(native.size, native.spacing))
    return Geometry(size, (float(spacing),) * len(native.size), native.origin, native.direction)


def _resample(img: sitk.Image, grid: Geometry, interpolator: int) -> sitk.Image:
    return sitk.Resample(img, reference_image(grid), sitk.Transform(), interpolator, 0.0, img.GetPixelID())


def region_masks(seg: np.ndarray, label_mode: str, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Manual labels (z, y, x) -> training targets (K, z, y, x) uint8."""
    if label_mode == "wt":
        return (seg > 0)[None].astype(np.uint8)
    return np.stack([np.isin(seg, regions[r]) for r in REGION_NAMES]).astype(np.uint8)


def load_case(cohort: Cohort, pid: str, cfg: SegmentationConfig, *, with_label: bool,
              regions: Mapping[str, Sequence[int]] | None = None) -> Case:
    """Read, check, resample and normalise one patient (see the module docstring)."""
    files = {seq: cohort.image_path(pid, seq) for seq in cfg.sequences}
    images = [read_image(files[s], sitk.sitkFloat32) for s in cfg.sequences]
    native = Geometry.of(images[0])
    for seq, img in zip(cfg.sequences[1:], images[1:]):
        diff = native.differences(Geometry.of(img))
        if diff:
            raise GlioradInputError(
                f"{files[seq]}: grid differs from {files[cfg.sequences[0]].name} ({'; '.join(diff)}); "
                "expected co-registered sequences on one grid (run gliorad preprocess)"
            )
    grid = working_grid(native, cfg.spacing)
    if grid != native:
        images = [_resample(img, grid, sitk.sitkLinear) for img in images]
    arr = np.stack([sitk.GetArrayFromImage(img) for img in images]).astype(np.float32)
    brain = np.any(arr != 0, axis=0)
    if not brain.any():
        raise GlioradInputError(f"patient {pid!r}: every voxel of {', '.join(cfg.sequences)} is 0")
    for c, seq in enumerate(cfg.sequences):
        vals = arr[c][brain]
        sd = float(vals.std())
        if not sd > 0:
            raise GlioradInputError(f"{files[seq]}: constant inside the brain; expected an MRI image")
        arr[c] = np.where(brain, (arr[c] - float(vals.mean())) / sd, 0.0)
    label = None
    if with_label:
        seg_path = cohort.patients[pid].files.get(SEG)
        if seg_path is None:
            raise GlioradInputError(f"patient {pid!r}: no manual segmentation (seg) in {cohort.root}")
        seg_img = read_image(seg_path)
        diff = native.differences(Geometry.of(seg_img))
        if diff:
            raise GlioradInputError(
                f"{seg_path}: grid differs from {files[cfg.sequences[0]].name} ({'; '.join(diff)})"
            )
        if grid != native:
            seg_img = _resample(seg_img, grid, sitk.sitkNearestNeighbor)
        seg = sitk.GetArrayFromImage(seg_img)
        if cfg.label_mode == "regions":
            known = set(regions["WT"]) | {0}
            extra = sorted(set(np.unique(seg).tolist()) - known)
            if extra:
                raise GlioradInputError(
                    f"{seg_path}: labels {extra} are in no region; expected labels in {sorted(known)}"
                )
        label = region_masks(seg, cfg.label_mode, regions or BRATS2018_REGIONS)
        if seg_path is not None:
            files[SEG] = seg_path
    return Case(pid, arr, brain, label, grid, native, files)


def _pad_to(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    pad = [(0, 0)] * (arr.ndim - len(size)) + [(0, max(0, s - n)) for n, s in zip(arr.shape[-len(size):], size)]
    return np.pad(arr, pad) if any(p[1] for p in pad) else arr


class CaseCache:
    """Training / validation volumes, kept in memory up to ``cache_gb`` (then read each time).

    Volumes smaller than ``min_size`` are zero-padded at the far end; the tumour and brain voxel
    indices that the tumour-biased crop needs are computed once per volume.
    """

    def __init__(self, cohort: Cohort, cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]],
                 min_size: Sequence[int]):
        self.cohort, self.cfg, self.regions, self.min_size = cohort, cfg, regions, tuple(min_size)
        self.items: dict[str, dict[str, Any]] = {}
        self.budget = int(cfg.cache_gb * 2**30)
        self.used = 0
        self.meta: dict[str, dict[str, Any]] = {}

    def get(self, pid: str) -> dict[str, Any]:
        if pid in self.items:
            return self.items[pid]
        case = load_case(self.cohort, pid, self.cfg, with_label=True, regions=self.regions)
        image, label = _pad_to(case.image, self.min_size), _pad_to(case.label, self.min_size)
        brain = _pad_to(case.brain, self.min_size)
        fg = np.flatnonzero(label.any(axis=0))
        bg = np.flatnonzero(brain & ~label.any(axis=0))
        if bg.size == 0:
            bg = np.flatnonzero(~label.any(axis=0))
        item = {"pid": pid, "image": image, "label": label,
                "label_fg_indices": fg, "label_bg_indices": bg}
        self.meta[pid] = {"native_spacing": list(case.native.spacing), "resampled": case.resampled,
                          "shape": list(case.image.shape[1:])}
        size = image.nbytes + label.nbytes + fg.nbytes + bg.nbytes
        if self.used + size <= self.budget:
            self.items[pid] = item
            self.used += size
        return item


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


# ------------------------------------------------------------------------------------ network
def build_network(cfg: SegmentationConfig) -> torch.nn.Module:
    from gliorad.nets import RecombinationUNet

    n = cfg.net
    return RecombinationUNet(3, len(cfg.sequences), cfg.out_channels, features=n.features,
                             bottleneck=n.bottleneck, expand_channels=n.expand_channels,
                             se_reduction=n.se_reduction)


# ------------------------------------------------------------------------------ sliding window
def sliding_window_predict(
    image: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    tta: bool = False,
) -> torch.Tensor:
    """``predictor`` over ``image`` ``(B, C, *spatial)`` in windows of ``roi_size`` (MONAI, Gaussian
    weighting; windows larger than the image are padded), optionally averaged over every
    combination of flips of the spatial axes. Returns ``(B, K, *spatial)``, any spatial size."""
    from monai.inferers import sliding_window_inference

    if image.ndim < 3:
        raise GlioradInputError(f"image of shape {tuple(image.shape)}; expected (batch, channels, *spatial)")
    nd = image.ndim - 2
    if len(roi_size) != nd:
        raise GlioradInputError(f"roi_size {tuple(roi_size)} has {len(roi_size)} axes; the image has {nd}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(x, roi_size, sw_batch_size, predictor, overlap=overlap,
                                        mode="gaussian")

    if not tta:
        return run(image)
    total = None
    flips = [[a + 2 for a in range(nd) if mask >> a & 1] for mask in range(2**nd)]
    for axes in flips:
        out = run(torch.flip(image, axes) if axes else image)
        out = torch.flip(out, axes) if axes else out
        total = out if total is None else total + out
    return total / len(flips)


def _predictor(model: torch.nn.Module, device: torch.device, precision: str,
               activation: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    dtype = PRECISIONS[precision]
    cl = device.type == "cpu"

    def predict(x: torch.Tensor) -> torch.Tensor:
        if cl:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = model(x)
        y = y.float()
        return torch.sigmoid(y) if activation else y

    return predict


def foreground_box(mask: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    """Bounding box of ``mask`` widened by ``margin`` voxels (clipped to the array)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def inference_window(shape: Sequence[int], cfg: SegmentationConfig) -> tuple[int, ...]:
    """The window used on a (cropped) volume of ``shape``: the volume itself when it has at most
    ``inference.max_single_window_voxels`` voxels, else ``roi_size``."""
    if 0 < int(np.prod(shape)) <= cfg.inference.max_single_window_voxels:
        return tuple(int(n) for n in shape)
    return tuple(cfg.roi_size)


def predict_volume(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray,
                   cfg: SegmentationConfig, device: torch.device, *, activation: bool = True) -> np.ndarray:
    """Per-channel probabilities (``activation=False``: logits) of ``image`` (C, z, y, x), predicted
    inside the bounding box of ``brain`` when ``inference.crop_foreground`` (0 / -20 outside)."""
    inf = cfg.inference
    box = foreground_box(brain) if inf.crop_foreground else tuple(slice(None) for _ in range(3))
    x = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)]))[None].to(device)
    roi = inference_window(x.shape[2:], cfg)
    model.eval()
    with torch.inference_mode():
        y = sliding_window_predict(x, _predictor(model, device, inf.precision, activation),
                                   roi, inf.overlap, inf.sw_batch_size, inf.tta)
    out = np.zeros((y.shape[1], *image.shape[1:]), np.float32)
    if not activation:
        out[:] = -20.0  # logit of "surely background" outside the box
    out[(slice(None), *box)] = y[0].cpu().numpy()
    return out


def remove_small_components(mask: np.ndarray, min_voxels: int = 0, keep_largest: bool = False) -> np.ndarray:
    """Drop connected components (26-connectivity) below ``min_voxels``, or all but the largest."""
    from scipy import ndimage

    if not mask.any() or (min_voxels <= 1 and not keep_largest):
        return mask.astype(bool)
    lab, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    sizes = np.bincount(lab.ravel())[1:]
    keep = sizes >= max(min_voxels, 1)
    if keep_largest:
        keep = np.zeros(n, bool)
        keep[int(np.argmax(sizes))] = True
    return np.concatenate([[False], keep])[lab]


def probabilities_to_labels(prob: np.ndarray, cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]],
                            voxel_ml: float) -> np.ndarray:
    """Threshold, post-process and encode: {0,1} (whole tumour) or BraTS labels (regions)."""
    inf = cfg.inference
    masks = prob >= inf.threshold
    min_vox = math.ceil(inf.min_component_ml / voxel_ml) if inf.min_component_ml > 0 else 0
    wt = remove_small_components(masks[0], min_vox, inf.keep_largest)
    if cfg.label_mode == "wt":
        return wt.astype(np.uint8)
    tc = masks[1] & wt
    et = masks[2] & tc
    out = np.zeros(wt.shape, np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = regions["ET"][0]
    return out


def predict_case(model: torch.nn.Module, case: Case, cfg: SegmentationConfig,
                 regions: Mapping[str, Sequence[int]], device: torch.device) -> np.ndarray:
    """Label array (z, y, x) in the patient's input geometry."""
    prob = predict_volume(model, case.image, case.brain, cfg, device)
    geo = case.grid
    if case.resampled:
        chans = []
        for p in prob:
            img = sitk.GetImageFromArray(p)
            img.SetSpacing(geo.spacing)
            img.SetOrigin(geo.origin)
            img.SetDirection(geo.direction)
            chans.append(sitk.GetArrayFromImage(_resample(img, case.native, sitk.sitkLinear)))
        prob = np.stack(chans)
        geo = case.native
    voxel_ml = float(np.prod(geo.spacing)) / 1000.0
    return probabilities_to_labels(prob, cfg, regions, voxel_ml)


# ------------------------------------------------------------------------------------ metrics
def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (see the module docstring)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(p, t).sum()) / denom


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float | None:
    """95th-percentile symmetric Hausdorff distance in mm (MONAI); ``spacing`` in array axis order.

    0.0 when both masks are empty; None (undefined) when exactly one is empty.
    """
    from monai.metrics import compute_hausdorff_distance

    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return None
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal call
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        value = compute_hausdorff_distance(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None],
                                           include_background=True, percentile=95,
                                           spacing=[float(s) for s in spacing])
    return float(value.item())


def _soft_dice_loss_value(logits: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(Dice + BCE loss, hard Dice averaged over channels) of one whole volume."""
    from gliorad.training import DiceBCELoss

    x = torch.from_numpy(logits)[None]
    y = torch.from_numpy(target.astype(np.float32))[None]
    loss = float(DiceBCELoss()(x, y))
    dices = [dice_score(logits[k] > 0, target[k] > 0) for k in range(target.shape[0])]
    return loss, float(np.mean(dices))


# ------------------------------------------------------------------------------------ training
MODEL_FILES = ("model.safetensors", "config.json", "history.json", "provenance.json")


@dataclass
class SegmentationTrainResult:
    model_dir: Path
    train_ids: list[str]
    val_ids: list[str]
    fit: TrainResult | None
    skipped: bool = False


def _versions() -> dict[str, str]:
    import monai

    import gliorad

    return {"gliorad": gliorad.__version__, "torch": torch.__version__, "monai": monai.__version__,
            "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__,
            "python": platform.python_version()}


def _usable_ids(cohort: Cohort, cfg: SegmentationConfig, ids: Sequence[str] | None, need_seg: bool) -> list[str]:
    chosen = list(ids) if ids is not None else cohort.ids
    unknown = [p for p in chosen if p not in cohort.patients]
    if unknown:
        raise GlioradInputError(f"patients {unknown} are not in the cohort {cohort.root}")
    keys = list(cfg.sequences) + ([SEG] if need_seg else [])
    problems = []
    usable = []
    for pid in chosen:
        missing = cohort.patients[pid].missing(keys)
        if missing and (ids is not None or set(missing) != {SEG}):
            problems.append(f"patient {pid!r}: missing {', '.join(missing)} in {cohort.root}")
        elif not missing:
            usable.append(pid)
    if problems:
        raise GlioradInputError(problems)
    return usable


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


def _model_config_json(cfg: SegmentationConfig, regions: dict[str, list[int]], naming: str) -> dict[str, Any]:
    return {"segmentation": cfg.model_dump(mode="json"), "regions": regions, "naming": naming,
            "in_channels": len(cfg.sequences), "out_channels": cfg.out_channels,
            "format": "gliorad-segmentation-model-1"}


def _comparable(cfg_json: Mapping[str, Any]) -> dict[str, Any]:
    """The model config without the settings that may change when a run is resumed."""
    seg = json.loads(json.dumps(cfg_json["segmentation"]))
    for k in ("epochs", "early_stopping", "num_workers", "device"):
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
    from gliorad.training import DiceBCELoss, fit, seed_everything

    cfg = config
    out = Path(model_dir)
    regions = resolve_regions(cfg, cohort.naming)
    cfg_json = _model_config_json(cfg, regions, cohort.naming)
    if overwrite:
        for name in MODEL_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    old_cfg = out / "config.json"
    if old_cfg.is_file():
        old = json.loads(old_cfg.read_text(encoding="utf-8"))
        if _comparable(old) != _comparable(cfg_json):
            raise GlioradInputError(
                f"{out}: holds a model trained with other settings; pass overwrite (--overwrite) to "
                "replace it or choose another folder"
            )
    usable = _usable_ids(cohort, cfg, ids, need_seg=True)
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
        st = json.loads(state.read_text(encoding="utf-8"))
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
        from gliorad.training import resolve_device

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
        "versions": _versions(), "seed": cfg.train.seed, "cohort": str(cohort.root),
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


# ----------------------------------------------------------------------------------- prediction
@dataclass
class SegmentationModel:
    """A trained model folder loaded for prediction."""

    network: torch.nn.Module
    config: SegmentationConfig
    regions: dict[str, list[int]]
    path: Path
    weights_sha256: str


def load_model(model_dir: str | Path, inference: Mapping[str, Any] | None = None) -> SegmentationModel:
    """Rebuild the network of a model folder; ``inference`` overrides inference settings."""
    from gliorad.training import load_weights

    d = Path(model_dir)
    cfg_path, weights = d / "config.json", d / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise GlioradInputError(f"{p}: not found; expected a model folder made by 'gliorad segment train'")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
        seg = data["segmentation"]
        regions = data["regions"]
    except (json.JSONDecodeError, KeyError) as err:
        raise GlioradInputError(f"{cfg_path}: not a gliorad segmentation model config ({err})") from err
    if inference:
        seg = {**seg, "inference": {**seg.get("inference", {}), **dict(inference)}}
    cfg = _validate_config(seg, str(cfg_path))
    net = build_network(cfg)
    load_weights(net, weights)
    net.eval()
    return SegmentationModel(net, cfg, regions, d, file_hash(weights))


def mask_path(mask_dir: str | Path, pid: str) -> Path:
    """Where :func:`predict_cohort` writes the mask of patient ``pid``."""
    return Path(mask_dir) / f"{pid}.nii.gz"


def predict_cohort(
    cohort: Cohort,
    model: SegmentationModel,
    mask_dir: str | Path,
    *,
    ids: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict a mask for every patient that has the model's sequences; returns the provenance.

    Patients whose mask exists and was made by the same model, settings and input files are
    skipped unless ``overwrite``. ``<mask_dir>/prediction.json`` records, per patient, the input
    hashes, the grid and the seconds taken.
    """
    from gliorad.training import resolve_device

    cfg = model.config
    device = resolve_device(cfg.inference.device)
    out = Path(mask_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = _usable_ids(cohort, cfg, ids, need_seg=False)
    if not chosen:
        raise GlioradInputError(f"{cohort.root}: no patient has all of {', '.join(cfg.sequences)}")
    prov_path = out / "prediction.json"
    old = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.is_file() else {}
    settings = {"model": str(model.path), "weights_sha256": model.weights_sha256,
                "inference": cfg.inference.model_dump(mode="json")}
    same_model = old.get("settings", {}) == settings
    if old and not same_model and not overwrite and any(mask_path(out, p).exists() for p in chosen):
        raise GlioradInputError(
            f"{out}: holds masks from another model or settings; pass overwrite (--overwrite) or "
            "choose another folder"
        )
    patients = dict(old.get("patients", {})) if same_model else {}
    model.network.to(device)
    if device.type == "cpu":
        model.network.to(memory_format=torch.channels_last_3d)
    bar = _bar(progress, len(chosen), "predict")
    try:
        for pid in chosen:
            hashes = {s: file_hash(cohort.image_path(pid, s)) for s in cfg.sequences}
            target = mask_path(out, pid)
            prev = patients.get(pid)
            if not overwrite and target.is_file() and prev and prev.get("inputs") == hashes:
                bar.advance()
                continue
            t0 = time.perf_counter()
            case = load_case(cohort, pid, cfg, with_label=False)
            labels = predict_case(model.network, case, cfg, model.regions, device)
            write_image(array_to_image(labels, case.native), target)
            box = foreground_box(case.brain) if cfg.inference.crop_foreground else case.brain.shape
            box_shape = [b.stop - b.start for b in box] if cfg.inference.crop_foreground else list(box)
            patients[pid] = {"inputs": hashes, "mask": target.name, "seconds": time.perf_counter() - t0,
                             "predicted_box": box_shape,
                             "window": list(inference_window(box_shape, cfg)),
                             "native_spacing": list(case.native.spacing),
                             "working_spacing": list(case.grid.spacing),
                             "tumour_voxels": int((labels > 0).sum())}
            write_json(_prediction_json(settings, cfg, model, patients), prov_path)
            bar.advance()
    finally:
        bar.close()
    prov = _prediction_json(settings, cfg, model, patients)
    write_json(prov, prov_path)
    return prov


def _prediction_json(settings, cfg: SegmentationConfig, model: SegmentationModel, patients) -> dict:
    return {"settings": settings, "label_mode": cfg.label_mode, "regions": model.regions,
            "labels": ({"1": "whole tumour"} if cfg.label_mode == "wt" else
                       {"1": "necrotic / non-enhancing core", "2": "oedema",
                        str(model.regions["ET"][0]): "enhancing tumour"}),
            "sequences": cfg.sequences, "versions": _versions(), "patients": patients}


class _bar:
    def __init__(self, enabled: bool, total: int, what: str):
        self.p = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress

            self.p = Progress(console=Console(stderr=True))
            self.task = self.p.add_task(what, total=total)
            self.p.start()

    def advance(self) -> None:
        if self.p is not None:
            self.p.update(self.task, advance=1)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


# ----------------------------------------------------------------------------------- evaluation
@dataclass
class EvaluationResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    json_path: Path
    csv_path: Path


def _summary(values: list[float], seed: int = 0) -> dict[str, Any]:
    from gliorad.stats import bootstrap_ci

    if not values:
        return {"n": 0, "mean": None, "median": None, "sd": None, "ci95_low": None, "ci95_high": None}
    arr = np.asarray(values, float)
    ci = bootstrap_ci(np.mean, arr, n_boot=2000, seed=seed)
    return {"n": int(arr.size), "mean": float(arr.mean()), "median": float(np.median(arr)),
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "min": float(arr.min()), "max": float(arr.max()),
            "ci95_low": ci.ci_low, "ci95_high": ci.ci_high, "ci_method": "percentile bootstrap of the mean, 2000 resamples"}


def evaluate_masks(
    mask_dir: str | Path,
    cohort: Cohort,
    *,
    out_dir: str | Path | None = None,
    label_mode: str | None = None,
) -> EvaluationResult:
    """Dice and HD95 of every predicted mask in ``mask_dir`` against the cohort's manual masks.

    ``label_mode`` (``wt`` or ``regions``) defaults to the one recorded in ``prediction.json``,
    else ``wt``. Writes ``evaluation.json`` and ``evaluation.csv`` to ``out_dir`` (default
    ``mask_dir``).
    """
    import pandas as pd

    md = Path(mask_dir)
    if not md.is_dir():
        raise GlioradInputError(f"{md}: mask folder not found")
    prov_path = md / "prediction.json"
    prov = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.is_file() else {}
    mode = label_mode or prov.get("label_mode", "wt")
    check_option("label_mode", mode, LABEL_MODES)
    regions = prov.get("regions") or {k: list(v) for k, v in (
        BRATS2023_REGIONS if cohort.naming == "brats2023" else BRATS2018_REGIONS).items()}
    names = ["WT"] if mode == "wt" else list(REGION_NAMES)
    masks = {p.name[: -len(".nii.gz")]: p for p in sorted(md.glob("*.nii.gz"))}
    with_seg = [pid for pid in cohort.ids if cohort.patients[pid].seg is not None]
    pairs = [pid for pid in with_seg if pid in masks]
    if not pairs:
        raise GlioradInputError(
            f"{md}: no mask <patient>.nii.gz matches a patient with a manual segmentation in {cohort.root}"
        )
    rows: list[dict[str, Any]] = []
    for pid in pairs:
        pred_img, truth_img = read_image(masks[pid]), read_image(cohort.patients[pid].seg)
        diff = Geometry.of(truth_img).differences(Geometry.of(pred_img))
        if diff:
            raise GlioradInputError(f"{masks[pid]}: grid differs from the manual mask ({'; '.join(diff)})")
        pred, truth = sitk.GetArrayFromImage(pred_img), sitk.GetArrayFromImage(truth_img)
        spacing = tuple(reversed(truth_img.GetSpacing()))
        voxel_ml = float(np.prod(spacing)) / 1000.0
        for name in names:
            if name == "WT":
                p, t = pred > 0, truth > 0
            else:
                p, t = np.isin(pred, regions[name]), np.isin(truth, regions[name])
            note = ("both empty" if not p.any() and not t.any() else
                    "empty prediction" if not p.any() else "empty manual mask" if not t.any() else "")
            rows.append({"patient_id": pid, "region": name, "dice": dice_score(p, t),
                         "hd95_mm": hd95(p, t, spacing), "pred_ml": float(p.sum()) * voxel_ml,
                         "truth_ml": float(t.sum()) * voxel_ml, "note": note})
    summary: dict[str, Any] = {"label_mode": mode, "regions": {n: regions.get(n) for n in names if n != "WT"},
                               "n_patients": len(pairs),
                               "patients_without_mask": [p for p in with_seg if p not in masks],
                               "masks_without_manual_segmentation": sorted(set(masks) - set(with_seg))}
    for name in names:
        sub = [r for r in rows if r["region"] == name]
        undefined = [r["patient_id"] for r in sub if r["hd95_mm"] is None]
        summary[name] = {"dice": _summary([r["dice"] for r in sub]),
                         "hd95_mm": _summary([r["hd95_mm"] for r in sub if r["hd95_mm"] is not None]),
                         "hd95_undefined": {"n": len(undefined), "patients": undefined,
                                            "why": "exactly one of prediction / manual mask is empty"}}
    dest = Path(out_dir) if out_dir is not None else md
    json_path, csv_path = dest / "evaluation.json", dest / "evaluation.csv"
    write_json({"summary": summary, "patients": rows, "mask_dir": str(md), "cohort": str(cohort.root),
                "versions": _versions()}, json_path)
    write_text(pd.DataFrame(rows).to_csv(index=False), csv_path)
    return EvaluationResult(rows, summary, json_path, csv_path)
