"""The demo: a synthetic two-centre cohort through every stage that exists so far.

Stages (a :mod:`gliorad.pipeline` graph in ``<workspace>/``; rerunning skips what is done, and a
killed run resumes):

1. ``cohort``     synthetic two-centre cohort with ground truth (``gliorad synth``)
2. ``validate``   ``gliorad validate`` on it
3. ``radiomics``  pyradiomics, ``fast`` preset, manual masks, every sequence
4. ``grade``      HGG vs LGG: the paper's selection + SVM, repeated CV, on radiomics
5. ``survival``   LGG survival: signature, Cox models, nomograms, C-index, calibration;
                  trained on centre B, validated on centre A (as the paper)

Segmentation, the deep CNN features and the HTML report join as those stages land.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.pipeline import Stage, StageContext, run_pipeline

COHORT = "cohort"


def _cohort_dir(ctx: StageContext) -> Path:
    return ctx.input_dir("cohort") / COHORT


def demo_stages(n_patients: int = 160, seed: int = 0, n_jobs: int = 2, spacing: float = 3.0,
                hgg_fraction: float = 0.4) -> list[Stage]:
    """The demo's stages with their settings (each stage's settings are its fingerprint)."""
    from gliorad.synthetic import SynthConfig

    synth = SynthConfig(n_patients=n_patients, seed=seed, spacing=spacing, hgg_fraction=hgg_fraction)

    def cohort(ctx: StageContext) -> None:
        from gliorad.synthetic import generate_cohort

        generate_cohort(ctx.out_dir / COHORT, synth, n_jobs=n_jobs, overwrite=True)

    def validate(ctx: StageContext) -> None:
        from gliorad.config import load_config
        from gliorad.io import write_json
        from gliorad.validation import validate as run_validate

        root = _cohort_dir(ctx)
        config = load_config(root / "cohort.yaml")
        report = run_validate(root, config.clinical.path, config, n_jobs=n_jobs)
        if not report.ok:
            raise GlioradInputError(report.problems)
        write_json({"ok": True, "summary": report.summary()}, ctx.out_dir / "validation.json")

    def radiomics(ctx: StageContext) -> None:
        import shutil

        from gliorad.features.radiomics import extract_radiomics

        # the per-case cache lives in the resumable work folder; the tables are copied out
        res = extract_radiomics(_cohort_dir(ctx), ctx.work_dir, params="fast", manual=True,
                                n_jobs=n_jobs, progress=False)
        for name, path in res.files.items():
            shutil.copy2(path, ctx.out_dir / name)

    def grade(ctx: StageContext) -> None:
        from gliorad.grading.config import GradingConfig
        from gliorad.grading.run import run_cv

        run_cv(ctx.input_dir("radiomics") / "radiomics_manual.csv",
               _cohort_dir(ctx) / "clinical.csv", ctx.out_dir / "radiomics_manual",
               config=GradingConfig.preset("demo"), n_jobs=n_jobs)

    survival_settings = _survival_settings(seed, n_jobs)

    def survival(ctx: StageContext) -> None:
        from gliorad.clinical import read_clinical
        from gliorad.config import ClinicalConfig
        from gliorad.survival.analysis import (
            SurvivalConfig,
            read_feature_table,
            run_analysis,
            write_analysis,
        )

        cfg = SurvivalConfig.model_validate(survival_settings)
        feats = read_feature_table(ctx.input_dir("radiomics") / "radiomics_manual.csv")
        clin = read_clinical(_cohort_dir(ctx) / "clinical.csv", ClinicalConfig(time_unit="days"),
                             require=("os_time", "event"))
        analysis = run_analysis(feats, clin, cfg)
        write_analysis(analysis, ctx.out_dir / "radiomics_signature",
                       {"config": survival_settings, "note": "radiomics-only signature (demo)"})

    return [
        Stage("cohort", cohort, settings={"synth": synth.model_dump(mode="json")},
              description="synthetic two-centre cohort"),
        Stage("validate", validate, inputs=("cohort",), description="gliorad validate"),
        Stage("radiomics", radiomics, inputs=("cohort",), settings={"params": "fast", "masks": "manual"},
              description="pyradiomics, manual masks"),
        Stage("grade", grade, inputs=("cohort", "radiomics"), settings={"preset": "demo"},
              description="HGG vs LGG on radiomics (repeated CV)"),
        Stage("survival", survival, inputs=("cohort", "radiomics"), settings=survival_settings,
              description="LGG survival: train centre B, validate centre A"),
    ]


def _survival_settings(seed: int, n_jobs: int) -> dict[str, Any]:
    """The survival ``demo`` preset, radiomics only (no deep features yet)."""
    from gliorad.survival.analysis import PRESETS, SurvivalConfig

    preset = PRESETS["demo"]
    sequence = {**preset["sequence"], "deep_prefix": None}
    cfg = SurvivalConfig.preset("demo", sequence=sequence, seed=seed, n_jobs=n_jobs)
    return cfg.model_dump(mode="json")


def run_demo(
    workspace: str | Path,
    n_patients: int = 160,
    seed: int = 0,
    n_jobs: int = 2,
    spacing: float = 3.0,
    echo: Callable[[str], None] = print,
    force: tuple[str, ...] = (),
    from_stage: str | None = None,
    until: str | None = None,
) -> Path:
    """Run the demo into ``workspace`` and print where the results are; returns the workspace."""
    import json

    ws = Path(workspace)
    results = run_pipeline(demo_stages(n_patients, seed, n_jobs, spacing), ws,
                           from_stage=from_stage, force=force, until=until, echo=echo)
    if results[-1].name != "survival":
        echo(f"stopped after stage {results[-1].name!r}; outputs in {ws}/")
        return ws
    grade = json.loads((ws / "grade" / "radiomics_manual" / "metrics.json").read_text())
    surv = json.loads((ws / "survival" / "radiomics_signature" / "metrics.json").read_text())
    echo(f"grading (radiomics, repeated CV): AUC {grade['auc']:.3f} "
         f"(95% CI {grade['auc_ci_low']:.3f}-{grade['auc_ci_high']:.3f})")
    for name, m in surv.get("cohorts", {}).items():
        ci, cc = m.get("c_index_integrated"), m.get("c_index_clinical")
        if ci is not None and cc is not None:
            echo(f"survival, cohort {name}: C-index integrated {ci:.3f} vs clinical {cc:.3f} "
                 f"(paired P {m.get('compare_p', float('nan')):.3g})")
    echo(f"outputs in {ws}/ (one folder per stage; pipeline.log). Segmentation, deep features "
         "and the HTML report are added by the next stages of the pipeline.")
    return ws
