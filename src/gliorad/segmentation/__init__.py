"""Tumour segmentation: the paper's 3D U-Net trained with Dice + BCE, sliding-window prediction,
Dice / HD95 evaluation against manual masks.

Modules by role:

``config``
    :class:`SegmentationConfig` and its parts, the ``paper`` / ``demo`` presets, loading a preset
    or YAML file, the command line's overrides. Imports no heavy library.
``data``
    A patient's sequences and manual mask read, checked, resampled and z-scored
    (:func:`load_case`), the working grid, the volume cache of training.
``train``
    :func:`train_segmentation` (MONAI patches, :func:`gliorad.training.fit`, the model folder).
``infer``
    :func:`load_model`, sliding-window prediction, post-processing, :func:`predict_cohort`,
    :func:`mask_path`.
``evaluate``
    :func:`dice_score`, :func:`hd95`, :func:`evaluate_masks`.
``qc``
    The sanity check of each predicted mask (empty, implausibly small or large against the
    training volumes: :func:`check_masks`) and what a run does with one that fails
    (:func:`handle_flagged`).

Every public name is importable from ``gliorad.segmentation``. The settings (``config``) are
imported eagerly; the other names load their module (and with it torch, MONAI and SimpleITK) on
first access (module ``__getattr__``), so ``import gliorad.segmentation.config`` -- what a run
config's check needs -- stays light (see docs/architecture.md, "Package imports").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliorad.lazy import lazy_exports
from gliorad.segmentation.config import (
    BRATS2018_REGIONS,
    BRATS2023_REGIONS,
    FLAGGED,
    LABEL_MODES,
    PRECISIONS,
    PRESETS,
    REGION_NAMES,
    AugmentConfig,
    InferenceConfig,
    MaskCheckConfig,
    SegmentationConfig,
    UNetConfig,
    default_regions,
    get_preset,
    load_segmentation_config,
    resolve_regions,
    validate_config,
    with_overrides,
)

if TYPE_CHECKING:
    from gliorad.segmentation.data import (
        Case,
        CaseCache,
        load_case,
        reference_image,
        region_masks,
        resample_to,
        usable_ids,
        versions,
        working_grid,
    )
    from gliorad.segmentation.evaluate import EvaluationResult, dice_score, evaluate_masks, hd95
    from gliorad.segmentation.infer import (
        DTYPES,
        SegmentationModel,
        build_network,
        foreground_box,
        inference_window,
        label_names,
        load_model,
        mask_path,
        predict_case,
        predict_cohort,
        predict_volume,
        prepare_model,
        probabilities_to_labels,
        remove_small_components,
        segment_case,
        sliding_window_predict,
    )
    from gliorad.segmentation.qc import (
        VolumeBounds,
        check_masks,
        handle_flagged,
        mask_measures,
        qc_summary,
        reference_volumes,
        volume_bounds,
    )
    from gliorad.segmentation.train import (
        MODEL_FILES,
        PatchDataset,
        SegmentationTrainResult,
        model_config_json,
        split_ids,
        train_segmentation,
    )

#: The names of the heavy modules, each with the module that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["Case", "CaseCache", "load_case", "reference_image", "region_masks",
                     "resample_to", "usable_ids", "versions", "working_grid"], "data"),
    **dict.fromkeys(["EvaluationResult", "dice_score", "evaluate_masks", "hd95"], "evaluate"),
    **dict.fromkeys(["DTYPES", "SegmentationModel", "build_network", "foreground_box",
                     "inference_window", "label_names", "load_model", "mask_path",
                     "predict_case", "predict_cohort", "predict_volume", "prepare_model",
                     "probabilities_to_labels", "remove_small_components", "segment_case",
                     "sliding_window_predict"], "infer"),
    **dict.fromkeys(["VolumeBounds", "check_masks", "handle_flagged", "mask_measures",
                     "qc_summary", "reference_volumes", "volume_bounds"], "qc"),
    **dict.fromkeys(["MODEL_FILES", "PatchDataset", "SegmentationTrainResult",
                     "model_config_json", "split_ids", "train_segmentation"], "train"),
}

#: Config names are imported above; the others on first access (:data:`_LAZY`).
__all__ = [
    "BRATS2018_REGIONS",
    "BRATS2023_REGIONS",
    "DTYPES",
    "FLAGGED",
    "LABEL_MODES",
    "MODEL_FILES",
    "PRECISIONS",
    "PRESETS",
    "REGION_NAMES",
    "AugmentConfig",
    "Case",
    "CaseCache",
    "EvaluationResult",
    "InferenceConfig",
    "MaskCheckConfig",
    "PatchDataset",
    "SegmentationConfig",
    "SegmentationModel",
    "SegmentationTrainResult",
    "UNetConfig",
    "VolumeBounds",
    "build_network",
    "check_masks",
    "default_regions",
    "dice_score",
    "evaluate_masks",
    "foreground_box",
    "get_preset",
    "handle_flagged",
    "hd95",
    "inference_window",
    "label_names",
    "load_case",
    "load_model",
    "load_segmentation_config",
    "mask_measures",
    "mask_path",
    "model_config_json",
    "predict_case",
    "predict_cohort",
    "predict_volume",
    "prepare_model",
    "probabilities_to_labels",
    "qc_summary",
    "reference_image",
    "reference_volumes",
    "region_masks",
    "remove_small_components",
    "resample_to",
    "resolve_regions",
    "segment_case",
    "sliding_window_predict",
    "split_ids",
    "train_segmentation",
    "usable_ids",
    "validate_config",
    "versions",
    "volume_bounds",
    "with_overrides",
    "working_grid",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
