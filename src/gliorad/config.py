"""Typed configuration (pydantic). One YAML file validates into :class:`GlioradConfig`.

Only the cohort and clinical-table sections live here so far; later stages add their own sections.
Unknown keys are rejected so a typo in a config file is an error, not a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gliorad.errors import GlioradInputError

TimeUnit = Literal["days", "months", "years"]

#: Days per unit used to convert survival times to days (Julian year / 12 for months).
DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "months": 365.25 / 12.0, "years": 365.25}


def check_sequence_list(v: list[str]) -> list[str]:
    """Shared pydantic check of a ``sequences`` setting: at least one, no duplicates."""
    if not v:
        raise ValueError("at least one sequence is required")
    if len(set(v)) != len(v):
        raise ValueError(f"sequences contain duplicates: {v}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeometryTolerance(_Strict):
    """How far the sequences of one patient may disagree in geometry."""

    spacing_rel: float = Field(1e-3, ge=0, description="relative spacing difference")
    origin_mm: float = Field(1e-2, ge=0, description="origin difference in mm")
    direction: float = Field(1e-3, ge=0, description="absolute difference of direction cosines")


class CohortConfig(_Strict):
    """Where the images are and how files are named.

    ``naming`` is ``auto`` (detect BraTS 2018 or 2023 naming), ``brats2018``, ``brats2023`` or
    ``custom``; with ``custom``, ``mapping`` gives one path template per sequence (and ``seg`` for a
    mask), relative to the cohort folder, with ``{id}`` standing for the patient id, e.g.
    ``{id}/{id}_T1w.nii.gz`` or ``{id}/dicom/T1`` (a DICOM series folder).
    """

    root: Path | None = None
    naming: str = "auto"
    mapping: dict[str, str] = Field(default_factory=dict)
    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2", "flair"])
    seg_labels: list[int] = Field(default_factory=lambda: [0, 1, 2, 4])
    require_seg: bool = False
    tolerance: GeometryTolerance = Field(default_factory=GeometryTolerance)

    @field_validator("sequences")
    @classmethod
    def _at_least_one(cls, v: list[str]) -> list[str]:
        return check_sequence_list(v)


class ClinicalConfig(_Strict):
    """The clinical table: file, column names, time unit and allowed category values.

    ``columns`` maps gliorad's field names (``patient_id``, ``age``, ``sex``, ``grade``,
    ``histology``, ``location``, ``laterality``, ``enhancement``, ``centre``, ``os_time``,
    ``event``) to the column names in the file; fields not mapped are looked up by their own name.
    ``categories`` replaces the allowed values of a categorical field; ``aliases`` adds spellings
    (``{"histology": {"glioblastoma multiforme": "GBM"}}``); ``event_values`` maps other codings
    of the event column to 0/1 (``{"DECEASED": 1, "LIVING": 0}``).

    ``missing`` says what happens to a patient who lacks a field an analysis needs (grade for
    grading, survival time and event for survival): ``exclude`` (default) leaves the patient out
    of that analysis only, counted and listed; ``error`` refuses the table, one line per row.
    """

    path: Path | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    time_unit: TimeUnit = "days"
    categories: dict[str, list[str]] = Field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = Field(default_factory=dict)
    event_values: dict[str, int] = Field(default_factory=dict)
    age_range: tuple[float, float] = (0.0, 120.0)
    max_time_years: float = Field(50.0, gt=0)
    missing: Literal["exclude", "error"] = "exclude"


class GlioradConfig(_Strict):
    cohort: CohortConfig = Field(default_factory=CohortConfig)
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)


def load_config(path: str | Path) -> GlioradConfig:
    """Read a YAML config file; errors name the file and the offending key."""
    from gliorad.io import read_yaml_mapping  # here: gliorad.io loads SimpleITK

    p = Path(path)
    data = read_yaml_mapping(p)
    try:
        cfg = GlioradConfig.model_validate(data)
    except ValidationError as err:
        raise GlioradInputError(
            [
                f"{p}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in err.errors()
            ]
        ) from err
    return _resolve_paths(cfg, p.parent)


def _resolve_paths(cfg: GlioradConfig, base: Path) -> GlioradConfig:
    """Relative paths in a config file are relative to the file's folder."""
    cohort, clinical = cfg.cohort, cfg.clinical
    if cohort.root is not None and not cohort.root.is_absolute():
        cohort = cohort.model_copy(update={"root": base / cohort.root})
    if clinical.path is not None and not clinical.path.is_absolute():
        clinical = clinical.model_copy(update={"path": base / clinical.path})
    return cfg.model_copy(update={"cohort": cohort, "clinical": clinical})
