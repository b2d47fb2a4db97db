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

The end-to-end LGG survival analysis over cohorts (Xu et al. 2022, "Building of deep-radiomics
signature" and "Building of prognostic nomogram").

Data flow (:func:`run_analysis`):

1. :func:`prepare_table` joins a feature table and a canonical clinical table (``os_days``,
   ``event``, candidate factors) by patient id and keeps the population (LGG by default).
2. :func:`split_cohorts` makes the training cohort and the validation cohorts: by a column
   (paper: train on centre B, validate on centre A; several external values allowed) or at
   random (stratified on the event).
3. :func:`fit_models` on the training cohort only:

   a. sequence choice (:mod:`.sequence_choice`, optional): radiomics of each sequence, median-OS
      prognosis model, best AUC (or forced);
   b. the fused features (chosen sequence's radiomics + deep features) -> the signature
      (:class:`.DeepRadiomicsSignature`);
   c. cut-off on the training signature (median, or the maximally selected log-rank "X-tile"
      search); ``signature`` = ``high`` (score > cut-off) / ``low``;
   d. clinical factors coded once (:class:`FactorCoding`: rare levels pooled, references, missing
      values complete-case or imputed), then the paper's rule (univariate P < 0.05 ->
      multivariable P < 0.05 -> refit, :func:`select_cox_factors`) over the clinical factors +
      signature (**integrated** model) and over the clinical factors alone (**clinical**
      model); nomograms of both.

4. :func:`evaluate_cohort` on every cohort with the models and the cut-off **unchanged**:
   Kaplan-Meier by risk group + log-rank, C-index with 95 % CI of both models and their paired
   comparison, Tables 3/4 (the final factors refitted in the cohort, as the paper's validation
   columns), nomogram predictions at 1/3/5 years, calibration (training: ``rms::calibrate``-like
   bootstrap correction; validation: the training model's predictions against Kaplan-Meier, no
   refit).

:func:`cross_validate` repeats 3-4 inside stratified folds of the training cohort
(``gliorad survival cv``); :func:`write_analysis` / :func:`write_cv` write the artifacts.

The code lives in one module per role; the package re-exports their public names:

- :mod:`.config` — :class:`SurvivalConfig` and its parts, presets, defaults, shared names (light:
  no heavy library)
- :mod:`.coding` — :func:`prepare_table`, :func:`split_cohorts`, :class:`FactorCoding` (step 1-2)
- :mod:`.models` — :func:`fit_models`, :class:`SurvivalModels`, the factor rules, nomograms (step 3)
- :mod:`.evaluation` — :func:`evaluate_cohort`, :func:`run_analysis`, :func:`apply_models` (step 4)
- :mod:`.crossval` — :func:`cross_validate`, :class:`CVResult`
- :mod:`.artifacts` — every file written and its name (:class:`AnalysisFiles`, :class:`CVFiles`)

Robustness (Part 7, and issue 16 "no dead ends"): a scientific outcome is a result, never an
error. Fewer than ``min_events_per_factor`` events per coefficient warns
(:class:`SurvivalWarning`, also listed in ``metrics.json``). A Cox coefficient that cannot be
estimated (an error from the fitter, or a standard error over the factor's range above
``MAX_SE_SPAN`` on the log-hazard scale: complete separation, a level without events) leaves its
factor out of that model with a warning (:func:`fit_estimable`); factors with a single level in
a cohort are left out of that cohort's refit (noted); missing clinical values are dropped
(complete case, counted per cohort) or imputed (training median / most frequent level), as
configured. The factor rule of each model is ``clinical_selection`` / ``integrated_selection``:
``paper`` (the P-value rule above) or ``prespecified`` (every usable factor of ``factors``; the
integrated model adds the signature). Dead ends and what happens instead:

* no factor kept for the integrated model (signature included): the integrated model **is** the
  clinical model (``metrics["models"]["integrated"]["same_as_clinical"]``, with the reason);
* no factor kept for either model: both are None with the reason; the signature's own C-index,
  hazard ratio, Kaplan-Meier curves and log-rank test are still reported (an empty Cox model is
  not a model, so none is built);
* a constant signature (the elastic net keeps no feature, or its penalty cannot be
  cross-validated on few events) or every training patient in one risk group: the signature is
  left out of the Cox models; its C-index, hazard ratio and log-rank test are null with the
  reason;
* few training events: the signature's penalty search uses fewer folds (down to 2); the
  sequence choice uses fewer folds or its stated fallback (:mod:`.sequence_choice`); an
  ``optimal`` cut-off that cannot be searched falls back to the median;
* in a cohort, an undefined metric (no event, no comparable pairs, one risk group, a hazard
  ratio that cannot be estimated, calibration beyond the follow-up) is null and
  ``metrics["cohorts"][name]["null_reasons"][key]`` says why; every other cohort and metric is
  still computed.

Errors remain for bad input only (missing columns, unknown split values, a signature feature
absent from a cohort's table) and for a training cohort without any event (nothing can be
fitted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliorad.lazy import lazy_exports
from gliorad.survival.config import (
    PRESETS,
    SURVIVAL_CANDIDATES,
    SURVIVAL_MODELS,
    SearchConfig,
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
    from gliorad.survival.candidates import (
        BoostedSignature,
        CoxnetSignature,
        ForestSignature,
        NoSignature,
        SignatureModel,
        make_candidate,
    )
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
    from gliorad.survival.search import ModelSearch, fit_chosen_model, pick_best
    from gliorad.survival.sequence_choice import choose_sequence
    from gliorad.survival.signature import DeepRadiomicsSignature, make_survival_y
    from gliorad.survival.zph import cox_zph

#: The names of the heavier modules, each with the module that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["AnalysisFiles", "CVFiles", "write_analysis", "write_cv"], "artifacts"),
    **dict.fromkeys(["load_bundle", "save_bundle"], "bundle"),
    **dict.fromkeys(["CalibrationResult", "calibrate_survival"], "calibration"),
    **dict.fromkeys(["BoostedSignature", "CoxnetSignature", "ForestSignature", "NoSignature",
                     "SignatureModel", "make_candidate"], "candidates"),
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
    **dict.fromkeys(["ModelSearch", "fit_chosen_model", "pick_best"], "search"),
    **dict.fromkeys(["choose_sequence"], "sequence_choice"),
    **dict.fromkeys(["DeepRadiomicsSignature", "make_survival_y"], "signature"),
    **dict.fromkeys(["cox_zph"], "zph"),
}

#: Config names are imported above; the others on first access (:data:`_LAZY`).
__all__ = [
    "PRESETS",
    "SURVIVAL_CANDIDATES",
    "SURVIVAL_MODELS",
    "AnalysisFiles",
    "BoostedSignature",
    "CVFiles",
    "CVResult",
    "CalibrationResult",
    "CohortResult",
    "CoxFit",
    "CoxModel",
    "CoxSelection",
    "CoxnetSignature",
    "CutpointResult",
    "DeepRadiomicsSignature",
    "FactorCoding",
    "ForestSignature",
    "LogrankResult",
    "ModelSearch",
    "NoSignature",
    "Nomogram",
    "SearchConfig",
    "SequenceConfig",
    "SignatureConfig",
    "SignatureModel",
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
    "fit_chosen_model",
    "fit_models",
    "kaplan_meier",
    "load_bundle",
    "logrank_test",
    "make_candidate",
    "make_survival_y",
    "median_cutpoint",
    "multivariable_cox",
    "optimal_cutpoint",
    "pick_best",
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
