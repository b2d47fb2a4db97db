"""The model bundle: every fitted model ``gliorad predict`` needs, in one checked folder.

Layout (:func:`save_model_bundle`)::

    <bundle>/manifest.json
    <bundle>/segmentation/  model.safetensors, config.json [, history.json, provenance.json]
    <bundle>/cnn3d/         model.safetensors, config.json [, history.json]
    <bundle>/cnn2d/         model.safetensors, config.json [, history.json]
    <bundle>/grading/       model.skops, model.json [, selected_features.csv, provenance.json]
    <bundle>/survival/      bundle.json, signature.skops [, cox_integrated.skops, cox_clinical.skops]

Each component folder is the model folder its stage wrote, copied without the training
checkpoints: the U-Net of :func:`gliorad.segmentation.train_segmentation`, the networks of
:func:`gliorad.features.deep3d.deep_features_3d` / :func:`~gliorad.features.deep2d.
deep_features_2d` (their ``model/`` folder, or the stage folder holding it), the grading model of
:func:`gliorad.grading.run.run_fit` and the survival bundle of
:func:`gliorad.survival.bundle.save_bundle`. Network weights are safetensors (the training loop
writes nothing else; each network is loaded once at save time, so a file that is not valid
safetensors is refused there); fitted estimators are skops files loaded with explicit
trusted-type lists (never pickle). Any of the grading model, the survival models and the U-Net
may be absent (a run with grading or survival switched off), but not all three; the CNN whose
features the grading or survival model uses is required; without segmentation,
``gliorad predict`` needs a mask.

``manifest.json`` holds the format version, the gliorad and library versions, the creation time,
the run config, the SHA-256 of **every other file** (``files``), and per component its files
(with their SHA-256) and what it needs as input (``components.<name>.needs``: sequences, input
size, feature count, the survival models' clinical factors with their training levels, ...);
``inputs`` gathers what a new patient must provide: the sequences, the working voxel spacing of
the training cohort, the radiomics parameters (pyradiomics parameters, region, minimum region
size, sequences, and the peritumoural ring boundaries when the run used them), the feature columns of the grading and survival models, the cohort naming and
the preprocessing settings.

Loading (:func:`load_model_bundle`) refuses, with a message naming the file or package:

* **a changed manifest**: ``manifest_sha256`` is the SHA-256 of the manifest's canonical JSON
  without that key. It detects an edited or damaged manifest, not a deliberate forgery (anyone can
  recompute it: a bundle is as trustworthy as its source, as any model file is);
* **a missing, modified or unlisted file**: every file but ``manifest.json`` must be listed with
  its SHA-256, and every listed file must be present and unchanged (an extra file is refused too:
  a swapped-in weights file must not sit unnoticed beside the real one);
* **another bundle format version** (:data:`FORMAT_VERSION`);
* **incompatible versions** (:data:`COMPATIBILITY`): the same gliorad major.minor (feature
  definitions, model classes and the bundle layout may change between minor versions); the same
  scikit-learn and skops major.minor (skops files hold estimator state that is not portable across
  them); the same pyradiomics major.minor (the models expect the radiomics definitions they were
  fitted on); the same numpy, torch and MONAI major version (arrays in skops files; networks built
  from MONAI blocks and loaded strictly from safetensors). scikit-survival, lifelines, SimpleITK
  and safetensors are recorded only: the survival models are stored as plain arrays and rebuilt
  without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.io import atomic_dir, file_hash, json_default, write_json

__all__ = [
    "COMPATIBILITY",
    "COMPONENTS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ModelBundle",
    "installed_versions",
    "load_model_bundle",
    "manifest_digest",
    "save_model_bundle",
]

FORMAT = "gliorad-model-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

#: Component -> (required files, optional files) copied from the stage's model folder.
COMPONENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "segmentation": (("model.safetensors", "config.json"), ("history.json", "provenance.json")),
    "cnn3d": (("model.safetensors", "config.json"), ("history.json",)),
    "cnn2d": (("model.safetensors", "config.json"), ("history.json",)),
    "grading": (("model.skops", "model.json"), ("selected_features.csv", "provenance.json")),
    "survival": (("bundle.json", "signature.skops"), ("cox_integrated.skops", "cox_clinical.skops")),
}

#: Package -> (how much of the version must match: "minor" = major.minor, "major", None =
#: recorded only; why). See the module docstring.
COMPATIBILITY: dict[str, tuple[str | None, str]] = {
    "gliorad": ("minor", ("feature definitions, model classes and the bundle layout may change "
                          "between gliorad minor versions")),
    "scikit-learn": ("minor", ("skops files hold scikit-learn estimator state, which is not "
                               "portable across scikit-learn minor versions")),
    "skops": ("minor", "the skops file format and its trusted types change between minor versions"),
    "pyradiomics": ("minor", ("the models expect the radiomics feature definitions they were "
                              "fitted on")),
    "numpy": ("major", "skops files store numpy arrays and dtypes"),
    "torch": ("major", "the networks are rebuilt and loaded strictly from safetensors weights"),
    "monai": ("major", "the networks are built from MONAI blocks"),
    "scikit-survival": (None, "recorded only: the signature is stored as plain arrays"),
    "lifelines": (None, "recorded only: the Cox models are stored as plain arrays"),
    "SimpleITK": (None, "recorded only"),
    "safetensors": (None, "recorded only: the file format is stable"),
}


# ------------------------------------------------------------------------------------ versions
def installed_versions() -> dict[str, str]:
    """Versions of gliorad, Python and the packages of :data:`COMPATIBILITY` installed here."""
    from gliorad.provenance import versions

    return versions("gliorad", "python", *(p for p in COMPATIBILITY if p != "gliorad"))


def _parts(text: str) -> tuple[int, ...] | None:
    m = re.match(r"\s*v?(\d+)(?:\.(\d+))?", str(text))
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2) or 0))


def version_problems(bundled: Mapping[str, str], installed: Mapping[str, str],
                     where: str) -> list[str]:
    """One message per package whose installed version is incompatible with the bundle's."""
    problems = []
    for pkg, (level, why) in COMPATIBILITY.items():
        if level is None or pkg not in bundled:
            continue
        have, made = installed.get(pkg), bundled[pkg]
        if have is None:
            problems.append(f"{where}: the bundle was made with {pkg} {made}, which is not "
                            f"installed here ({why})")
            continue
        a, b = _parts(made), _parts(have)
        n = 2 if level == "minor" else 1
        if a is None or b is None or a[:n] != b[:n]:
            want = ".".join(map(str, a[:n])) + ".x" if a is not None else made
            problems.append(
                f"{where}: the bundle was made with {pkg} {made}, installed is {pkg} {have}; "
                f"a bundle needs {pkg} {want} ({why}). Install {pkg} {want} or rebuild the bundle "
                "with this installation")
    return problems


