"""``gliorad run``: the whole pipeline of Xu et al. 2022 as a stage graph over a workspace.

Stages (each a :class:`gliorad.pipeline.Stage`: skipped when its settings and inputs are unchanged,
written atomically, resumable after a kill; see :mod:`gliorad.pipeline`):

=============  ==========================================================================
``cohort``     (``synthetic:`` configs only) the generated two-centre cohort
``validate``   checks the cohort and the clinical table; writes the canonical clinical table
               and a listing of the input files (sizes, modification times), so that a
               changed input file reruns what depends on it
``preprocess`` (``preprocess.enabled``) N4, registration, skull strip, resampling
``split``      the grading split (stratified 6:2:2, :func:`gliorad.grading.evaluate.split_positions`,
               the same split the grading tables use) and the survival cohorts
``segment``    3D U-Net (recombination + SE) trained on the grading training patients
               (validation part for monitoring); masks for every patient; Dice vs manual
``radiomics``  pyradiomics from the manual and the automatic masks
``agreement``  ICC of automatic- vs manual-mask features
``deep3d``     3D ResNet18(+SE) per variant, trained on the grading training part only
``deep2d``     2D dual-task ResNet18 on LGG patients of the survival training cohort only
``grade``      Tables S3, 1, 2 (test part of the split) and the final fused grading model
``survival``   deep-radiomics signature, Cox models, nomograms, C-index, calibration
``bundle``     the model bundle for ``gliorad predict``
``report``     the HTML report
=============  ==========================================================================

The workspace layout is in docs/architecture.md ("Workspace").
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.io import write_json, write_text
from gliorad.pipeline import Stage, StageContext, StageResult, run_pipeline
from gliorad.run_config import RunConfig, load_run_config

CLINICAL = "clinical.csv"
SPLIT = "split.csv"


# ------------------------------------------------------------------------------ cohort access
def _source_stage(cfg: RunConfig) -> str:
    """The stage whose folder holds the images every later stage reads."""
    if cfg.preprocess is not None:
        return "preprocess"
    return "cohort" if cfg.synthetic is not None else "validate"


def cohort_root(ctx: StageContext, cfg: RunConfig) -> Path:
    src = _source_stage(cfg)
    if src == "validate":
        ctx.input_dir("validate")  # declared
        return Path(cfg.cohort.root)
    return ctx.input_dir(src) / "cohort"


def cohort_config(cfg: RunConfig, root: Path):
    """The CohortConfig of the images: the synthetic cohort's own, BraTS 2018 names after
    preprocessing, else the run config's."""
    from gliorad.config import load_config

    if cfg.preprocess is not None:
        return cfg.cohort.model_copy(update={"root": root, "naming": "brats2018", "mapping": {}})
    if cfg.synthetic is not None:
        return load_config(root / "cohort.yaml").cohort.model_copy(update={"root": root})
    return cfg.cohort


def load_cohort(ctx: StageContext, cfg: RunConfig):
    from gliorad.cohort import discover_cohort

    root = cohort_root(ctx, cfg)
    return discover_cohort(root, cohort_config(cfg, root))


def clinical_path(ctx: StageContext) -> Path:
    """The canonical clinical table written by the validate stage."""
    return ctx.input_dir("validate") / CLINICAL


def read_split(ctx: StageContext):
    import pandas as pd

    return pd.read_csv(ctx.input_dir("split") / SPLIT, dtype={"patient_id": str})


def _ids(split, column: str, *values: str) -> list[str]:
    return split.loc[split[column].isin(values), "patient_id"].astype(str).tolist()


def segmentation_ids(split, n: int | None, seed: int, survival_train: str | None = None
                     ) -> tuple[list[str], list[str] | None]:
    """The U-Net's training (and validation) patients: the grading split's train and val parts,
    or a seeded draw of ``n`` of them whose validation part the training takes itself
    (``val_fraction`` of the segmentation config; the demo trains on 48).

    Without grading (no ``train`` part in the split) the U-Net trains on the survival training
    cohort ``survival_train`` (so that the external cohorts stay unseen), or on every patient
    when there is no survival analysis either; the training takes its validation part itself."""
    import numpy as np

    train, val = _ids(split, "grade_split", "train"), _ids(split, "grade_split", "val")
    if not train:
        pool = (_ids(split, "survival_cohort", survival_train) if survival_train
                else split["patient_id"].astype(str).tolist())
        train, val = pool, []
    if n is None or n >= len(train) + len(val):
        return train + val, val or None
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(train + val), size=n, replace=False).tolist()), None


