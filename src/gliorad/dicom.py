"""DICOM studies as hospitals export them: split by series, each series' sequence told from its
tags, read with its geometry.

A PACS export names folders by series number or UID (or not at all), mixes the files of several
series in one folder, and gives files no extension. So a study folder (any depth) is
**scanned** (:func:`scan_study`): every folder's files are grouped by SeriesInstanceUID with
GDCM (SimpleITK's ``ImageSeriesReader.GetGDCMSeriesIDs`` / ``GetGDCMSeriesFileNames``, which
also sort the slices), and one header per series gives its tags. A series split over several
folders is joined and sorted by slice position.

Each series is then **identified** (:func:`identify`), in this order:

1. skipped when its Modality is not MR, its ImageType (0008,0008) holds a value of
   ``cohort.dicom.ignore_image_types`` (LOCALIZER, DERIVED, SECONDARY), it has fewer than
   ``cohort.dicom.min_slices`` images (localizers, single-slice screenshots), or its name matches
   an ``ignore`` pattern (localizer, diffusion, perfusion, SWI, angiography, ...);
2. its name is matched against the sequence patterns: the SeriesDescription (0008,103E) first,
   the ProtocolName (0018,1030) when the description is empty or matches nothing (GE writes the
   exam's protocol into every series' ProtocolName, so it is the weaker clue). A series matched by
   ``t1ce`` is T1-Gd even when ``t1`` also matches (a T1-Gd name is a T1 name plus a contrast
   word), unless a ``pre_contrast`` pattern says otherwise; one matched by two other sequences is
   ambiguous and not used;
3. a T1 series with a ContrastBolusAgent (0018,0010) other than empty / "none" is T1-Gd, unless
   its name says pre-contrast (``contrast_tag``);
4. a series that nothing above recognised but that has a folder of its own is matched by the
   folder's name with the file-name patterns (``preprocess.patterns``), as gliorad always did.

The patterns live in the config (:class:`gliorad.config.DicomConfig`, ``cohort.dicom``). For each
wanted sequence exactly one series must remain: none is **missing**; several are narrowed by
``cohort.dicom.prefer`` (default: 3D acquisitions, then axial slices) and, if still several,
**ambiguous**, an error naming the candidates and the keys to set. ``cohort.dicom.series`` names
a sequence's series outright. :meth:`Identification.table` and :meth:`Identification.to_dict`
list what was found (``gliorad dicom scan``).

Each chosen series is a :class:`gliorad.io.DicomSeries`, read by :func:`gliorad.io.read_image`
with its spacing, origin and direction, and checked to be one evenly spaced stack of slices.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.config import NO_CONTRAST_VALUES, DicomConfig
from gliorad.errors import GlioradInputError
from gliorad.io import DicomSeries, image_extension

#: DICOM tags read from one header per series (SimpleITK spells them ``gggg|eeee``).
TAGS = {
    "modality": "0008|0060", "image_type": "0008|0008", "description": "0008|103e",
    "protocol": "0018|1030", "number": "0020|0011", "contrast_agent": "0018|0010",
    "acquisition": "0018|0023", "orientation": "0020|0037", "position": "0020|0032",
    "pixel_spacing": "0028|0030", "thickness": "0018|0050", "slice_spacing": "0018|0088",
    "patient_id": "0010|0020", "study_uid": "0020|000d", "study_date": "0008|0020",
    "frames": "0028|0008", "instance": "0020|0013",
}
STANDARD = ("t1", "t1ce", "t2", "flair")
#: File name endings that are surely not DICOM (not handed to GDCM, counted as other files).
_NOT_DICOM = (".txt", ".xml", ".json", ".csv", ".html", ".htm", ".pdf", ".jpg", ".jpeg", ".png",
              ".gif", ".bmp", ".tif", ".tiff", ".zip", ".gz", ".exe", ".inf", ".ini", ".md",
              ".log", ".yaml", ".yml", ".py", ".sh", ".bat")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


# ------------------------------------------------------------------------------------------ scan
@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study: its files (a :class:`DicomSeries`) and the tags that identify it."""

    series: DicomSeries
    number: str = ""
    description: str = ""
    protocol: str = ""
    modality: str = ""
    image_type: tuple[str, ...] = ()
    contrast_agent: str = ""
    acquisition: str = ""
    orientation: tuple[float, ...] = ()
    pixel_spacing: tuple[float, ...] = ()
    slice_spacing: float | None = None
    images: int = 0
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    folders: tuple[Path, ...] = ()

    @property
    def uid(self) -> str:
        return self.series.uid

    @property
    def label(self) -> str:
        """``series 5 'AX T1 POST'`` (the words messages use)."""
        name = self.description or self.protocol
        return f"series {self.number or '?'}" + (f" {name!r}" if name else "")

    @property
    def plane(self) -> str:
        """axial, coronal or sagittal (the axis the slice normal is closest to), oblique when
        it is more than about 37 degrees from every axis, '' without an orientation tag."""
        if len(self.orientation) != 6:
            return ""
        normal = np.abs(np.cross(self.orientation[:3], self.orientation[3:]))
        axis = int(np.argmax(normal))
        if normal[axis] < 0.8:
            return "oblique"
        return ("sagittal", "coronal", "axial")[axis]

    @property
    def voxel_mm3(self) -> float | None:
        if len(self.pixel_spacing) != 2 or not self.slice_spacing:
            return None
        return float(self.pixel_spacing[0] * self.pixel_spacing[1] * self.slice_spacing)

    @property
    def has_contrast_agent(self) -> bool:
        return self.contrast_agent.strip().lower() not in NO_CONTRAST_VALUES