# ------------------------------------------------------------------------------------ manifest
def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=json_default)


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without its ``manifest_sha256`` key."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as JSON reads it back, with its digest."""
    plain = json.loads(_canonical(manifest))
    plain["manifest_sha256"] = manifest_digest(plain)
    return plain


# ------------------------------------------------------------------------------------ sources
def _source_dir(kind: str, path: str | os.PathLike) -> Path:
    """The model folder of a component (a deep-feature stage folder resolves to its ``model/``)."""
    p = Path(path)
    if not p.is_dir():
        raise GlioradInputError(f"{kind}: {p}: folder not found")
    required = COMPONENTS[kind][0]
    if kind in ("cnn3d", "cnn2d") and not (p / "config.json").is_file() and (p / "model").is_dir():
        p = p / "model"
    missing = [name for name in required if not (p / name).is_file()]
    if missing:
        what = {"segmentation": "gliorad.segmentation.train_segmentation",
                "cnn3d": "gliorad.features.deep3d.deep_features_3d",
                "cnn2d": "gliorad.features.deep2d.deep_features_2d",
                "grading": "gliorad.grading.run.run_fit",
                "survival": "gliorad.survival.bundle.save_bundle"}[kind]
        raise GlioradInputError(f"{kind}: {p}: no {', '.join(missing)}; expected the model folder "
                                f"written by {what}")
    return p


