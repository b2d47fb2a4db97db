"""Grading candidates beside the paper's recipe, each one scikit-learn estimator (HGG vs LGG).

The paper's :class:`~gliorad.grading.model.GradingModel` (Levene -> LASSO -> RF top-k -> tuned
RBF SVM) is one candidate; the others use every feature:

- :class:`LogisticGrader` -- impute -> z-score -> logistic regression whose ``C`` (and elastic-net
  mixing ``l1_ratio``) is chosen by stratified inner CV on the ROC AUC
  (:class:`~sklearn.linear_model.LogisticRegressionCV`): ``l1_ratios=(1.0,)`` is the L1
  (LASSO) model, e.g. ``(0.25, 0.5, 0.75)`` the elastic net. Its non-zero coefficients are the
  features it selects.
- :class:`SVMGrader` -- impute -> z-score -> :class:`~gliorad.grading.model.TunedSVC` on all
  features: the paper's RBF SVM without its selection. ``gamma`` scales with the number of
  features an RBF kernel sums over, so the grid is the paper's moved from its ``rf_k`` features
  to all ``p``: ``gamma * reference_features / p`` (``reference_features=None`` keeps it).
- :class:`ForestGrader` -- impute -> random forest (``kind="rf"``) or extremely randomised trees
  (``"extra_trees"``) on all features.
- :class:`BoostingGrader` -- histogram gradient boosting; missing cells are routed natively
  (no imputation), small learning rate, no early stopping (its hold-out would take patients from
  small cohorts).
- :class:`SoftVoteGrader` -- the mean HGG probability of given candidates (the ``ensemble`` of
  :class:`~gliorad.grading.auto.AutoGradingModel`: its best candidates by inner CV).

Every candidate, like the paper's model, accepts NaN cells and a DataFrame, is binary only, and
after fitting has what the evaluation, ``grade fit``, persistence and the bundle read:
``classes_``, ``feature_names_in_`` (DataFrame input), ``n_features_in_``,
``selected_features_`` (the features the fitted model uses: non-zero coefficients of the
logistic models, every feature of the others), ``stage_features_`` and ``active_steps_`` (one
step, ``model``), ``importances_`` (of each used feature: the forests' impurity importance,
the logistic models' absolute z-scored coefficient, NaN where the model has none),
``best_params_`` (what its inner search chose, or its fixed sizes), ``inner_score_`` (its inner
CV AUC; NaN without an inner search), ``n_imputed_cells_`` (missing training cells) and
:meth:`decision_score` (the HGG probability).

:data:`CANDIDATES` builds each single candidate from the grading settings (``grading.model:
NAME``); :func:`gliorad.grading.auto.make_candidate` adds ``auto`` and ``ensemble`` (which search
these). The fixed sizes (500 trees, 9 ``C`` values, 200 boosting rounds) keep ``grade cv --model
auto`` on a 170 x 724 table under 10 minutes on 2 cores (bench/grading_models.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from gliorad.errors import GlioradInputError, check_option
from gliorad.estimators import keep_params
from gliorad.grading.defaults import PAPER_C, PAPER_GAMMA
from gliorad.grading.model import (
    GradingClassifier,
    GradingModel,
    binary_training_data,
    check_class_weight,
    inner_folds,
    input_names,
)

__all__ = [
    "CANDIDATES",
    "ENET_L1_RATIOS",
    "FOREST_KINDS",
    "LOGISTIC_CS",
    "BoostingGrader",
    "CandidateModel",
    "ForestGrader",
    "GradingSettings",
    "LogisticGrader",
    "SVMGrader",
    "SoftVoteGrader",
    "input_names",
    "record_fit",
    "single_candidates",
    "with_jobs",
]

#: ``C`` grid of the logistic candidates (z-scored features): 1e-3 (nearly every coefficient
#: zero) to 10 (weak penalty), 9 points.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 1, 9))
#: Elastic-net mixing of the ``logistic_enet`` candidate (1 would be the L1 model).
ENET_L1_RATIOS = (0.25, 0.5, 0.75)
FOREST_KINDS = {"rf": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}


def with_jobs(est: BaseEstimator, n_jobs: int | None) -> BaseEstimator:
    """``est`` with ``n_jobs`` set where it has that parameter (every gliorad grader has)."""
    return est.set_params(n_jobs=n_jobs) if "n_jobs" in est.get_params(deep=False) else est


def record_fit(est: BaseEstimator, names: list[str], used: list[str],
               importances: dict[str, float], best_params: dict[str, Any],
               inner_score: float) -> None:
    """Set the fitted attributes every candidate shares (see the module text)."""
    est.selected_features_ = list(used)
    est.stage_features_ = {"impute": list(names), "model": list(used)}
    est.active_steps_ = ["model"]
    est.importances_ = {f: float(importances.get(f, np.nan)) for f in used}
    est.best_params_ = dict(best_params)
    est.inner_score_ = float(inner_score)


class CandidateModel(GradingClassifier, BaseEstimator):
    """Base of the single-estimator candidates: checks the data, fits ``_build(X, y)`` (the
    inner estimator, kept in ``estimator_``) and records the shared fitted attributes from
    ``_describe(names)``. Subclasses define those two and their parameters."""

    def _build(self, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
        raise NotImplementedError

    def _describe(self, names: list[str]) -> tuple[list[str], dict[str, float], dict, float]:
        raise NotImplementedError

    def _imputer(self) -> SimpleImputer:
        check_option("impute", self.impute, ("median", "mean"))
        return SimpleImputer(strategy=self.impute, keep_empty_features=True)

    def fit(self, X, y):
        """Fit the candidate on ``X`` (NaN cells allowed) and ``y`` (two classes)."""
        X, y = binary_training_data(self, X, y)
        check_class_weight(self.class_weight)
        self.n_imputed_cells_ = int(np.isnan(X).sum())
        self.estimator_ = self._build(X, y)
        with self._threads():
            self.estimator_.fit(X, y)
        self.classes_ = self.estimator_.classes_
        record_fit(self, input_names(self), *self._describe(input_names(self)))
        return self

    def _threads(self) -> AbstractContextManager:
        """The context of the inner estimator's fit and predictions (none: its ``n_jobs``
        decides)."""
        return nullcontext()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "estimator_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        with self._threads():
            return self.estimator_.predict_proba(X)


class LogisticGrader(CandidateModel):
    """Impute -> z-score -> penalised logistic regression, ``C`` x ``l1_ratio`` chosen by
    stratified inner CV on the ROC AUC.

    Parameters
    ----------
    l1_ratios : tuple of float
        Elastic-net mixing values searched; ``(1.0,)`` is the L1 (LASSO) model (liblinear
        solver), anything else the elastic net (saga solver, tolerance 1e-3).
    Cs : tuple of float
        Inverse penalty strengths searched (:data:`LOGISTIC_CS`).
    cv : int
        Inner stratified folds (reduced to the smallest class when needed).
    impute : "median" or "mean"
    class_weight : None, "balanced" or dict
    max_iter : int
    random_state : int or None
        Seeds the inner folds and the solver.
    n_jobs : int or None
        Parallel inner folds.

    Attributes (besides the shared ones, see the module text)
    ----------
    estimator_ : Pipeline (``impute``, ``zscore``, ``logistic``)
    n_iter_ : int
        Most solver iterations of any fit of the inner search.
    """

    def __init__(self, l1_ratios: tuple[float, ...] = (1.0,),
                 Cs: tuple[float, ...] = LOGISTIC_CS, cv: int = 5, impute: str = "median",
                 class_weight: Any = None, max_iter: int = 1000,
                 random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    def _build(self, X, y):
        ratios = [float(r) for r in np.atleast_1d(self.l1_ratios)]
        cs = [float(c) for c in np.atleast_1d(self.Cs)]
        if not ratios or any(not 0 <= r <= 1 for r in ratios):
            raise GlioradInputError(f"l1_ratios {self.l1_ratios!r} is not valid; expected "
                                    "numbers in [0, 1]")
        if not cs or min(cs) <= 0:
            raise GlioradInputError(f"Cs {self.Cs!r} is not valid; expected positive numbers")
        lasso = ratios == [1.0]
        extra = ({"use_legacy_attributes": False}
                 if "use_legacy_attributes" in LogisticRegressionCV().get_params() else {})
        logistic = LogisticRegressionCV(
            Cs=cs, l1_ratios=ratios, scoring="roc_auc",
            cv=inner_folds(type(self).__name__, self.cv, y, self.random_state),
            solver="liblinear" if lasso else "saga", tol=1e-4 if lasso else 1e-3,
            max_iter=self.max_iter, class_weight=self.class_weight,
            random_state=self.random_state, n_jobs=self.n_jobs, **extra)
        return Pipeline([("impute", self._imputer()), ("zscore", StandardScaler()),
                         ("logistic", logistic)])

    def _describe(self, names):
        lr = self.estimator_.named_steps["logistic"]
        coef = np.ravel(lr.coef_)
        used = [n for n, c in zip(names, coef, strict=True) if c != 0]
        weight = {n: abs(float(c)) for n, c in zip(names, coef, strict=True)}
        scores = np.asarray(lr.scores_, dtype=float)  # (folds, l1_ratios, Cs)
        best = {"C": float(np.ravel(lr.C_)[0]), "l1_ratio": float(np.ravel(lr.l1_ratio_)[0])}
        self.n_iter_ = int(np.max(lr.n_iter_))
        return used, weight, best, float(np.nanmax(scores.mean(axis=0)))


class SVMGrader(CandidateModel):
    """Impute -> z-score -> :class:`~gliorad.grading.model.TunedSVC` on every feature (the
    paper's RBF SVM without its selection).

    Parameters
    ----------
    C_grid, gamma_grid : tuple of float
        The grid (the paper's by default); ``gamma`` is multiplied by
        ``reference_features / n_features`` when ``reference_features`` is set.
    reference_features : int or None
        The number of features ``gamma_grid`` was meant for (the paper's grid: its ``rf_k`` = 8
        selected features); None uses ``gamma_grid`` as it is.
    cv, impute, class_weight, random_state, n_jobs
        As :class:`~gliorad.grading.model.TunedSVC` / :class:`LogisticGrader`.
    """

    def __init__(self, C_grid: tuple[float, ...] = PAPER_C,
                 gamma_grid: tuple[float, ...] = PAPER_GAMMA, reference_features: int | None = 8,
                 cv: int = 5, impute: str = "median", class_weight: Any = None,
                 random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    def _build(self, X, y):
        from gliorad.grading.model import TunedSVC

        ref = self.reference_features
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int | np.integer)
                                or ref < 1):
            raise GlioradInputError(f"reference_features {ref!r} is not valid; expected a "
                                    "positive integer or None")
        scale = 1.0 if ref is None else ref / X.shape[1]
        gammas = tuple(float(g) * scale for g in np.atleast_1d(self.gamma_grid))
        svm = TunedSVC(C_grid=tuple(self.C_grid), gamma_grid=gammas, cv=self.cv,
                       class_weight=self.class_weight, random_state=self.random_state,
                       n_jobs=self.n_jobs)
        return Pipeline([("impute", self._imputer()), ("zscore", StandardScaler()), ("svm", svm)])

    def _describe(self, names):
        svm = self.estimator_.named_steps["svm"]
        return list(names), {}, dict(svm.best_params_), float(svm.best_score_)


class ForestGrader(CandidateModel):
    """Impute -> random forest (``kind="rf"``) or extremely randomised trees
    (``"extra_trees"``) on every feature.

    Parameters
    ----------
    kind : "rf" or "extra_trees"
    n_estimators, max_features, min_samples_leaf
        Of the forest (500 trees, ``sqrt`` of the features per split, leaves of 1).
    impute, class_weight, random_state, n_jobs
        As :class:`LogisticGrader` (``n_jobs``: trees fitted in parallel).
    """

    def __init__(self, kind: str = "rf", n_estimators: int = 500, max_features: Any = "sqrt",
                 min_samples_leaf: int = 1, impute: str = "median", class_weight: Any = None,
                 random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    def _build(self, X, y):
        check_option("kind", self.kind, FOREST_KINDS)
        forest = FOREST_KINDS[self.kind](
            n_estimators=self.n_estimators, max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf, class_weight=self.class_weight,
            random_state=self.random_state, n_jobs=self.n_jobs)
        return Pipeline([("impute", self._imputer()), ("forest", forest)])

    def _describe(self, names):
        forest = self.estimator_.named_steps["forest"]
        importance = dict(zip(names, map(float, forest.feature_importances_), strict=True))
        return (list(names), importance, {"n_estimators": int(self.n_estimators),
                                          "max_features": self.max_features}, float("nan"))


class BoostingGrader(CandidateModel):
    """Histogram gradient boosting on every feature; missing cells are routed natively.

    Parameters
    ----------
    learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization
        Of :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (fixed sizes for cohorts
        of tens to hundreds of patients: 200 rounds of 0.05, trees of 8 leaves of at least 10
        patients, L2 1.0; no early stopping).
    class_weight, random_state
    n_jobs : int or None
        OpenMP threads of the fit and the predictions, read as scikit-learn reads ``n_jobs``
        (None: one, unless in a :func:`joblib.parallel_config` context; -1: every core).

    Attributes (besides the shared ones, see the module text)
    ----------
    estimator_ : HistGradientBoostingClassifier
    n_iter_ : int
        Boosting rounds run (``max_iter``: no early stopping).
    """

    def __init__(self, learning_rate: float = 0.05, max_iter: int = 200,
                 max_leaf_nodes: int = 8, min_samples_leaf: int = 10,
                 l2_regularization: float = 1.0, class_weight: Any = None,
                 random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    def _build(self, X, y):
        return HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization, early_stopping=False,
            class_weight=self.class_weight, random_state=self.random_state)

    def _threads(self) -> AbstractContextManager:
        # OpenMP threads as scikit-learn reads n_jobs (None: one, -1: every core), not the
        # library's default of every core: folds fitted in parallel, or other jobs on the
        # machine, would otherwise be oversubscribed (OpenMP's waiting threads then slow a
        # small fit down many times over)
        from joblib import effective_n_jobs
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=max(1, effective_n_jobs(self.n_jobs)),
                                 user_api="openmp")

    def _describe(self, names):
        best = {"learning_rate": float(self.learning_rate), "max_iter": int(self.max_iter),
                "max_leaf_nodes": int(self.max_leaf_nodes)}
        self.n_iter_ = int(self.estimator_.n_iter_)
        return list(names), {}, best, float("nan")


class SoftVoteGrader(GradingClassifier, BaseEstimator):
    """The mean HGG probability of several candidates (soft vote, equal weights).

    Parameters
    ----------
    estimators : list of (name, estimator)
        The members, each cloned and fitted on the same data (with its column names: a
        DataFrame is passed on as it is).
    n_jobs : int or None
        Given to each member.

    Attributes (besides the shared ones, see the module text)
    ----------
    estimators_ : list of (name, fitted estimator)
        ``selected_features_`` is the union of the members' (in member order), ``best_params_``
        names the members.
    """

    def __init__(self, estimators: list[tuple[str, Any]] | None = None,
                 n_jobs: int | None = None):
        keep_params(self, locals())

    def _members(self) -> list[tuple[str, Any]]:
        members = list(self.estimators or [])
        names = [str(n) for n, _ in members]
        if not members:
            raise GlioradInputError(f"{type(self).__name__}: estimators is empty; give "
                                    "(name, estimator) pairs")
        if len(set(names)) != len(names):
            raise GlioradInputError(f"{type(self).__name__}: member names repeat: {names}")
        return members

    def fit(self, X, y):
        """Fit a clone of every member on ``X``, ``y``."""
        members = self._members()
        Xc, y = binary_training_data(self, X, y)
        data = X if hasattr(X, "iloc") else Xc
        fitted = [(str(n), with_jobs(clone(e), self.n_jobs).fit(data, y)) for n, e in members]
        return self.set_fitted(fitted, int(np.isnan(Xc).sum()))

    def set_fitted(self, fitted: list[tuple[str, Any]], n_missing: int) -> SoftVoteGrader:
        """Take already fitted members (fitted on this estimator's data, whose checks
        ``fit`` or the caller did) instead of fitting them: how
        :class:`~gliorad.grading.auto.AutoGradingModel` builds its ensemble from the candidates
        it has refitted anyway."""
        classes = [tuple(e.classes_) for _, e in fitted]
        if len(set(classes)) != 1:
            raise GlioradInputError(f"{type(self).__name__}: the members were fitted on "
                                    f"different classes: {classes}")
        first = fitted[0][1]
        if not hasattr(self, "n_features_in_"):  # members fitted elsewhere: their columns
            self.n_features_in_ = first.n_features_in_
            if hasattr(first, "feature_names_in_"):
                self.feature_names_in_ = first.feature_names_in_
        self.estimators_ = list(fitted)
        self.classes_ = np.asarray(first.classes_)
        self.n_imputed_cells_ = int(n_missing)
        names = input_names(fitted[0][1])
        used = [f for f in names if any(f in set(e.selected_features_) for _, e in fitted)]
        record_fit(self, names, used, {}, {"members": [n for n, _ in fitted]}, float("nan"))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """The members' mean class probabilities."""
        check_is_fitted(self, "estimators_")
        Xc = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        data = X if hasattr(X, "iloc") else Xc
        return np.mean([e.predict_proba(data) for _, e in self.estimators_], axis=0)


# ------------------------------------------------------------------------------- registry
class GradingSettings(Protocol):
    """What the builders read of :class:`~gliorad.grading.config.GradingConfig` (a protocol, so
    that this module does not import the settings, which build models through it)."""

    impute: str
    class_weight: Any
    seed: int
    inner_cv: int
    svm_C: tuple[float, ...]
    svm_gamma: tuple[float, ...]
    rf_k: int
    candidates: tuple[str, ...] | None

    def model_params(self) -> dict[str, Any]: ...

    def searched(self) -> tuple[str, ...]: ...


def _common(s: GradingSettings | None) -> dict[str, Any]:
    """The settings every candidate shares (None: the estimators' defaults, the paper's)."""
    return {} if s is None else {"impute": s.impute, "class_weight": s.class_weight,
                                 "random_state": s.seed}


def _paper(s: GradingSettings | None, n_jobs: int | None) -> BaseEstimator:
    return GradingModel(**({} if s is None else s.model_params()), n_jobs=n_jobs)


def _logistic(ratios: tuple[float, ...]) -> Callable[..., BaseEstimator]:
    def build(s: GradingSettings | None, n_jobs: int | None) -> BaseEstimator:
        cv = {} if s is None else {"cv": s.inner_cv}
        return LogisticGrader(l1_ratios=ratios, **cv, **_common(s), n_jobs=n_jobs)
    return build


def _svm(s: GradingSettings | None, n_jobs: int | None) -> BaseEstimator:
    grid = {} if s is None else {"C_grid": tuple(s.svm_C), "gamma_grid": tuple(s.svm_gamma),
                                 "reference_features": s.rf_k, "cv": s.inner_cv}
    return SVMGrader(**grid, **_common(s), n_jobs=n_jobs)


def _forest(kind: str) -> Callable[..., BaseEstimator]:
    def build(s: GradingSettings | None, n_jobs: int | None) -> BaseEstimator:
        return ForestGrader(kind=kind, **_common(s), n_jobs=n_jobs)
    return build


def _boosting(s: GradingSettings | None, n_jobs: int | None) -> BaseEstimator:
    common = _common(s)
    common.pop("impute", None)  # missing cells are routed natively
    return BoostingGrader(**common, n_jobs=n_jobs)


#: name -> builder ``(settings or None, n_jobs) -> unfitted estimator`` of every single
#: candidate (``ensemble`` and ``auto`` search these: :func:`gliorad.grading.auto.make_candidate`).
#: ``None`` settings give each estimator's defaults, which are the ``paper`` preset's.
CANDIDATES: dict[str, Callable[[GradingSettings | None, int | None], BaseEstimator]] = {
    "paper": _paper,
    "logistic_l1": _logistic((1.0,)),
    "logistic_enet": _logistic(ENET_L1_RATIOS),
    "svm": _svm,
    "rf": _forest("rf"),
    "extra_trees": _forest("extra_trees"),
    "hgb": _boosting,
}


def single_candidates(settings: GradingSettings | None = None,
                      names: tuple[str, ...] | None = None,
                      n_jobs: int | None = None) -> list[tuple[str, BaseEstimator]]:
    """``(name, unfitted estimator)`` of the single candidates ``names`` (None: all), in the
    tie-breaking order of :data:`~gliorad.grading.defaults.CANDIDATE_NAMES`."""
    wanted = set(CANDIDATES if names is None else names)
    unknown = sorted(wanted - set(CANDIDATES))
    if unknown:
        raise GlioradInputError(f"candidates {', '.join(unknown)} not known; expected names "
                                f"among: {', '.join(CANDIDATES)}")
    return [(n, build(settings, n_jobs)) for n, build in CANDIDATES.items() if n in wanted]