def tumour_masks(mask_dir: Path, ids: list[str]) -> tuple[list[str], list[str]]:
    """Patients whose automatic mask has a tumour, and those whose mask is empty (the network
    missed the tumour: their deep features cannot be cut and they are left out, listed)."""
    import SimpleITK as sitk

    from gliorad.segmentation import mask_path

    kept, empty = [], []
    for pid in ids:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path(mask_dir, pid))))
        (kept if (arr > 0).any() else empty).append(pid)
    return kept, empty


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def _input_listing(root: Path, extra: list[Path]) -> list[dict[str, Any]]:
    files = sorted(p for p in root.rglob("*") if p.is_file()) + [p for p in extra if p.is_file()]
    out = []
    for p in files:
        st = p.stat()
        out.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def canonical_clinical_csv(table) -> str:
    """The canonical clinical table as CSV readable with the default ClinicalConfig (days)."""
    df = table.drop(columns=["_row"], errors="ignore").copy()
    df["grade"] = df["grade"].where(df["grade"].notna(), df["grade_group"])
    df = df.drop(columns=["grade_group"]).rename(columns={"os_days": "os_time"})
    df.index.name = "patient_id"
    return df.to_csv(float_format="%.10g")


# ---------------------------------------------------------------------------------- stages
def build_stages(cfg: RunConfig) -> list[Stage]:
    """The stage graph of a run config (disabled stages are left out)."""
    n_jobs, seed = cfg.run.n_jobs, cfg.run.seed
    # stages that read feature tables: the strict setting joins their fingerprints (the default
    # is left out, so workspaces made before the option keep theirs)
    strict = {} if cfg.run.nonfinite == "missing" else {"nonfinite": cfg.run.nonfinite}
    bars = sys.stderr.isatty()  # progress bars on a terminal; plain stage lines in logs and CI
    src = _source_stage(cfg)
    stages: list[Stage] = []

    if cfg.synthetic is not None:
        synth = cfg.synthetic

        def cohort(ctx: StageContext) -> None:
            from gliorad.synthetic import generate_cohort

            generate_cohort(ctx.out_dir / "cohort", synth, n_jobs=n_jobs, overwrite=True)

        stages.append(Stage("cohort", cohort, settings={"synthetic": synth.model_dump(mode="json")},
                            description="synthetic two-centre cohort"))

    def validate(ctx: StageContext) -> None:
        from gliorad.clinical import read_clinical
        from gliorad.config import GlioradConfig, load_config
        from gliorad.validation import validate as run_validate

        if cfg.synthetic is not None:
            root = ctx.input_dir("cohort") / "cohort"
            gcfg = load_config(root / "cohort.yaml")
            clin_path, clin_cfg = gcfg.clinical.path, gcfg.clinical
        else:
            root = Path(cfg.cohort.root)
            gcfg = GlioradConfig(cohort=cfg.cohort, clinical=cfg.clinical)
            clin_path, clin_cfg = cfg.clinical.path, cfg.clinical
            write_json({"files": _input_listing(root, [Path(clin_path)])},
                       ctx.out_dir / "inputs.json")
        report = run_validate(root, clin_path, gcfg, n_jobs=n_jobs)
        if not report.ok:
            raise GlioradInputError(report.problems)
        table = read_clinical(clin_path, clin_cfg)
        write_text(canonical_clinical_csv(table), ctx.out_dir / CLINICAL)
        write_json({"ok": True, "summary": report.summary()}, ctx.out_dir / "validation.json")

    inputs_digest = None
    if cfg.synthetic is None:  # a changed, added or removed input file reruns validate and after
        import hashlib
        import json

        listing = _input_listing(Path(cfg.cohort.root), [Path(cfg.clinical.path)])
        inputs_digest = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    stages.append(Stage("validate", validate, inputs=("cohort",) if cfg.synthetic else (),
                        settings={"cohort": cfg.cohort.model_dump(mode="json"),
                                  "clinical": cfg.clinical.model_dump(mode="json"),
                                  "input_files": inputs_digest},
                        description="check the cohort and the clinical table"))

    if cfg.preprocess is not None:
        pre_cfg = cfg.preprocess

        def preprocess(ctx: StageContext) -> None:
            from gliorad.preprocess.pipeline import preprocess as run_preprocess

            # per-patient results are kept in the resumable work folder, then moved in place
            res = run_preprocess(cfg.cohort.root, ctx.work_dir / "cohort", pre_cfg, cfg.cohort)
            if res.failed:
                raise GlioradInputError([f"preprocess: {f}" for f in res.failed])
            shutil.move(str(ctx.work_dir / "cohort"), ctx.out_dir / "cohort")

        stages.append(Stage("preprocess", preprocess, inputs=("validate",),
                            settings={"preprocess": pre_cfg.model_dump(mode="json")},
                            description="N4, registration, skull strip, resampling"))

    base_inputs = tuple(dict.fromkeys((src, "validate")))

    def split(ctx: StageContext) -> None:
        split_stage(ctx, cfg)

    stages.append(Stage("split", split, inputs=base_inputs,
                        settings={"ratios": list(cfg.grading.split_ratios) if cfg.grading else None,
                                  "seed": cfg.grading.seed if cfg.grading else cfg.run.seed,
                                  "survival_split": (cfg.survival.split.model_dump(mode="json")
                                                     if cfg.survival else None),
                                  **({} if cfg.clinical.missing == "exclude" else
                                     {"missing": cfg.clinical.missing}),
                                  **({"scheme": "cv"} if cfg.grading and cfg.grading_scheme == "cv"
                                     else {}),
                                  **({"survival_seed": cfg.survival.seed} if cfg.survival
                                     and cfg.survival.split.method == "random" else {})},
                        description="grading split (6:2:2) and survival cohorts"))

    seg_inputs = (*base_inputs, "split")
    if cfg.segmentation is not None:
        seg_cfg = cfg.segmentation

        def segment(ctx: StageContext) -> None:
            from gliorad.segmentation import (
                evaluate_masks,
                load_model,
                predict_cohort,
                train_segmentation,
            )

            cohort = load_cohort(ctx, cfg)
            sp = read_split(ctx)
            model_dir = ctx.work_dir / "model"  # resumable: checkpoints survive a kill
            ids, val = segmentation_ids(sp, cfg.segmentation_train_patients, seed,
                                        survival_training_name(cfg))
            train_segmentation(cohort, model_dir, seg_cfg, ids=ids, val_ids=val, progress=bars)
            model = load_model(model_dir)
            predict_cohort(cohort, model, ctx.work_dir / "masks", progress=bars)
            _copy_tree(model_dir, ctx.out_dir / "model")
            _copy_tree(ctx.work_dir / "masks", ctx.out_dir / "masks")
            if any(p.seg is not None for p in cohort.patients.values()):
                evaluate_masks(ctx.out_dir / "masks", cohort, out_dir=ctx.out_dir / "evaluation")

        stages.append(Stage("segment", segment, inputs=seg_inputs,
                            settings={"segmentation": seg_cfg.model_dump(mode="json"),
                                  "train_patients": cfg.segmentation_train_patients, "seed": seed,
                                  **({} if cfg.grading else
                                     {"train_cohort": survival_training_name(cfg)})},
                            description="3D U-Net: train, segment every patient, Dice"))

    auto = cfg.segmentation is not None
    rad_inputs = (*seg_inputs, "segment") if auto else seg_inputs
    rad = cfg.radiomics

    def radiomics(ctx: StageContext) -> None:
        from gliorad.features.radiomics import extract_radiomics

        cohort = load_cohort(ctx, cfg)
        # a case that fails (e.g. an empty automatic mask) is recorded in failures.csv and left
        # out; the stage fails only when a mask source has no patient at all
        res = extract_radiomics(cohort, ctx.work_dir, params=rad.params, sequences=rad.sequences,
                                manual=True,
                                auto_masks=(ctx.input_dir("segment") / "masks") if auto else None,
                                region=rad.region, n_jobs=n_jobs, progress=bars,
                                raise_on_failure=False)
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

    from gliorad.features.radiomics import load_params

    stages.append(Stage("radiomics", radiomics, inputs=rad_inputs,
                        settings={"params": load_params(rad.params), "sequences": rad.sequences,
                                  "region": rad.region, "auto": auto},
                        description="pyradiomics from manual and automatic masks"))
    mask_source = "auto" if auto else "manual"

    if auto and cfg.agreement.enabled:
        agr = cfg.agreement

        def agreement(ctx: StageContext) -> None:
            from gliorad.features.agreement import run_agreement

            d = ctx.input_dir("radiomics")
            run_agreement(d / "radiomics_auto.csv", d / "radiomics_manual.csv", ctx.out_dir,
                          kind=agr.kind, threshold=agr.threshold, nonfinite=cfg.run.nonfinite)

        stages.append(Stage("agreement", agreement, inputs=("radiomics",),
                            settings={**agr.model_dump(mode="json"), **strict},
                            description="ICC automatic vs manual masks"))

    deep_inputs = rad_inputs
    if cfg.deep3d:
        variants = cfg.deep3d

        def deep3d(ctx: StageContext) -> None:
            from gliorad.features.deep3d import deep_features_3d

            cohort = load_cohort(ctx, cfg)
            sp = read_split(ctx)
            masks = ctx.input_dir("segment") / "masks" if auto else None
            ids = sp["patient_id"].astype(str).tolist()
            if masks is not None:
                ids, empty = tumour_masks(masks, ids)
                write_json({"empty_automatic_mask": empty}, ctx.out_dir / "excluded.json")
                sp = sp[sp["patient_id"].isin(ids)]
            for name, vcfg in variants.items():
                work = ctx.work_dir / name
                deep_features_3d(cohort, clinical_path(ctx), _ids(sp, "grade_split", "train"), work,
                                 vcfg, ids=ids, val_ids=_ids(sp, "grade_split", "val") or None,
                                 masks=masks, progress=bars, n_jobs=n_jobs)
                _copy_tree(work, ctx.out_dir / name)

        stages.append(Stage("deep3d", deep3d, inputs=deep_inputs,
                            settings={v: c.model_dump(mode="json") for v, c in variants.items()},
                            description="3D ResNet18 deep features (grading training part only)"))

    if cfg.deep3d and cfg.deep3d_cross_fit:  # grading scheme split (checked by the config)
        variants, folds = cfg.deep3d, cfg.deep3d_cross_fit

        def deep3d_oof(ctx: StageContext) -> None:
            from gliorad.features.deep3d import cnn3d_out_of_fold

            cohort = load_cohort(ctx, cfg)
            sp = read_split(ctx)
            masks = ctx.input_dir("segment") / "masks" if auto else None
            if masks is not None:
                kept, _ = tumour_masks(masks, sp["patient_id"].astype(str).tolist())
                sp = sp[sp["patient_id"].isin(kept)]
            for name, vcfg in variants.items():
                work = ctx.work_dir / name
                cnn3d_out_of_fold(cohort, clinical_path(ctx), _ids(sp, "grade_split", "train"),
                                  work, vcfg, folds=folds, seed=cfg.run.seed, masks=masks,
                                  val_ids=_ids(sp, "grade_split", "val") or None,
                                  progress=bars, n_jobs=n_jobs)
                _copy_tree(work, ctx.out_dir / name)

        stages.append(Stage("deep3d_oof", deep3d_oof, inputs=deep_inputs,
                            settings={"folds": folds, "seed": cfg.run.seed,
                                      **{v: c.model_dump(mode="json") for v, c in variants.items()}},
                            description=f"{folds} cross-fitted 3D CNNs: out-of-fold scores of the "
                                        "grading training part (stacked rows)"))

    if cfg.deep2d is not None and cfg.survival is not None:
        d2 = cfg.deep2d
        weights = cfg.imagenet_weights

        def deep2d(ctx: StageContext) -> None:
            from gliorad.features.deep2d import deep_features_2d

            cohort = load_cohort(ctx, cfg)
            sp = read_split(ctx)
            if auto:
                kept, empty = tumour_masks(ctx.input_dir("segment") / "masks",
                                           sp["patient_id"].astype(str).tolist())
                write_json({"empty_automatic_mask": empty}, ctx.work_dir / "excluded.json")
                sp = sp[sp["patient_id"].isin(kept)]
            lgg = sp[sp["grade_group"] == "LGG"]
            train_ids = _ids(lgg, "survival_cohort", survival_training_name(cfg))
            deep_features_2d(cohort, clinical_path(ctx), train_ids, ctx.work_dir, d2,
                             imagenet_weights=weights, ids=lgg["patient_id"].astype(str).tolist(),
                             masks=ctx.input_dir("segment") / "masks" if auto else None,
                             progress=bars, n_jobs=n_jobs)
            _copy_tree(ctx.work_dir, ctx.out_dir)

        from gliorad.io import file_hash

        stages.append(Stage("deep2d", deep2d, inputs=deep_inputs,
                            settings={"deep2d": d2.model_dump(mode="json"),
                                      "imagenet_weights": file_hash(weights) if weights else None,
                                      "train_cohort": survival_training_name(cfg)},
                            description="2D dual-task ResNet18 (LGG, survival training cohort)"))

    if cfg.grading is not None:
        oof = [s.name for s in stages if s.name == "deep3d_oof"]
        grade_inputs = tuple(dict.fromkeys((*rad_inputs, "radiomics",
                                            *(["deep3d"] if cfg.deep3d else []), *oof)))
        grading, scheme = cfg.grading, cfg.grading_scheme

        def grade(ctx: StageContext) -> None:
            grade_stage(ctx, cfg, mask_source, grading, scheme, n_jobs)

        stages.append(Stage("grade", grade, inputs=grade_inputs,
                            settings={"grading": grading.model_dump(mode="json"), "scheme": scheme,
                                      "masks": mask_source, **strict,
                                      **({"deep3d": list(cfg.deep3d)} if len(cfg.deep3d) > 1
                                         else {})},
                            description="HGG vs LGG: Tables S3, 1, 2 and the fused model"))

    if cfg.survival is not None:
        surv_inputs = tuple(dict.fromkeys((*rad_inputs, "radiomics",
                                           *(["deep2d"] if cfg.deep2d is not None else []))))
        surv_cfg = cfg.survival

        def survival(ctx: StageContext) -> None:
            survival_stage(ctx, surv_cfg, mask_source, cfg.deep2d is not None, cfg.clinical.missing,
                           cfg.run.nonfinite)

        stages.append(Stage("survival", survival, inputs=surv_inputs,
                            settings={"survival": surv_cfg.model_dump(mode="json"),
                                      "masks": mask_source, **strict,
                                      **({} if cfg.clinical.missing == "exclude" else
                                         {"missing": cfg.clinical.missing})},
                            description="LGG survival: signature, Cox, nomograms"))

    done = [s.name for s in stages]

    def bundle(ctx: StageContext) -> None:
        bundle_stage(ctx, cfg, done)

    bundled = cfg.grading is not None or cfg.survival is not None or cfg.segmentation is not None
    if bundled:  # else no model was fitted: nothing to bundle
        stages.append(Stage("bundle", bundle, inputs=tuple(done),
                            settings={"config": cfg.resolved()},
                            description="model bundle for gliorad predict"))
    if cfg.report.enabled:
        report_inputs = (*done, *(["bundle"] if bundled else []))

        def report(ctx: StageContext) -> None:
            from gliorad.report import build_report, inputs_from_workspace

            inputs = inputs_from_workspace(ctx.workspace.root)
            inputs.title = cfg.report.title
            build_report(inputs, ctx.out_dir)

        stages.append(Stage("report", report, inputs=report_inputs,
                            settings=cfg.report.model_dump(mode="json"),
                            description="HTML report"))
    return stages


