"""One patient through the steps (:func:`run_patient`), and a whole raw folder into a cohort
(:func:`preprocess`): atomic per patient, skip if done, failures collected.

Per patient, in order (each step can be switched off in ``PreprocessConfig.steps``):

1. load every sequence (float32, voxel axes reoriented to LPS);
2. N4 bias-field correction of each sequence in its own space;
3. co-registration of every sequence to the reference sequence (default T1-Gd) on isotropic
   working copies (Mattes MI, rigid or affine), the transforms kept;
4. one resampling of each original image onto the output grid (the reference sequence's physical
   box at ``spacing`` mm, or its own grid when ``resample`` is off) through its transform;
5. skull stripping on the output grid (a registered stripper; with the step off, the non-zero
   voxels are the brain);
6. z-score inside the brain per sequence (mean / SD of the brain region, as the paper), 0 outside.

The QC record also holds, per sequence, the fraction of the brain inside its field of view
(``coverage``; below 98 % is a warning) and a warning for a brain volume outside 800-2200 ml.

Output per patient: ``<id>/<id>_<seq>.nii.gz`` (BraTS 2018 names, float32),
``<id>_brainmask.nii.gz`` (uint8), ``<id>_seg.nii.gz`` when the raw patient had a segmentation
(assumed on the reference sequence's grid, nearest-neighbour), ``qc.json`` and ``qc.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad import __version__
from gliorad.cohort import NAMING_SCHEMES, SEG, STANDARD_SEQUENCES
from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from gliorad.io import DicomSeries, Geometry, file_hash, write_json
from gliorad.preprocess.config import PreprocessConfig
from gliorad.preprocess.inputs import RawPatient, find_raw_patients
from gliorad.preprocess.qc import qc_figure
from gliorad.preprocess.skullstrip import StripResult, get_stripper, nonzero_strip
from gliorad.preprocess.steps import (
    _itk_reason,
    head_mask_array,
    intensity_stats,
    isotropic_grid,
    load_sequence,
    mask_image,
    n4_correct,
    register,
    resample_to,
    same_grid,
    sitk_threads,
    zscore,
)
from gliorad.provenance import digest

BRAINMASK = "brainmask"
QC_JSON = "qc.json"
QC_PNG = "qc.png"
STAGING = ".preprocess-tmp"
#: Adult brain volumes outside this range (ml) are flagged in the QC record's warnings.
PLAUSIBLE_BRAIN_ML = (800.0, 2200.0)
#: A sequence whose field of view misses more of the brain than this fraction is flagged.
MIN_COVERAGE = 0.98

StepHook = Callable[[str], AbstractContextManager]


@dataclass
class PatientResult:
    """Output images on one grid (float32), the brain mask (uint8), the segmentation if any, the
    QC record, and the co-registered images before masking and normalisation (for the QC
    picture)."""

    images: dict[str, sitk.Image]
    mask: sitk.Image
    seg: sitk.Image | None
    qc: dict[str, Any]
    unmasked: dict[str, sitk.Image] = field(default_factory=dict)


@dataclass
class PreprocessResult:
    out_dir: Path
    layout: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def problems(self) -> list[str]:
        return [line for pid in sorted(self.failed) for line in self.failed[pid]]


def output_name(pid: str, key: str) -> str:
    """``<id>_<seq>.nii.gz`` (BraTS 2018 naming; other sequence names keep their own suffix)."""
    scheme = NAMING_SCHEMES["brats2018"]
    if key in scheme.suffixes:
        return scheme.filename(pid, key)
    return f"{pid}_{key}.nii.gz"


class _Clock:
    def __init__(self, hook: StepHook | None):
        self.hook = hook
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        with self.hook(name) if self.hook is not None else contextlib.nullcontext():
            yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _geometry_record(img: sitk.Image) -> dict[str, Any]:
    g = Geometry.of(img)
    return {"size": list(g.size), "spacing": [round(v, 6) for v in g.spacing],
            "origin": [round(v, 4) for v in g.origin],
            "direction": [round(v, 6) for v in g.direction]}


def versions() -> dict[str, str]:
    from gliorad.provenance import versions as recorded

    return recorded("gliorad", "SimpleITK", "numpy", "scipy", "nilearn", "python")


def fingerprint(files: dict[str, Path | DicomSeries],
                config: PreprocessConfig) -> tuple[str, dict[str, str]]:
    """Hash of the settings and every input file's content (what decides whether a patient is
    done), and the per-file hashes. Settings that cannot change the output (threads, how files
    were found) are left out."""
    hashes = {k: file_hash(p) for k, p in sorted(files.items())}
    settings = config.model_dump(mode="json", exclude={"threads", "layout", "patterns"})
    return digest({"settings": settings, "inputs": hashes}), hashes


def _wrap(path: Path, step: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; an ITK failure becomes a GlioradInputError naming the file and the step."""
    try:
        return fn()
    except GlioradInputError as err:
        raise GlioradInputError([f"{path}: {step}: {p}" for p in err.problems]) from err
    except RuntimeError as err:
        raise GlioradInputError(f"{path}: {step} failed: {_itk_reason(err)}") from err


