"""Writing a grading run to a folder: metrics, predictions, selection, ROC, provenance.

A run's folder is written as a whole: files go to a hidden sibling folder that replaces the
destination only when every file is written, so a crash never leaves a half-written run. A run
whose inputs and settings are unchanged (same ``fingerprint`` in ``provenance.json``) is skipped;
a different run into a non-empty folder needs ``overwrite=True``.

Files
-----
``metrics.json``           headline metrics (see :mod:`gliorad.grading.evaluate`), class counts,
                           positive class, scheme, per-repeat values, notes
``predictions.csv``        ``patient_id, label, probability, fold, repeat, split`` (label 1 = HGG)
``selected_features.csv``  ``feature, n_selected, frequency, ...`` over all fitted folds
``folds.json``             per fold: selected features, ``C``/``gamma``, inner-CV AUC, warnings
``roc.csv`` / ``roc.png``  ROC curve points per repeat (or per split part) and the figure
``provenance.json``        settings, versions, input hashes, seed, command, fingerprint

With ``grading.model: auto`` also (:data:`CANDIDATE_FILES`, :mod:`gliorad.grading.comparison`):
``candidates.csv`` (every candidate's outer AUC with DeLong CI, paired DeLong P against the
paper's recipe, how often the inner search chose it, selection frequency),
``candidate_predictions.csv`` and ``candidate_selection.csv``; ``metrics.json`` then has a
``candidates`` block and ``folds.json`` each fold's choice and inner scores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliorad.grading.evaluate import GradingResult, roc_table
from gliorad.io import atomic_path, write_json, write_text
from gliorad.provenance import record
from gliorad.provenance import run_folder as shared_run_folder

__all__ = ["CANDIDATE_FILES", "RUN_FILES", "plot_roc", "provenance", "run_folder",
           "write_grading_outputs"]

RUN_FILES = ("metrics.json", "predictions.csv", "selected_features.csv", "folds.json",
             "roc.csv", "roc.png", "provenance.json")
#: Written besides :data:`RUN_FILES` when the model was chosen among candidates.
CANDIDATE_FILES = ("candidates.csv", "candidate_predictions.csv", "candidate_selection.csv")


#: The libraries a grading result depends on (besides gliorad and Python).
PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "skops")


def provenance(settings: Mapping[str, Any], inputs: Mapping[str, str | Path],
               command: str | None = None) -> dict[str, Any]:
    """Settings, versions, input file hashes and a fingerprint of what decides the result
    (:func:`gliorad.provenance.record`)."""
    return record(settings, inputs, command, PACKAGES)


@contextlib.contextmanager
def run_folder(out: str | Path, fingerprint: str, overwrite: bool = False,
               files: tuple[str, ...] = RUN_FILES) -> Iterator[Path | None]:
    """:func:`gliorad.provenance.run_folder` with the grading run's files."""
    with shared_run_folder(out, fingerprint, overwrite, files) as tmp:
        yield tmp


def write_csv(df: pd.DataFrame, path: Path) -> None:
    write_text(df.to_csv(index=False, float_format="%.10g"), path)


def _curves(result: GradingResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pred = result.predictions
    if result.scheme == "split":
        groups = [(name, pred[pred["split"] == name]) for name in ("validation", "test")]
    else:
        groups = [(f"repeat {r}", pred[pred["repeat"] == r]) for r in sorted(pred["repeat"].unique())]
    return {name: (g["label"].to_numpy(), g["probability"].to_numpy())
            for name, g in groups if len(g)}


def roc_figure(curves: Mapping[str, tuple[Any, Any]], title: str):
    """ROC curves (one per entry: ``name -> (labels 0/1, scores)``) with DeLong AUC and 95% CI in
    the legend, as a matplotlib Figure (used by :func:`plot_roc` and the HTML report)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gliorad import stats

    fig = Figure(figsize=(5.2, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
    for name, (y, s) in curves.items():
        roc = roc_table(y, s)
        a = stats.roc_auc_ci(y, s)
        ax.plot(roc["fpr"], roc["tpr"], lw=1.4,
                label=f"{name}: AUC {a.auc:.3f} ({a.ci_low:.3f}-{a.ci_high:.3f})")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (HGG true-positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_roc(curves: Mapping[str, tuple[Any, Any]], path: str | Path, title: str) -> Path:
    """:func:`roc_figure` written as PNG (atomic)."""
    fig = roc_figure(curves, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def write_grading_outputs(result: GradingResult, folder: str | Path,
                          prov: Mapping[str, Any], extra_metrics: Mapping[str, Any] | None = None,
                          title: str = "HGG vs LGG") -> None:
    """Write :data:`RUN_FILES` for ``result`` into ``folder``."""
    folder = Path(folder)
    metrics = {**result.metrics, **(extra_metrics or {}), "notes": result.notes +
               list(result.metrics.get("notes", []))}
    write_json(metrics, folder / "metrics.json")
    write_csv(result.predictions, folder / "predictions.csv")
    write_csv(result.selection, folder / "selected_features.csv")
    write_json(result.fits, folder / "folds.json")
    if result.candidates is not None:
        for name, table in zip(CANDIDATE_FILES, (result.candidates.table,
                                                 result.candidates.predictions,
                                                 result.candidates.selection), strict=True):
            write_csv(table, folder / name)
    curves = _curves(result)
    rows = [roc_table(y, s).assign(curve=name) for name, (y, s) in curves.items()]
    write_csv(pd.concat(rows, ignore_index=True)[["curve", "fpr", "tpr", "threshold"]],
              folder / "roc.csv")
    scheme = ("repeated CV, out-of-fold" if result.scheme == "cv" else "held-out split")
    plot_roc(curves, folder / "roc.png", f"{title} ({scheme})")
    write_json(dict(prov), folder / "provenance.json")
