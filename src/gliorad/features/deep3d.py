"""3D CNN deep features (Xu et al. 2022, "Deep features"): a 3D ResNet18 with a squeeze-and-
excitation block after the fourth residual stage, trained on tumour-centred patches to classify
HGG vs LGG; 512 features per patient from the global average pool after the fourth stage.

Input (:func:`prepare_inputs_3d`)
    Each sequence (``sequences``, default T1, T1-Gd, T2; one channel each) is z-scored inside the
    patient's brain (voxels where any sequence is nonzero; 0 outside), then

    * ``input="patch"``: the tumour-centred patch of ``size`` voxels (:func:`gliorad.crop.
      crop_patch`, the paper's coordinate cropping, 96x128x96 at 1 mm; a tumour larger than the
      patch is resampled down, recorded), from the manual mask or a folder of automatic masks;
      ``margin`` (voxels, not in the paper, default 0) keeps that much tissue around the
      tumour's box when the tumour is resampled down, so its surroundings stay in view;
    * ``input="full"``: the complete MRI (the ablation's "complete MRI"), cut to the brain's
      bounding box and resampled to ``size`` with its aspect kept
      (:func:`gliorad.crop.complete_volume`).

Network (:func:`build_network_3d`)
    :class:`gliorad.nets.ResNet18` with ``spatial_dims=3``, the SE block on or off (``net.se``:
    the ablation's "Baseline" vs "Baseline + SE module"), and a classification head on the 512
    pooled features: ``two_fc`` (the paper's CNN-alone classifier, "two fully connected layers")
    or ``linear``; one logit of HGG.

Training (:func:`train_cnn3d`)
    Binary cross-entropy on the HGG logit, the shared loop :func:`gliorad.training.fit` (Adam, lr
    halved after ``plateau_patience`` epochs without improvement, checkpoints, resume), random
    left-right flips. Only the training patients' images and labels are used; with
    ``val_fraction > 0`` a seeded stratified part of the **training** patients monitors the loss
    (``val_loss``, ``val_auc``) and the best epoch's weights give the features.

Outputs (:func:`deep_features_3d`)
    ``cnn3d_<variant>.csv/.parquet`` (``cnn3d_000 ... cnn3d_511`` for every patient),
    ``cnn3d_<variant>_predictions.csv`` (``patient_id``, ``probability`` of HGG from the network's
    own head, ``split``: train / val / test: the CNN-alone rows of Table 2 use the test part),
    ``metrics.json`` (grade AUC with DeLong 95% CI on the held-out patients that have a grade),
    ``model/`` and ``provenance.json``; see :mod:`gliorad.features.deep`. ``<variant>`` is
    ``<patch|full>_<se|nose>``, the grading tables' naming (``deep_patch_se`` ...).
    :func:`cnn3d_out_of_fold` gives out-of-fold probabilities for every patient (k networks) for
    the CNN-alone rows under cross-validation.

Presets (:data:`PRESETS`): ``paper`` (96x128x96 patches at 1 mm, ResNet18 widths, batch 8, 200
epochs, lr 5e-4 halved after 10 epochs without validation improvement, a quarter of the training
patients for validation, i.e. the paper's 6:2 of the non-test patients; for a GPU) and ``demo``
(32x40x32 voxels, the paper's field of view at 3 mm; the true ResNet18 widths so the table has
512 columns; 12 epochs, lr 3e-4; a quarter of the training patients (or the given validation
patients) monitors the loss and the best epoch's weights give the features; random translations
by up to 3 voxels and intensity jitter in training (:class:`gliorad.features.deep.Augmented`);
about 12 s per epoch for 144 training patients on a quiet 2-core CPU). Without augmentation and
early stopping the network memorised its training patients (training AUC 0.94-0.99, held-out
0.63-0.72 on the synthetic cohort); with them, on the 240-patient demo cohort: training 0.90-0.92,
held-out 0.81-0.82 (bench/RESULTS.md, "Demo").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_serializer, model_validator

from gliorad.crop import BORDER_MODES, PAPER_PATCH_SIZE, complete_volume, crop_patch
from gliorad.errors import GlioradInputError, check_option
from gliorad.features.deep import (
    PREFIX_3D,
    WEIGHTS,
    Augmented,
    DeepResult,
    Strict,
    TrainedNetwork,
    auc_summary,
    check_batchnorm,
    check_ids,
    check_model_folder,
    extract,
    feature_table,
    file_hashes,
    file_stats,
    fingerprint,
    input_files,
    load_config,
    load_outputs,
    now_utc,
    peak_rss_mb,
    prepare_all,
    previous_run,
    read_clinical_table,
    read_sequences,
    remove_outputs,
    stratified_split,
    train_network,
    training_labels,
    versions,
    write_table,
)
from gliorad.io import read_array, write_json, write_text
from gliorad.nets.resnet import PAPER_WIDTHS, ResNet18
from gliorad.training import TrainConfig

#: Network inputs: name -> description (``full`` is the ablation's "complete MRI").
INPUTS: dict[str, str] = {
    "patch": "tumour-centred patch (coordinate cropping from the tumour mask)",
    "full": "complete MRI: the brain's bounding box resampled to the patch size",
}
#: Classification heads of the 3D network.
HEADS_3D: dict[str, str] = {
    "two_fc": "two fully connected layers (the paper's CNN-alone classifier)",
    "linear": "one fully connected layer",
}


class Net3DConfig(Strict):
    """The 3D ResNet18 (see :class:`gliorad.nets.ResNet18`)."""

    widths: tuple[int, int, int, int] = PAPER_WIDTHS
    se: bool = True
    se_reduction: int = Field(16, ge=1)
    head: str = "two_fc"
    hidden: int = Field(256, ge=1, description="width of the first layer of the two_fc head")
    dropout: float = Field(0.0, ge=0, lt=1)


class Deep3DConfig(Augmented):
    """Settings of the 3D deep-feature network (paper values are the defaults)."""

    sequences: list[str] = Field(default_factory=lambda: ["t1", "t1ce", "t2"])
    input: str = "patch"
    size: tuple[int, int, int] = PAPER_PATCH_SIZE
    border: str = "pad"
    margin: tuple[int, int, int] = Field(
        (0, 0, 0), description="voxels of context kept around the tumour's box (z, y, x; one "
        "number for all axes): a tumour whose box plus margins exceeds the patch is resampled "
        "down until both fit (0: the paper's cropping; gliorad.crop.crop_patch)")
    net: Net3DConfig = Field(default_factory=Net3DConfig)
    val_fraction: float = Field(0.25, ge=0, lt=1, description="of the training patients")
    weights: str = "best"
    predict_batch_size: int = Field(4, ge=1)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=200, batch_size=8))

    @model_serializer(mode="wrap")
    def _omit_zero_margin(self, handler: Any) -> dict[str, Any]:
        # A default margin is left out, so the settings (stage fingerprints, model folders,
        # bundles) of runs made before the option existed stay the same: no retraining.
        out = handler(self)
        if isinstance(out, dict) and not any(self.margin):
            out.pop("margin", None)
        return out

    @field_validator("margin", mode="before")
    @classmethod
    def _one_margin_for_all_axes(cls, v: Any) -> Any:
        return (v, v, v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _check(self) -> Deep3DConfig:
        check_option("input", self.input, INPUTS)
        check_option("border", self.border, BORDER_MODES)
        check_option("weights", self.weights, WEIGHTS)
        check_option("net.head", self.net.head, HEADS_3D)
        if not self.sequences or len(set(self.sequences)) != len(self.sequences):
            raise ValueError(f"sequences {self.sequences} must be non-empty and without duplicates")
        if any(s < 1 for s in self.size):
            raise ValueError(f"size {self.size} must be positive")
        if any(g < 0 for g in self.margin):
            raise ValueError(f"margin {self.margin} must be non-negative (voxels)")
        return self

    @property
    def variant(self) -> str:
        """``<patch|full>_<se|nose>``, the grading tables' naming."""
        return f"{self.input}_{'se' if self.net.se else 'nose'}"


def _paper() -> Deep3DConfig:
    return Deep3DConfig()


def _demo() -> Deep3DConfig:
    return Deep3DConfig(
        size=(32, 40, 32), val_fraction=0.25, weights="best", shift_voxels=3, intensity_prob=0.8,
        train=TrainConfig(epochs=12, batch_size=8, lr=3e-4, plateau_patience=5, monitor="val_loss"),
    )


#: Presets: ``paper`` (for a GPU, 1 mm data) and ``demo`` (2 CPU cores, 3-4 mm data).
PRESETS: dict[str, Callable[[], Deep3DConfig]] = {"paper": _paper, "demo": _demo}


def load_deep3d_config(spec: str | os.PathLike | Deep3DConfig) -> Deep3DConfig:
    """A :class:`Deep3DConfig`, a preset name (:data:`PRESETS`) or a YAML file (``preset: demo``
    plus overrides)."""
    return load_config(spec, PRESETS, Deep3DConfig, "3D deep-feature")


# ------------------------------------------------------------------------------------ inputs
def _prepare_one(files: Mapping[str, Path], settings: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
    seqs = settings["sequences"]
    vols = read_sequences({s: files[s] for s in seqs})
    if settings["input"] == "patch":
        mask, _ = read_array(files["mask"])
        shape = vols[seqs[0]].shape
        if mask.shape != shape:
            raise GlioradInputError(
                f"{files['mask']}: mask shape {mask.shape} (z, y, x) differs from "
                f"{files[seqs[0]]} {shape}; expected the mask on the images' grid"
            )
        patches, _, rec = crop_patch(vols, mask, settings["size"], border=settings["border"],
                                     pad_value=0.0, margin=settings.get("margin", 0))
        arr = np.stack([patches[s] for s in seqs])
        record = {"downscaled": rec.downscaled, "scale": list(rec.scale),
                  "bbox": [list(b) for b in rec.bbox], "start": list(rec.start)}
    else:
        comp, rec = complete_volume(vols, settings["size"], crop_to_brain=True)
        arr = np.stack([comp[s] for s in seqs])
        record = {"scale": rec["scale"], "box": rec["box"]}
    return arr.astype(np.float32), record


def prepare_inputs_3d(
    cohort: Any, ids: Sequence[str], config: Deep3DConfig, *,
    masks: str | os.PathLike | None = None, n_jobs: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, dict[str, Path]]]:
    """``(inputs, records, files)``: the ``(C, *size)`` float32 input of each patient, its crop
    record and its input files. Every patient lacking a file is reported at once."""
    cfg = config
    files = input_files(cohort, ids, cfg.sequences, masks, need_mask=cfg.input == "patch")
    settings = {"sequences": list(cfg.sequences), "input": cfg.input, "size": list(cfg.size),
                "border": cfg.border, "margin": list(cfg.margin)}
    arrays, records = prepare_all(_prepare_one, files, settings, n_jobs)
    return arrays, records, files


