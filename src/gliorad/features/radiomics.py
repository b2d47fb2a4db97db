"""Handcrafted radiomics with pyradiomics, per patient, sequence and mask source, in parallel.

The numbers come from pyradiomics (PyPI ``pyradiomics-bhklab``, import ``radiomics``); gliorad adds
what a cohort run needs around it:

* **Parameter presets** shipped with the package (``features/params/<name>.yaml``, pyradiomics'
  own parameter-file format; see :data:`PRESETS`), or any pyradiomics parameter file / dict.
* **Region of interest** chosen by gliorad, not by the parameter file: ``region="whole"`` (whole
  tumour, every label > 0; the default), ``"core"`` (tumour core, labels {1, 4}), ``"enhancing"``
  ({4}), or an explicit list of labels. The region becomes a binary mask handed to pyradiomics as
  label 1, so a parameter file's ``setting: label`` must be 1 (or absent).
* **Mask sources**: ``manual`` is the cohort's ``seg`` files; ``auto`` is a folder of predicted
  masks named ``<id>_seg.nii.gz`` or ``<id>.nii.gz`` (any image extension gliorad reads; flat or in
  ``<id>/`` sub-folders), as the segmentation stage writes them.
* **Parallel over (patient, sequence) cases** with joblib (loky), each worker building its own
  ``RadiomicsFeatureExtractor``. A case is computed by :func:`radiomics_case`, the per-case
  function :func:`gliorad.predict.predict_patient` calls too. It runs SimpleITK and BLAS/LAPACK
  single-threaded: their multi-threaded reductions (pyradiomics' normalisation, the LoG filter,
  numpy's ``eigvals`` in GLCM MCC) change the last bit of a few features with the thread count,
  so one thread per case keeps every value identical whatever ``n_jobs`` (and identical to a
  single-threaded pyradiomics run), and workers do not oversubscribe cores.
* **Per-case cache and error capture**: every finished case is written at once to
  ``<out>/cache/<source>/<patient>/<sequence>.json`` (features, diagnostics, input hashes, the
  pyradiomics warnings it raised). A rerun uses a cached case when the settings key (parameters,
  region, pyradiomics version) and the size and modification time of its image and mask are
  unchanged, so it computes only what is missing and a crash loses nothing. A failing case (bad
  file, empty or tiny region, pyradiomics refusing the mask) is recorded with its files and reason
  and does not stop the others.
* **Peritumoural rings** (``peritumoural_mm``, off by default): first-order features in shells
  just outside the region, columns such as ``flair_peri0-5mm_firstorder_Mean``; see
  :mod:`gliorad.features.peritumoural`.

Outputs in ``out_dir`` (all written atomically):

* ``radiomics_<source>.csv`` (and ``.parquet`` when pyarrow or fastparquet is installed): one row
  per patient (index ``patient_id``), columns ``<sequence>_<imagetype>_<class>_<feature>`` such as
  ``t1ce_original_glcm_Contrast`` or ``flair_wavelet-LLH_firstorder_Mean``. Only patients whose
  every sequence succeeded are rows; the others are in ``failures.csv``.
* ``diagnostics_<source>.csv``: pyradiomics' ``diagnostics_*`` values, prefixed by sequence.
* ``failures.csv``: source, patient_id, sequence, image, mask, reason (header only when none).
* ``provenance.json``: parameters, region, versions, input file hashes, counts, timing.

Column names, the writing of these files and the reading of a feature table are in
:mod:`gliorad.features.radiomics_tables` (its names are importable from here as well).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml

from gliorad.errors import GlioradInputError
from gliorad.executor import resolve_jobs  # re-exported: importable from here as before
from gliorad.features.config import RADIOMICS_PRESETS, REGIONS, radiomics_preset_path, ring_bounds
from gliorad.features.peritumoural import ring_features
from gliorad.features.radiomics_tables import (  # re-exported: importable from here as before
    FAILURE_COLUMNS,
    RadiomicsResult,
    column_name,
    feature_row,
    parse_column,
    read_feature_table,
    read_feature_table_cleaned,
    write_outputs,
)
from gliorad.io import IMAGE_EXTENSIONS, Geometry, file_hash, read_image, write_json
from gliorad.provenance import digest

__all__ = [
    "BENIGN_WARNINGS",
    "CACHE_VERSION",
    "FAILURE_COLUMNS",
    "MASK_SOURCES",
    "MIN_VOXELS",
    "PRESETS",
    "REGIONS",
    "THREADS_PER_CASE",
    "CaseFeatures",
    "RadiomicsFailedError",
    "RadiomicsResult",
    "column_name",
    "extract_case",
    "extract_radiomics",
    "feature_row",
    "find_auto_masks",
    "load_params",
    "parse_column",
    "preset_path",
    "radiomics_case",
    "read_feature_table",
    "read_feature_table_cleaned",
    "region_mask",
    "resolve_jobs",
    "resolve_region",
    "settings_key",
    "write_outputs",
]

#: Presets shipped in ``gliorad/features/params/<name>.yaml`` (name -> one-line description) and
#: the named regions: in the light :mod:`gliorad.features.config` (a run config is checked
#: without pyradiomics / SimpleITK).
PRESETS = RADIOMICS_PRESETS

#: Mask sources: ``manual`` = the cohort's ``seg`` files, ``auto`` = a folder of predicted masks.
MASK_SOURCES: tuple[str, ...] = ("manual", "auto")

#: Default smallest region (voxels) accepted; smaller regions give meaningless texture matrices.
MIN_VOXELS = 27

#: Bump when the cache record format or the feature computation around pyradiomics changes.
CACHE_VERSION = 2

#: pyradiomics warnings that are information, not problems (left out of the per-case warnings).
BENIGN_WARNINGS: tuple[str, ...] = (
    "GLCM is symmetrical, therefore Sum Average = 2 * Joint Average",
)

#: SimpleITK and BLAS/LAPACK threads of one case (:func:`radiomics_case`): their multi-threaded
#: reductions change the last bit of a few features with the thread count.
THREADS_PER_CASE = 1


# ------------------------------------------------------------------------------------ parameters
preset_path = radiomics_preset_path


def load_params(params: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """pyradiomics parameters from a preset name, a YAML/JSON parameter file or a dict.

    The result is validated against pyradiomics' schema; errors name the preset or file.
    ``setting: label`` must be 1 or absent (gliorad chooses the region, see the module docstring).
    """
    if isinstance(params, Mapping):
        source = "radiomics parameters (dict)"
        loaded: Any = copy.deepcopy(dict(params))
    else:
        text = str(params)
        path = preset_path(text) if text in PRESETS else Path(text)
        source = f"radiomics preset {text!r} ({path})" if text in PRESETS else str(path)
        if not path.is_file():
            raise GlioradInputError(
                f"radiomics parameters {text!r}: neither a preset ({', '.join(PRESETS)}) nor an "
                "existing parameter file"
            )
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise GlioradInputError(f"{source}: not valid YAML/JSON: {err}") from err
    if not isinstance(loaded, dict):
        raise GlioradInputError(
            f"{source}: expected a mapping with imageType / featureClass / setting, "
            f"got {type(loaded).__name__}"
        )
    loaded = {k: ({} if v is None else v) for k, v in loaded.items()}
    _validate_params(loaded, source)
    label = (loaded.get("setting") or {}).get("label", 1)
    if label != 1:
        raise GlioradInputError(
            f"{source}: setting label {label!r} is not supported; gliorad selects the region of "
            "interest itself (region='whole' | 'core' | 'enhancing' | list of labels) and passes "
            "it to pyradiomics as label 1, so leave label at 1 or remove it"
        )
    return loaded


def _validate_params(params: dict[str, Any], source: str) -> None:
    """Run pyradiomics' own schema validation (pykwalify), quietly, and raise GlioradInputError."""
    from radiomics import featureextractor

    pk_log = logging.getLogger("pykwalify")
    old_level, old_prop = pk_log.level, pk_log.propagate
    pk_log.setLevel(logging.CRITICAL + 1)
    try:
        featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    except Exception as err:  # pykwalify raises SchemaError, CoreError, ... for bad parameters
        msg = " ".join(str(getattr(err, "msg", err)).split())
        raise GlioradInputError(
            f"{source}: not valid pyradiomics parameters: {msg[:400]}"
        ) from err
    finally:
        pk_log.setLevel(old_level)
        pk_log.propagate = old_prop


