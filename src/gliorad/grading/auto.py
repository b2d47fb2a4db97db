"""The grading model chosen by inner cross-validation (``grading.model: auto``), the ``ensemble``
candidate, and :func:`make_candidate` (any ``grading.model`` value -> its unfitted estimator).

:class:`AutoGradingModel` sees only the patients it is fitted on. It cuts them into ``cv``
stratified folds (seeded), fits every candidate on each fold's training part and predicts the
fold's other patients, so each candidate has one out-of-fold HGG probability per patient; its
inner AUC is the AUC of those (:data:`CHOICE_RULE`). The ``ensemble`` averages the out-of-fold
probabilities of the ``ensemble`` best candidates. The winner is refitted on all the patients.
Inside :func:`~gliorad.grading.evaluate.cross_validate_grading` (or the split evaluation) it is
fitted on each outer training part, so the outer test patients never influence the choice: the
outer estimate of ``auto`` is honest (nested cross-validation), although each inner AUC -- the
best of several, and the ensemble's members picked on the same predictions -- is optimistic.

A candidate that cannot be fitted on an inner fold (too few patients of a class for its own
inner CV, a solver failure) gets no inner AUC (``None`` with the reason in ``inner_scores_``)
and is not chosen; the search goes on.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from gliorad import stats
from gliorad.errors import GlioradInputError, check_option
from gliorad.estimators import keep_params
from gliorad.grading.candidates import (
    GradingSettings,
    SoftVoteGrader,
    input_names,
    record_fit,
    single_candidates,
    with_jobs,
)
from gliorad.grading.defaults import MODEL_CHOICES
from gliorad.grading.model import GradingClassifier, binary_training_data, inner_folds

__all__ = ["CHOICE_RULE", "FIT_ERRORS", "AutoGradingModel", "make_candidate", "used_features"]

#: How :class:`AutoGradingModel` chooses (also written to the results).
CHOICE_RULE = (
    "highest inner cross-validated AUC (the AUC of each candidate's out-of-fold HGG "
    "probabilities over inner stratified folds of the training patients only); ties go to the "
    "candidate listed first (paper, logistic_l1, logistic_enet, svm, rf, extra_trees, hgb), the "
    "ensemble (mean probability of the best candidates) last; a candidate that failed on an "
    "inner fold is not chosen")

#: What a candidate's failure to fit on a fold raises (scikit-learn's and gliorad's ValueErrors,
#: numpy's LinAlgError, arithmetic and solver errors): reported, never aborting the search.
FIT_ERRORS = (ValueError, ArithmeticError, RuntimeError)

ENSEMBLE = "ensemble"


def used_features(est: BaseEstimator) -> list[str]:
    """The features a fitted candidate uses: its ``selected_features_``, or every input column
    for a scikit-learn classifier without gliorad's fitted attributes."""
    if hasattr(est, "selected_features_"):
        return list(est.selected_features_)
    return input_names(est)


