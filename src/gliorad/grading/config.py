"""Settings of the grading model and its evaluation (pydantic), with ``paper`` and ``demo`` presets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gliorad.errors import GlioradInputError, check_option

if TYPE_CHECKING:  # pragma: no cover
    from gliorad.grading.model import GradingModel

#: Paper-sized SVM grid: C in 2^-3..2^7, gamma in 2^-9..2^1 (11 x 11 points).
PAPER_C = tuple(2.0**e for e in range(-3, 8))
PAPER_GAMMA = tuple(2.0**e for e in range(-9, 2))


class GradingConfig(BaseModel):
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
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        return self

    # ------------------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GradingConfig:
        """``paper`` (the paper's settings, 11 x 11 grid) or ``demo`` (small grid, 2 CPU cores)."""
        check_option("preset", name, PRESETS)
        return cls.from_dict({**PRESETS[name], **overrides}, source=f"preset {name!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "grading config") -> GradingConfig:
        """Validate a mapping; errors name the key, the value and the rule."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise GlioradInputError([
                f"{source}: {'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']} "
                f"(got {e.get('input')!r})" for e in err.errors()
            ]) from err

    @classmethod
    def from_yaml(cls, path: str | Path, preset: str = "paper") -> GradingConfig:
        """Read a YAML file: its ``grading:`` section (or the whole mapping) over ``preset``."""
        from gliorad.io import read_yaml_mapping

        p = Path(path)
        data = read_yaml_mapping(p)
        section = data.get("grading", data if "cohort" not in data else {})
        if not isinstance(section, dict):
            raise GlioradInputError(f"{p}: 'grading' must be a mapping")
        check_option("preset", preset, PRESETS)
        return cls.from_dict({**PRESETS[preset], **section}, source=str(p))

    def make_model(self, n_jobs: int | None = None) -> GradingModel:
        """The unfitted :class:`~gliorad.grading.model.GradingModel` for these settings."""
        from gliorad.grading.model import GradingModel

        return GradingModel(
            impute=self.impute, levene_alpha=self.levene_alpha, levene_test=self.levene_test,
            levene_center=self.levene_center,
            correlation_threshold=self.correlation_threshold, lasso=self.lasso,
            lasso_cv=self.lasso_cv, lasso_strengths=self.lasso_strengths,
            rf_n_estimators=self.rf_n_estimators, rf_k=self.rf_k, svm_C=tuple(self.svm_C),
            svm_gamma=tuple(self.svm_gamma), inner_cv=self.inner_cv,
            class_weight=self.class_weight, random_state=self.seed, n_jobs=n_jobs,
            feature_groups=tuple(self.feature_groups) if self.feature_groups else None,
        )


PRESETS: dict[str, dict[str, Any]] = {
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
}
