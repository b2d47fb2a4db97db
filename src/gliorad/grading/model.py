"""The grading model: impute -> z-score -> Levene -> (correlation) -> LASSO -> RF top-k -> tuned SVM.

Everything that looks at the labels lives inside one scikit-learn estimator,
:class:`GradingModel`, so that ``cross_val_predict``, ``GridSearchCV`` or gliorad's own
:func:`~gliorad.grading.evaluate.cross_validate_grading` refit the whole selection on each
training fold. Nothing is fitted on the patients a fold is evaluated on.

Where the paper's grid search sits. The paper selects features on the training cohort, then runs
GridSearchCV for the SVM's ``C`` and ``gamma``. :class:`TunedSVC` does exactly that as the last
pipeline step: the grid's inner CV runs on the features the outer training fold selected. The
outer evaluation stays leak-free (the outer test patients are never seen); the inner grid scores
are slightly optimistic because the inner folds share the selection, which only affects which
``C``/``gamma`` wins, not the reported performance. Re-running the selection inside every inner
fold and grid point (121 points x 5 folds) would cost ~600x more for no change in what is
reported.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from gliorad import stats
from gliorad.errors import GlioradInputError, check_option
from gliorad.estimators import keep_params
from gliorad.grading.defaults import PAPER_C, PAPER_GAMMA
from gliorad.selection import (
    LEVENE_CENTERS,
    LEVENE_TESTS,
    CorrelationFilter,
    LassoSelector,
    LeveneSelector,
    RandomForestTopK,
    _label,
    feature_groups,
    split_k,
)

__all__ = ["BinaryProbabilityClassifier", "GradingClassifier", "GradingModel", "TunedSVC",
           "binary_target", "binary_training_data", "check_class_weight", "fit_quietly",
           "inner_folds", "input_names"]

log = logging.getLogger(__name__)

#: Names of the pipeline steps, in order (``passthrough`` when a step is switched off).
STEPS = ("impute", "zscore", "levene", "redundancy", "lasso", "rf", "svm")
LASSO_CHOICES = ("logistic", "lasso", "none")


def binary_target(name: str, y) -> np.ndarray:
    """Refuse anything but a two-class target, with scikit-learn's expected wording."""
    y = np.asarray(y)
    kind = type_of_target(y, input_name="y", raise_unknown=True)
    if kind != "binary":
        raise GlioradInputError(
            f"{name}: Only binary classification is supported. The type of the target is "
            f"{kind}; grading needs two classes (e.g. HGG vs LGG)"
        )
    classes = np.unique(y)
    if classes.size != 2:
        raise GlioradInputError(
            f"{name}: y has only one class ({_label(classes[0])}); grading needs 2 classes "
            "(one class is not enough)"
        )
    return classes


