"""2D dual-task CNN deep features (Xu et al. 2022, "Building of deep-radiomics signature"): a 2D
ResNet18 on the largest tumour slice (T1, T2, T1-Gd as three channels), initialised from ImageNet
weights, trained jointly to grade LGG patients (WHO II vs III) and to regress survival; 512
features per patient from the global average pool after the fourth stage.

Input (:func:`prepare_inputs_2d`)
    Each sequence is z-scored inside the patient's brain (whole volume), then the axial slice with
    the largest tumour area (:func:`gliorad.crop.slice_stack`) is taken from each, stacked as
    channels in ``sequences`` order (paper: T1, T2, T1-Gd) and scaled to fit ``size`` (paper:
    240x240) with its aspect kept (padding 0). No ImageNet mean/std normalisation is applied: the
    per-patient z-score already centres each channel.

Network
    :class:`gliorad.nets.ResNet18` (``spatial_dims=2``, 3 channels) with a ``dual`` head: a grade
    head (``two_fc`` or ``linear``, one logit of grade III) and a survival head (one linear output)
    share the backbone. **ImageNet initialisation**: ``imagenet_weights`` is a local
    torchvision-format ``resnet18`` state dict (``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)``, or ``.safetensors``) loaded by
    :func:`gliorad.nets.resnet.load_torchvision_weights` (``fc.*`` skipped, shapes checked); nothing
    is downloaded. Without it the network is trained from scratch and a warning and a provenance
    note say so.

Loss (:class:`DualTaskLoss`), on the **LGG training patients only** (HGG patients in
``train_ids`` are left out and counted: the paper's survival analysis is of LGG)::

    L = BCE(grade logit, [grade == III])  +  survival_weight * L_surv

The grade term averages over the patients of the batch with a known WHO grade. ``L_surv`` is
censoring-aware (``survival_loss``), over the patients with a survival time:

* ``cox`` (default): the negative Cox partial log-likelihood of the survival output ``r`` (a log
  risk: higher = shorter survival) over the batch, Breslow ties, divided by the number of events:
  ``-(1/d) sum_{i: event} [r_i - log sum_{j: t_j >= t_i} exp(r_j)]``; a batch without an event
  contributes 0. It uses censored patients correctly (they are in the risk sets) and needs no
  time scale; the "regression of survival time" is then a regression of relative risk.
* ``censored_l1``: the survival output ``u`` predicts log survival time in years; a death costs
  ``|u - log t|``; a censored patient, alive at ``c``, costs ``max(0, log c - u)`` (only
  predictions below the censoring time are penalised, Tobit-style); averaged over the patients.

Training runs in the shared loop :func:`gliorad.training.fit` (the dual targets travel as a dict
of tensors; the network returns one ``(B, 2)`` tensor so the loop's mixed-precision cast works).
With ``val_fraction > 0`` a seeded part of the LGG training patients (stratified by grade)
monitors ``val_loss`` (and reports ``val_auc`` and ``val_cindex``).

Outputs (:func:`deep_features_2d`): ``cnn2d_dual.csv/.parquet`` (``cnn2d_000 ... cnn2d_511`` for
every patient, HGG included), ``cnn2d_dual_predictions.csv`` (``patient_id``,
``probability_grade_iii``, ``survival_output``, ``risk_score`` (higher = worse, for either loss),
``split``), ``metrics.json`` (held-out LGG patients: grade II/III AUC with DeLong CI, C-index of
the risk score with its 95% CI), ``model/``, ``provenance.json`` (see :mod:`gliorad.features.deep`).

Cross-fitting (:func:`cnn2d_cross_fit`, the run config's ``deep2d.cross_fit: k``; not the
paper's): the 512 features are in-sample on the network's own training patients, and a survival
signature selected on them over-fits. ``k`` more networks, each trained without one fold of the
LGG training patients, give those patients out-of-fold values; since pooled features of different
networks are not comparable column by column, only the dual head's two outputs are cross-fitted
(``cnn2d_oof_grade``, ``cnn2d_oof_risk``: ``cnn2d_cross_fit.csv``), and the signature reads them
instead of the 512 features. Every other patient's values come from the network trained on all
LGG training patients (the one the bundle keeps: :func:`head_features_2d`).

Presets (:data:`PRESETS`): ``paper`` (3x240x240, ResNet18, batch 8, 200 epochs, lr 5e-4 halved
after 10 epochs without validation improvement, a quarter of the training LGG patients for
validation; ImageNet weights expected) and ``demo`` (80x80 slices, the paper's 240 mm field of
view at 3 mm; ResNet18 widths so the table has 512 columns; 20 epochs, lr 3e-4; a quarter of the
training LGG patients monitors the loss and the best epoch's weights give the features; random
translations and intensity jitter in training (:class:`gliorad.features.deep.Augmented`)).
Without the validation part and the augmentation, the demo network memorised the ~50 LGG patients
of centre B (C-index 0.96 on them, 0.51 on centre A), and a signature built on its features did
not hold on the external centre (HR 1.49, P 0.32); with them, it did in one draw of the cohort (HR
3.15, P 0.003) and pointed the same way in another (HR 1.82, P 0.20) (bench/RESULTS.md, "Demo").
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gliorad.crop import slice_stack
from gliorad.errors import GlioradInputError, check_option
from gliorad.features import deep, deep_train
from gliorad.features.config import (  # noqa: F401  (Net2DConfig: its old home)
    CROSS_FIT_COLUMNS_2D,
    DEEP2D_PRESETS,
    SURVIVAL_LOSSES,
    Deep2DConfig,
    Net2DConfig,
)
from gliorad.io import file_hash, write_json, write_text
from gliorad.nets.resnet import ResNet18, load_torchvision_weights

DAYS_PER_YEAR = 365.25

#: Settings, presets and loss names live in the light gliorad.features.config (a run config is
#: checked without torch); their old names here stay importable.
PRESETS = DEEP2D_PRESETS


def load_deep2d_config(spec: str | os.PathLike | Deep2DConfig) -> Deep2DConfig:
    """A :class:`Deep2DConfig`, a preset name (:data:`PRESETS`) or a YAML file."""
    return deep.load_config(spec, PRESETS, Deep2DConfig, "2D deep-feature")


# ------------------------------------------------------------------------------------ losses
def cox_ph_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow ties) divided by the number of events.

    ``-(1/d) sum_{i: event_i = 1} [risk_i - log sum_{j: time_j >= time_i} exp(risk_j)]``; 0
    (with a gradient of 0) when there is no event. Shapes ``(n,)``.
    """
    event = event.to(risk.dtype)
    d = event.sum()
    if float(d) == 0:
        return risk.sum() * 0.0
    at_risk = time[None, :] >= time[:, None]  # row i: who is at risk at time_i
    scores = risk[None, :].expand(len(risk), -1).masked_fill(~at_risk, float("-inf"))
    log_denominator = torch.logsumexp(scores, dim=1)
    return -((risk - log_denominator) * event).sum() / d


