"""Model fitting of the survival analysis, on the training cohort only (Xu et al. 2022,
"Building of deep-radiomics signature" and "Building of prognostic nomogram").

:func:`fit_models` makes :class:`SurvivalModels`:

a. sequence choice (:mod:`.sequence_choice`, optional): radiomics of each sequence, median-OS
   prognosis model, best AUC (or forced);
b. the fused features (chosen sequence's radiomics + deep features, :func:`fused_columns`) -> the
   signature (:class:`.DeepRadiomicsSignature`);
c. cut-off on the training signature (median, or the maximally selected log-rank "X-tile"
   search); ``signature`` = ``high`` (score > cut-off) / ``low``;
d. clinical factors coded once (:class:`.FactorCoding`), then the factor rule of each Cox model
   (:func:`select_model`: the paper's univariate P < 0.05 -> multivariable P < 0.05 -> refit;
   :func:`prespecified_model`: every usable factor) over the clinical factors + signature
   (**integrated** model) and over the clinical factors alone (**clinical** model);
   nomograms of both (:func:`build_nomograms`).

A Cox coefficient that cannot be estimated (an error from the fitter, or a standard error over
the factor's range above :data:`MAX_SE_SPAN` on the log-hazard scale) leaves its factor out of
that model with a warning (:func:`fit_estimable`); the dead ends and what happens instead are
listed in :mod:`gliorad.survival`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.survival.coding import FactorCoding, fit_coding
from gliorad.survival.config import (
    EVENT,
    SIGNATURE,
    SIGNATURE_Z,
    TIME,
    SequenceConfig,
    SurvivalConfig,
    time_label,
    warn,
)
from gliorad.survival.cox import CoxModel
from gliorad.survival.cox_tables import (
    TABLE_COLUMNS,
    CoxFit,
    CoxSelection,
    multivariable_cox,
    univariate_cox,
)
from gliorad.survival.nomogram import Nomogram, build_nomogram
from gliorad.survival.signature import DeepRadiomicsSignature, make_survival_y

MAX_SE_SPAN = 20.0  # se x factor range on the log-HR scale beyond which a coefficient is "infinite"

__all__ = [
    "MAX_SE_SPAN",
    "SurvivalModels",
    "build_nomograms",
    "categorical_for",
    "complete_columns",
    "fit_estimable",
    "fit_models",
    "fit_multivariable",
    "fused_columns",
    "inestimable",
    "prespecified_model",
    "quiet_lifelines",
    "select_model",
    "signature_sequence",
]


# ============================================================================ Cox helpers
def _coef_spans(table: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    spans = []
    for _, row in table.iterrows():
        if row["level"] is None or (isinstance(row["level"], float) and np.isnan(row["level"])):
            col = data[row["factor"]]
            spans.append(float(col.max() - col.min()) if len(col) else 1.0)
        else:
            spans.append(1.0)
    return np.asarray(spans, dtype=float)


def _inestimable_mask(table: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    coef, se = table["coef"].to_numpy(float), table["se"].to_numpy(float)
    return ~np.isfinite(coef) | ~np.isfinite(se) | (se * _coef_spans(table, data) > MAX_SE_SPAN)


def inestimable(table: pd.DataFrame, data: pd.DataFrame) -> list[str]:
    """Labels of coefficients that did not converge (non-finite, or ``se x range`` of the factor
    above :data:`MAX_SE_SPAN` on the log-hazard scale: separation or a level without events)."""
    if table.empty:
        return []
    coef, se = table["coef"].to_numpy(float), table["se"].to_numpy(float)
    bad = _inestimable_mask(table, data)
    return [f"{lab} (coef {c:.3g}, se {s:.3g})" for lab, c, s in
            zip(table["label"][bad], coef[bad], se[bad], strict=True)]


@contextlib.contextmanager
def quiet_lifelines() -> Iterator[None]:
    """Silence lifelines' convergence chatter: :func:`inestimable` decides instead."""
    from lifelines.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="lifelines")
        warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)
        yield


def _check_fit(table: pd.DataFrame, data: pd.DataFrame, what: str, factors: Sequence[str]) -> None:
    bad = inestimable(table, data)
    if bad:
        raise GlioradInputError(
            f"{what}: the Cox model with factor(s) {list(factors)} cannot converge: "
            f"{'; '.join(bad)}. Likely complete separation or a level without events: merge "
            "rare levels (min_level_size), or drop the factor"
        )