def run_patient(
    files: dict[str, Path | DicomSeries],
    config: PreprocessConfig | None = None,
    patient_id: str = "patient",
    step_hook: StepHook | None = None,
) -> PatientResult:
    """Preprocess one patient in memory (see the module docstring for the steps).

    ``files`` maps every sequence of ``config.sequences`` (and optionally ``seg``) to a path
    (or a :class:`gliorad.io.DicomSeries` of a DICOM study).
    Raises :class:`GlioradInputError` naming the file and the step that failed.
    """
    cfg = config or PreprocessConfig()
    missing = [s for s in cfg.sequences if s not in files]
    if missing:
        raise GlioradInputError(f"patient {patient_id}: no file for sequence(s) {missing}")
    stripper = get_stripper(cfg.stripper) if cfg.steps.skull_strip else nonzero_strip
    clock = _Clock(step_hook)
    seqs, ref = list(cfg.sequences), cfg.reference
    qc: dict[str, Any] = {"patient_id": patient_id, "warnings": []}
    with sitk_threads(cfg.threads):
        with clock("load"):
            native = {s: load_sequence(files[s]) for s in seqs}
        qc["inputs"] = {s: {"path": str(files[s]), **_geometry_record(native[s])} for s in seqs}

        qc["n4"] = {}
        if cfg.steps.n4:
            with clock("n4"):
                for s in seqs:
                    native[s], qc["n4"][s] = _wrap(files[s], "N4 bias correction",
                                                   lambda s=s: n4_correct(native[s], cfg.n4))

        ref_img = native[ref]
        grid = ref_img
        if cfg.steps.resample:
            candidate = isotropic_grid(ref_img, cfg.spacing)
            grid = ref_img if same_grid(candidate, ref_img) else candidate
        qc["output_grid"] = _geometry_record(grid)

        transforms: dict[str, sitk.Transform | None] = {s: None for s in seqs}
        qc["registration"] = {ref: {"reference": True}}
        if cfg.steps.coregister and len(seqs) > 1:
            with clock("coregister"):
                rset = cfg.registration
                fixed = resample_to(ref_img, isotropic_grid(ref_img, rset.working_spacing))
                fmask = _registration_mask(fixed)
                for s in seqs:
                    if s == ref:
                        continue
                    moving = resample_to(native[s], isotropic_grid(native[s],
                                                                   rset.working_spacing))
                    transforms[s], qc["registration"][s] = _wrap(
                        files[s], f"registration to {ref}",
                        lambda moving=moving: register(fixed, moving, rset, fmask))
        else:
            for s in seqs:
                if s != ref:
                    qc["registration"][s] = {"skipped": "coregister step off"}

        with clock("resample"):
            out: dict[str, sitk.Image] = {}
            for s in seqs:
                if transforms[s] is None and same_grid(native[s], grid):
                    out[s] = native[s]
                else:
                    out[s] = resample_to(native[s], grid, transforms[s], cfg.interpolation)

        cover = _coverage(native, transforms, grid, ref)

        with clock("skull_strip"):
            strip: StripResult = _wrap(files[ref], f"skull strip ({cfg.stripper})",
                                       lambda: stripper(out, cfg))
            mask_arr = _check_mask(strip, grid, cfg.stripper if cfg.steps.skull_strip
                                   else "nonzero")
        vox_ml = float(np.prod(grid.GetSpacing())) / 1000.0
        brain_ml = float(mask_arr.sum() * vox_ml)
        qc["skull_strip"] = {"stripper": cfg.stripper if cfg.steps.skull_strip else "nonzero",
                             "brain_volume_ml": round(brain_ml, 2), **strip.info}
        if not PLAUSIBLE_BRAIN_ML[0] <= brain_ml <= PLAUSIBLE_BRAIN_ML[1]:
            qc["warnings"].append(
                f"brain volume {brain_ml:.0f} ml is outside the adult range "
                f"{PLAUSIBLE_BRAIN_ML[0]:.0f}-{PLAUSIBLE_BRAIN_ML[1]:.0f} ml; check qc.png")

        qc["coverage"] = {s: round(float(c[mask_arr].mean()), 5) for s, c in cover.items()}
        for s, frac in qc["coverage"].items():
            if frac < MIN_COVERAGE:
                qc["warnings"].append(
                    f"{s}: {100 * (1 - frac):.1f}% of the brain lies outside its field of view "
                    "(zeros there enter the z-score); check qc.png")

        with clock("zscore"):
            qc["intensity"] = {}
            final: dict[str, sitk.Image] = {}
            for s in seqs:
                arr = sitk.GetArrayViewFromImage(out[s])
                before = _wrap(files[s], "intensity statistics",
                               lambda arr=arr: intensity_stats(arr, mask_arr))
                if cfg.steps.zscore:
                    res = _wrap(files[s], "z-score", lambda arr=arr: zscore(arr, mask_arr))
                else:
                    res = np.where(mask_arr, arr, 0).astype(np.float32)
                img = sitk.GetImageFromArray(res)
                img.CopyInformation(grid)
                final[s] = img
                qc["intensity"][s] = {"before": before, "after": intensity_stats(res, mask_arr)}

        seg = None
        if SEG in files:
            with clock("seg"):
                seg = _wrap(files[SEG], "segmentation", lambda: _segmentation(files[SEG],
                                                                             native[ref], grid))
    qc["timings_s"] = dict(clock.seconds)
    qc["timings_s"]["total"] = round(sum(clock.seconds.values()), 3)
    return PatientResult(final, mask_image(mask_arr, grid), seg, qc, out)


