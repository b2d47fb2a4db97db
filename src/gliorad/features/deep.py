"""Deep CNN features (Xu et al. 2022): the shared machinery of the 3D and 2D networks.

* :mod:`gliorad.features.deep3d`: 3D ResNet18 (+ SE after the fourth stage) trained on
  tumour-centred patches (or the complete MRI) to classify HGG vs LGG; 512 features per patient
  from the global average pool; the CNN's own HGG probabilities for the CNN-alone rows (Table 2).
* :mod:`gliorad.features.deep2d`: 2D ResNet18 dual-task network on the largest tumour slice (T1,
  T2, T1-Gd as channels), ImageNet-initialised when a local torchvision-format weights file is
  given, grade II vs III classification + censoring-aware survival regression; 512 features.

This module holds what both share:

* **the stage** :func:`run_network` (``deep_features_3d`` / ``deep_features_2d`` call it): skip a
  finished run with the same fingerprint, read the training labels, prepare every case's input,
  train (or resume) the network, extract the features of every case, write the table,
  predictions, metrics and provenance, with notes;
* **the per-network hooks** :class:`FeatureNetwork` (``deep3d.Cnn3D``, ``deep2d.Cnn2D``): config
  class and presets, one case's input preparation, the network, its labels, training targets and
  loss, head columns, metrics, output names, provenance entries and notes;
* **one case** :func:`deep_case`: a patient's features with the stage's preparation and
  extraction (what ``gliorad predict`` calls);
* per-patient input normalisation, reading labels of the **training patients only**, output
  tables and provenance; the training dataset, the training wrapper around
  :func:`gliorad.training.fit` and extraction in eval mode are in
  :mod:`gliorad.features.deep_train` (re-exported here where the stage uses them).

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
from pydantic import BaseModel

from gliorad.errors import GlioradInputError

# The networks' settings (light: a run config is checked without torch); old names kept here.
from gliorad.features.config import (  # noqa: F401
    WEIGHTS,
    Augmented,
    Strict,
    check_inputs,
    load_config,
    with_changes,
)
from gliorad.features.deep_train import (  # noqa: F401  (ArrayDataset: re-exported)
    ArrayDataset,
    TrainedNetwork,
    check_model_folder,
    extract,
    feature_table,
    training_layout,
)
from gliorad.io import atomic_path, file_hash, read_array, write_bytes, write_json, write_text
from gliorad.provenance import digest, finished_run
from gliorad.settings import Presets, validate

#: Column prefixes of the deep feature tables (the survival code expects ``cnn2d_``).
PREFIX_3D = "cnn3d_"
PREFIX_2D = "cnn2d_"

C = TypeVar("C", bound=BaseModel)


def validate_config(cls: type[C], data: Mapping[str, Any], where: str) -> C:
    """``cls.model_validate(data)`` with pydantic's errors as :class:`GlioradInputError` lines
    (:func:`gliorad.settings.validate`)."""
    return validate(cls, data, where)


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


def read_case(files: Mapping[str, str | os.PathLike], sequences: Sequence[str],
              with_mask: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A case's ``sequences`` (:func:`read_sequences`) and its tumour mask ``files["mask"]``,
    which must lie on their grid (None without ``with_mask``)."""
    vols = read_sequences({s: files[s] for s in sequences})
    if not with_mask:
        return vols, None
    mask, _ = read_array(files["mask"])
    shape = vols[sequences[0]].shape
    if mask.shape != shape:
        raise GlioradInputError(
            f"{files['mask']}: mask shape {mask.shape} (z, y, x) differs from "
            f"{files[sequences[0]]} {shape}; expected the mask on the images' grid"
        )
    return vols, mask


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


def input_key(fn: Callable[..., Any], files: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The name of a case's entry in an input cache (:func:`prepare_all`): the preparing
    function, its settings and the input files (path, size, modification time)."""
    import hashlib

    stats = {k: [str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns]
             for k, p in sorted(files.items())}
    payload = {"fn": f"{fn.__module__}.{fn.__qualname__}", "settings": settings, "files": stats}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prepare_all(fn: Callable[..., tuple[np.ndarray, dict[str, Any]]], files: Mapping[str, Any],
                settings: Mapping[str, Any], n_jobs: int, executor: Any = None,
                input_cache: str | os.PathLike | None = None,
                ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Run ``fn(files[pid], settings)`` for every patient (joblib processes when ``n_jobs > 1``,
    or a Dask cluster: ``executor``, :class:`gliorad.executor.Executor`).

    ``input_cache``: a folder of prepared inputs (``<key>.npy`` and ``<key>.json``,
    :func:`input_key`): a case found there is not read and cropped again (the fold networks of
    :func:`gliorad.features.deep3d.cnn3d_out_of_fold` and
    :func:`gliorad.features.deep2d.cnn2d_cross_fit` read each patient once)."""
    if input_cache is not None:
        return _prepare_cached(fn, files, settings, n_jobs, executor, Path(input_cache))
    from gliorad.executor import resolve_jobs

    ids = list(files)
    if executor is not None and executor.distributed:
        from gliorad.executor import CaseError, run_cases

        results = run_cases(fn, [files[p] for p in ids], executor=executor, names=ids,
                            shared={"settings": settings})
        lost = [str(r) for r in results if isinstance(r, CaseError)]
        if lost:
            raise GlioradInputError([(f"{len(lost)} patient(s)' network inputs could not be "
                                     "prepared on the cluster"), *lost])
        return ({p: r[0] for p, r in zip(ids, results)}, {p: r[1] for p, r in zip(ids, results)})
    jobs = min(resolve_jobs(n_jobs), max(1, len(ids)))
    if jobs == 1:
        results = [fn(files[pid], settings) for pid in ids]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, backend="loky")(delayed(fn)(files[pid], settings)
                                                        for pid in ids)
    arrays = {pid: r[0] for pid, r in zip(ids, results)}
    records = {pid: r[1] for pid, r in zip(ids, results)}
    return arrays, records


def _prepare_cached(fn: Callable[..., tuple[np.ndarray, dict[str, Any]]], files: Mapping[str, Any],
                    settings: Mapping[str, Any], n_jobs: int, executor: Any, folder: Path
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    keys = {pid: input_key(fn, f, settings) for pid, f in files.items()}
    arrays: dict[str, np.ndarray] = {}
    records: dict[str, dict[str, Any]] = {}
    for pid, key in keys.items():
        try:
            record = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
            arrays[pid] = np.load(folder / f"{key}.npy")
            records[pid] = record
        except (OSError, ValueError):  # absent or damaged: prepared (again)
            arrays.pop(pid, None)
    todo = {pid: files[pid] for pid in files if pid not in arrays}
    if todo:
        new_arrays, new_records = prepare_all(fn, todo, settings, n_jobs, executor)
        folder.mkdir(parents=True, exist_ok=True)
        for pid in todo:
            with atomic_path(folder / f"{keys[pid]}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, new_arrays[pid])
            write_json(new_records[pid], folder / f"{keys[pid]}.json")
        arrays.update(new_arrays)
        records.update(new_records)
    return {p: arrays[p] for p in files}, {p: records[p] for p in files}


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


def stratified_folds(strata: pd.Series, folds: int, seed: int, levels: Sequence[Any] = (0, 1),
                     what: str = "smaller class size") -> list[tuple[list[str], list[str]]]:
    """The cross-fitting folds of the feature networks (:func:`gliorad.features.deep3d.
    cnn3d_out_of_fold`, :func:`gliorad.features.deep2d.cnn2d_cross_fit`): a seeded stratified
    ``folds``-fold split (scikit-learn's ``StratifiedKFold``, shuffled with ``seed``) of
    ``strata``' index in its order; ``[(trained on, held out), ...]``, fold ``k`` at ``k - 1``.

    Raises :class:`GlioradInputError` when ``folds`` is below 2 or above the smallest count
    of a stratum of ``levels`` (``what`` names it in the message): every fold holds out patients
    of each stratum."""
    from sklearn.model_selection import StratifiedKFold

    ids = [str(p) for p in strata.index]
    y = strata.to_numpy()
    smallest = int(strata.value_counts().reindex(list(levels), fill_value=0).min())
    if int(folds) < 2 or smallest < int(folds):
        raise GlioradInputError(f"folds {folds}: expected at least 2 and at most the {what} "
                                f"({smallest})")
    skf = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    return [([ids[i] for i in tr], [ids[i] for i in te])
            for tr, te in skf.split(np.zeros(len(y)), y)]


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


def versions() -> dict[str, str]:
    from gliorad.provenance import versions as recorded

    return recorded("gliorad", "torch", "monai", "numpy", "pandas", "SimpleITK", "python")


def peak_rss_mb() -> float:
    from gliorad.features.radiomics import peak_rss_mb as rss

    return round(rss(), 1)


def previous_run(out: Path, fp: str, outputs: Iterable[str], overwrite: bool) -> dict | None:
    """The provenance of a finished run with fingerprint ``fp`` whose outputs all exist (skip),
    else None (the outputs are made again; the trained network in ``model/`` is reused when its
    training settings, patients, labels and files are the same, and is otherwise an error).
    ``overwrite`` removes the stage's own files first (``outputs``, ``provenance.json`` and
    ``model/``; nothing else in the folder)."""
    outputs = list(outputs)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: output path exists and is not a folder")
    if overwrite:
        remove_outputs(out, [*outputs, "provenance.json"])
        shutil.rmtree(out / "model", ignore_errors=True)
        return None
    return finished_run(out, outputs, fp)


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


# ------------------------------------------------------------------------------------ networks
@dataclass
class Labels:
    """What a network trains on, read from the training and validation patients' rows only
    (:meth:`FeatureNetwork.labels`)."""

    train: list[str]  # the patients trained on
    val: list[str]  # the patients monitoring training (never trained on)
    targets: dict[str, Any]  # the training target of every train and val patient
    fingerprint: dict[str, Any]  # what else the network depends on (labels, initial weights)
    split: dict[str, str] = field(default_factory=dict)  # splits other than train / val / test


class FeatureNetwork:
    """The hooks of one feature network: :func:`run_network` (the cohort stage) and
    :func:`deep_case` (one case) call them. A subclass sets the class attributes and fills in
    what differs: the labels it learns, its training and the columns of its outputs."""

    kind: str  # "cnn3d": the stage "features.cnn3d", the model format "gliorad-cnn3d-1"
    dims: str  # "3D": names the network in messages (and deep_features_3d)
    prefix: str  # column prefix of the feature table
    config_class: type[BaseModel]
    presets: Presets

    def load_config(self, spec: str | os.PathLike | BaseModel) -> Any:
        return load_config(spec, self.presets, self.config_class, f"{self.dims} deep-feature")

    def check(self, cfg: Any) -> None:
        """Refuse the run's own options (after the cohort is found); nothing by default."""

    def stem(self, cfg: Any) -> str:
        """``<stem>.csv`` / ``.parquet`` and ``<stem>_predictions.csv`` in the output folder."""
        raise NotImplementedError

    def needs_mask(self, cfg: Any) -> bool:
        return True

    def case_settings(self, cfg: Any) -> dict[str, Any]:
        """The settings :meth:`prepare_one` reads (plain data: it may run in another process)."""
        raise NotImplementedError

    @staticmethod
    def prepare_one(files: Mapping[str, Path], settings: Mapping[str, Any]
                    ) -> tuple[np.ndarray, dict[str, Any]]:
        """One case's network input ``(C, *size)`` and its record, from its files."""
        raise NotImplementedError

    def build(self, cfg: Any) -> torch.nn.Module:
        """The untrained network of ``cfg``."""
        raise NotImplementedError

    def labels(self, cfg: Any, clinical: pd.DataFrame, train: list[str], val: list[str]) -> Labels:
        """Read the labels of ``train`` and ``val`` (:func:`training_labels`) and split off the
        validation patients when none are given."""
        raise NotImplementedError

    def training_targets(self, cfg: Any, labels: Labels
                         ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """``(train targets, val targets, notes)`` the network is trained with."""
        return ({p: labels.targets[p] for p in labels.train},
                {p: labels.targets[p] for p in labels.val}, [])

    def model_config(self, cfg: Any, train_t: Mapping[str, Any], val_t: Mapping[str, Any],
                     extra: Mapping[str, Any]) -> dict[str, Any]:
        """What ``model/config.json`` records (:func:`check_model_folder` compares it)."""
        raise NotImplementedError

    def train(self, cfg: Any, images: Mapping[str, np.ndarray], train_t: Mapping[str, Any],
              model_dir: Path, val_images: Mapping[str, np.ndarray], val_t: Mapping[str, Any],
              extra: Mapping[str, Any], progress: bool) -> tuple[TrainedNetwork, dict[str, Any]]:
        """The trained network and how it was initialised (``{}`` when there is nothing to say)."""
        raise NotImplementedError

    def head_columns(self, cfg: Any, outs: np.ndarray) -> dict[str, np.ndarray]:
        """The predictions table's columns from the head outputs ``(N, k)``."""
        raise NotImplementedError

    def metrics(self, cfg: Any, pred: pd.DataFrame, clinical: pd.DataFrame) -> dict[str, Any]:
        """Held-out metrics of the predictions; read after extraction (never fed back)."""
        raise NotImplementedError

    def summary(self, cfg: Any, labels: Labels, records: Mapping[str, dict], init: Mapping[str, Any],
                notes: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The network's own provenance entries and the run's notes (``notes``: those of
        :meth:`training_targets`)."""
        return {}, list(notes)

    def load(self, model_dir: str | os.PathLike) -> tuple[torch.nn.Module, Any]:
        """Rebuild a trained network from its ``model/`` folder (``config.json`` + weights), in
        eval mode and in the memory layout of training (:func:`training_layout`), as the stage
        extracted with it."""
        from gliorad.training import load_weights

        d = Path(model_dir)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise GlioradInputError(f"{cfg_path}: not found; expected a model folder of "
                                    f"deep_features_{self.dims.lower()}")
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
        if data.get("format") != f"gliorad-{self.kind}-1":
            raise GlioradInputError(f"{cfg_path}: not a gliorad {self.dims} CNN model (format "
                                    f"{data.get('format')!r})")
        cfg = validate_config(self.config_class, data["config"], str(cfg_path))
        model = self.build(cfg)
        load_weights(model, d / "model.safetensors")
        return training_layout(model, cfg.train).eval(), cfg


# ------------------------------------------------------------------------------------ one case
def deep_case(network: FeatureNetwork, model: torch.nn.Module, cfg: Any,
              files: Mapping[str, str | os.PathLike], mask: str | os.PathLike | None = None
              ) -> tuple[dict[str, float], np.ndarray, dict[str, Any]]:
    """Deep features of one case: ``(column -> value, head outputs (k,), input record)``.

    ``model`` and ``cfg`` are the trained network and its settings (:meth:`FeatureNetwork.load`);
    ``files`` maps each of ``cfg.sequences`` to its image; ``mask`` is the tumour mask on their
    grid (needed unless the network reads the complete MRI). The same preparation
    (:meth:`FeatureNetwork.prepare_one`) and extraction (:func:`extract`, eval mode) as the
    cohort stage :func:`run_network`, which extracts in batches of ``predict_batch_size``: a
    case's values are the stage's to the last bit with ``predict_batch_size=1``, and up to
    floating-point rounding between batch compositions otherwise."""
    absent = [s for s in cfg.sequences if s not in files]
    if absent:
        raise GlioradInputError(f"no {', '.join(absent)} image; the {network.dims} network reads "
                                f"{', '.join(cfg.sequences)}")
    case = {s: Path(files[s]) for s in cfg.sequences}
    if network.needs_mask(cfg):
        if mask is None:
            raise GlioradInputError(f"no tumour mask; the {network.dims} network reads the tumour")
        case["mask"] = Path(mask)
    arr, record = network.prepare_one(case, network.case_settings(cfg))
    feats, outs = extract(model, {"case": arr}, cfg.train.device, batch_size=1)
    row = feature_table(feats, ["case"], network.prefix).iloc[0]
    return {c: float(v) for c, v in row.items()}, outs[0], record


# ------------------------------------------------------------------------------------ the stage
def run_network(
    network: FeatureNetwork, cohort: Any, clinical: str | os.PathLike | pd.DataFrame,
    train_ids: Sequence[str], out_dir: str | os.PathLike, config: Any, *,
    ids: Sequence[str] | None = None, val_ids: Sequence[str] | None = None,
    masks: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
    n_jobs: int = 1, parquet: bool = True, executor: Any = None,
    input_cache: str | os.PathLike | None = None,
) -> DeepResult:
    """The deep-feature stage of ``network``: train it on ``train_ids`` and write its features
    for every patient of ``ids`` (default: the cohort), its predictions, metrics and provenance
    (the module docstring); skipped when a finished run in ``out_dir`` has the same
    fingerprint. Arguments as :func:`gliorad.features.deep3d.deep_features_3d`; ``input_cache``:
    a folder of prepared inputs shared with other runs (:func:`prepare_all`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the stage refuses to run: its networks train in well
    under a second per epoch on a GPU (they read pre-cropped inputs held in memory) and every
    process would write the same files."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise GlioradInputError(
            f"the {network.dims} deep-feature stage runs as one process, not under torchrun "
            "(WORLD_SIZE > 1): its network is not starved on one GPU; run it without torchrun")
    from gliorad.cohort import Cohort, discover_cohort

    t_start = time.perf_counter()
    cfg = network.load_config(config)
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    network.check(cfg)
    table_clin = read_clinical_table(clinical)
    train, val, feat_ids = check_ids(train_ids, val_ids, ids, cohort.ids)
    labels = network.labels(cfg, table_clin, train, val)
    train, val = labels.train, labels.val
    stem = network.stem(cfg)
    pred_name = f"{stem}_predictions.csv"
    outputs = [f"{stem}.csv", pred_name, "metrics.json"] + ([f"{stem}.parquet"] if parquet else [])
    out = Path(out_dir)
    files = input_files(cohort, feat_ids, cfg.sequences, masks, need_mask=network.needs_mask(cfg))
    fp_data = {"stage": f"features.{network.kind}", "config": cfg.model_dump(mode="json"),
               **labels.fingerprint, "ids": feat_ids,
               "masks": str(masks) if masks is not None else "manual", "inputs": file_stats(files)}
    fp = digest(fp_data)
    old = previous_run(out, fp, outputs, overwrite)
    if old is not None:
        table, pred = load_outputs(out, f"{stem}.csv", pred_name)
        metrics = network.metrics(cfg, pred, table_clin)
        return DeepResult(out, table, pred, metrics, {n: out / n for n in outputs}, train, val,
                          skipped=True, notes=list(old.get("notes", [])), provenance=old)
    stats = fp_data["inputs"]
    extra = {"masks": fp_data["masks"], "inputs": {p: stats[p] for p in train + val}}
    train_t, val_t, target_notes = network.training_targets(cfg, labels)
    check_model_folder(out / "model", network.model_config(cfg, train_t, val_t, extra))
    remove_outputs(out, [*outputs, "provenance.json"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        inputs, records = prepare_all(network.prepare_one, files, network.case_settings(cfg), n_jobs,
                                      executor, input_cache)
        t_prepare = time.perf_counter() - t0
        trained, init = network.train(cfg, {p: inputs[p] for p in train}, train_t, out / "model",
                                      {p: inputs[p] for p in val}, val_t, extra, progress)
        t0 = time.perf_counter()
        feats, outs = extract(trained.model, {p: inputs[p] for p in feat_ids}, cfg.train.device,
                              cfg.predict_batch_size)
        t_extract = time.perf_counter() - t0
        table = feature_table(feats, feat_ids, network.prefix)
        split = {p: "train" for p in train} | {p: "val" for p in val} | labels.split
        pred = pd.DataFrame({"patient_id": feat_ids, **network.head_columns(cfg, outs),
                             "split": [split.get(p, "test") for p in feat_ids]})
        written = write_table(table, out / stem, parquet)
        written[pred_name] = write_text(pred.to_csv(index=False, float_format="%.17g"), out / pred_name)
        metrics = network.metrics(cfg, pred, table_clin)
        written["metrics.json"] = write_json(metrics, out / "metrics.json")
        own, notes = network.summary(cfg, labels, records, init, target_notes)
        prov = {
            "stage": f"features.{network.kind}", "created_utc": now_utc(), "fingerprint": fp,
            "config": cfg.model_dump(mode="json"), "seed": cfg.train.seed,
            "cohort": str(cohort.root), "masks": fp_data["masks"],
            "train_ids": train, "val_ids": val, "ids": feat_ids, **own,
            "columns": f"{network.prefix}000..{table.columns[-1]}", "n_features": table.shape[1],
            "training": {"epochs_run": trained.result.epochs_run,
                         "best_epoch": trained.result.best_epoch,
                         "best_value": trained.result.best_value,
                         "monitor": cfg.train.monitor if val else "train_loss",
                         "weights": cfg.weights, "seconds_this_call": trained.seconds,
                         "resumed_from_epoch": trained.result.resumed_from},
            "weights_file": str(trained.weights),
            "seconds": {"prepare": t_prepare, "train": trained.seconds, "extract": t_extract,
                        "total": time.perf_counter() - t_start,
                        "extract_per_patient": t_extract / max(1, len(feat_ids))},
            "peak_rss_mb": peak_rss_mb(), "versions": versions(),
            "inputs": file_hashes(files), "outputs": sorted([*written, "provenance.json"]),
            "notes": notes,
        }
        write_json(prov, out / "provenance.json")
    except BaseException:
        remove_outputs(out, [*outputs, "provenance.json"])
        raise
    return DeepResult(out, table, pred, metrics, {**written, "provenance.json": out / "provenance.json"},
                      train, val, skipped=False, notes=notes, provenance=prov)
