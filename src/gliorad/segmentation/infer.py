"""Prediction with a trained U-Net: the model folder loaded (:func:`load_model`), sliding-window
inference, post-processing, one patient (:func:`segment_case`, after :func:`prepare_model`) and
the cohort loop over it (:func:`predict_cohort`); :func:`gliorad.predict.predict_patient`
segments a new patient with the same two functions.

MONAI sliding-window inference with Gaussian weighting over the brain's bounding box (a box of at
most ``max_single_window_voxels`` voxels, e.g. a whole 1 mm brain, is predicted in one window: 2-3x
less computation than overlapping 128^3 windows, peak memory about 5 GB on CPU for the paper
network; on the demo model a whole-volume window gave the same held-out Dice as training-size
windows), optional flip test-time augmentation, probabilities resampled back to the input grid,
threshold 0.5, optional removal of small connected components / all but the largest. Masks are
written in the geometry of the patient's first sequence (they overlay the input in ITK-SNAP / 3D
Slicer) as ``<MASK_DIR>/<patient>.nii.gz``: a whole-tumour model writes {0, 1} (1 = tumour); a
regions model writes BraTS labels (1 = necrotic/non-enhancing core, 2 = oedema, ET label 4 or 3).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from gliorad.cohort import Cohort
from gliorad.errors import GlioradInputError
from gliorad.io import array_to_image, file_hash, write_image, write_json
from gliorad.progress import ProgressBar
from gliorad.provenance import read_record
from gliorad.segmentation.config import SegmentationConfig, validate_config
from gliorad.segmentation.data import Case, load_case, resample_to, usable_ids, versions

__all__ = [
    "DTYPES",
    "FoldEnsemble",
    "SegmentationModel",
    "build_network",
    "fold_agreement",
    "foreground_box",
    "inference_window",
    "label_names",
    "load_model",
    "mask_path",
    "predict_case",
    "predict_cohort",
    "predict_volume",
    "prepare_model",
    "probabilities_to_labels",
    "read_case",
    "remove_small_components",
    "segment_case",
    "sliding_window_predict",
]

#: The torch dtype of each of :data:`~gliorad.segmentation.config.PRECISIONS`.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Windows predicted together on a CUDA GPU (at least; ``sw_batch_size`` when larger): the
#: Gaussian-weighted result does not depend on it (eval mode), only the GPU's use does.
CUDA_WINDOW_BATCH = 4


class FoldEnsemble(torch.nn.Module):
    """The networks of a k-fold training as one network: the logit of the mean of their sigmoid
    probabilities (so a sigmoid of its output is the folds' mean probability, nnU-Net's
    ensembling). Its weights are the members' under ``members.<i>.``."""

    def __init__(self, members: Sequence[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([torch.sigmoid(m(x).float()) for m in self.members]).mean(0)
        return torch.logit(prob, eps=1e-6)


def build_network(cfg: SegmentationConfig, *, members: bool = True) -> torch.nn.Module:
    """The (untrained) U-Net of ``cfg``: its sequences in, one channel per output region out;
    with ``folds`` > 1 (and ``members``) a :class:`FoldEnsemble` of ``folds`` of them."""
    from gliorad.nets import RecombinationUNet

    n = cfg.net

    def one() -> torch.nn.Module:
        return RecombinationUNet(3, len(cfg.sequences), cfg.out_channels, features=n.features,
                                 bottleneck=n.bottleneck, expand_channels=n.expand_channels,
                                 se_reduction=n.se_reduction, strides=n.strides,
                                 deep_supervision=n.deep_supervision)

    if cfg.folds > 1 and members:
        return FoldEnsemble([one() for _ in range(cfg.folds)])
    return one()


# ------------------------------------------------------------------------------ sliding window
def sliding_window_predict(
    image: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    tta: bool = False,
) -> torch.Tensor:
    """``predictor`` over ``image`` ``(B, C, *spatial)`` in windows of ``roi_size`` (MONAI, Gaussian
    weighting; windows larger than the image are padded), optionally averaged over every
    combination of flips of the spatial axes. Returns ``(B, K, *spatial)``, any spatial size."""
    from monai.inferers import sliding_window_inference

    if image.ndim < 3:
        raise GlioradInputError(f"image of shape {tuple(image.shape)}; expected (batch, channels, *spatial)")
    nd = image.ndim - 2
    if len(roi_size) != nd:
        raise GlioradInputError(f"roi_size {tuple(roi_size)} has {len(roi_size)} axes; the image has {nd}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(x, roi_size, sw_batch_size, predictor, overlap=overlap,
                                        mode="gaussian")

    if not tta:
        return run(image)
    total = None
    flips = [[a + 2 for a in range(nd) if mask >> a & 1] for mask in range(2**nd)]
    for axes in flips:
        out = run(torch.flip(image, axes) if axes else image)
        out = torch.flip(out, axes) if axes else out
        total = out if total is None else total + out
    return total / len(flips)


def _predictor(model: torch.nn.Module, device: torch.device, precision: str,
               activation: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    dtype = DTYPES[precision]
    cl = device.type == "cpu"

    def predict(x: torch.Tensor) -> torch.Tensor:
        if cl:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = model(x)
        y = y.float()
        return torch.sigmoid(y) if activation else y

    return predict


def foreground_box(mask: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    """Bounding box of ``mask`` widened by ``margin`` voxels (clipped to the array)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def inference_window(shape: Sequence[int], cfg: SegmentationConfig) -> tuple[int, ...]:
    """The window used on a (cropped) volume of ``shape``: the volume itself when it has at most
    ``inference.max_single_window_voxels`` voxels, else ``roi_size``."""
    if 0 < int(np.prod(shape)) <= cfg.inference.max_single_window_voxels:
        return tuple(int(n) for n in shape)
    return tuple(cfg.roi_size)


def predict_volume(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray,
                   cfg: SegmentationConfig, device: torch.device, *, activation: bool = True) -> np.ndarray:
    """Per-channel probabilities (``activation=False``: logits) of ``image`` (C, z, y, x), predicted
    inside the bounding box of ``brain`` when ``inference.crop_foreground`` (0 / -20 outside)."""
    inf = cfg.inference
    box = foreground_box(brain) if inf.crop_foreground else tuple(slice(None) for _ in range(3))
    x = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)]))[None].to(device)
    roi = inference_window(x.shape[2:], cfg)
    batch = max(inf.sw_batch_size, CUDA_WINDOW_BATCH) if device.type == "cuda" else inf.sw_batch_size
    model.eval()
    with torch.inference_mode():
        y = sliding_window_predict(x, _predictor(model, device, inf.precision, activation),
                                   roi, inf.overlap, batch, inf.tta)
    out = np.zeros((y.shape[1], *image.shape[1:]), np.float32)
    if not activation:
        out[:] = -20.0  # logit of "surely background" outside the box
    out[(slice(None), *box)] = y[0].cpu().numpy()
    return out


def remove_small_components(mask: np.ndarray, min_voxels: int = 0, keep_largest: bool = False) -> np.ndarray:
    """Drop connected components (26-connectivity) below ``min_voxels``, or all but the largest."""
    from scipy import ndimage

    if not mask.any() or (min_voxels <= 1 and not keep_largest):
        return mask.astype(bool)
    lab, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    sizes = np.bincount(lab.ravel())[1:]
    keep = sizes >= max(min_voxels, 1)
    if keep_largest:
        keep = np.zeros(n, bool)
        keep[int(np.argmax(sizes))] = True
    return np.concatenate([[False], keep])[lab]


def probabilities_to_labels(prob: np.ndarray, cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]],
                            voxel_ml: float) -> np.ndarray:
    """Threshold, post-process and encode: {0,1} (whole tumour) or BraTS labels (regions)."""
    inf = cfg.inference
    masks = prob >= inf.threshold
    min_vox = math.ceil(inf.min_component_ml / voxel_ml) if inf.min_component_ml > 0 else 0
    wt = remove_small_components(masks[0], min_vox, inf.keep_largest)
    if cfg.label_mode == "wt":
        return wt.astype(np.uint8)
    tc = masks[1] & wt
    et = masks[2] & tc
    out = np.zeros(wt.shape, np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = regions["ET"][0]
    return out


def fold_agreement(probs: Sequence[np.ndarray], threshold: float) -> float:
    """Mean pairwise Dice of the folds' whole-tumour masks (channel 0 at ``threshold``): 1 when
    the folds agree (two empty masks agree), low when they segment different things."""
    from gliorad.segmentation.evaluate import dice_score

    masks = [p[0] >= threshold for p in probs]
    pairs = [dice_score(a, b) for i, a in enumerate(masks) for b in masks[i + 1:]]
    return float(np.mean(pairs))


def predict_case(model: torch.nn.Module, case: Case, cfg: SegmentationConfig,
                 regions: Mapping[str, Sequence[int]], device: torch.device,
                 record: dict[str, Any] | None = None) -> np.ndarray:
    """Label array (z, y, x) in the patient's input geometry. A :class:`FoldEnsemble` is
    predicted fold by fold, the probabilities averaged; ``record`` (when given) then receives
    ``fold_agreement`` (:func:`fold_agreement`, on the working grid)."""
    if isinstance(model, FoldEnsemble):
        probs = [predict_volume(m, case.image, case.brain, cfg, device) for m in model.members]
        prob = np.mean(probs, axis=0)
        if record is not None:
            record["fold_agreement"] = fold_agreement(probs, cfg.inference.threshold)
    else:
        prob = predict_volume(model, case.image, case.brain, cfg, device)
    geo = case.grid
    if case.resampled:
        chans = []
        for p in prob:
            img = sitk.GetImageFromArray(p)
            img.SetSpacing(geo.spacing)
            img.SetOrigin(geo.origin)
            img.SetDirection(geo.direction)
            chans.append(sitk.GetArrayFromImage(resample_to(img, case.native, sitk.sitkLinear)))
        prob = np.stack(chans)
        geo = case.native
    voxel_ml = float(np.prod(geo.spacing)) / 1000.0
    return probabilities_to_labels(prob, cfg, regions, voxel_ml)


@dataclass
class SegmentationModel:
    """A trained model folder loaded for prediction."""

    network: torch.nn.Module
    config: SegmentationConfig
    regions: dict[str, list[int]]
    path: Path
    weights_sha256: str


def load_model(model_dir: str | Path, inference: Mapping[str, Any] | None = None) -> SegmentationModel:
    """Rebuild the network of a model folder; ``inference`` overrides inference settings."""
    from gliorad.training import load_weights

    d = Path(model_dir)
    cfg_path, weights = d / "config.json", d / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise GlioradInputError(f"{p}: not found; expected a model folder made by 'gliorad segment train'")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
        seg = data["segmentation"]
        regions = data["regions"]
    except (json.JSONDecodeError, KeyError) as err:
        raise GlioradInputError(f"{cfg_path}: not a gliorad segmentation model config ({err})") from err
    if inference:
        seg = {**seg, "inference": {**seg.get("inference", {}), **dict(inference)}}
    cfg = validate_config(seg, str(cfg_path))
    net = build_network(cfg)
    load_weights(net, weights)
    net.eval()
    return SegmentationModel(net, cfg, regions, d, file_hash(weights))


def label_names(cfg: SegmentationConfig, regions: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """What each label value of the model's masks means (``prediction.json``'s ``labels``)."""
    if cfg.label_mode == "wt":
        return {"1": "whole tumour"}
    return {"1": "necrotic / non-enhancing core", "2": "oedema",
            str(regions["ET"][0]): "enhancing tumour"}


def prepare_model(model: SegmentationModel) -> torch.device:
    """Put the network on its inference device (``inference.device``), in the channels-last-3D
    memory layout on CPU (the layout :func:`predict_volume` feeds it), once per model before
    :func:`segment_case`; returns the device."""
    from gliorad.training import resolve_device

    device = resolve_device(model.config.inference.device)
    model.network.to(device)
    if device.type == "cpu":
        model.network.to(memory_format=torch.channels_last_3d)
    return device


def segment_case(model: SegmentationModel, cohort: Cohort, pid: str, device: torch.device,
                 case: Case | None = None) -> tuple[sitk.Image, dict[str, Any]]:
    """The tumour mask of one patient: its sequences read and resampled to the model's grid
    (:func:`~gliorad.segmentation.data.load_case`), predicted and post-processed
    (:func:`predict_case`), as a label image on the grid of the patient's first sequence, and a
    record (predicted box and window, native and working spacing, tumour voxels).

    The unit of work of :func:`predict_cohort` and of
    :func:`gliorad.predict.predict_patient`; ``device`` is :func:`prepare_model`'s. ``case``: the
    patient already read (:func:`read_case`), e.g. while the previous one was predicted.
    """
    cfg = model.config
    case = case if case is not None else read_case(model, cohort, pid)
    agreement: dict[str, Any] = {}
    labels = predict_case(model.network, case, cfg, model.regions, device, agreement)
    box = foreground_box(case.brain) if cfg.inference.crop_foreground else case.brain.shape
    box_shape = [b.stop - b.start for b in box] if cfg.inference.crop_foreground else list(box)
    record = {"predicted_box": box_shape, "window": list(inference_window(box_shape, cfg)),
              "native_spacing": list(case.native.spacing),
              "working_spacing": list(case.grid.spacing),
              "tumour_voxels": int((labels > 0).sum()), **agreement}
    return array_to_image(labels, case.native), record


def read_case(model: SegmentationModel, cohort: Cohort, pid: str) -> Case:
    """Patient ``pid``'s sequences read and prepared for ``model`` (:func:`segment_case`'s input)."""
    return load_case(cohort, pid, model.config, with_label=False)


class _ReadAhead:
    """Reads the next patient of ``order`` in a background thread while this one is predicted
    (:func:`predict_cohort` on a GPU: the reading, resampling and z-scoring on the CPU overlap the
    GPU's work); a patient's reading error is raised when that patient is asked for."""

    def __init__(self, read: Callable[[str], Case], order: Sequence[str]):
        from concurrent.futures import ThreadPoolExecutor

        self.read, self.order = read, list(order)
        self.next = {a: b for a, b in zip(self.order, self.order[1:])}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="gliorad-read-ahead")
        self.pending: dict[str, Any] = {}

    def get(self, pid: str) -> Case:
        fut = self.pending.pop(pid, None)
        nxt = self.next.get(pid)
        if nxt is not None and nxt not in self.pending:
            self.pending[nxt] = self.pool.submit(self.read, nxt)
        return fut.result() if fut is not None else self.read(pid)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def mask_path(mask_dir: str | Path, pid: str) -> Path:
    """Where :func:`predict_cohort` writes the mask of patient ``pid``."""
    return Path(mask_dir) / f"{pid}.nii.gz"


def predict_cohort(
    cohort: Cohort,
    model: SegmentationModel,
    mask_dir: str | Path,
    *,
    ids: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Any = None,
    read_ahead: bool | None = None,
) -> dict[str, Any]:
    """Predict a mask for every patient that has the model's sequences; returns the provenance.

    Patients whose mask exists and was made by the same model, settings and input files are
    skipped unless ``overwrite``. ``<mask_dir>/prediction.json`` records, per patient, the input
    hashes, the grid and the seconds taken. ``executor`` (:class:`gliorad.executor.Executor`):
    where the patients are segmented (None: one after the other in this process). ``read_ahead``:
    read the next patient in a background thread while one is predicted (None: on a CUDA GPU, in
    this process; the masks are the same either way).
    """
    cfg = model.config
    device = prepare_model(model)
    out = Path(mask_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = usable_ids(cohort, cfg, ids, need_seg=False)
    if not chosen:
        raise GlioradInputError(f"{cohort.root}: no patient has all of {', '.join(cfg.sequences)}")
    prov_path = out / "prediction.json"
    old = read_record(prov_path)
    settings = {"model": str(model.path), "weights_sha256": model.weights_sha256,
                "inference": cfg.inference.model_dump(mode="json")}
    same_model = old.get("settings", {}) == settings
    if old and not same_model and not overwrite and any(mask_path(out, p).exists() for p in chosen):
        raise GlioradInputError(
            f"{out}: holds masks from another model or settings; pass overwrite (--overwrite) or "
            "choose another folder"
        )
    patients = dict(old.get("patients", {})) if same_model else {}
    todo: dict[str, dict[str, str]] = {}  # patient -> input hashes, for those to predict
    for pid in chosen:
        hashes = {s: file_hash(cohort.image_path(pid, s)) for s in cfg.sequences}
        prev = patients.get(pid)
        if overwrite or not mask_path(out, pid).is_file() or not prev or prev.get("inputs") != hashes:
            todo[pid] = hashes

    def one(pid: str, model: SegmentationModel, cohort: Cohort, device: torch.device | None
            ) -> dict[str, Any]:  # one patient, where the executor runs it (a worker: device None)
        t0 = time.perf_counter()
        read = (ahead.get(pid),) if ahead is not None else ()  # the patient read ahead, if so
        mask, record = segment_case(model, cohort, pid, device or prepare_model(model), *read)
        write_image(mask, mask_path(out, pid))
        return {"mask": mask_path(out, pid).name, "seconds": time.perf_counter() - t0, **record}

    def done(i: int, result: Any) -> None:
        pid = order[i]
        if isinstance(result, CaseError):
            failed.append(f"patient {pid}: {result.reason}")
        else:
            patients[pid] = {"inputs": todo[pid], **result}
            write_json(_prediction_json(settings, cfg, model, patients), prov_path)
        bar.advance()

    from gliorad.executor import CaseError, run_cases

    order, failed = list(todo), []
    remote = executor is not None and executor.distributed
    if read_ahead is None:
        read_ahead = device.type == "cuda"
    ahead = _ReadAhead(lambda p: read_case(model, cohort, p), order) if read_ahead and not remote else None
    bar = ProgressBar(progress, len(chosen), "predict", completed=len(chosen) - len(todo))
    try:
        run_cases(one, order, executor=executor, names=order, on_result=done,
                  shared={"model": model, "cohort": cohort, "device": None if remote else device})
    finally:
        bar.close()
        if ahead is not None:
            ahead.close()
    if failed:
        write_json(_prediction_json(settings, cfg, model, patients), prov_path)
        raise GlioradInputError([(f"segmentation failed for {len(failed)} patient(s); the others' "
                                 f"masks are in {out}"), *failed])
    prov = _prediction_json(settings, cfg, model, patients)
    write_json(prov, prov_path)
    return prov


def _prediction_json(settings, cfg: SegmentationConfig, model: SegmentationModel, patients) -> dict:
    return {"settings": settings, "label_mode": cfg.label_mode, "regions": model.regions,
            "labels": label_names(cfg, model.regions), "sequences": cfg.sequences,
            "versions": versions(), "patients": patients}
