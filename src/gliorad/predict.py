"""Single-patient prediction with a model bundle (what ``gliorad predict`` runs).

:func:`predict_patient` takes one patient's MRI folder and a bundle (:mod:`gliorad.bundle`):

1. **Files.** The sequences the bundle's models need (manifest ``inputs.sequences``) are found in
   the folder with the bundle's custom cohort template when the run used one, else with BraTS
   2018 or BraTS 2023 naming (detected, :func:`gliorad.cohort.discover_cohort`). A missing
   sequence is an error naming it and the file expected. All sequences must share one grid.
2. **Preprocessing**, only when the bundle's run config enabled it: the same settings
   (:func:`gliorad.preprocess.run_patient`, raw files matched by the preprocessing patterns); the
   result is written to ``<out>/preprocessed/<id>/`` and used from there on.
3. **Tumour mask.** The bundle's U-Net exactly as the cohort run applies it: the segmentation
   stage's per-case function (:func:`gliorad.segmentation.segment_case` after
   :func:`~gliorad.segmentation.prepare_model`: its own resampling, sliding window and
   post-processing), or the given ``mask`` (on the images' grid).
   Written as ``<out>/mask.nii.gz`` on the patient's grid; an empty mask is an error.
4. **Working grid.** When the patient's voxel spacing differs from the training cohort's
   (manifest ``inputs.working_spacing_mm``), images (linear, float32) and mask (nearest) are
   resampled to that spacing over the same physical box before any feature is computed, since
   radiomics and the CNN inputs (crops of a fixed number of voxels) depend on the spacing; the
   output says so.
5. **Features.** Radiomics of every sequence the models use, inside the whole mask region (or the
   bundle's region; plus the bundle's peritumoural rings, if any), with the bundle's pyradiomics
   parameters, by the radiomics stage's per-case
   function (:func:`gliorad.features.radiomics.radiomics_case`: one thread per case, the
   tables' column names); the 3D CNN's 512 (or ``n``)
   features from the tumour-centred crop and the 2D CNN's from the largest tumour slice (when the
   survival signature uses them), each by the deep stage's per-case function
   (:func:`gliorad.features.deep.deep_case`: the cohort run's preparation and extraction).
   A signature on the cross-fitted 2D head outputs (``deep2d.cross_fit``: ``cnn2d_oof_grade``,
   ``cnn2d_oof_risk``) gets them from the bundle's 2D network, the one trained on every training
   patient, as the stage gives every patient outside the training cohort
   (:func:`gliorad.features.deep2d.head_features_2d`).
6. **Grade.** The grading model's HGG probability and the predicted grade (HGG when the
   probability reaches the model's threshold).
7. **Survival** (bundles with LGG survival models): the signature score and risk group (``high``
   when the score is above the training cut-off), and the 1/3/5-year (configured times) survival
   of each nomogram whose clinical factors are given. ``clinical`` values (``{"age": "45",
   "sex": "F", "grade": "III"}``) are read with the clinical table's spellings
   (:data:`gliorad.clinical.CATEGORIES` and the run's aliases) and coded by the survival models'
   :class:`~gliorad.survival.coding.FactorCoding` (training levels, pooled rare levels); a
   missing or bad value gives a message naming the factor and the accepted values, and everything
   else is still returned. The survival models were fitted on LGG patients: a patient predicted
   HGG gets the numbers with a note.
8. **Outputs** in ``out_dir``: ``mask.nii.gz``, ``features.csv`` (the patient's feature row, the
   cohort tables' column names), ``prediction.json`` (the returned dict) and ``summary.html``
   (one self-contained page: the numbers, the mask over three orthogonal slices
   as embedded PNG, the bundle's provenance; :mod:`gliorad.predict_page`). ``prediction.json``
   is written last.

The per-case functions are the cohort stages' own, so a patient's mask and features from
``predict`` are those of a cohort run on the same inputs with the same models.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliorad.bundle import ModelBundle, installed_versions, load_model_bundle
from gliorad.cohort import SEG, Cohort
from gliorad.errors import GlioradInputError
from gliorad.grading.stacking import STACK_COLUMN_3D
from gliorad.io import (
    Geometry,
    file_hash,
    json_default,
    read_geometry,
    read_image,
    write_image,
    write_json,
    write_text,
)
from gliorad.predict_page import fmt_values, overlays, summary_page

__all__ = ["OUTPUT_FILES", "PROGRESS_STEPS", "clinical_fields", "find_patient",
           "parse_clinical_values", "predict_patient"]

#: Files written into ``out_dir``.
OUTPUT_FILES = {"mask": "mask.nii.gz", "features": "features.csv", "json": "prediction.json",
                "html": "summary.html"}
NUMERIC_FACTORS = ("age",)
#: The steps :func:`predict_patient` reports to its ``progress`` callback, in order (a step the
#: bundle or the inputs do not need is skipped).
PROGRESS_STEPS = ("preprocessing", "segmentation", "features", "grading", "survival", "writing")


# ------------------------------------------------------------------------------------ files
def find_patient(patient_dir: str | os.PathLike, sequences: Sequence[str],
                 naming: Mapping[str, Any] | None = None) -> tuple[Cohort, str]:
    """The one patient in ``patient_dir`` with every one of ``sequences``.

    ``naming`` is the bundle's ``{"naming": ..., "mapping": {...}}``: a custom mapping is used as
    it is (its templates may start with the patient folder, ``{id}/...``: then the parent folder
    is searched for this patient); otherwise BraTS 2018 / 2023 naming is detected.
    """
    from gliorad.cohort import discover_cohort
    from gliorad.config import CohortConfig

    root = Path(patient_dir)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: patient folder not found")
    mapping = dict((naming or {}).get("mapping") or {})
    cfg = (CohortConfig(naming="custom", mapping=mapping, sequences=list(sequences)) if mapping
           else CohortConfig(naming="auto", sequences=list(sequences)))
    try:
        cohort = discover_cohort(root, cfg)
    except GlioradInputError:
        if not mapping:
            raise
        cohort = discover_cohort(root.parent, cfg)
        if root.name not in cohort.patients:
            raise GlioradInputError(f"{root}: no patient {root.name!r} found with the bundle's "
                                    f"file templates {mapping}") from None
        cohort.patients = {root.name: cohort.patients[root.name]}
    if len(cohort.patients) > 1:
        ids = cohort.ids
        raise GlioradInputError(
            f"{root}: holds {len(ids)} patients ({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}); "
            "give the folder of one patient")
    pid = cohort.ids[0]
    pat = cohort.patients[pid]
    problems = [f"{root}: patient {pid}: {len(paths)} {key} images ({', '.join(p.name for p in paths)}); "
                "expected exactly one" for key, paths in pat.duplicates.items() if key in sequences]
    for seq in pat.missing(sequences):
        expected = pat.expected.get(seq)
        problems.append(f"{root}: patient {pid} has no {seq} image"
                        + (f" (expected {expected})" if expected else "")
                        + f"; the bundle's models need {', '.join(sequences)}")
    if problems:
        raise GlioradInputError(problems)
    return cohort, pid


def _check_grids(cohort: Cohort, pid: str, sequences: Sequence[str]) -> Geometry:
    files = cohort.patients[pid].files
    first = sequences[0]
    ref = read_geometry(files[first])
    problems = []
    for seq in sequences[1:]:
        diff = ref.differences(read_geometry(files[seq]))
        if diff:
            problems.append(f"{files[seq]}: grid differs from {files[first].name} ({'; '.join(diff)}); "
                            "expected co-registered sequences on one grid (run gliorad preprocess)")
    if problems:
        raise GlioradInputError(problems)
    return ref


def _preprocess(patient_dir: Path, settings: Mapping[str, Any], out: Path, sequences: Sequence[str],
                mask: Path | None, cohort_settings: Mapping[str, Any] | None = None,
                ) -> tuple[Cohort, str, dict[str, Any], Path | None]:
    """Preprocess the patient as the bundle's run did (a DICOM study's series identified with
    the run's ``cohort.dicom`` patterns); a given mask (on the raw reference sequence's grid) is
    carried to the preprocessed grid with the images."""
    from gliorad.cohort import discover_cohort
    from gliorad.config import CohortConfig
    from gliorad.preprocess.config import PreprocessConfig
    from gliorad.preprocess.inputs import default_patient_id, match_files
    from gliorad.preprocess.pipeline import run_patient, staged_folder, write_patient

    cfg = PreprocessConfig.model_validate(dict(settings))
    absent = [s for s in sequences if s not in cfg.sequences]
    if absent:
        raise GlioradInputError(f"bundle: the models need {absent} but preprocessing makes only "
                                f"{cfg.sequences}")
    if not patient_dir.is_dir():
        raise GlioradInputError(f"{patient_dir}: patient folder not found")
    dicom = None
    if isinstance(cohort_settings, Mapping) and cohort_settings.get("dicom") is not None:
        from pydantic import ValidationError

        from gliorad.config import DicomConfig

        try:
            dicom = DicomConfig.model_validate(cohort_settings["dicom"])
        except ValidationError as err:
            raise GlioradInputError(f"bundle manifest: cohort.dicom: {err}") from err
    files = match_files(patient_dir, cfg, dicom)
    pid = default_patient_id(patient_dir)
    if mask is not None:
        if not Path(mask).is_file():
            raise GlioradInputError(f"{mask}: mask file not found")
        files = {**files, SEG: Path(mask)}
    result = run_patient(files, cfg, pid)
    folder = out / "preprocessed"
    with staged_folder(folder, pid, overwrite=True) as tmp:
        write_patient(result, tmp, pid)
    cohort = discover_cohort(folder / pid, CohortConfig(naming="brats2018", sequences=list(sequences)))
    record = {"folder": str(folder / pid), "raw_files": {k: str(v) for k, v in files.items()},
              "settings": cfg.model_dump(mode="json")}
    return cohort, pid, record, (cohort.patients[pid].seg if mask is not None else None)


# ------------------------------------------------------------------------------------ grids
def _grid_at(native: Geometry, spacing: Sequence[float]) -> Geometry:
    """The same physical box as ``native`` at voxel ``spacing`` (x, y, z mm)."""
    size = tuple(max(1, math.ceil(n * s / w - 1e-6)) for n, s, w in zip(native.size, native.spacing, spacing))
    return Geometry(size, tuple(float(w) for w in spacing), native.origin, native.direction)


def _needs_resampling(native: Geometry, working: Sequence[float] | None) -> bool:
    return working is not None and not np.allclose(native.spacing, working, rtol=1e-3, atol=0)


# ------------------------------------------------------------------------------------ mask
def _segment(bundle: ModelBundle, cohort: Cohort, pid: str) -> tuple[sitk.Image, dict[str, Any]]:
    """The bundle's U-Net on the patient: the segmentation stage's per-case function
    (:func:`gliorad.segmentation.infer.segment_case`, the model prepared as the stage does)."""
    from gliorad.segmentation.infer import label_names, prepare_model, segment_case

    model = bundle.segmentation
    mask, case = segment_case(model, cohort, pid, prepare_model(model))
    record = {"source": "segmentation", "label_mode": model.config.label_mode,
              "labels": label_names(model.config, model.regions),
              "segmentation_spacing_mm": case["working_spacing"]}
    return mask, record


def _given_mask(path: Path, native: Geometry, reference_file: Path) -> tuple[sitk.Image, dict[str, Any]]:
    img = read_image(path)
    diff = native.differences(Geometry.of(img))
    if diff:
        raise GlioradInputError(f"{path}: mask grid differs from {reference_file.name} "
                                f"({'; '.join(diff)}); expected the mask on the images' grid")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise GlioradInputError(f"{path}: a multi-component image; expected a label mask")
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise GlioradInputError(f"{path}: holds non-integer values; expected a label mask "
                                "(0 = background, > 0 = tumour)")
    return img, {"source": "given", "given_file": str(path), "sha256": file_hash(path)}


# ------------------------------------------------------------------------------------ features
def _radiomics(images: Mapping[str, Path], mask: Path, settings: Mapping[str, Any],
               columns: Sequence[str], n_jobs: int) -> dict[str, float]:
    """The model ``columns`` of the radiomics stage's per-case function
    (:func:`gliorad.features.radiomics.radiomics_case`) on the sequences they name, with the
    bundle's parameters, region, minimum region size and peritumoural rings."""
    from gliorad.executor import resolve_jobs
    from gliorad.features.radiomics import feature_row, parse_column, radiomics_case

    seqs = sorted({parse_column(c)[0] for c in columns})
    resolve_jobs(n_jobs)  # a bad n_jobs is named as it is, not as a radiomics problem
    try:
        cases = radiomics_case({s: str(images[s]) for s in seqs}, str(mask), settings["params"],
                               region=settings.get("region", "whole"),
                               min_voxels=int(settings["min_voxels"]), n_jobs=n_jobs,
                               peritumoural_mm=settings.get("peritumoural_mm", ()),
                               _validated=True)
    except GlioradInputError as err:
        raise GlioradInputError([f"radiomics: {p.replace(str(mask), 'the tumour mask')}"
                                 for p in err.problems]) from err
    values = feature_row({seq: case.features for seq, case in cases.items()})
    missing = [c for c in columns if c not in values]
    if missing:
        raise GlioradInputError(f"radiomics: the bundle's parameters do not produce the model "
                                f"column(s) {missing[:5]}; the bundle is inconsistent")
    return {c: float(values[c]) for c in columns}


