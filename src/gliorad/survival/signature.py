"""Deep-radiomics signature: z-score -> random-forest ranking against survival -> top ``k`` ->
elastic net weights (Xu et al. 2022, "Building of deep-radiomics signature").

The signature is a linear risk score over ``k`` features (higher = shorter survival)::

    signature(x) = intercept + sum_j weight_j * (x_j - center_j) / scale_j

:class:`DeepRadiomicsSignature` is a scikit-learn estimator: ``fit(X, y)`` with ``y`` a survival
outcome, ``predict(X)`` the risk score, ``score(X, y)`` Harrell's C-index.

Ranking against survival (``ranking``), all censoring-aware except the paper's literal reading:

``"residual_rf"`` (default)
    Random-forest regression (scikit-learn) of the **deviance residuals of the null Cox model**
    on the features; features ranked by impurity importance (mean decrease in squared error).
    The null model's martingale residual ``r_i = event_i - H(t_i)`` (``H`` the Nelson-Aalen
    cumulative hazard) is "observed minus expected deaths" and uses censored patients
    correctly; the deviance residual ``sign(r) sqrt(-2 (r + event log(event - r)))`` makes it
    roughly symmetric (Therneau, Grambsch & Fleming 1990). Fast on thousands of features.
``"rsf_depth"``
    scikit-survival ``RandomSurvivalForest`` (log-rank splitting), features ranked by
    **minimal depth** (Ishwaran et al. 2010, JASA 105:205): the depth of the first split on the
    feature in each tree (the tree's depth when unused), averaged over trees; smaller = more
    important (importance = ``-mean minimal depth``; ties broken by split count). Survival forests
    have no impurity importance and permutation importance over ~1,300 features is too slow.
``"rf_time"``
    The paper's literal reading ("the correlation between features and survival time"):
    random-forest regression of ``log(time)`` on the features **over patients with an event
    only** (a censored time is a lower bound, not a survival time); needs enough events.

Weighting of the top ``k`` (``weighting``):

``"coxnet"`` (default)
    Cox elastic net (scikit-survival ``CoxnetSurvivalAnalysis``). The penalty ``alpha`` and
    the mixing ``l1_ratio`` are chosen by ``GridSearchCV`` over ``l1_ratios`` x each ratio's
    own path of ``n_alphas`` penalties (computed on all training patients; penalties that zero
    every coefficient are left out), with seeded folds stratified on the event and Harrell's
    C-index as the score; the model is refitted at the chosen pair (``alpha_rule="best"``, the
    CV optimum; or ``"1se"``: the largest penalty, at the best ``l1_ratio``, whose mean CV score
    is within one standard error of the best, as ``cv.glmnet``'s ``lambda.1se``, for a sparser
    signature). Weights are the Cox
    coefficients (log hazard ratio per SD of the feature); ``intercept`` is 0.
``"elasticnet_time"``
    The paper's literal reading: ``ElasticNetCV`` of ``log(time)`` over patients **with an
    event** (censored patients are left out: their time is only a lower bound). The regression
    predicts log survival time, so the risk score is its negative: ``weights = -coef``,
    ``intercept = -intercept``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError, check_option
from gliorad.selection import feature_groups, split_k
from gliorad.survival._validate import check_survival

RANKINGS = ("residual_rf", "rsf_depth", "rf_time")
WEIGHTINGS = ("coxnet", "elasticnet_time")
ALPHA_RULES = ("best", "1se")

__all__ = [
    "RANKINGS",
    "WEIGHTINGS",
    "DeepRadiomicsSignature",
    "as_feature_table",
    "as_survival",
    "feature_columns",
    "make_survival_y",
    "minimal_depth",
    "null_model_residuals",
]


# ----------------------------------------------------------------------------- survival outcome
def make_survival_y(time: object, event: object) -> np.ndarray:
    """scikit-survival structured outcome (fields ``event`` bool, ``time`` float)."""
    t, e = check_survival(time, event, require_event=False)
    y = np.empty(t.size, dtype=[("event", bool), ("time", float)])
    y["event"] = e.astype(bool)
    y["time"] = t
    return y


def as_survival(y: object) -> tuple[np.ndarray, np.ndarray]:
    """``(time, event)`` from a structured array (one bool field = event, one float field =
    time, as ``sksurv.util.Surv``), a 2-column table ``[time, event]`` or a
    ``(time, event)`` pair."""
    if isinstance(y, tuple) and len(y) == 2:
        return check_survival(*y, require_event=False)
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 2:
            raise GlioradInputError(f"y must have 2 columns (time, event); got {list(y.columns)}")
        return check_survival(y.iloc[:, 0], y.iloc[:, 1], require_event=False)
    arr = np.asarray(y)
    if arr.dtype.names is not None:
        names = arr.dtype.names
        if len(names) != 2:
            raise GlioradInputError(f"structured y must have 2 fields (event, time); got {names}")
        bools = [n for n in names if arr.dtype[n] == np.bool_]
        if len(bools) != 1:
            raise GlioradInputError(
                f"structured y needs one boolean event field and one time field; got {names}"
            )
        time_name = next(n for n in names if n != bools[0])
        return check_survival(arr[time_name], arr[bools[0]].astype(int), require_event=False)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return check_survival(arr[:, 0], arr[:, 1], require_event=False)
    raise GlioradInputError(
        "y must be a survival outcome: a structured array (sksurv.util.Surv / make_survival_y), "
        f"a 2-column [time, event] table or a (time, event) pair; got shape {arr.shape}"
    )


def null_model_residuals(time: np.ndarray, event: np.ndarray, kind: str = "deviance") -> np.ndarray:
    """Martingale or deviance residuals of the Cox model without covariates.

    ``r_i = event_i - H(t_i)`` with ``H`` the Nelson-Aalen cumulative hazard of all patients
    (R: ``residuals(coxph(Surv(t, e) ~ 1), type = "martingale")``); the deviance residual is
    ``sign(r) sqrt(-2 (r + event log(event - r)))``.
    """
    from sksurv.nonparametric import nelson_aalen_estimator

    check_option("kind", kind, ("martingale", "deviance"))
    times, cumhaz = nelson_aalen_estimator(event.astype(bool), time)
    H = cumhaz[np.searchsorted(times, time, side="right") - 1]
    r = event - H
    if kind == "martingale":
        return r
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(event > 0, r + event * np.log(event - r), r)
    return np.sign(r) * np.sqrt(np.maximum(-2.0 * inner, 0.0))


def minimal_depth(forest: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean minimal depth and split count of each feature over a fitted tree ensemble.

    In each tree the minimal depth of a feature is the depth of the shallowest node that splits
    on it (root = 0), or the tree's depth when it is not used (Ishwaran et al. 2010).
    Node ids of scikit-learn trees are assigned parent-before-child, so one pass gives depths.
    """
    depth_sum = np.zeros(n_features)
    splits = np.zeros(n_features)
    for est in forest.estimators_:
        tree = est.tree_
        left, right, feat = tree.children_left, tree.children_right, tree.feature
        depth = np.zeros(tree.node_count, dtype=int)
        for node in range(tree.node_count):
            if left[node] != -1:
                depth[left[node]] = depth[right[node]] = depth[node] + 1
        internal = left != -1
        d = np.full(n_features, float(tree.max_depth))
        np.minimum.at(d, feat[internal], depth[internal].astype(float))
        depth_sum += d
        splits += np.bincount(feat[internal], minlength=n_features)
    return depth_sum / len(forest.estimators_), splits


