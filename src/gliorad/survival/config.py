"""Settings of the LGG survival analysis: :class:`SurvivalConfig` (with :class:`SplitConfig`,
:class:`SequenceConfig`, :class:`SignatureConfig`), the ``paper`` / ``demo`` presets, the
default clinical factors, their reference levels and labels, and the names every survival module
shares (the table's survival columns, :class:`SurvivalWarning`, horizon labels).

Light by design: this module imports pydantic and nothing heavy (no numpy, pandas, lifelines,
scikit-survival, matplotlib), so settings can be checked without loading the analysis.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from gliorad.settings import ModelChoice, Presets, Strict

#: Survival columns of a prepared table and the risk-group column the analysis adds.
TIME, EVENT, SIGNATURE = "os_days", "event", "signature"
#: The integrated Cox model's signature term under ``signature_term: continuous``: the
#: signature score z-scored with the training patients' mean and SD (hazard ratio per SD).
SIGNATURE_Z = "signature_z"
DAYS_PER_YEAR = 365.25

__all__ = [
    "DAYS_PER_YEAR",
    "DEFAULT_FACTORS",
    "DEFAULT_LABELS",
    "DEFAULT_REFERENCES",
    "EVENT",
    "PRESETS",
    "SIGNATURE",
    "SIGNATURE_Z",
    "SURVIVAL_CANDIDATES",
    "SURVIVAL_MODELS",
    "TIME",
    "TRAINING_SCORES",
    "SearchConfig",
    "SequenceConfig",
    "SignatureConfig",
    "SplitConfig",
    "SurvivalConfig",
    "SurvivalWarning",
    "time_label",
    "warn",
]


class SurvivalWarning(UserWarning):
    """A survival result that is computed but fragile (few events per factor, skipped curve)."""


def warn(sink: list[str], message: str) -> None:
    """Add ``message`` to ``sink`` (the warnings listed in ``metrics.json``) and issue it as a
    :class:`SurvivalWarning` (attributed to the caller's caller)."""
    sink.append(message)
    warnings.warn(message, SurvivalWarning, stacklevel=3)


def time_label(days: float) -> str:
    """``1-year`` for 365/365.25 days, else ``<d>-day``."""
    years = days / DAYS_PER_YEAR
    if abs(years - round(years)) * DAYS_PER_YEAR <= 1.5 and round(years) >= 1:
        return f"{round(years)}-year"
    return f"{days:g}-day"


# ================================================================================ settings
class SplitConfig(Strict):
    """How patients are split into a training cohort and validation cohorts.

    ``method="column"``: ``column`` holds the cohort of each patient (e.g. ``centre``);
    ``train`` is the training value and ``external`` the validation values (empty: every other
    value). ``method="random"``: a stratified random split (``train_fraction``; the validation
    cohort is called ``validation``). ``method="none"``: all patients train (for ``cv``).
    """

    method: Literal["column", "random", "none"] = "column"
    column: str = "centre"
    train: str | None = None
    external: list[str] = Field(default_factory=list)
    train_fraction: float = Field(0.7, gt=0.0, lt=1.0)


class SequenceConfig(Strict):
    """Feature columns and the per-sequence prognosis models (Part 1).

    Radiomics columns are ``<sequence>_...``; deep (2D dual-task CNN) columns start with
    ``deep_prefix``. ``sequences`` empty: every feature column is used, no sequence choice.
    ``fallback``: what the signature uses when the choice cannot be estimated (too few patients
    per prognosis class for a 2-fold CV): ``all`` candidate sequences' radiomics, or the
    ``first`` candidate (:func:`gliorad.survival.sequence_choice.choose_sequence`).
    """

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    force: str | None = None
    evaluate: bool = True
    deep_prefix: str | None = "cnn2d_"
    top_k: int = Field(10, ge=1)
    levene_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    levene_test: Literal["variance", "ttest"] = "variance"
    n_estimators: int = Field(100, ge=1)
    cv_folds: int = Field(5, ge=2)
    threshold: Literal["observed_median", "km_median"] = "observed_median"
    censored: Literal["exclude", "favourable"] = "exclude"
    fallback: Literal["all", "first"] = "all"


class SignatureConfig(Strict):
    """Settings of :class:`DeepRadiomicsSignature` (see its docstring)."""

    top_k: int = Field(10, ge=1)
    ranking: Literal["residual_rf", "rsf_depth", "rf_time"] = "residual_rf"
    weighting: Literal["coxnet", "elasticnet_time"] = "coxnet"
    n_estimators: int = Field(500, ge=1)
    min_samples_leaf: int = Field(5, ge=1)
    l1_ratios: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9, 1.0])
    n_alphas: int = Field(30, ge=1)
    alpha_min_ratio: float = Field(0.01, gt=0.0, lt=1.0)
    alpha_rule: Literal["best", "1se"] = "best"
    cv_folds: int = Field(5, ge=2)
    feature_groups: list[str] | None = Field(
        None, description="column prefixes of feature sources ranked separately (e.g. cnn2d_); "
                          "None: one ranking (the paper's)")