def _deep(kind: str, network: Any, files: Mapping[str, Path], mask: Path
          ) -> tuple[dict[str, float], np.ndarray, dict[str, Any]]:
    """Features (column -> value), head outputs and the input record of one CNN: the deep stage's
    per-case function (:func:`gliorad.features.deep.deep_case`) with the bundle's network."""
    from gliorad.features.deep import deep_case

    if kind == "cnn3d":
        from gliorad.features.deep3d import CNN3D as hooks
    else:
        from gliorad.features.deep2d import CNN2D as hooks
    model, cfg = network
    return deep_case(hooks, model, cfg, files, mask)


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + math.exp(-float(x))))


# ------------------------------------------------------------------------------------ clinical
def _accepted(field: str, clinical_cfg: Any, coding: Any = None) -> list[str]:
    from gliorad.clinical import allowed_values

    if coding is not None and field in coding.levels:
        pooled = coding.pooled.get(field, {})
        return sorted({*[v for v in coding.levels[field] if v != "other" or not pooled], *pooled},
                      key=str.lower)
    return sorted(set(allowed_values(clinical_cfg).get(field, {}).values()), key=str.lower)


def _expected(field: str, clinical_cfg: Any, coding: Any = None) -> str:
    if field in NUMERIC_FACTORS:
        lo, hi = clinical_cfg.age_range
        return f"a number of years within [{lo:g}, {hi:g}]"
    return "one of: " + ", ".join(_accepted(field, clinical_cfg, coding))


