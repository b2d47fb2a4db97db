"""The survival model search: ``survival.model: auto`` (issue 18; not in the paper).

:func:`fit_chosen_model` is what the analysis fits on the training cohort for any
``survival.model``: ``paper`` is :func:`~gliorad.survival.models.fit_models` unchanged (no
search, no table); for ``auto`` and a candidate's name it runs :func:`inner_scores` and records a
:class:`ModelSearch` in ``models.search``.

The choice uses the training cohort only (an external cohort never reaches these functions):

1. the candidates read every sequence's radiomics plus the deep columns (``search.features:
   all``, the default; ``clinical`` reads none); the paper's signature, and every candidate
   under ``search.features: sequence``, reads the sequence chosen once on the training cohort
   (the paper's sequence choice, shared by the inner folds);
2. ``search.inner_folds`` stratified folds (on the event, seeded by ``seed``; fewer when the
   training cohort has fewer events or censored patients) of the training cohort; in each fold
   every candidate's whole model building runs on the other folds
   (:func:`~gliorad.survival.models.fit_models`: signature, cut-off, clinical coding, the
   integrated Cox model by its factor rule) and the held-out patients get the integrated
   model's linear predictor, i.e. the integrated model built on the candidate's out-of-fold
   signature; ``clinical`` is the clinical Cox model alone;
3. each candidate's **inner C-index** is Harrell's C of the held-out linear predictors, averaged
   over the folds weighted by their number of patients (as ``cv.glmnet``'s ``type.measure =
   "C"``; a fold whose C is undefined is left out); the signature's own out-of-fold C-index is
   reported beside it (a fold where the signature is constant counts, at 0.5). A fold where
   the candidate's model building keeps no factor (the factor rule's "nothing significant": a
   result, not a failure) predicts one risk for every held-out patient, so that fold's C-index
   is 0.5 (``constant_folds`` lists such folds; skipping the candidate instead would let
   ``auto`` choose among the candidates that happened to keep a factor on every fold);
4. ``auto`` takes the best inner C-index (:func:`pick_best`); ties (equal to 1e-12, e.g. when
   the signature is never kept, so the integrated model is the clinical one) go to the first of
   :data:`~gliorad.survival.config.SURVIVAL_CANDIDATES`: ``paper``, ``clinical``, ``coxnet``,
   ``gbcox``, ``rsf`` (the paper's recipe, then the simpler models). A candidate that cannot be
   fitted or scored on a fold (an error: too few events, a model that cannot be estimated) has
   no inner C-index, says why, and is skipped.

After the choice, :func:`report_external` fits every other candidate on the whole training
cohort and computes each one's C-index with its 95 % CI in every validation cohort: **for
reporting only** (``candidates.csv``, ``metrics.json["model_search"]``); it never changes the
choice or the chosen model.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival.config import EVENT, SURVIVAL_CANDIDATES, TIME, SurvivalConfig, warn
from gliorad.survival.models import SurvivalModels, fit_models, reads_sequence, signature_sequence

__all__ = [
    "EXTERNAL_NOTE",
    "TIE",
    "CandidateScore",
    "ModelSearch",
    "fit_chosen_model",
    "inner_scores",
    "pick_best",
    "report_external",
    "rule_key",
    "with_rule",
]

#: Two inner C-indices closer than this are a tie.
TIE = 1e-12
EXTERNAL_NOTE = ("validation-cohort C-indices are computed after the choice, for reporting only: "
                 "they never influence the choice or the chosen model")
#: What a candidate's fit or scoring may raise on a fold: the candidate is skipped, never the
#: search (GlioradInputError: the analysis' own checks; the others: scikit-survival / lifelines
#: on degenerate data).
_FOLD_ERRORS = (GlioradInputError, ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass
class CandidateScore:
    """One candidate of a search: its inner cross-validated C-indices (None, with ``reason``,
    when it cannot be scored; ``constant_folds``: the inner folds where its model kept no
    factor, scored 0.5) and, after the choice, its C-index in each validation cohort
    (``external``: cohort -> ``role, n, n_events, c_index, ci, se, c_index_signature``, or
    ``reason``)."""

    name: str
    inner_c_index: float | None = None
    inner_c_index_signature: float | None = None
    inner_folds: int = 0
    reason: str | None = None
    #: Inner folds whose model building kept no factor: one risk for every held-out patient.
    constant_folds: list[int] = field(default_factory=list)
    external: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The candidate's model (``name`` unless the search also chose the factor rule, when
    #: ``name`` is ``"<model> (<rule>)"``) and the factor rule of both Cox models (None: the
    #: configured ``clinical_selection`` / ``integrated_selection``).
    candidate: str = ""
    factor_rule: str | None = None

    def __post_init__(self) -> None:
        self.candidate = self.candidate or self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ModelSearch:
    """What :func:`fit_chosen_model` did: the setting (``auto`` or a name), the candidates with
    their scores (in the tie-breaking order), the one chosen and why."""

    setting: str
    chosen: str
    why: str
    inner_folds: int
    candidates: dict[str, CandidateScore]
    notes: list[str] = field(default_factory=list)
    #: The training cohort's sequence choice shared by the candidates (not serialised).
    sequenced: tuple[Any, Any] | None = None
    #: The factor rules searched (``search.factor_rules``; empty: the configured ones).
    factor_rules: list[str] = field(default_factory=list)

    @property
    def chosen_model(self) -> str:
        """The chosen candidate's model name (``coxnet``, ...), without its factor rule."""
        return self.candidates[self.chosen].candidate

    @property
    def chosen_rule(self) -> str | None:
        """The chosen factor rule (None: the configured ones)."""
        return self.candidates[self.chosen].factor_rule

    def table(self) -> pd.DataFrame:
        """``candidates.csv``: one row per candidate: ``candidate, chosen, inner_c_index,
        inner_c_index_signature, inner_folds, reason``, then per validation cohort ``X``:
        ``c_index_X, ci_low_X, ci_high_X, c_index_signature_X`` (after the choice, reporting
        only)."""
        rows = []
        for name, c in self.candidates.items():
            row: dict[str, Any] = {
                "candidate": name, "chosen": name == self.chosen,
                **({"model": c.candidate, "factor_rule": c.factor_rule}
                   if self.factor_rules else {}),
                "inner_c_index": c.inner_c_index,
                "inner_c_index_signature": c.inner_c_index_signature,
                "inner_folds": c.inner_folds,
                "reason": self.why if name == self.chosen else c.reason,
            }
            for cohort, ext in c.external.items():
                ci = ext.get("ci") or [None, None]
                row.update({f"c_index_{cohort}": ext.get("c_index"), f"ci_low_{cohort}": ci[0],
                            f"ci_high_{cohort}": ci[1],
                            f"c_index_signature_{cohort}": ext.get("c_index_signature")})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """The ``model_search`` block of ``metrics.json``."""
        return {
            "setting": self.setting, "chosen": self.chosen, "why": self.why,
            "measure": ("inner C-index: Harrell's C of the integrated model's out-of-fold linear "
                        "predictor in the training cohort, fold-size-weighted mean over "
                        f"{self.inner_folds} stratified folds"),
            "tie_order": list(SURVIVAL_CANDIDATES), "inner_folds": self.inner_folds,
            "external_note": EXTERNAL_NOTE,
            "candidates": [c.to_dict() for c in self.candidates.values()],
            "notes": list(self.notes),
            **({"factor_rules": list(self.factor_rules), "chosen_model": self.chosen_model,
                "chosen_factor_rule": self.chosen_rule} if self.factor_rules else {}),
        }