@dataclass
class StudyScan:
    """What :func:`scan_study` found under ``root``."""

    root: Path
    series: list[SeriesInfo] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)   # image files GDCM cannot parse
    non_image: list[Path] = field(default_factory=list)    # DICOM objects without an image
    other: list[Path] = field(default_factory=list)        # not DICOM

    @property
    def has_dicom(self) -> bool:
        return bool(self.series or self.unreadable)

    @property
    def patient_ids(self) -> list[str]:
        return sorted({s.patient_id for s in self.series if s.patient_id})

    @property
    def study_uids(self) -> list[str]:
        return sorted({s.study_uid for s in self.series if s.study_uid})

    def single_patient(self) -> bool:
        """One patient: one PatientID, or (no PatientIDs) one StudyInstanceUID."""
        ids = self.patient_ids
        return len(ids) == 1 if ids else len(self.study_uids) <= 1

    def under(self, folder: Path) -> StudyScan:
        """The part of this scan inside ``folder``."""
        folder = Path(folder)

        def inside(p: Path) -> bool:
            return p == folder or folder in p.parents

        return StudyScan(
            folder,
            [s for s in self.series if all(inside(f) for f in s.series.files)],
            [p for p in self.unreadable if inside(p)], [p for p in self.non_image if inside(p)],
            [p for p in self.other if inside(p)])


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split("\\") if v.strip())
    except ValueError:
        return ()


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _series_info(uid: str, files: list[Path]) -> SeriesInfo:
    r = _header(str(files[0]))
    tags = {k: _tag(r, v) for k, v in TAGS.items()}
    thickness = _floats(tags["slice_spacing"]) or _floats(tags["thickness"])
    frames = int(tags["frames"]) if tags["frames"].isdigit() else 1
    images = len(files) if len(files) > 1 else max(frames, 1)
    number = tags["number"]
    name = tags["description"] or tags["protocol"]
    label = f"series {number or '?'}" + (f" {name!r}" if name else "")
    return SeriesInfo(
        series=DicomSeries(uid, tuple(files), label),
        number=number, description=tags["description"], protocol=tags["protocol"],
        modality=tags["modality"].upper(),
        image_type=tuple(v.strip().upper() for v in tags["image_type"].split("\\") if v.strip()),
        contrast_agent=tags["contrast_agent"], acquisition=tags["acquisition"].upper(),
        orientation=_floats(tags["orientation"]), pixel_spacing=_floats(tags["pixel_spacing"]),
        slice_spacing=thickness[0] if thickness else None, images=images,
        patient_id=tags["patient_id"], study_uid=tags["study_uid"], study_date=tags["study_date"],
        folders=tuple(sorted({f.parent for f in files})))


