"""Glioma grading (HGG vs LGG): the paper's selection + SVM model, evaluation, ablation tables.

- :mod:`.config` — :class:`GradingConfig` (pydantic) with ``paper`` and ``demo`` presets
- :mod:`.model` — :class:`GradingModel` (impute -> z-score -> Levene -> LASSO -> RF top-k ->
  tuned SVM, one scikit-learn estimator) and :class:`TunedSVC`
- :mod:`.candidates` — the other candidates (L1 / elastic-net logistic, RBF SVM on all
  features, random forest, extra trees, gradient boosting, soft vote), :data:`CANDIDATES`
- :mod:`.auto` — :class:`AutoGradingModel` (the candidate chosen by inner CV,
  ``grading.model: auto``) and :func:`make_candidate`
- :mod:`.comparison` — every candidate's outer AUC, DeLong P against the paper's recipe,
  choice and selection frequencies (``candidates.csv``)
- :mod:`.evaluate` — leak-free repeated CV / split evaluation, metrics with DeLong CIs,
  :func:`compare_models` (paired DeLong tests)
- :mod:`.paper` — the paper's Tables S3, 1 and 2 (:func:`paper_tables`)
- :mod:`.persist` — save / load fitted models with skops (never pickle)
- :mod:`.outputs`, :mod:`.run` — output folders and the file-level stages behind
  ``gliorad grade cv|fit|evaluate|tables``

Feature selectors live in :mod:`gliorad.selection`; feature-table reading and label parsing in
:mod:`gliorad.tables`.

Every public name is importable from ``gliorad.grading``. The settings (``config``) are imported
eagerly; the other names load their module on first access (module ``__getattr__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliorad.grading.config import PRESETS, GradingConfig
from gliorad.lazy import lazy_exports

if TYPE_CHECKING:
    from gliorad.grading.auto import AutoGradingModel, make_candidate
    from gliorad.grading.candidates import (
        CANDIDATES,
        BoostingGrader,
        ForestGrader,
        LogisticGrader,
        SoftVoteGrader,
        SVMGrader,
    )
    from gliorad.grading.comparison import CandidateResult
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

#: The names of the heavier modules (scikit-learn, SimpleITK through the writers), each with the
#: module that defines it: loaded on first access, so that ``gliorad.grading.config`` -- what a
#: run config's check needs -- stays light.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["AutoGradingModel", "make_candidate"], "auto"),
    **dict.fromkeys(["CANDIDATES", "BoostingGrader", "ForestGrader", "LogisticGrader",
                     "SVMGrader", "SoftVoteGrader"], "candidates"),
    "CandidateResult": "comparison",
    **dict.fromkeys(["GradingResult", "binary_metrics", "compare_models",
                     "cross_validate_grading", "split_evaluate_grading"], "evaluate"),
    **dict.fromkeys(["GradingModel", "TunedSVC"], "model"),
    **dict.fromkeys(["PaperTables", "paper_tables"], "paper"),
    **dict.fromkeys(["load_model", "save_model"], "persist"),
}

__all__ = [
    "CANDIDATES",
    "PRESETS",
    "AutoGradingModel",
    "BoostingGrader",
    "CandidateResult",
    "ForestGrader",
    "GradingConfig",
    "GradingModel",
    "GradingResult",
    "LogisticGrader",
    "PaperTables",
    "SVMGrader",
    "SoftVoteGrader",
    "TunedSVC",
    "binary_metrics",
    "compare_models",
    "cross_validate_grading",
    "load_model",
    "make_candidate",
    "paper_tables",
    "save_model",
    "split_evaluate_grading",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
