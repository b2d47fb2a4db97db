"""Settings of the grading model and its evaluation (pydantic), with ``paper`` and ``demo`` presets."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gliorad.errors import GlioradInputError
from gliorad.grading.defaults import CANDIDATE_NAMES, MODEL_CHOICES, PAPER_C, PAPER_GAMMA
from gliorad.settings import ModelChoice, Presets, read_yaml_mapping, validate

__all__ = ["EVALUATION_FIELDS", "MODEL_NAMES", "PAPER_C", "PAPER_GAMMA", "PRESETS",
           "GradingConfig", "cv_problem", "split_surely_fits"]

#: :class:`~gliorad.grading.model.GradingModel` parameters whose setting has another name; every
#: other parameter (but ``n_jobs``, the caller's) is the setting of its own name.
MODEL_NAMES: dict[str, str] = {"random_state": "seed"}
#: Settings of the evaluation and of the choice of model, not parameters of the paper's model
#: (``seed`` serves both; ``model`` and ``candidates`` pick the estimator, see
#: :meth:`GradingConfig.make_model`).
EVALUATION_FIELDS = ("threshold", "cv_splits", "cv_repeats", "split_ratios", "seed", "model",
                     "candidates", "all_sequences")


class GradingConfig(ModelChoice):
    """Everything that decides a grading result.

    Model (paper, Xu et al. 2022): median imputation of missing cells -> z-score (fitted on the
    training data only) -> Levene's test ``p < levene_alpha`` (``levene_test="variance"``: keep
    features whose variance differs between HGG and LGG, the paper's wording; ``"ttest"``: the
    "Levene then Student/Welch t-test" recipe, keep features whose mean differs) -> optional correlation filter ->
    LASSO (``lasso``) -> random-forest top ``rf_k`` of ``rf_n_estimators`` trees -> RBF SVM whose
    ``C`` and ``gamma`` are chosen on ``svm_C`` x ``svm_gamma`` by ``inner_cv``-fold stratified
    CV (ROC AUC), then refitted with Platt-scaled probabilities. ``feature_groups`` (not in the
    paper) runs the selection per feature source and keeps ``rf_k`` split between them (see
    :class:`~gliorad.grading.model.GradingModel`).

    Evaluation: ``cv_repeats`` x ``cv_splits`` repeated stratified CV, or a stratified split with
    ``split_ratios`` (train, validation, test; paper 6:2:2). ``threshold`` turns the HGG
    probability into a call for accuracy, sensitivity, precision and specificity.

    Model (not in the paper): ``model`` is ``paper`` (the recipe above, the default), the name of
    another candidate of :mod:`gliorad.grading.candidates` (``logistic_l1``, ``logistic_enet``,
    ``svm``, ``rf``, ``extra_trees``, ``hgb``, ``ensemble``), or ``auto``: the candidate with the
    best ``inner_cv``-fold cross-validated AUC on the training patients
    (:class:`~gliorad.grading.auto.AutoGradingModel`; nested in every evaluation fold).
    ``candidates`` limits what ``auto`` (and ``ensemble``) search; None: all. Both are left out
    of the dumped settings at their defaults, so that results made before they existed keep
    their fingerprints (:class:`~gliorad.settings.ModelChoice`).

    ``all_sequences`` (not in the paper; left out of the dump while False): besides one radiomics
    set per sequence, grade ``radiomics_all`` (every sequence's radiomics together; Table S3 row
    "All sequences"), which the run's fused model takes when its validation AUC is the best.
    """

    MODELS = MODEL_CHOICES
    CANDIDATES = CANDIDATE_NAMES
    OMITTED_AT_DEFAULT = ("model", "candidates", "all_sequences")

    impute: Literal["median", "mean"] = "median"
    levene_alpha: float | None = Field(0.05, gt=0, lt=1, description="None skips Levene's test")
    levene_test: Literal["variance", "ttest"] = "variance"
    levene_center: Literal["median", "mean", "trimmed"] = "median"
    correlation_threshold: float | None = Field(None, gt=0, le=1,
                                                description="None: no redundancy filter")
    lasso: Literal["logistic", "lasso", "none"] = "logistic"
    lasso_cv: int = Field(5, ge=2)
    lasso_strengths: int = Field(10, ge=1)
    rf_n_estimators: int = Field(100, ge=1)
    rf_k: int = Field(8, ge=1)
    all_sequences: bool = False
    feature_groups: tuple[str, ...] | None = Field(
        None, description="column prefixes of feature sources selected separately (e.g. cnn3d_); "
                          "None: one joint selection (the paper's)")
    svm_C: tuple[float, ...] = PAPER_C
    svm_gamma: tuple[float, ...] = PAPER_GAMMA
    inner_cv: int = Field(5, ge=2)
    class_weight: Literal["balanced"] | None = None
    threshold: float = Field(0.5, gt=0, lt=1)
    cv_splits: int = Field(5, ge=2)
    cv_repeats: int = Field(3, ge=1)
    split_ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    model: str = Field("paper", description="paper, auto, or a candidate's name "
                       "(gliorad.grading.candidates)")
    candidates: tuple[str, ...] | None = Field(
        None, description="the candidates auto and ensemble search (None: all)")

    @field_validator("svm_C", "svm_gamma")
    @classmethod
    def _positive_grid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("the grid needs at least one value")
        if any(x <= 0 for x in v):
            raise ValueError(f"grid values must be > 0, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _ratios(self) -> GradingConfig:
        train, val, test = self.split_ratios
        if train <= 0 or test <= 0 or val < 0 or abs(train + val + test - 1.0) > 1e-6:
            raise ValueError(
                f"split_ratios {self.split_ratios} must be (train > 0, validation >= 0, "
                "test > 0) summing to 1, e.g. (0.6, 0.2, 0.2)")
        need = {"auto": 1, "ensemble": 2}.get(self.model, 0)
        if len(self.searched()) < need:
            raise ValueError(
                f"model {self.model!r} needs at least {need} candidate(s) besides 'ensemble' to "
                f"search; candidates {list(self.candidates or ())} leave "
                f"{len(self.searched())}")
        return self

    def searched(self) -> tuple[str, ...]:
        """The single candidates ``auto`` and ``ensemble`` search (``candidates``, or all; never
        ``ensemble`` itself), in the tie-breaking order of
        :data:`~gliorad.grading.defaults.CANDIDATE_NAMES`."""
        chosen = set(self.candidates or CANDIDATE_NAMES)
        return tuple(c for c in CANDIDATE_NAMES if c in chosen and c != "ensemble")

    # ------------------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GradingConfig:
        """``paper`` (the paper's settings, 11 x 11 grid) or ``demo`` (small grid, 2 CPU cores)."""
        return cls.from_dict({**PRESETS.data(name), **overrides}, source=f"preset {name!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "grading config") -> GradingConfig:
        """Validate a mapping; errors name the key, the value and the rule."""
        return validate(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path, preset: str = "paper") -> GradingConfig:
        """Read a YAML file: its ``grading:`` section (or the whole mapping) over ``preset``."""
        p = Path(path)
        data = read_yaml_mapping(p)
        section = data.get("grading", data if "cohort" not in data else {})
        if not isinstance(section, dict):
            raise GlioradInputError(f"{p}: 'grading' must be a mapping")
        return cls.from_dict({**PRESETS.data(preset), **section}, source=str(p))

    # ------------------------------------------------------------------------------ model
    def model_params(self) -> dict[str, Any]:
        """The :class:`~gliorad.grading.model.GradingModel` parameters these settings decide,
        read off its signature: each is the setting of its name (:data:`MODEL_NAMES`: of another
        name), so a parameter is named once, in the model; ``n_jobs`` is the caller's."""
        from gliorad.grading.model import GradingModel  # scikit-learn: only to build a model

        names = [n for n in inspect.signature(GradingModel).parameters if n != "n_jobs"]
        params = {n: getattr(self, MODEL_NAMES.get(n, n)) for n in names}
        params["feature_groups"] = self.feature_groups or None  # []: one joint selection
        return params

    def make_model(self, n_jobs: int | None = None) -> Any:
        """The unfitted model of ``model``: the paper's
        :class:`~gliorad.grading.model.GradingModel` for these settings (the default), another
        candidate or, for ``auto``, the :class:`~gliorad.grading.auto.AutoGradingModel` over
        ``candidates`` (:func:`gliorad.grading.auto.make_candidate`)."""
        from gliorad.grading.model import GradingModel

        if self.model == "paper":
            return GradingModel(**self.model_params(), n_jobs=n_jobs)
        from gliorad.grading.auto import make_candidate

        return make_candidate(self.model, self, n_jobs=n_jobs)


PRESETS = Presets(GradingConfig, {
    "paper": {},
    "demo": {
        "lasso_strengths": 6,
        "lasso_cv": 3,
        "rf_n_estimators": 50,
        "svm_C": (0.5, 2.0, 8.0, 32.0),
        "svm_gamma": (2.0**-5, 2.0**-3, 2.0**-1),
        "inner_cv": 3,
        "cv_splits": 5,
        "cv_repeats": 2,
    },
}, what="preset")


# ------------------------------------------------------------------ feasibility (no sklearn)
def cv_problem(n_hgg: int, n_lgg: int, splits: int) -> str | None:
    """Why ``splits``-fold stratified CV cannot grade this many patients (None: it can).

    Every test fold needs a patient of each class (``splits`` of each), and every training fold
    two of each (the Levene filter compares the classes' variances): ``ceil(2 k / (k - 1))``.
    """
    def need(k: int) -> int:
        return max(k, math.ceil(2 * k / (k - 1)))

    small = min(n_hgg, n_lgg)
    if small >= need(splits):
        return None
    possible = [k for k in range(2, small + 1) if small >= need(k)]
    advice = (f"use at most {max(possible)} folds (cv_splits / --splits)" if possible else
              "more patients are needed (at least 4 of each class for 2 folds)")
    return (f"{splits}-fold cross-validation needs at least {need(splits)} patients of each class (a "
            f"patient of each class in every test fold, 2 in every training fold); the cohort "
            f"has {n_hgg} HGG and {n_lgg} LGG: {advice}")


def split_surely_fits(counts: Sequence[int], ratios: Sequence[float]) -> bool:
    """True when the stratified split of :func:`gliorad.grading.evaluate.split_positions`
    (``ratios``: train, validation, test) surely succeeds for classes of ``counts`` patients,
    reckoned without scikit-learn; False: it may not (ask ``split_positions``, whose error says
    why).

    The conditions of scikit-learn's ``train_test_split(..., stratify=y)`` (test part
    ``ceil(r * n)`` patients, the rest trains; every class at least 2 patients; each part at least
    one patient per class), for the test split and then the validation split of the rest, with
    each class's share of the test part taken at its largest (``ceil``): the allocation is
    proportional, so a class never gives more.
    """
    train_r, val_r, test_r = (float(r) for r in ratios)
    counts = [int(c) for c in counts if int(c) > 0]
    k, n = len(counts), sum(counts)

    def fits(counts_: list[int], n_: int, size: float) -> bool:
        n_test = math.ceil(size * n_)
        return min(counts_) >= 2 and n_ - n_test >= k and n_test >= k

    if not counts or not fits(counts, n, test_r):
        return False
    if val_r <= 0:
        return True
    n_test = math.ceil(test_r * n)
    rest = [c - math.ceil(c * n_test / n) for c in counts]
    return fits(rest, n - n_test, val_r / (train_r + val_r))