def pick_best(scores: Mapping[str, float | None], order: Sequence[str] = SURVIVAL_CANDIDATES
              ) -> tuple[str | None, str]:
    """The name with the highest score (None scores skipped; ties within :data:`TIE` go to the
    first in ``order``) and why; ``(None, why)`` when no score is defined."""
    ranked = [n for n in order if n in scores] + [n for n in scores if n not in order]
    defined = [(n, float(s)) for n in ranked if (s := scores[n]) is not None and np.isfinite(s)]
    if not defined:
        return None, "no candidate has a score"
    top = max(s for _, s in defined)
    tied = [n for n, s in defined if top - s <= TIE]
    why = f"best inner C-index ({top:.4f})"
    if len(tied) > 1:
        why += f", tied with {', '.join(tied[1:])}: the first in the order {', '.join(order)}"
    return tied[0], why


def _weighted_c(parts: list[tuple[int, float]]) -> float | None:
    n = sum(w for w, _ in parts)
    return None if n == 0 else float(sum(w * c for w, c in parts) / n)


def _c_or_none(time: Any, event: Any, risk: Any) -> float | None:
    from gliorad.stats import concordance_index

    try:
        return concordance_index(time, event, risk)
    except GlioradInputError:  # no comparable pair among these patients
        return None


def _quiet_fit(train: pd.DataFrame, feature_columns: Sequence[str], cfg: SurvivalConfig,
               name: str, sequenced: tuple[Any, Any] | None) -> SurvivalModels:
    """:func:`fit_models` without its warnings (a search's fits are not the analysis')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_models(train, feature_columns, cfg, name=name, nomograms=False,
                          sequenced=sequenced)


def inner_scores(
    train: pd.DataFrame, feature_columns: Sequence[str], cfg: SurvivalConfig,
    names: Sequence[str], sequenced: tuple[Any, Any] | None, name: str = "training",
) -> tuple[dict[str, CandidateScore], int, list[str]]:
    """Every candidate of ``names`` scored by inner cross-validation of ``train`` (module
    docstring, steps 2-3). Returns the scores, the number of folds and notes."""
    from sklearn.model_selection import StratifiedKFold

    scores = {n: CandidateScore(n) for n in names}
    n_events = int(train[EVENT].sum())
    k = min(cfg.search.inner_folds, n_events, len(train) - n_events)
    if k < 2:
        why = (f"{n_events} event(s) among {len(train)} patients: too few for an inner "
               "cross-validation (needs 2 events and 2 censored patients)")
        for s in scores.values():
            s.reason = why
        return scores, 0, [f"model search, training cohort {name}: {why}"]
    notes = []
    if k < cfg.search.inner_folds:
        notes.append(f"model search, training cohort {name}: {n_events} event(s): {k} inner "
                     f"folds instead of {cfg.search.inner_folds}")
    folds = StratifiedKFold(k, shuffle=True, random_state=cfg.seed).split(train, train[EVENT])
    parts: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
    sig_parts: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
    for i, (tr, te) in enumerate(folds, start=1):
        held = train.iloc[te]
        for n in names:
            s = scores[n]
            if s.reason is not None:
                continue
            try:
                m = _quiet_fit(train.iloc[tr], feature_columns, cfg.model_copy(update={"model": n}),
                               f"{name} inner fold {i}", sequenced)
                lp = m.linear_predictor(held)
                if lp is None:  # the factor rule kept no factor: the same risk for everyone
                    s.constant_folds.append(i)
                    lp = pd.Series(0.0, index=held.index, name="integrated")
                sig, _ = m.score_cohort(held, f"{name} inner fold {i}")
            except _FOLD_ERRORS as err:
                text = " ".join(err.problems) if isinstance(err, GlioradInputError) else str(err)
                s.reason = f"inner fold {i}: {type(err).__name__}: {text}"
                continue
            c = _c_or_none(held.loc[lp.index, TIME], held.loc[lp.index, EVENT], lp)
            if c is not None:
                parts[n].append((len(lp), c))
            if n != "clinical":  # a constant signature (nothing found) scores 0.5 there
                c_sig = _c_or_none(held.loc[sig.index, TIME], held.loc[sig.index, EVENT],
                                   sig["signature_score"])
                if c_sig is not None:
                    sig_parts[n].append((len(sig), c_sig))
    for n, s in scores.items():
        if s.reason is not None:
            continue
        s.inner_folds = len(parts[n])
        s.inner_c_index = _weighted_c(parts[n])
        s.inner_c_index_signature = _weighted_c(sig_parts[n])
        if s.inner_c_index is None:
            s.reason = "no inner fold has comparable pairs (too few events)"
        if s.constant_folds:
            notes.append(f"model search, training cohort {name}: {n} kept no factor in inner "
                         f"fold(s) {', '.join(map(str, s.constant_folds))} (one risk for every "
                         "held-out patient: C-index 0.5 there)")
    return scores, k, notes


def fit_chosen_model(
    train: pd.DataFrame, feature_columns: Sequence[str], cfg: SurvivalConfig,
    name: str = "training", nomograms: bool = True,
) -> SurvivalModels:
    """The survival models of ``cfg.model`` fitted on ``train`` (the training cohort only).

    ``paper``: :func:`~gliorad.survival.models.fit_models`, unchanged. A candidate's name: the
    inner cross-validation of that candidate and of ``clinical`` (the reference), then the
    candidate. ``auto``: the inner cross-validation of ``cfg.searched()``, then the best
    (:func:`pick_best`; when no candidate can be scored, the first searched, with a warning).
    With ``search.factor_rules`` every candidate is scored under each rule (one rule for both
    Cox models) and the best (candidate, rule) pair is fitted; for a named candidate the rule
    alone is chosen. ``models.search`` holds the :class:`ModelSearch`; ``models.config`` is
    ``cfg`` with the chosen rule's ``clinical_selection`` / ``integrated_selection``.
    """
    if cfg.model == "paper":
        return fit_models(train, feature_columns, cfg, name=name, nomograms=nomograms)
    names = (cfg.searched() if cfg.model == "auto"
             else tuple(dict.fromkeys((cfg.model, "clinical"))))
    notes: list[str] = []
    sink: list[str] = []
    sequenced = None
    if any(reads_sequence(n, cfg) for n in names):
        sequenced = signature_sequence(train, list(feature_columns), cfg, notes, sink)
    rules = list(cfg.search.factor_rules)
    scores: dict[str, CandidateScore] = {}
    search_notes: list[str] = []
    k = 0
    for rule in rules or [None]:  # the same inner folds (seeded) for every rule
        got, k, rule_notes = inner_scores(train, feature_columns, with_rule(cfg, rule), names,
                                          sequenced, name)
        for n, sc in got.items():
            if rule is not None:
                sc.name, sc.candidate, sc.factor_rule = rule_key(n, rule), n, rule
            scores[sc.name] = sc
        if rule is not None and len(rules) > 1:
            rule_notes = [f"{t} [factor rule {rule}]" for t in rule_notes]
        search_notes += [t for t in rule_notes if t not in search_notes]
    order = [rule_key(n, r) if r else n for n in SURVIVAL_CANDIDATES for r in rules or [None]]
    scores = {**{k: scores[k] for k in order if k in scores}, **scores}  # candidate, then rule
    if cfg.model == "auto":
        chosen, why = pick_best({n: s.inner_c_index for n, s in scores.items()}, order)
        if chosen is None:
            chosen = next(iter(scores))
            why = (f"no candidate could be scored by inner cross-validation "
                   f"({'; '.join(f'{n}: {s.reason}' for n, s in scores.items())}); the first "
                   f"searched, {chosen}, is fitted")
            warn(sink, f"model search, training cohort {name}: {why}")
    else:
        by_model = {n: s for n, s in scores.items() if s.candidate == cfg.model}
        if len(by_model) > 1:  # a named model, the factor rule chosen by the inner C-index
            chosen, why = pick_best({n: s.inner_c_index for n, s in by_model.items()}, order)
            chosen = chosen or next(iter(by_model))
            why = f"set by survival.model ({cfg.model}); factor rule: {why}"
        else:
            chosen, why = next(iter(by_model)), f"set by survival.model ({cfg.model})"
    pick = scores[chosen]
    fitted_cfg = with_rule(cfg, pick.factor_rule)
    models = fit_models(train, feature_columns, fitted_cfg.model_copy(update={"model": pick.candidate}),
                        name=name, nomograms=nomograms, sequenced=sequenced)
    models.config = fitted_cfg
    models.notes[:0] = notes + search_notes
    models.warnings[:0] = sink
    models.search = ModelSearch(cfg.model, chosen, why, k, scores, search_notes, sequenced, rules)
    return models


def rule_key(model: str, rule: str) -> str:
    """A candidate's name in a search that also chooses the factor rule."""
    return f"{model} ({rule})"