# ------------------------------------------------------------------------------------ estimator
class _EmptySignature(Exception):
    """The elastic net keeps no feature or its penalty cannot be chosen (message: why)."""


def as_feature_table(X: object) -> pd.DataFrame:
    """``X`` (a table, or a 2-D array: columns ``x0, x1, ...``) as a numeric table without
    missing or infinite values, else :class:`GlioradInputError` naming the columns and rows."""
    if isinstance(X, pd.DataFrame):
        frame = X
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise GlioradInputError(f"X must be a 2-D feature table; got shape {arr.shape}")
        frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    try:
        values = frame.to_numpy(dtype=float)
    except (TypeError, ValueError):
        bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        raise GlioradInputError(f"feature column(s) {bad[:5]} are not numeric") from None
    finite = np.isfinite(values)
    if not finite.all():
        cols = [str(c) for c in frame.columns[~finite.all(axis=0)]]
        rows = [str(r) for r in frame.index[~finite.all(axis=1)]]
        raise GlioradInputError(
            f"features have missing or infinite values in column(s) {cols[:5]}"
            f"{' and more' if len(cols) > 5 else ''} (rows {rows[:5]}); impute or drop them first"
        )
    return frame


def feature_columns(X: object, features: list[str], names_in: np.ndarray) -> np.ndarray:
    """The ``features`` of ``X`` as a checked float array: from a table by name, or from an
    array with the columns ``names_in`` seen in ``fit``."""
    if isinstance(X, pd.DataFrame):
        cols = [str(c) for c in X.columns]
        missing = [f for f in features if f not in cols]
        if missing:
            raise GlioradInputError(
                f"feature table lacks signature feature(s) {missing[:5]}"
                f"{' and more' if len(missing) > 5 else ''}"
            )
        sub = X.rename(columns=str)[features]
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != len(names_in):
            raise GlioradInputError(
                f"X must have {len(names_in)} columns (as in fit); got shape {arr.shape}"
            )
        index = {n: i for i, n in enumerate(names_in)}
        sub = pd.DataFrame(arr[:, [index[f] for f in features]], columns=features)
    return as_feature_table(sub).to_numpy(dtype=float)


