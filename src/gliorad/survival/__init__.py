"""Survival statistics that agree with R 4.2 (``survival`` 3.5, ``rms`` 6.5, ``maxstat`` 0.7).

- :mod:`.km` — Kaplan-Meier curves (``survfit``), ``summary(fit, times=)``, log-rank (``survdiff``)
- :mod:`.cox` — :class:`CoxModel` (``coxph``, Efron ties; fitted by lifelines)
- :mod:`.cox_tables` — univariate / multivariable hazard-ratio tables, factor selection
- :mod:`.zph` — proportional-hazards score test (``cox.zph``, R >= 4.0 method)
- :mod:`.nomogram` — nomogram points and survival axes (``rms::nomogram``)
- :mod:`.calibration` — calibration at ``t`` with bootstrap correction (``rms::calibrate``)
- :mod:`.cutpoint` — median and maximally selected log-rank cut-points (``maxstat``)
- :mod:`.plots` — Kaplan-Meier, nomogram and calibration figures
"""

from gliorad.survival.calibration import CalibrationResult, calibrate_survival
from gliorad.survival.cox import CoxModel
from gliorad.survival.cox_tables import (
    CoxFit,
    CoxSelection,
    coef_table,
    multivariable_cox,
    select_cox_factors,
    univariate_cox,
)
from gliorad.survival.cutpoint import CutpointResult, median_cutpoint, optimal_cutpoint
from gliorad.survival.km import LogrankResult, kaplan_meier, logrank_test, survival_at
from gliorad.survival.nomogram import Nomogram, build_nomogram
from gliorad.survival.plots import plot_calibration, plot_km, plot_nomogram
from gliorad.survival.zph import cox_zph

__all__ = [
    "CalibrationResult",
    "CoxFit",
    "CoxModel",
    "CoxSelection",
    "CutpointResult",
    "LogrankResult",
    "Nomogram",
    "build_nomogram",
    "calibrate_survival",
    "coef_table",
    "cox_zph",
    "kaplan_meier",
    "logrank_test",
    "median_cutpoint",
    "multivariable_cox",
    "optimal_cutpoint",
    "plot_calibration",
    "plot_km",
    "plot_nomogram",
    "select_cox_factors",
    "survival_at",
    "univariate_cox",
]

# The deep-radiomics signature and the end-to-end analysis over cohorts (Parts 1-7).
from gliorad.survival.analysis import (
    SurvivalConfig,
    apply_models,
    cross_validate,
    run_analysis,
    write_analysis,
)
from gliorad.survival.bundle import load_bundle, save_bundle
from gliorad.survival.sequence_choice import choose_sequence
from gliorad.survival.signature import DeepRadiomicsSignature, make_survival_y

__all__ += [
    "DeepRadiomicsSignature",
    "SurvivalConfig",
    "apply_models",
    "choose_sequence",
    "cross_validate",
    "load_bundle",
    "make_survival_y",
    "run_analysis",
    "save_bundle",
    "write_analysis",
]