def _radiomics_settings(params: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """pyradiomics parameters (validated), region, minimum region size and the peritumoural
    ring boundaries (kept only when given, so bundles without rings read as before)."""
    from gliorad.features.config import ring_bounds
    from gliorad.features.radiomics import MIN_VOXELS, load_params, resolve_region

    if not isinstance(params, Mapping):
        raise GlioradInputError("radiomics_params: expected the pyradiomics parameter mapping "
                                f"(gliorad.features.radiomics.load_params), got {type(params).__name__}")
    data = dict(params)
    if "params" in data:  # {"params": ..., "region": ..., "min_voxels": ...}
        region = data.get("region", info.get("radiomics_region", "whole"))
        min_voxels = data.get("min_voxels", info.get("radiomics_min_voxels", MIN_VOXELS))
        rings = data.get("peritumoural_mm", info.get("radiomics_peritumoural_mm", ()))
        data = dict(data["params"])
    else:
        region = info.get("radiomics_region", "whole")
        min_voxels = info.get("radiomics_min_voxels", MIN_VOXELS)
        rings = info.get("radiomics_peritumoural_mm", ())
    loaded = load_params(data)
    name, labels = resolve_region(region)
    rings = ring_bounds(rings, "radiomics peritumoural_mm")
    return {"params": loaded, "region": region if isinstance(region, str) else list(labels),
            "region_name": name, "min_voxels": int(min_voxels),
            **({"peritumoural_mm": list(rings)} if rings else {})}


def _split_columns(columns: list[str]) -> dict[str, list[str]]:
    """Feature columns by origin: ``cnn3d``, ``cnn2d`` and ``radiomics:<sequence>``."""
    from gliorad.features.deep import PREFIX_2D, PREFIX_3D
    from gliorad.features.radiomics import parse_column

    out: dict[str, list[str]] = {}
    for c in columns:
        if c.startswith(PREFIX_3D):
            key = "cnn3d"
        elif c.startswith(PREFIX_2D):
            key = "cnn2d"
        else:
            key = f"radiomics:{parse_column(c)[0]}"
        out.setdefault(key, []).append(c)
    return out


def _head_columns(kind: str) -> set[str]:
    """A network's columns besides its numbered features, computed from its head outputs by
    ``gliorad predict``: the 3D network's HGG probability (the stacked grading model's input,
    :data:`gliorad.grading.stacking.STACK_COLUMN_3D`) and the 2D network's cross-fitted head
    columns (``deep2d.cross_fit``: :data:`gliorad.features.config.CROSS_FIT_COLUMNS_2D`, a new
    patient's from the bundle's network trained on every training patient)."""
    if kind == "cnn3d":
        from gliorad.grading.stacking import STACK_COLUMN_3D

        return {STACK_COLUMN_3D}
    from gliorad.features.config import CROSS_FIT_COLUMNS_2D

    return set(CROSS_FIT_COLUMNS_2D.values())


def _deep_column_problems(kind: str, columns: list[str], n_features: int | None,
                          model_name: str) -> list[str]:
    if not columns:
        return []
    if n_features is None:
        return [(f"the {model_name} model uses {len(columns)} {kind} feature column(s) (e.g. "
                 f"{columns[0]}) but no {kind} network was given")]
    known = _head_columns(kind)
    bad = [c for c in columns if c not in known
           and (not c.split("_")[-1].isdigit() or int(c.split("_")[-1]) >= n_features)]
    if bad:
        return [(f"the {model_name} model uses {kind} column(s) {bad[:5]} that the {kind} network "
                 f"({n_features} features) does not produce")]
    return []


def _median_spacing(spacings: list[list[float]], what: str) -> tuple[list[float], str]:
    import numpy as np

    arr = np.asarray(spacings, float)
    med = np.median(arr, axis=0)
    spread = float(np.max(np.abs(arr - med) / med)) if len(arr) > 1 else 0.0
    note = (f"median of the {len(arr)} {what}' voxel spacings"
            + (f" (they differ by up to {100 * spread:.0f}%)" if spread > 1e-3 else ""))
    return [round(float(v), 6) for v in med], note


def _stage_input_spacings(stage_dir: Path, limit: int = 200) -> list[list[float]]:
    """Voxel spacings of the images a deep-feature stage recorded in its ``provenance.json``
    (header reads; files that no longer exist are skipped)."""
    from gliorad.io import read_geometry

    prov = stage_dir / "provenance.json"
    if not prov.is_file() and stage_dir.name == "model":  # the model folder of a stage folder
        prov = stage_dir.parent / "provenance.json"
    if not prov.is_file():
        return []
    try:
        inputs = json.loads(prov.read_text(encoding="utf-8")).get("inputs", {})
    except json.JSONDecodeError:
        return []
    out = []
    for files in list(inputs.values())[:limit]:
        first = next((f for k, f in files.items() if k != "mask" and isinstance(f, Mapping)), None)
        if first is None or not Path(first.get("path", "")).is_file():
            continue
        try:
            out.append(list(read_geometry(first["path"]).spacing))
        except GlioradInputError:
            continue
    return out


def _working_spacing(info: Mapping[str, Any], seg_dir: Path | None, deep_dirs: list[Path],
                     config: Mapping[str, Any]) -> tuple[list[float] | None, str]:
    """Voxel spacing (x, y, z mm) of the training cohort and where it came from: ``info``, the
    segmentation training patients (its provenance), the preprocessing spacing, or the images a
    deep-feature stage recorded."""
    if info.get("working_spacing") is not None:
        ws = info["working_spacing"]
        ws = [float(ws)] * 3 if isinstance(ws, (int, float)) else [float(v) for v in ws]
        if len(ws) != 3 or not all(v > 0 for v in ws):
            raise GlioradInputError(f"info.working_spacing {info['working_spacing']!r}: expected "
                                    "a positive number or three (x, y, z mm)")
        return ws, "info.working_spacing"
    if seg_dir is not None and (seg_dir / "provenance.json").is_file():
        grids = json.loads((seg_dir / "provenance.json").read_text(encoding="utf-8")).get("grids", {})
        spacings = [g["native_spacing"] for g in grids.values() if "native_spacing" in g]
        if spacings:
            return _median_spacing(spacings, "segmentation training patients")
    pre = config.get("preprocess") if isinstance(config, Mapping) else None
    if isinstance(pre, Mapping) and pre.get("steps", {}).get("resample", True) and pre.get("spacing"):
        return [float(pre["spacing"])] * 3, "preprocess.spacing of the run config"
    for d in deep_dirs:
        spacings = _stage_input_spacings(d)
        if spacings:
            return _median_spacing(spacings, f"deep-feature training images ({d})")
    return None, ("unknown (no segmentation provenance, no preprocessing, no deep-feature stage "
                  "provenance with readable inputs, no info.working_spacing)")


# ------------------------------------------------------------------------------------ save
def save_model_bundle(
    out: Path,
    *,
    config: dict,
    segmentation: Path | None,
    cnn3d: Path | None,
    cnn2d: Path | None,
    grading: Path | None,
    survival: Path | None,
    radiomics_params: dict,
    info: dict | None = None,
    training_ranges: dict | None = None,
) -> Path:
    """Copy the fitted components into one bundle folder with ``manifest.json``.

    Parameters
    ----------
    out : path
        The bundle folder. It appears only when complete (built in a temporary sibling, then
        renamed); an existing bundle there is replaced, any other existing non-empty folder is an
        error.
    config : dict
        The run config (kept in the manifest; its ``cohort`` naming and ``preprocess`` settings
        are what ``gliorad predict`` applies to a new patient).
    segmentation, cnn3d, cnn2d, grading, survival : path or None
        Component folders (see the module docstring); at least one of ``grading``, ``survival``
        and ``segmentation`` (a run with grading or survival switched off bundles the rest).
    radiomics_params : dict
        pyradiomics parameters (:func:`gliorad.features.radiomics.load_params`), or
        ``{"params": ..., "region": ..., "min_voxels": ..., "peritumoural_mm": ...}``.
    training_ranges : dict, optional
        What ``gliorad predict`` compares a new patient with (:mod:`gliorad.ranges`: ``features``,
        ``signature_score``, ``intensity``), kept in ``inputs.training_ranges``.
    info : dict, optional
        Extra provenance kept in the manifest. Keys read: ``working_spacing`` (mm, one number or
        x, y, z; default: the segmentation training patients' spacing, else the preprocessing
        spacing, else that of the images a deep-feature stage folder's ``provenance.json``
        lists), ``radiomics_region`` (default ``whole``), ``radiomics_min_voxels``,
        ``radiomics_peritumoural_mm`` (ring boundaries in mm; default none).
    """
    info = dict(info or {})
    config = dict(config or {})
    out = Path(out)
    if grading is None and survival is None and segmentation is None:
        raise GlioradInputError("a bundle needs at least one model: the grading model (run_fit "
                                "folder), the survival models or the segmentation network")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise GlioradInputError(f"{out}: exists and is not a gliorad model bundle; choose another "
                                "folder or remove it")
    sources = {k: v for k, v in {"segmentation": segmentation, "cnn3d": cnn3d, "cnn2d": cnn2d,
                                 "grading": grading, "survival": survival}.items() if v is not None}
    dirs = {k: _source_dir(k, v) for k, v in sources.items()}
    radiomics = _radiomics_settings(radiomics_params, info)
    components, columns = _describe(dirs)
    stage_dirs = [Path(sources[k]) for k in ("cnn3d", "cnn2d") if k in sources]
    ws, ws_source = _working_spacing(info, dirs.get("segmentation"), stage_dirs, config)

    problems = []
    rad_seqs: set[str] = set()
    for model_name, cols in columns.items():
        parts = _split_columns(cols)
        rad_seqs |= {k.split(":", 1)[1] for k in parts if k.startswith("radiomics:")}
        for kind in ("cnn3d", "cnn2d"):
            n = components.get(kind, {}).get("needs", {}).get("n_features")
            problems += _deep_column_problems(kind, parts.get(kind, []), n, model_name)
    if problems:
        raise GlioradInputError(problems)
    radiomics["sequences"] = sorted(rad_seqs)
    sequences = set(rad_seqs)
    for comp in components.values():
        sequences |= set(comp.get("needs", {}).get("sequences", []))
    cohort = config.get("cohort", {}) if isinstance(config.get("cohort"), Mapping) else {}

    with atomic_dir(out) as tmp:
        files: dict[str, str] = {}
        for kind, src in dirs.items():
            required, optional = COMPONENTS[kind]
            dest = tmp / kind
            dest.mkdir()
            listed = {}
            for name in (*required, *optional):
                if (src / name).is_file():
                    shutil.copyfile(src / name, dest / name)
                    rel = f"{kind}/{name}"
                    listed[rel] = files[rel] = file_hash(dest / name)
            components[kind]["files"] = listed
            components[kind]["source"] = str(src)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gliorad_version": installed_versions()["gliorad"],
            "versions": installed_versions(),
            "compatibility": {k: {"match": lv, "why": why} for k, (lv, why) in COMPATIBILITY.items()},
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config,
            "info": info,
            "components": components,
            "inputs": {
                "sequences": sorted(sequences),
                "naming": {"naming": cohort.get("naming", "auto"), "mapping": cohort.get("mapping") or {}},
                "working_spacing_mm": ws,
                "working_spacing_source": ws_source,
                "radiomics": radiomics,
                "feature_columns": columns,
                "preprocess": config.get("preprocess") or None,
                "training_ranges": training_ranges,
            },
            "files": dict(sorted(files.items())),
        }
        write_json(_sealed(manifest), tmp / MANIFEST)
    return out


