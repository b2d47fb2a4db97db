"""Statistics core that agrees with R: one module per topic, the public API re-exported here.

Every function here is checked against R 4.2 (``tests/reference/make_stats_reference.R``):

=========================  ============================================================
Python                     R reference
=========================  ============================================================
:func:`roc_auc_ci`         ``pROC::ci.auc(roc(y, s, direction = "<", levels = c(0, 1)),
                           method = "delong")``
:func:`delong_test`        ``pROC::roc.test(r1, r2, method = "delong", paired = TRUE)``
:func:`threshold_metrics`  ``pROC::coords(r, x = t, input = "threshold")``
:func:`concordance_index`  ``survival::concordance(Surv(t, e) ~ risk, reverse = TRUE)``
:func:`concordance_ci`     same, ``$var`` (infinitesimal jackknife)
:func:`compare_concordance`  joint IJ covariance of two ``concordance`` fits
:func:`icc`                ``psych::ICC(cbind(a, b), lmer = FALSE)``
:func:`cohort_table`       ``wilcox.test(exact = FALSE, correct = TRUE)``, ``chisq.test``,
                           ``fisher.test``
=========================  ============================================================

Conventions
-----------
* Binary labels are 0/1 (or bool); **a higher score means the positive class** (label 1).
  This is pROC's ``direction = "<"`` (controls < cases); pROC's automatic direction choice is
  never used, so an AUC below 0.5 is reported as such rather than flipped.
* Survival: ``time`` >= 0, ``event`` 1 = event (death/progression), 0 = censored, and **a higher
  risk means a shorter survival** (R's ``reverse = TRUE``).
* Bad input raises :class:`gliorad.errors.GlioradInputError` naming the argument, the bad
  value and what was expected. No function returns a silent NaN: where a quantity is undefined
  the result says why (``notes`` / ``note``).

Modules
-------
=====================================  ====================================================
module                                 what
=====================================  ====================================================
:mod:`gliorad.stats.roc`               ROC AUC, DeLong variance and paired DeLong test
:mod:`gliorad.stats.threshold`         accuracy, sensitivity, specificity, ... at a threshold
:mod:`gliorad.stats.bootstrap`         seeded (stratified) percentile bootstrap CI
:mod:`gliorad.stats.concordance`       Harrell's C, its IJ variance, paired comparison
:mod:`gliorad.stats.icc`               Shrout-Fleiss ICC, vectorised over features
:mod:`gliorad.stats.cohort`            cohort table ("Table S2")
:mod:`gliorad.stats.fisher`            Fisher's exact test of r x 2 tables
:mod:`gliorad.stats.common`            input checks, Wald interval and z-test they share
=====================================  ====================================================
"""

from gliorad.stats.bootstrap import BootstrapResult, bootstrap_ci
from gliorad.stats.cohort import (
    CHI_SQUARE,
    CHI_SQUARE_YATES,
    FISHER,
    FISHER_MC,
    MANN_WHITNEY,
    cohort_table,
)
from gliorad.stats.concordance import (
    ConcordanceComparison,
    ConcordanceResult,
    compare_concordance,
    concordance_ci,
    concordance_index,
)
from gliorad.stats.fisher import fisher_exact_rx2
from gliorad.stats.icc import ICC_KINDS, IccResult, icc, icc_single
from gliorad.stats.roc import AucResult, DelongTestResult, delong_test, roc_auc, roc_auc_ci
from gliorad.stats.threshold import ThresholdMetrics, threshold_metrics

__all__ = [
    "CHI_SQUARE",
    "CHI_SQUARE_YATES",
    "FISHER",
    "FISHER_MC",
    "ICC_KINDS",
    "MANN_WHITNEY",
    "AucResult",
    "BootstrapResult",
    "ConcordanceComparison",
    "ConcordanceResult",
    "DelongTestResult",
    "IccResult",
    "ThresholdMetrics",
    "bootstrap_ci",
    "cohort_table",
    "compare_concordance",
    "concordance_ci",
    "concordance_index",
    "delong_test",
    "fisher_exact_rx2",
    "icc",
    "icc_single",
    "roc_auc",
    "roc_auc_ci",
    "threshold_metrics",
]
