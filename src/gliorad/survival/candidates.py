"""The image-signature candidates besides the paper's (issue 18; not in the paper).

Each candidate is a scikit-learn estimator that makes the risk score the survival analysis calls
the signature (higher = shorter survival) from the fused features (the chosen sequence's
radiomics + deep features, :func:`gliorad.survival.models.fused_columns`). Every candidate
z-scores the features with the training mean and SD (``ddof=0``; constant features left out) and
reads like :class:`~gliorad.survival.signature.DeepRadiomicsSignature`: ``features_`` (the
columns it needs), ``center_`` / ``scale_`` (their training mean / SD, also the values a
missing feature is imputed with), ``empty_reason_`` (why the score is constant, or None),
``predict`` (the score), ``score`` (Harrell's C-index), ``formula`` / ``formula_text`` /
``to_dict`` (what ``signature.json`` and ``signature_formula.csv`` hold). ``training_risk_`` is
the score of the training patients as the analysis uses it for the cut-off and the Cox models:
out-of-sample by default (the elastic net's and the boosted model's out-of-fold score, the
forest's out-of-bag score; ``training_score: in_sample`` gives the final model's), so the
integrated Cox model weighs the signature by what it does on patients it did not see.

:class:`CoxnetSignature` (``coxnet``)
    Cox elastic net (scikit-survival ``CoxnetSurvivalAnalysis``) on every feature: the penalty
    path of all training patients (``n_alphas`` penalties down to ``alpha_min_ratio`` of the
    largest, mixing ``l1_ratio``); the penalty is the one with the best cross-validated C-index
    (each fold's path at the same penalties; Harrell's C of the held-out patients' linear
    predictors, averaged over the folds weighted by their size; ties: the largest penalty), as
    ``cv.glmnet(family = "cox", type.measure = "C")`` with the same folds.
:class:`ForestSignature` (``rsf``)
    Random survival forest (``RandomSurvivalForest``, log-rank splitting, ``sqrt`` features per
    split); the score is the forest's risk (the sum of the cumulative hazard over the training
    times); the training patients' score is out-of-bag (each from the trees that did not see it),
    so the Cox models are not fitted on the forest's in-sample optimism.
:class:`BoostedSignature` (``gbcox``)
    Gradient-boosted Cox model (``GradientBoostingSurvivalAnalysis``, loss ``coxph``: regression
    trees of depth ``max_depth`` on the partial-likelihood gradient, a small learning rate, a row
    subsample per tree); the score is the boosted log hazard ratio.
:class:`NoSignature` (``clinical``)
    No image signature: a constant score (every weight 0) with the reason, so the integrated
    model is the clinical model.

:func:`make_candidate` builds the candidate of a name from the settings.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError, check_option
from gliorad.estimators import keep_params
from gliorad.survival.config import TRAINING_SCORES, SurvivalConfig
from gliorad.survival.signature import (
    as_feature_table,
    as_survival,
    feature_columns,
    make_survival_y,
)

__all__ = [
    "CANDIDATE_CLASSES",
    "BoostedSignature",
    "CoxnetSignature",
    "ForestSignature",
    "NoSignature",
    "SignatureModel",
    "coxnet_cv",
    "make_candidate",
]

CLINICAL_ONLY = ("survival.model 'clinical' builds no image signature: the integrated model is "
                 "the clinical model")


def _feature_table(X: object) -> pd.DataFrame:
    """``X`` as a numeric table with string column names and no missing values (else
    :class:`GlioradInputError`; :func:`~gliorad.survival.signature.as_feature_table`)."""
    return as_feature_table(X.rename(columns=str) if isinstance(X, pd.DataFrame) else X)


class SignatureModel(BaseEstimator):
    """The common part of the candidates: z-scoring, column checks and the description (see
    the module docstring). Subclasses set :attr:`name` and implement ``_fit(Z, time, event)``
    (fitted attributes; returns the training risk) and ``_risk(Z)``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def fit(self, X: object, y: object) -> SignatureModel:
        """Fit on features ``X`` (table or array) and the survival outcome ``y`` (structured
        array, ``[time, event]`` table or ``(time, event)`` pair)."""
        frame = _feature_table(X)
        time, event = as_survival(y)
        if time.size != len(frame):
            raise GlioradInputError(f"X has {len(frame)} rows but y has {time.size} outcomes")
        values = frame.to_numpy(dtype=float)
        center, scale = values.mean(axis=0), values.std(axis=0)
        usable = scale > 1e-12 * np.maximum(1.0, np.abs(center))
        names = np.asarray([str(c) for c in frame.columns], dtype=object)
        if not usable.any():
            raise GlioradInputError(f"{self.name}: every feature is constant in the training data "
                                    f"({names.size} column(s), {time.size} patients)")
        self.feature_names_in_ = names
        self.n_features_in_ = names.size
        self.constant_features_ = [str(n) for n in names[~usable]]
        self.features_ = [str(n) for n in names[usable]]
        self.center_ = center[usable]
        self.scale_ = scale[usable]
        self.n_samples_ = int(time.size)
        self.n_events_ = int(event.sum())
        self.empty_reason_: str | None = None
        Z = (values[:, usable] - self.center_) / self.scale_
        self.training_risk_ = np.asarray(self._fit(Z, time, event), dtype=float)
        return self

    def _fit(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _risk(self, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, X: object) -> np.ndarray:
        """The z-scored ``features_`` of ``X`` (a table with those columns, or an array with the
        columns seen in ``fit``)."""
        check_is_fitted(self, "features_")
        values = feature_columns(X, self.features_, self.feature_names_in_)
        return (values - self.center_) / self.scale_

    def predict(self, X: object) -> np.ndarray:
        """The risk score (higher = shorter expected survival)."""
        Z = self.transform(X)
        if not self.features_:
            return np.zeros(len(Z))
        return np.asarray(self._risk(Z), dtype=float)

    def score(self, X: object, y: object) -> float:
        """Harrell's C-index of the score (``gliorad.stats.concordance_index``)."""
        from gliorad.stats import concordance_index

        time, event = as_survival(y)
        return concordance_index(time, event, self.predict(X))

    # ------------------------------------------------------------------------ description
    def formula(self) -> pd.DataFrame:
        """The features the score reads: ``feature, center, scale`` (and the candidate's own
        columns, e.g. the elastic net's weights)."""
        check_is_fitted(self, "features_")
        return pd.DataFrame({"feature": self.features_, "center": self.center_,
                             "scale": self.scale_})

    def formula_text(self, digits: int = 4) -> str:
        check_is_fitted(self, "features_")
        return f"signature = {self.description} over {len(self.features_)} z-scored features"

    def _details(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``signature.json``)."""
        check_is_fitted(self, "features_")
        return {
            "model": self.name, "formula": self.formula_text(), "features": self.features_,
            "center": self.center_.tolist(), "scale": self.scale_.tolist(),
            "z_score": "z = (x - center) / scale, center/scale = training mean / SD (ddof=0)",
            "direction": "higher signature = higher hazard (shorter survival)",
            **self._details(), "params": self.get_params(),
            "constant": self.empty_reason_ is not None, "constant_reason": self.empty_reason_,
            "n_samples": self.n_samples_, "n_events": self.n_events_,
            "n_features_in": self.n_features_in_,
            "n_constant_features": len(self.constant_features_),
        }


# ================================================================================= coxnet
def coxnet_cv(
    Z: np.ndarray, time: np.ndarray, event: np.ndarray, l1_ratio: float, n_alphas: int,
    alpha_min_ratio: float, folds: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """The Cox elastic net's penalty by cross-validated C-index (``cv.glmnet`` with
    ``family = "cox"``, ``type.measure = "C"``, ``standardize = FALSE`` and ``foldid``).

    The path ``alphas`` is that of all patients; each fold's model is fitted at those penalties;
    Harrell's C of the held-out linear predictors (a constant predictor scores 0.5) is averaged
    over the folds weighted by the number of held-out patients (a fold whose C is undefined, no
    comparable pair, is left out). A fold whose path stops before the smallest penalties (the
    solver's early stop when the fit saturates) predicts there with its last fitted penalty, as
    ``cv.glmnet`` does. The best mean is taken; ties go to the largest penalty.
    Returns ``alphas``, ``coef`` (features x penalties, all patients), ``cv_scores`` (NaN where
    no fold scores), ``best`` (index, or None when no fold scores at any penalty).
    """
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from gliorad.stats import concordance_index

    y = make_survival_y(time, event)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="all coefficients are zero")
        path = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, n_alphas=n_alphas,
                                      alpha_min_ratio=alpha_min_ratio).fit(Z, y)
        alphas = np.asarray(path.alphas_, dtype=float)
        total = np.zeros(alphas.size)
        weight = np.zeros(alphas.size)
        oof = np.full((time.size, alphas.size), np.nan)
        for tr, te in folds:
            fold = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alphas=alphas).fit(Z[tr], y[tr])
            lp = Z[te] @ fold.coef_
            if lp.shape[1] < alphas.size:  # the fold's path stopped early: as cv.glmnet, the
                # smaller penalties get the last fitted one's predictions
                lp = np.hstack([lp, np.repeat(lp[:, -1:], alphas.size - lp.shape[1], axis=1)])
            oof[te] = lp
            for j in range(alphas.size):
                try:
                    c = concordance_index(time[te], event[te], lp[:, j])
                except GlioradInputError:  # no comparable pair in this fold
                    continue
                total[j] += te.size * c
                weight[j] += te.size
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
    best = None if np.isnan(scores).all() else int(np.nanargmax(scores))  # first = largest alpha
    return {"alphas": alphas, "coef": np.asarray(path.coef_, dtype=float), "cv_scores": scores,
            "best": best, "oof": oof}


class CoxnetSignature(SignatureModel):
    """Cox elastic net on every z-scored feature (module docstring).

    Parameters
    ----------
    l1_ratio : float, default 0.5
        Elastic-net mixing (1 = lasso).
    n_alphas : int, default 30
        Penalties on the path.
    alpha_min_ratio : float, default 0.01
        Smallest penalty as a fraction of the largest.
    cv_folds : int, default 5
        Folds of the penalty search (stratified on the event, seeded by ``random_state``; fewer
        when there are fewer events or censored patients; fewer than 2 events or censored
        patients: no search, the score is constant and ``empty_reason_`` says why).
    random_state : int, default 0
    training_score : {"out_of_fold", "in_sample"}, default "out_of_fold"
        The training patients' score (``training_risk_``) the analysis fits the integrated Cox
        model and the cut-off on: each patient's linear predictor from the penalty search's fold
        model that did not see it, at the chosen penalty, or the final model's (in-sample: the
        selection's optimism then inflates the signature's hazard ratio in the integrated model).

    Attributes
    ----------
    weights_ : ndarray (n features)
        Cox coefficients on the z-scored ``features_`` (log hazard ratio per SD).
    alpha_, l1_ratio_, cv_score_ : float
        The chosen penalty, the mixing and its cross-validated C-index.
    alphas_, cv_scores_ : ndarray
        The path's penalties and their cross-validated C-index.
    """

    name = "coxnet"
    description = "Cox elastic net"

    def __init__(self, l1_ratio: float = 0.5, n_alphas: int = 30, alpha_min_ratio: float = 0.01,
                 cv_folds: int = 5, random_state: int | None = 0,
                 training_score: str = "out_of_fold"):
        keep_params(self, locals())

    def _fit(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        from sklearn.model_selection import StratifiedKFold

        nan = float("nan")
        check_option("training_score", self.training_score, TRAINING_SCORES)
        self.weights_ = np.zeros(Z.shape[1])
        self.alpha_, self.l1_ratio_, self.cv_score_ = nan, float(self.l1_ratio), nan
        self.alphas_, self.cv_scores_ = np.array([]), np.array([])
        n_events = int(event.sum())
        k = min(int(self.cv_folds), n_events, time.size - n_events)
        if k < 2:
            self.empty_reason_ = (f"{n_events} event(s) among {time.size} patients: too few to "
                                  "choose the elastic net's penalty by cross-validation")
        else:
            cv = StratifiedKFold(k, shuffle=True, random_state=self.random_state)
            folds = list(cv.split(np.zeros((time.size, 1)), event))
            res = coxnet_cv(Z, time, event, float(self.l1_ratio), int(self.n_alphas),
                            float(self.alpha_min_ratio), folds)
            self.alphas_, self.cv_scores_ = res["alphas"], res["cv_scores"]
            if res["best"] is None:
                self.empty_reason_ = ("no cross-validation fold has comparable pairs (too few "
                                      "events), so the elastic net's penalty cannot be chosen")
            else:
                b = res["best"]
                self.weights_ = res["coef"][:, b].copy()
                self.alpha_, self.cv_score_ = float(res["alphas"][b]), float(res["cv_scores"][b])
                if not np.any(self.weights_ != 0):
                    self.empty_reason_ = (
                        "the elastic net set every weight to 0 (no feature is associated with "
                        "survival at the penalty chosen by cross-validation)")
                elif self.training_score == "out_of_fold":
                    return res["oof"][:, b].copy()  # the folds partition the patients
        return self._risk(Z)

    def _risk(self, Z: np.ndarray) -> np.ndarray:
        # row-wise sum (not BLAS gemv) so identical patients get identical scores
        return (Z * self.weights_).sum(axis=1)

    def formula(self) -> pd.DataFrame:
        out = super().formula()
        out["weight"] = self.weights_
        out["raw_weight"] = self.weights_ / self.scale_
        return out

    def formula_text(self, digits: int = 4) -> str:
        check_is_fitted(self, "weights_")
        parts = [f"{'-' if w < 0 else '+'} {abs(w):.{digits}f}*z({f})"
                 for f, w in zip(self.features_, self.weights_, strict=True) if w != 0]
        if not parts:
            return "signature = 0 (constant: every weight is 0)"
        text = " ".join(parts)
        return "signature = " + ("-" + text[2:] if text.startswith("- ") else text[2:])

    def _details(self) -> dict[str, Any]:
        return {"weights": self.weights_.tolist(),
                "raw_weights": (self.weights_ / self.scale_).tolist(), "intercept": 0.0,
                "alpha": self.alpha_, "l1_ratio": self.l1_ratio_, "cv_score": self.cv_score_,
                "n_nonzero": int(np.count_nonzero(self.weights_)),
                "training_risk": self.training_score.replace("_", "-")}


# ================================================================================= forests
class ForestSignature(SignatureModel):
    """Random survival forest risk (module docstring).

    Parameters
    ----------
    n_estimators : int, default 200
    min_samples_leaf : int, default 10
        Leaf size (a node splits only with twice as many patients).
    random_state : int, default 0
    n_jobs : int, default 1

    Attributes
    ----------
    forest_ : sksurv.ensemble.RandomSurvivalForest
    oob_c_index_ : float
        Harrell's C of the out-of-bag training scores.
    """

    name = "rsf"
    description = "random survival forest risk"

    def __init__(self, n_estimators: int = 200, min_samples_leaf: int = 10,
                 random_state: int | None = 0, n_jobs: int | None = 1):
        keep_params(self, locals())

    def _fit(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        from sksurv.ensemble import RandomSurvivalForest

        from gliorad.stats import concordance_index

        leaf = int(self.min_samples_leaf)
        self.forest_ = RandomSurvivalForest(
            n_estimators=int(self.n_estimators), min_samples_leaf=leaf,
            min_samples_split=2 * leaf, max_features="sqrt", oob_score=True, low_memory=True,
            random_state=self.random_state, n_jobs=self.n_jobs,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
            self.forest_.fit(Z, make_survival_y(time, event))
        oob = np.asarray(self.forest_.oob_prediction_, dtype=float)
        try:
            self.oob_c_index_ = concordance_index(time, event, oob)
        except GlioradInputError:
            self.oob_c_index_ = float("nan")
        return oob

    def _risk(self, Z: np.ndarray) -> np.ndarray:
        return self.forest_.predict(Z)

    def formula_text(self, digits: int = 4) -> str:
        check_is_fitted(self, "forest_")
        return (f"signature = random survival forest risk ({self.n_estimators} trees, leaf size "
                f"{self.min_samples_leaf}) over {len(self.features_)} z-scored features")

    def _details(self) -> dict[str, Any]:
        return {"training_risk": "out-of-bag", "oob_c_index": self.oob_c_index_}


class BoostedSignature(SignatureModel):
    """Gradient-boosted Cox model (module docstring).

    Parameters
    ----------
    n_estimators : int, default 200
    learning_rate : float, default 0.05
    subsample : float, default 0.8
        Fraction of the patients each tree is fitted on.
    max_depth : int, default 2
    random_state : int, default 0
    training_score : {"out_of_fold", "in_sample"}, default "out_of_fold"
        The training patients' score (``training_risk_``): from ``cv_folds`` more boosted
        models, each fitted without a fold (stratified on the event) and scoring it, or the
        final model's in-sample score (boosting fits its training patients closely, so the
        integrated Cox model would over-weight it).
    cv_folds : int, default 5
        Folds of the out-of-fold score (fewer when there are fewer events or censored patients;
        below 2: the in-sample score, stated in ``training_risk_source_``).

    Attributes
    ----------
    model_ : sksurv.ensemble.GradientBoostingSurvivalAnalysis
    training_risk_source_ : str
        ``out-of-fold`` or ``in-sample``.
    """

    name = "gbcox"
    description = "gradient-boosted Cox log hazard ratio"

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05,
                 subsample: float = 0.8, max_depth: int = 2, random_state: int | None = 0,
                 training_score: str = "out_of_fold", cv_folds: int = 5):
        keep_params(self, locals())

    def _model(self) -> Any:
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return GradientBoostingSurvivalAnalysis(
            loss="coxph", n_estimators=int(self.n_estimators),
            learning_rate=float(self.learning_rate), subsample=float(self.subsample),
            max_depth=int(self.max_depth), min_samples_leaf=5, random_state=self.random_state)

    def _fit(self, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        from sklearn.model_selection import StratifiedKFold

        check_option("training_score", self.training_score, TRAINING_SCORES)
        y = make_survival_y(time, event)
        self.model_ = self._model().fit(Z, y)
        n_events = int(event.sum())
        k = min(int(self.cv_folds), n_events, time.size - n_events)
        if self.training_score == "in_sample" or k < 2:
            self.training_risk_source_ = "in-sample"
            return self._risk(Z)
        oof = np.empty(time.size)
        cv = StratifiedKFold(k, shuffle=True, random_state=self.random_state)
        for tr, te in cv.split(np.zeros((time.size, 1)), event):
            oof[te] = self._model().fit(Z[tr], y[tr]).predict(Z[te])
        self.training_risk_source_ = "out-of-fold"
        return oof

    def _risk(self, Z: np.ndarray) -> np.ndarray:
        return self.model_.predict(Z)

    def formula_text(self, digits: int = 4) -> str:
        check_is_fitted(self, "model_")
        return (f"signature = gradient-boosted Cox log hazard ratio ({self.n_estimators} trees "
                f"of depth {self.max_depth}, learning rate {self.learning_rate:g}) over "
                f"{len(self.features_)} z-scored features")

    def _details(self) -> dict[str, Any]:
        return {"training_risk": self.training_risk_source_}


class NoSignature(SignatureModel):
    """No image signature (``clinical``): reads no feature, scores every patient 0."""

    name = "clinical"
    description = "no image signature"

    def fit(self, X: object, y: object) -> NoSignature:
        time, event = as_survival(y)
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
        else:  # the columns are not read, only counted (as the other candidates name them)
            shape = np.shape(X)
            names = [f"x{i}" for i in range(shape[1] if len(shape) == 2 else 0)]
        if len(X) != time.size:
            raise GlioradInputError(f"X has {len(X)} rows but y has {time.size} outcomes")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.constant_features_: list[str] = []
        self.features_: list[str] = []
        self.center_ = np.zeros(0)
        self.scale_ = np.ones(0)
        self.n_samples_, self.n_events_ = int(time.size), int(event.sum())
        self.empty_reason_ = CLINICAL_ONLY
        self.training_risk_ = np.zeros(time.size)
        return self

    def transform(self, X: object) -> np.ndarray:
        check_is_fitted(self, "features_")
        return np.zeros((len(X), 0))

    def formula_text(self, digits: int = 4) -> str:
        check_is_fitted(self, "features_")
        return "no signature (survival.model 'clinical')"


#: ``survival.model`` name -> candidate class (the paper's signature is
#: :class:`~gliorad.survival.signature.DeepRadiomicsSignature`).
CANDIDATE_CLASSES: dict[str, type[SignatureModel]] = {
    c.name: c for c in (CoxnetSignature, ForestSignature, BoostedSignature, NoSignature)}


def make_candidate(name: str, cfg: SurvivalConfig) -> SignatureModel:
    """The unfitted candidate ``name`` (``coxnet``, ``rsf``, ``gbcox`` or ``clinical``) with the
    settings of ``cfg.search`` and ``cfg.seed`` / ``cfg.n_jobs``."""
    s = cfg.search
    if name == "coxnet":
        return CoxnetSignature(l1_ratio=s.coxnet_l1_ratio, n_alphas=s.coxnet_n_alphas,
                               alpha_min_ratio=s.coxnet_alpha_min_ratio, cv_folds=s.inner_folds,
                               random_state=cfg.seed, training_score=s.training_score)
    if name == "rsf":
        return ForestSignature(n_estimators=s.rsf_trees, min_samples_leaf=s.rsf_min_samples_leaf,
                               random_state=cfg.seed, n_jobs=cfg.n_jobs)
    if name == "gbcox":
        return BoostedSignature(n_estimators=s.gbcox_trees, learning_rate=s.gbcox_learning_rate,
                                subsample=s.gbcox_subsample, max_depth=s.gbcox_max_depth,
                                random_state=cfg.seed, training_score=s.training_score,
                                cv_folds=s.inner_folds)
    if name == "clinical":
        return NoSignature()
    raise GlioradInputError(f"survival model {name!r} is not a candidate; expected one of: "
                            f"{', '.join(CANDIDATE_CLASSES)}")