def _coverage(native: dict[str, sitk.Image], transforms: dict[str, sitk.Transform | None],
              grid: sitk.Image, ref: str) -> dict[str, np.ndarray]:
    """Per non-reference sequence, which output voxels its field of view covers."""
    out = {}
    for s, img in native.items():
        if s == ref:
            continue
        ones = sitk.Image(img.GetSize(), sitk.sitkUInt8) + 1
        ones.CopyInformation(img)
        out[s] = sitk.GetArrayFromImage(
            resample_to(ones, grid, transforms[s], "nearest", sitk.sitkUInt8)).astype(bool)
    return out


def _registration_mask(fixed: sitk.Image) -> sitk.Image | None:
    """Head of the reference, dilated 5 mm, as the fixed mask (None if no head is found)."""
    from scipy import ndimage

    head = head_mask_array(sitk.GetArrayViewFromImage(fixed), fixed)
    if head.sum() < 1000:
        return None
    iters = max(1, round(5.0 / fixed.GetSpacing()[0]))
    return mask_image(ndimage.binary_dilation(head, iterations=iters), fixed)


def _check_mask(strip: StripResult, grid: sitk.Image, name: str) -> np.ndarray:
    mask = strip.mask
    if not isinstance(mask, sitk.Image) or not same_grid(mask, grid):
        raise GlioradInputError(f"stripper {name!r} returned a mask that is not on the output grid")
    arr = sitk.GetArrayFromImage(mask) > 0
    if not arr.any():
        raise GlioradInputError(f"stripper {name!r} returned an empty brain mask")
    return arr


def _segmentation(path: Path, ref_native: sitk.Image, grid: sitk.Image) -> sitk.Image:
    seg = sitk.DICOMOrient(load_label(path), "LPS")
    diffs = Geometry.of(ref_native).differences(Geometry.of(seg), 1e-3, 1e-2, 1e-3)
    if diffs:
        raise GlioradInputError(
            f"segmentation is not on the reference sequence's grid ({'; '.join(diffs)})")
    if same_grid(seg, grid):
        return sitk.Cast(seg, sitk.sitkUInt8)
    return resample_to(seg, grid, None, "nearest", sitk.sitkUInt8)


