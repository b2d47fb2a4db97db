"""The radiomics tables: column names, the stage's output files, reading a feature table.

* Column names (:func:`column_name`, :func:`parse_column`, :func:`feature_row`): a feature of a
  sequence is the column ``<sequence>_<imagetype>_<class>_<feature>`` (pyradiomics' key
  prefixed by the sequence), e.g. ``t1ce_original_glcm_Contrast``; a peritumoural ring is an
  image type, ``flair_peri0-5mm_firstorder_Mean`` (:mod:`gliorad.features.peritumoural`). The cohort tables and a
  patient's row from :func:`gliorad.predict.predict_patient` are named by :func:`feature_row`.
* The outputs of :func:`gliorad.features.radiomics.extract_radiomics` (:func:`write_outputs`,
  :class:`RadiomicsResult`): ``radiomics_<source>.csv`` (and ``.parquet``),
  ``diagnostics_<source>.csv``, ``failures.csv``, ``provenance.json``, each written atomically.
* Reading any feature table gliorad writes (:func:`read_feature_table`).

Every name here is also importable from :mod:`gliorad.features.radiomics`.
"""

from __future__ import annotations

import io as _io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.io import write_json, write_text

__all__ = [
    "FAILURE_COLUMNS",
    "RadiomicsResult",
    "column_name",
    "feature_row",
    "parse_column",
    "read_feature_table",
    "read_feature_table_cleaned",
    "write_outputs",
]

#: Columns of ``failures.csv``.
FAILURE_COLUMNS = ["source", "patient_id", "sequence", "image", "mask", "reason"]


# ------------------------------------------------------------------------------------ column names
def column_name(sequence: str, key: str) -> str:
    """``<sequence>_<imagetype>_<class>_<feature>`` from a pyradiomics key."""
    return f"{sequence}_{key}"


def parse_column(column: str) -> tuple[str, str, str, str]:
    """(sequence, image type, class, feature) of a feature-table column."""
    parts = column.rsplit("_", 3)
    if len(parts) != 4:
        raise GlioradInputError(
            f"column {column!r} is not of the form <sequence>_<imagetype>_<class>_<feature>"
        )
    return parts[0], parts[1], parts[2], parts[3]


