"""Cohort discovery: which patients a folder holds and which file is which sequence.

Built-in naming schemes (a dict registry; see :data:`NAMING_SCHEMES`):

* ``brats2018`` (BraTS 2018-2021): ``<id>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``
* ``brats2023``: ``<id>-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``

Files may sit in one folder per patient (as BraTS ships them) or all in one folder. Any other
naming is given as explicit path templates (``naming: custom`` in the config). gliorad's sequence
names are ``t1``, ``t1ce`` (T1-Gd), ``t2`` and ``flair``; ``seg`` is the tumour mask. A custom
mapping may name other sequences too (e.g. ``dwi``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from gliorad.io import IMAGE_EXTENSIONS, image_extension

SEG = "seg"
STANDARD_SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class NamingScheme:
    """``<id><sep><suffix><ext>`` naming; ``suffixes`` maps gliorad names to file suffixes."""

    name: str
    description: str
    sep: str
    suffixes: dict[str, str]

    def filename(self, pid: str, key: str, ext: str = ".nii.gz") -> str:
        return f"{pid}{self.sep}{self.suffixes[key]}{ext}"

    def parse(self, filename: str) -> tuple[str, str] | None:
        """(patient id, gliorad key) for a file name of this scheme, else None."""
        ext = image_extension(filename)
        if ext is None:
            return None
        stem = filename[: -len(ext)]
        # Longest suffix first, so that "_t1ce" is not read as "_t1" + "ce".
        for key, suffix in sorted(self.suffixes.items(), key=lambda kv: -len(kv[1])):
            tail = f"{self.sep}{suffix}"
            if stem.lower().endswith(tail.lower()) and len(stem) > len(tail):
                return stem[: -len(tail)], key
        return None


NAMING_SCHEMES: dict[str, NamingScheme] = {
    "brats2018": NamingScheme(
        "brats2018",
        "BraTS 2018-2021 naming (<id>_t1.nii.gz, _t1ce, _t2, _flair, _seg)",
        "_",
        {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", SEG: "seg"},
    ),
    "brats2023": NamingScheme(
        "brats2023",
        "BraTS 2023 naming (<id>-t1n.nii.gz, -t1c, -t2w, -t2f, -seg)",
        "-",
        {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", SEG: "seg"},
    ),
}


@dataclass
class Patient:
    """One patient's files. ``files`` maps a sequence name (or ``seg``) to its path."""

    id: str
    files: dict[str, Path] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)  # key -> expected file name, for messages
    duplicates: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def seg(self) -> Path | None:
        return self.files.get(SEG)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self.files]


@dataclass
class Cohort:
    """Patients found under ``root``, with the sequences the analysis uses."""

    root: Path
    naming: str
    sequences: list[str]
    patients: dict[str, Patient]

    @property
    def ids(self) -> list[str]:
        return sorted(self.patients)

    def image_path(self, pid: str, sequence: str) -> Path:
        try:
            return self.patients[pid].files[sequence]
        except KeyError as err:
            raise GlioradInputError(
                f"patient {pid!r}: no {sequence} image in {self.root}"
            ) from err

    def __len__(self) -> int:
        return len(self.patients)


# --------------------------------------------------------------------------------------- discover
def _candidate_files(root: Path) -> list[Path]:
    """Image files in ``root`` and one folder level below (one folder per patient), sorted."""
    out = [p for p in root.iterdir() if p.is_file() and image_extension(p)]
    for sub in sorted(q for q in root.iterdir() if q.is_dir()):
        out.extend(p for p in sub.iterdir() if p.is_file() and image_extension(p))
    return sorted(out)


def _discover_scheme(root: Path, scheme: NamingScheme) -> dict[str, Patient]:
    patients: dict[str, Patient] = {}
    for path in _candidate_files(root):
        parsed = scheme.parse(path.name)
        if parsed is None:
            continue
        pid, key = parsed
        pat = patients.setdefault(pid, Patient(pid))
        if key in pat.files:
            pat.duplicates.setdefault(key, [pat.files[key]]).append(path)
            continue
        pat.files[key] = path
    for pat in patients.values():
        pat.expected = {k: scheme.filename(pat.id, k) for k in scheme.suffixes}
    return patients


