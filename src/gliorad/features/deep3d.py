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
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gliorad.crop import complete_volume, crop_patch
from gliorad.errors import GlioradInputError
from gliorad.features import deep, deep_train
from gliorad.features.config import (  # noqa: F401  (HEADS_3D, INPUTS, Net3DConfig: old names)
    DEEP3D_PRESETS,
    HEADS_3D,
    INPUTS,
    Deep3DConfig,
    Net3DConfig,
)
from gliorad.io import write_text
from gliorad.nets.resnet import ResNet18

#: Settings, presets and input / head names live in the light gliorad.features.config (a run
#: config is checked without torch); their old names here stay importable.
PRESETS = DEEP3D_PRESETS


def load_deep3d_config(spec: str | os.PathLike | Deep3DConfig) -> Deep3DConfig:
    """A :class:`Deep3DConfig`, a preset name (:data:`PRESETS`) or a YAML file (``preset: demo``
    plus overrides)."""
    return deep.load_config(spec, PRESETS, Deep3DConfig, "3D deep-feature")


# ------------------------------------------------------------------------------------ inputs
def _prepare_one(files: Mapping[str, Path], settings: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
    seqs = settings["sequences"]
    vols, mask = deep.read_case(files, seqs, with_mask=settings["input"] == "patch")
    if mask is not None:
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
    files = deep.input_files(cohort, ids, cfg.sequences, masks, need_mask=CNN3D.needs_mask(cfg))
    arrays, records = deep.prepare_all(_prepare_one, files, CNN3D.case_settings(cfg), n_jobs)
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
) -> deep_train.TrainedNetwork:
    """Train the 3D network on ``images`` / ``labels`` (1 = HGG) of the training patients.

    ``model_dir`` receives ``model.safetensors``, ``config.json``, ``history.json`` and the
    resumable ``checkpoints/``. ``val_images`` / ``val_labels`` (training-side validation
    patients) are monitored when given. ``extra`` goes into ``config.json`` (what the run depends
    on beyond the settings and labels, e.g. the input files).
    """
    cfg = config
    ids = list(labels)
    inputs = deep_train.training_inputs(images, ids)
    y = np.array([int(labels[p]) for p in ids])
    if set(np.unique(y)) - {0, 1}:
        raise GlioradInputError(f"labels {sorted(set(y.tolist()))}: expected 0 (LGG) / 1 (HGG)")
    if len(np.unique(y)) < 2:
        raise GlioradInputError(
            f"the {len(ids)} training patients are all {'HGG' if y[0] else 'LGG'}; expected both "
            "grades to train the HGG-vs-LGG network"
        )
    model = deep_train.seeded_network(build_network_3d, cfg, len(ids))
    dataset = deep_train.ArrayDataset.augmented(cfg, inputs, [float(v) for v in y])
    vy = np.array([int(v) for v in (val_labels or {}).values()])

    def score(out: np.ndarray) -> dict[str, float]:
        logits = torch.from_numpy(out[:, 0])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(vy.astype(np.float32)))
        values = {"val_loss": float(loss)}
        if len(np.unique(vy)) == 2:
            from gliorad.stats import roc_auc

            values["val_auc"] = float(roc_auc(vy, out[:, 0]))
        return values

    config_json = model_config_3d(cfg, labels, val_labels, extra)
    return deep_train.train_network(model, dataset, _BinaryLoss(), Path(model_dir), cfg.train,
                         config_json, weights=cfg.weights,
                         validate=deep_train.validation(cfg, val_images, val_labels, score), progress=progress)


def load_cnn3d(model_dir: str | os.PathLike) -> tuple[ResNet18, Deep3DConfig]:
    """Rebuild a trained 3D network from its ``model/`` folder (``config.json`` + weights)."""
    return CNN3D.load(model_dir)