# ------------------------------------------------------------------------------------ network
def build_network_3d(config: Deep3DConfig) -> ResNet18:
    """The 3D ResNet18 of ``config`` (untrained; seed torch first for reproducible weights)."""
    n = config.net
    return ResNet18(spatial_dims=3, in_channels=len(config.sequences), widths=n.widths, se=n.se,
                    se_reduction=n.se_reduction, head=n.head, num_outputs=1, hidden=n.hidden,
                    dropout=n.dropout)


class _BinaryLoss(torch.nn.Module):
    """Binary cross-entropy with logits on the single HGG output ``(B, 1)``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0], target.to(logits.dtype))


def model_config_3d(cfg: Deep3DConfig, labels: Mapping[str, int],
                    val_labels: Mapping[str, int] | None, extra: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """What ``model/config.json`` records: everything the trained network depends on."""
    return {"format": "gliorad-cnn3d-1", "config": cfg.model_dump(mode="json"),
            "train_labels": {str(p): int(v) for p, v in labels.items()},
            "val_labels": {str(p): int(v) for p, v in (val_labels or {}).items()},
            **dict(extra or {})}


def train_cnn3d(
    images: Mapping[str, np.ndarray], labels: Mapping[str, int], model_dir: str | os.PathLike,
    config: Deep3DConfig, *, val_images: Mapping[str, np.ndarray] | None = None,
    val_labels: Mapping[str, int] | None = None, extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainedNetwork:
    """Train the 3D network on ``images`` / ``labels`` (1 = HGG) of the training patients.

    ``model_dir`` receives ``model.safetensors``, ``config.json``, ``history.json`` and the
    resumable ``checkpoints/``. ``val_images`` / ``val_labels`` (training-side validation
    patients) are monitored when given. ``extra`` goes into ``config.json`` (what the run depends
    on beyond the settings and labels, e.g. the input files).
    """
    from gliorad.training import seed_everything

    cfg = config
    ids = list(labels)
    missing = [p for p in ids if p not in images]
    if missing:
        raise GlioradInputError(f"training patients {missing[:10]} have no input image")
    y = np.array([int(labels[p]) for p in ids])
    if set(np.unique(y)) - {0, 1}:
        raise GlioradInputError(f"labels {sorted(set(y.tolist()))}: expected 0 (LGG) / 1 (HGG)")
    if len(np.unique(y)) < 2:
        raise GlioradInputError(
            f"the {len(ids)} training patients are all {'HGG' if y[0] else 'LGG'}; expected both "
            "grades to train the HGG-vs-LGG network"
        )
    check_batchnorm(len(ids), cfg.train.batch_size, cfg.size)
    seed_everything(cfg.train.seed)
    model = build_network_3d(cfg)
    dataset = cfg.training_dataset([images[p] for p in ids], [float(v) for v in y])
    validate = None
    if val_images and val_labels:
        vid = list(val_labels)
        vy = np.array([int(val_labels[p]) for p in vid])

        def validate(net: torch.nn.Module) -> dict[str, float]:
            _, out = extract(net, {p: val_images[p] for p in vid}, cfg.train.device,
                             cfg.predict_batch_size)
            logits = torch.from_numpy(out[:, 0])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.from_numpy(vy.astype(np.float32)))
            values = {"val_loss": float(loss)}
            if len(np.unique(vy)) == 2:
                from gliorad.stats import roc_auc

                values["val_auc"] = float(roc_auc(vy, out[:, 0]))
            return values

    config_json = model_config_3d(cfg, labels, val_labels, extra)
    return train_network(model, dataset, _BinaryLoss(), Path(model_dir), cfg.train,
                         config_json, weights=cfg.weights, validate=validate, progress=progress)


def load_cnn3d(model_dir: str | os.PathLike) -> tuple[ResNet18, Deep3DConfig]:
    """Rebuild a trained 3D network from its ``model/`` folder (``config.json`` + weights)."""
    import json

    from gliorad.features.deep import validate_config
    from gliorad.training import load_weights

    d = Path(model_dir)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise GlioradInputError(f"{cfg_path}: not found; expected a model folder of deep_features_3d")
    data = json.loads(cfg_path.read_text(encoding="utf-8"))
    if data.get("format") != "gliorad-cnn3d-1":
        raise GlioradInputError(f"{cfg_path}: not a gliorad 3D CNN model (format {data.get('format')!r})")
    cfg = validate_config(Deep3DConfig, data["config"], str(cfg_path))
    model = build_network_3d(cfg)
    load_weights(model, d / "model.safetensors")
    return model.eval(), cfg


# ------------------------------------------------------------------------------------ stage
def _names(cfg: Deep3DConfig) -> tuple[str, str]:
    stem = f"cnn3d_{cfg.variant}"
    return stem, f"{stem}_predictions.csv"


def deep_features_3d(
    cohort: Any,
    clinical: str | os.PathLike | pd.DataFrame,
    train_ids: Sequence[str],
    out_dir: str | os.PathLike,
    config: str | os.PathLike | Deep3DConfig = "demo",
    *,
    ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
    masks: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    n_jobs: int = 1,
    parquet: bool = True,
) -> DeepResult:
    """Train the 3D CNN on ``train_ids`` and write 512 deep features for every patient.

    Parameters
    ----------
    cohort : Cohort or path
        The images (:func:`gliorad.cohort.discover_cohort` for a path).
    clinical : path or DataFrame
        Clinical table (canonical, :func:`gliorad.clinical.read_clinical`); only the
        ``grade_group`` of ``train_ids`` (and ``val_ids``) is read for training. Held-out grades,
        where present, are read after extraction for ``metrics.json``.
    train_ids : the patients the network is trained on (with ``val_fraction > 0`` a stratified
        part of them monitors training instead).
    out_dir : output folder (see :mod:`gliorad.features.deep`).
    config : :class:`Deep3DConfig`, preset name (``demo``, ``paper``) or YAML file.
    ids : patients to extract features for (default: every cohort patient); train and val
        patients are always included.
    val_ids : explicit validation patients (their labels monitor training; never trained on).
    masks : folder of automatic masks (default: the cohort's manual ``seg`` files).
    overwrite : replace an earlier run in ``out_dir`` made with other settings.
    n_jobs : processes preparing the inputs.
    parquet : also write the table as Parquet.
    """
    from gliorad.cohort import Cohort, discover_cohort

    t_start = time.perf_counter()
    cfg = load_deep3d_config(config)
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    table_clin = read_clinical_table(clinical)
    train, val, feat_ids = check_ids(train_ids, val_ids, ids, cohort.ids)
    lab = training_labels(table_clin, train + val, ["grade_group"])
    no_grade = lab.index[lab["grade_group"].isna()].tolist()
    if no_grade:
        raise GlioradInputError(
            f"training patient(s) {no_grade[:10]} have no grade; expected HGG/LGG (or WHO II-IV) "
            "for every training patient"
        )
    y_all = (lab["grade_group"] == "HGG").astype(int)
    if not val and cfg.val_fraction > 0:
        train, val = stratified_split(y_all.loc[train], cfg.val_fraction, cfg.train.seed)
    stem, pred_name = _names(cfg)
    outputs = [f"{stem}.csv", pred_name, "metrics.json"] + ([f"{stem}.parquet"] if parquet else [])
    out = Path(out_dir)
    files = input_files(cohort, feat_ids, cfg.sequences, masks, need_mask=cfg.input == "patch")
    fp_data = {"stage": "features.cnn3d", "config": cfg.model_dump(mode="json"),
               "train_labels": {p: int(y_all[p]) for p in train},
               "val_labels": {p: int(y_all[p]) for p in val}, "ids": feat_ids,
               "masks": str(masks) if masks is not None else "manual", "inputs": file_stats(files)}
    fp = fingerprint(fp_data)
    old = previous_run(out, fp, outputs, overwrite)
    if old is not None:
        table, pred = load_outputs(out, f"{stem}.csv", pred_name)
        metrics = _metrics(pred, table_clin)
        return DeepResult(out, table, pred, metrics, {n: out / n for n in outputs}, train, val,
                          skipped=True, notes=list(old.get("notes", [])), provenance=old)
    stats = fp_data["inputs"]
    extra = {"masks": fp_data["masks"], "inputs": {p: stats[p] for p in train + val}}
    train_labels = {p: int(y_all[p]) for p in train}
    val_labels = {p: int(y_all[p]) for p in val}
    check_model_folder(out / "model", model_config_3d(cfg, train_labels, val_labels, extra))
    remove_outputs(out, [*outputs, "provenance.json"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        settings = {"sequences": list(cfg.sequences), "input": cfg.input, "size": list(cfg.size),
                    "border": cfg.border, "margin": list(cfg.margin)}
        inputs, records = prepare_all(_prepare_one, files, settings, n_jobs)
        t_prepare = time.perf_counter() - t0
        trained = train_cnn3d(
            {p: inputs[p] for p in train}, train_labels, out / "model", cfg,
            val_images={p: inputs[p] for p in val}, val_labels=val_labels, extra=extra,
            progress=progress,
        )
        t0 = time.perf_counter()
        feats, outs = extract(trained.model, {p: inputs[p] for p in feat_ids}, cfg.train.device,
                              cfg.predict_batch_size)
        t_extract = time.perf_counter() - t0
        table = feature_table(feats, feat_ids, PREFIX_3D)
        split = {p: "train" for p in train} | {p: "val" for p in val}
        pred = pd.DataFrame({
            "patient_id": feat_ids,
            "probability": 1.0 / (1.0 + np.exp(-outs[:, 0].astype(np.float64))),
            "logit": outs[:, 0].astype(np.float64),
            "split": [split.get(p, "test") for p in feat_ids],
        })
        written = write_table(table, out / stem, parquet)
        written[pred_name] = write_text(pred.to_csv(index=False, float_format="%.17g"), out / pred_name)
        metrics = _metrics(pred, table_clin)
        written["metrics.json"] = write_json(metrics, out / "metrics.json")
        downscaled = sorted(p for p, r in records.items() if r.get("downscaled"))
        notes = []
        if downscaled:
            notes.append(f"{len(downscaled)} tumour(s) larger than the patch were resampled down: "
                         f"{', '.join(downscaled[:10])}{' ...' if len(downscaled) > 10 else ''}")
        prov = {
            "stage": "features.cnn3d", "created_utc": now_utc(), "fingerprint": fp,
            "variant": cfg.variant, "config": cfg.model_dump(mode="json"), "seed": cfg.train.seed,
            "cohort": str(cohort.root), "masks": fp_data["masks"],
            "train_ids": train, "val_ids": val, "ids": feat_ids,
            "train_label_counts": {"HGG": int(y_all.loc[train].sum()),
                                   "LGG": int((y_all.loc[train] == 0).sum())},
            "columns": f"{PREFIX_3D}000..{table.columns[-1]}", "n_features": table.shape[1],
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
            "crop": {"downscaled": downscaled},
            "inputs": file_hashes(files), "outputs": sorted([*written, "provenance.json"]),
            "notes": notes,
        }
        write_json(prov, out / "provenance.json")
    except BaseException:
        remove_outputs(out, [*outputs, "provenance.json"])
        raise
    return DeepResult(out, table, pred, metrics, {**written, "provenance.json": out / "provenance.json"},
                      train, val, skipped=False, notes=notes, provenance=prov)


def _metrics(pred: pd.DataFrame, clinical: pd.DataFrame) -> dict[str, Any]:
    """Grade AUC (HGG positive) of the network's probability per split, for the patients with a
    grade in the clinical table; read after extraction (it never feeds back into training)."""
    out: dict[str, Any] = {"score": "probability of HGG from the network's head"}
    grades = clinical["grade_group"] if "grade_group" in clinical.columns else pd.Series(dtype=object)
    for split in ("test", "val", "train"):
        part = pred[pred["split"] == split]
        part = part[part["patient_id"].isin(grades.dropna().index)]
        if part.empty:
            continue
        y = (grades.loc[part["patient_id"]] == "HGG").astype(int).to_numpy()
        out[split] = {"n": len(part), **auc_summary(y, part["probability"].to_numpy())}
    return out


def cnn3d_out_of_fold(
    cohort: Any, clinical: str | os.PathLike | pd.DataFrame, ids: Sequence[str],
    out_dir: str | os.PathLike, config: str | os.PathLike | Deep3DConfig = "demo", *,
    folds: int = 5, seed: int = 0, masks: str | os.PathLike | None = None,
    val_ids: Sequence[str] | None = None,
    overwrite: bool = False, progress: bool = True, n_jobs: int = 1,
) -> pd.DataFrame:
    """Out-of-fold HGG probabilities of the 3D CNN for every patient of ``ids``: seeded stratified
    ``folds``-fold split; fold ``k``'s network (``out_dir/fold<k>``, a :func:`deep_features_3d`
    run) is trained on the other folds and predicts fold ``k``. Used for the CNN-alone rows of
    Table 2 under cross-validation (``ids``: every patient) and, with ``ids`` the grading training
    part, for the stacked model's honest CNN scores (``deep3d.cross_fit``: the full network's
    scores of its own training patients are in-sample). ``val_ids`` (patients not in ``ids``)
    monitor every fold network's loss instead of ``val_fraction`` of its training folds. Writes
    ``cnn3d_<variant>_oof_predictions.csv`` (``patient_id``, ``probability``, ``fold``) and
    returns it."""
    from sklearn.model_selection import StratifiedKFold

    from gliorad.cohort import Cohort, discover_cohort

    cfg = load_deep3d_config(config)
    table_clin = read_clinical_table(clinical)
    all_ids = sorted(dict.fromkeys(map(str, ids)))
    val = sorted(dict.fromkeys(map(str, val_ids or [])))
    both = sorted(set(val) & set(all_ids))
    if both:
        raise GlioradInputError(f"val_ids and ids overlap ({len(both)} patient(s): "
                                f"{', '.join(both[:5])}); the monitoring patients must be others")
    lab = training_labels(table_clin, all_ids, ["grade_group"])
    if lab["grade_group"].isna().any():
        raise GlioradInputError(f"patients {lab.index[lab['grade_group'].isna()].tolist()[:10]} "
                                "have no grade; out-of-fold probabilities need every grade")
    y = (lab["grade_group"] == "HGG").astype(int).to_numpy()
    if int(folds) < 2 or min(y.sum(), (1 - y).sum()) < int(folds):
        raise GlioradInputError(
            f"folds {folds}: expected at least 2 and at most the smaller class size "
            f"({int(min(y.sum(), (1 - y).sum()))})"
        )
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    out = Path(out_dir)
    skf = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    parts = []
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y), 1):
        test = [all_ids[i] for i in te]
        res = deep_features_3d(cohort, table_clin, [all_ids[i] for i in tr], out / f"fold{k}",
                               cfg, ids=test, val_ids=val or None, masks=masks,
                               overwrite=overwrite,
                               progress=progress, n_jobs=n_jobs)
        p = res.predictions[res.predictions["patient_id"].isin(test)]
        parts.append(p[["patient_id", "probability"]].assign(fold=k))
    pred = pd.concat(parts).sort_values("patient_id").reset_index(drop=True)
    write_text(pred.to_csv(index=False, float_format="%.17g"),
               out / f"cnn3d_{cfg.variant}_oof_predictions.csv")
    return pred