def _template_regex(template: str) -> re.Pattern[str]:
    parts = template.split("{id}")
    if len(parts) < 2:
        raise GlioradInputError(
            f"cohort.mapping template {template!r} has no '{{id}}' placeholder for the patient id"
        )
    body = re.escape(parts[0]) + r"(?P<id>[^/]+?)"
    for part in parts[1:-1]:
        body += re.escape(part) + r"(?P=id)"
    body += re.escape(parts[-1])
    return re.compile(body + r"$")


def _discover_custom(root: Path, mapping: dict[str, str]) -> dict[str, Patient]:
    patients: dict[str, Patient] = {}
    for key, template in mapping.items():
        rx = _template_regex(template)
        for path in sorted(root.glob(template.replace("{id}", "*"))):
            m = rx.match(path.relative_to(root).as_posix())
            if m is None:
                continue
            pat = patients.setdefault(m["id"], Patient(m["id"]))
            pat.files[key] = path
    for pat in patients.values():
        pat.expected = {k: t.replace("{id}", pat.id) for k, t in mapping.items()}
    return patients


def _holds_dicom(root: Path, limit: int = 200) -> bool:
    """Whether one of the first ``limit`` files under ``root`` has the DICOM preamble."""
    for n, p in enumerate(f for f in root.rglob("*") if f.is_file()):
        if n >= limit:
            return False
        try:
            with open(p, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    return True
        except OSError:
            continue
    return False


def discover_cohort(root: str | Path, config: CohortConfig | None = None) -> Cohort:
    """Find the patients under ``root`` with the naming given by ``config`` (default: auto).

    Raises :class:`GlioradInputError` when the folder does not exist, holds no patient in the
    naming asked for, or the config names a sequence the naming does not know.
    """
    cfg = config or CohortConfig()
    root = Path(root)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: cohort folder not found")
    naming = cfg.naming
    valid_naming = ["auto", *NAMING_SCHEMES, "custom"]
    if naming not in valid_naming:
        raise GlioradInputError(
            f"cohort.naming {naming!r} is not valid; expected one of: {', '.join(valid_naming)}"
        )
    if naming == "custom" or (naming == "auto" and cfg.mapping):
        if not cfg.mapping:
            raise GlioradInputError("cohort.naming 'custom' needs cohort.mapping (sequence -> template)")
        known = list(cfg.mapping)
        patients = _discover_custom(root, cfg.mapping)
        naming = "custom"
    else:
        known = [k for k in STANDARD_SEQUENCES]
        if naming == "auto":
            found = {name: _discover_scheme(root, s) for name, s in NAMING_SCHEMES.items()}
            naming = max(found, key=lambda n: sum(len(p.files) for p in found[n].values()))
            patients = found[naming]
        else:
            patients = _discover_scheme(root, NAMING_SCHEMES[naming])
    bad = [s for s in cfg.sequences if s not in known or s == SEG]
    if bad:
        raise GlioradInputError(
            f"cohort.sequences {bad} not known for {naming} naming; "
            f"expected a subset of: {', '.join(k for k in known if k != SEG)}"
        )
    if not patients:
        looked = "; ".join(s.description for s in NAMING_SCHEMES.values())
        what = f"files matching cohort.mapping {cfg.mapping}" if naming == "custom" else looked
        hint = ("For other naming give cohort.naming: custom with a cohort.mapping in the config")
        if _holds_dicom(root):
            hint = ("It holds DICOM files: a DICOM export is read by preprocessing, which "
                    "identifies each series' sequence from its tags (set preprocess.enabled: true "
                    "in a run config, or run gliorad preprocess; gliorad dicom scan shows what "
                    "it finds)")
        raise GlioradInputError(
            f"{root}: no patients found (looked for {what}; extensions {', '.join(IMAGE_EXTENSIONS)}). "
            + hint
        )
    return Cohort(root=root, naming=naming, sequences=list(cfg.sequences), patients=patients)