def settings_key(params: Mapping[str, Any], labels: tuple[int, ...] | None, min_voxels: int,
                 peritumoural_mm: Sequence[float] = ()) -> str:
    """Hash of everything that changes a case's features (used to validate cached cases); the
    rings enter only when given, so the keys of caches made without them stay valid."""
    import radiomics

    rings = {"peritumoural_mm": list(peritumoural_mm)} if peritumoural_mm else {}
    return digest({"params": params, "labels": labels, "min_voxels": min_voxels,
                   "cache": CACHE_VERSION, "pyradiomics": radiomics.__version__, **rings})


# ---------------------------------------------------------------------------------------- region
def resolve_region(region: str | Iterable[int]) -> tuple[str, tuple[int, ...] | None]:
    """(name, labels) for a named region or a list of labels; labels ``None`` = every label > 0."""
    if isinstance(region, str):
        if region not in REGIONS:
            raise GlioradInputError(
                f"region {region!r} is not valid; expected one of: {', '.join(REGIONS)} "
                "or a list of label values such as [1, 4]"
            )
        return region, REGIONS[region]
    try:
        labels = tuple(sorted({int(v) for v in region}))
    except (TypeError, ValueError) as err:
        raise GlioradInputError(
            f"region {region!r}: expected a region name ({', '.join(REGIONS)}) or integer labels"
        ) from err
    if not labels or any(v <= 0 for v in labels):
        raise GlioradInputError(
            f"region labels {list(labels)}: expected one or more positive label values"
        )
    return "labels " + "+".join(map(str, labels)), labels


