"""Every file the survival analysis writes, and their names.

:class:`AnalysisFiles` and :class:`CVFiles` own the file names of an analysis folder
(:func:`write_analysis`: ``gliorad survival fit|validate``, the run's ``survival/analysis``) and
of a cross-validation folder (:func:`write_cv`: ``gliorad survival cv``); readers (the report)
take the names from them. The model bundle's files are owned by :mod:`gliorad.survival.bundle`.

Analysis folder::

    metrics.json            SurvivalAnalysis.metrics() (+ table_cleaning)
    signature.json          formula, features, weights, centring, cut-off
    signature_formula.csv   signature_ranking.csv   sequence_choice.csv
    table_univariate.csv    table3_integrated[_long].csv   table4_clinical[_long].csv
    nomogram_<model>.png    km_<cohort>.png   calibration_<model>_<cohort>_<t>d.png  (+ .svg)
    predictions_<cohort>.csv   calibration.csv   provenance.json   bundle/
    candidates.csv          the model search (survival.model other than paper, issue 18)

Cross-validation folder: ``metrics.json``, ``cv_folds.csv``, ``cv_out_of_fold.csv``,
``km_cv.png`` (+ ``.svg``), ``provenance.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from gliorad.files import File
from gliorad.survival.config import DAYS_PER_YEAR, EVENT, SIGNATURE, TIME, time_label
from gliorad.survival.crossval import CVResult
from gliorad.survival.evaluation import SurvivalAnalysis, jsonable

__all__ = [
    "AnalysisFiles",
    "CVFiles",
    "cohort_slug",
    "paper_table",
    "save_figure",
    "write_analysis",
    "write_cv",
    "write_km",
]


# ============================================================================ file names
@dataclass(frozen=True)
class _OutputFolder:
    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    metrics = File("metrics.json")
    provenance = File("provenance.json")


@dataclass(frozen=True)
class AnalysisFiles(_OutputFolder):
    """The files of an analysis folder written by :func:`write_analysis`."""

    #: Paper tables by model: ``<key>.csv`` (Tables 3/4 layout) and ``<key>_long.csv``.
    PAPER_TABLES: ClassVar[dict[str, str]] = {
        "integrated": "table3_integrated", "clinical": "table4_clinical"}

    signature = File("signature.json")
    signature_formula = File("signature_formula.csv")
    signature_ranking = File("signature_ranking.csv")
    sequence_choice = File("sequence_choice.csv")
    univariate = File("table_univariate.csv")
    calibration = File("calibration.csv")
    bundle = File("bundle")
    #: The model search's candidates (:meth:`gliorad.survival.search.ModelSearch.table`).
    candidates = File("candidates.csv")

    def paper_table(self, which: str, long: bool = False) -> Path:
        """Table 3 (``integrated``) or 4 (``clinical``); ``long``: the numeric table."""
        return self.folder / f"{self.PAPER_TABLES[which]}{'_long' if long else ''}.csv"

    def nomogram(self, which: str) -> Path:
        return self.folder / f"nomogram_{which}.png"

    def predictions(self, cohort: str) -> Path:
        return self.folder / f"predictions_{cohort_slug(cohort)}.csv"

    def km(self, cohort: str) -> Path:
        return self.folder / f"km_{cohort_slug(cohort)}.png"

    def calibration_figure(self, which: str, cohort: str, t: float) -> Path:
        return self.folder / f"calibration_{which}_{cohort_slug(cohort)}_{t:g}d.png"


@dataclass(frozen=True)
class CVFiles(_OutputFolder):
    """The files of a cross-validation folder written by :func:`write_cv`."""

    folds = File("cv_folds.csv")
    out_of_fold = File("cv_out_of_fold.csv")
    km = File("km_cv.png")


# ============================================================================ tables and figures
def _format_hr(r: pd.Series) -> str:
    return f"{r['hr']:.2f} ({r['ci_lower']:.2f}-{r['ci_upper']:.2f})"


def _format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def paper_table(tables: Mapping[str, pd.DataFrame | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 3/4 layout: one row per coefficient label, ``<cohort> HR (95% CI)`` and
    ``<cohort> P`` columns; and the long numeric table."""
    longs = []
    for cohort, t in tables.items():
        if t is not None:
            longs.append(t.assign(cohort=cohort))
    if not longs:
        return pd.DataFrame(), pd.DataFrame()
    long = pd.concat(longs, ignore_index=True)
    labels = list(dict.fromkeys(long["label"]))
    wide = pd.DataFrame({"Characteristic": labels})
    for cohort, t in tables.items():
        hr_col, p_col = f"{cohort} HR (95% CI)", f"{cohort} P"
        if t is None:
            wide[hr_col], wide[p_col] = "not estimable", ""
            continue
        by = t.set_index("label")
        wide[hr_col] = [(_format_hr(by.loc[lab]) if lab in by.index else "not in model") for lab in labels]
        wide[p_col] = [(_format_p(by.loc[lab, "p_value"]) if lab in by.index else "") for lab in labels]
    return wide, long


def save_figure(fig: Any, path: Any) -> None:
    """The figure as PNG at ``path`` and as vector SVG beside it (same name, ``.svg``)."""
    from gliorad.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    import matplotlib

    with atomic_path(Path(path).with_suffix(".svg")) as tmp, \
            matplotlib.rc_context({"svg.hashsalt": "gliorad"}):  # same bytes on every run
        fig.savefig(tmp, format="svg", metadata={"Date": None})