def parse_clinical_values(values: Mapping[str, str], coding: Any, clinical_cfg: Any = None
                          ) -> tuple[dict[str, Any], list[str], list[str]]:
    """``clinical`` key=value strings -> canonical values of the survival models' factors.

    Spellings are those of the clinical table (:func:`gliorad.clinical.allowed_values` with the
    run's categories and aliases); a categorical value must be a training level of
    ``coding`` (:class:`~gliorad.survival.coding.FactorCoding`), or a level the training pooled
    into ``other``. Returns ``(values, problems, notes)``; each problem names the factor, the
    value and the accepted values.
    """
    from gliorad.clinical import allowed_values
    from gliorad.config import ClinicalConfig

    ccfg = clinical_cfg or ClinicalConfig()
    tables = allowed_values(ccfg)
    out: dict[str, Any] = {}
    problems: list[str] = []
    notes: list[str] = []
    factors = list(coding.factors)
    for key, raw in values.items():
        field = str(key).strip().lower()
        text = str(raw).strip()
        if field not in factors:
            problems.append(f"--clinical {key}={raw!r}: {key!r} is not a clinical factor of this "
                            f"bundle's survival models; expected one of: {', '.join(factors)}")
            continue
        if field in NUMERIC_FACTORS or field not in tables:
            try:
                num = float(text)
            except ValueError:
                num = float("nan")
            lo, hi = ccfg.age_range if field == "age" else (-math.inf, math.inf)
            if not math.isfinite(num) or not lo <= num <= hi:
                problems.append(f"--clinical {field}={raw!r}: not valid; expected "
                                f"{_expected(field, ccfg, coding)}")
                continue
            out[field] = num
            continue
        canon = tables[field].get(text.lower())
        if canon is None:
            problems.append(f"--clinical {field}={raw!r}: not an allowed {field}; expected "
                            f"{_expected(field, ccfg, coding)}")
            continue
        pooled = coding.pooled.get(field, {})
        levels = coding.levels.get(field, [])
        coded = pooled.get(canon, canon)
        if coded in levels:
            if coded != canon:
                notes.append(f"{field} {canon!r} is coded 'other' as in training (rare level pooled)")
            out[field] = canon
        elif pooled and "other" in levels:
            notes.append(f"{field} {canon!r} was not seen in training: coded 'other'")
            out[field] = canon
        else:
            problems.append(f"--clinical {field}={raw!r}: level {canon!r} is not among the "
                            f"training levels; expected {_expected(field, ccfg, coding)}")
    return out, problems, notes