def load_label(path: Path) -> sitk.Image:
    from gliorad.io import read_image

    img = read_image(path)
    arr = sitk.GetArrayViewFromImage(img)
    if np.any(arr < 0) or np.any(arr > 255) or np.any(arr != np.round(arr)):
        raise GlioradInputError("segmentation values must be integer labels 0..255")
    return sitk.Cast(img, sitk.sitkUInt8)


# ------------------------------------------------------------------------------------- writing
def write_patient(result: PatientResult, folder: Path, pid: str) -> None:
    """Write one patient's outputs into ``folder`` (which must exist)."""
    for s, img in result.images.items():
        sitk.WriteImage(img, str(folder / output_name(pid, s)), useCompression=True)
    sitk.WriteImage(result.mask, str(folder / output_name(pid, BRAINMASK)), useCompression=True)
    if result.seg is not None:
        sitk.WriteImage(result.seg, str(folder / output_name(pid, SEG)), useCompression=True)
    vol = result.qc["skull_strip"]["brain_volume_ml"]
    qc_figure(result.unmasked or result.images, result.mask, folder / QC_PNG,
              title=f"{pid}: brain {vol:.0f} ml (co-registered, before masking and z-score)")
    write_json(result.qc, folder / QC_JSON)


@contextlib.contextmanager
def staged_folder(out_dir: Path, pid: str, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out_dir/pid`` in one rename (the
    old folder, if any and ``overwrite``, is removed after); on failure it is deleted."""
    staging = out_dir / STAGING
    for attempt in range(3):  # another worker's finished patient may remove the empty staging
        staging.mkdir(parents=True, exist_ok=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{pid}.", dir=staging))
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    final = out_dir / pid
    try:
        yield tmp
        if final.exists():
            if not overwrite:
                raise GlioradInputError(f"{final}: already exists (pass overwrite to replace it)")
            old = Path(tempfile.mkdtemp(prefix=f"{pid}.old.", dir=staging))
            old.rmdir()
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()


def _done_state(final: Path, fp: str) -> str:
    """'absent', 'done' (same fingerprint) or 'stale' (other settings / inputs / unreadable)."""
    if not final.exists():
        return "absent"
    try:
        old = json.loads((final / QC_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "stale"
    return "done" if old.get("fingerprint") == fp else "stale"


def preprocess(
    raw_dir: str | Path,
    out_dir: str | Path,
    config: PreprocessConfig | None = None,
    cohort: CohortConfig | None = None,
    *,
    overwrite: bool = False,
    patient_id: str | None = None,
    echo: Callable[[str], None] | None = None,
    step_hook: StepHook | None = None,
    executor: Any = None,
) -> PreprocessResult:
    """Preprocess every patient of ``raw_dir`` into ``out_dir`` (cohort layout, BraTS 2018 names).

    A patient already in ``out_dir`` with the same settings and inputs (``qc.json`` fingerprint) is
    skipped; with other settings or inputs it is a failure unless ``overwrite``. Each patient is
    written atomically. A patient that fails (bad file, failed registration, ...) is recorded in
    the result's ``failed`` with the file and reason, and the others go on. Raises
    :class:`GlioradInputError` only for problems that concern the whole run (no raw folder, no
    patients, unknown stripper). ``executor`` (:class:`gliorad.executor.Executor`): the patients
    on a Dask cluster instead of one after the other here (no ``step_hook`` there).
    """
    cfg = config or PreprocessConfig()
    if cfg.steps.skull_strip:
        get_stripper(cfg.stripper)
    layout, patients = find_raw_patients(raw_dir, cfg, cohort, patient_id)
    out = Path(out_dir)
    if out.resolve() == Path(raw_dir).resolve():
        raise GlioradInputError(f"{out}: output folder must differ from the raw folder")
    out.mkdir(parents=True, exist_ok=True)
    result = PreprocessResult(out, layout)
    say = echo or (lambda _msg: None)
    if executor is not None and executor.distributed:
        _on_cluster(patients, out, cfg, overwrite, step_hook, result, say, executor)
        return result
    for pat in patients:
        if pat.dicom is not None:
            say(f"{pat.id}: DICOM {pat.dicom.summary()}")
        res = _one(pat, out, cfg, overwrite, step_hook, result)
        say(f"{pat.id}: {res}")
    return result


def _one_part(pat: RawPatient, out: Path, cfg: PreprocessConfig, overwrite: bool, layout: str
              ) -> tuple[str, PreprocessResult]:
    """:func:`_one` where a cluster runs it: its line and its own part of the result."""
    part = PreprocessResult(out, layout)
    return _one(pat, out, cfg, overwrite, None, part), part


def _on_cluster(patients: list[RawPatient], out: Path, cfg: PreprocessConfig, overwrite: bool,
                step_hook: StepHook | None, result: PreprocessResult,
                say: Callable[[str], None], executor: Any) -> None:
    """Every patient through :func:`_one_part` on a Dask cluster, merged into ``result``."""
    from gliorad.executor import CaseError, run_cases

    if step_hook is not None:
        raise GlioradInputError("step timings (step_hook) are measured on this machine only; "
                                "use the local executor")
    for pat in patients:
        if pat.dicom is not None:
            say(f"{pat.id}: DICOM {pat.dicom.summary()}")

    def merge(i: int, outcome: Any) -> None:
        pid = patients[i].id
        if isinstance(outcome, CaseError):
            result.failed[pid] = [f"patient {pid}: {outcome.reason}"]
            say(f"{pid}: failed")
            return
        line, part = outcome
        result.done += part.done
        result.skipped += part.skipped
        result.failed.update(part.failed)
        result.warnings.update(part.warnings)
        say(f"{pid}: {line}")

    run_cases(_one_part, patients, executor=executor, names=[p.id for p in patients],
              shared={"out": out, "cfg": cfg, "overwrite": overwrite, "layout": result.layout},
              on_result=merge)
    order = {p.id: i for i, p in enumerate(patients)}  # the order of the local path
    result.done.sort(key=order.__getitem__)
    result.skipped.sort(key=order.__getitem__)
    for name in ("failed", "warnings"):
        setattr(result, name, dict(sorted(getattr(result, name).items(),
                                          key=lambda kv: order.get(kv[0], -1))))


def _one(pat: RawPatient, out: Path, cfg: PreprocessConfig, overwrite: bool,
         step_hook: StepHook | None, result: PreprocessResult) -> str:
    if pat.problems:
        result.failed[pat.id] = list(pat.problems)
        return "failed"
    try:
        fp, hashes = fingerprint(pat.files, cfg)
        state = _done_state(out / pat.id, fp)
        if state == "done" and not overwrite:
            result.skipped.append(pat.id)
            return "skipped (already done with these settings and inputs)"
        if state == "stale" and not overwrite:
            raise GlioradInputError(
                f"{out / pat.id}: exists but was made from other settings or inputs (or has no "
                "readable qc.json); pass overwrite to replace it")
        res = run_patient(pat.files, cfg, pat.id, step_hook)
        res.qc.update(
            fingerprint=fp, gliorad_version=__version__, versions=versions(),
            settings=cfg.model_dump(mode="json"),
            input_hashes=hashes, input_files={k: str(v) for k, v in pat.files.items()},
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if pat.dicom is not None:
            res.qc["dicom"] = pat.dicom.to_dict()
        hook = step_hook("write") if step_hook is not None else contextlib.nullcontext()
        with hook, staged_folder(out, pat.id, overwrite) as tmp:
            write_patient(res, tmp, pat.id)
    except GlioradInputError as err:
        result.failed[pat.id] = [p if p.startswith("patient ") else f"patient {pat.id}: {p}"
                                 for p in err.problems]
        return "failed"
    result.done.append(pat.id)
    if res.qc["warnings"]:
        result.warnings[pat.id] = list(res.qc["warnings"])
    secs = res.qc["timings_s"]["total"]
    return f"done in {secs:.1f} s, brain {res.qc['skull_strip']['brain_volume_ml']:.0f} ml"


__all__ = [
    "BRAINMASK",
    "STANDARD_SEQUENCES",
    "PatientResult",
    "PreprocessResult",
    "fingerprint",
    "output_name",
    "preprocess",
    "run_patient",
    "staged_folder",
    "write_patient",
]
