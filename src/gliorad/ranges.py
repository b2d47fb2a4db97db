"""Training ranges kept in a model bundle, and the out-of-distribution check of ``predict``.

A model's output means little for a patient unlike the patients it was fitted on, and the
models themselves do not say so: an SVM or a Cox model returns a confident number for any input.
The bundle therefore keeps, over the training patients, the range of every quantity the models
depend on directly, and ``gliorad predict`` compares the new patient with it:

``features``   the features the grading model selected (its SVM's inputs) and the survival
               signature's features, each over the patients its model was fitted on
``signature``  the signature score of the survival training cohort (the cut-off and the
               nomograms were fitted on that range)
``intensity``  per sequence, statistics of the image's non-zero (head) voxels: mean, SD, 1st and
               99th percentile. An image that was not preprocessed as the training images were
               (raw scanner units instead of z-scores, a sequence in the wrong slot) shows here
               even when the features happen to look plausible

Each range records the training minimum, maximum, median and count. A value is out of range when
it lies outside ``[min - m, max + m]`` with ``m = MARGIN * (max - min)``: a new patient's value
can exceed the extremes of n training patients by chance (with probability about 2 / (n + 1) for
one feature), so the margin keeps the check for values clearly outside what the models saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "MARGIN",
    "column_ranges",
    "describe",
    "intensity_ranges",
    "intensity_stats",
    "out_of_range",
]

#: Widening of a training range on each side, as a fraction of its width.
MARGIN = 0.10
#: The intensity statistics of a sequence (:func:`intensity_stats`).
INTENSITY_STATS = ("mean", "sd", "p01", "p99")


def describe(values: Iterable[float]) -> dict[str, float] | None:
    """``{"n", "min", "max", "median"}`` of the finite values (None when there are none)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    return {"n": int(v.size), "min": float(v.min()), "max": float(v.max()),
            "median": float(np.median(v))}


def column_ranges(table: Any, columns: Iterable[str]) -> dict[str, dict[str, float]]:
    """:func:`describe` of each of ``columns`` of a DataFrame (columns it lacks are left out)."""
    out = {}
    for c in columns:
        if c in table.columns:
            d = describe(table[c].to_numpy(dtype=np.float64, na_value=np.nan))
            if d is not None:
                out[str(c)] = d
    return out


def intensity_stats(path: str | os.PathLike, max_voxels: int = 2_000_000) -> dict[str, float]:
    """Mean, SD, 1st and 99th percentile of an image's non-zero voxels (the head after skull
    stripping; the whole field of view otherwise), on a regular subsample of at most
    ``max_voxels`` voxels. Empty dict for an image without non-zero voxels."""
    from gliorad.io import read_array

    arr, _ = read_array(path, np.float32)
    step = max(1, int(np.ceil((arr.size / max_voxels) ** (1 / 3)))) if arr.size > max_voxels else 1
    v = arr[::step, ::step, ::step] if arr.ndim == 3 else arr
    v = v[(v != 0) & np.isfinite(v)]
    if not v.size:
        return {}
    p01, p99 = np.percentile(v, [1, 99])
    return {"mean": float(v.mean()), "sd": float(v.std()), "p01": float(p01), "p99": float(p99)}


def intensity_ranges(files: Mapping[str, Mapping[str, Any]], n_jobs: int = 1
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """Per sequence and statistic, the range of :func:`intensity_stats` over patients
    (``files``: patient -> sequence -> image path)."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(pid, seq, path) for pid, seqs in files.items() for seq, path in seqs.items()]
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        stats = list(pool.map(lambda j: intensity_stats(j[2]), jobs))
    per: dict[str, dict[str, list[float]]] = {}
    for (_, seq, _), st in zip(jobs, stats, strict=True):
        for k, v in st.items():
            per.setdefault(seq, {}).setdefault(k, []).append(v)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seq, by_stat in per.items():
        ranges = {k: describe(v) for k, v in by_stat.items()}
        out[seq] = {k: d for k, d in ranges.items() if d is not None}
    return out


def out_of_range(ranges: Mapping[str, Mapping[str, float]], values: Mapping[str, float],
                 what: str, margin: float = MARGIN) -> list[dict[str, Any]]:
    """One record per value of ``values`` outside its training range widened by ``margin``
    (names without a range, and missing values, are not checked)::

        {"what", "name", "value", "training_min", "training_max", "n_training", "message"}
    """
    out = []
    for name, r in ranges.items():
        if name not in values or values[name] is None:
            continue
        x = float(values[name])
        if not np.isfinite(x):
            continue
        lo, hi = float(r["min"]), float(r["max"])
        pad = margin * (hi - lo)
        if lo - pad <= x <= hi + pad:
            continue
        side = "above" if x > hi else "below"
        out.append({
            "what": what, "name": name, "value": x, "training_min": lo, "training_max": hi,
            "n_training": int(r.get("n", 0)),
            "message": (f"{what} {name} = {x:.4g} is {side} the range of the {int(r.get('n', 0))} "
                        f"training patients ({lo:.4g} to {hi:.4g}): this patient is unlike the "
                        "patients the models were fitted on; interpret the prediction with caution"),
        })
    return out