def clinical_fields(bundle: ModelBundle) -> list[dict[str, Any]]:
    """The clinical factors the bundle's nomograms take, for a form: one dict per factor with
    ``name``, ``kind`` (``number``: ``min`` / ``max``; ``choice``: the accepted ``choices``, the
    spellings :func:`parse_clinical_values` takes) and the ``nomograms`` that need it; empty
    without survival models. The signature term is not a clinical factor."""
    from gliorad.clinical import allowed_values

    models = bundle.survival
    if models is None:
        return []
    ccfg = _clinical_config(bundle)
    tables = allowed_values(ccfg)
    fields: dict[str, dict[str, Any]] = {}
    for which in ("integrated", "clinical"):
        nom = getattr(models, f"nomogram_{which}")
        if nom is None:
            continue
        for f in nom.design.names:
            if f == models.signature_term:
                continue
            if f not in fields:
                if f in NUMERIC_FACTORS or f not in tables:  # as parse_clinical_values reads it
                    lo, hi = ccfg.age_range if f == "age" else (None, None)
                    fields[f] = {"name": f, "kind": "number", "min": lo, "max": hi}
                else:
                    fields[f] = {"name": f, "kind": "choice",
                                 "choices": _accepted(f, ccfg, models.coding)}
                fields[f]["nomograms"] = []
            fields[f]["nomograms"].append(which)
    return list(fields.values())