def feature_row(by_sequence: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One patient's row: each sequence's pyradiomics values (key -> value) under their column
    names (:func:`column_name`), sequence after sequence in the given order."""
    return {column_name(seq, key): value for seq, values in by_sequence.items()
            for key, value in values.items()}


# ------------------------------------------------------------------------------------ the stage's outputs
@dataclass
class RadiomicsResult:
    """Outcome of :func:`gliorad.features.radiomics.extract_radiomics`."""

    out_dir: Path
    tables: dict[str, pd.DataFrame]
    diagnostics: dict[str, pd.DataFrame]
    failures: pd.DataFrame
    files: dict[str, Path]
    n_computed: int
    n_cached: int
    notes: list[str] = field(default_factory=list)




def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return write_text(df.to_csv(), path)


def _write_parquet(df: pd.DataFrame, path: Path, engine: str) -> Path:
    from gliorad.io import write_bytes

    buf = _io.BytesIO()
    df.to_parquet(buf, engine=engine)
    return write_bytes(buf.getvalue(), path)


def _versions() -> dict[str, str]:
    from gliorad.provenance import versions

    return versions("gliorad", "pyradiomics", "SimpleITK", "numpy", "pywavelets", "pandas",
                    "joblib", "python")


def write_outputs(
    out: Path, cohort: Any, seqs: list[str], masks: dict[str, dict[str, Path]],
    records: dict[tuple[str, str, str], dict[str, Any]], failures: list[dict[str, Any]],
    params: dict, params_arg: Any, region_name: str, labels: tuple[int, ...] | None,
    min_voxels: int, jobs: int, threads: int, n_computed: int, n_cached: int,
    parquet: bool | None, engine: str | None, elapsed: float, source_dirs: dict[str, str],
    worker_peak: float | None, peritumoural_mm: tuple[float, ...] = (),
) -> RadiomicsResult:
    """Write the tables, diagnostics, failures and provenance of a cohort run from its case
    ``records`` (``(source, patient, sequence)`` -> cache record); a patient is a row of a
    source's table when each of ``seqs`` has a record. ``engine`` writes the Parquet copies
    (``None``: CSV only, with a note when ``parquet`` is ``None``). ``peritumoural_mm``: the
    ring boundaries (mm) of the ring features, recorded in the provenance."""
    files: dict[str, Path] = {}
    tables: dict[str, pd.DataFrame] = {}
    diagnostics: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    if parquet is None and engine is None:
        notes.append("Parquet not written: neither pyarrow nor fastparquet is installed "
                     "(CSV written; install pyarrow for Parquet)")
    inputs: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    n_warned = 0
    for source in masks:
        rows: dict[str, dict[str, float]] = {}
        drows: dict[str, dict[str, Any]] = {}
        for pid in cohort.ids:
            recs = [records.get((source, pid, s)) for s in seqs]
            if any(r is None for r in recs):
                continue
            for seq, rec in zip(seqs, recs):
                inputs.setdefault(source, {}).setdefault(pid, {})[seq] = {
                    "image": rec["image"], "image_sha256": rec["image_sha256"],
                    "mask": rec["mask"], "mask_sha256": rec["mask_sha256"]}
                n_warned += bool(rec.get("warnings"))
            rows[pid] = feature_row({seq: rec["features"] for seq, rec in zip(seqs, recs)})
            drows[pid] = feature_row({seq: rec["diagnostics"] for seq, rec in zip(seqs, recs)})
        table = pd.DataFrame.from_dict(rows, orient="index")
        if rows:
            first = next(iter(rows.values()))
            bad = [pid for pid, r in rows.items() if list(r) != list(first)]
            if bad:
                raise RuntimeError(f"feature names differ between patients {bad[:3]} (internal error)")
        table.index.name = "patient_id"
        dtable = pd.DataFrame.from_dict(drows, orient="index")
        dtable.index.name = "patient_id"
        tables[source], diagnostics[source] = table, dtable
        files[f"radiomics_{source}.csv"] = _write_csv(table, out / f"radiomics_{source}.csv")
        if engine is not None:
            files[f"radiomics_{source}.parquet"] = _write_parquet(
                table, out / f"radiomics_{source}.parquet", engine)
        files[f"diagnostics_{source}.csv"] = _write_csv(dtable, out / f"diagnostics_{source}.csv")
    fail_df = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    files["failures.csv"] = write_text(fail_df.to_csv(index=False), out / "failures.csv")
    if n_warned:
        notes.append(f"pyradiomics raised warnings for {n_warned} case(s); see the 'warnings' "
                     f"lists in {out / 'cache'}")
    first_table = next((t for t in tables.values() if len(t.columns)), None)
    n_features = {s: int(sum(1 for c in first_table.columns if c.startswith(f"{s}_")))
                  for s in seqs} if first_table is not None else {}
    prov = {
        "stage": "features.radiomics",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "params_argument": params_arg if isinstance(params_arg, (str, os.PathLike)) else "dict",
        "params": params,
        "region": {"name": region_name, "labels": list(labels) if labels else "any label > 0"},
        "min_voxels": min_voxels,
        "peritumoural_mm": list(peritumoural_mm),
        "cohort": str(cohort.root),
        "sequences": seqs,
        "sources": source_dirs,
        "n_jobs": jobs, "threads_per_job": threads,
        "cases": {"computed": n_computed, "from_cache": n_cached, "failed": len(failures)},
        "patients": {s: len(t) for s, t in tables.items()},
        "features_per_sequence": n_features,
        "worker_peak_rss_mb": worker_peak,
        "seconds": elapsed,
        "inputs": inputs,
        "outputs": sorted(files),
        "notes": notes,
    }
    files["provenance.json"] = write_json(prov, out / "provenance.json")
    return RadiomicsResult(out, tables, diagnostics, fail_df, files, n_computed, n_cached, notes)


# ------------------------------------------------------------------------------------ tables
def read_feature_table(path: str | os.PathLike, nonfinite: str = "missing") -> pd.DataFrame:
    """A feature table written by gliorad (CSV or Parquet), indexed by ``patient_id``.

    Spreadsheet error cells and infinite values are read as missing (logged as warnings) or,
    with ``nonfinite="error"``, refused (:func:`gliorad.tables.clean_features`; no column is
    dropped). :func:`read_feature_table_cleaned` also returns what was changed."""
    table, cleaning = read_feature_table_cleaned(path, nonfinite)
    cleaning.log()
    return table


def read_feature_table_cleaned(
    path: str | os.PathLike, nonfinite: str = "missing"
) -> tuple[pd.DataFrame, Any]:
    """:func:`read_feature_table` and its :class:`gliorad.tables.TableCleaning` record."""
    from gliorad.tables import NA_TEXT, clean_features

    p = Path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: feature table not found")
    try:
        if p.suffix.lower() == ".parquet":
            df = pd.read_parquet(p)
            if "patient_id" in df.columns:
                df = df.set_index("patient_id")
        else:
            df = pd.read_csv(p, index_col=0, float_precision="round_trip",
                             keep_default_na=False, na_values=list(NA_TEXT))
    except (ImportError, ValueError, OSError, pd.errors.ParserError) as err:
        raise GlioradInputError(f"{p}: cannot read feature table: {err}") from err
    if df.index.name != "patient_id":
        raise GlioradInputError(
            f"{p}: first column is {df.index.name!r}; expected 'patient_id' (one row per patient)"
        )
    df.index = df.index.astype(str)
    dup = df.index[df.index.duplicated()].unique().tolist()
    if dup:
        raise GlioradInputError(f"{p}: patient_id values repeated: {dup[:5]}")
    return clean_features(df, str(p), nonfinite, drop=False)