#: The survival candidates (``survival.model: NAME``), in the order that breaks ties of the
#: automatic choice: the paper's signature first, then the simpler models (the pre-specified
#: clinical model, the Cox elastic net), the tree ensembles last (:mod:`gliorad.survival.candidates`).
SURVIVAL_CANDIDATES = ("paper", "clinical", "coxnet", "gbcox", "rsf")
#: Every value of ``survival.model``: a candidate, or ``auto`` (chosen by inner cross-validation
#: in the training cohort, :mod:`gliorad.survival.search`).
SURVIVAL_MODELS = ("paper", "auto", *SURVIVAL_CANDIDATES[1:])


#: How the elastic net's and the boosted model's training patients are scored
#: (``search.training_score``).
TrainingScore = Literal["out_of_fold", "in_sample"]
TRAINING_SCORES: tuple[str, ...] = get_args(TrainingScore)


class SearchConfig(Strict):
    """Settings of the candidates besides the paper's signature, and of the inner
    cross-validation that scores them (not in the paper; :mod:`gliorad.survival.search`).

    ``inner_folds``: stratified folds (on the event) of the training cohort in which ``auto``
    scores every candidate, also the folds of the Cox elastic net's penalty search (both fewer
    when the training cohort has fewer events or censored patients). ``coxnet_*``: the Cox
    elastic net on all z-scored features (mixing, penalties on the path, smallest penalty as a
    fraction of the largest). ``rsf_*``: the random survival forest (trees, leaf size).
    ``gbcox_*``: gradient-boosted Cox model (trees, learning rate, row subsample, depth).
    ``features``: what the candidates read: ``all`` (every sequence of ``sequence.sequences``'
    radiomics plus the deep columns: no sequence choice, whose single noisy pick the candidates
    need not inherit) or ``sequence`` (the paper's: the chosen sequence's radiomics plus deep).
    The paper's signature always reads the chosen sequence.
    ``training_score``: the training patients' score of ``coxnet`` and ``gbcox`` that the
    integrated Cox model and the cut-off are fitted on: ``out_of_fold`` (each patient's score
    from a model fitted without its fold: the elastic net's penalty-search folds, ``inner_folds``
    more boosted models) or ``in_sample`` (the final model's, whose optimism inflates the
    signature's weight in the integrated model). The forest's is always out-of-bag.
    ``factor_rules``: empty (the default): both Cox models follow ``clinical_selection`` /
    ``integrated_selection``. A list (``[paper, prespecified]``): the search also chooses the
    factor rule, one for both Cox models (so the integrated model is compared with a clinical
    model built the same way): every candidate is scored under every rule by the same inner
    folds, and the pair with the best inner C-index is fitted (ties: the candidate order, then
    the order of this list).
    """

    inner_folds: int = Field(5, ge=2)
    features: Literal["all", "sequence"] = "all"
    training_score: TrainingScore = "out_of_fold"
    factor_rules: list[Literal["paper", "prespecified"]] = Field(default_factory=list)
    coxnet_l1_ratio: float = Field(0.5, gt=0.0, le=1.0)
    coxnet_n_alphas: int = Field(30, ge=2)
    coxnet_alpha_min_ratio: float = Field(0.01, gt=0.0, lt=1.0)
    rsf_trees: int = Field(200, ge=1)
    rsf_min_samples_leaf: int = Field(10, ge=1)
    gbcox_trees: int = Field(200, ge=1)
    gbcox_learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    gbcox_subsample: float = Field(0.8, gt=0.0, le=1.0)
    gbcox_max_depth: int = Field(2, ge=1)

    @field_validator("factor_rules")
    @classmethod
    def _distinct_rules(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"factor_rules {v}: each rule once")
        return v


DEFAULT_FACTORS = ["age", "sex", "location", "grade", "laterality", "histology", "enhancement"]
DEFAULT_REFERENCES = {
    "sex": "F", "location": "frontal", "grade": "II", "laterality": "left",
    "histology": "astrocytoma", "enhancement": "no",
}
DEFAULT_LABELS = {
    "age": "Age", "sex": "Sex", "location": "Location", "grade": "Grade",
    "laterality": "Laterality", "histology": "Histologic type",
    "enhancement": "Contrast enhancement", SIGNATURE: "Signature",
}