def _describe(dirs: Mapping[str, Path]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Load every component once (refusing what its own loader refuses) and record what it needs
    as input; returns ``(components, feature columns per model)``."""
    comps: dict[str, dict[str, Any]] = {}
    columns: dict[str, list[str]] = {}
    if "segmentation" in dirs:
        from gliorad.segmentation import load_model

        m = load_model(dirs["segmentation"])
        c = m.config
        comps["segmentation"] = {"kind": "3D U-Net (gliorad.segmentation)", "needs": {
            "sequences": list(c.sequences), "spacing_mm": c.spacing, "label_mode": c.label_mode,
            "regions": m.regions}}
    for kind in ("cnn3d", "cnn2d"):
        if kind not in dirs:
            continue
        if kind == "cnn3d":
            from gliorad.features.deep3d import load_cnn3d as loader
        else:
            from gliorad.features.deep2d import load_cnn2d as loader
        model, c = loader(dirs[kind])
        needs: dict[str, Any] = {"sequences": list(c.sequences), "size": list(c.size),
                                 "n_features": int(model.n_features), "prefix": f"{kind}_"}
        if kind == "cnn3d":
            needs.update(input=c.input, border=c.border, variant=c.variant)
        else:
            needs.update(axis=c.axis, survival_loss=c.survival_loss)
        comps[kind] = {"kind": f"ResNet18 ({kind})", "needs": needs}
    if "grading" in dirs:
        from gliorad.grading.persist import load_model, read_model_info

        model = load_model(dirs["grading"])
        minfo = read_model_info(dirs["grading"])
        cols = [str(c) for c in model.feature_names_in_]
        columns["grading"] = cols
        # the paper's model (stacked or not) as before; another candidate by its class, with
        # the grading.model setting and, for auto, the chosen candidate (model.json)
        choice = {k: minfo[k] for k in ("model", "chosen") if k in minfo}
        kind = "GradingModel" if "model" not in minfo else type(model).__name__
        comps["grading"] = {"kind": f"{kind} (skops)", "needs": {
            "feature_columns": len(cols), "selected_features": minfo.get("selected_features"),
            "threshold": float(minfo.get("threshold", 0.5)),
            "positive_class": minfo.get("positive_class", "HGG"), **choice}}
    if "survival" in dirs:
        from gliorad.survival.bundle import load_bundle

        models = load_bundle(dirs["survival"])
        columns["survival"] = list(models.signature.features_)
        coding = models.coding
        comps["survival"] = {"kind": "signature + Cox nomograms (gliorad.survival)", "needs": {
            "signature_features": list(models.signature.features_),
            "cutoff": float(models.cutoff), "population": models.config.population,
            "times_days": list(models.config.times),
            "integrated_factors": list(models.integrated_factors),
            "clinical_factors": list(models.clinical_factors),
            "levels": coding.levels, "references": coding.references, "pooled": coding.pooled}}
    return comps, columns


# ------------------------------------------------------------------------------------ load
@dataclass
class ModelBundle:
    """A verified, loaded bundle (:func:`load_model_bundle`). Absent components are None."""

    path: Path
    manifest: dict[str, Any]
    segmentation: Any = None          # gliorad.segmentation.SegmentationModel
    cnn3d: Any = None                 # (ResNet18, Deep3DConfig)
    cnn2d: Any = None                 # (ResNet18, Deep2DConfig)
    grading: Any = None               # GradingModel
    grading_info: dict[str, Any] = field(default_factory=dict)
    survival: Any = None              # gliorad.survival.models.SurvivalModels

    @property
    def inputs(self) -> dict[str, Any]:
        return self.manifest["inputs"]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def sequences(self) -> list[str]:
        return list(self.inputs["sequences"])

    @property
    def working_spacing(self) -> tuple[float, float, float] | None:
        ws = self.inputs.get("working_spacing_mm")
        return None if ws is None else tuple(float(v) for v in ws)

    @property
    def radiomics(self) -> dict[str, Any]:
        return self.inputs["radiomics"]

    def feature_columns(self, model: str) -> list[str]:
        return list(self.inputs["feature_columns"].get(model, []))

    def provenance(self) -> dict[str, Any]:
        """What a prediction records about the bundle it came from."""
        m = self.manifest
        return {"path": str(self.path), "created_utc": m.get("created_utc"),
                "gliorad_version": m.get("gliorad_version"), "format_version": m.get("format_version"),
                "manifest_sha256": m.get("manifest_sha256"), "versions": m.get("versions", {}),
                "components": sorted(m.get("components", {}))}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise GlioradInputError(f"{folder}: model bundle folder not found")
    if not path.is_file():
        raise GlioradInputError(f"{folder}: not a gliorad model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlioradInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GlioradInputError(f"{path}: not a gliorad model bundle manifest (format "
                                f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise GlioradInputError(f"{path}: modified since the bundle was written (its "
                                "manifest_sha256 does not match its content); rebuild the bundle")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GlioradInputError(
            f"{path}: bundle format version {manifest.get('format_version')!r} is not supported by "
            f"this gliorad (reads version {FORMAT_VERSION}); rebuild the bundle")
    return manifest


def verify_files(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    """One message per missing, modified or unlisted file of a bundle (empty: all intact)."""
    listed: dict[str, str] = dict(manifest.get("files", {}))
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() or p.is_symlink()} - {MANIFEST}
    problems = []
    for rel in sorted(set(listed) - present):
        problems.append(f"{folder / rel}: listed in {MANIFEST} but missing; the bundle is incomplete")
    for rel in sorted(present - set(listed)):
        problems.append(f"{folder / rel}: not listed in {MANIFEST} (unlisted file); a bundle holds "
                        "only the files it lists: remove it or rebuild the bundle")
    for rel in sorted(set(listed) & present):
        p = folder / rel
        if not p.is_file():
            problems.append(f"{p}: not a regular file")
        elif file_hash(p) != listed[rel]:
            problems.append(f"{p}: modified since the bundle was written (SHA-256 differs from "
                            f"{MANIFEST}); the bundle was tampered with or damaged")
    return problems


def load_model_bundle(path: str | os.PathLike) -> ModelBundle:
    """Verify a bundle (manifest, checksums, versions; see the module docstring) and load every
    component with its own loader (skops with explicit trusted types, safetensors weights)."""
    folder = Path(path)
    manifest = _read_manifest(folder)
    problems = verify_files(folder, manifest)
    if problems:
        raise GlioradInputError(problems)
    problems = version_problems(manifest.get("versions", {}), installed_versions(),
                                f"{folder / MANIFEST}")
    if problems:
        raise GlioradInputError(problems)
    comps = manifest.get("components", {})
    bundle = ModelBundle(folder, manifest)
    if "segmentation" in comps:
        from gliorad.segmentation import load_model

        bundle.segmentation = load_model(folder / "segmentation")
    if "cnn3d" in comps:
        from gliorad.features.deep3d import load_cnn3d

        bundle.cnn3d = load_cnn3d(folder / "cnn3d")
    if "cnn2d" in comps:
        from gliorad.features.deep2d import load_cnn2d

        bundle.cnn2d = load_cnn2d(folder / "cnn2d")
    if "grading" in comps:
        from gliorad.grading.persist import load_model as load_grading
        from gliorad.grading.persist import read_model_info

        bundle.grading = load_grading(folder / "grading")
        bundle.grading_info = read_model_info(folder / "grading")
    if "survival" in comps:
        from gliorad.survival.bundle import load_bundle

        bundle.survival = load_bundle(folder / "survival")
    return bundle