# ------------------------------------------------------------------------------ stage bodies
def survival_training_name(cfg: RunConfig) -> str | None:
    """The ``survival_cohort`` value of the survival training patients in ``split.csv``."""
    if cfg.survival is None:
        return None
    sp = cfg.survival.split
    return str(sp.train) if sp.method == "column" else "training"


def split_stage(ctx: StageContext, cfg: RunConfig) -> None:
    """``split.csv``: each patient's grading part (train / val / test; empty when grading is off
    or the patient has no grade) and survival cohort (empty when survival is off or the patient
    lacks survival time or event); ``split.json`` counts them; ``excluded.json`` lists who is
    left out of which analysis and why (``clinical.missing: exclude``)."""
    import pandas as pd

    from gliorad.clinical import drop_missing, read_clinical
    from gliorad.grading.evaluate import split_positions
    from gliorad.survival.coding import split_cohorts
    from gliorad.tables import parse_grade_labels

    cohort = load_cohort(ctx, cfg)
    table = read_clinical(clinical_path(ctx))  # one read: grades and survival cohorts
    table.index = table.index.map(str)
    in_cohort = set(cohort.ids)
    ids = [p for p in table.index if p in in_cohort]
    missing = sorted(in_cohort - set(ids))
    policy = cfg.clinical.missing
    excluded: dict[str, list[dict[str, Any]]] = {}

    def usable(fields: tuple[str, ...], analysis: str):
        records: list[dict[str, Any]] = []
        kept = drop_missing(table.loc[ids], fields, CLINICAL, policy, records)
        # row numbers of the canonical table would mislead: the patient id names the row
        excluded[analysis] = [{"patient_id": r["patient_id"], "missing": r["missing"]}
                              for r in records]
        return kept

    part: dict[str, str] = {}
    if cfg.grading is not None:
        graded = usable(("grade",), "grading")
        y = parse_grade_labels(graded["grade_group"], source=f"{CLINICAL} grade").y
        try:
            train, val, test = split_positions(y, cfg.grading)
        except GlioradInputError as err:
            if cfg.grading_scheme == "split":
                raise
            # scheme cv grades by cross-validation; the split only keeps the networks from the
            # test part, and a cohort too small for it trains them on every graded patient
            # (the grade stage warns that CNN rows under scheme cv are optimistic anyway)
            train, val, test = range(len(y)), [], []
            ctx.log.warning("grading split: %s; scheme cv: every graded patient is in the "
                            "training part of the networks", " ".join(err.problems))
        part = {graded.index[i]: name
                for name, pos in (("train", train), ("val", val), ("test", test)) for i in pos}
    surv: dict[str, str] = {}
    if cfg.survival is not None:
        timed = usable(("os_time", "event"), "survival")
        cohorts, _roles, _ = split_cohorts(timed, cfg.survival.split, cfg.survival.seed)
        surv = {p: str(name) for name, members in cohorts.items() for p in members.map(str)}
    df = pd.DataFrame({
        "patient_id": ids,
        "grade_group": table.loc[ids, "grade_group"].to_numpy(),
        "grade_split": [part.get(p, "") for p in ids],
        "survival_cohort": [surv.get(p, "") for p in ids],
    })
    write_text(df.to_csv(index=False), ctx.out_dir / SPLIT)
    for analysis, records in excluded.items():
        if records:
            ctx.log.warning("%s: %d patient(s) left out (no %s): %s", analysis, len(records),
                            " / ".join(records[0]["missing"]),
                            ", ".join(r["patient_id"] for r in records[:10]))
    write_json({"grading": ({k: int((df["grade_split"] == k).sum()) for k in ("train", "val", "test")}
                            if cfg.grading is not None else None),
                "survival": ({k: int(v) for k, v in df["survival_cohort"].value_counts().items()
                              if k} if cfg.survival is not None else None),
                "excluded": {k: len(v) for k, v in excluded.items()},
                "not_in_clinical_table": missing}, ctx.out_dir / "split.json")
    write_json({"policy": policy, "not_in_clinical_table": missing, **excluded},
               ctx.out_dir / "excluded.json")


