"""The model stages: grading, survival, the model bundle and the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.io import write_json, write_text
from gliorad.pipeline import StageContext
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import (
    Deep2DFiles,
    Deep3DFiles,
    Deep3DOOFFiles,
    GradeFiles,
    RadiomicsFiles,
    SegmentFiles,
    SurvivalFiles,
)
from gliorad.stages.base import (
    RunStage,
    clinical_path,
    load_cohort,
    mask_source,
    read_split,
    strict,
    survival_training_name,
)
from gliorad.stages.images import image_inputs

__all__ = ["BundleStage", "GradeStage", "ReportStage", "SurvivalStage", "honest_cnn_scores",
           "training_ranges"]


def honest_cnn_scores(full: Path, oof: Path):
    """The CNN's out-of-sample HGG probability of every patient: out-of-fold (cross-fitted
    networks) for the grading training part, the full network's for the other patients."""
    import pandas as pd

    f = pd.read_csv(full, dtype={"patient_id": str})
    o = pd.read_csv(oof, dtype={"patient_id": str}).set_index("patient_id")["probability"]
    s = f.set_index("patient_id")["probability"].copy()
    train = f.loc[f["split"] == "train", "patient_id"]
    missing = sorted(set(train) - set(o.index))
    if missing:
        raise GlioradInputError(f"{oof}: no out-of-fold probability for {len(missing)} training "
                                f"patient(s): {', '.join(missing[:5])}")
    s.loc[train] = o.loc[train].to_numpy()
    return s


def deep_sets(ctx: StageContext, cfg: RunConfig) -> tuple[dict, dict, dict]:
    """The 3D CNN's feature sets, its predictions and (cross-fitted) out-of-sample scores."""
    sets, cnn, stack = {}, {}, {}
    if cfg.deep3d:
        d3 = Deep3DFiles.of(ctx)
        for v in cfg.deep3d:
            sets[f"deep_{v}"] = d3.features(v)
            cnn[f"cnn_{v}"] = d3.predictions(v)
        if "deep3d_oof" in ctx.stage.inputs:
            oof = Deep3DOOFFiles.of(ctx)
            for v in cfg.deep3d:
                stack[f"cnn_{v}"] = honest_cnn_scores(d3.predictions(v), oof.predictions(v))
    return sets, cnn, stack


def fused_features(cfg: RunConfig, rad_table: Path, best: str, sets: dict, stack: dict):
    """The final model's features: the best radiomics set with the first deep variant's
    features, or its out-of-sample probability when stacking."""
    import pandas as pd

    from gliorad.grading.paper import radiomics_by_sequence
    from gliorad.grading.stacking import STACK_COLUMN_3D
    from gliorad.tables import feature_matrix, read_table

    nonfinite = cfg.run.nonfinite
    parts = [radiomics_by_sequence(feature_matrix(read_table(rad_table), rad_table.name,
                                                  nonfinite=nonfinite),
                                   combined=cfg.grading.all_sequences)[best]]
    first = next(iter(cfg.deep3d), None)
    stacked = bool(stack)
    if stacked:  # late fusion: the radiomics model stacked with the CNN's probability
        parts.append(stack[f"cnn_{first}"].rename(STACK_COLUMN_3D).to_frame())
    elif first:
        parts.append(feature_matrix(read_table(sets[f"deep_{first}"]), f"deep_{first}",
                                    nonfinite=nonfinite))
    fused = pd.concat(parts, axis=1, join="inner")
    fused.index.name = "patient_id"
    return fused, stacked


