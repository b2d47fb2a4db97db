"""gliorad.estimators.keep_params: every estimator's ``__init__`` stores its arguments unchanged,
under their own names, and nothing else (the scikit-learn contract that ``get_params`` and
``clone`` rely on)."""

from __future__ import annotations

import pytest
from sklearn.base import BaseEstimator, clone

from gliorad.estimators import keep_params
from gliorad.grading.auto import AutoGradingModel
from gliorad.grading.candidates import (
    BoostingGrader,
    ForestGrader,
    LogisticGrader,
    SoftVoteGrader,
    SVMGrader,
)
from gliorad.grading.model import GradingModel, TunedSVC
from gliorad.grading.stacking import StackedGradingModel
from gliorad.selection import CorrelationFilter, LassoSelector, LeveneSelector, RandomForestTopK

ESTIMATORS = [LeveneSelector, LassoSelector, RandomForestTopK, CorrelationFilter, TunedSVC,
              GradingModel, LogisticGrader, SVMGrader, ForestGrader, BoostingGrader,
              SoftVoteGrader, AutoGradingModel, StackedGradingModel]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_init_stores_every_argument_unchanged_and_nothing_else(cls):
    values = {name: object() for name in cls._get_param_names()}  # distinct, by identity
    est = cls(**values)
    assert vars(est) == values
    assert all(est.get_params(deep=False)[n] is v for n, v in values.items())


def test_keep_params_reads_the_signature_keyword_only_included():
    class Toy(BaseEstimator):
        def __init__(self, a: int = 1, *, b: str = "x"):
            keep_params(self, locals())

    toy = Toy(3, b="y")
    assert (toy.a, toy.b) == (3, "y")
    assert clone(toy).get_params() == {"a": 3, "b": "y"}


def test_keep_params_with_an_argument_missing_fails():
    class Broken(BaseEstimator):
        def __init__(self, a: int = 1):
            keep_params(self, {})

    with pytest.raises(KeyError, match="'a'"):
        Broken()