def grade_stage(ctx: StageContext, cfg: RunConfig, mask_source: str, grading: Any, scheme: str,
                n_jobs: int) -> None:
    """Tables S3, 1, 2 on the radiomics (per sequence) and deep sets; then the final fused model
    fitted on every patient for the bundle: the best radiomics sequence (validation part) + the
    first deep variant's features, or, with ``deep3d.cross_fit``, stacked with that CNN's
    out-of-sample probability (``cnn3d_probability``)."""
    import json

    import pandas as pd

    from gliorad.grading.paper import radiomics_by_sequence
    from gliorad.grading.run import run_fit, run_tables
    from gliorad.tables import feature_matrix, read_table

    rad_table = ctx.input_dir("radiomics") / f"radiomics_{mask_source}.csv"
    labels = clinical_path(ctx)
    sets, cnn, stack = {}, {}, {}
    if cfg.deep3d:
        d3 = ctx.input_dir("deep3d")
        for v in cfg.deep3d:
            sets[f"deep_{v}"] = d3 / v / f"cnn3d_{v}.csv"
            cnn[f"cnn_{v}"] = d3 / v / f"cnn3d_{v}_predictions.csv"
        if "deep3d_oof" in ctx.stage.inputs:
            for v in cfg.deep3d:
                stack[f"cnn_{v}"] = honest_cnn_scores(
                    d3 / v / f"cnn3d_{v}_predictions.csv",
                    ctx.input_dir("deep3d_oof") / v / f"cnn3d_{v}_oof_predictions.csv")
    warnings_ = []
    if scheme == "cv" and cfg.deep3d:
        warnings_.append("grading.scheme cv with 3D CNN features is optimistic: the CNN was trained "
                         "on the split's training part, which the CV folds' test parts include; "
                         "use scheme split for leak-free fused and CNN rows")
        ctx.log.warning(warnings_[-1])
    # the split the CNNs and the U-Net were trained on, so that no test patient was seen
    sp = read_split(ctx)
    sp = sp[sp["grade_split"].isin(["train", "val", "test"])]  # not: no grade (excluded.json)
    parts = dict(zip(sp["patient_id"].astype(str), sp["grade_split"], strict=True))
    nonfinite = cfg.run.nonfinite
    res = run_tables(sets, labels, ctx.out_dir / "tables", cnn_predictions=cnn, config=grading,
                     stack_scores=stack or None, nonfinite=nonfinite,
                     scheme=scheme, radiomics_table=rad_table, n_jobs=n_jobs, overwrite=True,
                     split_parts=parts if scheme == "split" else None)
    for m in res.messages:
        ctx.log.info(m)
    metrics = json.loads((ctx.out_dir / "tables" / "metrics.json").read_text(encoding="utf-8"))
    # the radiomics set the fused rows used: best validation-part AUC under a split
    seqs = {k: v.get("validation", v)["auc"] for k, v in metrics.items()
            if k.startswith("radiomics_")}
    best = max(seqs, key=lambda k: seqs[k])
    X = radiomics_by_sequence(feature_matrix(read_table(rad_table), rad_table.name,
                                             nonfinite=nonfinite))[best]
    parts = [X]
    first = next(iter(cfg.deep3d), None)
    stacked = bool(stack)
    if stacked:
        # late fusion: the radiomics model stacked with the CNN's out-of-sample probability
        from gliorad.grading.stacking import STACK_COLUMN_3D

        parts.append(stack[f"cnn_{first}"].rename(STACK_COLUMN_3D).to_frame())
    elif first:
        parts.append(feature_matrix(read_table(sets[f"deep_{first}"]), f"deep_{first}",
                                    nonfinite=nonfinite))
    fused = pd.concat(parts, axis=1, join="inner")
    fused.index.name = "patient_id"
    fused_path = ctx.out_dir / "fused_features.csv"
    write_text(fused.to_csv(float_format="%.17g" if stacked else "%.10g"), fused_path)
    run_fit(fused_path, labels, ctx.out_dir / "model", config=grading, n_jobs=n_jobs, overwrite=True,
            stack_columns=(STACK_COLUMN_3D,) if stacked else (), nonfinite=nonfinite)
    write_json({"radiomics_set": best, "deep_set": first,
                "fusion": "stacked" if stacked else "features",
                "n_features": int(fused.shape[1]), "n_patients": int(fused.shape[0]),
                "scheme": scheme, "warnings": warnings_},
               ctx.out_dir / "model_inputs.json")


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