class GradeStage(RunStage):
    """Tables S3, 1, 2 on the radiomics (per sequence) and deep sets; then the final fused model
    fitted on every graded patient for the bundle: the best radiomics sequence (validation part)
    + the first deep variant's features, or, with ``deep3d.cross_fit``, stacked with that CNN's
    out-of-sample probability (``cnn3d_probability``)."""

    name = "grade"
    description = "HGG vs LGG: Tables S3, 1, 2 and the fused model"
    section = "grading"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        deep = [n for n in ("deep3d", "deep3d_oof") if n in before]
        return tuple(dict.fromkeys((*image_inputs(cfg), "radiomics", *deep)))

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        # the final model fuses the first variant: with several, their order is a setting
        return {"grading": cfg.grading.model_dump(mode="json"), "scheme": cfg.grading_scheme,
                "masks": mask_source(cfg), **strict(cfg),
                **({"deep3d": list(cfg.deep3d)} if len(cfg.deep3d) > 1 else {})}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        import json

        from gliorad.grading.run import run_fit, run_tables

        scheme, nonfinite = cfg.grading_scheme, cfg.run.nonfinite
        rad_table = RadiomicsFiles.of(ctx).table(mask_source(cfg))
        labels = clinical_path(ctx)
        sets, cnn, stack = deep_sets(ctx, cfg)
        warnings_ = []
        if scheme == "cv" and cfg.deep3d:
            warnings_.append("grading.scheme cv with 3D CNN features is optimistic: the CNN was "
                             "trained on the split's training part, which the CV folds' test parts "
                             "include; use scheme split for leak-free fused and CNN rows")
            ctx.log.warning(warnings_[-1])
        # the split the CNNs and the U-Net were trained on, so that no test patient was seen
        sp = read_split(ctx)
        sp = sp[sp["grade_split"].isin(["train", "val", "test"])]  # not: no grade (excluded.json)
        parts = dict(zip(sp["patient_id"].astype(str), sp["grade_split"], strict=True))
        out = GradeFiles(ctx.out_dir)
        res = run_tables(sets, labels, out.tables, cnn_predictions=cnn, config=cfg.grading,
                         stack_scores=stack or None, nonfinite=nonfinite,
                         scheme=scheme, radiomics_table=rad_table, n_jobs=cfg.run.n_jobs,
                         overwrite=True, split_parts=parts if scheme == "split" else None)
        for m in res.messages:
            ctx.log.info(m)
        metrics = json.loads(out.metrics.read_text(encoding="utf-8"))
        # the radiomics set the fused rows used: best validation-part AUC under a split
        seqs = {k: v.get("validation", v)["auc"] for k, v in metrics.items()
                if k.startswith("radiomics_")}
        best = max(seqs, key=lambda k: seqs[k])
        fused, stacked = fused_features(cfg, rad_table, best, sets, stack)
        write_text(fused.to_csv(float_format="%.17g" if stacked else "%.10g"), out.fused)
        from gliorad.grading.stacking import STACK_COLUMN_3D

        run_fit(out.fused, labels, out.model, config=cfg.grading, n_jobs=cfg.run.n_jobs,
                overwrite=True, stack_columns=(STACK_COLUMN_3D,) if stacked else (),
                nonfinite=nonfinite)
        write_json({"radiomics_set": best, "deep_set": next(iter(cfg.deep3d), None),
                    "fusion": "stacked" if stacked else "features",
                    "n_features": int(fused.shape[1]), "n_patients": int(fused.shape[0]),
                    "scheme": scheme, "warnings": warnings_}, out.model_inputs)


class SurvivalStage(RunStage):
    """Deep-radiomics signature, Cox models, nomograms, C-index, calibration."""

    name = "survival"
    description = "LGG survival: signature, Cox, nomograms"
    section = "survival"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        deep = ["deep2d"] if cfg.deep2d is not None else []
        return tuple(dict.fromkeys((*image_inputs(cfg), "radiomics", *deep)))

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"survival": cfg.survival.model_dump(mode="json"), "masks": mask_source(cfg),
                **strict(cfg),
                # which deep table the signature reads (off: left out, fingerprints kept)
                **({"deep2d_cross_fit": cfg.deep2d_cross_fit} if cfg.deep2d_cross_fit else {}),
                **({} if cfg.clinical.missing == "exclude" else {"missing": cfg.clinical.missing})}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.clinical import read_clinical
        from gliorad.config import ClinicalConfig
        from gliorad.survival import run_analysis, save_bundle, write_analysis
        from gliorad.tables import read_features

        nonfinite, with_deep = cfg.run.nonfinite, cfg.deep2d is not None
        feats, cleaned = read_features(RadiomicsFiles.of(ctx).table(mask_source(cfg)),
                                       first_column_id=True, nonfinite=nonfinite)
        records = {"features": cleaned}
        if with_deep:
            deep, records["deep_features"] = read_features(
                Deep2DFiles.of(ctx).signature_features(cfg.deep2d_cross_fit),
                first_column_id=True, nonfinite=nonfinite)
            feats = feats.join(deep, how="inner")
        for rec in records.values():
            for line in rec.warnings():
                ctx.log.warning(line)
        clin = read_clinical(clinical_path(ctx), ClinicalConfig(missing=cfg.clinical.missing),
                             require=("os_time", "event"))  # listed by the split stage
        analysis = run_analysis(feats, clin, cfg.survival)
        out = SurvivalFiles(ctx.out_dir)
        write_analysis(analysis, out.analysis,
                       {"config": cfg.survival.model_dump(mode="json"), "masks": mask_source(cfg),
                        "deep_features": with_deep,
                        **({"deep_features_cross_fit": cfg.deep2d_cross_fit}
                           if cfg.deep2d_cross_fit else {})},
                       table_cleaning={k: rec.to_dict() for k, rec in records.items()})
        save_bundle(analysis.models, out.bundle)


