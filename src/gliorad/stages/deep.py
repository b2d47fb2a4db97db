"""The deep-feature stages: the 3D CNN (and its cross-fitted copies) and the 2D dual-task CNN."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gliorad.io import write_json
from gliorad.pipeline import StageContext
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import Deep2DFiles, Deep3DFiles, SegmentFiles
from gliorad.stages.base import (
    RunStage,
    clinical_path,
    copy_tree,
    executor,
    ids_of,
    load_cohort,
    progress,
    read_split,
    survival_training_name,
    tumour_masks,
)
from gliorad.stages.images import image_inputs

__all__ = ["Deep2DStage", "Deep3DOOFStage", "Deep3DStage"]


def _variants(cfg: RunConfig) -> dict[str, Any]:
    return {v: c.model_dump(mode="json") for v, c in cfg.deep3d.items()}


def _with_tumour(ctx: StageContext, cfg: RunConfig, record: Path | None = None):
    """The split's patients a CNN can use, and the automatic masks (None: manual ones): with
    segmentation, patients whose automatic mask is empty, or who have none (it failed the
    segment stage's checks and had no manual replacement: ``segment/qc.csv``), are left out
    (listed in ``record``; ``no_automatic_mask`` only when there is one)."""
    from gliorad.segmentation import mask_path

    sp = read_split(ctx)
    if cfg.segmentation is None:
        return sp, None
    masks = SegmentFiles.of(ctx).masks
    ids = sp["patient_id"].astype(str).tolist()
    absent = [p for p in ids if not mask_path(masks, p).is_file()]
    kept, empty = tumour_masks(masks, [p for p in ids if p not in set(absent)])
    if record is not None:
        write_json({"empty_automatic_mask": empty,
                    **({"no_automatic_mask": absent} if absent else {})}, record)
    return sp[sp["patient_id"].isin(kept)], masks


class Deep3DStage(RunStage):
    """3D ResNet18(+SE) per variant, trained on the grading training part only."""

    name = "deep3d"
    description = "3D ResNet18 deep features (grading training part only)"
    section = "deep3d"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return image_inputs(cfg)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return _variants(cfg)

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.features.deep3d import deep_features_3d

        cohort = load_cohort(ctx, cfg)
        out = Deep3DFiles(ctx.out_dir)
        sp, masks = _with_tumour(ctx, cfg, out.excluded)
        ids = sp["patient_id"].astype(str).tolist()
        for name, vcfg in cfg.deep3d.items():
            work = ctx.work_dir / name
            deep_features_3d(cohort, clinical_path(ctx), ids_of(sp, "grade_split", "train"), work,
                             vcfg, ids=ids, val_ids=ids_of(sp, "grade_split", "val") or None,
                             masks=masks, progress=progress(), n_jobs=cfg.run.n_jobs,
                             executor=executor(cfg))
            copy_tree(work, out.variant(name))


class Deep3DOOFStage(RunStage):
    """``deep3d.cross_fit`` folds of cross-fitted 3D CNNs: out-of-fold scores of the grading
    training part for the stacked rows (grading scheme split, checked by the config)."""

    name = "deep3d_oof"

    def enabled(self, cfg: RunConfig) -> bool:
        return bool(cfg.deep3d) and bool(cfg.deep3d_cross_fit)

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return image_inputs(cfg)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"folds": cfg.deep3d_cross_fit, "seed": cfg.run.seed, **_variants(cfg)}

    def describe(self, cfg: RunConfig) -> str:
        return (f"{cfg.deep3d_cross_fit} cross-fitted 3D CNNs: out-of-fold scores of the grading "
                "training part (stacked rows)")

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.features.deep3d import cnn3d_out_of_fold

        cohort = load_cohort(ctx, cfg)
        sp, masks = _with_tumour(ctx, cfg)
        for name, vcfg in cfg.deep3d.items():
            work = ctx.work_dir / name
            cnn3d_out_of_fold(cohort, clinical_path(ctx), ids_of(sp, "grade_split", "train"),
                              work, vcfg, folds=cfg.deep3d_cross_fit, seed=cfg.run.seed,
                              masks=masks, val_ids=ids_of(sp, "grade_split", "val") or None,
                              progress=progress(), n_jobs=cfg.run.n_jobs)
            copy_tree(work, ctx.out_dir / name)


class Deep2DStage(RunStage):
    """2D dual-task ResNet18 on LGG patients of the survival training cohort only; with
    ``deep2d.cross_fit`` also that many fold networks, whose out-of-fold head outputs of the
    training patients (:func:`gliorad.features.deep2d.cnn2d_cross_fit`) are the signature's deep
    columns instead of the 512 in-sample features."""

    name = "deep2d"
    description = "2D dual-task ResNet18 (LGG, survival training cohort)"

    def enabled(self, cfg: RunConfig) -> bool:
        return cfg.deep2d is not None and cfg.survival is not None

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return image_inputs(cfg)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        from gliorad.io import file_hash

        weights = cfg.imagenet_weights
        return {"deep2d": cfg.deep2d.model_dump(mode="json"),
                "imagenet_weights": file_hash(weights) if weights else None,
                "train_cohort": survival_training_name(cfg),  # not in split.csv's content
                # off: left out, so that workspaces made before the option keep their fingerprint
                **({"cross_fit": cfg.deep2d_cross_fit, "seed": cfg.run.seed}
                   if cfg.deep2d_cross_fit else {})}

    def describe(self, cfg: RunConfig) -> str:
        if not cfg.deep2d_cross_fit:
            return self.description
        return (f"{self.description}, and {cfg.deep2d_cross_fit} cross-fitted networks: "
                "out-of-fold head outputs for the signature")

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.features.deep2d import cnn2d_cross_fit, deep_features_2d

        cohort = load_cohort(ctx, cfg)
        sp, masks = _with_tumour(ctx, cfg, Deep2DFiles(ctx.work_dir).excluded)
        lgg = sp[sp["grade_group"] == "LGG"]
        train_ids = ids_of(lgg, "survival_cohort", survival_training_name(cfg))
        options = {"imagenet_weights": cfg.imagenet_weights,
                   "ids": lgg["patient_id"].astype(str).tolist(), "masks": masks,
                   "progress": progress(), "n_jobs": cfg.run.n_jobs}
        if cfg.deep2d_cross_fit:
            res = cnn2d_cross_fit(cohort, clinical_path(ctx), train_ids, ctx.work_dir, cfg.deep2d,
                                  folds=cfg.deep2d_cross_fit, seed=cfg.run.seed, **options)
            for note in res.summary["notes"]:
                ctx.log.warning(note)
        else:
            deep_features_2d(cohort, clinical_path(ctx), train_ids, ctx.work_dir, cfg.deep2d,
                             executor=executor(cfg), **options)
        copy_tree(ctx.work_dir, ctx.out_dir)