def _sort_by_position(files: list[Path]) -> list[Path]:
    """Files of one series from several folders, in slice order (position along the normal, else
    instance number, else name)."""
    keys = []
    for f in files:
        r = _header(str(f))
        pos, ori = _floats(_tag(r, TAGS["position"])), _floats(_tag(r, TAGS["orientation"]))
        inst = _tag(r, TAGS["instance"])
        depth = float(np.dot(pos, np.cross(ori[:3], ori[3:]))) if len(pos) == 3 and len(ori) == 6 \
            else math.nan
        keys.append((depth, int(inst) if inst.isdigit() else 0, str(f)))
    if all(math.isfinite(k[0]) for k in keys):
        order = sorted(range(len(files)), key=lambda i: (keys[i][0], keys[i][2]))
    else:
        order = sorted(range(len(files)), key=lambda i: (keys[i][1], keys[i][2]))
    return [files[i] for i in order]


def _looks_dicom(path: Path) -> tuple[bool, bool]:
    """(is DICOM by its preamble or extension, is an image: holds a PixelData element or its file
    meta header names an MR image SOP class)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False, False
    dicom = data[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom", ".ima")
    return dicom, _PIXEL_DATA_TAG in data or _sop_class(data) in _MR_IMAGE_CLASSES


_MR_IMAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1")


def _sop_class(data: bytes) -> str:
    """MediaStorageSOPClassUID (0002,0002) of the file meta header (explicit VR), else ''."""
    at = data.find(b"\x02\x00\x02\x00UI", 128, 1024)
    if at < 0:
        return ""
    n = int.from_bytes(data[at + 6:at + 8], "little")
    return data[at + 8:at + 8 + n].rstrip(b"\x00 ").decode("ascii", "replace")


def scan_study(root: str | os.PathLike) -> StudyScan:
    """Every DICOM series under ``root`` (any depth), split by SeriesInstanceUID.

    Hidden files and folders, and image files of other formats (``.nii.gz``, ``.nrrd``, ...), are
    passed over. A file that looks like a DICOM image (DICM preamble or ``.dcm`` name, and a
    PixelData element or an MR image SOP class) but that GDCM cannot parse is listed in
    ``unreadable``; DICOM objects
    without an image (a DICOMDIR, a structured report) in ``non_image``; anything else in
    ``other``. Raises :class:`GlioradInputError` when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: DICOM study folder not found")
    scan = StudyScan(root)
    by_uid: dict[str, list[Path]] = {}
    dirs_of: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        cands = [here / n for n in sorted(filenames) if not n.startswith(".")
                 and image_extension(n) is None]
        cands = [p for p in cands if p.is_file()]
        if not cands:
            continue
        sure_not = [p for p in cands if p.name.lower().endswith(_NOT_DICOM)]
        scan.other.extend(sure_not)
        cands = [p for p in cands if p not in set(sure_not)]
        if not cands:
            continue
        listed: set[Path] = set()
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(here)):
            files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(here), uid)]
            listed.update(files)
            by_uid.setdefault(uid, []).extend(files)
            dirs_of.setdefault(uid, []).append(here)
        for p in cands:
            if p in listed:
                continue
            dicom, pixels = _looks_dicom(p)
            if dicom and pixels and p.name.upper() != "DICOMDIR":
                scan.unreadable.append(p)
            elif dicom:
                scan.non_image.append(p)
            else:
                scan.other.append(p)
    for uid, files in by_uid.items():
        if len(dirs_of[uid]) > 1:
            files = _sort_by_position(files)
        try:
            scan.series.append(_series_info(uid, files))
        except RuntimeError:  # listed by GDCM but no image header (e.g. a report)
            scan.non_image.extend(files)
    scan.series.sort(key=lambda s: (_number_key(s.number), s.uid))
    return scan


def _number_key(number: str) -> tuple[int, str]:
    return (int(number), "") if number.lstrip("-").isdigit() else (10**9, number)


# -------------------------------------------------------------------------------------- identify
@dataclass(frozen=True)
class _Rx:
    text: str
    negate: bool
    rx: re.Pattern[str]


def _compile(patterns: Sequence[str]) -> list[_Rx]:
    out = []
    for t in patterns:
        neg = t.startswith("!")
        out.append(_Rx(t, neg, re.compile(t[1:] if neg else t, re.IGNORECASE)))
    return out