def region_mask(
    seg: sitk.Image, labels: tuple[int, ...] | None, *, where: str = "mask",
    min_voxels: int = MIN_VOXELS,
) -> sitk.Image:
    """Binary UInt8 mask (1 inside the region) on the grid of ``seg``.

    Raises :class:`GlioradInputError` naming ``where`` when the region is empty or has fewer than
    ``min_voxels`` voxels.
    """
    arr = sitk.GetArrayViewFromImage(seg)
    sel = arr > 0 if labels is None else np.isin(arr, labels)
    n = int(np.count_nonzero(sel))
    what = "label > 0" if labels is None else f"label in {list(labels)}"
    if n == 0:
        found = [v.item() for v in np.unique(arr)][:10]
        raise GlioradInputError(
            f"{where}: region is empty (no voxel with {what}; labels present: {found}); "
            "expected a tumour mask"
        )
    if n < min_voxels:
        raise GlioradInputError(
            f"{where}: region has only {n} voxel(s) with {what}; at least {min_voxels} are needed "
            "for meaningful shape/texture features (min_voxels)"
        )
    out = sitk.GetImageFromArray(sel.astype(np.uint8))
    out.CopyInformation(seg)
    return out


# ------------------------------------------------------------------------------------ one case
@dataclass
class CaseFeatures:
    """Features of one image + mask: pyradiomics keys ``<imagetype>_<class>_<feature>``."""

    features: dict[str, float]
    diagnostics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if not msg.startswith(BENIGN_WARNINGS):
            self.messages.append(msg)


def _as_image(obj: str | os.PathLike | sitk.Image, what: str) -> tuple[sitk.Image, str]:
    if isinstance(obj, sitk.Image):
        return obj, what
    return read_image(obj), str(obj)