def cohort_slug(text: str) -> str:
    """A cohort name as it stands in file names: letters, digits, ``-`` and ``_`` kept, every
    other character ``_`` (``km_<slug>.png``, :class:`AnalysisFiles`)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


def write_km(path: Any, data: pd.DataFrame, title: str) -> None:
    """Kaplan-Meier figure of the signature risk groups (years, numbers at risk), PNG + SVG."""
    from gliorad.survival.plots import plot_km

    groups = pd.Series(pd.Categorical(data[SIGNATURE], ["low", "high"]), index=data.index)
    groups = groups.cat.remove_unused_categories()
    years = data[TIME] / DAYS_PER_YEAR
    ticks = np.arange(0, math.floor(years.max()) + 1)
    fig = plot_km(years, data[EVENT], groups, xlabel="Time (years)", title=title, risk_times=ticks,
                  show_logrank=groups.nunique() > 1 and bool(data[EVENT].sum() > 0))
    save_figure(fig, path)


# ============================================================================ writers
def _write_metrics(metrics: dict[str, Any], path: Path,
                   table_cleaning: Mapping[str, Any] | None) -> None:
    from gliorad.io import write_json

    if table_cleaning is not None:
        metrics["table_cleaning"] = jsonable(dict(table_cleaning))
    write_json(metrics, path)


def _write_provenance(provenance: Mapping[str, Any] | None, path: Path) -> None:
    from gliorad.io import write_json

    if provenance is not None:
        write_json(jsonable(dict(provenance)), path)


def write_analysis(analysis: SurvivalAnalysis, out: Any, provenance: Mapping[str, Any] | None = None,
                   bundle: bool = True,
                   table_cleaning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write every artifact of an analysis into the folder ``out`` (created; its files are
    written atomically; an existing folder's files are replaced; names: :class:`AnalysisFiles`).
    Returns the metrics. ``table_cleaning``: what reading the feature tables changed (input
    name -> :meth:`gliorad.tables.TableCleaning.to_dict`), kept in ``metrics.json``."""
    from gliorad.io import write_json, write_text
    from gliorad.survival.bundle import save_bundle
    from gliorad.survival.plots import plot_calibration, plot_nomogram

    files = AnalysisFiles(out)
    files.folder.mkdir(parents=True, exist_ok=True)
    m = analysis.models
    metrics = analysis.metrics()
    _write_metrics(metrics, files.metrics, table_cleaning)
    write_json(jsonable(m.signature_table()), files.signature)
    write_text(m.signature.formula().to_csv(index=False), files.signature_formula)
    if hasattr(m.signature, "importances_"):
        write_text(m.signature.ranking_table().to_csv(index=False), files.signature_ranking)
    if m.sequence_choice is not None:
        write_text(m.sequence_choice.table.to_csv(index=False), files.sequence_choice)
    if m.search is not None:
        write_text(m.search.table().to_csv(index=False), files.candidates)
    screen = next((sel for sel in (m.selection_integrated, m.selection_clinical)
                   if sel is not None and not sel.univariate.empty), None)
    if screen is not None:
        write_text(screen.univariate.to_csv(index=False), files.univariate)
    for which in AnalysisFiles.PAPER_TABLES:
        tables = {n: getattr(c, f"table_{which}") for n, c in analysis.cohorts.items()}
        wide, long = paper_table(tables)
        if not long.empty:
            write_text(wide.to_csv(index=False), files.paper_table(which))
            write_text(long.to_csv(index=False), files.paper_table(which, long=True))
    for which, nom in (("integrated", m.nomogram_integrated), ("clinical", m.nomogram_clinical)):
        if nom is not None:
            save_figure(plot_nomogram(nom), files.nomogram(which))
    cal_rows = []
    for name, c in analysis.cohorts.items():
        write_text(c.predictions.to_csv(index_label="patient_id"), files.predictions(name))
        if TIME in c.data.columns and len(c.data):
            write_km(files.km(name), c.data, f"{name} ({c.role}): signature risk groups")
        for (which, t), res in c.calibration.items():
            label = f"{time_label(t)} survival"
            fig = plot_calibration(res, xlabel=f"Nomogram-predicted {label}",
                                   ylabel=f"Observed {label} (Kaplan-Meier)")
            fig.axes[0].set_title(f"{which} nomogram, {name}", fontsize=9)
            save_figure(fig, files.calibration_figure(which, name, t))
            cal_rows.append(res.table.assign(model=which, cohort=name, t_days=t))
    if cal_rows:
        write_text(pd.concat(cal_rows, ignore_index=True).to_csv(index=False), files.calibration)
    _write_provenance(provenance, files.provenance)
    if bundle:
        save_bundle(m, files.bundle)
    return metrics


def write_cv(result: CVResult, out: Any, provenance: Mapping[str, Any] | None = None,
             table_cleaning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``cv_folds.csv``, ``cv_out_of_fold.csv`` and ``km_cv.png``
    (names: :class:`CVFiles`; ``table_cleaning`` as in :func:`write_analysis`)."""
    from gliorad.io import write_text

    files = CVFiles(out)
    files.folder.mkdir(parents=True, exist_ok=True)
    metrics = result.metrics()
    _write_metrics(metrics, files.metrics, table_cleaning)
    write_text(result.folds.to_csv(index=False), files.folds)
    write_text(result.oof.to_csv(index_label="patient_id"), files.out_of_fold)
    write_km(files.km, result.oof, "Cross-validated risk groups (out-of-fold)")
    _write_provenance(provenance, files.provenance)
    return metrics
