"""`gliorad validate`: is a cohort folder (and its clinical table) usable?

Checks every patient's files (present, readable, finite, not constant, one geometry per patient,
segmentation labels within the declared set and not empty) and the clinical table (see
:mod:`gliorad.clinical`), then that the table and the folder hold the same patients. Every problem
is one line naming the file or the table row and column, the bad value and what was expected.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from gliorad.clinical import parse_clinical, read_clinical_raw
from gliorad.cohort import SEG, Cohort, Patient, discover_cohort
from gliorad.config import CohortConfig, GlioradConfig
from gliorad.errors import GlioradInputError
from gliorad.io import Geometry, read_image


@dataclass
class ValidationReport:
    cohort: Cohort | None
    clinical: pd.DataFrame | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.cohort is None:
            return "no cohort"
        parts = [f"{len(self.cohort)} patients ({self.cohort.naming} naming)",
                 f"sequences {', '.join(self.cohort.sequences)}"]
        n_seg = sum(p.seg is not None for p in self.cohort.patients.values())
        parts.append(f"{n_seg} with segmentation")
        if self.clinical is not None:
            parts.append(f"clinical table with {len(self.clinical)} rows")
        return "; ".join(parts)


def check_patient(patient: Patient, cfg: CohortConfig) -> list[str]:
    """All problems of one patient's files (reads each volume once)."""
    problems: list[str] = []
    for key in patient.missing(cfg.sequences + ([SEG] if cfg.require_seg else [])):
        expected = patient.expected.get(key, f"a {key} file")
        problems.append(f"patient {patient.id}: missing {key} file (expected {expected})")
    for key, paths in patient.duplicates.items():
        problems.append(f"patient {patient.id}: several {key} files: {', '.join(map(str, paths))}")
    keys = [k for k in cfg.sequences if k in patient.files]
    if patient.seg is not None:
        keys.append(SEG)
    ref: tuple[Path, Geometry] | None = None
    tol = cfg.tolerance
    for key in keys:
        path = patient.files[key]
        try:
            img = read_image(path)
        except GlioradInputError as err:
            problems.extend(err.problems)
            continue
        geo = Geometry.of(img)
        if ref is None:
            ref = (path, geo)
        else:
            for diff in ref[1].differences(geo, tol.spacing_rel, tol.origin_mm, tol.direction):
                problems.append(f"{path}: {diff} of {ref[0].name} (sequences of one patient "
                                "must share one grid)")
        arr = sitk.GetArrayViewFromImage(img)
        problems.extend(_check_segmentation(path, arr, cfg.seg_labels) if key == SEG
                        else _check_intensities(path, arr, img.GetNumberOfComponentsPerPixel()))
    return problems


def _check_intensities(path: Path, arr: np.ndarray, components: int) -> list[str]:
    if components != 1:
        return [f"{path}: image has {components} components per voxel; expected a scalar image"]
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        return [f"{path}: image is constant (every voxel = {lo:g}); expected an MRI volume"]
    return []


def _check_segmentation(path: Path, arr: np.ndarray, labels: list[int]) -> list[str]:
    # (non-finite values were already refused by read_image)
    if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
        return [f"{path}: segmentation has non-integer values; expected integer labels {labels}"]
    present = np.unique(arr).astype(np.int64)
    extra = sorted(set(present.tolist()) - set(labels))
    if extra:
        return [f"{path}: segmentation label values {extra} are outside the declared set {sorted(labels)}"]
    if not np.any(arr):
        nonzero = sorted(set(labels) - {0})
        return [f"{path}: segmentation is empty (no tumour voxels); expected labels {nonzero}"]
    return []


def validate(
    cohort_dir: str | Path,
    clinical_path: str | Path | None = None,
    config: GlioradConfig | None = None,
    n_jobs: int = 2,
    executor: Any = None,
) -> ValidationReport:
    """Check a cohort folder and optionally its clinical table; never raises for bad data.

    The patients' files are checked by ``n_jobs`` threads, or on a Dask cluster (``executor``:
    :class:`gliorad.executor.Executor`)."""
    cfg = config or GlioradConfig()
    report = ValidationReport(None, None)
    try:
        cohort = discover_cohort(cohort_dir, cfg.cohort)
    except GlioradInputError as err:
        report.problems.extend(err.problems)
        cohort = None
    report.cohort = cohort
    if cohort is not None:
        pats = [cohort.patients[i] for i in cohort.ids]
        if executor is not None and executor.distributed:
            from gliorad.executor import CaseError, run_cases

            results = run_cases(check_patient, pats, executor=executor, names=cohort.ids,
                                shared={"cfg": cfg.cohort})
            for pid, probs in zip(cohort.ids, results):
                if isinstance(probs, CaseError):
                    probs = [f"patient {pid}: file checks failed on the cluster: {probs.reason}"]
                report.problems.extend(probs)
        else:
            with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
                for probs in pool.map(lambda p: check_patient(p, cfg.cohort), pats):
                    report.problems.extend(probs)
    if clinical_path is not None:
        p = Path(clinical_path)
        try:
            table, probs = parse_clinical(read_clinical_raw(p), cfg.clinical, source=p.name)
        except GlioradInputError as err:
            report.problems.extend(err.problems)
        else:
            report.clinical = table
            report.problems.extend(probs)
            if cohort is not None:
                report.problems.extend(_cross_check(cohort, table, p.name))
    return report


def _cross_check(cohort: Cohort, table: pd.DataFrame, source: str) -> list[str]:
    on_disk, in_table = set(cohort.ids), set(table.index)
    out = [f"{source} row {table.at[pid, '_row']}: patient {pid!r} is in the table but has no "
           f"images in {cohort.root}" for pid in sorted(in_table - on_disk)]
    out += [f"{cohort.root}: patient {pid!r} has images but no row in {source}"
            for pid in sorted(on_disk - in_table)]
    return out
