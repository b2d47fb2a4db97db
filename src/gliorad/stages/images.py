"""The image stages: segmentation, radiomics and the ICC agreement of their masks."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.pipeline import StageContext
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import AgreementFiles, RadiomicsFiles, SegmentFiles
from gliorad.stages.base import (
    RunStage,
    copy_tree,
    executor,
    ids_of,
    load_cohort,
    progress,
    read_split,
    strict,
    survival_training_name,
)
from gliorad.stages.data import base_inputs

__all__ = ["AgreementStage", "RadiomicsStage", "SegmentStage", "check_run_masks",
           "image_inputs", "segmentation_ids"]


def image_inputs(cfg: RunConfig) -> tuple[str, ...]:
    """What the feature stages read: the images, the clinical table, the split and (with
    segmentation) the automatic masks."""
    return (*base_inputs(cfg), "split", *(["segment"] if cfg.segmentation is not None else []))


def segmentation_ids(split, n: int | None, seed: int, survival_train: str | None = None
                     ) -> tuple[list[str], list[str] | None]:
    """The U-Net's training (and validation) patients: the grading split's train and val parts,
    or a seeded draw of ``n`` of them whose validation part the training takes itself
    (``val_fraction`` of the segmentation config; the demo trains on 48).

    Without grading (no ``train`` part in the split) the U-Net trains on the survival training
    cohort ``survival_train`` (so that the external cohorts stay unseen), or on every patient
    when there is no survival analysis either; the training takes its validation part itself."""
    import numpy as np

    train, val = ids_of(split, "grade_split", "train"), ids_of(split, "grade_split", "val")
    if not train:
        pool = (ids_of(split, "survival_cohort", survival_train) if survival_train
                else split["patient_id"].astype(str).tolist())
        train, val = pool, []
    if n is None or n >= len(train) + len(val):
        return train + val, val or None
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(train + val), size=n, replace=False).tolist()), None


class SegmentStage(RunStage):
    """3D U-Net (recombination + SE) trained on the grading training patients (validation part
    for monitoring); masks for every patient; Dice vs manual; each mask checked (empty,
    implausibly small or large) and a failed one replaced by the manual mask or left out
    (``segmentation.flagged``)."""

    name = "segment"
    description = "3D U-Net: train, segment every patient, Dice"
    section = "segmentation"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return (*base_inputs(cfg), "split")

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        # without grading the U-Net trains on the survival training cohort: which one it is
        # must rerun it (split.csv names every cohort, not which one trains)
        return {"segmentation": cfg.segmentation.model_dump(mode="json"),
                "train_patients": cfg.segmentation_train_patients, "seed": cfg.run.seed,
                **({} if cfg.grading else {"train_cohort": survival_training_name(cfg)})}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.segmentation import (
            evaluate_masks,
            load_model,
            predict_cohort,
            train_segmentation,
        )

        cohort = load_cohort(ctx, cfg)
        out = SegmentFiles(ctx.out_dir)
        work = SegmentFiles(ctx.work_dir)  # resumable: checkpoints survive a kill
        ids, val = segmentation_ids(read_split(ctx), cfg.segmentation_train_patients,
                                    cfg.run.seed, survival_training_name(cfg))
        train_segmentation(cohort, work.model, cfg.segmentation, ids=ids, val_ids=val,
                           progress=progress())
        predict_cohort(cohort, load_model(work.model), work.masks, progress=progress(),
                       executor=executor(cfg))
        copy_tree(work.model, out.model)
        copy_tree(work.masks, out.masks)
        if any(p.seg is not None for p in cohort.patients.values()):
            evaluate_masks(out.masks, cohort, out_dir=out.evaluation, jobs=cfg.run.n_jobs,
                           executor=executor(cfg))  # the raw predictions
        check_run_masks(ctx, cfg, cohort, out, ids)


def check_run_masks(ctx: StageContext, cfg: RunConfig, cohort, out: SegmentFiles,
                    train_ids: Sequence[str]) -> dict[str, Any]:
    """The check of every automatic mask in ``out.masks`` against the manual-mask volumes of the
    U-Net's training patients, and ``segmentation.flagged`` applied to those that fail
    (:mod:`gliorad.segmentation.qc`): ``qc.csv``, ``qc.json``, the raw failed predictions in
    ``flagged/``, their ``qc`` in ``masks/prediction.json``, a warning each and a count in the
    log (the end of ``gliorad run`` prints them: :func:`gliorad.workflow.summary_lines`)."""
    import json

    from gliorad.io import write_json, write_text
    from gliorad.segmentation.qc import (
        check_masks,
        handle_flagged,
        qc_summary,
        reference_volumes,
        volume_bounds,
    )

    seg = cfg.segmentation
    bounds = volume_bounds(reference_volumes(cohort, train_ids).values(), seg.qc)
    prov_path = out.masks / "prediction.json"
    records = (json.loads(prov_path.read_text(encoding="utf-8")).get("patients", {})
               if prov_path.is_file() else {})
    agreement = {pid: float(r["fold_agreement"]) for pid, r in records.items()
                 if r.get("fold_agreement") is not None}
    table = handle_flagged(
        check_masks(out.masks, cohort.ids, bounds, agreement, seg.qc.min_fold_agreement),
        out.masks, out.flagged, cohort, seg.flagged, seg.label_mode)
    summary = qc_summary(table, bounds, seg.flagged,
                         seg.qc.min_fold_agreement if agreement else None)
    write_text(table.to_csv(index=False), out.qc_table)
    write_json(summary, out.qc_summary)
    if summary["flagged"] and prov_path.is_file():
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
        for r in summary["flagged"]:
            rec = prov.setdefault("patients", {}).setdefault(r["patient_id"], {})
            rec["qc"] = {"flag": r["flag"], "action": r["action"],
                         "raw_mask": f"../{out.flagged.name}/{r['patient_id']}.nii.gz"}
        write_json(prov, prov_path)
    for r in summary["flagged"]:
        ctx.log.warning("segment: the automatic mask of %s is %s (%s); %s", r["patient_id"],
                        r["flag"], r["reason"], r["action"].replace("_", " "))
    if summary["flagged"]:
        ctx.log.warning("segment: %d of %d automatic mask(s) failed the checks (%s): %d "
                        "replaced by the manual mask, %d excluded; see qc.csv",
                        len(summary["flagged"]), summary["n_masks"], summary["rule"],
                        summary["actions"]["replaced_by_manual"], summary["actions"]["excluded"])
    else:
        ctx.log.info("segment: every automatic mask passed the checks (%s)", summary["rule"])
    return summary


class RadiomicsStage(RunStage):
    """pyradiomics from the manual and (with segmentation) the automatic masks."""

    name = "radiomics"
    description = "pyradiomics from manual and automatic masks"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return image_inputs(cfg)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        from gliorad.features.radiomics import load_params

        rad = cfg.radiomics
        rings = {"peritumoural_mm": rad.peritumoural_mm} if rad.peritumoural_mm else {}
        return {"params": load_params(rad.params), "sequences": rad.sequences,
                "region": rad.region, "auto": cfg.segmentation is not None, **rings}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.features.radiomics import extract_radiomics

        rad, auto = cfg.radiomics, cfg.segmentation is not None
        cohort = load_cohort(ctx, cfg)
        # a case that fails (e.g. an empty automatic mask) is recorded in failures.csv and left
        # out; the stage fails only when a mask source has no patient at all
        res = extract_radiomics(cohort, ctx.work_dir, params=rad.params, sequences=rad.sequences,
                                manual=True,
                                auto_masks=SegmentFiles.of(ctx).masks if auto else None,
                                region=rad.region, n_jobs=cfg.run.n_jobs, progress=progress(),
                                raise_on_failure=False, peritumoural_mm=rad.peritumoural_mm,
                                executor=executor(cfg))
        for path in res.files.values():
            shutil.copy2(path, ctx.out_dir / Path(path).name)
        for note in res.notes:
            ctx.log.info(note)
        if len(res.failures):
            ctx.log.warning("radiomics: %d case(s) failed, see failures.csv", len(res.failures))
        empty = [k for k in ("manual", "auto") if (k == "manual" or auto)
                 and (k not in res.tables or res.tables[k].empty)]
        if empty:
            raise GlioradInputError(
                [f"radiomics: no patient has {k}-mask features; first failures:"
                 for k in empty] + [str(r) for r in res.failures.head(5).to_dict("records")])


class AgreementStage(RunStage):
    """ICC of automatic- vs manual-mask features."""

    name = "agreement"
    description = "ICC automatic vs manual masks"

    def enabled(self, cfg: RunConfig) -> bool:
        return cfg.segmentation is not None and cfg.agreement.enabled

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return ("radiomics",)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {**cfg.agreement.model_dump(mode="json"), **strict(cfg)}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.features.agreement import run_agreement

        rad = RadiomicsFiles.of(ctx)
        run_agreement(rad.table("auto"), rad.table("manual"), AgreementFiles(ctx.out_dir).folder,
                      kind=cfg.agreement.kind, threshold=cfg.agreement.threshold,
                      nonfinite=cfg.run.nonfinite)