def extract_case(
    image: str | os.PathLike | sitk.Image,
    mask: str | os.PathLike | sitk.Image,
    params: str | os.PathLike | Mapping[str, Any] = "fast",
    *,
    region: str | Iterable[int] = "whole",
    min_voxels: int = MIN_VOXELS,
    peritumoural_mm: Sequence[float] = (),
    _validated: bool = False,
) -> CaseFeatures:
    """Radiomics of one image inside one mask's region (see :func:`load_params`, :data:`REGIONS`),
    and with ``peritumoural_mm`` (ring boundaries in mm) first-order features in rings outside
    it (:mod:`gliorad.features.peritumoural`; a too small ring gives NaN and a warning).

    ``image`` and ``mask`` are files gliorad reads (NIfTI, NRRD, MHA, DICOM folder) or SimpleITK
    images on the same grid. pyradiomics' warnings are returned, not printed. Raises
    :class:`GlioradInputError` naming the file for unreadable inputs, grids that differ, empty or
    tiny regions, and masks pyradiomics refuses.
    """
    import radiomics.featureextractor  # noqa: F401 - installs its log handler before we mute it

    t0, c0 = time.perf_counter(), time.process_time()
    p = params if _validated else load_params(params)
    _, labels = resolve_region(region)
    rings = ring_bounds(peritumoural_mm)
    img, img_name = _as_image(image, "image")
    seg, seg_name = _as_image(mask, "mask")
    diff = Geometry.of(img).differences(Geometry.of(seg))
    if diff:
        raise GlioradInputError(
            f"{seg_name}: mask grid does not match image {img_name}: {'; '.join(diff)}"
        )
    roi = region_mask(seg, labels, where=seg_name, min_voxels=min_voxels)

    rlog = logging.getLogger("radiomics")
    collector = _Collect()
    muted = [(h, h.level) for h in rlog.handlers]
    for h, _ in muted:
        h.setLevel(logging.CRITICAL + 1)
    rlog.addHandler(collector)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            extractor = _extractor(json.dumps(p, sort_keys=True))
            result = extractor.execute(img, roi, label=1)
            ring = ring_features(img, roi, p, rings, min_voxels, _extractor) if rings else None
    except ValueError as err:  # pyradiomics' way of refusing a mask (checkMask etc.)
        raise GlioradInputError(
            f"{seg_name}: pyradiomics cannot use this mask with {img_name}: {err}"
        ) from err
    finally:
        rlog.removeHandler(collector)
        for h, level in muted:
            h.setLevel(level)
    feats: dict[str, float] = {}
    diags: dict[str, Any] = {}
    for key, value in result.items():
        if key.startswith("diagnostics_"):
            diags[key] = _plain(value)
        else:
            feats[key] = float(value)
    if ring is not None:
        feats.update(ring[0])
        diags.update(ring[1])
        collector.messages.extend(ring[2])
    notes = list(dict.fromkeys(collector.messages + [
        f"{w.category.__name__}: {w.message}" for w in caught
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, ImportWarning))
    ]))
    return CaseFeatures(feats, diags, notes, time.perf_counter() - t0, time.process_time() - c0)


@functools.lru_cache(maxsize=4)
def _extractor(params_json: str) -> Any:
    """One ``RadiomicsFeatureExtractor`` per parameter set and process (its construction runs
    pyradiomics' schema validation, ~0.2 s; ``execute`` copies the settings, so reuse is safe)."""
    from radiomics import featureextractor

    return featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


