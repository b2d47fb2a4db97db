"""Feature selectors of the grading model, as scikit-learn transformers.

The paper (Xu et al. 2022, "Tumor segmentation and grading") reduces ~1300 fused features with
z-score -> Levene's test -> LASSO -> random-forest importance (100 trees, top 8) before an RBF SVM.
Each step is one transformer here, so that a :class:`~sklearn.pipeline.Pipeline` refits it on
every training fold and cross-validation cannot leak:

=========================  =================================================================
:class:`LeveneSelector`    keep features whose **variance differs between the classes**
                           (Levene / Brown-Forsythe test, ``p < alpha``)
:class:`LassoSelector`     keep features with a non-zero L1 coefficient at the CV-chosen
                           penalty (L1 logistic regression by default, or ``Lasso`` on 0/1)
:class:`RandomForestTopK`  keep the ``k`` features with the largest impurity importance
:class:`CorrelationFilter` drop features correlated above a threshold with a more relevant one
=========================  =================================================================

All follow the scikit-learn contract (``__init__`` stores arguments, validation in ``fit``,
fitted state ends in ``_``, ``get_support`` / ``get_feature_names_out`` from
:class:`~sklearn.feature_selection.SelectorMixin`).

**Too few survivors.** A filter that keeps fewer than ``min_features`` features does not hand an
empty (or too small) table to the next step: it keeps the ``min_features`` best-ranked features
instead (smallest P for Levene, earliest entry on the L1 path for LASSO), sets ``fallback_`` and
emits a :class:`SelectionFallbackWarning` that says how many passed and what was kept. Features
whose score is undefined (a constant column has no variance to compare) are ranked last and
counted in ``n_undefined_``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import sklearn
from scipy import stats as sps
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectorMixin, f_classif
from sklearn.linear_model import LassoCV, LogisticRegression, LogisticRegressionCV, lasso_path
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from gliorad.errors import GlioradInputError, check_option
from gliorad.estimators import keep_params

__all__ = [
    "CorrelationFilter",
    "LassoSelector",
    "LeveneSelector",
    "RandomForestTopK",
    "SelectionFallbackWarning",
    "feature_groups",
    "split_k",
]

LEVENE_CENTERS = ("median", "mean", "trimmed")
LEVENE_TESTS = ("variance", "ttest")
LASSO_METHODS = ("logistic", "lasso")
CORRELATION_METHODS = ("pearson", "spearman")
_SKLEARN_18 = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)
_PATH_POINTS = 20  # penalties on the path that ranks features for the LASSO fallback
_HAS_LEGACY_ATTRS = "use_legacy_attributes" in LogisticRegressionCV().get_params()


def feature_groups(names: Sequence[str], prefixes: Sequence[str] | None) -> list[list[int]]:
    """Positions of each feature *source* in ``names`` for selection per source.

    A column belongs to the first prefix it starts with, or whose part after the last ``/`` (the
    fused tables' ``<set>/<feature>`` names) starts with; the other columns form one more group,
    listed first. Empty groups are dropped; no prefixes: one group of everything.
    """
    if not prefixes:
        return [list(range(len(names)))]
    prefixes = [str(p) for p in prefixes]
    if any(not p for p in prefixes):
        raise GlioradInputError(f"feature_groups {prefixes}: a prefix is empty")
    groups: list[list[int]] = [[] for _ in range(len(prefixes) + 1)]
    for i, n in enumerate(map(str, names)):
        base = n.rsplit("/", 1)[-1]
        hit = next((j for j, p in enumerate(prefixes) if n.startswith(p) or base.startswith(p)),
                   len(prefixes))
        groups[hit].append(i)
    return [g for g in (groups[-1], *groups[:-1]) if g]


def split_k(k: int, n_groups: int, what: str = "rf_k") -> list[int]:
    """``k`` slots shared by ``n_groups`` as evenly as possible (the first groups get the rest)."""
    if k < n_groups:
        raise GlioradInputError(
            f"{what}={k} is smaller than the {n_groups} feature groups; expected {what} >= the "
            "number of groups (each source keeps at least one feature)")
    return [k // n_groups + (1 if i < k % n_groups else 0) for i in range(n_groups)]


class SelectionFallbackWarning(UserWarning):
    """A selector kept its ``min_features`` best-ranked features because too few passed."""


# ------------------------------------------------------------------------------------ helpers
def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise GlioradInputError(f"{name} {value!r} is not valid; expected an integer >= {minimum}")
    return int(value)


def _label(value: Any) -> str:
    """A class label as the user wrote it (numpy scalars as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_classes(estimator: str, y: np.ndarray, min_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes and integer codes of ``y``; at least 2 classes with ``min_per_class`` each."""
    check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise GlioradInputError(
            f"{estimator}: y has only one class ({_label(classes[0])}); expected at least 2 classes "
            "(one class is not enough)"
        )
    counts = np.bincount(codes)
    if counts.min() < min_per_class:
        small = classes[np.argmin(counts)]
        raise GlioradInputError(
            f"{estimator}: class {_label(small)} has {counts.min()} sample(s); expected at least "
            f"{min_per_class} per class"
        )
    return classes, codes


def _keep_best(
    estimator: str, ranking: np.ndarray, passed: np.ndarray, min_features: int, criterion: str
) -> tuple[np.ndarray, bool]:
    """``passed`` if it has ``min_features`` features, else the ``min_features`` first of ``ranking``.

    ``ranking`` lists feature indices best first. Returns the boolean mask and whether the
    fallback was used (with a :class:`SelectionFallbackWarning`).
    """
    n_features = passed.size
    n_passed = int(passed.sum())
    if n_passed >= min(min_features, n_features):
        return passed, False
    keep = np.zeros(n_features, dtype=bool)
    keep[ranking[:min_features]] = True
    warnings.warn(
        f"{estimator}: only {n_passed} of {n_features} features passed ({criterion}); keeping "
        f"the {int(keep.sum())} best-ranked features instead (min_features={min_features})",
        SelectionFallbackWarning,
        stacklevel=3,
    )
    return keep, True


class _Selector(SelectorMixin, BaseEstimator):
    """Shared plumbing: ``support_`` is the mask, ``get_support`` needs a fitted selector."""

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# ------------------------------------------------------------------------------------- Levene
class LeveneSelector(_Selector):
    """Keep the features whose variance differs between the classes (Levene's test, P < alpha).

    ``test="variance"`` (default, the paper's wording): for each feature, Levene's test compares
    the spread of the feature in the classes; the feature is kept when ``p < alpha``. It tests
    *variance*, not mean, so a feature whose classes differ only in location is not kept by this
    step (the LASSO and random-forest steps only see what Levene keeps).

    ``test="ttest"`` (an option, not the paper's wording): the common radiomics recipe "Levene's
    test, then t-test": Levene's ``p`` decides between Student's (``p >= alpha``, equal
    variances) and Welch's t-test, and the feature is kept when the t-test's ``p < alpha``, i.e.
    when the class *means* differ. Binary labels only.

    Parameters
    ----------
    alpha : float, default 0.05
        Keep features with ``p < alpha`` (paper: 0.05).
    test : {"variance", "ttest"}, default "variance"
    center : {"median", "mean", "trimmed"}, default "median"
        Centre of the absolute deviations: ``"median"`` is the Brown-Forsythe variant and
        :func:`scipy.stats.levene`'s default (what a Python pipeline such as the paper's gets by
        calling it without arguments); ``"mean"`` is Levene's original test.
    min_features : int, default 1
        Fewest features to keep; when fewer pass, the ``min_features`` smallest P values are
        kept with a :class:`SelectionFallbackWarning`.

    Attributes
    ----------
    statistic_, pvalues_ : ndarray (n_features,)
        The statistic and P value the selection used (Levene's W, or the t statistic); NaN for
        features with no spread in any class (constant), which are never kept by the test and
        are counted in ``n_undefined_``.
    levene_pvalues_ : ndarray (n_features,)
        Levene's P value (equal to ``pvalues_`` for ``test="variance"``).
    support_ : ndarray of bool
    fallback_ : bool
    """

    def __init__(self, alpha: float = 0.05, test: str = "variance", center: str = "median",
                 min_features: int = 1):
        keep_params(self, locals())

    def fit(self, X, y):
        """Compute Levene's test per feature between the classes of ``y``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        if not (isinstance(self.alpha, float | int) and 0.0 < float(self.alpha) < 1.0):
            raise GlioradInputError(f"alpha {self.alpha!r} is not valid; expected 0 < alpha < 1")
        check_option("test", self.test, LEVENE_TESTS)
        check_option("center", self.center, LEVENE_CENTERS)
        min_features = _check_positive_int("min_features", self.min_features)
        classes, codes = _check_classes(type(self).__name__, y, min_per_class=2)
        if self.test == "ttest" and classes.size != 2:
            raise GlioradInputError(f"LeveneSelector(test='ttest') needs binary labels; y has "
                                    f"{classes.size} classes. Use test='variance'")
        groups = [X[codes == c] for c in range(classes.size)]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            # constant features give 0/0; their NaN P is handled below, not hidden
            warnings.simplefilter("ignore", RuntimeWarning)
            stat, p = sps.levene(*groups, center=self.center, axis=0)
            self.levene_pvalues_ = np.asarray(p, dtype=float).reshape(-1)
            if self.test == "ttest":
                equal = ~(self.levene_pvalues_ < float(self.alpha))
                student = sps.ttest_ind(groups[0], groups[1], axis=0, equal_var=True)
                welch = sps.ttest_ind(groups[0], groups[1], axis=0, equal_var=False)
                stat = np.where(equal, student.statistic, welch.statistic)
                p = np.where(equal, student.pvalue, welch.pvalue)
        self.statistic_ = np.asarray(stat, dtype=float).reshape(-1)
        self.pvalues_ = np.asarray(p, dtype=float).reshape(-1)
        undefined = ~np.isfinite(self.pvalues_)
        self.n_undefined_ = int(undefined.sum())
        passed = np.where(undefined, False, self.pvalues_ < float(self.alpha))
        ranking = np.argsort(np.where(undefined, np.inf, self.pvalues_), kind="stable")
        self.support_, self.fallback_ = _keep_best(
            type(self).__name__, ranking, passed, min_features,
            f"{'Levene' if self.test == 'variance' else 'Levene + t-test'} p < {self.alpha}"
        )
        return self


# -------------------------------------------------------------------------------------- LASSO
class LassoSelector(_Selector):
    """Keep the features with a non-zero LASSO coefficient at the cross-validated penalty.

    The paper says "LASSO" without saying which; two are offered:

    * ``method="logistic"`` (default): L1-penalised logistic regression,
      :class:`~sklearn.linear_model.LogisticRegressionCV` over ``n_strengths`` values of ``C``
      (log-spaced 1e-4..1e4), stratified ``cv``-fold CV on the log-loss (glmnet's default
      ``type.measure = "deviance"``), liblinear solver (saga for more than two classes).
    * ``method="lasso"``: :class:`~sklearn.linear_model.LassoCV` (least squares with an L1
      penalty) on the labels coded 0/1, over ``n_strengths`` alphas, shuffled ``cv``-fold CV
      on the squared error. Binary labels only.

    Inputs should be standardised (the grading pipeline z-scores first).

    Parameters
    ----------
    method : {"logistic", "lasso"}
    n_strengths : int, default 10
        Number of penalty strengths on the CV grid.
    cv : int, default 5
        Folds of the internal CV (reduced to the smallest class size when needed).
    min_features : int, default 1
        Fewest features to keep; when fewer coefficients are non-zero, the features that enter
        the L1 path first as the penalty is relaxed from the chosen one (20 log-spaced steps
        over 4 decades) are kept, with a warning.
    class_weight : None, "balanced" or dict
        Logistic method only.
    max_iter : int, default 1000
    random_state : int, default 0
        Seeds the CV shuffling and the solvers.

    Attributes
    ----------
    estimator_ : the fitted ``LogisticRegressionCV`` / ``LassoCV``
    coef_ : ndarray (n_features,)
        Absolute coefficient at the chosen penalty (largest over classes for multi-class).
    strength_ : float
        The chosen ``C`` (logistic) or ``alpha`` (lasso).
    n_iter_ : int
        Most solver iterations of the final fit.
    support_ : ndarray of bool
    fallback_ : bool
    """

    def __init__(
        self,
        method: str = "logistic",
        n_strengths: int = 10,
        cv: int = 5,
        min_features: int = 1,
        class_weight: str | None = None,
        max_iter: int = 1000,
        random_state: int | None = 0,
    ):
        keep_params(self, locals())

    def fit(self, X, y):
        """Fit the cross-validated L1 model and keep the features with non-zero coefficients."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_option("method", self.method, LASSO_METHODS)
        n_strengths = _check_positive_int("n_strengths", self.n_strengths)
        cv = _check_positive_int("cv", self.cv, minimum=2)
        min_features = _check_positive_int("min_features", self.min_features)
        max_iter = _check_positive_int("max_iter", self.max_iter)
        if self.class_weight is not None and self.class_weight != "balanced" \
                and not isinstance(self.class_weight, dict):
            raise GlioradInputError(f"class_weight {self.class_weight!r} is not valid; "
                                    "expected None, 'balanced' or a dict {class: weight}")
        classes, codes = _check_classes(type(self).__name__, y, min_per_class=2)
        n_folds = min(cv, int(np.bincount(codes).min()))
        with warnings.catch_warnings():
            # liblinear / coordinate descent may stop early on the weakest penalties of the
            # grid; those ends of the path are explored on purpose
            warnings.filterwarnings("ignore", message=".*converge.*")
            if self.method == "logistic":
                coef, strength, path = self._fit_logistic(X, codes, classes.size, n_strengths,
                                                          n_folds, max_iter)
            else:
                if classes.size != 2:
                    raise GlioradInputError(
                        f"LassoSelector(method='lasso') needs binary labels; y has "
                        f"{classes.size} classes. Use method='logistic' for more classes"
                    )
                coef, strength, path = self._fit_lasso(X, codes.astype(float), n_strengths,
                                                       n_folds, max_iter)
            self.coef_ = coef
            self.strength_ = strength
            passed = coef > 0
            if int(passed.sum()) < min(min_features, X.shape[1]):
                first, last = self._entry_from_path(path())
                ranking = np.lexsort((-last, first))
            else:
                ranking = np.argsort(-coef, kind="stable")
        self.support_, self.fallback_ = _keep_best(
            type(self).__name__, ranking, passed, min_features, "non-zero L1 coefficient"
        )
        return self

    # Each returns (|coef| at the chosen strength, the chosen strength, a function computing
    # the |coef| path over the grid, strongest penalty first; only called for the fallback).
    def _fit_logistic(self, X, codes, n_classes, n_strengths, n_folds, max_iter):
        solver = "liblinear" if n_classes == 2 else "saga"
        common = {"solver": solver, "max_iter": max_iter, "class_weight": self.class_weight,
                      "random_state": self.random_state}
        l1 = {"l1_ratio": 1.0} if _SKLEARN_18 else {"penalty": "l1"}
        l1s = {"l1_ratios": (1.0,)} if _SKLEARN_18 else {"penalty": "l1"}
        if _HAS_LEGACY_ATTRS:
            l1s["use_legacy_attributes"] = False
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state)
        model = LogisticRegressionCV(Cs=n_strengths, cv=folds, scoring="neg_log_loss", **l1s,
                                     **common).fit(X, codes)
        self.estimator_ = model
        self.n_iter_ = int(np.max(model.n_iter_))

        def path() -> np.ndarray:
            # from the chosen C towards weak penalties (small C = strong penalty first)
            chosen = float(np.ravel(model.C_)[0])
            return np.column_stack([
                np.abs(LogisticRegression(C=c, **l1, **common).fit(X, codes).coef_).max(axis=0)
                for c in np.geomspace(chosen, max(1e4, chosen * 1e4), _PATH_POINTS)
            ])

        return np.abs(model.coef_).max(axis=0), float(np.ravel(model.C_)[0]), path

    def _fit_lasso(self, X, target, n_strengths, n_folds, max_iter):
        folds = KFold(n_folds, shuffle=True, random_state=self.random_state)
        model = LassoCV(alphas=n_strengths, cv=folds, max_iter=max_iter,
                        random_state=self.random_state).fit(X, target)
        self.estimator_ = model
        self.n_iter_ = int(np.max(model.n_iter_))

        def path() -> np.ndarray:
            # from the chosen alpha towards weak penalties (large alpha = strong first)
            alphas = np.geomspace(model.alpha_, model.alpha_ * 1e-4, _PATH_POINTS)
            _, coefs, _ = lasso_path(X - X.mean(axis=0), target - target.mean(), alphas=alphas,
                                     max_iter=max_iter)
            return np.abs(coefs)

        return np.abs(model.coef_), float(model.alpha_), path

    @staticmethod
    def _entry_from_path(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of the first penalty where each feature is non-zero, |coef| at the weakest).

        ``path`` is (n_features, n_penalties) ordered strongest -> weakest penalty; features
        that never enter get index ``n_penalties`` (ranked last, then by column order).
        """
        nonzero = path > 0
        first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), path.shape[1])
        return first.astype(float), path[:, -1]


# ------------------------------------------------------------------------------ random forest
class RandomForestTopK(_Selector):
    """Keep the ``k`` features with the largest random-forest impurity importance.

    Paper: 100 trees, 8 features. Ties in importance keep the earlier column.

    Parameters
    ----------
    k : int, default 8
        Features to keep. With fewer input features all are kept (with a
        :class:`SelectionFallbackWarning`).
    n_estimators : int, default 100
    max_features : str, int or float, default "sqrt"
        Passed to :class:`~sklearn.ensemble.RandomForestClassifier`.
    class_weight : None, "balanced" or "balanced_subsample"
    random_state : int, default 0
    n_jobs : int or None

    Attributes
    ----------
    estimator_ : RandomForestClassifier
    importances_ : ndarray (n_features,)
        Mean decrease in impurity (``feature_importances_``).
    support_ : ndarray of bool
    """

    def __init__(
        self,
        k: int = 8,
        n_estimators: int = 100,
        max_features: str | float = "sqrt",
        class_weight: str | None = None,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ):
        keep_params(self, locals())

    def fit(self, X, y):
        """Fit the forest and keep the ``k`` most important features."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        k = _check_positive_int("k", self.k)
        n_estimators = _check_positive_int("n_estimators", self.n_estimators)
        _check_classes(type(self).__name__, y, min_per_class=1)
        self.estimator_ = RandomForestClassifier(
            n_estimators=n_estimators, max_features=self.max_features,
            class_weight=self.class_weight, random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(X, y)
        self.importances_ = self.estimator_.feature_importances_
        ranking = np.argsort(-self.importances_, kind="stable")
        keep = np.zeros(X.shape[1], dtype=bool)
        keep[ranking[:k]] = True
        self.fallback_ = X.shape[1] < k
        if self.fallback_:
            warnings.warn(
                f"RandomForestTopK: only {X.shape[1]} features reached the random forest; "
                f"keeping all of them (k={k})",
                SelectionFallbackWarning,
                stacklevel=2,
            )
        self.support_ = keep
        return self


# ------------------------------------------------------------------------------- redundancy
class CorrelationFilter(_Selector):
    """Drop features that are correlated above ``threshold`` with a feature already kept.

    Features are visited from most to least relevant (one-way ANOVA F against ``y`` when ``y``
    is given, else column order); a feature is kept unless ``|r|`` with an already kept feature
    exceeds ``threshold``. So of a redundant pair the more class-related one stays. Constant
    features have no defined correlation and are treated as uncorrelated (kept here; the
    Levene step drops them).

    Parameters
    ----------
    threshold : float, default 0.9
        Largest allowed absolute correlation, in (0, 1].
    method : {"pearson", "spearman"}

    Attributes
    ----------
    support_ : ndarray of bool
    redundant_with_ : dict
        Dropped feature index -> index of the kept feature it duplicates.
    """

    def __init__(self, threshold: float = 0.9, method: str = "pearson"):
        keep_params(self, locals())

    def fit(self, X, y=None):
        """Greedy redundancy filter over the features ordered by relevance to ``y``."""
        X = validate_data(self, X, dtype=np.float64) if y is None else \
            validate_data(self, X, y, dtype=np.float64)[0]
        if not (isinstance(self.threshold, float | int) and 0.0 < float(self.threshold) <= 1.0):
            raise GlioradInputError(
                f"threshold {self.threshold!r} is not valid; expected 0 < threshold <= 1")
        check_option("method", self.method, CORRELATION_METHODS)
        n_features = X.shape[1]
        order = np.arange(n_features)
        if y is not None and X.shape[0] > 2:
            _check_classes(type(self).__name__, np.asarray(y), min_per_class=1)
            with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                f_stat, _ = f_classif(X, y)
            order = np.argsort(-np.nan_to_num(f_stat, nan=-np.inf), kind="stable")
        data = sps.rankdata(X, axis=0) if self.method == "spearman" else X
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(np.corrcoef(data, rowvar=False)) if n_features > 1 else np.ones((1, 1))
        corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)  # constant columns: undefined -> 0
        keep = np.zeros(n_features, dtype=bool)
        kept: list[int] = []
        self.redundant_with_ = {}
        for j in order:
            if kept:
                partner = int(np.argmax(corr[j, kept]))
                if corr[j, kept[partner]] > float(self.threshold):
                    self.redundant_with_[int(j)] = kept[partner]
                    continue
            keep[j] = True
            kept.append(int(j))
        self.support_ = keep
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags
