"""The sanity check of each predicted mask, and what ``gliorad run`` does with one that fails.

Per mask (:func:`mask_measures`): the tumour volume in ml (voxels with a label > 0), the number of
connected components (26-connectivity, as :func:`~gliorad.segmentation.infer.remove_small_components`)
and the share of the tumour in the largest one. The volume is compared with the whole-tumour
volumes of the manual masks the U-Net trained on (:func:`reference_volumes`,
:func:`volume_bounds`, settings :class:`~gliorad.segmentation.config.MaskCheckConfig`):

``empty``
    no tumour voxel;
``small``
    below ``small`` x the ``quantile`` of the training volumes (defaults 0.5 x the 1st
    percentile);
``large``
    above ``large`` x the ``1 - quantile`` of the training volumes (defaults 2 x the 99th
    percentile);
``disagree``
    a k-fold ensemble's folds disagree: the mean pairwise Dice of their masks
    (:func:`~gliorad.segmentation.infer.fold_agreement`, recorded per patient in
    ``prediction.json``) is below ``min_fold_agreement`` (default 0.5); a single network has no
    such check;
``ok``
    otherwise.

With fewer than :data:`MIN_REFERENCE` training volumes there are no volume bounds and only empty
masks (and disagreeing folds) are flagged. The components are reported, not flagged on.

:func:`handle_flagged` applies a run's ``segmentation.flagged``: ``manual`` replaces a flagged mask
in the mask folder by the patient's manual mask where one exists (action
``replaced_by_manual``), else, and always with ``exclude``, the mask is removed from the folder
so that the stages reading it leave the patient out (action ``excluded``); the raw prediction is
kept in a separate folder. Passing masks are ``kept``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gliorad.segmentation.config import FLAGGED, MaskCheckConfig

__all__ = ["ACTIONS", "FLAGS", "MIN_REFERENCE", "QC_COLUMNS", "VolumeBounds", "check_masks",
           "flag_volume", "handle_flagged", "mask_measures", "qc_summary", "reference_volumes",
           "volume_bounds"]

#: The flags, passing first.
FLAGS = ("ok", "empty", "small", "large", "disagree")
#: What happened to a mask: kept, replaced by the manual one, or left out (patient excluded).
ACTIONS = ("kept", "replaced_by_manual", "excluded")
#: Training volumes needed for the volume bounds (fewer: only empty masks are flagged).
MIN_REFERENCE = 5
#: The columns of the segment stage's ``qc.csv``.
QC_COLUMNS = ("patient_id", "volume_ml", "components", "largest_fraction", "fold_agreement",
              "flag", "reason", "action")


@dataclass(frozen=True)
class VolumeBounds:
    """The plausible whole-tumour volumes (ml): ``low`` and ``high`` are None without enough
    training volumes (``n`` < :data:`MIN_REFERENCE`)."""

    n: int
    quantile: float
    small: float
    large: float
    reference_low: float | None = None
    reference_high: float | None = None

    @property
    def low(self) -> float | None:
        return None if self.reference_low is None else self.small * self.reference_low

    @property
    def high(self) -> float | None:
        return None if self.reference_high is None else self.large * self.reference_high

    def _which(self, upper: bool) -> str:
        if self.quantile == 0:
            return "maximum" if upper else "minimum"
        q = round(100 * (1 - self.quantile if upper else self.quantile), 6)
        suffix = ("th" if not float(q).is_integer() or 10 <= int(q) % 100 <= 20
                  else {1: "st", 2: "nd", 3: "rd"}.get(int(q) % 10, "th"))
        return f"{q:g}{suffix} percentile"

    def rule(self) -> str:
        """The rule in words (report, console, ``qc.json``)."""
        if self.low is None:
            return (f"empty: no tumour voxel; no volume bounds ({self.n} training mask volume(s), "
                    f"{MIN_REFERENCE} needed)")
        return (f"empty: no tumour voxel; small: below {self.small:g} x the {self._which(False)} "
                f"of the {self.n} training patients' manual whole-tumour volumes "
                f"({self.low:.3g} ml); large: above {self.large:g} x their {self._which(True)} "
                f"({self.high:.3g} ml)")

    def as_json(self) -> dict[str, Any]:
        return {"n_reference": self.n, "quantile": self.quantile, "small": self.small,
                "large": self.large, "reference_low_ml": self.reference_low,
                "reference_high_ml": self.reference_high, "low_ml": self.low,
                "high_ml": self.high}


def volume_bounds(volumes_ml: Iterable[float], cfg: MaskCheckConfig | None = None
                  ) -> VolumeBounds:
    """The bounds from the training volumes (ml; empty manual masks are left out of them)."""
    cfg = cfg or MaskCheckConfig()
    v = np.asarray([float(x) for x in volumes_ml if float(x) > 0], float)
    base = {"n": int(v.size), "quantile": cfg.quantile, "small": cfg.small, "large": cfg.large}
    if v.size < MIN_REFERENCE:
        return VolumeBounds(**base)
    return VolumeBounds(**base, reference_low=float(np.quantile(v, cfg.quantile)),
                        reference_high=float(np.quantile(v, 1 - cfg.quantile)))


def flag_volume(volume_ml: float, bounds: VolumeBounds) -> tuple[str, str]:
    """``(flag, reason)`` of a mask of ``volume_ml`` (reason empty when ok)."""
    if volume_ml <= 0:
        return "empty", "no tumour voxel"
    if bounds.low is not None and volume_ml < bounds.low:
        return "small", (f"{volume_ml:.3g} ml < {bounds.small:g} x {bounds.reference_low:.3g} ml "
                         f"(the {bounds._which(False)} of {bounds.n} training masks)")
    if bounds.high is not None and volume_ml > bounds.high:
        return "large", (f"{volume_ml:.3g} ml > {bounds.large:g} x {bounds.reference_high:.3g} ml "
                         f"(the {bounds._which(True)} of {bounds.n} training masks)")
    return "ok", ""


def mask_measures(mask: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    """Volume (ml, labels > 0), connected components (26-connectivity) and the largest
    component's share of the tumour (None for an empty mask)."""
    from scipy import ndimage

    tumour = np.asarray(mask) > 0
    n = int(tumour.sum())
    if n == 0:
        return {"volume_ml": 0.0, "components": 0, "largest_fraction": None}
    lab, k = ndimage.label(tumour, structure=np.ones((3,) * tumour.ndim, bool))
    sizes = np.bincount(lab.ravel())[1:]
    return {"volume_ml": n * voxel_ml, "components": int(k),
            "largest_fraction": float(sizes.max()) / n}


def _read(path: Path) -> tuple[np.ndarray, float]:
    """A label image as an array and its voxel volume in ml."""
    import SimpleITK as sitk

    from gliorad.io import read_image

    img = read_image(path)
    return sitk.GetArrayFromImage(img), float(np.prod(img.GetSpacing())) / 1000.0


def reference_volumes(cohort: Any, ids: Iterable[str]) -> dict[str, float]:
    """Whole-tumour volume (ml) of the manual mask of each of ``ids`` that has one."""
    out = {}
    for pid in ids:
        seg = cohort.patients[pid].seg if pid in cohort.patients else None
        if seg is not None:
            arr, voxel_ml = _read(Path(seg))
            out[pid] = float((arr > 0).sum()) * voxel_ml
    return out


def check_masks(mask_dir: str | Path, ids: Iterable[str], bounds: VolumeBounds,
                agreement: Mapping[str, float] | None = None, min_agreement: float = 0.5):
    """The check of each patient's mask ``<mask_dir>/<id>.nii.gz`` (patients without one are
    left out): a table of :data:`QC_COLUMNS` with action ``kept`` (see :func:`handle_flagged`).
    ``agreement``: each patient's fold agreement (a k-fold ensemble's masks); a mask whose
    volume passes is flagged ``disagree`` below ``min_agreement``."""
    import pandas as pd

    from gliorad.segmentation.infer import mask_path

    rows = []
    for pid in ids:
        path = mask_path(mask_dir, pid)
        if not path.is_file():
            continue
        arr, voxel_ml = _read(path)
        m = mask_measures(arr, voxel_ml)
        flag, reason = flag_volume(m["volume_ml"], bounds)
        agree = (agreement or {}).get(pid)
        if flag == "ok" and agree is not None and agree < min_agreement:
            flag, reason = "disagree", (f"the folds' masks agree with mean pairwise Dice "
                                        f"{agree:.3f} < {min_agreement:g}")
        rows.append({"patient_id": pid, **m, "fold_agreement": agree, "flag": flag,
                     "reason": reason, "action": "kept"})
    return pd.DataFrame(rows, columns=list(QC_COLUMNS))


def handle_flagged(table, mask_dir: str | Path, raw_dir: str | Path, cohort: Any,
                   flagged: str = "manual", label_mode: str = "wt"):
    """Apply ``flagged`` (:data:`~gliorad.segmentation.config.FLAGGED`) to each mask of
    ``table`` (:func:`check_masks`) whose flag is not ``ok``: its raw prediction is moved to
    ``raw_dir``; with ``manual`` and a manual mask, the manual mask (whole tumour as {0, 1} for
    label mode ``wt``, its labels for ``regions``) takes its place in ``mask_dir``; else the
    patient has no mask there. Returns the table with ``action`` filled in."""
    import SimpleITK as sitk

    from gliorad.errors import check_option
    from gliorad.io import read_image, write_image
    from gliorad.segmentation.infer import mask_path

    check_option("segmentation.flagged", flagged, FLAGGED)
    out = table.copy()
    raw = Path(raw_dir)
    for i, row in out[out["flag"] != "ok"].iterrows():
        pid = str(row["patient_id"])
        target = mask_path(mask_dir, pid)
        raw.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), str(mask_path(raw, pid)))
        seg = cohort.patients[pid].seg if pid in cohort.patients else None
        if flagged == "manual" and seg is not None:
            img = read_image(seg)
            arr = sitk.GetArrayFromImage(img)
            labels = (arr > 0) if label_mode == "wt" else arr
            new = sitk.GetImageFromArray(labels.astype(np.uint8))
            new.CopyInformation(img)
            write_image(new, target)
            out.at[i, "action"] = "replaced_by_manual"
        else:
            out.at[i, "action"] = "excluded"
    return out


def qc_summary(table, bounds: VolumeBounds, flagged: str, min_agreement: float | None = None
               ) -> dict[str, Any]:
    """``qc.json``: counts by flag and action, the bounds and rule, and the flagged masks;
    ``min_agreement`` is given when the masks came from a k-fold ensemble."""
    bad = table[table["flag"] != "ok"]
    folds = (f"disagree: the folds' mean pairwise Dice below {min_agreement:g}"
             if min_agreement is not None else None)
    return {
        "n_masks": len(table),
        "counts": {f: int((table["flag"] == f).sum()) for f in FLAGS},
        "actions": {a: int((table["action"] == a).sum()) for a in ACTIONS},
        "flagged_handling": flagged,
        "rule": bounds.rule() + (f"; {folds}" if folds else ""),
        "bounds": bounds.as_json(),
        **({} if folds else {"not_checked": "disagreement between folds (one network, no "
                                              "k-fold ensemble)"}),
        "flagged": [_record(r) for r in bad.to_dict("records")],
    }


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"patient_id": str(row["patient_id"]), "volume_ml": float(row["volume_ml"]),
            "flag": row["flag"], "reason": row["reason"], "action": row["action"]}