def _epv(model: CoxModel, what: str, min_epv: float, sink: list[str]) -> None:
    n_coef = len(model.coef_)
    epv = model.n_events_ / max(n_coef, 1)
    if n_coef and epv < min_epv:
        warn(sink, f"{what}: {model.n_events_} events for {n_coef} coefficient(s) "
                   f"({epv:.1f} events per coefficient, below {min_epv:g}; factors "
                   f"{model.design_.names}): estimates may be unstable")


def categorical_for(coding: FactorCoding, factors: Sequence[str]) -> dict[str, str]:
    """``{factor: reference level}`` of the categorical ``factors`` (the signature's is ``low``)."""
    categorical = coding.categorical(factors)
    if SIGNATURE in factors:
        categorical[SIGNATURE] = "low"
    return categorical


def _univariate_screen(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[pd.DataFrame, list[str]]:
    """Each factor fitted alone: the univariate table and the factors that can be estimated
    (a factor whose univariate model fails or does not converge is left out with a warning)."""
    tables, dropped = [], {}
    for f in factors:
        try:
            with quiet_lifelines():
                uni = univariate_cox(data, TIME, EVENT, [f], categorical=categorical_for(coding, [f]),
                                     labels=cfg.factor_labels())
        except GlioradInputError as err:
            dropped[f] = " ".join(err.problems)
            continue
        tables.append(uni)
        bad = inestimable(uni, data)
        if bad:
            dropped[f] = "; ".join(bad)
    for f, why in dropped.items():
        warn(sink, f"{what}: univariate Cox model of {f!r} cannot converge ({why}: a level without "
                   "events or complete separation); factor left out of the model (merge rare "
                   "levels with min_level_size, or drop it)")
    univariate = (pd.concat(tables, ignore_index=True) if tables
                  else pd.DataFrame(columns=TABLE_COLUMNS))
    return univariate, [f for f in factors if f not in dropped]


def _inestimable_factors(table: pd.DataFrame, data: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    return list(dict.fromkeys(table["factor"][_inestimable_mask(table, data)]))


def _multivariable(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig
) -> CoxFit:
    with quiet_lifelines():
        return multivariable_cox(data, TIME, EVENT, list(factors),
                                 categorical=categorical_for(coding, factors), labels=cfg.factor_labels())


def fit_estimable(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[CoxFit | None, list[str], str | None]:
    """A multivariable Cox model of ``factors`` that never aborts on the data.

    A factor whose coefficient cannot be estimated (:func:`inestimable`: separation, a level
    without events) is left out with a :class:`SurvivalWarning` and the model refitted with the
    others. Returns ``(fit, factors used, None)``, or ``(None, [], reason)`` when no factor is
    left or the fitter fails.
    """
    factors = list(factors)
    while factors:
        try:
            fit = _multivariable(data, factors, coding, cfg)
        except GlioradInputError as err:
            reason = (f"the Cox model with factor(s) {factors} cannot be fitted "
                      f"({' '.join(err.problems)})")
            warn(sink, f"{what}: {reason}")
            return None, [], reason
        bad = _inestimable_factors(fit.table, data)
        if not bad:
            return fit, factors, None
        warn(sink, f"{what}: factor(s) {bad} cannot be estimated ({'; '.join(inestimable(fit.table, data))}: "
                   "a level without events or complete separation); left out of the model (merge "
                   "rare levels with min_level_size, or drop the factor)")
        factors = [f for f in factors if f not in bad]
    return None, [], "no factor can be estimated"


def select_model(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> CoxSelection:
    """The paper's selection rule (:func:`select_cox_factors`: univariate P < ``p_threshold``,
    then multivariable P < ``p_threshold``, refitted once) with convergence checks; never aborts.

    Each factor is first fitted alone (:func:`univariate_cox`): a factor whose univariate model
    fails or does not converge is left out with a :class:`SurvivalWarning` (its Wald P would be
    meaningless); the rule then runs on the others. A factor that cannot be estimated in the
    multivariable step or the refit is left out of it with a warning (:func:`fit_estimable`).
    Nothing selected, or nothing estimable: ``final`` is None (with a warning for the latter).
    Fewer than ``cfg.min_events_per_factor`` events per coefficient in the multivariable step
    warns.
    """
    p = f"{cfg.p_threshold:g}"
    univariate, kept = _univariate_screen(data, factors, coding, cfg, what, sink)
    if not kept:
        reason = f"no candidate factor of {list(factors)} can be estimated"
        warn(sink, f"{what}: {reason}; no model")
        return CoxSelection(univariate, [], None, [], None, reason)
    by_factor = univariate.groupby("factor", sort=False)["p_factor"].first()
    selected_uni = [f for f in kept if by_factor[f] < cfg.p_threshold]
    if not selected_uni:
        return CoxSelection(univariate, [], None, [], None, f"no factor has P < {p} univariately")
    multi, _, why = fit_estimable(data, selected_uni, coding, cfg, f"{what}, multivariable", sink)
    if multi is None:
        return CoxSelection(univariate, selected_uni, None, [], None,
                            f"the multivariable step has no model: {why}")
    _epv(multi.model, f"{what}, multivariable", cfg.min_events_per_factor, sink)
    by_factor = multi.table.groupby("factor", sort=False)["p_factor"].first()
    selected = [f for f, pv in by_factor.items() if pv < cfg.p_threshold]
    if not selected:
        return CoxSelection(univariate, selected_uni, multi, [], None,
                            f"no factor has P < {p} in the multivariable model of {selected_uni}")
    final, selected, why = fit_estimable(data, selected, coding, cfg, f"{what}, final", sink)
    return CoxSelection(univariate, selected_uni, multi, selected, final,
                        None if final is not None else f"the refit has no model: {why}")


def prespecified_model(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> tuple[CoxSelection, str | None]:
    """The pre-specified rule (rms / TRIPOD): one Cox model of every given factor, no P-value
    selection. Factors that cannot be estimated alone or together are left out with a warning
    (:func:`fit_estimable`). Returns a :class:`CoxSelection` (``univariate``: each factor alone,
    for the tables; ``selected_univariate``: the estimable factors; ``multivariable`` and
    ``final``: the model) and the reason when there is no model."""
    univariate, kept = _univariate_screen(data, factors, coding, cfg, what, sink)
    if not kept:
        reason = f"no factor of {list(factors)} can be estimated"
        warn(sink, f"{what}: {reason}; no model")
        return CoxSelection(univariate, [], None, [], None, reason), reason
    fit, used, reason = fit_estimable(data, kept, coding, cfg, what, sink)
    if fit is not None:
        _epv(fit.model, what, cfg.min_events_per_factor, sink)
    return CoxSelection(univariate, kept, fit, used, fit, reason), reason


def fit_multivariable(
    data: pd.DataFrame, factors: Sequence[str], coding: FactorCoding, cfg: SurvivalConfig,
    what: str, sink: list[str],
) -> CoxFit:
    """A Cox model of exactly ``factors`` (a validation cohort's refit); a coefficient that
    cannot be estimated raises :class:`GlioradInputError` (:func:`fit_estimable` leaves it out
    instead)."""
    try:
        fit = _multivariable(data, factors, coding, cfg)
    except GlioradInputError as err:
        raise GlioradInputError(
            f"{what}: the Cox model with factor(s) {list(factors)} cannot converge "
            f"({' '.join(err.problems)})"
        ) from err
    _check_fit(fit.table, data, what, factors)
    _epv(fit.model, what, cfg.min_events_per_factor, sink)
    return fit


# ============================================================================ models
@dataclass
class SurvivalModels:
    """Everything fitted on the training cohort; applied unchanged to every cohort.

    ``selection_*`` and ``sequence_choice`` are None for models loaded from a bundle.
    """

    config: SurvivalConfig
    training: str
    sequence: str | None
    feature_columns: list[str]
    signature: DeepRadiomicsSignature
    cutoff: float
    cutoff_method: str
    coding: FactorCoding
    integrated: CoxFit | None
    clinical: CoxFit | None
    integrated_factors: list[str]
    clinical_factors: list[str]
    nomogram_integrated: Nomogram | None = None
    nomogram_clinical: Nomogram | None = None
    selection_integrated: CoxSelection | None = None
    selection_clinical: CoxSelection | None = None
    sequence_choice: Any = None
    cutoff_detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The training patients' signature where it is not the signature's in-sample prediction
    #: (the random survival forest's out-of-bag score), by patient; None otherwise.
    training_scores: pd.Series | None = None
    #: The model search (:class:`gliorad.survival.search.ModelSearch`) when ``model`` is not
    #: ``paper``; None otherwise.
    search: Any = None
    #: Under ``signature_term: continuous``: the training patients' signature mean and SD
    #: (``ddof=0``) that z-score it into the integrated model's ``signature_z`` term; None
    #: under ``group`` (the paper: the high/low group is the term).
    signature_center: float | None = None
    signature_scale: float | None = None

    @property
    def signature_term(self) -> str:
        """The integrated model's signature term: ``signature_z`` or ``signature`` (the group)."""
        return SIGNATURE if self.signature_scale is None else SIGNATURE_Z

    def _scored(self, risk: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """``signature_score``, the risk group (``signature``) and, under a continuous
        term, ``signature_z``."""
        out = pd.DataFrame({"signature_score": risk,
                            SIGNATURE: np.where(risk > self.cutoff, "high", "low")}, index=index)
        if self.signature_scale is not None:
            out[SIGNATURE_Z] = (risk - self.signature_center) / self.signature_scale
        return out

    @property
    def integrated_model(self) -> CoxModel | None:
        return None if self.integrated is None else self.integrated.model

    @property
    def clinical_model(self) -> CoxModel | None:
        return None if self.clinical is None else self.clinical.model

    def signature_table(self) -> dict[str, Any]:
        """``signature.json`` content: formula, features, weights, centring, cut-off."""
        out = self.signature.to_dict()
        out.update(cutoff=self.cutoff, cutoff_method=self.cutoff_method,
                   groups="high: signature > cutoff; low: signature <= cutoff",
                   sequence=self.sequence, n_fused_features=len(self.feature_columns),
                   training_cohort=self.training, cutoff_detail=self.cutoff_detail)
        return out

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Signature and risk group of patients (``signature_score``, ``signature``)."""
        return self._scored(np.asarray(self.signature.predict(features), float), features.index)

    def score_cohort(self, df: pd.DataFrame, name: str, training: bool = False
                     ) -> tuple[pd.DataFrame, list[str]]:
        """:meth:`score` of a cohort's patients whose signature features are complete (missing
        ones imputed with the training means under ``missing: impute``), with notes on the
        others. ``training``: the training patients, scored by :attr:`training_scores` where
        the model has them."""
        notes: list[str] = []
        features = self.signature.features_
        missing_cols = [c for c in features if c not in df.columns]
        if missing_cols:
            raise GlioradInputError(f"cohort {name}: feature table lacks signature feature(s) "
                                    f"{missing_cols[:5]}")
        feats = df.reindex(columns=features)
        bad = ~np.isfinite(feats.to_numpy(float)).all(axis=1)
        if bad.any():
            if self.coding.missing == "impute":
                feats = feats.fillna(pd.Series(self.signature.center_, index=features))
                notes.append(f"cohort {name}: {int(bad.sum())} patient(s) with missing signature "
                             "features imputed with the training means")
            else:
                notes.append(f"cohort {name}: {int(bad.sum())} patient(s) with missing signature "
                             "features left out (complete case)")
                feats = feats.loc[~bad]
        scores = self.training_scores
        if training and scores is not None and feats.index.isin(scores.index).all():
            return self._scored(scores.loc[feats.index].to_numpy(float), feats.index), notes
        return self.score(feats), notes

    def linear_predictor(self, df: pd.DataFrame, which: str = "integrated",
                         training: bool = False) -> pd.Series | None:
        """The ``which`` Cox model's linear predictor of the patients of ``df`` that can be
        scored (:meth:`score_cohort`, then the factor coding's missing-value rule), by patient;
        None when there is no such model."""
        fit = getattr(self, which)
        if fit is None:
            return None
        scored, _ = self.score_cohort(df, "scored", training)
        coded, _, _ = self.coding.apply(df.loc[scored.index], "scored")
        data = coded.join(scored)
        names = list(fit.model.feature_names_in_)
        return pd.Series(fit.model.predict_risk(data[names]), index=data.index, name=which)


def fused_columns(feature_columns: Sequence[str], seq_cfg: SequenceConfig, sequence: str | None) -> list[str]:
    """Radiomics columns of ``sequence`` plus deep columns (all columns without sequences; every
    candidate sequence's radiomics plus deep columns when ``sequence`` is None although
    ``seq_cfg.sequences`` are given: the sequence choice's ``all`` fallback)."""
    from gliorad.survival.sequence_choice import sequence_columns

    if sequence is None and not seq_cfg.sequences:
        return list(feature_columns)
    names = [sequence] if sequence is not None else list(seq_cfg.sequences)
    cols = [c for s in names for c in sequence_columns(feature_columns, s)]
    if seq_cfg.deep_prefix:
        deep = [c for c in feature_columns if c.startswith(seq_cfg.deep_prefix)]
        if not deep:
            raise GlioradInputError(
                f"no deep feature column (prefix {seq_cfg.deep_prefix!r}) in the feature table; "
                "set sequence.deep_prefix to the right prefix, or to null to use radiomics only"
            )
        cols += deep
    return cols


def reads_sequence(model: str, cfg: SurvivalConfig) -> bool:
    """Whether ``model``'s signature reads one chosen sequence (the paper's signature, or a
    candidate under ``search.features: sequence``) rather than every sequence (``clinical``:
    none)."""
    return model == "paper" or (model != "clinical" and cfg.search.features == "sequence")


def signature_sequence(train: pd.DataFrame, fcols: list[str], cfg: SurvivalConfig,
                       notes: list[str], sink: list[str]) -> tuple[str | None, Any]:
    """The radiomics sequence of the signature (:func:`.sequence_choice.choose_sequence` on the
    training cohort, or None without sequences / on the ``all`` fallback) and the choice."""
    from gliorad.survival.sequence_choice import choose_sequence, sequence_columns

    sc = cfg.sequence
    if not sc.sequences:
        return None, None
    if not any(sequence_columns(fcols, s) for s in sc.sequences):
        raise GlioradInputError(
            f"no feature column is named after the sequences {sc.sequences} ('<sequence>_...'); "
            "to use every feature column without a sequence choice set sequence.sequences to [] "
            "(command line: --sequences none)"
        )
    feats = train[fcols]
    bad = feats.columns[~np.isfinite(feats.to_numpy(float)).all(axis=0)]
    if len(bad):
        notes.append(f"sequence choice: {len(bad)} feature column(s) with missing values left out")
        feats = feats.drop(columns=bad)
    choice = choose_sequence(
        feats, train[TIME], train[EVENT], sc.sequences, force=sc.force, k=sc.top_k,
        levene_alpha=sc.levene_alpha, levene_test=sc.levene_test, n_estimators=sc.n_estimators,
        cv_folds=sc.cv_folds,
        threshold=sc.threshold, censored=sc.censored, seed=cfg.seed, n_jobs=cfg.n_jobs,
        evaluate=sc.evaluate, fallback=sc.fallback,
    )
    if choice.fallback is not None:
        warn(sink, f"sequence choice: {choice.fallback}")
    return choice.chosen, choice


def fit_models(
    train: pd.DataFrame, feature_columns: Sequence[str], cfg: SurvivalConfig,
    name: str = "training", nomograms: bool = True, sequenced: tuple[Any, Any] | None = None,
) -> SurvivalModels:
    """Fit the sequence choice, signature, cut-off, coding and both Cox models on ``train``.

    The signature is ``cfg.model``'s: the paper's :class:`.DeepRadiomicsSignature`, or a
    candidate of :mod:`.candidates` (``clinical``: none, so no sequence choice either); ``auto``
    is resolved first by :func:`gliorad.survival.search.fit_chosen_model`.

    Parameters
    ----------
    train : pandas.DataFrame
        Training patients (:func:`prepare_table` layout).
    feature_columns : sequence of str
        Feature columns of the table.
    cfg : SurvivalConfig
    name : str
        Training cohort name (for messages).
    nomograms : bool
        Build the nomograms (False inside cross-validation).
    sequenced : (sequence, choice), optional
        The sequence choice already made on ``train`` (the model search's), not repeated.
    """
    notes: list[str] = []
    sink: list[str] = []
    if int(train[EVENT].sum()) == 0:
        raise GlioradInputError(
            f"training cohort {name}: no event (death) among its {len(train)} patients; nothing can "
            "be fitted: choose a training cohort with events (split.train, or a random split)")
    if cfg.model == "auto":
        raise GlioradInputError("fit_models fits one survival model; model 'auto' is chosen "
                                "first (gliorad.survival.search.fit_chosen_model)")
    clinical_only = cfg.model == "clinical"
    sequence, choice, fused = None, None, []
    if not clinical_only:
        if reads_sequence(cfg.model, cfg):  # else a candidate on every sequence (search.features: all)
            sequence, choice = (signature_sequence(train, list(feature_columns), cfg, notes, sink)
                                if sequenced is None else sequenced)
        fused = complete_columns(train, fused_columns(feature_columns, cfg.sequence, sequence),
                                 notes)
    if cfg.model == "paper":
        signature, score = _paper_signature(train, fused, cfg, name, sink)
        training_scores = None
    else:
        from gliorad.survival.candidates import make_candidate

        signature = make_candidate(cfg.model, cfg).fit(
            train[fused], make_survival_y(train[TIME], train[EVENT]))
        score = signature.training_risk_
        training_scores = pd.Series(score, index=train.index, name="signature_score")
    if signature.empty_reason_ is not None and not clinical_only:
        warn(sink, f"signature, training cohort {name}: {signature.empty_reason_}; the signature is "
                   "constant (every weight 0)")
    if clinical_only:
        cutoff, cutoff_method, cutoff_detail = 0.0, "median", {}
    else:
        cutoff, cutoff_method, cutoff_detail = _cutoff(train, score, cfg, name, notes, sink)
    coding, coding_notes = fit_coding(train, cfg)
    notes += coding_notes
    data, _, apply_notes = coding.apply(train, name)
    notes += apply_notes
    data[TIME] = train.loc[data.index, TIME]
    data[EVENT] = train.loc[data.index, EVENT]
    score_s = pd.Series(np.asarray(score, float), index=train.index)
    data[SIGNATURE] = np.where(score_s.loc[data.index] > cutoff, "high", "low")
    center = scale = None
    if cfg.signature_term == "continuous" and not clinical_only:
        # z-scored over the training patients whose score the Cox models see (complete cases)
        center, scale = float(score_s.loc[data.index].mean()), float(score_s.loc[data.index].std(ddof=0))
        if scale > 1e-12 * max(1.0, abs(center)):
            data[SIGNATURE_Z] = (score_s.loc[data.index] - center) / scale
        else:
            scale = 1.0  # constant: the group check below leaves it out of the models
            data[SIGNATURE_Z] = 0.0
    signature_problem = None
    if clinical_only:
        signature_problem = signature.empty_reason_
    elif data[SIGNATURE].nunique() < 2:
        signature_problem = (f"every training patient is in the {data[SIGNATURE].iloc[0]} signature "
                             f"group (cut-off {cutoff:g}; the signature is constant or nearly so)")
        warn(sink, f"training cohort {name}: {signature_problem}; the signature is left out of the "
                   "Cox models and no risk groups are compared")
    term = SIGNATURE if scale is None else SIGNATURE_Z
    fits = _cox_models(data, coding, cfg, name, signature_problem, coding_notes, sink, term)
    models = SurvivalModels(
        config=cfg, training=name, sequence=sequence, feature_columns=fused, signature=signature,
        cutoff=float(cutoff), cutoff_method=cutoff_method, coding=coding, cutoff_detail=cutoff_detail,
        sequence_choice=choice, notes=notes, warnings=sink, training_scores=training_scores,
        signature_center=center, signature_scale=scale, **fits,
    )
    if nomograms:
        build_nomograms(models)
    return models


def complete_columns(train: pd.DataFrame, columns: Sequence[str], notes: list[str]) -> list[str]:
    """``columns`` without those that have missing values in the training cohort (noted)."""
    fused = list(columns)
    values = train[fused].to_numpy(float)
    has_nan = ~np.isfinite(values).all(axis=0)
    if has_nan.any():
        notes.append(f"{int(has_nan.sum())} fused feature column(s) with missing values in the "
                     "training cohort left out of the signature")
        fused = [c for c, bad in zip(fused, has_nan, strict=True) if not bad]
    return fused


def _paper_signature(
    train: pd.DataFrame, fused: list[str], cfg: SurvivalConfig, name: str, sink: list[str],
) -> tuple[DeepRadiomicsSignature, np.ndarray]:
    """The paper's signature fitted on ``train`` and its training score."""
    sc = cfg.signature
    n_events = int(train[EVENT].sum())
    n_censored = len(train) - n_events
    sig_folds = max(2, min(sc.cv_folds, n_events, max(n_censored, 2)))
    if sig_folds < sc.cv_folds and n_events >= 2:
        warn(sink, f"signature: {n_events} event(s) and {n_censored} censored patient(s) in "
                   f"training cohort {name}: the elastic net's penalty is chosen by {sig_folds}-fold "
                   f"instead of {sc.cv_folds}-fold cross-validation")
    signature = DeepRadiomicsSignature(
        top_k=sc.top_k, ranking=sc.ranking, weighting=sc.weighting, n_estimators=sc.n_estimators,
        min_samples_leaf=sc.min_samples_leaf, l1_ratios=tuple(sc.l1_ratios), n_alphas=sc.n_alphas,
        alpha_min_ratio=sc.alpha_min_ratio, cv_folds=sig_folds, alpha_rule=sc.alpha_rule,
        random_state=cfg.seed,
        n_jobs=cfg.n_jobs,
        feature_groups=tuple(sc.feature_groups) if sc.feature_groups else None,
        allow_empty=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="all coefficients are zero")
        warnings.filterwarnings("ignore", message="DeepRadiomicsSignature: the elastic net kept no")
        signature.fit(train[fused], make_survival_y(train[TIME], train[EVENT]))
    return signature, signature.predict(train[fused])


def _cutoff(
    train: pd.DataFrame, score: np.ndarray, cfg: SurvivalConfig, name: str, notes: list[str],
    sink: list[str],
) -> tuple[float, str, dict[str, Any]]:
    """The risk-group cut-off on the training signature: the median, or the maximally selected
    log-rank cut-point (falling back to the median, with a warning, where no cut-point leaves
    ``cutoff_minprop`` of the patients on each side)."""
    from gliorad.survival.cutpoint import median_cutpoint, optimal_cutpoint

    if cfg.cutoff == "median":
        return median_cutpoint(score), "median", {}
    try:
        res = optimal_cutpoint(train[TIME], train[EVENT], score, minprop=cfg.cutoff_minprop,
                               maxprop=1 - cfg.cutoff_minprop)
    except GlioradInputError as err:
        msg = (f"training cohort {name}: no optimal cut-off can be searched "
               f"({' '.join(err.problems)}); the median is used instead")
        warn(sink, msg)
        return median_cutpoint(score), "median", {"fallback": msg}
    notes.append(res.warning)
    return res.cutpoint, "optimal", {"statistic": res.statistic, "p_value_corrected": res.p_value,
                                     "p_method": res.p_method, "warning": res.warning}


def _cox_models(
    data: pd.DataFrame, coding: FactorCoding, cfg: SurvivalConfig, name: str,
    signature_problem: str | None, coding_notes: Sequence[str], sink: list[str],
    term: str = SIGNATURE,
) -> dict[str, Any]:
    """The integrated and clinical Cox models by their rules (``integrated_selection``,
    ``clinical_selection``); never aborts on the data.

    Where the integrated model has no factor, it is the clinical model (and says so); where
    neither has one, both are None with the reason. Returns the :class:`SurvivalModels` fields
    ``integrated, clinical, integrated_factors, clinical_factors, selection_integrated,
    selection_clinical, model_info``.
    """
    p = f"{cfg.p_threshold:g}"
    sig_ok = signature_problem is None
    if "prespecified" in (cfg.clinical_selection, cfg.integrated_selection):
        for f in cfg.factors:
            if f not in coding.factors:
                why = next((n for n in coding_notes if f"factor {f!r}" in n), "not usable")
                warn(sink, f"pre-specified model(s), training cohort {name}: factor {f!r} left out "
                           f"({why})")
    # ---- clinical
    what_c = f"clinical model (training cohort {name})"
    sel_clin, clinical, clin_factors, clin_reason = None, None, [], None
    if not coding.factors:
        clin_reason = "no clinical factor is available in the training cohort"
    elif cfg.clinical_selection == "paper":
        sel_clin = select_model(data, coding.factors, coding, cfg, what_c, sink)
        clinical, clin_factors = sel_clin.final, list(sel_clin.selected)
        if clinical is None:
            clin_reason = f"paper's rule: {sel_clin.reason}"
    else:
        sel_clin, clin_reason = prespecified_model(data, coding.factors, coding, cfg, what_c, sink)
        clinical, clin_factors = sel_clin.final, list(sel_clin.selected)
    # ---- integrated
    what_i = f"integrated model (training cohort {name})"
    candidates = [*coding.factors, *([term] if sig_ok else [])]
    sel_int, integrated, int_factors, int_reason = None, None, [], None
    sig_absent = signature_problem  # why the signature is not in the integrated model
    if not candidates:
        int_reason = f"no factor is available (no clinical factor; {signature_problem})"
    elif cfg.integrated_selection == "paper":
        sel_int = select_model(data, candidates, coding, cfg, what_i, sink)
        integrated, int_factors = sel_int.final, list(sel_int.selected)
        if sig_ok and term not in int_factors:
            sig_absent = (f"it is not an independent prognostic factor (P >= {p} in the univariate "
                          "or multivariable step)")
            msg = (f"the signature is not an independent prognostic factor in training cohort {name} "
                   f"(P >= {p} in the univariate or multivariable step)")
            if cfg.force_signature:
                integrated, int_factors, int_reason = fit_estimable(
                    data, [*int_factors, term], coding, cfg, what_i, sink)
                msg += "; kept in the integrated model because force_signature is set"
                if term not in int_factors:
                    sig_absent = ("force_signature is set, but its hazard ratio cannot be "
                                  "estimated in the training cohort (a risk group without events "
                                  "or complete separation)")
            warn(sink, msg)
        if integrated is None and int_reason is None:
            int_reason = (f"paper's rule: {sel_int.reason}"
                          + (" (signature included)" if sig_ok else f"; {signature_problem}"))
    else:
        sel_int, int_reason = prespecified_model(data, candidates, coding, cfg, what_i, sink)
        integrated, int_factors = sel_int.final, list(sel_int.selected)
    if integrated is not None and term in int_factors:
        sig_absent = None
    elif sig_absent is None:
        sig_absent = "it cannot be estimated in the training cohort"
    same = False
    if integrated is None and clinical is not None:
        integrated, int_factors, same = clinical, list(clin_factors), True
        int_reason = f"{int_reason}: the integrated model is the clinical model"
        warn(sink, f"training cohort {name}: {int_reason}")
    elif integrated is None:
        int_reason = f"{int_reason}; and no clinical model either ({clin_reason})"
        warn(sink, f"training cohort {name}: no integrated and no clinical model: {int_reason}"
                   + ("; the signature's own C-index, hazard ratio and Kaplan-Meier curves are "
                      "still reported" if sig_ok else ""))
    else:
        int_reason = None if sig_absent is None else f"the signature is not in the model: {sig_absent}"
        if clinical is not None and set(int_factors) == set(clin_factors):
            same = True
            int_reason = f"{int_reason}; its factors are the clinical model's: it is the clinical model"
    if clinical is None and not same:
        warn(sink, f"training cohort {name}: {clin_reason}; the clinical nomogram is not built and "
                   "C-index comparisons are not made")
    info = {
        "integrated": {"rule": cfg.integrated_selection, "p_threshold": cfg.p_threshold,
                       "factors": int_factors, "fitted": integrated is not None,
                       "same_as_clinical": same, "signature_in_model": term in int_factors,
                       "reason": int_reason},
        "clinical": {"rule": cfg.clinical_selection, "p_threshold": cfg.p_threshold,
                     "factors": clin_factors, "fitted": clinical is not None, "reason": clin_reason},
    }
    return {"integrated": integrated, "clinical": clinical, "integrated_factors": int_factors,
            "clinical_factors": clin_factors, "selection_integrated": sel_int,
            "selection_clinical": sel_clin, "model_info": info}


def build_nomograms(models: SurvivalModels) -> None:
    """Nomograms of the integrated and clinical models at the configured times."""
    cfg = models.config
    labels = cfg.factor_labels()
    fmt = "{t:g}-day survival"
    if models.integrated is not None:
        models.nomogram_integrated = build_nomogram(
            models.integrated.model, cfg.times, labels=labels, time_label=fmt)
    if models.clinical is not None:
        models.nomogram_clinical = build_nomogram(
            models.clinical.model, cfg.times, labels=labels, time_label=fmt)
    for attr in ("nomogram_integrated", "nomogram_clinical"):
        nom = getattr(models, attr)
        if nom is not None:  # "1-year survival" rather than "365-day survival"
            axes = tuple(dataclasses.replace(ax, label=f"{time_label(ax.time)} survival")
                         for ax in nom.survival)
            setattr(models, attr, dataclasses.replace(nom, survival=axes))

