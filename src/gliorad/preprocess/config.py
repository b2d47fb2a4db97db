"""Settings of ``gliorad preprocess`` (pydantic): which steps run, how, and how raw files are found.

A YAML file for ``gliorad preprocess --config`` holds a ``preprocess:`` section (this model) and
optionally a ``cohort:`` section (:class:`gliorad.config.CohortConfig`, used when the raw folder is a
cohort in BraTS or custom naming). ``preset: brats`` starts from :data:`PRESETS` ``["brats"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from gliorad.errors import GlioradInputError
from gliorad.settings import Presets, Strict, merge, read_yaml_mapping, validate

if TYPE_CHECKING:
    from gliorad.config import CohortConfig

#: Default file-name patterns per sequence (see :mod:`gliorad.preprocess.inputs`). They are matched,
#: case-insensitively, against the file name *without* its image extension (``.nii.gz``, ``.nrrd``,
#: ...), or a folder name for a DICOM series. ``*`` and ``?`` are shell wildcards, ``re:...`` is a
#: regular expression searched in the name, and a leading ``!`` excludes what it matches.
DEFAULT_PATTERNS: dict[str, list[str]] = {
    "t1": ["*t1", "*t1n", "*t1w", "*t1_pre", "*t1pre", "*t1_native"],
    "t1ce": ["*t1c", "*t1ce", "*t1gd", "*t1_gd", "*t1-gd", "*t1post", "*t1_post", "*post*gad*",
             "*t1*contrast*"],
    "t2": ["*t2", "*t2w", "!*flair*"],
    "flair": ["*fla", "*flair", "*flair_*", "*t2f", "*t2_flair*"],
}


class Steps(Strict):
    """Which steps run. With ``skull_strip`` off the brain is the non-zero voxels (already stripped
    data); with ``coregister`` off the sequences must already share one physical space."""

    n4: bool = True
    coregister: bool = True
    skull_strip: bool = True
    resample: bool = True
    zscore: bool = True


class N4Settings(Strict):
    """N4 runs on a copy shrunk to about ``shrink_mm`` voxels; the bias field is then evaluated at
    full resolution (``GetLogBiasFieldAsImage``)."""

    shrink_mm: float = Field(6.0, gt=0)
    iterations: list[int] = Field(default_factory=lambda: [50, 50, 30])
    convergence: float = Field(1e-3, gt=0)
    control_points: int = Field(4, ge=4, description="initial B-spline mesh size per axis")


class RegistrationSettings(Strict):
    """Co-registration of every sequence to the reference sequence (Mattes mutual information,
    multi-resolution, regular-step gradient descent with physical-shift scales). Images are first resampled to an isotropic
    ``working_spacing`` grid so that thick slices are not shrunk further."""

    transform: Literal["rigid", "affine"] = "rigid"
    working_spacing: float = Field(2.0, gt=0, description="mm, isotropic grid registered on")
    shrink_factors: list[int] = Field(default_factory=lambda: [4, 2, 1])
    smoothing_mm: list[float] = Field(default_factory=lambda: [2.0, 1.0, 0.0])
    histogram_bins: int = Field(32, ge=8)
    sampling: float = Field(0.10, gt=0, le=1, description="fraction of fixed voxels sampled")
    iterations: int = Field(100, ge=1, description="per level")
    learning_rate: float = Field(1.0, gt=0, description="first step of the optimiser (mm)")
    min_step: float = Field(0.01, gt=0, description="the optimiser stops below this step (mm)")
    seed: int = Field(1, ge=1, description="sampling seed (ITK reads 0 as 'use the clock')")
    deterministic: bool = Field(
        True, description="register on one thread: ITK's multi-threaded sums differ in the last "
        "bits between runs, which changes the optimiser's path; one thread gives the same result "
        "every time")

    @model_validator(mode="after")
    def _levels(self) -> RegistrationSettings:
        if len(self.shrink_factors) != len(self.smoothing_mm) or not self.shrink_factors:
            raise ValueError(
                f"shrink_factors {self.shrink_factors} and smoothing_mm {self.smoothing_mm} must "
                "have the same, non-zero length (one entry per resolution level)"
            )
        if any(s < 1 for s in self.shrink_factors):
            raise ValueError(f"shrink_factors {self.shrink_factors} must be >= 1")
        return self


class AtlasStripSettings(Strict):
    """Atlas skull stripping (:func:`gliorad.preprocess.skullstrip.atlas_strip`)."""

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce"],
                                 description="first one present is registered to the atlas")
    working_spacing: float = Field(3.0, gt=0)
    scalp_mm: float = Field(5.0, ge=0, description="outer layer of the head left out of the "
                            "registration metric (the template has no scalp)")
    bspline: bool = Field(True, description="coarse B-spline stage after the affine")
    bspline_mesh_mm: float = Field(50.0, gt=0)
    bspline_shrink: list[int] = Field(default_factory=lambda: [2])
    bspline_iterations: int = Field(30, ge=1)
    sampling: float = Field(0.2, gt=0, le=1, description="fraction of head voxels sampled")
    learning_rate: float = Field(2.0, gt=0, description="first optimiser step (mm)")
    min_step: float = Field(0.05, gt=0, description="the optimiser stops below this step (mm)")
    refine: bool = Field(True, description="morphological / intensity refinement of the mask")
    seed: int = Field(1, ge=1, description="sampling seed (ITK reads 0 as 'use the clock')")


class PreprocessConfig(Strict):
    """All settings of the preprocessing stage (defaults: the full raw-MRI pipeline)."""

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2", "flair"])
    reference: str = Field("t1ce", description="sequence the others are registered to")
    steps: Steps = Field(default_factory=Steps)
    spacing: float = Field(1.0, gt=0, description="output voxel size in mm (isotropic)")
    interpolation: Literal["linear", "bspline"] = "linear"
    stripper: str = "atlas"
    n4: N4Settings = Field(default_factory=N4Settings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    atlas: AtlasStripSettings = Field(default_factory=AtlasStripSettings)
    patterns: dict[str, list[str]] = Field(default_factory=dict)
    layout: Literal["auto", "patient", "cohort", "folders"] = "auto"
    threads: int = Field(2, ge=1, description="SimpleITK threads")

    @field_validator("sequences")
    @classmethod
    def _sequences(cls, v: list[str]) -> list[str]:
        from gliorad.config import check_sequence_list

        return check_sequence_list(v)

    @model_validator(mode="after")
    def _reference_listed(self) -> PreprocessConfig:
        if self.reference not in self.sequences:
            raise ValueError(
                f"reference {self.reference!r} is not one of the sequences {self.sequences}"
            )
        return self

    def sequence_patterns(self) -> dict[str, list[str]]:
        """Patterns per sequence: the defaults, with the sequences given in ``patterns`` replaced."""
        out = {s: list(DEFAULT_PATTERNS.get(s, [])) for s in self.sequences}
        out.update({s: list(p) for s, p in self.patterns.items() if s in self.sequences})
        return out


#: Named starting points. ``brats``: data already skull-stripped, co-registered and at 1 mm
#: (BraTS): no N4, no registration, no resampling, the brain is the non-zero voxels, z-score only.
PRESETS = Presets(PreprocessConfig, {
    "raw": {},
    "brats": {
        "steps": {"n4": False, "coregister": False, "skull_strip": False, "resample": False,
                  "zscore": True},
    },
}, what="preprocess preset")


def make_config(preset: str = "raw", **overrides: Any) -> PreprocessConfig:
    """A config from a preset name plus overrides (nested dicts merge into the preset)."""
    return validate(PreprocessConfig, merge(PRESETS.data(preset), overrides), section="preprocess")


def load_preprocess_config(
    path: str | Path | None, preset: str | None = None
) -> tuple[PreprocessConfig, CohortConfig]:
    """Read the ``preprocess:`` (and optional ``cohort:``) sections of a YAML file.

    ``preset`` (or the file's ``preprocess.preset`` key) picks the starting point; keys given in the
    file override it. Unknown keys are errors naming the key.
    """
    from gliorad.config import CohortConfig  # here, so gliorad.config may import this module

    p = Path(path) if path is not None else None
    data = read_yaml_mapping(p) if p is not None else {}
    where = f"{p}: " if p is not None else ""
    pre = dict(data.get("preprocess") or {})
    file_preset = pre.pop("preset", None)
    chosen = preset or file_preset or "raw"
    try:
        cfg = make_config(chosen, **pre)
    except GlioradInputError as err:
        raise GlioradInputError([f"{where}{line}" for line in err.problems]) from err
    cohort = validate(CohortConfig, data.get("cohort") or {}, str(p or ""), "cohort")
    return cfg, cohort


def with_overrides(config: PreprocessConfig, **overrides: Any) -> PreprocessConfig:
    """A copy of ``config`` with ``overrides`` applied (nested dicts merge), validated again."""
    return validate(PreprocessConfig, merge(config.model_dump(), overrides), section="preprocess")
