"""Late fusion by stacking: the radiomics grading model and another model's out-of-sample
probabilities (e.g. a 3D CNN's), combined by a logistic regression fitted on honest scores.

Why (not in the paper)
----------------------
The paper fuses at the feature level: the CNN's 512 deep features are concatenated with the
radiomics features and selected together. The CNN was trained on the grading training patients,
so on exactly the patients the fused SVM is fitted on its features are in-sample: on the
synthetic cohort its training-part AUC is 0.84-0.91 against 0.69-0.83 on held-out patients (and
0.69 out-of-fold on one draw where the in-sample AUC was 0.88). The fused SVM then trusts the deep
features more than they deserve. Stacking (Wolpert 1992; scikit-learn's
:class:`~sklearn.ensemble.StackingClassifier` is the same idea for estimators that see one
table) fits the combiner on scores that are out-of-sample for every training patient:

* radiomics: :func:`~sklearn.model_selection.cross_val_predict` of the whole
  :class:`~gliorad.grading.model.GradingModel` (selection and SVM grid refitted per fold) on the
  training patients; the model refitted on all of them predicts new patients;
* the other model: its probabilities are **given** as columns of the table (``score_columns``),
  and the caller is responsible for them being out-of-sample for the training patients. In the
  pipeline (``deep3d.cross_fit``) they are the out-of-fold probabilities of ``k`` cross-fitted
  CNNs for the grading training patients and the full CNN's probabilities for the others.

The combiner is an L2-penalised logistic regression (``final_C``) on the logits of the scores,
so its coefficients are the weights of the sources on the log-odds scale (``stack_weights_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

from gliorad.errors import GlioradInputError
from gliorad.estimators import keep_params
from gliorad.grading.model import GradingModel, binary_target

__all__ = ["STACK_COLUMN_3D", "StackedGradingModel", "logit"]

EPS = 1e-4
#: The column of the 3D CNN's own HGG probability in the pipeline's stacked grading model
#: (out-of-sample scores when fitting; ``gliorad predict`` fills it from the bundle's network).
STACK_COLUMN_3D = "cnn3d_probability"


def logit(p: Any) -> np.ndarray:
    """Log-odds of probabilities clipped to [1e-4, 1 - 1e-4] (0 and 1 stay finite)."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class StackedGradingModel(ClassifierMixin, BaseEstimator):
    """Radiomics grading model + given out-of-sample scores, stacked by a logistic regression.

    Parameters
    ----------
    base : GradingModel or None
        The model for the feature columns (every column not in ``score_columns``); ``None``: the
        paper's :class:`GradingModel`.
    score_columns : tuple of str (or one str)
        Columns holding another model's probability of the positive class, out-of-sample for
        the training patients (see the module text). Each enters the combiner as its logit.
    cv : int
        Stratified folds for the radiomics model's out-of-fold probabilities.
    final_C : float
        Inverse L2 strength of the combining logistic regression.
    random_state, n_jobs
        Seed of the folds; workers for ``cross_val_predict`` (the base model's own ``n_jobs``
        is used inside each fold).

    Attributes
    ----------
    base_ : GradingModel fitted on every training patient
    final_ : LogisticRegression on ``[logit(radiomics), logit(score) ...]``
    stack_weights_ : dict
        ``radiomics``, each score column and ``intercept``: the combiner's coefficients.
    oof_auc_ : dict
        Training-part AUC of each input of the combiner (radiomics out-of-fold; the given
        scores as they are): what the weights were fitted on.
    selected_features_, stage_features_, importances_, active_steps_, best_params_,
    n_imputed_cells_, inner_score_
        As :class:`GradingModel` (the base model's), with the score columns appended to
        ``selected_features_`` and every ``stage_features_`` list (they bypass selection;
        their importance is NaN: no forest ranked them).

    Input must be a DataFrame (the score columns are found by name).
    """

    def __init__(self, base: GradingModel | None = None,
                 score_columns: tuple[str, ...] = ("cnn_probability",), cv: int = 5,
                 final_C: float = 1.0, random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    # ------------------------------------------------------------------------- checking
    def _split(self, X: Any, fitting: bool) -> tuple[pd.DataFrame, np.ndarray]:
        if not isinstance(X, pd.DataFrame):
            raise GlioradInputError(
                f"{type(self).__name__} needs a DataFrame with the score column(s) "
                f"{', '.join(self._scores())} by name; got {type(X).__name__}")
        cols = [str(c) for c in X.columns]
        scores = self._scores()
        if not scores:
            raise GlioradInputError(f"{type(self).__name__}: score_columns is empty")
        missing = [c for c in scores if c not in cols]
        if missing:
            raise GlioradInputError(f"score column(s) {', '.join(missing)} not in the table "
                                    f"({len(cols)} columns)")
        features = [c for c in X.columns if str(c) not in scores]
        if not features:
            raise GlioradInputError("no feature column besides the score column(s) "
                                    f"{', '.join(scores)}")
        if not fitting and [str(c) for c in features] != self.feature_columns_:
            raise GlioradInputError("the table's feature columns differ from those the stacked "
                                    "model was fitted on")
        by_name = {str(c): c for c in X.columns}
        S = X[[by_name[c] for c in scores]].apply(pd.to_numeric, errors="coerce")
        values = S.to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            cell = X[by_name[scores[c]]].iloc[r]
            shown = repr(float(cell)) if isinstance(cell, float | np.floating) else repr(cell)
            raise GlioradInputError(
                f"score column {scores[c]!r}, row {X.index[r]!r}: {shown} is not a "
                f"probability in [0, 1] ({int(bad.sum())} bad cell(s))")
        return X[features], values

    # ------------------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Out-of-fold radiomics scores, the base model on all patients, then the combiner."""
        Xf, S = self._split(X, fitting=True)
        y = np.asarray(y)
        binary_target(type(self).__name__, y)
        self.feature_columns_ = [str(c) for c in Xf.columns]
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        base = GradingModel() if self.base is None else self.base
        smallest = int(np.unique(y, return_counts=True)[1].min())
        folds = min(int(self.cv), smallest)
        if folds < 2:
            raise GlioradInputError(f"{type(self).__name__}: the smallest class has {smallest} "
                                    "patient(s); out-of-fold scores need at least 2")
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        oof = cross_val_predict(clone(base), Xf, y, cv=skf, method="predict_proba",
                                n_jobs=self.n_jobs)
        self.base_ = clone(base).fit(Xf, y)
        self.classes_ = self.base_.classes_
        pos = (y == self.classes_[1]).astype(int)
        Z = np.column_stack([logit(oof[:, 1]), logit(S)])
        self.final_ = LogisticRegression(C=self.final_C).fit(Z, pos)
        from gliorad.stats import roc_auc

        names = ["radiomics", *self._scores()]
        self.stack_weights_ = {n: float(w) for n, w in zip(names, self.final_.coef_[0],
                                                              strict=True)}
        self.stack_weights_["intercept"] = float(self.final_.intercept_[0])
        self.oof_auc_ = {n: float(roc_auc(pos, z)) for n, z in zip(names, Z.T, strict=True)}
        self._record()
        return self

    def _scores(self) -> list[str]:
        given = self.score_columns
        return [given] if isinstance(given, str) else [str(c) for c in given]

    def _record(self) -> None:
        b, extra = self.base_, self._scores()
        self.stage_features_ = {k: list(v) + extra for k, v in b.stage_features_.items()}
        self.selected_features_ = list(b.selected_features_) + extra
        self.importances_ = {**b.importances_, **{c: float("nan") for c in extra}}
        self.active_steps_ = list(b.active_steps_)
        self.best_params_ = {**b.best_params_, "stack_weights": dict(self.stack_weights_)}
        self.n_imputed_cells_ = b.n_imputed_cells_
        self.inner_score_ = b.inner_score_

    # -------------------------------------------------------------------------- predict
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "final_")
        Xf, S = self._split(X, fitting=False)
        Z = np.column_stack([logit(self.base_.decision_score(Xf)), logit(S)])
        p = self.final_.predict_proba(Z)[:, 1]
        return np.column_stack([1 - p, p])

    def decision_score(self, X) -> np.ndarray:
        """Probability of the positive class ``classes_[1]``."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_score(X) >= 0.5).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags
