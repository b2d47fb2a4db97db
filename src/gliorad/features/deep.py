"""Deep CNN features (Xu et al. 2022): the shared machinery of the 3D and 2D networks.

* :mod:`gliorad.features.deep3d`: 3D ResNet18 (+ SE after the fourth stage) trained on
  tumour-centred patches (or the complete MRI) to classify HGG vs LGG; 512 features per patient
  from the global average pool; the CNN's own HGG probabilities for the CNN-alone rows (Table 2).
* :mod:`gliorad.features.deep2d`: 2D ResNet18 dual-task network on the largest tumour slice (T1,
  T2, T1-Gd as channels), ImageNet-initialised when a local torchvision-format weights file is
  given, grade II vs III classification + censoring-aware survival regression; 512 features.

This module holds what both share: per-patient input normalisation, reading labels of the
**training patients only**, the training wrapper around :func:`gliorad.training.fit`, feature
extraction in eval mode, output tables and provenance.

**No label leakage.** Every training function takes explicit training ids; labels are read from
the clinical table restricted to those ids (:func:`training_labels`) before anything else, so no
label of a validation / test patient reaches the network. Inputs are normalised per patient (z-score
inside that patient's brain), so no statistic crosses patients. Features of every patient come from
the trained network in eval mode (batch norm uses its running statistics, dropout is off), so a
patient's features depend only on the network and its own images (up to floating-point rounding
between batch compositions; ``predict_batch_size=1`` removes even that).

**Outputs** (``out_dir``, every file written atomically; ``provenance.json`` last, and it marks a
complete run): ``<prefix>_<variant>.csv`` and ``.parquet`` (index ``patient_id``, columns
``cnn3d_000 ... cnn3d_511`` or ``cnn2d_000 ...``), a predictions CSV (the network's own outputs
per patient with the split it belonged to), ``metrics.json`` (held-out metrics, computed after
extraction), ``model/`` (``model.safetensors``, ``config.json``, ``history.json`` and the
resumable ``checkpoints/`` of the training loop) and ``provenance.json`` (settings, seed, ids,
training label counts, input file hashes, versions, timings, peak memory). A run whose settings,
training ids, training labels and input files (size and modification time) are unchanged is
skipped; an interrupted one resumes training from its last checkpoint; other settings in a used
folder need ``overwrite``.
"""

from __future__ import annotations

import io as _io
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gliorad.errors import GlioradInputError
from gliorad.io import file_hash, read_array, write_bytes, write_json, write_text

#: Column prefixes of the deep feature tables (the survival code expects ``cnn2d_``).
PREFIX_3D = "cnn3d_"
PREFIX_2D = "cnn2d_"

#: Which weights of a training run give the features: the best validation epoch or the last.
WEIGHTS = {"best": "weights of the best monitored epoch (the last when there is no validation)",
           "last": "weights after the last epoch"}

C = TypeVar("C", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------ configs
def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = (_deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict)
                  else v)
    return out


def validate_config(cls: type[C], data: Mapping[str, Any], where: str) -> C:
    """``cls.model_validate(data)`` with pydantic's errors as :class:`GlioradInputError` lines."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["loc"]:  # a field: name it and show the value
                lines.append(f"{where}: {'.'.join(map(str, e['loc']))}: {msg} "
                             f"(got {e.get('input')!r})"[:500])
            else:  # a check across fields: its message names the setting
                lines.append(f"{where}: {msg}")
        raise GlioradInputError(lines) from err


def load_config(spec: str | os.PathLike | BaseModel, presets: Mapping[str, Callable[[], C]],
                cls: type[C], what: str) -> C:
    """A config object, a preset name, or a YAML file of fields (``preset: demo`` in the file
    starts from that preset and overrides the fields it gives)."""
    from gliorad.errors import check_option
    from gliorad.io import read_yaml_mapping

    if isinstance(spec, cls):
        return spec
    if isinstance(spec, str) and spec in presets:
        return presets[spec]()
    path = Path(str(spec))
    if not path.is_file():
        raise GlioradInputError(
            f"{what} config {str(spec)!r} is neither a preset ({', '.join(presets)}) nor a file"
        )
    data = read_yaml_mapping(path)
    base = {}
    if "preset" in data:
        name = str(data.pop("preset"))
        check_option(f"{path}: preset", name, presets)
        base = presets[name]().model_dump()
    return validate_config(cls, _deep_merge(base, data), str(path))


def with_changes(cfg: C, changes: Mapping[str, Any], where: str = "overrides") -> C:
    """``cfg`` with nested changes (``{"train": {"epochs": 3}}``) applied and validated."""
    return validate_config(type(cfg), _deep_merge(cfg.model_dump(), changes), where)


# ------------------------------------------------------------------------------------ inputs
def zscore_in_brain(arr: np.ndarray, names: Sequence[str] = ()) -> np.ndarray:
    """Z-score each channel of ``(C, *spatial)`` over the brain (voxels where any channel is
    nonzero); 0 outside the brain. A channel constant inside the brain is an error."""
    a = np.asarray(arr, dtype=np.float32)
    brain = np.any(a != 0, axis=0)
    if not brain.any():
        raise GlioradInputError(f"{', '.join(names) or 'image'}: every voxel is 0; expected MRI images")
    out = np.zeros_like(a)
    for c in range(a.shape[0]):
        vals = a[c][brain].astype(np.float64)
        sd = float(vals.std())
        if not sd > 0:
            name = names[c] if c < len(names) else f"channel {c}"
            raise GlioradInputError(f"{name}: constant inside the brain; expected an MRI image")
        out[c] = np.where(brain, (a[c] - float(vals.mean())) / sd, 0.0).astype(np.float32)
    return out


def read_sequences(paths: Mapping[str, str | os.PathLike]) -> dict[str, np.ndarray]:
    """Read each sequence as float32 ``(z, y, x)``, z-scored inside the brain (all on one grid)."""
    arrays = {}
    first = None
    for seq, p in paths.items():
        arr, _ = read_array(p, np.float32)
        if first is not None and arr.shape != arrays[first].shape:
            raise GlioradInputError(
                f"{p}: shape {arr.shape} (z, y, x) differs from {paths[first]} "
                f"{arrays[first].shape}; expected co-registered sequences on one grid"
            )
        first = first or seq
        arrays[seq] = arr
    stacked = zscore_in_brain(np.stack(list(arrays.values())), [str(p) for p in paths.values()])
    return dict(zip(arrays, stacked))


def mask_files(cohort: Any, ids: Sequence[str], masks: str | os.PathLike | None
               ) -> tuple[dict[str, Path], dict[str, str]]:
    """Tumour mask per patient: the cohort's manual ``seg`` (``masks=None``) or a folder of
    automatic masks; returns ``(found, problems)``."""
    if masks is None:
        found = {pid: cohort.patients[pid].seg for pid in ids if cohort.patients[pid].seg is not None}
        problems = {pid: f"no manual mask (seg file) in {cohort.root}" for pid in ids if pid not in found}
        return found, problems
    from gliorad.features.radiomics import find_auto_masks

    return find_auto_masks(masks, ids)


def input_files(cohort: Any, ids: Sequence[str], sequences: Sequence[str],
                masks: str | os.PathLike | None, need_mask: bool) -> dict[str, dict[str, Path]]:
    """``{pid: {sequence: path, ..., "mask": path}}``; every problem raised at once."""
    unknown = [pid for pid in ids if pid not in cohort.patients]
    if unknown:
        raise GlioradInputError(
            f"patient id(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not in the "
            f"cohort {cohort.root}"
        )
    problems = []
    out: dict[str, dict[str, Path]] = {}
    found, mask_problems = mask_files(cohort, ids, masks) if need_mask else ({}, {})
    for pid in ids:
        files = cohort.patients[pid].files
        absent = [s for s in sequences if s not in files]
        if absent:
            problems.append(f"patient {pid}: no {', '.join(absent)} image in {cohort.root}")
            continue
        if need_mask and pid not in found:
            problems.append(f"patient {pid}: {mask_problems.get(pid, 'no mask')}")
            continue
        out[pid] = {s: Path(files[s]) for s in sequences}
        if need_mask:
            out[pid]["mask"] = Path(found[pid])
    if problems:
        head = (f"{len(problems)} patient(s) lack an input of the deep-feature network (pass "
                "ids= / --ids to leave them out)")
        raise GlioradInputError([head, *problems])
    return out


def prepare_all(fn: Callable[..., tuple[np.ndarray, dict[str, Any]]], files: Mapping[str, Any],
                settings: Mapping[str, Any], n_jobs: int
                ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Run ``fn(files[pid], settings)`` for every patient (joblib processes when ``n_jobs > 1``)."""
    from gliorad.features.radiomics import _resolve_jobs

    ids = list(files)
    jobs = min(_resolve_jobs(n_jobs), max(1, len(ids)))
    if jobs == 1:
        results = [fn(files[pid], settings) for pid in ids]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, backend="loky")(delayed(fn)(files[pid], settings)
                                                        for pid in ids)
    arrays = {pid: r[0] for pid, r in zip(ids, results)}
    records = {pid: r[1] for pid, r in zip(ids, results)}
    return arrays, records


# ------------------------------------------------------------------------------------ labels
def read_clinical_table(clinical: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """The canonical clinical table (:func:`gliorad.clinical.read_clinical`) or a copy of one."""
    if isinstance(clinical, pd.DataFrame):
        table = clinical.copy()
    else:
        from gliorad.clinical import read_clinical

        table = read_clinical(clinical)
    table.index = table.index.map(str)
    return table


def training_labels(clinical: pd.DataFrame, train_ids: Sequence[str], columns: Sequence[str],
                    source: str = "clinical table") -> pd.DataFrame:
    """The label columns of the **training patients only** (the one place labels are read).

    Patients absent from the table are an error; missing values stay missing (the caller decides).
    """
    ids = [str(p) for p in train_ids]
    absent = [p for p in ids if p not in clinical.index]
    if absent:
        raise GlioradInputError(
            f"{source}: training patient(s) {absent[:10]}{' ...' if len(absent) > 10 else ''} "
            "have no row; expected a clinical row (with the labels) for every training patient"
        )
    missing_cols = [c for c in columns if c not in clinical.columns]
    if missing_cols:
        raise GlioradInputError(f"{source}: no column(s) {missing_cols}; expected a canonical "
                                "clinical table (gliorad.clinical.read_clinical)")
    return clinical.loc[ids, list(columns)].copy()


def check_ids(train_ids: Sequence[str], val_ids: Sequence[str] | None,
              ids: Sequence[str] | None, all_ids: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Normalised (train, val, feature) ids: text, sorted, no overlap of train and val; the
    feature ids default to every cohort patient and always include train and val."""
    train = sorted(dict.fromkeys(str(p) for p in train_ids))
    if not train:
        raise GlioradInputError("train_ids is empty; expected the training patients' ids")
    val = sorted(dict.fromkeys(str(p) for p in (val_ids or ())))
    both = sorted(set(train) & set(val))
    if both:
        raise GlioradInputError(f"patients {both[:10]} are in both train_ids and val_ids")
    feats = sorted(dict.fromkeys(str(p) for p in (ids if ids is not None else all_ids)))
    feats = sorted(set(feats) | set(train) | set(val))
    return train, val, feats


def stratified_split(labels: pd.Series, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded stratified split of ``labels``' index into ``(rest, held_out)``; ``fraction`` of
    each class (rounded, at least one when the class has two or more) goes to ``held_out``."""
    if not 0 < fraction < 1:
        raise GlioradInputError(f"fraction {fraction!r}: expected a value between 0 and 1")
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for _, group in sorted(labels.groupby(labels, sort=True), key=lambda g: str(g[0])):
        ids = sorted(map(str, group.index))
        n = len(ids)
        k = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held += [ids[i] for i in rng.permutation(n)[:k]]
    held = sorted(held)
    return sorted(set(map(str, labels.index)) - set(held)), held


# ------------------------------------------------------------------------------------ dataset
class ArrayDataset(torch.utils.data.Dataset):
    """``{"image": float tensor (C, *spatial), "label": target}`` per training patient.

    Augmentations (MONAI transforms), drawn from torch's global generator, which the training
    loop reseeds every epoch (so a run is reproducible and a resumed run equals an uninterrupted
    one): a flip along the last axis (left-right for (z, y, x) volumes and (y, x) slices) with
    probability ``flip_prob``; a random translation by up to ``shift_voxels`` voxels along every
    spatial axis (zero fill: the input is 0 outside the brain); per-channel intensity
    ``x * (1 + U(-intensity_scale, intensity_scale)) + U(-intensity_shift, intensity_shift)``
    (z-score units) with probability ``intensity_prob``."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[Any], flip_prob: float = 0.0,
                 shift_voxels: int = 0, intensity_prob: float = 0.0, intensity_scale: float = 0.0,
                 intensity_shift: float = 0.0):
        if len(images) != len(targets):
            raise GlioradInputError(f"{len(images)} images but {len(targets)} targets")
        self.images = list(images)
        self.targets = list(targets)
        self.flip_prob = float(flip_prob)
        self.transform = None
        steps = []
        if self.images and shift_voxels > 0:
            from monai.transforms import RandSpatialCrop, SpatialPad

            size = self.images[0].shape[1:]
            steps += [SpatialPad([n + 2 * shift_voxels for n in size]),
                      RandSpatialCrop(size, random_center=True, random_size=False)]
        if intensity_prob > 0 and (intensity_scale > 0 or intensity_shift > 0):
            from monai.transforms import RandScaleIntensity, RandShiftIntensity

            steps += [RandScaleIntensity(intensity_scale, prob=intensity_prob, channel_wise=True),
                      RandShiftIntensity(intensity_shift, prob=intensity_prob, channel_wise=True)]
        if steps:
            from monai.transforms import Compose

            self.transform = Compose(steps)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i], dtype=np.float32))
        if self.flip_prob > 0 and float(torch.rand(())) < self.flip_prob:
            x = torch.flip(x, dims=(-1,))
        if self.transform is not None:
            self.transform.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ())))
            out = self.transform(x)
            x = (out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)).contiguous()
        t = self.targets[i]
        label = ({k: torch.tensor(v, dtype=torch.float32) for k, v in t.items()}
                 if isinstance(t, Mapping) else torch.tensor(t, dtype=torch.float32))
        return {"image": x, "label": label}


class Augmented(Strict):
    """Training augmentations shared by the 3D and 2D deep-feature networks (see
    :class:`ArrayDataset`); the defaults change nothing but left-right flips."""

    flip_prob: float = Field(0.5, ge=0, le=1, description="random left-right flips in training")
    shift_voxels: int = Field(0, ge=0, description="random translation (voxels) in training")
    intensity_prob: float = Field(0.0, ge=0, le=1, description="probability of intensity jitter")
    intensity_scale: float = Field(0.1, ge=0, description="per channel x (1 + U(-s, s))")
    intensity_shift: float = Field(0.1, ge=0, description="per channel + U(-s, s), z-score units")

    def training_dataset(self, images: Sequence[np.ndarray], targets: Sequence[Any]) -> ArrayDataset:
        return ArrayDataset(images, targets, self.flip_prob, shift_voxels=self.shift_voxels,
                            intensity_prob=self.intensity_prob,
                            intensity_scale=self.intensity_scale,
                            intensity_shift=self.intensity_shift)


def check_batchnorm(n_train: int, batch_size: int, size: Sequence[int]) -> None:
    """Refuse a training set whose last batch would hold one sample when the fourth stage's map
    is one voxel (batch norm in training mode needs more than one value per channel)."""
    from gliorad.nets.resnet import stage4_size

    if int(np.prod(stage4_size(size))) == 1 and (n_train % batch_size == 1 or n_train == 1):
        raise GlioradInputError(
            f"{n_train} training patients in batches of {batch_size} leave a batch of one sample, "
            f"and the input size {tuple(size)} gives a 1-voxel map after the fourth stage: batch "
            "norm cannot train on that; change the batch size by one or use a larger input size "
            "(more than 32 voxels along some axis)"
        )


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainedNetwork:
    """A trained network, its model folder and the training loop's outcome."""

    model: torch.nn.Module
    model_dir: Path
    weights: Path
    result: Any
    seconds: float


def _comparable(cfg_json: Mapping[str, Any]) -> Any:
    from gliorad.training import RESUMABLE_CHANGES

    data = json.loads(json.dumps(cfg_json))
    for k in RESUMABLE_CHANGES:
        data.get("config", {}).get("train", {}).pop(k, None)
    return data


def check_model_folder(model_dir: Path, config_json: Mapping[str, Any]) -> None:
    """Refuse a model folder holding a network trained with other settings, patients, labels or
    input files (settings the training loop may resume with, such as ``epochs``, may differ)."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return
    try:
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        old = None
    if old is None or _comparable(old) != _comparable(config_json):
        raise GlioradInputError(
            f"{model_dir}: holds a network trained with other settings, patients or labels; pass "
            "overwrite (--overwrite) to replace it or choose another folder"
        )


def train_network(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, loss_fn: Callable, model_dir: Path,
    train_cfg: Any, config_json: Mapping[str, Any], *, weights: str = "best",
    validate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    progress: bool = True,
) -> TrainedNetwork:
    """Train with :func:`gliorad.training.fit` into ``model_dir/checkpoints`` (resumable), then
    copy the chosen weights to ``model_dir/model.safetensors`` and load them into ``model``.

    ``config_json`` (settings, ids, training labels) is kept in ``model_dir/config.json``; a
    folder holding another run is an error (the caller removes it for ``overwrite``).
    """
    from gliorad.training import fit, load_weights

    out = Path(model_dir)
    check_model_folder(out, config_json)
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_json, out / "config.json")
    if validate is None and train_cfg.monitor != "train_loss":
        train_cfg = train_cfg.model_copy(update={"monitor": "train_loss", "mode": "min"})
    t0 = time.perf_counter()
    result = fit(model, dataset, loss_fn, out / "checkpoints", train_cfg, validate=validate,
                 progress=progress)
    seconds = time.perf_counter() - t0
    ckpt = out / "checkpoints"
    chosen = ckpt / "best.safetensors" if weights == "best" else ckpt / "last.safetensors"
    if not chosen.is_file():
        chosen = ckpt / "last.safetensors"
    load_weights(model, chosen)
    final = write_bytes(chosen.read_bytes(), out / "model.safetensors")
    write_json(result.history, out / "history.json")
    return TrainedNetwork(model, out, final, result, seconds)


@torch.no_grad()
def extract(model: torch.nn.Module, images: Mapping[str, np.ndarray], device: str = "auto",
            batch_size: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features ``(N, widths[-1])`` and head outputs ``(N, k)`` (None without a head) of
    every patient, in ``images`` order, with the network in eval mode (float32, ``batch_size``
    patients per forward pass). In eval mode a patient's output does not depend on the others in
    its batch, up to floating-point rounding (convolution kernels can differ with the batch size
    in the last bits); ``batch_size=1`` makes each patient's values exactly reproducible alone."""
    from gliorad.training import resolve_device

    dev = resolve_device(device)
    model = model.to(dev).eval()
    feats, outs = [], []
    ids = list(images)
    for i in range(0, len(ids), batch_size):
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(images[p], dtype=np.float32))
                         for p in ids[i:i + batch_size]]).to(dev)
        f = model.features(x)
        feats.append(f.float().cpu().numpy())
        if model.head_type != "none":
            outs.append(model.head_outputs(f).float().cpu().numpy())
    if not ids:
        return np.zeros((0, model.n_features), np.float32), None
    return np.concatenate(feats), (np.concatenate(outs) if outs else None)