class SurvivalConfig(ModelChoice):
    """Every setting of the survival analysis. Times are in days (the clinical table's unit
    is converted on reading); ``times`` are the nomogram / calibration horizons.

    ``clinical_selection`` / ``integrated_selection``: the factor rule of each Cox model.
    ``paper`` (Xu et al. 2022): univariate P < ``p_threshold``, then multivariable
    P < ``p_threshold``, refitted. ``prespecified`` (the rms / TRIPOD habit): every usable factor
    of ``factors`` (the integrated model adds the signature), no P-value selection; a factor with
    a single level or that cannot be estimated in the training cohort is left out with a warning.

    ``model`` (not in the paper) decides how the image signature is made: ``paper`` (the paper's
    deep-radiomics signature, the default), ``coxnet`` (Cox elastic net on all fused features),
    ``rsf`` (random survival forest), ``gbcox`` (gradient-boosted Cox model), ``clinical`` (no
    signature: the integrated model is the clinical model), or ``auto``: the candidate whose
    integrated model has the best inner cross-validated C-index in the training cohort
    (:mod:`gliorad.survival.search`; external cohorts never influence the choice).
    ``candidates`` limits what ``auto`` searches (None: all of :data:`SURVIVAL_CANDIDATES`; read
    by ``auto`` only, so a preset's list stays valid when a command line names one model);
    ``search`` holds the candidates' settings. The three are left out of the dumped settings at
    their defaults, so results made before they existed keep their fingerprints
    (:class:`~gliorad.settings.ModelChoice`).

    ``signature_term`` (not in the paper) is how the signature enters the integrated Cox model:
    ``group`` (the paper: the high/low risk group at the cut-off) or ``continuous`` (the score
    z-scored with the training patients' mean and SD, ``signature_z``: a hazard ratio per SD;
    the risk groups stay for the Kaplan-Meier curves and log-rank tests). A median split throws
    away the ranking within each group; the continuous term keeps it. Left out of the dumped
    settings at its default.
    """

    MODELS = SURVIVAL_MODELS
    CANDIDATES = SURVIVAL_CANDIDATES
    OMITTED_AT_DEFAULT = ("model", "candidates", "search", "signature_term")

    population: Literal["LGG", "all"] = "LGG"
    split: SplitConfig = Field(default_factory=SplitConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    cutoff: Literal["median", "optimal"] = "median"
    cutoff_minprop: float = Field(0.1, gt=0.0, lt=0.5)
    factors: list[str] = Field(default_factory=lambda: list(DEFAULT_FACTORS))
    reference_levels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REFERENCES))
    labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS))
    p_threshold: float = Field(0.05, gt=0.0, lt=1.0)
    clinical_selection: Literal["paper", "prespecified"] = "paper"
    integrated_selection: Literal["paper", "prespecified"] = "paper"
    force_signature: bool = False
    min_level_size: int = Field(5, ge=0)
    missing: Literal["complete_case", "impute"] = "complete_case"
    min_events_per_factor: float = Field(10.0, ge=0.0)
    times: list[float] = Field(default_factory=lambda: [365.0, 1095.0, 1825.0])
    calibration_boot: int = Field(40, ge=0)
    calibration_groups: int = Field(3, ge=1)
    cv_folds: int = Field(5, ge=2)
    seed: int = 0
    n_jobs: int = Field(1, ge=1)
    model: str = Field("paper", description="paper, auto, or a candidate's name "
                       "(gliorad.survival.candidates)")
    candidates: tuple[str, ...] | None = Field(
        None, description="the candidates auto searches (None: all)")
    search: SearchConfig = Field(default_factory=SearchConfig)
    signature_term: Literal["group", "continuous"] = "group"

    def factor_labels(self) -> dict[str, str]:
        """``labels`` with the continuous signature term's (``signature_z``: "Signature (per
        SD)") unless ``labels`` names it."""
        return {SIGNATURE_Z: "Signature (per SD)", **self.labels}

    def searched(self) -> tuple[str, ...]:
        """The candidates ``auto`` searches (``candidates``, or all), in the tie-breaking order
        of :data:`SURVIVAL_CANDIDATES`."""
        chosen = set(self.candidates or SURVIVAL_CANDIDATES)
        return tuple(c for c in SURVIVAL_CANDIDATES if c in chosen)

    @field_validator("times")
    @classmethod
    def _positive_times(cls, v: list[float]) -> list[float]:
        if not v or any(not (t > 0 and math.isfinite(t)) for t in v):
            raise ValueError(f"times must be positive numbers of days; got {v}")
        return sorted(v)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SurvivalConfig:
        """``"paper"`` (the paper's settings) or ``"demo"`` (small, for 2 CPU cores)."""
        return cls.model_validate({**PRESETS.data(name), **overrides})


PRESETS = Presets(SurvivalConfig, {
    "paper": {
        "signature": {"top_k": 10, "n_estimators": 500, "n_alphas": 50},
        "sequence": {"sequences": ["t1", "t1ce", "t2"], "top_k": 10},
        "cutoff": "median", "times": [365.0, 1095.0, 1825.0], "calibration_boot": 200,
        "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
        "clinical_selection": "paper", "integrated_selection": "paper",
    },
    "demo": {
        "signature": {"top_k": 10, "n_estimators": 200, "n_alphas": 20, "l1_ratios": [0.5, 1.0]},
        "sequence": {"sequences": ["t1", "t1ce", "t2"], "top_k": 10, "n_estimators": 50},
        "cutoff": "median", "times": [365.0, 1095.0, 1825.0], "calibration_boot": 20,
        "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
        "clinical_selection": "paper", "integrated_selection": "paper",
        "cv_folds": 3,
    },
}, what="preset")