# ------------------------------------------------------------------------------------ stage
class Cnn3D(deep.FeatureNetwork):
    """The 3D network's part of the deep-feature stage (:func:`gliorad.features.deep.run_network`):
    HGG-vs-LGG labels, the HGG logit's head columns, the grade AUC, the crop records."""

    kind, dims, prefix = "cnn3d", "3D", deep.PREFIX_3D
    config_class = Deep3DConfig
    presets = PRESETS
    prepare_one = staticmethod(_prepare_one)

    def stem(self, cfg: Deep3DConfig) -> str:
        return f"{deep.PREFIX_3D}{cfg.variant}"

    def needs_mask(self, cfg: Deep3DConfig) -> bool:
        return cfg.input == "patch"

    def case_settings(self, cfg: Deep3DConfig) -> dict[str, Any]:
        return {"sequences": list(cfg.sequences), "input": cfg.input, "size": list(cfg.size),
                "border": cfg.border, "margin": list(cfg.margin)}

    def build(self, cfg: Deep3DConfig) -> ResNet18:
        return build_network_3d(cfg)

    def labels(self, cfg: Deep3DConfig, clinical: pd.DataFrame, train: list[str],
               val: list[str]) -> deep.Labels:
        lab = deep.training_labels(clinical, train + val, ["grade_group"])
        no_grade = lab.index[lab["grade_group"].isna()].tolist()
        if no_grade:
            raise GlioradInputError(
                f"training patient(s) {no_grade[:10]} have no grade; expected HGG/LGG (or WHO "
                "II-IV) for every training patient"
            )
        y_all = (lab["grade_group"] == "HGG").astype(int)
        if not val and cfg.val_fraction > 0:
            train, val = deep.stratified_split(y_all.loc[train], cfg.val_fraction, cfg.train.seed)
        y = {p: int(y_all[p]) for p in train + val}
        return deep.Labels(train, val, y, {"train_labels": {p: y[p] for p in train},
                                      "val_labels": {p: y[p] for p in val}})

    def model_config(self, cfg: Deep3DConfig, train_t: Mapping[str, int],
                     val_t: Mapping[str, int], extra: Mapping[str, Any]) -> dict[str, Any]:
        return model_config_3d(cfg, train_t, val_t, extra)

    def train(self, cfg: Deep3DConfig, images: Mapping[str, np.ndarray],
              train_t: Mapping[str, int], model_dir: Path, val_images: Mapping[str, np.ndarray],
              val_t: Mapping[str, int], extra: Mapping[str, Any], progress: bool
              ) -> tuple[deep_train.TrainedNetwork, dict[str, Any]]:
        return train_cnn3d(images, train_t, model_dir, cfg, val_images=val_images,
                           val_labels=val_t, extra=extra, progress=progress), {}

    def head_columns(self, cfg: Deep3DConfig, outs: np.ndarray) -> dict[str, np.ndarray]:
        logit = outs[:, 0].astype(np.float64)
        return {"probability": 1.0 / (1.0 + np.exp(-logit)), "logit": logit}

    def metrics(self, cfg: Deep3DConfig, pred: pd.DataFrame, clinical: pd.DataFrame
                ) -> dict[str, Any]:
        return _metrics(pred, clinical)

    def summary(self, cfg: Deep3DConfig, labels: deep.Labels, records: Mapping[str, dict],
                init: Mapping[str, Any], notes: list[str]) -> tuple[dict[str, Any], list[str]]:
        downscaled = sorted(p for p, r in records.items() if r.get("downscaled"))
        notes = list(notes)
        if downscaled:
            notes.append(f"{len(downscaled)} tumour(s) larger than the patch were resampled down: "
                         f"{', '.join(downscaled[:10])}{' ...' if len(downscaled) > 10 else ''}")
        n_hgg = sum(labels.targets[p] for p in labels.train)
        return {"variant": cfg.variant,
                "train_label_counts": {"HGG": n_hgg, "LGG": len(labels.train) - n_hgg},
                "crop": {"downscaled": downscaled}}, notes


#: The 3D network's hooks (:func:`gliorad.features.deep.deep_case` for one patient).
CNN3D = Cnn3D()


def deep_features_3d(cohort: Any, clinical: str | os.PathLike | pd.DataFrame,
                     train_ids: Sequence[str], out_dir: str | os.PathLike,
                     config: str | os.PathLike | Deep3DConfig = "demo", **options: Any
                     ) -> deep.DeepResult:
    """Train the 3D CNN on ``train_ids`` and write 512 deep features for every patient
    (:func:`gliorad.features.deep.run_network` with :data:`CNN3D`).

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

    Keyword options (of :func:`gliorad.features.deep.run_network`):

    ids : patients to extract features for (default: every cohort patient); train and val
        patients are always included.
    val_ids : explicit validation patients (their labels monitor training; never trained on).
    masks : folder of automatic masks (default: the cohort's manual ``seg`` files).
    overwrite : replace an earlier run in ``out_dir`` made with other settings.
    progress : show the training loop's progress bar.
    n_jobs : processes preparing the inputs.
    parquet : also write the table as Parquet.
    """
    return deep.run_network(CNN3D, cohort, clinical, train_ids, out_dir, config, **options)


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
        out[split] = {"n": len(part), **deep.auc_summary(y, part["probability"].to_numpy())}
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
    from gliorad.cohort import Cohort, discover_cohort

    cfg = load_deep3d_config(config)
    table_clin = deep.read_clinical_table(clinical)
    all_ids = sorted(dict.fromkeys(map(str, ids)))
    val = sorted(dict.fromkeys(map(str, val_ids or [])))
    both = sorted(set(val) & set(all_ids))
    if both:
        raise GlioradInputError(f"val_ids and ids overlap ({len(both)} patient(s): "
                                f"{', '.join(both[:5])}); the monitoring patients must be others")
    lab = deep.training_labels(table_clin, all_ids, ["grade_group"])
    if lab["grade_group"].isna().any():
        raise GlioradInputError(f"patients {lab.index[lab['grade_group'].isna()].tolist()[:10]} "
                                "have no grade; out-of-fold probabilities need every grade")
    y = (lab["grade_group"] == "HGG").astype(int)
    splits = deep.stratified_folds(y, folds, seed)
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    with tempfile.TemporaryDirectory(prefix=".inputs-", dir=out) as inputs:  # each patient read once
        for k, (trained, test) in enumerate(splits, 1):
            res = deep_features_3d(cohort, table_clin, trained, out / f"fold{k}",
                                   cfg, ids=test, val_ids=val or None, masks=masks,
                                   overwrite=overwrite, progress=progress, n_jobs=n_jobs,
                                   input_cache=inputs)
            p = res.predictions[res.predictions["patient_id"].isin(test)]
            parts.append(p[["patient_id", "probability"]].assign(fold=k))
    pred = pd.concat(parts).sort_values("patient_id").reset_index(drop=True)
    write_text(pred.to_csv(index=False, float_format="%.17g"),
               out / f"{CNN3D.stem(cfg)}_oof_predictions.csv")
    return pred