def feature_table(values: np.ndarray, ids: Sequence[str], prefix: str) -> pd.DataFrame:
    """Patients x features, index ``patient_id``, columns ``<prefix>000`` ... (three digits or
    more)."""
    width = max(3, len(str(values.shape[1] - 1)))
    df = pd.DataFrame(values.astype(np.float64), index=pd.Index(list(ids), name="patient_id"),
                      columns=[f"{prefix}{j:0{width}d}" for j in range(values.shape[1])])
    bad = df.index[~np.isfinite(df.to_numpy()).all(axis=1)].tolist()
    if bad:
        raise RuntimeError(f"non-finite deep features for patients {bad[:5]} (diverged network?)")
    return df


# ------------------------------------------------------------------------------------ outputs
@dataclass
class DeepResult:
    """Outcome of a deep-feature stage."""

    out_dir: Path
    table: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    files: dict[str, Path]
    train_ids: list[str]
    val_ids: list[str]
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def parquet_engine() -> str | None:
    import importlib.util

    for name in ("pyarrow", "fastparquet"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def write_table(df: pd.DataFrame, stem: Path, parquet: bool = True) -> dict[str, Path]:
    """``<stem>.csv`` (full float precision) and, when an engine is installed, ``<stem>.parquet``."""
    # repr(float): shortest text that reads back to the same double, and "0.0" (not "0") so an
    # all-zero column (a dead ReLU channel) stays a float column when read back
    text = df.to_csv(float_format=lambda v: repr(float(v)))
    files = {f"{stem.name}.csv": write_text(text, stem.with_suffix(".csv"))}
    engine = parquet_engine() if parquet else None
    if engine is not None:
        buf = _io.BytesIO()
        df.to_parquet(buf, engine=engine)
        files[f"{stem.name}.parquet"] = write_bytes(buf.getvalue(), stem.with_suffix(".parquet"))
    return files


def file_stats(files: Mapping[str, Mapping[str, Path]]) -> dict[str, dict[str, list[int]]]:
    """(size, modification time) of every input file: the cheap part of the fingerprint."""
    out = {}
    for pid, fs in files.items():
        out[pid] = {}
        for k, p in fs.items():
            st = Path(p).stat()
            out[pid][k] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def file_hashes(files: Mapping[str, Mapping[str, Path]]) -> dict[str, dict[str, dict[str, str]]]:
    return {pid: {k: {"path": str(p), "sha256": file_hash(p)} for k, p in fs.items()}
            for pid, fs in files.items()}


def fingerprint(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str]:
    import monai
    import SimpleITK as sitk

    from gliorad import __version__

    return {"gliorad": __version__, "torch": torch.__version__, "monai": monai.__version__,
            "numpy": np.__version__, "pandas": pd.__version__,
            "SimpleITK": sitk.Version.VersionString(), "python": platform.python_version()}


def peak_rss_mb() -> float:
    from gliorad.features.radiomics import _peak_rss_mb

    return round(_peak_rss_mb(), 1)


def previous_run(out: Path, fp: str, outputs: Iterable[str], overwrite: bool) -> dict | None:
    """The provenance of a finished run with fingerprint ``fp`` whose outputs all exist (skip),
    else None (the outputs are made again; the trained network in ``model/`` is reused when its
    training settings, patients, labels and files are the same, and is otherwise an error).
    ``overwrite`` removes the stage's own files first (``outputs``, ``provenance.json`` and
    ``model/``; nothing else in the folder)."""
    outputs = list(outputs)
    prov_path = out / "provenance.json"
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: output path exists and is not a folder")
    if overwrite:
        remove_outputs(out, [*outputs, "provenance.json"])
        shutil.rmtree(out / "model", ignore_errors=True)
        return None
    if not prov_path.is_file():
        return None
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        prov = {}
    if prov.get("fingerprint") == fp and all((out / name).is_file() for name in outputs):
        return prov
    return None


def remove_outputs(out: Path, names: Iterable[str]) -> None:
    for name in names:
        (out / name).unlink(missing_ok=True)


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_outputs(out: Path, table_name: str, pred_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from gliorad.features.radiomics import read_feature_table

    table = read_feature_table(out / table_name)
    pred = pd.read_csv(out / pred_name, dtype={"patient_id": str})
    return table, pred


def auc_summary(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC AUC with DeLong 95% CI (:func:`gliorad.stats.roc_auc_ci`), or why it is undefined."""
    from gliorad.stats import roc_auc_ci

    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if min(n_pos, n_neg) < 2:
        return {"auc": None, "n_pos": n_pos, "n_neg": n_neg,
                "note": "AUC needs at least 2 patients of each class"}
    r = roc_auc_ci(y, score)
    return {"auc": r.auc, "auc_ci_low": r.ci_low, "auc_ci_high": r.ci_high, "auc_se": r.se,
            "n_pos": r.n_pos, "n_neg": r.n_neg}