def _matches(text: str, pats: list[_Rx]) -> _Rx | None:
    """The first positive pattern that finds ``text`` when no exclusion does, else None."""
    if not text or any(p.rx.search(text) for p in pats if p.negate):
        return None
    return next((p for p in pats if not p.negate and p.rx.search(text)), None)


@dataclass
class SeriesResult:
    """What became of one series: ``status`` is ``sequence`` (identified as ``sequence``),
    ``ignored``, ``unrecognised`` or ``ambiguous`` (claimed by several sequences); ``used`` when
    it was chosen for its sequence; ``note`` says why not when it was not."""

    info: SeriesInfo
    status: str
    sequence: str | None
    reason: str
    candidates: tuple[str, ...] = ()
    used: bool = False
    note: str = ""

    @property
    def result(self) -> str:
        if self.status == "sequence":
            text = f"{self.sequence} ({self.reason})"
            return text + ("" if self.used else f"; not used: {self.note}" if self.note else "")
        return f"{self.status}: {self.reason}" if self.reason else self.status


@dataclass
class Identification:
    """The series of a study and the one chosen for each wanted sequence."""

    scan: StudyScan
    sequences: list[str]
    results: list[SeriesResult]
    chosen: dict[str, SeriesInfo]
    missing: list[str]
    ambiguous: dict[str, list[SeriesInfo]]
    general: list[str] = field(default_factory=list)       # problems of the whole study
    by_sequence: dict[str, str] = field(default_factory=dict)  # sequence -> its problem
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per problem: the study's (unreadable files), then each sequence's."""
        return [*self.general, *(self.by_sequence[s] for s in self.sequences
                                 if s in self.by_sequence)]

    @property
    def ok(self) -> bool:
        return not self.problems

    def files(self) -> dict[str, DicomSeries]:
        """Sequence -> the chosen series (what :func:`gliorad.io.read_image` reads)."""
        return {s: self.chosen[s].series for s in self.sequences if s in self.chosen}

    def summary(self) -> str:
        """``t1 <- series 5 'T1 AX'; t1ce <- series 6 ...; flair: missing``"""
        parts = []
        for s in self.sequences:
            if s in self.chosen:
                parts.append(f"{s} <- {self.chosen[s].label}")
            elif s in self.ambiguous:
                parts.append(f"{s}: ambiguous ({len(self.ambiguous[s])} series)")
            else:
                parts.append(f"{s}: missing")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able listing (``gliorad dicom scan --json``)."""
        series = []
        for r in self.results:
            i = r.info
            series.append({
                "uid": i.uid, "number": i.number, "description": i.description,
                "protocol": i.protocol, "modality": i.modality, "image_type": list(i.image_type),
                "contrast_agent": i.contrast_agent, "acquisition": i.acquisition,
                "plane": i.plane, "images": i.images, "files": len(i.series.files),
                "folder": str(i.series.folder), "patient_id": i.patient_id,
                "study_uid": i.study_uid, "study_date": i.study_date, "status": r.status,
                "sequence": r.sequence, "reason": r.reason, "candidates": list(r.candidates),
                "used": r.used, "note": r.note})
        return {
            "root": str(self.scan.root), "sequences": list(self.sequences),
            "patient_ids": self.scan.patient_ids, "series": series,
            "chosen": {s: i.uid for s, i in self.chosen.items()},
            "missing": list(self.missing),
            "ambiguous": {s: [i.uid for i in v] for s, v in self.ambiguous.items()},
            "unreadable_files": [str(p) for p in self.scan.unreadable],
            "non_image_dicom_files": len(self.scan.non_image),
            "other_files": len(self.scan.other),
            "problems": list(self.problems), "notes": list(self.notes), "ok": self.ok,
        }

    def table(self) -> str:
        """A plain-text table of the series and what became of each, then the choice."""
        head = ("no.", "description", "protocol", "images", "acq", "plane", "contrast", "result")
        rows = [head]
        for r in self.results:
            i = r.info
            rows.append((i.number or "?", _cut(i.description, 28), _cut(i.protocol, 24),
                         str(i.images), i.acquisition or "-", i.plane or "-",
                         _cut(i.contrast_agent, 12) or "-", r.result))
        widths = [max(len(row[k]) for row in rows) for k in range(len(head) - 1)]
        lines = [f"{self.scan.root}: {len(self.results)} series"
                 + (f", patient {', '.join(self.scan.patient_ids)}" if self.scan.patient_ids else "")
                 + (f", {len(self.scan.unreadable)} unreadable file(s)" if self.scan.unreadable else "")
                 + (f", {len(self.scan.non_image)} DICOM file(s) without image"
                    if self.scan.non_image else "")
                 + (f", {len(self.scan.other)} other file(s) passed over" if self.scan.other else "")]
        for row in rows:
            cells = [c.rjust(w) if k in (0, 3) else c.ljust(w)
                     for k, (c, w) in enumerate(zip(row[:-1], widths))]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
        lines.append(self.summary())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "~"