def _clinical_config(bundle: ModelBundle) -> Any:
    from pydantic import ValidationError

    from gliorad.config import ClinicalConfig

    data = bundle.config.get("clinical") if isinstance(bundle.config, Mapping) else None
    try:
        return ClinicalConfig.model_validate(data or {})
    except ValidationError:
        return ClinicalConfig()


# ------------------------------------------------------------------------------------ survival
def _survival(bundle: ModelBundle, features: Mapping[str, float], clinical: Mapping[str, str],
              predicted_grade: str | None) -> tuple[dict[str, Any], list[str]]:
    import pandas as pd

    from gliorad.survival.coding import FactorCoding
    from gliorad.survival.config import SIGNATURE, time_label

    models = bundle.survival
    sig = models.signature
    pid = "patient"
    row = pd.DataFrame([{c: features[c] for c in sig.features_}], index=[pid])
    messages: list[str] = []
    notes: list[str] = []
    if not np.isfinite(row.to_numpy(float)).all():
        bad = [c for c in sig.features_ if not np.isfinite(row.at[pid, c])]
        if models.coding.missing != "impute":
            raise GlioradInputError(f"signature feature(s) {bad[:5]} could not be computed (not "
                                    "finite) for this patient")
        row = row.fillna(pd.Series(sig.center_, index=sig.features_))
        notes.append(f"signature feature(s) {bad[:5]} not finite: imputed with the training means")
    scored = models.score(row)
    score, group = float(scored.at[pid, "signature_score"]), str(scored.at[pid, SIGNATURE])
    out: dict[str, Any] = {
        "signature_score": score, "risk_group": group, "cutoff": float(models.cutoff),
        "cutoff_method": models.cutoff_method, "groups": "high: score > cut-off; low: score <= cut-off",
        "population": models.config.population, "training_cohort": models.training,
    }
    if models.signature_scale is not None:  # signature_term: continuous
        out["signature_z"] = float(scored.at[pid, "signature_z"])
    if not sig.features_:  # survival.model 'clinical' (issue 18): no image signature
        out.update(signature_score=None, risk_group=None, cutoff=None)
        notes.append(f"no signature score or risk group: {sig.empty_reason_}")
    if models.config.population == "LGG" and predicted_grade == "HGG":
        notes.append("the survival models were fitted on LGG patients and this patient is "
                     "predicted HGG: interpret the survival numbers with caution")
    ccfg = _clinical_config(bundle)
    parsed, problems, parse_notes = parse_clinical_values(clinical or {}, models.coding, ccfg)
    messages += problems
    notes += parse_notes
    nomograms: dict[str, Any] = {}
    for which in ("integrated", "clinical"):
        nom = getattr(models, f"nomogram_{which}")
        info = (getattr(models, "model_info", None) or {}).get(which) or {}
        if nom is None:
            nomograms[which] = {"computed": False,
                                "reason": f"the bundle has no {which} model: "
                                          + (info.get("reason") or "no factor was available or "
                                             "passed the selection in training")}
            continue
        if info.get("same_as_clinical"):
            notes.append("the integrated model is the clinical model (" + str(info.get("reason")
                         or "the signature was not kept") + "): the two nomograms agree")
        factors = list(nom.design.names)
        sig_term = models.signature_term  # the group, or signature_z (continuous term)
        needed = [f for f in factors if f != sig_term]
        absent = [f for f in needed if f not in parsed]
        if absent:
            detail = "; ".join(f"{f} ({_expected(f, ccfg, models.coding)})" for f in absent)
            msg = (f"{which} nomogram not computed: clinical factor(s) {', '.join(absent)} missing "
                   f"or not valid: {detail}. Give them as --clinical "
                   + " ".join(f"{f}=..." for f in absent))
            messages.append(msg)
            nomograms[which] = {"computed": False, "reason": msg, "factors": factors}
            continue
        sub = FactorCoding(
            factors=needed, references={f: models.coding.references[f] for f in needed
                                        if f in models.coding.references},
            levels={f: models.coding.levels[f] for f in needed if f in models.coding.levels},
            pooled={f: models.coding.pooled[f] for f in needed if f in models.coding.pooled},
            impute={f: models.coding.impute[f] for f in needed if f in models.coding.impute},
            missing="complete_case")
        coded, _, _ = sub.apply(pd.DataFrame([{f: parsed[f] for f in needed}], index=[pid]), "patient")
        if len(coded) == 0:  # (not .empty: a signature-only model codes no column, one row)
            msg = f"{which} nomogram not computed: clinical values could not be coded"
            messages.append(msg)
            nomograms[which] = {"computed": False, "reason": msg, "factors": factors}
            continue
        data = (coded.assign(**{sig_term: scored.at[pid, sig_term]}) if sig_term in factors
                else coded)
        for term in nom.design.terms:
            if term.kind == "numeric" and term.name in data and not (
                    term.low <= float(data.at[pid, term.name]) <= term.high):
                notes.append(f"{which} nomogram: {term.name} {float(data.at[pid, term.name]):g} is "
                             f"outside the training range [{term.low:g}, {term.high:g}] "
                             "(extrapolated)")
        table = nom.score(data[factors])
        r = table.iloc[0]
        nomograms[which] = {
            "computed": True, "factors": factors,
            "values": {f: (data.at[pid, f] if not isinstance(data.at[pid, f], np.generic)
                           else data.at[pid, f].item()) for f in factors},
            "points": {f: float(r[f]) for f in factors},
            "total_points": float(r["total_points"]), "linear_predictor": float(r["lp"]),
            "survival": {time_label(t): float(r[f"surv_{t:g}"]) for t in nom.times},
            "times_days": [float(t) for t in nom.times],
        }
    out["clinical_values"] = parsed
    out["nomograms"] = nomograms
    out["messages"] = messages
    out["notes"] = notes
    return out, messages


