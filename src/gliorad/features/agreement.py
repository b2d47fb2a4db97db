"""Agreement of radiomics between masks: per-feature ICC, summary, figure, reliable-feature filter.

The paper checks its automation claim by computing, per radiomics feature, the intraclass
correlation between the features from the network's masks and from the physicians' masks (ICC
0.793-0.901, "all over 0.75"), and between two physicians (0.803-0.871). This module does that for
any two feature tables with the same layout (rows = patients, columns = features, e.g.
``radiomics_auto.csv`` and ``radiomics_manual.csv`` from :mod:`gliorad.features.radiomics`).

The ICC itself is :func:`gliorad.stats.icc` (Shrout & Fleiss two-way single-rater ICC with
F-distribution confidence limits, tested against R's psych). Default ``ICC(2,1)``: absolute
agreement with raters (mask sources) as random effects, the usual choice for "can the automatic
masks replace the manual ones" (Koo & Li 2016); ``ICC(3,1)`` (consistency) is available.

Tables are aligned on the patients and features both hold; what only one holds is reported, not
silently dropped. A feature with a missing or non-finite value for any patient gets ``icc = NaN``
and a ``note``, as do features constant across patients (no between-patient variance).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError, check_option
from gliorad.io import atomic_path, file_hash, write_json, write_text

#: Default ICC threshold ("good" reliability, Koo & Li 2016; the paper's 0.75).
THRESHOLD = 0.75

#: Which ICC value must exceed the threshold for a feature to count as reliable.
RELIABLE_BY = {"icc": "the ICC point estimate", "ci_low": "the lower 95% confidence limit"}

ICC_COLUMNS = ["icc", "ci_low", "ci_high", "F", "p", "note"]


def align_tables(
    table_a: pd.DataFrame, table_b: pd.DataFrame, names: tuple[str, str] = ("table_a", "table_b")
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """Restrict two feature tables to their common patients (rows) and features (columns).

    Returns the aligned tables (rows and columns in ``table_a``'s order) and a report of what was
    left out: ``{"<name>_only_patients": [...], "<name>_only_features": [...], ...}``. Raises
    :class:`GlioradInputError` when fewer than 2 patients or no feature are shared.
    """
    for name, t in zip(names, (table_a, table_b)):
        if not isinstance(t, pd.DataFrame):
            raise GlioradInputError(f"{name}: expected a DataFrame (patients x features)")
        dup = t.index[t.index.duplicated()].unique().tolist()
        if dup:
            raise GlioradInputError(f"{name}: patient ids repeated: {dup[:5]}")
    a_idx, b_idx = table_a.index.astype(str), table_b.index.astype(str)
    ta = table_a.set_axis(a_idx, axis=0)
    tb = table_b.set_axis(b_idx, axis=0)
    rows = [r for r in ta.index if r in set(tb.index)]
    cols = [c for c in ta.columns if c in set(tb.columns)]
    report = {
        f"{names[0]}_only_patients": [r for r in ta.index if r not in set(rows)],
        f"{names[1]}_only_patients": [r for r in tb.index if r not in set(rows)],
        f"{names[0]}_only_features": [c for c in ta.columns if c not in set(cols)],
        f"{names[1]}_only_features": [c for c in tb.columns if c not in set(cols)],
    }
    if len(rows) < 2:
        raise GlioradInputError(
            f"{names[0]} and {names[1]} share {len(rows)} patient(s) "
            f"({names[0]}: {list(ta.index[:3])}..., {names[1]}: {list(tb.index[:3])}...); "
            "the ICC needs at least 2 patients in both"
        )
    if not cols:
        raise GlioradInputError(
            f"{names[0]} and {names[1]} share no feature column (e.g. {list(ta.columns[:2])} vs "
            f"{list(tb.columns[:2])}); expected tables made with the same settings"
        )
    return ta.loc[rows, cols], tb.loc[rows, cols], report


def feature_icc(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    kind: str = "ICC(2,1)",
    alpha: float = 0.05,
    names: tuple[str, str] = ("table_a", "table_b"),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-feature ICC between two tables (aligned first, see :func:`align_tables`).

    Returns ``(icc_table, report)``: ``icc_table`` is indexed by feature with columns
    ``icc, ci_low, ci_high, F, p, note`` and, for radiomics columns
    ``<sequence>_<imagetype>_<class>_<feature>``, ``sequence, image_type, feature_class``.
    """
    from gliorad.stats import icc

    a, b, report = align_tables(table_a, table_b, names)
    try:
        va = a.apply(pd.to_numeric, errors="raise").astype(float)
        vb = b.apply(pd.to_numeric, errors="raise").astype(float)
    except (TypeError, ValueError) as err:
        raise GlioradInputError(f"{names[0]} / {names[1]}: non-numeric feature values ({err})") from err
    finite = np.isfinite(va.to_numpy()).all(axis=0) & np.isfinite(vb.to_numpy()).all(axis=0)
    good = [c for c, ok in zip(a.columns, finite) if ok]
    out = pd.DataFrame(index=pd.Index(list(a.columns), name="feature"), columns=ICC_COLUMNS)
    out[["icc", "ci_low", "ci_high", "F", "p"]] = np.nan
    out["note"] = ""
    if good:
        res = icc(va[good], vb[good], kind=kind, alpha=alpha)
        out.loc[good, ICC_COLUMNS] = res.loc[[str(g) for g in good], ICC_COLUMNS].to_numpy()
    for c, ok in zip(a.columns, finite):
        if not ok:
            n_a = int((~np.isfinite(va[c].to_numpy())).sum())
            n_b = int((~np.isfinite(vb[c].to_numpy())).sum())
            out.loc[c, "note"] = (f"missing/non-finite values ({names[0]}: {n_a}, {names[1]}: "
                                  f"{n_b} patients); ICC not computed")
    for col in ["icc", "ci_low", "ci_high", "F", "p"]:
        out[col] = out[col].astype(float)
    out["note"] = out["note"].astype(str)
    parts = [str(c).rsplit("_", 3) for c in out.index]
    if all(len(p) == 4 for p in parts):
        out["sequence"] = [p[0] for p in parts]
        out["image_type"] = [p[1] for p in parts]
        out["feature_class"] = [p[2] for p in parts]
    return out, {**report, "n_patients": len(a), "n_features": len(a.columns)}


def summarize_icc(icc_table: pd.DataFrame, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Range, quartiles and the fraction of features above ``threshold`` (of those with an ICC).

    With a ``sequence`` column, the same summary per sequence is under ``"by_sequence"``.
    """
    def one(values: pd.Series) -> dict[str, Any]:
        v = values.to_numpy(dtype=float)
        d = v[np.isfinite(v)]
        if d.size == 0:
            return {"n_features": int(v.size), "n_defined": 0, "n_undefined": int(v.size),
                    "min": None, "q25": None, "median": None, "q75": None, "max": None,
                    "n_above": 0, "fraction_above": None, "threshold": threshold}
        q25, med, q75 = np.quantile(d, [0.25, 0.5, 0.75])
        n_above = int((d > threshold).sum())
        return {"n_features": int(v.size), "n_defined": int(d.size),
                "n_undefined": int(v.size - d.size), "min": float(d.min()), "q25": float(q25),
                "median": float(med), "q75": float(q75), "max": float(d.max()),
                "n_above": n_above, "fraction_above": n_above / d.size, "threshold": threshold}

    out = one(icc_table["icc"])
    if "sequence" in icc_table.columns:
        out["by_sequence"] = {s: one(g["icc"]) for s, g in icc_table.groupby("sequence", sort=False)}
    return out


def reliable_features(
    icc_tables: pd.DataFrame | Sequence[pd.DataFrame], threshold: float = THRESHOLD,
    by: str = "icc",
) -> list[str]:
    """Features whose ICC (``by="icc"``) or lower confidence limit (``by="ci_low"``) exceeds
    ``threshold`` in every given ICC table; features with an undefined ICC are not reliable."""
    check_option("by", by, RELIABLE_BY)
    tables = [icc_tables] if isinstance(icc_tables, pd.DataFrame) else list(icc_tables)
    if not tables:
        raise GlioradInputError("reliable_features: no ICC table given")
    keep = None
    for t in tables:
        ok = set(t.index[(t[by].astype(float) > threshold).to_numpy()])
        keep = ok if keep is None else keep & ok
    return [f for f in tables[0].index if f in keep]


def keep_reliable(
    features: pd.DataFrame, icc_tables: pd.DataFrame | Sequence[pd.DataFrame],
    threshold: float = THRESHOLD, by: str = "icc",
) -> pd.DataFrame:
    """``features`` restricted to the reliable columns (see :func:`reliable_features`)."""
    cols = reliable_features(icc_tables, threshold, by)
    return features.loc[:, [c for c in features.columns if c in set(cols)]]


def icc_histogram_figure(icc_tables: Mapping[str, pd.DataFrame], threshold: float = THRESHOLD):
    """Histogram of the ICCs of each comparison (overlaid), with the threshold line, as a
    matplotlib Figure (used by :func:`plot_icc_histogram` and the HTML report)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = {k: t["icc"].to_numpy(dtype=float) for k, t in icc_tables.items()}
    finite = [v[np.isfinite(v)] for v in values.values()]
    lo = float(np.floor(min([0.0] + [float(v.min()) for v in finite if v.size]) * 20) / 20)
    bins = np.linspace(lo, 1.0, round((1.0 - lo) * 40) + 1)  # 0.025-wide bins
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (label, v), d in zip(values.items(), finite, strict=True):
        n_nan = int(v.size - d.size)
        extra = f", {n_nan} undefined" if n_nan else ""
        ax.hist(d, bins=bins, histtype="stepfilled" if len(values) == 1 else "step",
                linewidth=1.5, alpha=0.8,
                label=f"{label} (n={d.size}, {np.mean(d > threshold):.0%} > {threshold:g}{extra})"
                if d.size else f"{label} (no ICC defined)")
    ax.axvline(threshold, color="crimson", linestyle="--", linewidth=1.2)
    ax.set_xlabel("ICC per feature")
    ax.set_ylabel("features")
    ax.set_title("Radiomics agreement between masks")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_icc_histogram(
    icc_tables: Mapping[str, pd.DataFrame], path: str | os.PathLike, threshold: float = THRESHOLD,
) -> Path:
    """:func:`icc_histogram_figure` written as PNG (atomic)."""
    fig = icc_histogram_figure(icc_tables, threshold)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# ----------------------------------------------------------------------------------- file-level run
@dataclass
class AgreementResult:
    """Outcome of :func:`run_agreement`."""

    icc: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    reliable: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_agreement(
    auto: str | os.PathLike | pd.DataFrame,
    manual: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    second_rater: str | os.PathLike | pd.DataFrame | None = None,
    kind: str = "ICC(2,1)",
    alpha: float = 0.05,
    threshold: float = THRESHOLD,
    by: str = "icc",
    keep: bool = True,
    nonfinite: str = "missing",
) -> AgreementResult:
    """ICC of automatic-mask vs manual-mask features (and manual vs a second rater), written out.

    Writes ``icc_auto_vs_manual.csv`` (and ``icc_manual_vs_rater2.csv``), ``icc_histogram.png``,
    ``reliable_features.txt`` (features above ``threshold`` in every comparison),
    ``agreement.json`` (summaries, what alignment left out, settings, input hashes) and, with
    ``keep``, ``radiomics_auto_reliable.csv``: the automatic-mask table restricted to the reliable
    features, for modelling.

    Tables given as files are read by :func:`gliorad.features.radiomics.read_feature_table`:
    spreadsheet error cells and infinite values become missing (their features get
    ``icc = NaN``), counted in ``agreement.json`` (``table_cleaning``) and ``result.notes``, or
    are refused with ``nonfinite="error"``.
    """
    from gliorad import __version__
    from gliorad.features.radiomics import read_feature_table_cleaned
    from gliorad.tables import NONFINITE

    check_option("by", by, RELIABLE_BY)
    check_option("nonfinite", nonfinite, NONFINITE)
    cleaning: dict[str, Any] = {}
    notes: list[str] = []
    if not 0.0 < float(alpha) < 1.0:
        raise GlioradInputError(f"alpha {alpha!r}: expected a number between 0 and 1")
    if not -1.0 <= float(threshold) <= 1.0:
        raise GlioradInputError(f"threshold {threshold!r}: expected an ICC value in [-1, 1]")

    def load(obj: Any, name: str) -> tuple[pd.DataFrame, str | None]:
        if isinstance(obj, pd.DataFrame):
            return obj, None
        table, record = read_feature_table_cleaned(obj, nonfinite)
        cleaning[name] = record.to_dict()
        notes.extend(record.warnings())
        return table, str(obj)

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise GlioradInputError(f"{out_dir}: output path exists and is not a folder")
    ta, pa = load(auto, "auto")
    tm, pm = load(manual, "manual")
    comparisons = {"auto_vs_manual": (ta, tm, ("auto", "manual"))}
    inputs = {"auto": pa, "manual": pm}
    if second_rater is not None:
        tr, pr = load(second_rater, "rater2")
        comparisons["manual_vs_rater2"] = (tm, tr, ("manual", "rater2"))
        inputs["rater2"] = pr
    out = Path(out_dir)
    icc_tables: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {}
    files: dict[str, Path] = {}
    for name, (a, b, labels) in comparisons.items():
        table, report = feature_icc(a, b, kind=kind, alpha=alpha, names=labels)
        icc_tables[name] = table
        summary[name] = {**summarize_icc(table, threshold), "alignment": report}
        files[f"icc_{name}.csv"] = write_text(table.to_csv(), out / f"icc_{name}.csv")
    reliable = reliable_features(list(icc_tables.values()), threshold, by)
    files["reliable_features.txt"] = write_text("".join(f"{f}\n" for f in reliable),
                                                out / "reliable_features.txt")
    if keep:
        kept = ta.loc[:, [c for c in ta.columns if c in set(reliable)]]
        files["radiomics_auto_reliable.csv"] = write_text(kept.to_csv(),
                                                          out / "radiomics_auto_reliable.csv")
    files["icc_histogram.png"] = plot_icc_histogram(icc_tables, out / "icc_histogram.png",
                                                    threshold)
    record = {
        "stage": "features.agreement",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "gliorad": __version__,
        "settings": {"kind": kind, "alpha": alpha, "threshold": threshold, "reliable_by": by,
                     "nonfinite": nonfinite},
        "inputs": {k: ({"path": v, "sha256": file_hash(v)} if v else "DataFrame")
                   for k, v in inputs.items()},
        "summary": summary,
        "n_reliable": len(reliable),
        "table_cleaning": cleaning,
        "notes": notes,
        "outputs": sorted(files),
    }
    files["agreement.json"] = write_json(record, out / "agreement.json")
    return AgreementResult(icc_tables, summary, reliable, files, notes)
