"""The paper's SVM grid and the names of the grading models, shared by the settings
(:mod:`gliorad.grading.config`) and the estimators (:mod:`gliorad.grading.model`,
:mod:`gliorad.grading.candidates`), which import nothing of each other at module level."""

from __future__ import annotations

__all__ = ["CANDIDATE_NAMES", "MODEL_CHOICES", "PAPER_C", "PAPER_GAMMA"]

#: Paper-sized SVM grid: C in 2^-3..2^7, gamma in 2^-9..2^1 (11 x 11 points).
PAPER_C = tuple(2.0**e for e in range(-3, 8))
PAPER_GAMMA = tuple(2.0**e for e in range(-9, 2))

#: The grading candidates (``grading.model: NAME``), in the order that breaks ties of the
#: automatic choice: the paper's recipe first, then the simpler models, the ensemble last
#: (:data:`gliorad.grading.candidates.CANDIDATES` builds each).
CANDIDATE_NAMES = ("paper", "logistic_l1", "logistic_enet", "svm", "rf", "extra_trees", "hgb",
                   "ensemble")
#: Every value of ``grading.model``: a candidate, or ``auto`` (chosen by inner cross-validation).
MODEL_CHOICES = ("auto", *CANDIDATE_NAMES)