def identify(
    scan: StudyScan,
    config: DicomConfig | None = None,
    sequences: Sequence[str] = STANDARD,
    folder_names: Callable[[str], list[str]] | None = None,
) -> Identification:
    """Identify each series of ``scan`` and choose one per sequence (see the module docstring).

    ``folder_names`` maps a folder name to the sequences whose file-name patterns it matches (the
    fallback for series alone in a folder named like a sequence). Problems (missing and ambiguous
    sequences, unreadable files, a ``series`` choice that names no series) are collected in
    :attr:`Identification.problems`, one line each, naming the study folder and the config key to
    set; nothing is raised here.
    """
    cfg = config or DicomConfig()
    seqs = list(sequences)
    # every series is identified among the standard sequences too, so that the choice for one
    # sequence never depends on which others are wanted (a T1-Gd stays T1-Gd when only t1 is)
    known = [*STANDARD, *(s for s in seqs if s not in STANDARD)]
    pats = {s: _compile(p) for s, p in cfg.sequence_patterns(known).items()}
    ignore = _compile(cfg.ignore_patterns())
    pre = _compile(cfg.pre_contrast_patterns())
    per_dir: dict[Path, int] = {}
    for s in scan.series:
        for d in s.folders:
            per_dir[d] = per_dir.get(d, 0) + 1
    results = [_identify_one(s, cfg, pats, ignore, pre, per_dir, folder_names)
               for s in scan.series]
    root = scan.root
    general: list[str] = []
    by_seq: dict[str, str] = {}
    if scan.unreadable:
        shown = ", ".join(str(p) for p in scan.unreadable[:5])
        more = f" and {len(scan.unreadable) - 5} more" if len(scan.unreadable) > 5 else ""
        general.append(
            f"{root}: {len(scan.unreadable)} DICOM file(s) cannot be read (corrupt or truncated): "
            f"{shown}{more}; expected complete DICOM images (re-export the study, or remove the "
            "files if they belong to no series you need)")
    chosen: dict[str, SeriesInfo] = {}
    missing: list[str] = []
    ambiguous: dict[str, list[SeriesInfo]] = {}
    notes: list[str] = []
    by_uid = {r.info.uid: r for r in results}
    # series named outright first, so that no rule hands them to another sequence
    for seq in (s for s in seqs if s in cfg.series):
        want = cfg.series[seq]
        hit = [r for r in results if want in (r.info.uid, r.info.number)]
        if len(hit) != 1:
            numbers = ", ".join(f"{r.info.number or '?'} ({r.info.uid})" for r in results)
            by_seq[seq] = (
                f"{root}: cohort.dicom.series.{seq} {want!r} names "
                f"{'no' if not hit else len(hit)} series; expected the SeriesInstanceUID or "
                f"series number of exactly one (series: {numbers or 'none'})")
            continue
        r = hit[0]
        if r.sequence not in (None, seq):
            notes.append(f"{r.info.label} is taken as {seq} (cohort.dicom.series.{seq}) "
                         f"although identified as {r.sequence}")
        r.status, r.sequence, r.used = "sequence", seq, True
        r.reason = f"cohort.dicom.series.{seq}"
        chosen[seq] = r.info
    for seq in (s for s in seqs if s not in cfg.series):
        cands = [r for r in results if r.status == "sequence" and r.sequence == seq
                 and not r.used]
        if not cands:
            missing.append(seq)
            by_seq[seq] = _missing_line(root, seq, results)
            continue
        kept, rule = _prefer([r.info for r in cands], cfg.prefer)
        if len(kept) > 1:
            ambiguous[seq] = kept
            by_seq[seq] = _ambiguous_line(root, seq, kept, cfg.prefer)
            for r in cands:
                r.note = f"one of {len(kept)} candidates for {seq}"
            continue
        chosen[seq] = kept[0]
        by_uid[kept[0].uid].used = True
        for r in cands:
            if not r.used:
                r.note = f"{kept[0].label} chosen for {seq} (cohort.dicom.prefer: {rule})"
    patients = sorted({i.patient_id for i in chosen.values() if i.patient_id})
    if len(patients) > 1:
        general.append(
            f"{root}: the series chosen for {', '.join(chosen)} belong to {len(patients)} patients "
            f"(PatientID {', '.join(patients)}); expected one patient's study (give the folder of "
            "one patient)")
    elif len(scan.patient_ids) > 1:
        notes.append(f"the folder holds series of {len(scan.patient_ids)} patients (PatientID "
                     f"{', '.join(scan.patient_ids)}); only {patients[0] if patients else '?'}'s "
                     "are used")
    studies = {chosen[s].study_uid for s in chosen if chosen[s].study_uid}
    if len(studies) > 1:
        notes.append(f"the chosen series come from {len(studies)} studies (StudyInstanceUID); "
                     "check that they belong to one examination")
    return Identification(scan, seqs, results, chosen, missing, ambiguous, general, by_seq, notes)


