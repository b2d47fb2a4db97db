"""Glioma grading (HGG vs LGG): the paper's selection + SVM model, evaluation, ablation tables.

- :mod:`.config` — :class:`GradingConfig` (pydantic) with ``paper`` and ``demo`` presets
- :mod:`.model` — :class:`GradingModel` (impute -> z-score -> Levene -> LASSO -> RF top-k ->
  tuned SVM, one scikit-learn estimator) and :class:`TunedSVC`
- :mod:`.evaluate` — leak-free repeated CV / split evaluation, metrics with DeLong CIs,
  :func:`compare_models` (paired DeLong tests)
- :mod:`.paper` — the paper's Tables S3, 1 and 2 (:func:`paper_tables`)
- :mod:`.persist` — save / load fitted models with skops (never pickle)
- :mod:`.outputs`, :mod:`.run` — output folders and the file-level stages behind
  ``gliorad grade cv|fit|evaluate|tables``

Feature selectors live in :mod:`gliorad.selection`; feature-table reading and label parsing in
:mod:`gliorad.tables`.
"""

from gliorad.grading.config import PRESETS, GradingConfig
from gliorad.grading.evaluate import (
    GradingResult,
    binary_metrics,
    compare_models,
    cross_validate_grading,
    split_evaluate_grading,
)
from gliorad.grading.model import GradingModel, TunedSVC
from gliorad.grading.paper import PaperTables, paper_tables
from gliorad.grading.persist import load_model, save_model

__all__ = [
    "PRESETS",
    "GradingConfig",
    "GradingModel",
    "GradingResult",
    "PaperTables",
    "TunedSVC",
    "binary_metrics",
    "compare_models",
    "cross_validate_grading",
    "load_model",
    "paper_tables",
    "save_model",
    "split_evaluate_grading",
]
