"""Part 1 of the survival analysis: which MRI sequence's radiomics carry the most prognostic
information (Xu et al. 2022: "three radiomics models ... to select the best sequence"; T1-Gd won).

For each sequence, a radiomics model of **unfavourable vs favourable prognosis** is evaluated by
stratified cross-validation on the training cohort: z-score -> Levene's test -> random-forest
top ``k`` -> RBF SVM; the out-of-fold SVM decision values give the AUC with its DeLong 95 % CI
(:func:`gliorad.stats.roc_auc_ci`). The sequence with the highest AUC is chosen (ties: the
first in the given order) unless one is forced.

Prognosis labels (paper: "the patients that lower than the median OS were assigned as unfavorable
prognosis, and the remaining patients ... favorable"):

* threshold ``"observed_median"`` (paper's reading): the median of the observed follow-up times
  of the training patients; ``"km_median"``: the Kaplan-Meier median overall survival (an error
  when the curve never falls to 0.5);
* unfavourable (1): death before the threshold; favourable (0): follow-up reaching the
  threshold (dead or alive);
* **censored before the threshold**: the patient's class is unknown (alive when last seen,
  before the median). ``censored="exclude"`` (default) leaves them out of the model and counts
  them (``n_excluded``); ``censored="favourable"`` counts them as favourable (what a reading that
  ignores censoring does; biased towards "favourable").

The selectors are the grading model's (:class:`gliorad.selection.LeveneSelector`,
Brown-Forsythe centring, keeping the ``k`` smallest P when fewer than ``k`` pass; and
:class:`gliorad.selection.RandomForestTopK`); their fallback warnings are silenced here.
``levene_test="variance"`` (default, the paper's wording) keeps features whose *spread* differs
between the prognosis groups, so a feature that differs only in mean is dropped before the
forest sees it; ``"ttest"`` is the common "Levene, then Student / Welch t-test" recipe that keeps
features whose *means* differ.

**Small cohorts** (a stated fallback, never an abort): the out-of-fold AUC needs each class in
every held-out fold and at least 2 patients of each class in every training fold (Levene's
test). When the smaller class is too small for ``cv_folds`` folds, the folds are reduced (to the
most that satisfy both, down to 2); when no number of folds does (fewer than 3 patients in a
class) or the ``km_median`` threshold is not reached, no AUC can be estimated and the choice is
skipped: a forced sequence is used as given, else ``fallback="all"`` (default) lets
the signature see the radiomics of every candidate sequence (``chosen`` is None) and
``fallback="first"`` uses the first candidate. :attr:`SequenceChoice.fallback` says what was done
and why (None when the choice ran as configured).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError, check_option
from gliorad.survival._validate import check_survival

THRESHOLDS = ("observed_median", "km_median")
CENSORED_RULES = ("exclude", "favourable")
FALLBACKS = ("all", "first")
MIN_PER_CLASS = 2  # in every training fold (Levene's test); also the DeLong variance's minimum


def usable_folds(n_smallest: int, cv_folds: int) -> int | None:
    """The most stratified folds (``2 <= k <= cv_folds``) that leave the smaller class in every
    held-out fold and :data:`MIN_PER_CLASS` of it in every training fold; None if none does."""
    for k in range(min(cv_folds, n_smallest), 1, -1):
        if n_smallest - -(-n_smallest // k) >= MIN_PER_CLASS:
            return k
    return None

__all__ = ["SequenceChoice", "choose_sequence", "prognosis_labels", "sequence_columns"]


def sequence_columns(columns: Sequence[str], sequence: str) -> list[str]:
    """Feature columns of ``sequence``: those named ``<sequence>_...`` (the radiomics table's
    ``<sequence>_<imagetype>_<class>_<feature>`` convention)."""
    prefix = f"{sequence}_"
    return [str(c) for c in columns if str(c).startswith(prefix)]


def prognosis_labels(
    time: object, event: object, threshold: str = "observed_median", censored: str = "exclude"
) -> tuple[np.ndarray, float]:
    """Unfavourable (1) / favourable (0) labels and the threshold (module docstring).

    Returns
    -------
    labels : numpy.ndarray of float
        1.0, 0.0, or NaN for patients censored before the threshold with ``censored="exclude"``.
    threshold : float
        The median used, in the unit of ``time``.
    """
    from gliorad.survival.km import kaplan_meier

    check_option("threshold", threshold, THRESHOLDS)
    check_option("censored", censored, CENSORED_RULES)
    t, e = check_survival(time, event)
    if threshold == "observed_median":
        thr = float(np.median(t))
    else:
        km = kaplan_meier(t, e)
        below = km.loc[km["surv"] <= 0.5, "time"]
        if below.empty:
            raise GlioradInputError(
                "the Kaplan-Meier median overall survival is not reached (survival stays above "
                f"0.5 until the last follow-up, {t.max():g}); use threshold 'observed_median'"
            )
        thr = float(below.iloc[0])
    labels = np.where((e == 1) & (t < thr), 1.0, 0.0)
    unknown = (e == 0) & (t < thr)
    if censored == "exclude":
        labels[unknown] = np.nan
    return labels, thr


@dataclass(frozen=True)
class SequenceChoice:
    """Result of :func:`choose_sequence`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per sequence: ``sequence, n_features, n_patients, n_unfavourable,
        n_favourable, n_excluded, auc, se, ci_low, ci_high``.
    chosen : str or None
        None: no choice could be made and the radiomics of every candidate sequence are used
        (``fallback="all"``).
    forced : bool
        True when the sequence was given, not chosen by AUC.
    threshold : float
        Median OS used for the labels (unit of the input times).
    rule : str
        How the labels were made (threshold and censoring rule), for reports.
    labels : pandas.Series
        Per patient 1 (unfavourable), 0 (favourable) or NaN (excluded).
    cv_folds : int or None
        Folds of the out-of-fold AUC actually used (None: the models were not evaluated).
    fallback : str or None
        What was done instead of the configured choice, and why (module docstring); None when
        the choice ran as configured.
    """

    table: pd.DataFrame
    chosen: str | None
    forced: bool
    threshold: float
    rule: str
    labels: pd.Series = field(repr=False)
    cv_folds: int | None = None
    fallback: str | None = None

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "forced": self.forced,
            "threshold": self.threshold,
            "rule": self.rule,
            "cv_folds": self.cv_folds,
            "fallback": self.fallback,
            "models": self.table.to_dict(orient="records"),
        }


def _pipeline(k: int, levene_alpha: float, n_estimators: int, seed: int, n_jobs: int | None,
              levene_test: str = "variance"):
    """z-score -> Levene P < alpha (at least ``k`` kept) -> random-forest top ``k`` -> RBF SVM."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from gliorad.selection import LeveneSelector, RandomForestTopK

    return make_pipeline(
        StandardScaler(),
        LeveneSelector(alpha=levene_alpha, test=levene_test, min_features=k),
        RandomForestTopK(k=k, n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs),
        SVC(kernel="rbf", C=1.0, gamma="scale"),
    )