def binary_training_data(est: BaseEstimator, X, y, allow_nan: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as floats (NaN cells refused unless ``allow_nan``) and ``y``, checked by
    scikit-learn's ``validate_data`` (which records ``n_features_in_`` and ``feature_names_in_``
    on ``est``) and by :func:`binary_target`."""
    X, y = validate_data(est, X, y, dtype=np.float64,
                         ensure_all_finite="allow-nan" if allow_nan else True)
    binary_target(type(est).__name__, y)
    return X, y


def inner_folds(name: str, n_splits: int, y: np.ndarray, random_state) -> StratifiedKFold:
    """Stratified folds, fewer when the smallest class is smaller than ``n_splits``."""
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < 2:
        raise GlioradInputError(
            f"{name}: the smallest class has {smallest} sample(s); the inner cross-validation "
            "needs at least 2 per class"
        )
    return StratifiedKFold(min(int(n_splits), smallest), shuffle=True, random_state=random_state)


def check_class_weight(value) -> None:
    if value is not None and value != "balanced" and not isinstance(value, dict):
        raise GlioradInputError(
            f"class_weight {value!r} is not valid; expected None, 'balanced' or a dict "
            "{class: weight}")


class BinaryProbabilityClassifier(ClassifierMixin):
    """A binary classifier (no multi-class) whose ``predict`` is the class with the larger
    ``predict_proba``."""

    def predict(self, X) -> np.ndarray:
        """The class with the larger probability (agrees with :meth:`predict_proba`, which
        checks that the model is fitted)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class GradingClassifier(BinaryProbabilityClassifier):
    """A grading estimator (the paper's model and every candidate): binary, accepts NaN cells,
    and scores a patient by its HGG probability (:meth:`decision_score`)."""

    def decision_score(self, X) -> np.ndarray:
        """Probability of the positive class ``classes_[1]`` (HGG; the score AUCs are computed
        on)."""
        return self.predict_proba(X)[:, 1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def input_names(est: BaseEstimator) -> list[str]:
    """The fitted estimator's input column names (``x0``, ``x1``, ... for an array)."""
    if hasattr(est, "feature_names_in_"):
        return [str(n) for n in est.feature_names_in_]
    return [f"x{i}" for i in range(est.n_features_in_)]


class TunedSVC(BinaryProbabilityClassifier, BaseEstimator):
    """RBF SVM with ``C`` and ``gamma`` chosen by stratified grid-search CV, then Platt-scaled.

    The grid is scored on the mean inner-fold ROC AUC of the SVM's decision function (as
    ``GridSearchCV(..., scoring="roc_auc")``; a test checks they agree). The best ``(C, gamma)`` is then
    refitted on all the data and given probabilities by Platt scaling: a sigmoid fitted to
    ``cv``-fold cross-validated decision values, as libsvm's ``probability=True`` does. It is
    done with ``CalibratedClassifierCV(SVC(...), method="sigmoid", ensemble=False)``, the
    replacement scikit-learn 1.9 names for the deprecated ``SVC(probability=True)``, with seeded
    stratified folds. :meth:`predict` is the class with the larger probability, so it always
    agrees with :meth:`predict_proba`.

    Parameters
    ----------
    C_grid, gamma_grid : tuple of float
        Grid of the penalty ``C`` and the RBF width ``gamma``.
    cv : int, default 5
        Inner stratified folds (reduced to the smallest class size when needed).
    class_weight : None, "balanced" or dict
    random_state : int, default 0
        Seeds the inner folds (grid and Platt scaling).
    n_jobs : int or None
        Parallel grid fits.

    Attributes
    ----------
    best_params_ : dict
    best_score_ : float
        Mean inner-CV AUC of the best grid point (NaN when the grid has one point and no search
        was run; ``cv_results_`` is then None).
    cv_results_ : dict or None
    calibrated_ : CalibratedClassifierCV
        The SVM refitted on all the data with its Platt sigmoid.
    classes_ : ndarray
    """

    def __init__(
        self,
        C_grid: tuple[float, ...] = PAPER_C,
        gamma_grid: tuple[float, ...] = PAPER_GAMMA,
        cv: int = 5,
        class_weight: str | None = None,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ):
        keep_params(self, locals())

    def fit(self, X, y):
        """Grid-search ``C`` x ``gamma``, then refit the best with probability estimates."""
        X, y = binary_training_data(self, X, y, allow_nan=False)
        grid = {"C": [float(c) for c in np.atleast_1d(self.C_grid)],
                "gamma": [float(g) for g in np.atleast_1d(self.gamma_grid)]}
        for key, values in grid.items():
            if not values or min(values) <= 0:
                raise GlioradInputError(
                    f"{key}_grid {values!r} is not valid; expected positive numbers")
        check_class_weight(self.class_weight)
        if len(grid["C"]) * len(grid["gamma"]) == 1:
            self.best_params_ = {"C": grid["C"][0], "gamma": grid["gamma"][0]}
            self.best_score_ = float("nan")
            self.cv_results_ = None
        else:
            self._grid_search(X, y, grid)
        self.calibrated_ = CalibratedClassifierCV(
            SVC(kernel="rbf", class_weight=self.class_weight, **self.best_params_),
            method="sigmoid", ensemble=False,
            cv=inner_folds(type(self).__name__, self.cv, y, self.random_state),
        ).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def _grid_search(self, X: np.ndarray, y: np.ndarray, grid: dict[str, list[float]]) -> None:
        """Mean inner-fold ROC AUC of every ``(C, gamma)``; the first best (grid order) wins.

        Same result as ``GridSearchCV(SVC(kernel="rbf"), grid, scoring="roc_auc", cv=folds)``
        (grid order: ``C`` outer, ``gamma`` inner; ties go to the first point), without its
        per-fit overhead, which dominates for the small matrices grading produces.
        """
        folds = list(inner_folds(type(self).__name__, self.cv, y, self.random_state).split(X, y))
        positive = y == np.unique(y)[1]
        points = [(c, g) for c in grid["C"] for g in grid["gamma"]]

        def fold_scores(train, test):
            out = []
            # fitted on the original labels (class_weight keys), scored for classes_[1]
            x_tr, y_tr, x_te, y_te = X[train], y[train], X[test], positive[test]
            # inputs were validated once in fit(); skip scikit-learn's per-call re-validation
            with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
                for c, g in points:
                    svm = SVC(kernel="rbf", C=c, gamma=g, class_weight=self.class_weight)
                    svm.fit(x_tr, y_tr)
                    out.append(stats.roc_auc(y_te, svm.decision_function(x_te)))
            return out

        if self.n_jobs in (None, 1):
            per_fold = [fold_scores(tr, te) for tr, te in folds]
        else:
            from joblib import Parallel, delayed

            per_fold = Parallel(n_jobs=self.n_jobs)(delayed(fold_scores)(tr, te)
                                                    for tr, te in folds)
        scores = np.asarray(per_fold)  # (n_folds, n_points)
        mean = scores.mean(axis=0)
        best = int(np.argmax(mean))
        self.best_params_ = {"C": points[best][0], "gamma": points[best][1]}
        self.best_score_ = float(mean[best])
        self.cv_results_ = {
            "params": [{"C": c, "gamma": g} for c, g in points],
            "mean_test_score": mean, "std_test_score": scores.std(axis=0),
            **{f"split{k}_test_score": scores[k] for k in range(scores.shape[0])},
        }

    def predict_proba(self, X) -> np.ndarray:
        """Platt-scaled class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "calibrated_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.calibrated_.predict_proba(X)


class GradingModel(GradingClassifier, BaseEstimator):
    """The paper's grading model as one estimator (binary: HGG vs LGG).

    Steps (``pipeline_`` after fitting; names in :data:`STEPS`):

    1. ``impute``: median (or mean) of the training data for missing cells; the number of
       imputed cells is logged and kept in ``n_imputed_cells_``. A column that is missing for
       every training sample is an error (it carries nothing to impute from).
    2. ``zscore``: :class:`~sklearn.preprocessing.StandardScaler` fitted on the training data.
    3. ``levene``: :class:`~gliorad.selection.LeveneSelector` (``levene_alpha``, ``levene_test``,
       ``levene_center``; ``levene_alpha=None`` skips it).
    4. ``redundancy``: :class:`~gliorad.selection.CorrelationFilter` when
       ``correlation_threshold`` is set (not in the paper).
    5. ``lasso``: :class:`~gliorad.selection.LassoSelector` (``"logistic"``, ``"lasso"`` or
       ``"none"``).
    6. ``rf``: :class:`~gliorad.selection.RandomForestTopK` (``rf_k`` of ``rf_n_estimators``).
    7. ``svm``: :class:`TunedSVC` over ``svm_C`` x ``svm_gamma``.

    The filters in steps 3-5 keep at least ``rf_k`` features (their ``min_features``), so the
    forest always has ``rf_k`` candidates when the table has that many columns.

    ``feature_groups`` (not in the paper): column-name prefixes of feature *sources*, e.g.
    ``("cnn3d_",)``. Columns starting with a prefix (or whose part after the last ``/``, as in the
    fused tables' ``<set>/<feature>`` names, does) form that source's group, the other columns
    one more group; steps 3-6 then run on each group separately (a
    :class:`~sklearn.compose.ColumnTransformer` step ``select`` in place of ``levene`` ...
    ``rf``), the group's share of ``rf_k`` (split as evenly as possible) is kept from each, and
    the SVM sees their union. Joint selection (the paper's, ``None``) lets the source whose
    training-set values look best take every slot: deep features of the patients a CNN was trained
    on do (they are fitted to those very labels), and then the "fused" model is the CNN's
    features alone. A table with only one non-empty group is selected jointly.

    Attributes
    ----------
    pipeline_ : Pipeline
    classes_ : ndarray (2,)
        ``classes_[1]`` is the positive class (the one :meth:`predict_proba`'s second column and
        :meth:`decision_score` refer to).
    selected_features_ : list of str
        The ``rf_k`` features the SVM uses.
    stage_features_ : dict of str -> list of str
        Features surviving each selection step.
    importances_ : dict of str -> float
        Random-forest importance of every feature that reached a forest (within its group).
    active_steps_ : list of str
        The selection steps that ran (of ``levene``, ``redundancy``, ``lasso``, ``rf``).
    groups_ : list of list of str
        The feature groups selected separately (one group: joint selection).
    best_params_ : dict
        ``C`` and ``gamma`` of the SVM.
    inner_score_ : float
        The SVM grid's mean inner-CV AUC at ``best_params_`` (NaN for a one-point grid).
    n_imputed_cells_ : int
    """

    def __init__(
        self,
        impute: str = "median",
        levene_alpha: float | None = 0.05,
        levene_test: str = "variance",
        levene_center: str = "median",
        correlation_threshold: float | None = None,
        lasso: str = "logistic",
        lasso_cv: int = 5,
        lasso_strengths: int = 10,
        rf_n_estimators: int = 100,
        rf_k: int = 8,
        svm_C: tuple[float, ...] = PAPER_C,
        svm_gamma: tuple[float, ...] = PAPER_GAMMA,
        inner_cv: int = 5,
        class_weight: str | None = None,
        random_state: int | None = 0,
        n_jobs: int | None = None,
        feature_groups: tuple[str, ...] | None = None,
    ):
        keep_params(self, locals())

    # ------------------------------------------------------------------------------ build
    def _selectors(self, k: int) -> list[tuple[str, Any]]:
        """Steps 3-6 (levene, redundancy, lasso, rf) keeping ``k`` features."""
        rs = self.random_state
        levene = ("passthrough" if self.levene_alpha is None else
                  LeveneSelector(alpha=self.levene_alpha, test=self.levene_test,
                                 center=self.levene_center, min_features=k))
        redundancy = ("passthrough" if self.correlation_threshold is None else
                      CorrelationFilter(threshold=self.correlation_threshold))
        lasso = ("passthrough" if self.lasso == "none" else
                 LassoSelector(method=self.lasso, n_strengths=self.lasso_strengths,
                               cv=self.lasso_cv, min_features=k,
                               class_weight=self.class_weight if self.lasso == "logistic" else None,
                               random_state=rs))
        return [
            ("levene", levene),
            ("redundancy", redundancy),
            ("lasso", lasso),
            ("rf", RandomForestTopK(k=k, n_estimators=self.rf_n_estimators,
                                    class_weight=self.class_weight, random_state=rs,
                                    n_jobs=self.n_jobs)),
        ]

    def _build(self, names: list[str]) -> Pipeline:
        check_class_weight(self.class_weight)
        check_option("impute", self.impute, ("median", "mean"))
        check_option("levene_center", self.levene_center, LEVENE_CENTERS)
        check_option("levene_test", self.levene_test, LEVENE_TESTS)
        check_option("lasso", self.lasso, LASSO_CHOICES)
        k = self.rf_k
        groups = feature_groups(names, self.feature_groups)
        if len(groups) == 1:
            select = self._selectors(k)
        else:
            from sklearn.compose import ColumnTransformer

            shares = split_k(k, len(groups))
            select = [("select", ColumnTransformer(
                [(f"group{i}", Pipeline(self._selectors(kg)), cols)
                 for i, (kg, cols) in enumerate(zip(shares, groups, strict=True))],
                remainder="drop"))]
        self.groups_ = [[names[i] for i in g] for g in groups]
        return Pipeline([
            ("impute", SimpleImputer(strategy=self.impute, keep_empty_features=True)),
            ("zscore", StandardScaler()),
            *select,
            ("svm", TunedSVC(C_grid=tuple(self.svm_C), gamma_grid=tuple(self.svm_gamma),
                             cv=self.inner_cv, class_weight=self.class_weight,
                             random_state=self.random_state, n_jobs=self.n_jobs)),
        ])

    # -------------------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Fit imputation, scaling, selection and the tuned SVM on ``X``, ``y``."""
        X, y = binary_training_data(self, X, y)
        names = input_names(self)
        missing = np.isnan(X)
        empty = np.flatnonzero(missing.all(axis=0))
        # a sparse column can be missing for every patient of a cross-validation training fold:
        # it carries no information there, is kept as a constant (imputed 0 after z-scoring)
        # and no selector keeps it (tables read by gliorad drop columns empty for everyone)
        self.empty_columns_ = [names[i] for i in empty]
        if empty.size:
            shown = ", ".join(self.empty_columns_[:10])
            more = f" and {empty.size - 10} more" if empty.size > 10 else ""
            log.warning("%d feature column(s) are missing (NaN) for every training sample and "
                        "carry no information in this fit: %s%s", empty.size, shown, more)
        self.n_imputed_cells_ = int(missing.sum())
        if self.n_imputed_cells_:
            log.info("imputing %d missing cell(s) in %d column(s) with the training %s",
                     self.n_imputed_cells_, int(missing.any(axis=0).sum()), self.impute)
        pipeline = self._build(names)
        pipeline.fit(X, y)
        self.pipeline_ = pipeline
        self.classes_ = pipeline.named_steps["svm"].classes_
        self._record_selection()
        self.best_params_ = dict(pipeline.named_steps["svm"].best_params_)
        self.inner_score_ = float(pipeline.named_steps["svm"].best_score_)
        return self

    def _selection_pipelines(self) -> list[tuple[list[str], Pipeline | None]]:
        """(group's names, its fitted selection steps) per group; ``None``: the main pipeline."""
        if "select" not in self.pipeline_.named_steps:
            return [(self.groups_[0], None)]
        ct = self.pipeline_.named_steps["select"]
        return [(g, ct.named_transformers_[f"group{i}"]) for i, g in enumerate(self.groups_)]

    def _record_selection(self) -> None:
        """``stage_features_`` (union over groups, in group order), ``selected_features_``
        (the SVM's input columns, in order), ``importances_`` and ``active_steps_``."""
        out: dict[str, list[str]] = {"impute": [], "zscore": []}
        out |= {name: [] for name in STEPS[2:-1]}
        self.importances_: dict[str, float] = {}
        active: list[str] = []
        for names, sub in self._selection_pipelines():
            steps = self.pipeline_.named_steps if sub is None else sub.named_steps
            current = np.asarray(names, dtype=object)
            out["impute"] += list(map(str, current))  # impute and zscore keep every column
            out["zscore"] += list(map(str, current))
            for name in STEPS[2:-1]:
                step = steps[name]
                if step == "passthrough":
                    out[name] += list(map(str, current))
                    continue
                if name not in active:
                    active.append(name)
                if name == "rf":
                    self.importances_.update(
                        {str(f): float(v) for f, v in zip(current, step.importances_, strict=True)})
                current = current[step.get_support()]
                out[name] += list(map(str, current))
        self.stage_features_ = out
        self.selected_features_ = out["rf"]
        self.active_steps_ = [n for n in STEPS[2:-1] if n in active]

    # ---------------------------------------------------------------------------- predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (Platt-scaled SVM), columns in ``classes_`` order."""
        check_is_fitted(self, "pipeline_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return self.pipeline_.predict_proba(X)


def fit_quietly(model: GradingModel, X, y) -> tuple[GradingModel, list[str]]:
    """Fit and return the selection-fallback warnings as messages (for per-fold reports)."""
    from gliorad.selection import SelectionFallbackWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SelectionFallbackWarning)
        model.fit(X, y)
    messages = []
    for w in caught:
        if issubclass(w.category, SelectionFallbackWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model, messages