def survival_stage(ctx: StageContext, surv_cfg: Any, mask_source: str, with_deep: bool,
                   missing: str = "exclude", nonfinite: str = "missing") -> None:
    from gliorad.clinical import read_clinical
    from gliorad.survival.artifacts import write_analysis
    from gliorad.survival.bundle import save_bundle
    from gliorad.survival.evaluation import run_analysis
    from gliorad.tables import read_features

    feats, cleaned = read_features(ctx.input_dir("radiomics") / f"radiomics_{mask_source}.csv",
                                   first_column_id=True, nonfinite=nonfinite)
    records = {"features": cleaned}
    if with_deep:
        deep, records["deep_features"] = read_features(ctx.input_dir("deep2d") / "cnn2d_dual.csv",
                                                       first_column_id=True, nonfinite=nonfinite)
        feats = feats.join(deep, how="inner")
    for rec in records.values():
        for line in rec.warnings():
            ctx.log.warning(line)
    cleaning = {k: rec.to_dict() for k, rec in records.items()}
    from gliorad.config import ClinicalConfig

    clin = read_clinical(clinical_path(ctx), ClinicalConfig(missing=missing),
                         require=("os_time", "event"))  # listed by the split stage
    analysis = run_analysis(feats, clin, surv_cfg)
    write_analysis(analysis, ctx.out_dir / "analysis",
                   {"config": surv_cfg.model_dump(mode="json"), "masks": mask_source,
                    "deep_features": with_deep}, table_cleaning=cleaning)
    save_bundle(analysis.models, ctx.out_dir / "bundle")