class BundleStage(RunStage):
    """The model bundle of ``gliorad predict``, with the training ranges of its models."""

    name = "bundle"
    description = "model bundle for gliorad predict"

    def enabled(self, cfg: RunConfig) -> bool:  # else no model was fitted: nothing to bundle
        return cfg.grading is not None or cfg.survival is not None or cfg.segmentation is not None

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return tuple(before)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"config": cfg.resolved()}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        import json

        from gliorad.bundle import save_model_bundle
        from gliorad.features.radiomics import load_params
        from gliorad.stages.artifacts import BundleFiles

        done = ctx.stage.inputs

        def present(stage: str, path) -> Path | None:
            """The component folder of a stage that ran and wrote it."""
            if stage not in done:
                return None
            p = path()
            return p if p.exists() else None

        first3d = next(iter(cfg.deep3d), None)
        grade = GradeFiles.of(ctx) if "grade" in done else None
        save_model_bundle(
            BundleFiles(ctx.out_dir).bundle,
            config=cfg.resolved(),
            segmentation=present("segment", lambda: SegmentFiles.of(ctx).model),
            cnn3d=present("deep3d", lambda: Deep3DFiles.of(ctx).variant(first3d)) if first3d else None,
            cnn2d=present("deep2d", lambda: Deep2DFiles.of(ctx).folder),
            grading=present("grade", lambda: GradeFiles.of(ctx).model),
            survival=present("survival", lambda: SurvivalFiles.of(ctx).bundle),
            radiomics_params=load_params(cfg.radiomics.params),
            info={"grading_inputs": (json.loads(grade.model_inputs.read_text(encoding="utf-8"))
                                     if grade else None),
                  "radiomics_region": cfg.radiomics.region,
                  **({"radiomics_peritumoural_mm": cfg.radiomics.peritumoural_mm}
                     if cfg.radiomics.peritumoural_mm else {})},
            training_ranges=training_ranges(ctx, cfg, list(done)),
        )


def training_ranges(ctx: StageContext, cfg: RunConfig, done: list[str],
                    max_patients: int = 100) -> dict[str, Any]:
    """What ``gliorad predict`` compares a new patient with (:mod:`gliorad.ranges`): the
    grading model's selected features over its training patients, the signature's features and
    score over the survival training cohort, and per-sequence image intensity statistics over
    (a seeded draw of at most ``max_patients`` of) those patients."""
    import json

    import numpy as np

    from gliorad import ranges
    from gliorad.tables import read_table

    sp = read_split(ctx)
    features: dict[str, Any] = {}
    fitted: set[str] = set()
    sequences: set[str] = set()
    if "grade" in done:
        grade = GradeFiles.of(ctx)
        info = json.loads(grade.model_info.read_text(encoding="utf-8"))
        fused = read_table(grade.fused)
        graded = sp.loc[sp["grade_split"].isin(["train", "val", "test"]), "patient_id"]
        rows = fused.loc[fused.index.isin(set(graded))]
        features.update(ranges.column_ranges(rows, info.get("selected_features") or []))
        fitted |= set(rows.index)
        sequences |= {c.split("_", 1)[0] for c in rows.columns if not c.startswith("cnn")}
    signature = None
    if "survival" in done:
        from gliorad.survival import load_bundle

        models = load_bundle(SurvivalFiles.of(ctx).bundle)
        table = read_table(RadiomicsFiles.of(ctx).table(mask_source(cfg)))
        deep = ("deep2d" in done and Deep2DFiles.of(ctx).signature_features(cfg.deep2d_cross_fit))
        if deep and deep.is_file():
            table = table.join(read_table(deep), how="inner")
        train = set(sp.loc[sp["survival_cohort"] == survival_training_name(cfg), "patient_id"])
        cols = list(models.signature.features_)
        rows = table.loc[table.index.isin(train)].reindex(columns=cols).astype(float)
        features.update(ranges.column_ranges(rows, cols))
        complete = rows.dropna()
        if len(complete):
            signature = ranges.describe(models.score(complete)["signature_score"])
        fitted |= set(rows.index)
        sequences |= {c.split("_", 1)[0] for c in cols if not c.startswith("cnn")}
    cohort = load_cohort(ctx, cfg)
    ids = sorted(p for p in fitted if p in cohort.patients)
    if len(ids) > max_patients:
        ids = sorted(np.random.default_rng(cfg.run.seed).choice(ids, max_patients, replace=False))
    sequences = {s for s in sequences if s in cohort.sequences} or set(cohort.sequences)
    files = {p: {s: f for s, f in cohort.patients[p].files.items() if s in sequences} for p in ids}
    intensity = ranges.intensity_ranges(files, n_jobs=cfg.run.n_jobs)
    return {"features": features, "signature_score": signature, "intensity": intensity,
            "n_patients_intensity": len(ids), "margin": ranges.MARGIN}


class ReportStage(RunStage):
    """The HTML report of the workspace."""

    name = "report"
    description = "HTML report"

    def enabled(self, cfg: RunConfig) -> bool:
        return cfg.report.enabled

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return tuple(before)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return cfg.report.model_dump(mode="json")

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.report import build_report, inputs_from_workspace

        inputs = inputs_from_workspace(ctx.workspace.root)
        inputs.title = cfg.report.title
        build_report(inputs, ctx.out_dir)
