"""Survival statistics that agree with R 4.2 (``survival`` 3.5, ``rms`` 6.5, ``maxstat`` 0.7), and
the LGG survival analysis built on them (Xu et al. 2022).

Statistics:

- :mod:`.km` — Kaplan-Meier curves (``survfit``), ``summary(fit, times=)``, log-rank (``survdiff``)
- :mod:`.cox` — :class:`CoxModel` (``coxph``, Efron ties; fitted by lifelines)
- :mod:`.cox_tables` — univariate / multivariable hazard-ratio tables, factor selection
- :mod:`.zph` — proportional-hazards score test (``cox.zph``, R >= 4.0 method)
- :mod:`.nomogram` — nomogram points and survival axes (``rms::nomogram``)
- :mod:`.calibration` — calibration at ``t`` with bootstrap correction (``rms::calibrate``)
- :mod:`.cutpoint` — median and maximally selected log-rank cut-points (``maxstat``)
- :mod:`.plots` — Kaplan-Meier, nomogram and calibration figures

The analysis (overview and data flow: :mod:`.analysis`):

- :mod:`.config` — :class:`SurvivalConfig` and its parts, presets, defaults (no heavy import)
- :mod:`.coding` — the analysed table, the cohorts, :class:`FactorCoding`
- :mod:`.sequence_choice`, :mod:`.signature` — Part 1 (sequence choice) and the
  deep-radiomics signature
- :mod:`.models` — :func:`fit_models`: signature, cut-off, factor rules, Cox models, nomograms
- :mod:`.evaluation` — :func:`evaluate_cohort`, :func:`run_analysis`, :func:`apply_models`
- :mod:`.crossval` — :func:`cross_validate`
- :mod:`.artifacts` — every file written and its name (:func:`write_analysis`, :func:`write_cv`)
- :mod:`.bundle` — saved models (:func:`save_bundle`, :func:`load_bundle`)

Every public name is importable from ``gliorad.survival``. The settings (``config``) are imported
eagerly; the other names load their module (and with it pandas, SciPy, scikit-learn and
matplotlib) on first access (module ``__getattr__``), so ``import gliorad.survival.config`` --
what a run config's check needs -- stays light (see docs/architecture.md, "Package imports").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliorad.lazy import lazy_exports
from gliorad.survival.config import (
    PRESETS,
    SequenceConfig,
    SignatureConfig,
    SplitConfig,
    SurvivalConfig,
    SurvivalWarning,
)

if TYPE_CHECKING:
    from gliorad.survival.artifacts import AnalysisFiles, CVFiles, write_analysis, write_cv
    from gliorad.survival.bundle import load_bundle, save_bundle
    from gliorad.survival.calibration import CalibrationResult, calibrate_survival
    from gliorad.survival.coding import (
        FactorCoding,
        prepare_table,
        read_feature_table,
        split_cohorts,
    )
    from gliorad.survival.cox import CoxModel
    from gliorad.survival.cox_tables import (
        CoxFit,
        CoxSelection,
        coef_table,
        multivariable_cox,
        select_cox_factors,
        univariate_cox,
    )
    from gliorad.survival.crossval import CVResult, cross_validate
    from gliorad.survival.cutpoint import CutpointResult, median_cutpoint, optimal_cutpoint
    from gliorad.survival.evaluation import (
        CohortResult,
        SurvivalAnalysis,
        apply_models,
        evaluate_cohort,
        run_analysis,
    )
    from gliorad.survival.km import LogrankResult, kaplan_meier, logrank_test, survival_at
    from gliorad.survival.models import SurvivalModels, fit_models
    from gliorad.survival.nomogram import Nomogram, build_nomogram
    from gliorad.survival.plots import plot_calibration, plot_km, plot_nomogram
    from gliorad.survival.sequence_choice import choose_sequence
    from gliorad.survival.signature import DeepRadiomicsSignature, make_survival_y
    from gliorad.survival.zph import cox_zph

#: The names of the heavier modules, each with the module that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["AnalysisFiles", "CVFiles", "write_analysis", "write_cv"], "artifacts"),
    **dict.fromkeys(["load_bundle", "save_bundle"], "bundle"),
    **dict.fromkeys(["CalibrationResult", "calibrate_survival"], "calibration"),
    **dict.fromkeys(["FactorCoding", "prepare_table", "read_feature_table", "split_cohorts"], "coding"),
    **dict.fromkeys(["CoxModel"], "cox"),
    **dict.fromkeys(["CoxFit", "CoxSelection", "coef_table", "multivariable_cox",
                     "select_cox_factors", "univariate_cox"], "cox_tables"),
    **dict.fromkeys(["CVResult", "cross_validate"], "crossval"),
    **dict.fromkeys(["CutpointResult", "median_cutpoint", "optimal_cutpoint"], "cutpoint"),
    **dict.fromkeys(["CohortResult", "SurvivalAnalysis", "apply_models", "evaluate_cohort",
                     "run_analysis"], "evaluation"),
    **dict.fromkeys(["LogrankResult", "kaplan_meier", "logrank_test", "survival_at"], "km"),
    **dict.fromkeys(["SurvivalModels", "fit_models"], "models"),
    **dict.fromkeys(["Nomogram", "build_nomogram"], "nomogram"),
    **dict.fromkeys(["plot_calibration", "plot_km", "plot_nomogram"], "plots"),
    **dict.fromkeys(["choose_sequence"], "sequence_choice"),
    **dict.fromkeys(["DeepRadiomicsSignature", "make_survival_y"], "signature"),
    **dict.fromkeys(["cox_zph"], "zph"),
}

#: Config names are imported above; the others on first access (:data:`_LAZY`).
__all__ = [
    "PRESETS",
    "AnalysisFiles",
    "CVFiles",
    "CVResult",
    "CalibrationResult",
    "CohortResult",
    "CoxFit",
    "CoxModel",
    "CoxSelection",
    "CutpointResult",
    "DeepRadiomicsSignature",
    "FactorCoding",
    "LogrankResult",
    "Nomogram",
    "SequenceConfig",
    "SignatureConfig",
    "SplitConfig",
    "SurvivalAnalysis",
    "SurvivalConfig",
    "SurvivalModels",
    "SurvivalWarning",
    "apply_models",
    "build_nomogram",
    "calibrate_survival",
    "choose_sequence",
    "coef_table",
    "cox_zph",
    "cross_validate",
    "evaluate_cohort",
    "fit_models",
    "kaplan_meier",
    "load_bundle",
    "logrank_test",
    "make_survival_y",
    "median_cutpoint",
    "multivariable_cox",
    "optimal_cutpoint",
    "plot_calibration",
    "plot_km",
    "plot_nomogram",
    "prepare_table",
    "read_feature_table",
    "run_analysis",
    "save_bundle",
    "select_cox_factors",
    "split_cohorts",
    "survival_at",
    "univariate_cox",
    "write_analysis",
    "write_cv",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
