"""The paper's SVM grid, shared by the settings (:mod:`gliorad.grading.config`) and the estimator
(:mod:`gliorad.grading.model`), which import nothing of each other at module level."""

from __future__ import annotations

__all__ = ["PAPER_C", "PAPER_GAMMA"]

#: Paper-sized SVM grid: C in 2^-3..2^7, gamma in 2^-9..2^1 (11 x 11 points).
PAPER_C = tuple(2.0**e for e in range(-3, 8))
PAPER_GAMMA = tuple(2.0**e for e in range(-9, 2))