def _identify_one(info: SeriesInfo, cfg: DicomConfig, pats: dict[str, list[_Rx]],
                  ignore: list[_Rx], pre: list[_Rx], per_dir: dict[Path, int],
                  folder_names: Callable[[str], list[str]] | None) -> SeriesResult:
    if info.modality and info.modality != "MR":
        return SeriesResult(info, "ignored", None, f"modality {info.modality}")
    types = [t for t in info.image_type if t in cfg.ignore_image_types]
    if types:
        return SeriesResult(info, "ignored", None, f"ImageType {'/'.join(types)}")
    if info.images < cfg.min_slices:
        return SeriesResult(info, "ignored", None, f"{info.images} image(s) < "
                            f"cohort.dicom.min_slices {cfg.min_slices} (a localizer?)")
    texts = [("description", info.description)]
    if info.protocol and info.protocol != info.description:
        texts.append(("protocol", info.protocol))
    for where, text in texts:
        if not text:
            continue
        hit = _matches(text, ignore)
        if hit is not None:
            return SeriesResult(info, "ignored", None, f"{where} matches ignore pattern "
                                f"{_short(hit.text)}")
        claims = {s: p for s, p in ((s, _matches(text, ps)) for s, ps in pats.items())
                  if p is not None}
        if "t1ce" in claims and _matches(text, pre) is not None:
            claims.pop("t1ce")
        if "t1ce" in claims:
            claims.pop("t1", None)
        if len(claims) > 1:
            return SeriesResult(info, "ambiguous", None, f"{where} matches the patterns of "
                                f"{' and '.join(claims)}", tuple(claims))
        if claims:
            seq = next(iter(claims))
            return _contrast(SeriesResult(info, "sequence", seq, f"{where}"), cfg, pre, pats)
    if folder_names is not None and len(info.folders) == 1 and per_dir.get(info.folders[0]) == 1:
        names = [s for s in folder_names(info.folders[0].name) if s in pats]
        if len(names) == 1:
            return _contrast(SeriesResult(info, "sequence", names[0],
                                          f"folder name {info.folders[0].name!r}"), cfg, pre, pats)
        if len(names) > 1:
            return SeriesResult(info, "ambiguous", None, f"folder name {info.folders[0].name!r} "
                                f"matches the patterns of {' and '.join(names)}", tuple(names))
    return SeriesResult(info, "unrecognised", None, "no pattern matches its description or "
                        "protocol")