class DeepRadiomicsSignature(BaseEstimator):
    """Linear survival risk score from ``top_k`` features (see the module docstring).

    Parameters
    ----------
    top_k : int, default 10
        Features kept after the random-forest ranking (paper: 10).
    ranking : {"residual_rf", "rsf_depth", "rf_time"}, default "residual_rf"
    weighting : {"coxnet", "elasticnet_time"}, default "coxnet"
    n_estimators : int, default 500
        Trees of the ranking forest.
    min_samples_leaf : int, default 5
        Leaf size of the ranking forest.
    l1_ratios : sequence of float, default (0.1, 0.5, 0.9, 1.0)
        Elastic-net mixing values searched (1 = lasso).
    n_alphas : int, default 30
        Penalties per mixing value.
    alpha_min_ratio : float, default 0.01
        Smallest penalty as a fraction of the largest.
    cv_folds : int, default 5
        Folds of the penalty search (stratified on the event for ``"coxnet"``).
    alpha_rule : {"best", "1se"}, default "best"
        Penalty choice of ``"coxnet"`` (module docstring).
    random_state : int, default 0
        Seeds the forest and the folds.
    n_jobs : int, default 1
        Workers of the forest.
    feature_groups : sequence of str, optional
        Column-name prefixes of feature sources (e.g. ``("cnn2d_",)``), as
        :func:`gliorad.selection.feature_groups` reads them: each source is ranked by its own
        forest and keeps its share of ``top_k`` (split as evenly as possible, the unprefixed
        columns first), so a source whose training values are optimistic (a CNN's features of the
        patients it was trained on) cannot take every slot. Not in the paper; ``None`` ranks all
        features together. Importances are then comparable within a source only.
    allow_empty : bool, default False
        When no weight can be estimated (the elastic net keeps no feature at the chosen penalty
        or at any penalty of its path; fewer events than ``cv_folds``; a cross-validation fold
        without comparable pairs): False refuses (:class:`GlioradInputError`); True keeps
        all-zero weights, so the signature is constant (a negative result that the survival
        analysis reports instead of stopping), says why in ``empty_reason_`` and warns.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
    n_features_in_ : int
    features_ : list of str
        The ``top_k`` features, in ranking order.
    center_, scale_ : ndarray (top_k,)
        Training mean and standard deviation (``ddof=0``, as ``StandardScaler``) of those features.
    weights_ : ndarray (top_k,)
        Weights on the z-scored features (risk direction; some may be 0).
    intercept_ : float
    importances_ : ndarray (n_features_in_,)
        Ranking importance of every input feature (higher = more important; NaN for constant
        features); :meth:`ranking_table` gives them as a sorted table.
    constant_features_ : list of str
        Features without variance in the training data (never ranked).
    alpha_, l1_ratio_ : float
        Chosen penalty and mixing.
    cv_score_ : float
        Mean cross-validated score at the chosen pair (C-index for ``"coxnet"``, R^2 of log time
        for ``"elasticnet_time"``).
    n_samples_, n_events_ : int
    empty_reason_ : str or None
        Why every weight is 0 (``allow_empty``); None when the signature has a weight.
    """

    allow_empty = False  # for signatures saved (skops) before the parameter existed

    def __init__(
        self,
        top_k: int = 10,
        ranking: str = "residual_rf",
        weighting: str = "coxnet",
        n_estimators: int = 500,
        min_samples_leaf: int = 5,
        l1_ratios: Sequence[float] = (0.1, 0.5, 0.9, 1.0),
        n_alphas: int = 30,
        alpha_min_ratio: float = 0.01,
        cv_folds: int = 5,
        alpha_rule: str = "best",
        random_state: int | None = 0,
        n_jobs: int | None = 1,
        feature_groups: Sequence[str] | None = None,
        allow_empty: bool = False,
    ):
        self.top_k = top_k
        self.ranking = ranking
        self.weighting = weighting
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.l1_ratios = l1_ratios
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv_folds = cv_folds
        self.alpha_rule = alpha_rule
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_groups = feature_groups
        self.allow_empty = allow_empty

    # -------------------------------------------------------------------------- validation
    def _check_params(self) -> None:
        check_option("ranking", self.ranking, RANKINGS)
        check_option("weighting", self.weighting, WEIGHTINGS)
        check_option("alpha_rule", self.alpha_rule, ALPHA_RULES)
        for name in ("top_k", "n_estimators", "min_samples_leaf", "n_alphas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise GlioradInputError(f"{name} {value!r} is not valid; expected an integer >= 1")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) or self.cv_folds < 2:
            raise GlioradInputError(f"cv_folds {self.cv_folds!r} is not valid; expected an integer >= 2")
        ratios = list(self.l1_ratios)
        if not ratios or any(not 0.0 < float(r) <= 1.0 for r in ratios):
            raise GlioradInputError(f"l1_ratios {ratios!r} are not valid; expected values in (0, 1]")
        if not 0.0 < float(self.alpha_min_ratio) < 1.0:
            raise GlioradInputError(
                f"alpha_min_ratio {self.alpha_min_ratio!r} is not valid; expected 0 < value < 1"
            )

    # --------------------------------------------------------------------------------- fit
    def fit(self, X: object, y: object) -> DeepRadiomicsSignature:
        """Rank the features against survival, keep ``top_k``, weight them by elastic net.

        Parameters
        ----------
        X : pandas.DataFrame or array (n_samples, n_features)
            Fused features (finite).
        y : survival outcome
            Structured array (``sksurv.util.Surv`` / :func:`make_survival_y`), a 2-column
            ``[time, event]`` table, or a ``(time, event)`` pair.

        Returns
        -------
        DeepRadiomicsSignature
        """
        self._check_params()
        frame = as_feature_table(X)
        time, event = as_survival(y)
        if len(frame) != time.size:
            raise GlioradInputError(f"X has {len(frame)} rows but y has {time.size} patients")
        n_events = int(event.sum())
        empty: str | None = None
        if n_events < self.cv_folds:
            empty = (f"only {n_events} event(s) among {time.size} patients; the signature needs at "
                     f"least cv_folds={self.cv_folds} events")
            if not self.allow_empty:
                raise GlioradInputError(empty)
        names = np.asarray([str(c) for c in frame.columns], dtype=object)
        values = frame.to_numpy(dtype=float)
        center = values.mean(axis=0)
        scale = values.std(axis=0)
        constant = scale <= 1e-12 * np.maximum(1.0, np.abs(center))
        if (~constant).sum() == 0:
            raise GlioradInputError("every feature is constant in the training data")
        usable = np.flatnonzero(~constant)
        Z = (values[:, usable] - center[usable]) / scale[usable]

        k = min(int(self.top_k), usable.size)
        if k < int(self.top_k):
            warnings.warn(
                f"DeepRadiomicsSignature: only {usable.size} non-constant features; keeping all "
                f"of them (top_k={self.top_k})",
                UserWarning,
                stacklevel=2,
            )
        groups = feature_groups(list(names[usable]), self.feature_groups)
        if len(groups) == 1:
            importance = self._rank(Z, time, event)
            top = np.argsort(-importance, kind="stable")[:k]
        else:
            importance = np.empty(usable.size)
            picked: list[int] = []
            for cols, share in zip(groups, split_k(k, len(groups), "top_k"), strict=True):
                cols = np.asarray(cols)
                imp = self._rank(Z[:, cols], time, event)
                importance[cols] = imp
                picked += cols[np.argsort(-imp, kind="stable")[:share]].tolist()
            top = np.asarray(picked)
        nan = float("nan")
        if empty is None:
            try:
                weights, intercept, alpha, l1_ratio, cv_score = self._weigh(Z[:, top], time, event)
            except _EmptySignature as err:
                if not self.allow_empty:
                    raise GlioradInputError(str(err)) from None
                empty = str(err)
        if empty is None and not np.any(weights != 0):
            empty = ("the elastic net set every signature weight to 0 (no feature is associated "
                     "with survival at the penalty chosen by cross-validation)")
            if not self.allow_empty:
                raise GlioradInputError(f"{empty}; the signature would be constant")
        if empty is not None:
            weights, intercept, alpha, l1_ratio, cv_score = np.zeros(top.size), 0.0, nan, nan, nan
            warnings.warn(f"DeepRadiomicsSignature: {empty}; the signature is constant",
                          UserWarning, stacklevel=2)
        chosen = usable[top]
        self.feature_names_in_ = names
        self.n_features_in_ = names.size
        self.constant_features_ = [str(n) for n in names[constant]]
        self.importances_ = np.full(names.size, np.nan)
        self.importances_[usable] = importance
        self.features_ = [str(n) for n in names[chosen]]
        self.center_ = center[chosen]
        self.scale_ = scale[chosen]
        self.weights_ = np.asarray(weights, dtype=float)
        self.intercept_ = float(intercept)
        self.alpha_ = float(alpha)
        self.l1_ratio_ = float(l1_ratio)
        self.cv_score_ = float(cv_score)
        self.n_samples_ = int(time.size)
        self.n_events_ = n_events
        self.empty_reason_ = empty
        return self

    def _rank(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Importance of every column of ``Z`` (higher = more important)."""
        from sklearn.ensemble import RandomForestRegressor

        common = {
            "n_estimators": int(self.n_estimators),
            "min_samples_leaf": int(self.min_samples_leaf),
            "max_features": "sqrt",
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }
        if self.ranking == "residual_rf":
            target = null_model_residuals(time, event, "deviance")
            forest = RandomForestRegressor(**common).fit(Z, target)
            return forest.feature_importances_
        if self.ranking == "rf_time":
            has_event = event == 1
            if has_event.sum() < 2 * self.min_samples_leaf:
                raise GlioradInputError(
                    f"ranking 'rf_time' uses patients with an event only: {int(has_event.sum())} "
                    f"event(s) is too few (need >= {2 * self.min_samples_leaf})"
                )
            if (time[has_event] <= 0).any():
                raise GlioradInputError("ranking 'rf_time' needs event times > 0 (log time)")
            forest = RandomForestRegressor(**common).fit(Z[has_event], np.log(time[has_event]))
            return forest.feature_importances_
        from sksurv.ensemble import RandomSurvivalForest

        forest = RandomSurvivalForest(low_memory=True, **common).fit(Z, make_survival_y(time, event))
        depth, splits = minimal_depth(forest, Z.shape[1])
        # smaller depth = more important; split count only breaks ties
        return -depth + 1e-6 * splits / max(splits.max(), 1.0)

    def _folds(self, strata: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import StratifiedKFold

        cv = StratifiedKFold(int(self.cv_folds), shuffle=True, random_state=self.random_state)
        return list(cv.split(np.zeros((strata.size, 1)), strata))

    def _weigh(
        self, Z: np.ndarray, time: np.ndarray, event: np.ndarray
    ) -> tuple[np.ndarray, float, float, float, float]:
        if self.weighting == "coxnet":
            return self._weigh_coxnet(Z, time, event)
        return self._weigh_time(Z, time, event)

    def _weigh_coxnet(
        self, Z: np.ndarray, time: np.ndarray, event: np.ndarray
    ) -> tuple[np.ndarray, float, float, float, float]:
        from sklearn.model_selection import GridSearchCV
        from sksurv.exceptions import NoComparablePairException
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        y = make_survival_y(time, event)
        grid = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="all coefficients are zero")
            for ratio in self.l1_ratios:
                path = CoxnetSurvivalAnalysis(
                    l1_ratio=float(ratio), n_alphas=int(self.n_alphas),
                    alpha_min_ratio=float(self.alpha_min_ratio),
                ).fit(Z, y)
                # Each candidate fits the path from the largest penalty down to its own alpha
                # (glmnet's warm starts): fitting a small alpha alone diverges on collinear
                # features ("weights are too large"). predict() then uses the last alpha.
                full = [float(a) for a in path.alphas_]
                nonzero = np.flatnonzero(np.any(path.coef_ != 0, axis=0))
                if nonzero.size:
                    grid.append({"l1_ratio": [float(ratio)],
                                 "alphas": [full[: k + 1] for k in nonzero]})
            if not grid:
                raise _EmptySignature("the Cox elastic net keeps no feature at any penalty of its path")
            try:
                search = GridSearchCV(
                    CoxnetSurvivalAnalysis(), grid, cv=self._folds(event), error_score="raise",
                    n_jobs=None,
                ).fit(Z, y)
            except NoComparablePairException:
                raise _EmptySignature(
                    f"a {self.cv_folds}-fold cross-validation fold has no comparable pairs (too few "
                    "events), so the elastic net's penalty cannot be chosen") from None
        best = search.best_params_
        alpha, ratio = float(best["alphas"][-1]), float(best["l1_ratio"])
        best_path = list(best["alphas"])
        score = float(search.best_score_)
        if self.alpha_rule == "1se":
            res = search.cv_results_
            i = int(search.best_index_)
            limit = res["mean_test_score"][i] - res["std_test_score"][i] / np.sqrt(self.cv_folds)
            same = [j for j, p in enumerate(res["params"]) if float(p["l1_ratio"]) == ratio
                    and res["mean_test_score"][j] >= limit]
            j = max(same, key=lambda j: float(res["params"][j]["alphas"][-1]))
            best_path = list(res["params"][j]["alphas"])
            alpha, score = float(best_path[-1]), float(res["mean_test_score"][j])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="all coefficients are zero")
            final = CoxnetSurvivalAnalysis(l1_ratio=ratio, alphas=best_path).fit(Z, y)
        return final.coef_[:, -1].copy(), 0.0, alpha, ratio, score

    def _weigh_time(
        self, Z: np.ndarray, time: np.ndarray, event: np.ndarray
    ) -> tuple[np.ndarray, float, float, float, float]:
        from sklearn.linear_model import ElasticNetCV
        from sklearn.model_selection import KFold

        has_event = event == 1
        n_ev = int(has_event.sum())
        if n_ev < 2 * self.cv_folds:
            raise _EmptySignature(
                f"weighting 'elasticnet_time' uses patients with an event only: {n_ev} event(s) "
                f"is too few for {self.cv_folds}-fold cross-validation (need >= {2 * self.cv_folds})"
            )
        if (time[has_event] <= 0).any():
            raise GlioradInputError("weighting 'elasticnet_time' needs event times > 0 (log time)")
        model = ElasticNetCV(
            l1_ratio=[float(r) for r in self.l1_ratios], alphas=int(self.n_alphas),
            eps=float(self.alpha_min_ratio),
            cv=KFold(int(self.cv_folds), shuffle=True, random_state=self.random_state),
        ).fit(Z[has_event], np.log(time[has_event]))
        ratio = float(model.l1_ratio_)
        r_idx = [float(r) for r in self.l1_ratios].index(ratio)
        alphas = model.alphas_[r_idx] if model.alphas_.ndim == 2 else model.alphas_
        mse = model.mse_path_[r_idx] if model.mse_path_.ndim == 3 else model.mse_path_
        a_idx = int(np.argmin(np.abs(alphas - model.alpha_)))
        y_ev = np.log(time[has_event])
        r2 = 1.0 - float(mse[a_idx].mean()) / float(np.var(y_ev))
        return -model.coef_ + 0.0, -float(model.intercept_) + 0.0, float(model.alpha_), ratio, r2

    # ----------------------------------------------------------------------------- predict
    def _signature_columns(self, X: object) -> np.ndarray:
        return feature_columns(X, self.features_, self.feature_names_in_)

    def transform(self, X: object) -> np.ndarray:
        """z-scored signature features, shape ``(n_samples, top_k)``."""
        check_is_fitted(self)
        return (self._signature_columns(X) - self.center_) / self.scale_

    def predict(self, X: object) -> np.ndarray:
        """Signature (risk score; higher = shorter expected survival)."""
        # row-wise sum (not BLAS gemv) so identical patients get identical scores
        z = self.transform(X)
        return self.intercept_ + (z * self.weights_).sum(axis=1)

    def score(self, X: object, y: object) -> float:
        """Harrell's C-index of the signature (``gliorad.stats.concordance_index``)."""
        from gliorad.stats import concordance_index

        time, event = as_survival(y)
        return concordance_index(time, event, self.predict(X))

    # ------------------------------------------------------------------------------ report
    def ranking_table(self) -> pd.DataFrame:
        """Non-constant input features by ranking importance: ``feature, importance, rank``
        (rank 1 = most important; ties keep the input order)."""
        check_is_fitted(self)
        usable = np.flatnonzero(np.isfinite(self.importances_))
        order = usable[np.argsort(-self.importances_[usable], kind="stable")]
        return pd.DataFrame({
            "feature": [str(n) for n in self.feature_names_in_[order]],
            "importance": self.importances_[order],
            "rank": np.arange(1, order.size + 1),
        })

    def formula(self) -> pd.DataFrame:
        """Signature features and weights: ``feature, weight, center, scale, raw_weight, rank``.

        ``raw_weight = weight / scale`` is the weight on the unscaled feature, so
        ``signature = intercept - sum(raw_weight * center) + sum(raw_weight * x)``.
        """
        check_is_fitted(self)
        return pd.DataFrame(
            {
                "feature": self.features_,
                "weight": self.weights_,
                "center": self.center_,
                "scale": self.scale_,
                "raw_weight": self.weights_ / self.scale_,
                "rank": np.arange(1, len(self.features_) + 1),
            }
        )

    def formula_text(self, digits: int = 4) -> str:
        """One-line formula, e.g. ``signature = 0.5123*z(f1) - 0.2010*z(f2)`` with
        ``z(f) = (f - center) / scale``; zero weights are omitted."""
        check_is_fitted(self)
        parts = []
        if self.intercept_:
            parts.append(f"{self.intercept_:.{digits}f}")
        for name, w in zip(self.features_, self.weights_, strict=True):
            if w == 0:
                continue
            sign = "-" if w < 0 else "+"
            parts.append(f"{sign} {abs(w):.{digits}f}*z({name})")
        text = " ".join(parts).lstrip("+ ").strip()
        if not text:
            return f"signature = {self.intercept_:.{digits}f} (constant: every weight is 0)"
        if text.startswith("- "):
            text = "-" + text[2:]
        return f"signature = {text}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``signature.json``)."""
        check_is_fitted(self)
        return {
            "formula": self.formula_text(),
            "features": self.features_,
            "weights": self.weights_.tolist(),
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "raw_weights": (self.weights_ / self.scale_).tolist(),
            "intercept": self.intercept_,
            "z_score": "z = (x - center) / scale, center/scale = training mean / SD (ddof=0)",
            "direction": "higher signature = higher hazard (shorter survival)",
            "ranking": self.ranking,
            "weighting": self.weighting,
            "alpha": self.alpha_,
            "l1_ratio": self.l1_ratio_,
            "cv_score": self.cv_score_,
            "n_samples": self.n_samples_,
            "n_events": self.n_events_,
            "n_features_in": self.n_features_in_,
            "n_constant_features": len(self.constant_features_),
        }