def bundle_stage(ctx: StageContext, cfg: RunConfig, done: list[str]) -> None:
    import json

    from gliorad.bundle import save_model_bundle
    from gliorad.features.radiomics import load_params

    def maybe(stage: str, *parts: str) -> Path | None:
        if stage not in done:
            return None
        p = ctx.input_dir(stage).joinpath(*parts)
        return p if p.exists() else None

    first3d = next(iter(cfg.deep3d), None)
    model_inputs = (json.loads((ctx.input_dir("grade") / "model_inputs.json").read_text(encoding="utf-8"))
                    if "grade" in done else None)
    save_model_bundle(
        ctx.out_dir / "bundle",
        config=cfg.resolved(),
        segmentation=maybe("segment", "model"),
        cnn3d=maybe("deep3d", first3d) if first3d else None,
        cnn2d=maybe("deep2d"),
        grading=maybe("grade", "model"),
        survival=maybe("survival", "bundle"),
        radiomics_params=load_params(cfg.radiomics.params),
        info={"grading_inputs": model_inputs, "radiomics_region": cfg.radiomics.region},
        training_ranges=training_ranges(ctx, cfg, done),
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
    sp["patient_id"] = sp["patient_id"].astype(str)
    features: dict[str, Any] = {}
    fitted: set[str] = set()
    sequences: set[str] = set()
    if "grade" in done:
        info = json.loads((ctx.input_dir("grade") / "model" / "model.json").read_text(encoding="utf-8"))
        fused = read_table(ctx.input_dir("grade") / "fused_features.csv")
        graded = sp.loc[sp["grade_split"].isin(["train", "val", "test"]), "patient_id"]
        rows = fused.loc[fused.index.isin(set(graded))]
        features.update(ranges.column_ranges(rows, info.get("selected_features") or []))
        fitted |= set(rows.index)
        sequences |= {c.split("_", 1)[0] for c in rows.columns if not c.startswith("cnn")}
    signature = None
    if "survival" in done:
        from gliorad.survival.bundle import load_bundle

        models = load_bundle(ctx.input_dir("survival") / "bundle")
        auto = "auto" if cfg.segmentation is not None else "manual"
        table = read_table(ctx.input_dir("radiomics") / f"radiomics_{auto}.csv")
        if "deep2d" in done and (ctx.input_dir("deep2d") / "cnn2d_dual.csv").is_file():
            table = table.join(read_table(ctx.input_dir("deep2d") / "cnn2d_dual.csv"), how="inner")
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


# ------------------------------------------------------------------------------------- run
def run_workflow(
    config: str | Path | RunConfig,
    workspace: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    from_stage: str | None = None,
    force: tuple[str, ...] = (),
    until: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> list[StageResult]:
    """Run (or resume) the pipeline of ``config`` in ``workspace``."""
    import yaml

    from gliorad.run_config import check_run_inputs

    cfg = config if isinstance(config, RunConfig) else load_run_config(config, overrides)
    for note in (*cfg.notes, *check_run_inputs(cfg)):  # before any stage: fail in seconds
        if echo:
            echo(f"note: {note}")
    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False), ws / "config.yaml")
    return run_pipeline(build_stages(cfg), ws, from_stage=from_stage, force=force, until=until,
                        echo=echo)


