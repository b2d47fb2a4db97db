"""Which raw files belong to which patient and sequence.

Three layouts of ``RAW_DIR`` (``PreprocessConfig.layout``):

* ``patient``: ``RAW_DIR`` is one patient's folder; each sequence's file is found by its name
  patterns (below). The patient id is the folder name, or the parent folder's name when the folder
  has a generic name such as ``raw``, ``images``, ``nifti``, ``dicom`` or ``anat`` (so
  ``TCGA-FG-6692/raw`` gives ``TCGA-FG-6692``); ``--patient-id`` overrides it.
* ``cohort``: a cohort :func:`gliorad.cohort.discover_cohort` understands (BraTS 2018 / 2023 naming,
  or a custom ``{id}`` mapping from the ``cohort:`` section of the config).
* ``folders``: one sub-folder per patient (id = sub-folder name), files found by patterns.
* ``auto`` (default): ``patient`` when ``RAW_DIR`` itself holds files that match a pattern, or
  DICOM of one patient (one PatientID; without PatientIDs, one StudyInstanceUID; or series folders
  named like sequences), else ``cohort`` when discovery finds patients, else ``folders``.

DICOM: every DICOM file under a patient's folder (any depth, any file names, several series per
folder) is split by SeriesInstanceUID and each series identified from its tags by
:mod:`gliorad.dicom` (patterns in ``cohort.dicom``); a series that its tags do not identify but
that has a folder of its own is matched by that folder's name with the file-name patterns below.

Patterns (``PreprocessConfig.patterns``, defaults in :data:`~gliorad.preprocess.config.DEFAULT_PATTERNS`)
are matched case-insensitively against the file name without its image extension (``.nii.gz``,
``.nii``, ``.nrrd``, ``.mha``, ...) or against a DICOM series' folder name. ``*``/``?`` are
shell wildcards over the whole name, ``re:EXPR`` is a regular expression searched anywhere in the
name, and a pattern starting with ``!`` excludes the names it matches. A name matches a sequence
when it matches one of its positive patterns and none of its exclusions. Exactly one file must match
each sequence: none is "missing", two or more is "ambiguous" and the error lists the candidates.
A file that matches two sequences is ambiguous too.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from gliorad.cohort import SEG, discover_cohort
from gliorad.config import CohortConfig, DicomConfig
from gliorad.dicom import Identification, StudyScan, identify, scan_study
from gliorad.errors import GlioradInputError
from gliorad.io import DicomSeries, image_extension
from gliorad.preprocess.config import PreprocessConfig

#: Folder names that say nothing about the patient: the id is taken from the parent folder.
GENERIC_FOLDER_NAMES = frozenset({"raw", "images", "image", "nifti", "nii", "dicom", "anat",
                                  "mri", "input", "inputs", "data", "scans"})


@dataclass
class RawPatient:
    """One patient's raw files: ``files`` maps a sequence (and optionally ``seg``) to a path or
    a DICOM series; ``dicom`` is what was made of the patient's DICOM series, if any."""

    id: str
    files: dict[str, Path | DicomSeries]
    source: Path
    problems: list[str] = field(default_factory=list)
    dicom: Identification | None = None


@dataclass(frozen=True)
class _Pattern:
    text: str
    negate: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, text: str, where: str) -> _Pattern:
        negate = text.startswith("!")
        body = text[1:] if negate else text
        if not body:
            raise GlioradInputError(f"{where}: empty pattern {text!r}")
        try:
            rx = re.compile(body[3:] if body.startswith("re:") else
                            "^" + fnmatch.translate(body.lower()), re.IGNORECASE)
        except re.error as err:
            raise GlioradInputError(f"{where}: pattern {text!r} is not a valid regular expression: "
                                    f"{err}") from err
        return cls(text, negate, rx)

    def hit(self, name: str) -> bool:
        return self.regex.search(name) is not None


def compile_patterns(patterns: dict[str, list[str]]) -> dict[str, list[_Pattern]]:
    out: dict[str, list[_Pattern]] = {}
    for seq, pats in patterns.items():
        compiled = [_Pattern.parse(p, f"preprocess.patterns.{seq}") for p in pats]
        if not any(not p.negate for p in compiled):
            raise GlioradInputError(
                f"preprocess.patterns.{seq}: {pats} has no positive pattern; give at least one "
                "pattern (e.g. '*{seq}') for each sequence"
            )
        out[seq] = compiled
    return out


def match_name(name: str, patterns: list[_Pattern]) -> bool:
    pos = any(p.hit(name) for p in patterns if not p.negate)
    return pos and not any(p.hit(name) for p in patterns if p.negate)