def _plain(value: Any) -> Any:
    """A diagnostics value as a JSON-friendly scalar (numbers stay numbers, the rest text)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _plain(value.item())
    return str(value)


def radiomics_case(
    images: Mapping[str, str | os.PathLike | sitk.Image],
    mask: str | os.PathLike | sitk.Image,
    params: str | os.PathLike | Mapping[str, Any] = "fast",
    *,
    region: str | Iterable[int] = "whole",
    min_voxels: int = MIN_VOXELS,
    n_jobs: int = 1,
    peritumoural_mm: Sequence[float] = (),
    _validated: bool = False,
) -> dict[str, CaseFeatures]:
    """Radiomics of one case: each image of ``images`` (sequence -> image) inside the region of
    the tumour ``mask`` (sequence -> :class:`CaseFeatures`, in the order of ``images``).

    The unit of work of the cohort run (:func:`extract_radiomics` computes each (patient,
    sequence) with it) and of :func:`gliorad.predict.predict_patient`. Each image is computed
    with :data:`THREADS_PER_CASE` SimpleITK and BLAS/LAPACK threads (set here, restored after),
    so the values are a function of the inputs and settings only: the same whatever ``n_jobs``,
    the caller's thread settings or the process. ``n_jobs`` > 1 computes the sequences in
    parallel worker processes (-1: all cores). :func:`feature_row` names the table columns.
    ``peritumoural_mm``: ring features as :func:`extract_case`. Errors as :func:`extract_case`.
    """
    p = params if _validated else load_params(params)
    rings = ring_bounds(peritumoural_mm)
    items = list(images.items())
    jobs = min(resolve_jobs(n_jobs), max(1, len(items)))
    if jobs > 1:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=jobs, backend="loky")(
            delayed(radiomics_case)({seq: img}, mask, p, region=region, min_voxels=min_voxels,
                                    peritumoural_mm=rings, _validated=True) for seq, img in items)
        return {seq: part[seq] for (seq, _), part in zip(items, parts, strict=True)}
    from threadpoolctl import threadpool_limits

    old_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS_PER_CASE)
    try:
        with threadpool_limits(limits=THREADS_PER_CASE):
            return {seq: extract_case(img, mask, p, region=region, min_voxels=min_voxels,
                                      peritumoural_mm=rings, _validated=True)
                    for seq, img in items}
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old_threads)


# ------------------------------------------------------------------------------------ mask folders
def find_auto_masks(folder: str | os.PathLike, ids: Iterable[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """Predicted masks in ``folder`` for each patient id.

    Accepts ``<id>_seg<ext>`` and ``<id><ext>`` for every image extension gliorad reads, directly in
    the folder or in an ``<id>/`` sub-folder. Returns ``(found, problems)``: ``problems`` maps a
    patient id to why it has no usable mask (none found, or several candidates). Raises
    :class:`GlioradInputError` when the folder does not exist or holds no mask for any patient.
    """
    root = Path(folder)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: automatic-mask folder not found")
    ids = list(ids)
    found: dict[str, Path] = {}
    problems: dict[str, str] = {}
    for pid in ids:
        cands = [
            d / f"{pid}{suffix}{ext}"
            for d in (root, root / pid)
            for suffix in ("_seg", "")
            for ext in IMAGE_EXTENSIONS
        ]
        hits = [c for c in cands if c.is_file()]
        if len(hits) == 1:
            found[pid] = hits[0]
        elif not hits:
            problems[pid] = f"no automatic mask in {root} (expected {pid}_seg.nii.gz or {pid}.nii.gz)"
        else:
            problems[pid] = (
                f"{len(hits)} candidate automatic masks ({', '.join(str(h) for h in hits)}); "
                "expected exactly one"
            )
    if ids and not found:
        raise GlioradInputError(
            f"{root}: no automatic mask for any of the {len(ids)} patients "
            f"(expected files such as {ids[0]}_seg.nii.gz or {ids[0]}.nii.gz)"
        )
    return found, problems


# ------------------------------------------------------------------------------------ cohort run
class RadiomicsFailedError(GlioradInputError):
    """Some cases failed; ``result`` holds everything that was written (the others' results)."""

    def __init__(self, problems: Sequence[str], result: RadiomicsResult):
        super().__init__(problems)
        self.result = result


@dataclass(frozen=True)
class _Task:
    source: str
    patient_id: str
    sequence: str
    image: str
    mask: str
    cache: str
    key: str
    params: dict
    labels: tuple[int, ...] | None
    min_voxels: int
    peritumoural_mm: tuple[float, ...] = ()


def _stat(path: str | Path) -> list[int]:
    st = Path(path).stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux's ``VmHWM`` (reset at exec, so a loky worker reports its own peak; ``ru_maxrss`` would
    carry over the parent's size at fork), else ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - neither Linux nor POSIX
        return float("nan")


def _run_case(task: _Task) -> dict[str, Any]:
    """Worker: compute one case (:func:`radiomics_case`, one thread), write its cache record,
    return a short status dict."""
    base = {"source": task.source, "patient_id": task.patient_id, "sequence": task.sequence,
            "image": task.image, "mask": task.mask}
    try:
        case = radiomics_case({task.sequence: task.image}, task.mask, task.params,
                              region=task.labels or "whole", min_voxels=task.min_voxels,
                              peritumoural_mm=task.peritumoural_mm, _validated=True)[task.sequence]
        record = {
            **base, "key": task.key, "image_stat": _stat(task.image), "mask_stat": _stat(task.mask),
            "image_sha256": file_hash(task.image), "mask_sha256": file_hash(task.mask),
            "features": case.features, "diagnostics": case.diagnostics,
            "warnings": case.warnings, "seconds": case.seconds,
            "cpu_seconds": case.cpu_seconds,
        }
        write_json(record, task.cache)
        return {**base, "status": "ok", "seconds": case.seconds, "peak_rss_mb": peak_rss_mb()}
    except GlioradInputError as err:
        return {**base, "status": "failed", "reason": " ".join(err.problems)}
    except Exception as err:  # noqa: BLE001 - one failing case must not lose the others
        return {**base, "status": "failed", "reason": f"{type(err).__name__}: {err}"}


def _read_cache(task: _Task) -> dict[str, Any] | None:
    """The cached record of ``task`` if it is valid for the current settings and input files."""
    path = Path(task.cache)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable cache record: recompute the case
    try:
        ok = (rec.get("key") == task.key and rec.get("image") == task.image
              and rec.get("mask") == task.mask and rec.get("image_stat") == _stat(task.image)
              and rec.get("mask_stat") == _stat(task.mask))
    except OSError:
        return None
    return rec if ok else None


def extract_radiomics(
    cohort: Any,
    out_dir: str | os.PathLike,
    *,
    params: str | os.PathLike | Mapping[str, Any] = "fast",
    sequences: Sequence[str] | None = None,
    manual: bool = True,
    auto_masks: str | os.PathLike | None = None,
    region: str | Iterable[int] = "whole",
    min_voxels: int = MIN_VOXELS,
    n_jobs: int = -1,
    progress: bool = True,
    overwrite: bool = False,
    parquet: bool | None = None,
    raise_on_failure: bool = True,
    peritumoural_mm: Sequence[float] = (),
    executor: Any = None,
) -> RadiomicsResult:
    """Radiomics for every patient, sequence and mask source of a cohort; see the module docstring.

    Parameters
    ----------
    cohort : Cohort or path
        A :class:`gliorad.cohort.Cohort` or a cohort folder (discovered with default settings).
    out_dir : path
        Output folder (created); holds the tables, ``failures.csv``, ``provenance.json`` and the
        per-case ``cache/``.
    params : preset name, parameter-file path or dict
        pyradiomics parameters (:data:`PRESETS`: ``fast``, ``paper``, ``paper788``).
    sequences : list of str, optional
        Sequences to use (default: the cohort's configured sequences).
    manual : bool
        Use the cohort's ``seg`` files as the ``manual`` mask source.
    auto_masks : path, optional
        Folder of automatic masks (the ``auto`` source); see :func:`find_auto_masks`.
    region : str or list of int
        Region of interest, see :data:`REGIONS`.
    min_voxels : int
        Smallest region accepted.
    n_jobs : int
        Parallel cases (-1: all cores; 1: in this process, no worker processes).
    progress : bool
        Show a progress bar (rich, on stderr).
    overwrite : bool
        Delete the cache and compute every case again.
    parquet : bool or None
        Also write Parquet: ``None`` = when pyarrow or fastparquet is installed (else a note says
        it was not written), ``True`` = required, ``False`` = CSV only.
    raise_on_failure : bool
        Raise :class:`RadiomicsFailedError` (a :class:`GlioradInputError` listing each failed case,
        carrying ``.result``) after writing the outputs when any case failed.
    peritumoural_mm : list of float
        Ring boundaries in mm (``[0, 5, 10]``: rings 0-5 and 5-10 mm outside the region) for
        first-order ring features (:mod:`gliorad.features.peritumoural`); ``()``: none.
    """
    from gliorad.cohort import Cohort, discover_cohort

    t_start = time.perf_counter()
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    p = load_params(params)
    region_name, labels = resolve_region(region)
    rings = ring_bounds(peritumoural_mm)
    if int(min_voxels) < 1:
        raise GlioradInputError(f"min_voxels {min_voxels!r}: expected a positive number of voxels")
    if isinstance(sequences, str):
        sequences = [sequences]
    seqs = list(sequences) if sequences is not None else list(cohort.sequences)
    if not seqs or len(set(seqs)) != len(seqs):
        raise GlioradInputError(f"sequences {seqs}: expected one or more distinct sequence names")
    known = {k for pat in cohort.patients.values() for k in pat.files if k != "seg"}
    unknown = [s for s in seqs if s not in known]
    if unknown:
        raise GlioradInputError(
            f"sequences {unknown} not found in cohort {cohort.root}; it holds: "
            f"{', '.join(sorted(known))} (choose the sequences to use with --sequences, or "
            "cohort.sequences in the --config file)"
        )
    if not manual and auto_masks is None:
        raise GlioradInputError(
            "no mask source: enable manual masks (the cohort's seg files) or give auto_masks"
        )
    if parquet is True and _parquet_engine() is None:
        raise GlioradInputError(
            "parquet=True but neither pyarrow nor fastparquet is installed; install one or pass "
            "parquet=None/False"
        )
    jobs = resolve_jobs(n_jobs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: output path exists and is not a folder")
    cache_root = out / "cache"
    if overwrite and cache_root.exists():
        shutil.rmtree(cache_root)
    key = settings_key(p, labels, int(min_voxels), rings)
    ids = cohort.ids

    masks: dict[str, dict[str, Path]] = {}
    failures: list[dict[str, Any]] = []
    source_dirs: dict[str, str] = {}
    if manual:
        with_seg = {pid: cohort.patients[pid].seg for pid in ids if cohort.patients[pid].seg}
        if not with_seg:
            raise GlioradInputError(
                f"cohort {cohort.root}: no patient has a manual mask (seg file); "
                "use automatic masks only (manual=False / --no-manual)"
            )
        masks["manual"] = with_seg
        source_dirs["manual"] = str(cohort.root)
        for pid in ids:
            if pid not in with_seg:
                failures.append(_failure("manual", pid, "*", "", "",
                                         f"patient {pid}: no manual mask (seg file) in {cohort.root}"))
    if auto_masks is not None:
        found, probs = find_auto_masks(auto_masks, ids)
        masks["auto"] = found
        source_dirs["auto"] = str(Path(auto_masks))
        for pid, why in probs.items():
            failures.append(_failure("auto", pid, "*", "", "", f"patient {pid}: {why}"))

    tasks: list[_Task] = []
    for source, by_pid in masks.items():
        for pid in ids:
            if pid not in by_pid:
                continue
            for seq in seqs:
                img = cohort.patients[pid].files.get(seq)
                if img is None:
                    failures.append(_failure(source, pid, seq, "", str(by_pid[pid]),
                                             f"patient {pid}: no {seq} image in {cohort.root}"))
                    continue
                tasks.append(_Task(
                    source, pid, seq, str(img), str(by_pid[pid]),
                    str(cache_root / source / pid / f"{seq}.json"), key, p, labels,
                    int(min_voxels), rings,
                ))

    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    todo: list[_Task] = []
    for t in tasks:
        rec = _read_cache(t)
        if rec is None:
            todo.append(t)
        else:
            records[(t.source, t.patient_id, t.sequence)] = rec
    n_cached = len(records)
    statuses = _run_all(todo, jobs, progress, executor)
    worker_peak = max((s.get("peak_rss_mb", 0.0) for s in statuses), default=None)
    by_task = {(t.source, t.patient_id, t.sequence): t for t in todo}
    n_computed = 0
    for s in statuses:
        k = (s["source"], s["patient_id"], s["sequence"])
        if s["status"] == "ok":
            rec = _read_cache(by_task[k])
            if rec is None:  # written by the worker a moment ago: must be readable
                raise RuntimeError(f"cache record of {k} vanished after it was written")
            records[k] = rec
            n_computed += 1
        else:
            failures.append(_failure(*k, s["image"], s["mask"], s["reason"]))

    order = {s: i for i, s in enumerate(seqs)}
    failures.sort(key=lambda f: (f["source"], f["patient_id"], order.get(f["sequence"], -1)))
    result = write_outputs(
        out, cohort, seqs, masks, records, failures, p, params, region_name, labels,
        int(min_voxels), jobs, THREADS_PER_CASE, n_computed, n_cached, parquet,
        _parquet_engine() if parquet is not False else None,
        time.perf_counter() - t_start, source_dirs, worker_peak, rings,
    )
    if failures and raise_on_failure:
        raise RadiomicsFailedError(
            [f"radiomics failed for {len(failures)} case(s); the other cases were written to {out}"]
            + [_failure_line(f) for f in failures],
            result,
        )
    return result


def _failure(source: str, pid: str, seq: str, image: str, mask: str, reason: str) -> dict[str, Any]:
    return {"source": source, "patient_id": pid, "sequence": seq, "image": image, "mask": mask,
            "reason": reason}


def _failure_line(f: Mapping[str, Any]) -> str:
    files = f" [image {f['image']}]" if f.get("image") else ""
    return f"{f['source']} mask, patient {f['patient_id']}, {f['sequence']}{files}: {f['reason']}"


def _run_all(todo: list[_Task], jobs: int, progress: bool, executor: Any = None
             ) -> list[dict[str, Any]]:
    """Run the cases (:func:`gliorad.executor.run_cases`); a case lost on a cluster is failed."""
    from gliorad.executor import run_cases

    columns = ("radiomics", "bar", "count", "{task.fields[failed]} failed", "elapsed", "remaining")
    out = run_cases(_run_case, todo, executor=executor, jobs=jobs, progress=progress,
                    label="radiomics", columns=columns, failed=lambda s: s["status"] != "ok",
                    names=[f"{t.source}/{t.patient_id}/{t.sequence}" for t in todo])
    return [s if isinstance(s, dict) else {**_failure(t.source, t.patient_id, t.sequence, t.image,
                                                      t.mask, s.reason), "status": "failed"}
            for t, s in zip(todo, out)]


def _parquet_engine() -> str | None:
    for name in ("pyarrow", "fastparquet"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None