def summary_lines(workspace: str | Path) -> list[str]:
    """The headline results of a workspace, for the console (missing stages are left out)."""
    import json

    ws = Path(workspace)

    def load(*parts: str) -> Any:
        p = ws.joinpath(*parts)
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        except json.JSONDecodeError:
            return None

    lines = []
    ev = load("segment", "evaluation", "evaluation.json")
    wt = (ev or {}).get("summary", ev or {}).get("WT") if ev else None
    if wt and isinstance(wt.get("dice"), dict) and wt["dice"].get("mean") is not None:
        d = wt["dice"]
        lines.append(f"segmentation: whole-tumour Dice {d['mean']:.3f} (median {d.get('median', float('nan')):.3f})")
    agr = load("agreement", "agreement.json")
    for pair, summ in ((agr or {}).get("summary") or {}).items():
        if isinstance(summ, dict) and summ.get("fraction_above") is not None:
            lines.append(f"agreement ({pair.replace('_', ' ')}): ICC median {summ['median']:.3f}, "
                         f"{summ['fraction_above']:.0%} of {summ['n_defined']} features above "
                         f"{summ['threshold']}")
    gm = load("grade", "tables", "metrics.json")
    if gm:
        best = lambda prefix: max(((k, v) for k, v in gm.items() if k.startswith(prefix)),
                                  key=lambda kv: kv[1]["auc"], default=None)
        for prefix, what in (("fused_", "fused"), ("stacked_", "stacked"),
                             ("radiomics_", "best radiomics sequence")):
            b = best(prefix)
            if b:
                k, v = b
                lines.append(f"grading ({what}, {k}): test AUC {v['auc']:.3f} "
                             f"(95% CI {v['auc_ci_low']:.3f}-{v['auc_ci_high']:.3f})")
        t2 = ws / "grade" / "tables" / "table_2.csv"
        if t2.is_file() and t2.stat().st_size > 1:  # empty without 3D CNN rows
            import pandas as pd

            for _, r in pd.read_csv(t2).iterrows():
                lines.append(f"grading (CNN alone, {r['Methods']}): test AUC {r['AUC (95% CI)']}")
    sm = load("survival", "analysis", "metrics.json")
    models = (sm or {}).get("models") or {}
    for which in ("integrated", "clinical"):
        info = models.get(which) or {}
        if info.get("same_as_clinical") or info.get("fitted") is False:
            lines.append(f"survival: {which} model: {info.get('reason') or 'not fitted'}")
    for name, m in ((sm or {}).get("cohorts") or {}).items():
        why = m.get("null_reasons") or {}

        def c(key: str, m: dict = m, why: dict = why) -> str:
            v = m.get(key)
            v = v.get("c_index") if isinstance(v, dict) else v  # the signature's: {c_index, ci}
            return f"{v:.3f}" if v is not None else f"n/a ({why.get(key, 'not computed')})"

        p = m.get("compare_p")
        lines.append(f"survival, cohort {name}: C-index integrated {c('c_index_integrated')} vs "
                     f"clinical {c('c_index_clinical')}; signature {c('c_index_signature')}"
                     + (f"; paired P {p:.3g}" if p is not None else ""))
    report = ws / "report" / "report.html"
    if report.is_file():
        lines.append(f"report: {report}")
    if (ws / "bundle" / "bundle").is_dir():
        lines.append(f"model bundle: {ws / 'bundle' / 'bundle'} (gliorad predict PATIENT_DIR --bundle ...)")
    return lines