def _entry_name(path: Path) -> str | None:
    """Name matched against patterns: image file name without extension, or a folder's name."""
    if path.is_dir():
        return path.name
    ext = image_extension(path)
    return path.name[: -len(ext)] if ext else None


def _entries(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and p.is_file() and image_extension(p)]


def match_files(
    folder: str | Path, config: PreprocessConfig, dicom: DicomConfig | None = None,
) -> dict[str, Path | DicomSeries]:
    """Map each configured sequence to exactly one image file in ``folder`` or one DICOM series
    under it (identified by its tags with ``dicom``, default :class:`~gliorad.config.DicomConfig`).

    Raises :class:`GlioradInputError` listing every sequence with no match or several matches,
    every file claimed by two sequences, and unreadable DICOM files.
    """
    files, _ident, problems = _match(Path(folder), config, dicom)
    if problems:
        raise GlioradInputError(problems)
    return files


def _match(
    folder: Path, config: PreprocessConfig, dicom: DicomConfig | None,
    scan: StudyScan | None = None,
) -> tuple[dict[str, Path | DicomSeries], Identification | None, list[str]]:
    """The files / series per sequence, the DICOM identification (None without DICOM), and the
    problems (one line each)."""
    if not folder.is_dir():
        raise GlioradInputError(f"{folder}: patient folder not found")
    compiled = compile_patterns(config.sequence_patterns())
    entries = _entries(folder)
    scan = scan if scan is not None else scan_study(folder)
    ident = None
    if scan.has_dicom:
        ident = identify(scan, dicom, config.sequences, folder_names=lambda name: [
            s for s, pats in compiled.items() if match_name(name, pats)])
    hits: dict[str, list[Path]] = {s: [] for s in config.sequences}
    for path in entries:
        name = _entry_name(path)
        if name is None:
            continue
        for seq, pats in compiled.items():
            if match_name(name, pats):
                hits[seq].append(path)
    problems: list[str] = []
    claimed: dict[Path, list[str]] = {}
    for seq, paths in hits.items():
        for p in paths:
            claimed.setdefault(p, []).append(seq)
    for p, seqs in claimed.items():
        if len(seqs) > 1:
            problems.append(f"{p}: file matches the patterns of several sequences ({', '.join(seqs)});"
                            " make preprocess.patterns unambiguous")
    if ident is not None:
        problems.extend(ident.general)
    out: dict[str, Path | DicomSeries] = {}
    for seq, paths in hits.items():
        pats = [p.text for p in compiled[seq]]
        series = ident.chosen.get(seq) if ident is not None else None
        dicom_problem = ident.by_sequence.get(seq) if ident is not None else None
        if len(paths) > 1:
            problems.append(f"{folder}: ambiguous {seq} image: {len(paths)} files match patterns "
                            f"{pats}: {', '.join(p.name for p in paths)}; expected exactly one "
                            "(set preprocess.patterns)")
        elif paths and (series is not None or (ident is not None and seq in ident.ambiguous)):
            other = series.label if series is not None else "DICOM series"
            problems.append(f"{folder}: ambiguous {seq} image: file {paths[0].name} and DICOM "
                            f"{other} both match; expected exactly one (set preprocess.patterns "
                            "or cohort.dicom.patterns)")
        elif paths:
            out[seq] = paths[0]
        elif series is not None:
            out[seq] = series.series
        elif dicom_problem is not None:
            if entries:
                problems.append(f"{folder}: missing {seq} image: no file matches patterns {pats} "
                                f"(files: {', '.join(p.name for p in entries)})")
            problems.append(dicom_problem)
        else:
            names = ", ".join(p.name for p in entries) or "no image files"
            problems.append(f"{folder}: missing {seq} image: no file matches patterns {pats} "
                            f"(files: {names})")
    return out, ident, problems


def default_patient_id(folder: Path) -> str:
    folder = folder.resolve()
    if folder.name.lower() in GENERIC_FOLDER_NAMES and folder.parent != folder:
        return folder.parent.name
    return folder.name


def _is_series_folder(path: Path) -> bool:
    """A folder holding files (a DICOM series, say) and no sub-folders."""
    entries = list(path.iterdir())
    return bool(entries) and all(e.is_file() for e in entries)