def _contrast(res: SeriesResult, cfg: DicomConfig, pre: list[_Rx],
              pats: dict[str, list[_Rx]]) -> SeriesResult:
    """A T1 series with a contrast agent tag is T1-Gd (unless its name says pre-contrast)."""
    info = res.info
    if res.sequence != "t1" or "t1ce" not in pats or not cfg.contrast_tag \
            or not info.has_contrast_agent:
        return res
    if _matches(info.description, pre) or _matches(info.protocol, pre):
        res.reason += (f"; ContrastBolusAgent {info.contrast_agent!r} disregarded: the name "
                       "says pre-contrast")
        return res
    res.sequence = "t1ce"
    res.reason += f" + ContrastBolusAgent {info.contrast_agent!r}"
    return res


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")


_PREFER: dict[str, Callable[[SeriesInfo], float]] = {
    "3d": lambda i: 1.0 if i.acquisition == "3D" else 0.0,
    "axial": lambda i: 1.0 if i.plane == "axial" else 0.0,
    "finest": lambda i: -(i.voxel_mm3 or math.inf),
    "most_slices": lambda i: float(i.images),
    "latest": lambda i: float(_number_key(i.number)[0]) if i.number.lstrip("-").isdigit()
    else -math.inf,
}


def _prefer(cands: list[SeriesInfo], rules: Sequence[str]) -> tuple[list[SeriesInfo], str]:
    """Narrow ``cands`` by each rule in turn (keeping the best, ties kept); the rule that decided."""
    if len({c.study_uid for c in cands}) > 1:
        return cands, ""  # never choose between examinations by a rule
    for rule in rules:
        if len(cands) == 1:
            break
        score = [_PREFER[rule](c) for c in cands]
        best = max(score)
        tol = 0.01 * abs(best) if rule == "finest" and math.isfinite(best) else 0.0
        kept = [c for c, s in zip(cands, score) if s >= best - tol]
        if len(kept) < len(cands):
            cands = kept
            if len(cands) == 1:
                return cands, rule
    return cands, ""


def _describe(info: SeriesInfo) -> str:
    bits = [f"{info.images} images"]
    if info.acquisition:
        bits.append(info.acquisition)
    if info.plane:
        bits.append(info.plane)
    if info.study_date:
        bits.append(f"study {info.study_date}")
    return f"{info.label} ({info.uid}; {', '.join(bits)})"


def _missing_line(root: Path, seq: str, results: list[SeriesResult]) -> str:
    seen = "; ".join(f"{r.info.label} -> {r.sequence if r.status == 'sequence' else r.result}"
                     for r in results) or "no DICOM series"
    return (f"{root}: missing {seq}: no DICOM series identified as {seq} (found: {seen}); add a "
            f"pattern under cohort.dicom.patterns.{seq} or name the series in "
            f"cohort.dicom.series.{seq}")


def _ambiguous_line(root: Path, seq: str, kept: list[SeriesInfo], prefer: Sequence[str]) -> str:
    return (f"{root}: ambiguous {seq}: {len(kept)} DICOM series identified as {seq}: "
            f"{', '.join(_describe(i) for i in kept)}; cohort.dicom.prefer {list(prefer)} does not "
            f"decide; name one in cohort.dicom.series.{seq} (its SeriesInstanceUID or series "
            f"number), or narrow cohort.dicom.patterns / cohort.dicom.ignore")


def identify_study(
    root: str | os.PathLike,
    config: DicomConfig | None = None,
    sequences: Sequence[str] = STANDARD,
    folder_names: Callable[[str], list[str]] | None = None,
) -> Identification:
    """:func:`scan_study` then :func:`identify`; a folder without any DICOM image is an error."""
    scan = scan_study(root)
    if not scan.has_dicom:
        raise GlioradInputError(
            f"{root}: no DICOM image found ({len(scan.other)} other file(s)"
            + (f", {len(scan.non_image)} DICOM file(s) without image" if scan.non_image else "")
            + "); expected a DICOM study folder (files of one or more series, any layout)")
    return identify(scan, config, sequences, folder_names)


def read_series(info: SeriesInfo | DicomSeries) -> sitk.Image:
    """The series' volume with its geometry (:func:`gliorad.io.read_image`)."""
    from gliorad.io import read_image

    return read_image(info.series if isinstance(info, SeriesInfo) else info)


__all__ = ["DicomSeries", "Identification", "SeriesInfo", "SeriesResult", "StudyScan",
           "identify", "identify_study", "read_series", "scan_study"]