def with_rule(cfg: SurvivalConfig, rule: str | None) -> SurvivalConfig:
    """``cfg`` with both Cox models under the factor rule ``rule`` (None: unchanged)."""
    if rule is None:
        return cfg
    return cfg.model_copy(update={"clinical_selection": rule, "integrated_selection": rule})


def report_external(
    models: SurvivalModels, train: pd.DataFrame, feature_columns: Sequence[str],
    cohorts: Mapping[str, pd.DataFrame], roles: Mapping[str, str],
) -> None:
    """Each candidate's C-index with its 95 % CI (and its signature's C-index) in every
    validation cohort (``roles[name] != "training"``), into ``models.search``: the chosen one
    from ``models``, the others fitted on ``train`` for this report only (module docstring)."""
    from gliorad.stats import concordance_ci

    search: ModelSearch = models.search
    cfg = models.config
    for cname, score in search.candidates.items():
        why = ""
        if cname == search.chosen:
            fitted: SurvivalModels | None = models
        else:
            try:
                fitted = _quiet_fit(train, feature_columns,
                                    with_rule(cfg, score.factor_rule).model_copy(
                                        update={"model": score.candidate}),
                                    models.training, search.sequenced)
            except _FOLD_ERRORS as err:
                text = " ".join(err.problems) if isinstance(err, GlioradInputError) else str(err)
                fitted, why = None, f"cannot be fitted on the training cohort: {text}"
        for cohort, df in cohorts.items():
            if roles[cohort] == "training":
                continue
            out: dict[str, Any] = {"role": roles[cohort]}
            score.external[cohort] = out
            if fitted is None:
                out["reason"] = why
                continue
            if TIME not in df.columns:
                out["reason"] = "no survival data"
                continue
            lp = fitted.linear_predictor(df)
            if lp is None:
                out["reason"] = "no integrated model"
                continue
            t, e = df.loc[lp.index, TIME], df.loc[lp.index, EVENT]
            out.update(n=len(lp), n_events=int(e.sum()))
            try:
                c = concordance_ci(t, e, lp)
            except GlioradInputError as err:
                out["reason"] = " ".join(err.problems)
                continue
            out.update(c_index=c.c_index, ci=[c.ci_low, c.ci_high], se=c.se)
            if score.candidate != "clinical" and fitted.signature.empty_reason_ is None:
                sig, _ = fitted.score_cohort(df, cohort)
                out["c_index_signature"] = _c_or_none(df.loc[sig.index, TIME],
                                                      df.loc[sig.index, EVENT],
                                                      sig["signature_score"])