def _has_pattern_match(folder: Path, config: PreprocessConfig, scan: StudyScan) -> bool:
    """Is ``folder`` one patient's: an image file, or a DICOM series folder, named like a
    sequence, or DICOM of one patient (:meth:`gliorad.dicom.StudyScan.single_patient`)?"""
    compiled = compile_patterns(config.sequence_patterns())
    for path in folder.iterdir():
        if (path.is_file() and image_extension(path)) or (
                path.is_dir() and _is_series_folder(path) and scan.under(path).series):
            name = _entry_name(path)
            if name and any(match_name(name, pats) for pats in compiled.values()):
                return True
    return scan.has_dicom and scan.single_patient()


def find_raw_patients(
    raw_dir: str | Path,
    config: PreprocessConfig,
    cohort: CohortConfig | None = None,
    patient_id: str | None = None,
) -> tuple[str, list[RawPatient]]:
    """The layout used and the patients in ``raw_dir`` (see the module docstring).

    Patients whose files cannot be matched are returned with ``problems`` filled (so one bad
    patient does not hide the others); a folder holding no patient at all raises.
    """
    root = Path(raw_dir)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: raw folder not found")
    layout = config.layout
    if patient_id is not None and layout not in ("auto", "patient"):
        raise GlioradInputError(
            f"--patient-id {patient_id!r} applies to a single-patient folder, but layout is "
            f"{layout!r}")
    dicom = (cohort or CohortConfig()).dicom
    scan = scan_study(root) if layout != "cohort" else StudyScan(root)
    if layout == "patient" or (layout == "auto" and _has_pattern_match(root, config, scan)):
        pid = patient_id or default_patient_id(root)
        return "patient", [_pattern_patient(root, pid, config, dicom, scan)]
    if patient_id is not None:
        raise GlioradInputError(
            f"--patient-id {patient_id!r} applies to a single-patient folder, but {root} holds "
            "no image files matching the sequence patterns")
    if layout == "cohort":
        return layout, _cohort_or_none(root, config, cohort, raise_errors=True) or []
    by_folder = _folder_patients(root, config, dicom, scan)
    if layout == "folders":
        if not by_folder:
            raise GlioradInputError(f"{root}: no sub-folder holds image files")
        return layout, by_folder
    # auto: a cohort in BraTS / custom naming wins when one of its patients is complete, then
    # sub-folders matched by patterns, then whichever found anything (to report its problems)
    by_name = _cohort_or_none(root, config, cohort) or []
    for name, pats in (("cohort", by_name), ("folders", by_folder)):
        if any(not p.problems for p in pats):
            return name, pats
    for name, pats in (("cohort", by_name), ("folders", by_folder)):
        if pats:
            return name, pats
    raise GlioradInputError(
        f"{root}: no patients found: no image files matching the sequence patterns in the folder "
        "itself or in its sub-folders, and no BraTS-named cohort (give layout and patterns in "
        "the config)")


def _folder_patients(root: Path, config: PreprocessConfig, dicom: DicomConfig,
                     scan: StudyScan) -> list[RawPatient]:
    subs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    out = []
    for d in subs:
        part = scan.under(d)
        if part.has_dicom or any(p.is_file() and image_extension(p) for p in d.iterdir()):
            out.append(_pattern_patient(d, d.name, config, dicom, part))
    return out


def _pattern_patient(folder: Path, pid: str, config: PreprocessConfig,
                     dicom: DicomConfig | None = None, scan: StudyScan | None = None) -> RawPatient:
    try:
        files, ident, problems = _match(folder, config, dicom, scan)
    except GlioradInputError as err:
        return RawPatient(pid, {}, folder, [f"patient {pid}: {p}" for p in err.problems])
    if problems:
        return RawPatient(pid, {}, folder, [f"patient {pid}: {p}" for p in problems], ident)
    return RawPatient(pid, files, folder, dicom=ident)


def _cohort_or_none(
    root: Path, config: PreprocessConfig, cohort: CohortConfig | None, raise_errors: bool = False
) -> list[RawPatient] | None:
    ccfg = (cohort or CohortConfig()).model_copy(update={"sequences": list(config.sequences)})
    try:
        found = discover_cohort(root, ccfg)
    except GlioradInputError:
        if raise_errors:
            raise
        return None
    out = []
    for pid in found.ids:
        pat = found.patients[pid]
        problems = [f"patient {pid}: missing {k} file (expected {pat.expected.get(k, k)})"
                    for k in pat.missing(config.sequences)]
        problems += [f"patient {pid}: several {k} files: {', '.join(map(str, v))}"
                     for k, v in pat.duplicates.items()]
        keys = [*config.sequences, SEG]
        files = {k: v for k, v in pat.files.items() if k in keys}
        src = files[next(iter(files))].parent if files else root
        out.append(RawPatient(pid, files, src, problems))
    return out
