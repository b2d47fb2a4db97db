"""Typed configuration (pydantic). One YAML file validates into :class:`GlioradConfig`.

Only the cohort and clinical-table sections live here so far; later stages add their own sections.
Unknown keys are rejected so a typo in a config file is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gliorad.settings import Strict, read_yaml_mapping, validate

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


class GeometryTolerance(Strict):
    """How far the sequences of one patient may disagree in geometry."""

    spacing_rel: float = Field(1e-3, ge=0, description="relative spacing difference")
    origin_mm: float = Field(1e-2, ge=0, description="origin difference in mm")
    direction: float = Field(1e-3, ge=0, description="absolute difference of direction cosines")


# ------------------------------------------------------------------------------------------ DICOM
# Regular expressions, searched case-insensitively in a series' SeriesDescription (0008,103E), or
# its ProtocolName (0018,1030) when the description is empty or says nothing (see gliorad.dicom).
# A leading '!' makes a pattern an exclusion. (?<![a-z0-9]) / (?![a-z0-9]) stand for word
# boundaries that, unlike \b, also hold at '_' (t1_se_tra, 3D_TFE).
_B, _E = r"(?<![a-z0-9])", r"(?![a-z0-9])"
_T1_WORD = r"(t1(?!\d)|mp-?rage|spgr|bravo|(?<![a-z0-9])tfe(?![a-z]))"
_POST_WORD = (r"(post|gado|gad(?![a-z])|(?<![a-z])gd(?![a-z])|contrast|\+\s*c(?![a-z])|"
              r"(?<![a-z])c\+|(?<![a-z])ce(?![a-z])|(?<![a-z])km(?![a-z])|enhanc|w/\s*c(?![a-z]))")

#: Default sequence patterns. A series matched by ``t1ce`` is T1-Gd even when ``t1`` matches it
#: too (a T1-Gd name is a T1 name plus a contrast word).
DEFAULT_DICOM_PATTERNS: dict[str, list[str]] = {
    "t1": [r"t1(?!\d)", r"mp-?rage", r"spgr", r"bravo", _B + r"tfe" + _E],
    "t1ce": [r"t1[\s_-]*(\+\s*)?(c|ce|gd|gad|post)(?![a-z])",
             rf"^(?=.*{_T1_WORD})(?=.*{_POST_WORD})"],
    "t2": [r"t2(?!\d)", r"!flair", r"!dark[\s_-]?fluid", r"!t2[\s_-]?f" + _E,
           r"!t2\s*\*", r"!t2[\s_-]?star", r"!" + _B + r"(gre|ffe|fl2d|fl3d|hemo|swi|swan|merge|"
           r"pd|stir|tirm)" + _E],
    "flair": [r"flair", r"dark[\s_-]?fluid", _B + r"fla" + _E, r"t2[\s_-]?f" + _E,
              r"!t1(?!\d)"],
}
#: Default names of series that are never one of the sequences: localizers and calibrations,
#: diffusion, perfusion, susceptibility, angiography, spectroscopy, functional MRI, reformats and
#: projections, subtractions.
DEFAULT_DICOM_IGNORE: list[str] = [
    r"locali[sz]er", r"scout", r"survey", _B + r"(loc|3[\s_-]?pl(ane)?|tri[\s_-]?pilot|plan(ning)?)" + _E,
    _B + r"(dwi|dti|diff|diffusion|trace|tracew|e?adc|fa|colfa|tensor)" + _E, r"diffusion",
    _B + r"b\s*=?\s*\d{3,4}" + _E,
    r"calibration", _B + r"(cal|asset[\s_-]?cal|prescan|ref[\s_-]?scan|sense[\s_-]?ref)" + _E,
    r"perf", _B + r"(dsc|dce|pwi|asl|pcasl|pasl|rcbv|rcbf|cbv|cbf|mtt|ttp|ktrans)" + _E,
    r"swi", r"swan", r"susceptib", r"t2\s*\*", r"t2[\s_-]?star", _B + r"(phase|hemo)" + _E,
    r"angio", _B + r"(tof|mra|mrv)" + _E,
    r"spectro", _B + r"(svs|csi|mrs)" + _E,
    _B + r"(bold|fmri|resting[\s_-]?state)" + _E,
    _B + r"(mip|minip|mpr|reformat)" + _E, _B + r"sub(traction)?" + _E,
]
#: Default names that say "before contrast": a T1 series so named stays T1 whatever its contrast
#: tags say, and the ``t1ce`` patterns do not claim it.
DEFAULT_PRE_CONTRAST: list[str] = [
    _B + r"pre" + _E, r"pre[\s_-]?(c|con|contrast|gad|gd)" + _E, _B + r"w/?o" + _E, r"without",
    r"non[\s_-]?(con|contrast|enh|gad)", _B + r"(nc|nativ|native|ohne)" + _E,
]
#: Values of ContrastBolusAgent (0018,0010) that mean "no contrast agent".
NO_CONTRAST_VALUES = frozenset({"", "none", "no", "n/a", "na", "0", "-", "nil", "null", "nein",
                                "without"})


def _check_regexes(v: list[str], where: str) -> list[str]:
    for text in v:
        body = text.removeprefix("!")
        if not body:
            raise ValueError(f"{where}: empty pattern {text!r}")
        try:
            re.compile(body, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"{where}: pattern {text!r} is not a valid regular expression: "
                             f"{err}") from err
    return v


class DicomConfig(Strict):
    """How the series of a DICOM study are told apart (:mod:`gliorad.dicom`).

    ``patterns`` (per sequence) and ``ignore`` and ``pre_contrast`` are regular expressions,
    searched case-insensitively in the SeriesDescription, or in the ProtocolName when the
    description is empty or matches nothing; a leading ``!`` makes a pattern an exclusion. They
    are *added* to the built-in lists (:data:`DEFAULT_DICOM_PATTERNS`, :data:`DEFAULT_DICOM_IGNORE`,
    :data:`DEFAULT_PRE_CONTRAST`; ``gliorad dicom patterns`` prints them); ``defaults: false``
    drops the built-in lists. ``contrast_tag``: a T1 series with a ContrastBolusAgent (0018,0010)
    is T1-Gd unless its name says pre-contrast. Series whose ImageType holds a value of
    ``ignore_image_types``, or with fewer than ``min_slices`` images, are skipped. When several
    series claim one sequence, ``prefer`` narrows them in order (``3d``: MRAcquisitionType 3D;
    ``axial``: slices closest to axial; ``finest``: smallest voxel; ``most_slices``; ``latest``:
    highest series number); still several is an error naming them. ``series`` names the series of
    a sequence outright (its SeriesInstanceUID or series number).
    """

    patterns: dict[str, list[str]] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)
    pre_contrast: list[str] = Field(default_factory=list)
    defaults: bool = True
    contrast_tag: bool = True
    ignore_image_types: list[str] = Field(
        default_factory=lambda: ["LOCALIZER", "DERIVED", "SECONDARY"])
    min_slices: int = Field(10, ge=1)
    prefer: list[Literal["3d", "axial", "finest", "most_slices", "latest"]] = Field(
        default_factory=lambda: ["3d", "axial"])
    series: dict[str, str] = Field(default_factory=dict)

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for seq, pats in v.items():
            _check_regexes(pats, f"patterns.{seq}")
        return v

    @field_validator("ignore", "pre_contrast")
    @classmethod
    def _lists(cls, v: list[str]) -> list[str]:
        return _check_regexes(v, "pattern list")

    @field_validator("ignore_image_types")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [t.strip().upper() for t in v]

    @field_validator("series", mode="before")
    @classmethod
    def _series_text(cls, v: object) -> object:
        return {k: str(x) for k, x in v.items()} if isinstance(v, dict) else v

    def sequence_patterns(self, sequences: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
        """The patterns per sequence: the built-in ones (unless ``defaults`` is off) plus ours."""
        base = DEFAULT_DICOM_PATTERNS if self.defaults else {}
        return {s: [*base.get(s, []), *self.patterns.get(s, [])] for s in sequences}

    def ignore_patterns(self) -> list[str]:
        return [*(DEFAULT_DICOM_IGNORE if self.defaults else []), *self.ignore]

    def pre_contrast_patterns(self) -> list[str]:
        return [*(DEFAULT_PRE_CONTRAST if self.defaults else []), *self.pre_contrast]


class CohortConfig(Strict):
    """Where the images are and how files are named.

    ``naming`` is ``auto`` (detect BraTS 2018 or 2023 naming), ``brats2018``, ``brats2023`` or
    ``custom``; with ``custom``, ``mapping`` gives one path template per sequence (and ``seg`` for a
    mask), relative to the cohort folder, with ``{id}`` standing for the patient id, e.g.
    ``{id}/{id}_T1w.nii.gz`` or ``{id}/dicom/T1`` (a DICOM series folder).

    ``dicom`` says how the series of a DICOM study (a PACS export: any folder layout, several
    series per folder) are identified from their tags (:class:`DicomConfig`); raw DICOM is read
    by ``gliorad preprocess`` and ``gliorad dicom scan``.
    """

    root: Path | None = None
    naming: str = "auto"
    mapping: dict[str, str] = Field(default_factory=dict)
    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2", "flair"])
    seg_labels: list[int] = Field(default_factory=lambda: [0, 1, 2, 4])
    require_seg: bool = False
    tolerance: GeometryTolerance = Field(default_factory=GeometryTolerance)
    dicom: DicomConfig = Field(default_factory=DicomConfig)

    @field_validator("sequences")
    @classmethod
    def _at_least_one(cls, v: list[str]) -> list[str]:
        return check_sequence_list(v)


class ClinicalConfig(Strict):
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


class GlioradConfig(Strict):
    cohort: CohortConfig = Field(default_factory=CohortConfig)
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)


def load_config(path: str | Path) -> GlioradConfig:
    """Read a YAML config file; errors name the file and the offending key."""
    p = Path(path)
    return _resolve_paths(validate(GlioradConfig, read_yaml_mapping(p), str(p)), p.parent)


def _resolve_paths(cfg: GlioradConfig, base: Path) -> GlioradConfig:
    """Relative paths in a config file are relative to the file's folder."""
    cohort, clinical = cfg.cohort, cfg.clinical
    if cohort.root is not None and not cohort.root.is_absolute():
        cohort = cohort.model_copy(update={"root": base / cohort.root})
    if clinical.path is not None and not clinical.path.is_absolute():
        clinical = clinical.model_copy(update={"path": base / clinical.path})
    return cfg.model_copy(update={"cohort": cohort, "clinical": clinical})