def _rows(data: Any, index: np.ndarray) -> Any:
    return data.iloc[index] if hasattr(data, "iloc") else data[index]


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _inner_fit(est: BaseEstimator, data: Any, y: np.ndarray, train: np.ndarray,
               test: np.ndarray, n_jobs: int | None) -> tuple[np.ndarray | None, str | None, int]:
    """One candidate on one inner fold: HGG probabilities of the fold's test rows, or None and
    why; and how many warnings the fit raised (inner-fold diagnostics, counted not shown)."""
    est = with_jobs(clone(est), n_jobs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(_rows(data, train), y[train])
            prob = est.predict_proba(_rows(data, test))[:, 1]
        except FIT_ERRORS as err:
            return None, _reason(err), len(caught)
    return np.asarray(prob, dtype=float), None, len(caught)


def _refit(est: BaseEstimator, data: Any, y: np.ndarray, catch: bool,
           n_jobs: int | None) -> tuple[BaseEstimator | None, str | None]:
    """``est`` fitted on all the data; with ``catch``, a failure is returned (None, why)."""
    est = with_jobs(clone(est), n_jobs)
    if not catch:
        return est.fit(data, y), None
    try:
        return est.fit(data, y), None
    except FIT_ERRORS as err:
        return None, _reason(err)


def _parallel(func, tasks: list[tuple], n_jobs: int | None) -> list:
    """``func(*task, n_jobs_of_each)`` for every task, over ``n_jobs`` workers (each task then
    single-threaded) or in this process."""
    if n_jobs in (None, 1) or len(tasks) < 2:
        return [func(*t, n_jobs) for t in tasks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(func)(*t, 1) for t in tasks)


class AutoGradingModel(GradingClassifier, BaseEstimator):
    """The candidate with the best inner cross-validated AUC, refitted on all the training data.

    Parameters
    ----------
    estimators : list of (name, estimator) or None
        The candidates, in tie-breaking order (None: every single candidate of
        :data:`gliorad.grading.candidates.CANDIDATES` with its defaults, the paper's settings).
        Any scikit-learn binary classifier with ``predict_proba`` can be one; one without the
        gliorad candidates' fitted attributes (``selected_features_``, ``importances_``,
        ``best_params_``) is taken to use every feature.
    ensemble : int, default 3
        Members of the ``ensemble`` candidate: the soft vote
        (:class:`~gliorad.grading.candidates.SoftVoteGrader`) of the candidates with the best
        inner AUC; its inner AUC is that of their averaged out-of-fold probabilities. 0: no
        ensemble. It needs at least 2 scored candidates (fewer: reported, not formed).
    cv : int, default 5
        Inner stratified folds (reduced to the smallest class when needed).
    pick : "best" or "ensemble"
        ``best``: :data:`CHOICE_RULE`; ``ensemble``: always the ensemble (the ``ensemble``
        candidate; when it cannot be formed, the best single candidate, with the reason).
    refit : "chosen" or "all"
        Refit only the chosen candidate on all the data, or every candidate (``fitted_``; how
        the evaluation reports every candidate's outer predictions from one search).
    random_state : int or None
        Seeds the inner folds.
    n_jobs : int or None
        Inner fits (candidate x fold) in parallel; each candidate then runs single-threaded.

    Attributes
    ----------
    chosen_ : str
        The chosen candidate's name.
    choice_reason_ : str
    estimator_ : the chosen candidate refitted on all the data
    inner_scores_ : list of dict
        One row per candidate (and the ensemble): ``candidate``, ``inner_auc`` (None when it
        failed on a fold or, for the ensemble, was not formed), ``status`` (``ok``, ``failed``,
        ``not formed``), ``reason``, ``n_warnings`` (of its inner fits), ``members`` (the
        ensemble's), ``chosen``. :meth:`inner_table` gives it as a DataFrame.
    oof_ : dict of str -> ndarray
        Each candidate's out-of-fold HGG probability per training row (NaN on a failed fold).
    fitted_, refit_errors_ : dict (``refit="all"`` only)
        Every candidate refitted on all the data (None where that failed; why in
        ``refit_errors_``), the ensemble included when formed.
    classes_, selected_features_, stage_features_, active_steps_, importances_,
    best_params_, inner_score_, n_imputed_cells_
        As every candidate's (:mod:`gliorad.grading.candidates`), of ``estimator_``;
        ``best_params_`` adds ``model`` (the chosen name) and ``inner_score_`` is the chosen
        candidate's inner AUC.
    """

    def __init__(self, estimators: list[tuple[str, Any]] | None = None, ensemble: int = 3,
                 cv: int = 5, pick: str = "best", refit: str = "chosen",
                 random_state: int | None = 0, n_jobs: int | None = None):
        keep_params(self, locals())

    # ------------------------------------------------------------------------- checking
    def _candidates(self) -> list[tuple[str, Any]]:
        members = single_candidates() if self.estimators is None else list(self.estimators)
        names = [str(n) for n, _ in members]
        if not members:
            raise GlioradInputError(f"{type(self).__name__}: estimators is empty; give "
                                    "(name, estimator) pairs")
        if len(set(names)) != len(names) or ENSEMBLE in names:
            raise GlioradInputError(f"{type(self).__name__}: candidate names must be unique "
                                    f"and not {ENSEMBLE!r} (the soft vote's); got {names}")
        k = self.ensemble
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0 or k == 1:
            raise GlioradInputError(f"ensemble {k!r} is not valid; expected 0 (none) or the "
                                    "number of candidates averaged (2 or more)")
        check_option("pick", self.pick, ("best", ENSEMBLE))
        check_option("refit", self.refit, ("chosen", "all"))
        if self.pick == ENSEMBLE and k == 0:
            raise GlioradInputError("pick 'ensemble' needs ensemble >= 2")
        return [(str(n), e) for n, e in members]

    # ------------------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Score every candidate by inner CV on ``X``, ``y``; refit the chosen one on all."""
        members = self._candidates()
        Xc, y = binary_training_data(self, X, y)
        data = X if hasattr(X, "iloc") else Xc
        positive = (y == np.unique(y)[1]).astype(int)
        folds = list(inner_folds(type(self).__name__, self.cv, y, self.random_state)
                     .split(Xc, y))
        self._search(members, data, y, positive, folds)
        self._choose([n for n, _ in members])
        self._refit_chosen(members, data, y, int(np.isnan(Xc).sum()))
        return self

    def _search(self, members, data, y, positive, folds) -> None:
        tasks = [(est, data, y, train, test) for _, est in members for train, test in folds]
        results = iter(_parallel(_inner_fit, tasks, self.n_jobs))
        self.oof_, rows = {}, []
        for name, _ in members:
            oof = np.full(len(y), np.nan)
            failures, n_warn = [], 0
            for k, (_, test) in enumerate(folds, start=1):
                prob, reason, n = next(results)
                n_warn += n
                if prob is None:
                    failures.append(f"inner fold {k}: {reason}")
                else:
                    oof[test] = prob
            self.oof_[name] = oof
            auc = None if failures else float(stats.roc_auc(positive, oof))
            rows.append({"candidate": name, "inner_auc": auc,
                         "status": "failed" if failures else "ok",
                         "reason": "; ".join(failures) or None, "n_warnings": n_warn,
                         "members": None, "chosen": False})
        if self.ensemble:
            rows.append(self._ensemble_row(rows, positive))
        self.inner_scores_ = rows

    def _ensemble_row(self, rows: list[dict], positive: np.ndarray) -> dict[str, Any]:
        scored = [r for r in rows if r["inner_auc"] is not None]
        ranked = sorted(scored, key=lambda r: -r["inner_auc"])  # stable: earlier first on ties
        row = {"candidate": ENSEMBLE, "inner_auc": None, "status": "not formed", "reason": None,
               "n_warnings": 0, "members": None, "chosen": False}
        if len(ranked) < 2:
            row["reason"] = (f"needs at least 2 candidates with an inner AUC, "
                             f"{len(ranked)} had one")
            return row
        members = [r["candidate"] for r in ranked[:self.ensemble]]
        oof = np.mean([self.oof_[m] for m in members], axis=0)
        self.oof_[ENSEMBLE] = oof
        row.update(inner_auc=float(stats.roc_auc(positive, oof)), status="ok", members=members)
        return row

    def _choose(self, order: list[str]) -> None:
        rows = {r["candidate"]: r for r in self.inner_scores_}
        scored = [r for r in self.inner_scores_ if r["inner_auc"] is not None]
        ensemble_ok = rows.get(ENSEMBLE, {}).get("inner_auc") is not None
        if self.pick == ENSEMBLE and ensemble_ok:
            chosen = ENSEMBLE
            reason = (f"the ensemble of {', '.join(rows[ENSEMBLE]['members'])} (inner AUC "
                      f"{rows[ENSEMBLE]['inner_auc']:.3f})")
        elif scored:
            singles = [r for r in scored if r["candidate"] != ENSEMBLE or self.pick == "best"]
            best = max(singles, key=lambda r: r["inner_auc"])  # max keeps the first of ties
            chosen = best["candidate"]
            others = sorted((r for r in singles if r is not best),
                            key=lambda r: -r["inner_auc"])
            runner = (f"; next {others[0]['candidate']} {others[0]['inner_auc']:.3f}"
                      if others else "")
            reason = (f"highest inner AUC {best['inner_auc']:.3f} of {len(singles)} scored "
                      f"candidate(s){runner}")
            if self.pick == ENSEMBLE:
                reason = f"the ensemble could not be formed ({rows[ENSEMBLE]['reason']}); {reason}"
        else:
            chosen = order[0]
            reason = (f"no candidate could be scored by inner cross-validation; fell back to "
                      f"the first, {chosen}")
        rows[chosen]["chosen"] = True
        self.chosen_, self.choice_reason_ = chosen, reason

    def _refit_chosen(self, members, data, y, n_missing: int) -> None:
        by_name = dict(members)
        ens = next((r for r in self.inner_scores_ if r["candidate"] == ENSEMBLE), None)
        ens_members = ens["members"] if ens and ens["status"] == "ok" else None
        if self.refit == "all":
            # the chosen candidate (or the ensemble's members) must fit; the others may fail
            must = set(ens_members if self.chosen_ == ENSEMBLE else [self.chosen_])
            fits = _parallel(_refit, [(est, data, y, name not in must) for name, est in members],
                             self.n_jobs)
            self.fitted_ = {n: f for (n, _), (f, _) in zip(members, fits, strict=True)}
            self.refit_errors_ = {n: r for (n, _), (_, r) in zip(members, fits, strict=True)
                                  if r is not None}
            if ens_members and all(self.fitted_[m] is not None for m in ens_members):
                self.fitted_[ENSEMBLE] = SoftVoteGrader(n_jobs=self.n_jobs).set_fitted(
                    [(m, self.fitted_[m]) for m in ens_members], n_missing)
            self.estimator_ = self.fitted_[self.chosen_]
        elif self.chosen_ == ENSEMBLE:
            self.estimator_ = SoftVoteGrader([(m, by_name[m]) for m in ens_members],
                                             n_jobs=self.n_jobs).fit(data, y)
        else:
            self.estimator_ = _refit(by_name[self.chosen_], data, y, False, self.n_jobs)[0]
        est = self.estimator_
        self.classes_ = np.asarray(est.classes_)
        chosen_auc = next(r["inner_auc"] for r in self.inner_scores_
                          if r["candidate"] == self.chosen_)
        record_fit(self, input_names(self), used_features(est),
                   getattr(est, "importances_", {}),
                   {"model": self.chosen_, **getattr(est, "best_params_", {})},
                   float("nan") if chosen_auc is None else chosen_auc)
        self.n_imputed_cells_ = int(n_missing)

    # -------------------------------------------------------------------------- predict
    def predict_proba(self, X) -> np.ndarray:
        """The chosen candidate's class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "estimator_")
        Xc = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return self.estimator_.predict_proba(X if hasattr(X, "iloc") else Xc)

    def candidate_scores(self, X) -> dict[str, np.ndarray | None]:
        """Every candidate's HGG probabilities for ``X`` (None where its refit failed); needs
        ``refit="all"``."""
        check_is_fitted(self, "fitted_")
        Xc = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        data = X if hasattr(X, "iloc") else Xc
        return {n: (None if e is None else np.asarray(e.predict_proba(data)[:, 1], dtype=float))
                for n, e in self.fitted_.items()}

    def inner_table(self) -> pd.DataFrame:
        """``inner_scores_`` as a table (members joined by ``+``)."""
        check_is_fitted(self, "inner_scores_")
        table = pd.DataFrame(self.inner_scores_)
        table["members"] = [None if m is None else "+".join(m) for m in table["members"]]
        return table


# ------------------------------------------------------------------------------- registry
def make_candidate(name: str, settings: GradingSettings | None = None,
                   n_jobs: int | None = None) -> BaseEstimator:
    """The unfitted estimator of ``grading.model`` value ``name``: a single candidate of
    :data:`~gliorad.grading.candidates.CANDIDATES`, ``ensemble`` (the soft vote of the best 3
    by inner CV) or ``auto`` (:class:`AutoGradingModel`; with ``ensemble`` among its candidates
    when ``settings.candidates`` lists it or is None). ``settings`` is a
    :class:`~gliorad.grading.config.GradingConfig` (None: the estimators' defaults)."""
    check_option("model", name, MODEL_CHOICES)
    if name not in ("auto", ENSEMBLE):
        return single_candidates(settings, (name,), n_jobs)[0][1]
    if settings is None:
        searched, listed, cv, seed = None, None, 5, 0
    else:
        searched, listed = settings.searched(), settings.candidates
        cv, seed = settings.inner_cv, settings.seed
    ensemble = 3 if name == ENSEMBLE or listed is None or ENSEMBLE in listed else 0
    return AutoGradingModel(single_candidates(settings, searched, None), ensemble=ensemble,
                            cv=cv, pick="best" if name == "auto" else ENSEMBLE,
                            random_state=seed, n_jobs=n_jobs)