# ------------------------------------------------------------------------------------ main
def predict_patient(
    patient_dir: Path,
    bundle: ModelBundle | Path,
    out_dir: Path,
    *,
    clinical: dict[str, str] | None = None,
    mask: Path | None = None,
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Predict one patient with a model bundle; see the module docstring for the steps.

    Parameters
    ----------
    patient_dir : path
        Folder with the patient's images (one patient).
    bundle : ModelBundle or path
        A loaded bundle or its folder (verified on loading).
    out_dir : path
        Output folder (created): ``mask.nii.gz``, ``features.csv``, ``prediction.json``,
        ``summary.html``.
    clinical : dict, optional
        Clinical factors for the nomograms, e.g. ``{"age": "45", "sex": "F", "grade": "III"}``.
    mask : path, optional
        A tumour mask on the images' grid to use instead of the bundle's segmentation.
    n_jobs : int
        Processes for the radiomics of the sequences (-1: all cores).
    progress : callable, optional
        Called with the name of each step (:data:`PROGRESS_STEPS`) as it starts.

    Returns
    -------
    dict
        The content of ``prediction.json`` (JSON-able).
    """
    t0 = time.perf_counter()
    b = bundle if isinstance(bundle, ModelBundle) else load_model_bundle(bundle)
    patient_dir, out = Path(patient_dir), Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: output path exists and is not a folder")
    if mask is None and b.segmentation is None:
        raise GlioradInputError(f"{b.path}: the bundle has no segmentation model; give the tumour "
                                "mask (--mask)")
    step = progress or (lambda name: None)
    sequences = b.sequences
    notes: list[str] = []
    pre = b.inputs.get("preprocess")
    pre_record = None
    if pre:
        step("preprocessing")
        cohort, pid, pre_record, pre_mask = _preprocess(patient_dir, pre, out, sequences, mask,
                                                        b.config.get("cohort"))
        notes.append("preprocessed with the bundle's settings (gliorad preprocess)"
                     + ("; the given mask was carried to the preprocessed grid" if mask else ""))
    else:
        try:
            cohort, pid = find_patient(patient_dir, sequences, b.inputs.get("naming"))
        except GlioradInputError as err:
            raise GlioradInputError([*err.problems, (
                "this bundle's run did not preprocess: its models take one patient's images "
                "already preprocessed as its training cohort was (co-registered on one grid, "
                "skull-stripped, BraTS or the run's naming); for raw scans or a DICOM export run "
                "gliorad preprocess PATIENT_DIR OUT first and predict on OUT's patient folder")]
            ) from err
    files = cohort.patients[pid].files
    native = _check_grids(cohort, pid, sequences)

    # ---- tumour mask on the patient's grid
    if mask is not None:
        mask_img, mask_record = _given_mask(Path(pre_mask if pre else mask), native,
                                            files[sequences[0]])
        if pre:
            mask_record.update(given_file=str(mask), sha256=file_hash(mask))
    else:
        step("segmentation")
        mask_img, mask_record = _segment(b, cohort, pid)
    mask_arr = sitk.GetArrayFromImage(mask_img)
    n_vox = int(np.count_nonzero(mask_arr))
    if n_vox == 0:
        raise GlioradInputError(
            f"patient {pid}: the tumour mask is empty ("
            + ("the segmentation model found no tumour; check that the images are the sequences "
               "and preprocessing the bundle expects, or give a mask with --mask)"
               if mask is None else f"{mask} has no voxel > 0)"))
    mask_record.update(file=OUTPUT_FILES["mask"], voxels=n_vox,
                       volume_ml=n_vox * float(np.prod(native.spacing)) / 1000.0)
    seg_path = cohort.patients[pid].files.get(SEG)
    if mask is None and seg_path is not None:
        from gliorad.segmentation import dice_score

        manual = read_image(seg_path)
        if not native.differences(Geometry.of(manual)):
            mask_record["dice_vs_manual"] = dice_score(mask_arr > 0, sitk.GetArrayViewFromImage(manual) > 0)
            mask_record["manual_mask"] = str(seg_path)

    # ---- working grid
    working = b.working_spacing
    resample = _needs_resampling(native, working)
    grid = _grid_at(native, working) if resample else native
    if resample:
        notes.append(f"images resampled from {fmt_values(native.spacing)} mm to the training cohort's "
                     f"{fmt_values(working)} mm before feature extraction (linear; mask nearest)")
    elif working is None:
        notes.append("the bundle does not record the training cohort's voxel spacing: features "
                     "are computed at the patient's own spacing")

    from gliorad.features.config import CROSS_FIT_COLUMNS_2D
    from gliorad.features.deep import PREFIX_2D, PREFIX_3D

    # which per-case functions run: the columns the models read (deep columns by their prefix)
    rad_cols = [c for model in ("grading", "survival") for c in b.feature_columns(model)
                if not c.startswith((PREFIX_3D, PREFIX_2D))]
    rad_cols = list(dict.fromkeys(rad_cols))
    needs_2d = b.survival is not None and any(c.startswith(PREFIX_2D)
                                              for c in b.feature_columns("survival"))
    needs_3d = any(c.startswith(PREFIX_3D) for c in b.feature_columns("grading"))
    uses_head_2d = b.survival is not None and bool(
        set(CROSS_FIT_COLUMNS_2D.values()) & set(b.feature_columns("survival")))

    step("features")
    with tempfile.TemporaryDirectory(prefix="gliorad-predict-") as tmp_name:
        tmp = Path(tmp_name)
        work_files: dict[str, Path] = {}
        if resample:
            from gliorad.segmentation import reference_image

            ref = reference_image(grid)
            for seq in sequences:
                img = sitk.Cast(read_image(files[seq]), sitk.sitkFloat32)
                res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
                work_files[seq] = write_image(res, tmp / f"{pid}_{seq}.nii.gz")
            work_mask = sitk.Resample(mask_img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                      mask_img.GetPixelID())
        else:
            work_files = {seq: Path(files[seq]) for seq in sequences}
            work_mask = mask_img
        mask_dir = tmp / "masks"
        mask_file = write_image(work_mask, mask_dir / f"{pid}.nii.gz")
        features: dict[str, float] = {}
        if rad_cols:
            features.update(_radiomics(work_files, mask_file, b.radiomics, rad_cols, n_jobs))
        cnn3d_out = cnn2d_out = None
        if needs_3d or b.cnn3d is not None:
            if b.cnn3d is None:
                raise GlioradInputError(f"{b.path}: the grading model uses cnn3d features but the "
                                        "bundle has no 3D network")
            vals, cnn3d_out, _ = _deep("cnn3d", b.cnn3d, work_files, mask_file)
            features.update(vals)
            # the network's own HGG probability: the input of a stacked grading model
            features[STACK_COLUMN_3D] = _sigmoid(cnn3d_out[0])
        if needs_2d:
            if b.cnn2d is None:
                raise GlioradInputError(f"{b.path}: the survival signature uses cnn2d features but "
                                        "the bundle has no 2D network")
            vals, cnn2d_out, _ = _deep("cnn2d", b.cnn2d, work_files, mask_file)
            features.update(vals)
            if uses_head_2d:
                # the signature reads the cross-fitted head outputs (deep2d.cross_fit): a new
                # patient's come from the bundle's network, trained on every training patient
                from gliorad.features.deep2d import head_features_2d

                features.update({c: float(v[0]) for c, v in
                                 head_features_2d(cnn2d_out, b.cnn2d[1]).items()})

    # ---- grade
    import pandas as pd

    grading: dict[str, Any] | None = None
    grade = None
    if b.grading is not None:
        step("grading")
        gcols = b.feature_columns("grading")
        X = pd.DataFrame([{c: features[c] for c in gcols}], index=pd.Index([pid], name="patient_id"))
        prob = float(b.grading.decision_score(X)[0])
        threshold = float(b.grading_info.get("threshold", 0.5))
        grade = "HGG" if prob >= threshold else "LGG"
        grading = {"probability_hgg": prob, "predicted_grade": grade,
                   "threshold": threshold, "n_features": len(gcols)}
        if cnn3d_out is not None:
            grading["cnn3d_probability_hgg"] = features[STACK_COLUMN_3D]
    else:
        notes.append("the bundle has no grading model (grading was off in its run): no grade "
                     "probability")

    # ---- survival
    messages: list[str] = []
    survival: dict[str, Any] | None = None
    if b.survival is not None:
        step("survival")
        survival, messages = _survival(b, features, clinical or {}, grade)
        if cnn2d_out is not None:
            from gliorad.features.deep2d import risk_score

            survival["cnn2d"] = {"probability_grade_iii": _sigmoid(cnn2d_out[0]),
                                 "risk_score": float(risk_score(np.array([cnn2d_out[1]]),
                                                                b.cnn2d[1].survival_loss)[0])}
    elif clinical:
        messages.append("clinical values were given but the bundle has no survival models; "
                        "they are not used")

    ood, ood_note = _out_of_distribution(b, features, survival, files)
    if ood_note:
        notes.append(ood_note)

    result: dict[str, Any] = {
        "patient_id": pid,
        "warnings": [o["message"] for o in ood],
        "out_of_distribution": ood,
        "patient_dir": str(patient_dir),
        "grading": grading,
        "survival": survival,
        "mask": mask_record,
        "inputs": {
            "sequences": {s: {"file": str(files[s]), "sha256": file_hash(files[s])} for s in sequences},
            "naming": cohort.naming, "native_spacing_mm": list(native.spacing),
            "native_size": list(native.size), "working_spacing_mm": list(grid.spacing),
            "resampled": resample, "preprocessed": pre_record,
        },
        "messages": messages,
        "notes": notes + (survival or {}).get("notes", []),
        "bundle": b.provenance(),
        "versions": installed_versions(),
        "files": {k: str(out / v) for k, v in OUTPUT_FILES.items()},
    }
    result = json.loads(json.dumps(result, default=json_default))
    step("writing")
    out.mkdir(parents=True, exist_ok=True)
    # prediction.json is written last and marks a complete prediction: an older one goes first
    (out / OUTPUT_FILES["json"]).unlink(missing_ok=True)
    write_image(mask_img, out / OUTPUT_FILES["mask"])
    table = pd.DataFrame([features], index=pd.Index([pid], name="patient_id"))
    write_text(table.to_csv(float_format=lambda v: repr(float(v))), out / OUTPUT_FILES["features"])
    display = next((s for s in ("t1ce", "flair", "t2", "t1") if s in files), sequences[0])
    pictures = overlays(read_image(files[display]), mask_img)
    result["run"] = {"created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                     "seconds": round(time.perf_counter() - t0, 3), "n_jobs": n_jobs}
    write_text(summary_page(result, pictures, display), out / OUTPUT_FILES["html"])
    write_json(result, out / OUTPUT_FILES["json"])
    return result


def _out_of_distribution(b: ModelBundle, features: Mapping[str, float],
                         survival: Mapping[str, Any] | None, files: Mapping[str, Any]
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """The patient's values outside the bundle's training ranges (:mod:`gliorad.ranges`):
    the models' features, the signature score, and the images' intensity statistics."""
    from gliorad import ranges

    tr = b.inputs.get("training_ranges")
    if not tr:
        return [], ("the bundle records no training ranges (made by an older gliorad): the "
                    "patient was not compared with the training patients")
    margin = float(tr.get("margin", ranges.MARGIN))
    out = ranges.out_of_range(tr.get("features") or {}, features, "feature", margin)
    if survival is not None and tr.get("signature_score") and survival["signature_score"] is not None:
        out += ranges.out_of_range({"signature score": tr["signature_score"]},
                                   {"signature score": survival["signature_score"]}, "survival",
                                   margin)
    for seq, by_stat in (tr.get("intensity") or {}).items():
        if seq not in files:
            continue
        stats = ranges.intensity_stats(files[seq])
        out += ranges.out_of_range({f"{seq} {k}": r for k, r in by_stat.items()},
                                   {f"{seq} {k}": v for k, v in stats.items()},
                                   "image intensity", margin)
    return out, None