def censored_l1_loss(log_time_pred: torch.Tensor, time_years: torch.Tensor,
                     event: torch.Tensor) -> torch.Tensor:
    """Mean of ``|u - log t|`` (deaths) and ``max(0, log c - u)`` (censored at ``c``)."""
    log_t = torch.log(time_years.clamp_min(1e-6))
    per = torch.where(event > 0, (log_time_pred - log_t).abs(), torch.relu(log_t - log_time_pred))
    return per.mean()


class DualTaskLoss(torch.nn.Module):
    """Grade (II vs III) cross-entropy + ``survival_weight`` x censoring-aware survival term; see
    the module docstring. ``outputs`` ``(B, 2)``: grade logit, survival output; ``targets``: a dict
    of ``(B,)`` tensors ``grade`` (1 = III), ``grade_mask``, ``time`` (days), ``event`` (1 = death),
    ``surv_mask`` (masks: 1 where the value is known)."""

    def __init__(self, survival_loss: str = "cox", survival_weight: float = 1.0):
        super().__init__()
        self.survival_loss = check_option("survival_loss", survival_loss, SURVIVAL_LOSSES)
        self.survival_weight = float(survival_weight)

    def parts(self, outputs: torch.Tensor, targets: Mapping[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        logit, surv = outputs[:, 0], outputs[:, 1]
        gm = targets["grade_mask"] > 0
        grade = (torch.nn.functional.binary_cross_entropy_with_logits(
            logit[gm], targets["grade"][gm].to(logit.dtype)) if bool(gm.any()) else logit.sum() * 0.0)
        sm = targets["surv_mask"] > 0
        if not bool(sm.any()):
            return grade, surv.sum() * 0.0
        if self.survival_loss == "cox":
            s = cox_ph_loss(surv[sm], targets["time"][sm], targets["event"][sm])
        else:
            s = censored_l1_loss(surv[sm], targets["time"][sm] / DAYS_PER_YEAR, targets["event"][sm])
        return grade, s

    def forward(self, outputs: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        grade, surv = self.parts(outputs, targets)
        return grade + self.survival_weight * surv


def risk_score(survival_output: np.ndarray, survival_loss: str) -> np.ndarray:
    """Higher = worse prognosis: the Cox log risk itself, or minus the predicted log time."""
    out = np.asarray(survival_output, dtype=np.float64)
    return out if survival_loss == "cox" else -out


# ------------------------------------------------------------------------------------ inputs
def _prepare_one(files: Mapping[str, Path], settings: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
    seqs = settings["sequences"]
    vols, mask = deep.read_case(files, seqs)
    stack, rec = slice_stack(vols, mask, seqs, settings["size"], axis=settings["axis"], pad_value=0.0)
    return stack.astype(np.float32), {"index": rec["index"], "area": rec["area"], "scale": rec["scale"]}


def prepare_inputs_2d(
    cohort: Any, ids: Sequence[str], config: Deep2DConfig, *,
    masks: str | os.PathLike | None = None, n_jobs: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, dict[str, Path]]]:
    """``(inputs, records, files)``: each patient's ``(C, *size)`` largest-slice stack, its slice
    record and its input files."""
    cfg = config
    files = deep.input_files(cohort, ids, cfg.sequences, masks, need_mask=True)
    arrays, records = deep.prepare_all(_prepare_one, files, CNN2D.case_settings(cfg), n_jobs)
    return arrays, records, files


# ------------------------------------------------------------------------------------ training
def build_network_2d(config: Deep2DConfig) -> ResNet18:
    n = config.net
    return ResNet18(spatial_dims=2, in_channels=len(config.sequences), widths=n.widths, se=False,
                    head="dual", hidden=n.hidden, dropout=n.dropout, grade_head=n.grade_head)


def survival_targets(labels: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-patient target dicts from canonical columns ``grade``, ``os_days``, ``event``."""
    out = {}
    for pid, row in labels.iterrows():
        g = row.get("grade")
        known_grade = g in ("II", "III")
        t, e = row.get("os_days"), row.get("event")
        known_surv = (t is not None and e is not None and not pd.isna(t) and not pd.isna(e)
                      and float(t) > 0)
        out[str(pid)] = {"grade": float(g == "III") if known_grade else 0.0,
                         "grade_mask": float(known_grade),
                         "time": float(t) if known_surv else 1.0,
                         "event": float(e) if known_surv else 0.0,
                         "surv_mask": float(known_surv)}
    return out


def task_fallback(targets: Mapping[str, Mapping[str, float]], loss: str
                  ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Switch off a task the training patients cannot teach, with a note: the grade II vs III
    task when they have only one WHO grade (an LGG cohort with grades of one kind, or few
    patients), the Cox survival term when none of them died. The other task still trains.

    Raises :class:`GlioradInputError` when neither task can be trained.
    """
    out = {p: dict(t) for p, t in targets.items()}
    notes = []
    n_ii = sum(1 for t in out.values() if t["grade_mask"] and not t["grade"])
    n_iii = sum(1 for t in out.values() if t["grade_mask"] and t["grade"])
    n_event = sum(1 for t in out.values() if t["surv_mask"] and t["event"])
    n_surv = sum(1 for t in out.values() if t["surv_mask"])
    grade_ok = bool(n_ii and n_iii)
    surv_ok = bool(n_event) if loss == "cox" else bool(n_surv)
    if not grade_ok and not surv_ok:
        raise GlioradInputError(
            f"the LGG training patients have {n_ii} grade II, {n_iii} grade III and {n_event} "
            f"death(s) among {n_surv} with a survival time: neither the grade II vs III task nor "
            "the survival task can be trained (more training patients are needed, or set "
            "deep2d.enabled: false)")
    if not grade_ok:
        for t in out.values():
            t["grade_mask"] = 0.0
        notes.append(f"grade II vs III task off: the LGG training patients have {n_ii} grade II "
                     f"and {n_iii} grade III; the 2D CNN learns the survival task alone")
    if not surv_ok:
        for t in out.values():
            t["surv_mask"] = 0.0
        notes.append("survival task off: no death among the LGG training patients with a survival "
                     "time; the 2D CNN learns the grade II vs III task alone")
    for n in notes:
        warnings.warn(n, UserWarning, stacklevel=2)
    return out, notes


def model_config_2d(cfg: Deep2DConfig, targets: Mapping[str, Mapping[str, float]],
                    val_targets: Mapping[str, Mapping[str, float]] | None,
                    imagenet_sha256: str | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``model/config.json`` records: everything the trained network depends on."""
    return {"format": "gliorad-cnn2d-1", "config": cfg.model_dump(mode="json"),
            "train_targets": {str(p): dict(t) for p, t in targets.items()},
            "val_targets": {str(p): dict(t) for p, t in (val_targets or {}).items()},
            "imagenet_sha256": imagenet_sha256, **dict(extra or {})}


def train_cnn2d(
    images: Mapping[str, np.ndarray], targets: Mapping[str, Mapping[str, float]],
    model_dir: str | os.PathLike, config: Deep2DConfig, *,
    imagenet_weights: str | os.PathLike | None = None,
    val_images: Mapping[str, np.ndarray] | None = None,
    val_targets: Mapping[str, Mapping[str, float]] | None = None,
    extra: Mapping[str, Any] | None = None, progress: bool = True,
) -> tuple[deep_train.TrainedNetwork, dict[str, Any]]:
    """Train the dual-task network on the LGG training patients' ``images`` and ``targets``
    (:func:`survival_targets`); returns the trained network and the ImageNet load report (or a
    note that it was trained from scratch)."""
    cfg = config
    ids = list(targets)
    inputs = deep_train.training_inputs(images, ids)
    targets, _ = task_fallback(targets, cfg.survival_loss)
    model = deep_train.seeded_network(build_network_2d, cfg, len(ids))
    if imagenet_weights is not None:
        report = load_torchvision_weights(model, imagenet_weights)
        init = {"init": "imagenet", **report.to_dict(), "sha256": file_hash(imagenet_weights)}
    else:
        msg = ("no ImageNet weights file given: the 2D ResNet18 is trained from scratch (the paper "
               "initialises it from ImageNet; pass a local torchvision resnet18 state dict, e.g. "
               "resnet18-f37072fd.pth, as imagenet_weights / --imagenet-weights)")
        warnings.warn(msg, UserWarning, stacklevel=2)
        init = {"init": "scratch", "note": msg}
    loss_fn = DualTaskLoss(cfg.survival_loss, cfg.survival_weight)
    dataset = deep_train.ArrayDataset.augmented(cfg, inputs, [targets[p] for p in ids])
    vt = {k: torch.tensor([t[k] for t in (val_targets or {}).values()], dtype=torch.float32)
          for k in ("grade", "grade_mask", "time", "event", "surv_mask")}

    def score(out: np.ndarray) -> dict[str, float]:
        values = {"val_loss": float(loss_fn(torch.from_numpy(out), vt))}
        values.update(_task_metrics(out, vt, cfg.survival_loss, with_ci=False))
        return values

    config_json = model_config_2d(cfg, targets, val_targets, init.get("sha256"), extra)
    trained = deep_train.train_network(model, dataset, loss_fn, Path(model_dir), cfg.train, config_json,
                            weights=cfg.weights,
                            validate=deep_train.validation(cfg, val_images, val_targets, score),
                            progress=progress)
    return trained, init


def _task_metrics(out: np.ndarray, t: Mapping[str, Any], survival_loss: str, with_ci: bool
                  ) -> dict[str, Any]:
    """Grade III-vs-II AUC and the C-index of the risk score (keys ``val_auc`` / ``val_cindex``
    without CIs; ``grade`` / ``survival`` dicts with CIs)."""
    from gliorad.stats import concordance_ci, concordance_index, roc_auc

    res: dict[str, Any] = {}
    gm = np.asarray(t["grade_mask"]) > 0
    yg = np.asarray(t["grade"])[gm].astype(int)
    if with_ci:
        res["grade"] = {"n": int(gm.sum()), **deep.auc_summary(yg, out[gm, 0])}
    elif len(np.unique(yg)) == 2:
        res["val_auc"] = float(roc_auc(yg, out[gm, 0]))
    sm = np.asarray(t["surv_mask"]) > 0
    time_, event = np.asarray(t["time"])[sm], np.asarray(t["event"])[sm]
    risk = risk_score(out[sm, 1], survival_loss)
    try:
        if with_ci:
            c = concordance_ci(time_, event, risk)
            res["survival"] = {"n": int(sm.sum()), "events": int(event.sum()), "cindex": c.c_index,
                               "ci_low": c.ci_low, "ci_high": c.ci_high}
        else:
            c = float(concordance_index(time_, event, risk))
            if np.isfinite(c):
                res["val_cindex"] = c
    except GlioradInputError as err:  # too few patients / no comparable pair: say why
        if with_ci:
            res["survival"] = {"n": int(sm.sum()), "events": int(event.sum()), "cindex": None,
                               "note": " ".join(err.problems)}
    return res


def load_cnn2d(model_dir: str | os.PathLike) -> tuple[ResNet18, Deep2DConfig]:
    """Rebuild a trained 2D dual-task network from its ``model/`` folder."""
    return CNN2D.load(model_dir)


# ------------------------------------------------------------------------------------ stage
STEM_2D = f"{deep.PREFIX_2D}dual"


@dataclass
class Cnn2D(deep.FeatureNetwork):
    """The 2D network's part of the deep-feature stage (:func:`gliorad.features.deep.run_network`):
    LGG patients' grade and survival targets, the optional ImageNet weights, the dual head's
    columns, grade AUC and C-index, the slice records."""

    imagenet_weights: str | os.PathLike | None = None

    kind, dims, prefix = "cnn2d", "2D", deep.PREFIX_2D
    config_class = Deep2DConfig
    presets = PRESETS
    prepare_one = staticmethod(_prepare_one)

    @cached_property
    def imagenet_sha256(self) -> str | None:
        return file_hash(self.imagenet_weights) if self.imagenet_weights is not None else None

    def check(self, cfg: Deep2DConfig) -> None:
        if self.imagenet_weights is not None and not Path(self.imagenet_weights).is_file():
            raise GlioradInputError(f"{self.imagenet_weights}: ImageNet weights file not found")

    def stem(self, cfg: Deep2DConfig) -> str:
        return STEM_2D

    def case_settings(self, cfg: Deep2DConfig) -> dict[str, Any]:
        return {"sequences": list(cfg.sequences), "size": list(cfg.size), "axis": cfg.axis}

    def build(self, cfg: Deep2DConfig) -> ResNet18:
        return build_network_2d(cfg)

    def labels(self, cfg: Deep2DConfig, clinical: pd.DataFrame, train: list[str],
               val: list[str]) -> deep.Labels:
        lab = deep.training_labels(clinical, train + val, ["grade", "grade_group", "os_days", "event"])
        lgg = lab["grade_group"] == "LGG"
        excluded = sorted(lab.index[~lgg])
        train = [p for p in train if lgg[p]]
        val = [p for p in val if lgg[p]]
        targets = survival_targets(lab.loc[train + val])
        if not val and cfg.val_fraction > 0:
            strata = pd.Series({p: targets[p]["grade"] + 2 * targets[p]["grade_mask"] for p in train})
            train, val = deep.stratified_split(strata, cfg.val_fraction, cfg.train.seed)
        if len(train) < 2:
            raise GlioradInputError(
                f"{len(train)} LGG patient(s) among the training ids; the dual-task network trains "
                "on LGG patients (WHO II/III) only"
            )
        return deep.Labels(train, val, targets,
                      {"train_targets": {p: targets[p] for p in train},
                       "val_targets": {p: targets[p] for p in val},
                       "imagenet_sha256": self.imagenet_sha256},
                      split={p: "excluded_hgg" for p in excluded})

    def training_targets(self, cfg: Deep2DConfig, labels: deep.Labels
                         ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """The training targets with a task the training patients cannot teach switched off
        (:func:`task_fallback`), in the validation targets too."""
        train_t, notes = task_fallback({p: labels.targets[p] for p in labels.train},
                                       cfg.survival_loss)
        off = {k: 0.0 for k in ("grade_mask", "surv_mask") if not any(t[k] for t in train_t.values())}
        return train_t, {p: {**labels.targets[p], **off} for p in labels.val}, notes

    def model_config(self, cfg: Deep2DConfig, train_t: Mapping[str, Any],
                     val_t: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        return model_config_2d(cfg, train_t, val_t, self.imagenet_sha256, extra)

    def train(self, cfg: Deep2DConfig, images: Mapping[str, np.ndarray],
              train_t: Mapping[str, Any], model_dir: Path, val_images: Mapping[str, np.ndarray],
              val_t: Mapping[str, Any], extra: Mapping[str, Any], progress: bool
              ) -> tuple[deep_train.TrainedNetwork, dict[str, Any]]:
        return train_cnn2d(images, train_t, model_dir, cfg, imagenet_weights=self.imagenet_weights,
                           val_images=val_images, val_targets=val_t, extra=extra,
                           progress=progress)

    def head_columns(self, cfg: Deep2DConfig, outs: np.ndarray) -> dict[str, np.ndarray]:
        return {"probability_grade_iii": 1.0 / (1.0 + np.exp(-outs[:, 0].astype(np.float64))),
                "survival_output": outs[:, 1].astype(np.float64),
                "risk_score": risk_score(outs[:, 1], cfg.survival_loss)}

    def metrics(self, cfg: Deep2DConfig, pred: pd.DataFrame, clinical: pd.DataFrame
                ) -> dict[str, Any]:
        return _metrics(pred, clinical, cfg.survival_loss)

    def summary(self, cfg: Deep2DConfig, labels: deep.Labels, records: Mapping[str, dict],
                init: Mapping[str, Any], notes: list[str]) -> tuple[dict[str, Any], list[str]]:
        excluded = sorted(labels.split)
        notes = ([init["note"]] if init["init"] == "scratch" else []) + list(notes)
        if excluded:
            notes.append(f"{len(excluded)} HGG patient(s) among the training ids were not trained "
                         "on (the dual-task network learns from LGG patients only)")
        t = [labels.targets[p] for p in labels.train]
        counts = {"grade_II": sum(1 for x in t if x["grade_mask"] and not x["grade"]),
                  "grade_III": sum(1 for x in t if x["grade_mask"] and x["grade"]),
                  "with_survival": sum(1 for x in t if x["surv_mask"]),
                  "events": sum(1 for x in t if x["surv_mask"] and x["event"])}
        return {"excluded_hgg_ids": excluded, "train_counts": counts, "initialisation": dict(init),
                "loss": {"survival_loss": cfg.survival_loss, "survival_weight": cfg.survival_weight,
                         "description": SURVIVAL_LOSSES[cfg.survival_loss]},
                "slices": dict(records)}, notes


#: The 2D network's hooks without ImageNet weights (:func:`gliorad.features.deep.deep_case`).
CNN2D = Cnn2D()


def deep_features_2d(cohort: Any, clinical: str | os.PathLike | pd.DataFrame,
                     train_ids: Sequence[str], out_dir: str | os.PathLike,
                     config: str | os.PathLike | Deep2DConfig = "demo", *,
                     imagenet_weights: str | os.PathLike | None = None, **options: Any
                     ) -> deep.DeepResult:
    """Train the 2D dual-task CNN on the LGG patients of ``train_ids``; write 512 features for
    every patient of ``ids`` (default: the whole cohort) (:func:`gliorad.features.deep.
    run_network` with :class:`Cnn2D`).

    ``clinical``: canonical clinical table or its path; ``grade``, ``grade_group``, ``os_days``
    and ``event`` of the training (and validation) patients are read for training; held-out
    values only afterwards, for ``metrics.json``. ``imagenet_weights``: a local torchvision-format
    resnet18 state dict (None: trained from scratch, with a warning). Other arguments and the
    keyword ``options`` as :func:`gliorad.features.deep3d.deep_features_3d`.
    """
    return deep.run_network(Cnn2D(imagenet_weights), cohort, clinical, train_ids, out_dir, config,
                            **options)


def _metrics(pred: pd.DataFrame, clinical: pd.DataFrame, survival_loss: str) -> dict[str, Any]:
    """Grade III-vs-II AUC and C-index per split over LGG patients with the needed values; read
    after extraction (never fed back into training)."""
    out: dict[str, Any] = {"grade_score": "probability of grade III (LGG patients)",
                           "risk": "risk_score (higher = shorter survival)"}
    cols = [c for c in ("grade", "grade_group", "os_days", "event") if c in clinical.columns]
    for split in ("test", "val", "train"):
        part = pred[pred["split"] == split]
        part = part[part["patient_id"].isin(clinical.index)]
        if part.empty:
            continue
        lab = clinical.loc[part["patient_id"], cols]
        keep = (lab["grade_group"] == "LGG").to_numpy() if "grade_group" in lab else np.zeros(len(lab), bool)
        if not keep.any():
            continue
        part, lab = part[keep], lab[keep]
        t = survival_targets(lab)
        arr = {k: np.array([t[p][k] for p in part["patient_id"]])
               for k in ("grade", "grade_mask", "time", "event", "surv_mask")}
        outs = np.column_stack([part["probability_grade_iii"].to_numpy(),
                                part["survival_output"].to_numpy()])
        out[split] = {"n_lgg": len(part), **_task_metrics(outs, arr, survival_loss, with_ci=True)}
    return out


# ------------------------------------------------------------------------------------ cross-fitting
#: ``cnn2d_cross_fit.csv`` / ``.parquet`` / ``_predictions.csv`` and ``cross_fit.json``
#: (:func:`cnn2d_cross_fit`); the fold networks' runs are in ``cross_fit/fold<k>``.
STEM_CROSS_FIT = f"{deep.PREFIX_2D}cross_fit"
CROSS_FIT_SUMMARY = "cross_fit.json"
CROSS_FIT_FOLDS = "cross_fit"
#: The cross-fitted columns, per task of the dual head: the probability of grade III and the
#: risk score (higher = worse), the only outputs comparable between networks.
OOF_COLUMNS = CROSS_FIT_COLUMNS_2D
_HEAD_COLUMN = {"grade": "probability_grade_iii", "risk": "risk_score"}  # in the predictions
_TASK_MASK = {"grade": "grade_mask", "risk": "surv_mask"}  # in the training targets


def head_features_2d(outs: np.ndarray, config: Deep2DConfig) -> dict[str, np.ndarray]:
    """The cross-fitted columns (:data:`OOF_COLUMNS`) of head outputs ``(N, 2)`` (or one
    patient's ``(2,)``) of a network of ``config``, computed as the stage's predictions table
    (:meth:`Cnn2D.head_columns`): what ``gliorad predict`` gives a new patient from the bundle's
    network (the one trained on every training patient), as the stage gives the patients outside
    the training cohort."""
    cols = CNN2D.head_columns(config, np.atleast_2d(np.asarray(outs)))
    return {OOF_COLUMNS[task]: cols[_HEAD_COLUMN[task]] for task in OOF_COLUMNS}


@dataclass
class CrossFit2D:
    """Outcome of :func:`cnn2d_cross_fit`: the cross-fitted ``table`` (index ``patient_id``, the
    kept :data:`OOF_COLUMNS`), the per-patient ``predictions`` (which network gave each value),
    the full network's run, the fold networks' runs, the ``summary`` (``cross_fit.json``) and
    the files written."""

    table: pd.DataFrame
    predictions: pd.DataFrame
    full: deep.DeepResult
    folds: list[deep.DeepResult]
    summary: dict[str, Any]
    files: dict[str, Path]


def _tasks_trained(result: deep.DeepResult) -> dict[str, bool]:
    """Which tasks a network learnt (its training targets after :func:`task_fallback`)."""
    import json

    data = json.loads((result.out_dir / "model" / "config.json").read_text(encoding="utf-8"))
    targets = data["train_targets"].values()
    return {task: any(t[mask] for t in targets) for task, mask in _TASK_MASK.items()}


def cnn2d_cross_fit(cohort: Any, clinical: str | os.PathLike | pd.DataFrame,
                    train_ids: Sequence[str], out_dir: str | os.PathLike,
                    config: str | os.PathLike | Deep2DConfig = "demo", *, folds: int = 5,
                    seed: int = 0, imagenet_weights: str | os.PathLike | None = None,
                    ids: Sequence[str] | None = None, masks: str | os.PathLike | None = None,
                    overwrite: bool = False, progress: bool = True, n_jobs: int = 1,
                    parquet: bool = True) -> CrossFit2D:
    """The 2D network's inputs to the survival signature without in-sample optimism
    (``deep2d.cross_fit``): cross-fitted head outputs.

    The network trained on every LGG patient of ``train_ids`` (:func:`deep_features_2d` in
    ``out_dir``, the same run and files as without cross-fitting) gives the features of every
    patient, but on its own training patients they are in-sample. So ``folds`` more networks are
    trained (``out_dir/cross_fit/fold<k>``), each on the LGG training patients outside fold
    ``k`` (a seeded split stratified by death, :func:`gliorad.features.deep.stratified_folds`;
    with ``val_fraction`` a part of them monitors the loss), never reading a label of fold
    ``k``. Each LGG training patient's value then comes from the fold network that did not see
    it; every other patient's (the external cohort, a new patient in ``gliorad predict``) from
    the full network, as in stacking: a model fitted on out-of-fold values is applied to the full
    model's.

    **Only the head outputs are cross-fitted.** The 512 pooled features of different networks
    are not in one coordinate system (channels come in any order and mix differently in every
    training), so column ``cnn2d_017`` of one fold network and of another are different
    quantities and a column mixing them per patient would be noise. The two outputs of the dual
    head are the same quantities in every network: ``cnn2d_oof_grade`` (probability of grade
    III) and ``cnn2d_oof_risk`` (the risk score, higher = shorter survival; :func:`risk_score`).
    The Cox loss does not identify the risk's location (the partial likelihood is the same when a
    constant is added), so with ``survival_loss: cox`` each fold network's risk is moved by a
    constant onto the full network's: ``+ mean_R(full) - mean_R(fold k)`` with ``R`` the LGG
    training patients (their images only; no label); a patient's value then depends on labels
    of the other folds (as in any cross-fitting) and on its own only through ``mean_R(full)``,
    one constant shared by every training patient (no difference between patients). The grade
    probability and the ``censored_l1`` risk (a predicted log time) are identified and kept as
    they are. A task a network could not learn (:func:`task_fallback`, e.g. a fold without a
    death) gives no column, with a note.

    Writes ``cnn2d_cross_fit.csv`` (and ``.parquet``): the kept columns for every patient of
    the full run; ``cnn2d_cross_fit_predictions.csv``: ``patient_id``, ``network`` (``full`` or
    ``fold<k>``), ``fold`` (0: full network), both columns and ``risk_offset``;
    ``cross_fit.json``: the folds (patients trained on, monitoring, held out), offsets, kept
    columns, out-of-fold metrics of the training patients, notes. Arguments as
    :func:`deep_features_2d`; ``folds`` >= 2 and at most the smaller of the LGG training
    patients' deaths and others; ``seed`` shuffles the folds.
    """
    from gliorad.cohort import Cohort, discover_cohort

    cfg = load_deep2d_config(config)
    if not isinstance(cohort, Cohort):
        cohort = discover_cohort(cohort)
    net = Cnn2D(imagenet_weights)
    net.check(cfg)
    table_clin = deep.read_clinical_table(clinical)
    train, _, _ = deep.check_ids(train_ids, None, ids, cohort.ids)
    labels = net.labels(cfg, table_clin, train, [])
    lgg = sorted(labels.train + labels.val)  # R: the LGG training patients (monitoring included)
    died = pd.Series({p: int(bool(labels.targets[p]["surv_mask"] and labels.targets[p]["event"]))
                      for p in lgg})
    splits = deep.stratified_folds(died, folds, seed,
                                   what="smaller of the LGG training patients' deaths and others")
    out = Path(out_dir)
    common = {"imagenet_weights": imagenet_weights, "masks": masks, "overwrite": overwrite,
              "progress": progress, "n_jobs": n_jobs}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inputs-", dir=out) as inputs:  # each patient read once
        common["input_cache"] = inputs
        full = deep_features_2d(cohort, table_clin, train, out, cfg, ids=ids, parquet=parquet,
                                **common)
        runs = [deep_features_2d(cohort, table_clin, trained, out / CROSS_FIT_FOLDS / f"fold{k}",
                                 cfg, ids=lgg, parquet=False, **common)
                for k, (trained, _) in enumerate(splits, 1)]

    base = full.predictions.set_index("patient_id")
    cols = list(OOF_COLUMNS.values())
    values = pd.DataFrame({OOF_COLUMNS[t]: base[_HEAD_COLUMN[t]] for t in OOF_COLUMNS})
    network = pd.Series("full", index=base.index)
    fold_of = pd.Series(0, index=base.index)
    offset = pd.Series(0.0, index=base.index)
    records = {"full": {"trained_on": full.train_ids, "monitoring": full.val_ids}}
    trained = {"full": _tasks_trained(full)}
    for k, ((_, held), res) in enumerate(zip(splits, runs), 1):
        seen = set(res.train_ids) | set(res.val_ids)
        if seen & set(held):  # cannot happen: deep_features_2d reads the labels it is given
            raise RuntimeError(f"fold {k}: the network saw held-out patients {sorted(seen & set(held))}")
        pred = res.predictions.set_index("patient_id")
        shift = 0.0
        if cfg.survival_loss == "cox":
            shift = float(base.loc[lgg, "risk_score"].mean() - pred.loc[lgg, "risk_score"].mean())
        values.loc[held, OOF_COLUMNS["grade"]] = pred.loc[held, _HEAD_COLUMN["grade"]]
        values.loc[held, OOF_COLUMNS["risk"]] = pred.loc[held, _HEAD_COLUMN["risk"]] + shift
        network.loc[held], fold_of.loc[held], offset.loc[held] = f"fold{k}", k, shift
        records[f"fold{k}"] = {"trained_on": res.train_ids, "monitoring": res.val_ids,
                               "held_out": sorted(held), "risk_offset": shift}
        trained[f"fold{k}"] = _tasks_trained(res)

    notes: list[str] = []
    kept = []
    for task, col in OOF_COLUMNS.items():
        lacking = [name for name, tasks in trained.items() if not tasks[task]]
        if lacking:
            notes.append(f"{col} left out: the {'grade II vs III' if task == 'grade' else 'survival'}"
                         f" task was off in the network(s) {', '.join(lacking)} (too few "
                         f"{'patients of a grade' if task == 'grade' else 'deaths'} in their "
                         "training patients); fewer folds may keep it")
        else:
            kept.append(col)
    for n in notes:
        warnings.warn(n, UserWarning, stacklevel=2)
    table = values[kept].astype(np.float64)
    table.index.name = "patient_id"
    pred = values[cols].assign(network=network, fold=fold_of, risk_offset=offset)
    pred = pred.rename_axis("patient_id").reset_index()[
        ["patient_id", "network", "fold", *cols, "risk_offset"]]
    # out-of-fold metrics of the training patients (read after extraction, never fed back)
    oof = pd.DataFrame({"patient_id": lgg,
                        "probability_grade_iii": values.loc[lgg, OOF_COLUMNS["grade"]].to_numpy(),
                        "survival_output": risk_score(values.loc[lgg, OOF_COLUMNS["risk"]]
                                                      .to_numpy(), cfg.survival_loss),
                        "split": "train"})
    metrics = _metrics(oof, table_clin, cfg.survival_loss).get("train")
    summary = {"folds": int(folds), "seed": int(seed), "stratified_by": "death (LGG training patients)",
               "columns": kept, "all_columns": cols,
               "rule": "LGG training patients: the fold network that did not see them (risk "
                       "moved onto the full network's location with a Cox loss); every other "
                       "patient: the network trained on all LGG training patients",
               "networks": records, "tasks_trained": trained, "metrics_out_of_fold": metrics,
               "notes": notes}
    files = deep.write_table(table, out / STEM_CROSS_FIT, parquet)
    name = f"{STEM_CROSS_FIT}_predictions.csv"
    files[name] = write_text(pred.to_csv(index=False, float_format="%.17g"), out / name)
    files[CROSS_FIT_SUMMARY] = write_json(summary, out / CROSS_FIT_SUMMARY)
    return CrossFit2D(table, pred, full, runs, summary, files)
