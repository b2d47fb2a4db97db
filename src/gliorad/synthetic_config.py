"""Settings of the synthetic cohort (:func:`gliorad.synthetic.generate_cohort`), light: no NumPy,
SimpleITK or nilearn, so that a run config's ``synthetic:`` section is checked without them.
:mod:`gliorad.synthetic` re-exports both names."""

from __future__ import annotations

from pydantic import Field

from gliorad.settings import Strict

__all__ = ["CentreEffects", "SynthConfig"]


class CentreEffects(Strict):
    """Scanner effects of one centre."""

    intensity_scale: float = 1000.0
    scale_jitter: float = 0.08
    bias_amplitude: float = 0.10
    noise_sd: float = 0.02
    slice_thickness_mm: float | None = None


class SynthConfig(Strict):
    """Settings of :func:`gliorad.synthetic.generate_cohort`; every number is a generating parameter in truth.json."""

    n_patients: int = Field(40, ge=2)
    seed: int = 0
    spacing: float = Field(2.0, ge=1.0, le=4.0)
    hgg_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    centre_b_fraction: float = Field(0.45, ge=0.0, le=1.0)
    grade_slope: float = 3.0
    infiltration_slope: float = 3.0
    infiltration_max_mm: float = Field(24.0, ge=0.0)
    mismatch_slope: float = 3.0
    mismatch_max: float = Field(0.5, ge=0.0, lt=1.0)
    lgg_cox: dict[str, float] = Field(default_factory=lambda: {
        "age_per_year": 0.04, "oligodendroglioma": -0.9, "oligoastrocytoma": 0.5,
        "grade_III": 0.7, "enhancement": 0.6, "phenotype_z": 0.8,
    })
    hgg_cox: dict[str, float] = Field(default_factory=lambda: {"age_per_year": 0.03, "phenotype_z": 0.5})
    lgg_baseline: dict[str, float] = Field(default_factory=lambda: {"shape": 1.2, "median_days": 2200.0})
    hgg_baseline: dict[str, float] = Field(default_factory=lambda: {"shape": 1.3, "median_days": 430.0})
    followup_years: tuple[float, float] = (1.0, 10.0)
    loss_rate_per_year: float = 0.03
    centres: dict[str, CentreEffects] = Field(default_factory=lambda: {
        "A": CentreEffects(),
        "B": CentreEffects(intensity_scale=600.0, bias_amplitude=0.2, noise_sd=0.035,
                           slice_thickness_mm=5.0),
    })