def choose_sequence(
    features: pd.DataFrame,
    time: object,
    event: object,
    sequences: Sequence[str],
    *,
    force: str | None = None,
    k: int = 10,
    levene_alpha: float = 0.05,
    levene_test: str = "variance",
    n_estimators: int = 100,
    cv_folds: int = 5,
    threshold: str = "observed_median",
    censored: str = "exclude",
    seed: int = 0,
    n_jobs: int | None = 1,
    evaluate: bool = True,
    fallback: str = "all",
) -> SequenceChoice:
    """Evaluate one prognosis model per sequence and choose the best (module docstring).

    Parameters
    ----------
    features : pandas.DataFrame
        Training patients' features (rows aligned with ``time``/``event``); the columns of
        sequence ``s`` are those named ``s_...``.
    time, event : array-like
        Training survival data.
    sequences : sequence of str
        Candidate sequences (paper: t1, t1ce, t2).
    force : str, optional
        Use this sequence whatever the AUCs (the table is still computed when ``evaluate``).
    k, levene_alpha, levene_test, n_estimators
        Random-forest top ``k`` (and its trees) after Levene's test at ``levene_alpha``
        (``levene_test``: ``"variance"`` or ``"ttest"``, module docstring).
    cv_folds : int
        Stratified folds for the out-of-fold AUC (fewer when a class is smaller; module
        docstring).
    threshold, censored : str
        Labelling rule (:func:`prognosis_labels`).
    seed : int
        Seeds the folds and the forests.
    evaluate : bool
        With ``force``, False skips the models (``table`` then has NaN AUCs and says why in
        ``rule``).
    fallback : {"all", "first"}
        When no AUC can be estimated (module docstring): every candidate sequence's radiomics
        (``chosen`` None), or the first candidate.

    Returns
    -------
    SequenceChoice
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from gliorad.selection import SelectionFallbackWarning
    from gliorad.stats import roc_auc_ci

    if not isinstance(features, pd.DataFrame):
        raise GlioradInputError("features must be a pandas DataFrame with named columns")
    seqs = list(dict.fromkeys(sequences))
    if not seqs:
        raise GlioradInputError("give at least one sequence to choose from")
    cols = {s: sequence_columns(features.columns, s) for s in seqs}
    empty = [s for s, c in cols.items() if not c]
    if empty:
        raise GlioradInputError(
            f"no feature column for sequence(s) {empty} (expected columns named "
            f"'<sequence>_...', e.g. '{empty[0]}_original_firstorder_Mean')"
        )
    if force is not None and force not in seqs:
        raise GlioradInputError(f"forced sequence {force!r} is not valid; expected one of: {', '.join(seqs)}")
    check_option("fallback", fallback, FALLBACKS)
    skip: str | None = None  # why no AUC can be estimated
    try:
        labels, thr = prognosis_labels(time, event, threshold, censored)
    except GlioradInputError as err:
        if threshold != "km_median":
            raise
        skip = " ".join(err.problems)
        threshold = "observed_median"  # labels for the counts only
        labels, thr = prognosis_labels(time, event, threshold, censored)
    keep = ~np.isnan(labels)
    y = labels[keep].astype(int)
    n_unfav, n_fav = int(y.sum()), int((y == 0).sum())
    rule = (f"unfavourable = death before {thr:g} ({threshold.replace('_', ' ')}); "
            f"censored before it: {censored} ({int((~keep).sum())} patient(s))")
    rows = []
    do_eval = evaluate or force is None
    folds_used: int | None = cv_folds if do_eval else None
    note: str | None = None
    n_folds = usable_folds(min(n_unfav, n_fav), cv_folds)
    if do_eval and skip is None and n_folds != cv_folds:
        counts = f"{n_unfav} unfavourable and {n_fav} favourable patient(s)"
        if n_folds is not None:
            folds_used = n_folds
            note = (f"{counts}: the out-of-fold AUC uses {n_folds}-fold instead of {cv_folds}-fold "
                    f"cross-validation (every fold needs both classes, every training fold "
                    f"{MIN_PER_CLASS} of each)")
        else:
            skip = (f"{counts}: an out-of-fold AUC needs at least {MIN_PER_CLASS + 1} of each "
                    "class, so the sequences cannot be compared")
    if skip is not None and do_eval:
        do_eval, folds_used = False, None
        if force is not None:
            note = f"{skip}; the forced sequence {force!r} is used"
        elif fallback == "first":
            note = f"{skip}; fallback 'first': the first candidate sequence {seqs[0]!r} is used"
        else:
            note = (f"{skip}; fallback 'all': the radiomics of every candidate sequence "
                    f"({', '.join(seqs)}) go to the signature")
        rule += "; models not evaluated (" + note + ")"
    for s in seqs:
        row = {"sequence": s, "n_features": len(cols[s]), "n_patients": int(keep.sum()),
               "n_unfavourable": n_unfav, "n_favourable": n_fav, "n_excluded": int((~keep).sum()),
               "auc": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        if do_eval:
            X = features.loc[keep, cols[s]].to_numpy(dtype=float)
            if not np.isfinite(X).all():
                raise GlioradInputError(f"sequence {s!r}: features have missing or infinite values")
            folds = StratifiedKFold(folds_used, shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SelectionFallbackWarning)
                score = cross_val_predict(
                    _pipeline(k, levene_alpha, n_estimators, seed, n_jobs, levene_test), X, y, cv=folds,
                    method="decision_function",
                )
            auc = roc_auc_ci(y, score)
            row.update(auc=auc.auc, se=auc.se, ci_low=auc.ci_low, ci_high=auc.ci_high)
        rows.append(row)
    table = pd.DataFrame(rows)
    chosen: str | None
    if force is not None:
        chosen, forced = force, True
        if not do_eval and skip is None:
            rule += "; models not evaluated (sequence forced)"
    elif skip is not None:
        chosen, forced = (seqs[0] if fallback == "first" else None), False
    else:
        chosen, forced = str(table.loc[table["auc"].idxmax(), "sequence"]), False
    index = features.index
    return SequenceChoice(table=table, chosen=chosen, forced=forced, threshold=thr, rule=rule,
                          labels=pd.Series(labels, index=index, name="unfavourable"),
                          cv_folds=folds_used, fallback=note)
