"""Feature tables and grade labels a user brings: reading, checking, aligning.

A feature table is a CSV, TSV or Parquet file with one row per patient, an id column (named
``patient_id``, ``id``, ``patient``, ``subject_id``, ``subject`` or ``case_id``, or given
explicitly) and one numeric column per feature. Grade labels come either from a clinical table
(:func:`gliorad.clinical.read_clinical`, its ``grade_group``) or from a column of the feature
table; accepted codings (case-insensitive, one coding per column):

=================  ==============================================  ============
coding             values                                          positive
=================  ==============================================  ============
group              ``HGG`` / ``LGG`` (also ``GBM``, ``glioblastoma``  HGG
                   for HGG)
WHO grade          ``II`` / ``III`` / ``IV`` (also ``2``-``4``,       IV (= HGG)
                   ``G2``, ``grade II``); may be mixed with
                   HGG/LGG
binary             ``0`` / ``1`` (also ``false`` / ``true``)        1 (= HGG)
=================  ==============================================  ============

The positive class is always HGG (label 1), and every output says so.

Feature tables from the wild (:func:`clean_features`, used by every reader of feature tables:
grading, survival, agreement): spreadsheet error values (``#DIV/0!``, ``#N/A``, ``#VALUE!``,
``#NUM!``, ``#REF!``, ``#NAME?``, ``#NULL!``, ...) and infinite values (``inf`` / ``-inf`` text
or numbers) become missing cells; columns empty for every patient and constant columns are
dropped when a model is fitted (kept when a fitted model is applied). Each change is counted per
column in a :class:`TableCleaning` record (warning lines, ``metrics.json`` ``table_cleaning``).
``nonfinite="error"`` refuses error values, infinite values and empty columns instead, naming
column and patient. Other text in a feature column is always an error.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gliorad.clinical import CATEGORIES, GRADE_GROUP, ID_ALIASES
from gliorad.errors import GlioradInputError, check_option

__all__ = [
    "ERROR_LITERALS",
    "NONFINITE",
    "Alignment",
    "GradeLabels",
    "TableCleaning",
    "align_features_labels",
    "clean_features",
    "feature_matrix",
    "is_error_literal",
    "labels_from_clinical",
    "load_grading_inputs",
    "parse_grade_labels",
    "read_features",
    "read_table",
    "resolve_labels",
]

log = logging.getLogger(__name__)

POSITIVE_CLASS = "HGG"
NEGATIVE_CLASS = "LGG"
_NAMED = {"hgg": 1, "lgg": 0, "gbm": 1, "glioblastoma": 1}
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
_WHO = {k: (1 if GRADE_GROUP[v] == "HGG" else 0)
        for k, v in CATEGORIES["grade"].items() if v in ("II", "III", "IV")}
ALLOWED_LABELS = ("HGG/LGG", "GBM/LGG", "II/III/IV (or 2/3/4; IV = HGG)", "0/1 (1 = HGG)")

#: What a feature table's odd cells become: ``missing`` (read as missing and counted) or
#: ``error`` (refused, naming column and patient).
NONFINITE = ("missing", "error")
#: Spreadsheet error values (Excel, LibreOffice, Google Sheets), matched case-insensitively
#: after stripping blanks; LibreOffice's ``Err:502``-style codes too.
ERROR_LITERALS = ("#DIV/0!", "#N/A", "#VALUE!", "#NUM!", "#REF!", "#NAME?", "#NULL!",
                  "#N/A N/A", "#NA", "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!",
                  "#BUSY!", "#UNKNOWN!", "#GETTING_DATA", "#ERROR!")
_ERROR_RE = re.compile(r"^(?:" + "|".join(re.escape(v) for v in ERROR_LITERALS)
                       + r"|ERR:\d{3})$", re.IGNORECASE)
# pandas' default missing-value texts without its spreadsheet ones ('#N/A', '#N/A N/A', '#NA'),
# which are kept as text when a CSV is read so that they can be counted
NA_TEXT = ("", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_NA_LOWER = frozenset(v.lower() for v in NA_TEXT)
_INF_TEXT = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "infinity": np.inf,
             "+infinity": np.inf, "-infinity": -np.inf, "1.#inf": np.inf, "-1.#inf": -np.inf}


def is_error_literal(value) -> bool:
    """True for a spreadsheet error value such as ``'#DIV/0!'`` (see :data:`ERROR_LITERALS`)."""
    return isinstance(value, str) and bool(_ERROR_RE.match(value.strip()))


# -------------------------------------------------------------------------------- reading
def read_table(path: str | Path, id_column: str | None = None, *,
               first_column_id: bool = False) -> pd.DataFrame:
    """Read a CSV / TSV / Parquet table indexed by its patient id (as text).

    The id column is ``id_column``, else the first named like an id (``patient_id``, ``id``,
    ...), else (with ``first_column_id``) the first column. Spreadsheet error values (e.g.
    ``#N/A``) are kept as text, for :func:`clean_features` to count. Raises
    :class:`GlioradInputError` for a missing or unreadable file, no id column, empty or
    duplicated ids.
    """
    p = Path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: table not found")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = _read_parquet(p)
        else:
            sep = "\t" if suffix in (".tsv", ".tab", ".tsv.gz") else ","
            raw_names = list(pd.read_csv(p, sep=sep, nrows=0).columns)
            header = pd.DataFrame(columns=[str(c).strip() for c in raw_names])
            # ids as text, so that '007' stays '007' and matches the clinical table
            id_raw = raw_names[header.columns.get_loc(
                _id_column(header, id_column, p, first_column_id))]
            df = pd.read_csv(p, sep=sep, low_memory=False, dtype={id_raw: str},
                             keep_default_na=False, na_values=list(NA_TEXT))
    except GlioradInputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise GlioradInputError(f"{p}: cannot parse the table: {err}") from err
    if df.empty:
        raise GlioradInputError(f"{p}: table has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    column = _id_column(df, id_column, p, first_column_id)
    ids = df[column]
    blank = ids.isna() | (ids.astype(str).str.strip() == "") | ids.map(is_error_literal)
    if blank.any():
        raise GlioradInputError(
            f"{p} row {int(np.flatnonzero(blank.to_numpy())[0]) + 2}: empty {column!r}; every row "
            "needs a patient id")
    ids = ids.map(_id_text)
    dup = ids[ids.duplicated()].unique()
    if dup.size:
        raise GlioradInputError(
            f"{p}: patient id(s) appear more than once in {column!r}: "
            f"{', '.join(map(str, dup[:10]))}{' ...' if dup.size > 10 else ''}")
    out = df.drop(columns=[column])
    out.index = pd.Index(ids.to_numpy(), name="patient_id")
    return out


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(p)
    except ImportError as err:
        raise GlioradInputError(
            f"{p}: reading Parquet needs pyarrow or fastparquet, which is not installed "
            "(pip install pyarrow), or save the table as CSV") from err
    except Exception as err:  # the Parquet engines raise many types for corrupt files
        raise GlioradInputError(f"{p}: cannot read as Parquet: {err}") from err
    if df.index.name is not None and df.index.name not in df.columns:
        df = df.reset_index()
    return df


def _id_text(value) -> str:
    """Patient ids as text; integer-valued floats lose the '.0' pandas gives them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _id_column(df: pd.DataFrame, id_column: str | None, p: Path,
               first_column_id: bool = False) -> str:
    if id_column is not None:
        if id_column not in df.columns:
            raise GlioradInputError(
                f"{p}: id column {id_column!r} not found; columns are: "
                f"{', '.join(df.columns[:15])}{' ...' if df.shape[1] > 15 else ''}")
        return id_column
    lower = {c.lower(): c for c in df.columns}
    for alias in ID_ALIASES:
        if alias in lower:
            return lower[alias]
    if first_column_id and df.shape[1]:
        return df.columns[0]
    raise GlioradInputError(
        f"{p}: no patient id column; expected one named {', '.join(ID_ALIASES)} "
        f"(or pass the id column's name); first columns are: {', '.join(df.columns[:8])}")


def _names(items, limit: int = 10) -> str:
    items = list(items)
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more


@dataclass
class TableCleaning:
    """What :func:`clean_features` changed in a feature table, per column.

    ``error_cells``: column -> {spreadsheet error value: cells} read as missing;
    ``infinite_cells``: column -> infinite values (``inf`` / ``-inf`` text or numbers) read as
    missing; ``empty_columns``: columns missing for every patient (after the above);
    ``constant_columns``: columns with one value for every patient who has a value;
    ``dropped``: whether empty and constant columns were dropped (fitting) or kept (applying a
    fitted model, which needs its columns).
    """

    source: str
    nonfinite: str = "missing"
    n_patients: int = 0
    n_columns_read: int = 0
    error_cells: dict[str, dict[str, int]] = field(default_factory=dict)
    infinite_cells: dict[str, int] = field(default_factory=dict)
    empty_columns: list[str] = field(default_factory=list)
    constant_columns: list[str] = field(default_factory=list)
    dropped: bool = True
    n_missing_cells: int = 0

    @property
    def n_error_cells(self) -> int:
        return int(sum(sum(v.values()) for v in self.error_cells.values()))

    @property
    def n_infinite_cells(self) -> int:
        return int(sum(self.infinite_cells.values()))

    @property
    def dropped_columns(self) -> list[str]:
        return [*self.empty_columns, *self.constant_columns] if self.dropped else []

    @property
    def n_columns_kept(self) -> int:
        return self.n_columns_read - len(self.dropped_columns)

    @property
    def changed(self) -> bool:
        """True when a cell was read as missing or a column was dropped (or found empty)."""
        return bool(self.error_cells or self.infinite_cells or self.empty_columns
                    or self.constant_columns)

    def warnings(self, limit: int = 10) -> list[str]:
        """One line per kind of change, naming the columns (at most ``limit`` per line)."""
        out = []
        if self.error_cells:
            cols = [f"{c} ({', '.join(f'{k} x{n}' for k, n in v.items())})"
                    for c, v in self.error_cells.items()]
            out.append(f"{self.source}: {self.n_error_cells} spreadsheet error cell(s) read as "
                       f"missing in {len(cols)} column(s): {_names(cols, limit)}")
        if self.infinite_cells:
            cols = [f"{c} (x{n})" for c, n in self.infinite_cells.items()]
            out.append(f"{self.source}: {self.n_infinite_cells} infinite value(s) read as "
                       f"missing in {len(cols)} column(s): {_names(cols, limit)}")
        what = "dropped" if self.dropped else "kept"
        if self.empty_columns:
            out.append(f"{self.source}: {len(self.empty_columns)} column(s) empty for every "
                       f"patient {what}: {_names(self.empty_columns, limit)}")
        if self.constant_columns and self.dropped:
            out.append(f"{self.source}: {len(self.constant_columns)} constant column(s) (one "
                       f"value for every patient) {what}: {_names(self.constant_columns, limit)}")
        return out

    def log(self, logger: logging.Logger | None = None) -> None:
        """Each line of :meth:`warnings` as a logged warning."""
        for line in self.warnings():
            (logger or log).warning(line)

    def to_dict(self) -> dict:
        """JSON-able record for ``metrics.json`` (key ``table_cleaning``)."""
        return {
            "source": self.source, "nonfinite": self.nonfinite,
            "n_patients": self.n_patients, "n_columns_read": self.n_columns_read,
            "n_columns_kept": self.n_columns_kept,
            "n_error_cells": self.n_error_cells,
            "error_cells": {c: dict(v) for c, v in self.error_cells.items()},
            "n_infinite_cells": self.n_infinite_cells,
            "infinite_cells": dict(self.infinite_cells),
            "empty_columns": list(self.empty_columns),
            "constant_columns": list(self.constant_columns),
            "columns_dropped": self.dropped,
            "n_missing_cells": self.n_missing_cells,
            "warnings": self.warnings(limit=20),
        }


def _float_or_nan(value) -> float:
    text = str(value)
    if "_" in text:  # float() accepts '1_000'; a table cell like that is text
        return np.nan
    try:
        return float(text)
    except ValueError:
        return np.nan


def _text_column(s: pd.Series) -> tuple[np.ndarray, pd.Series, pd.Series, pd.Series]:
    """A column that pandas could not read as numbers: (float values, error-value mask,
    infinite mask, real-text mask). Missing-value texts (``NA``, ``nan``, ...) are missing."""
    text = s.map(lambda v: v.strip() if isinstance(v, str) else v)
    lower = text.map(lambda v: v.lower() if isinstance(v, str) else None)
    err = text.map(is_error_literal).astype(bool)
    na = text.isna() | lower.isin(_NA_LOWER)
    inf_text = lower.map(_INF_TEXT)
    candidates = text.where(~(err | na | inf_text.notna()))
    values = pd.to_numeric(candidates.astype(object), errors="coerce")
    retry = values.isna() & candidates.notna()  # e.g. '1e400' (overflow: infinite)
    if retry.any():
        values = values.astype(np.float64)
        values[retry] = candidates[retry].map(_float_or_nan)
    values = values.where(inf_text.isna(), inf_text).astype(np.float64)
    bad = values.isna() & ~err & ~na
    values = values.to_numpy(dtype=np.float64)
    return values, err, pd.Series(np.isinf(values), index=s.index), bad


def clean_features(
    table: pd.DataFrame, source: str, nonfinite: str = "missing", *,
    exclude: tuple[str, ...] | list[str] = (), drop: bool = True,
) -> tuple[pd.DataFrame, TableCleaning]:
    """The numeric feature columns of ``table`` as float64, and what was changed on the way.

    ``nonfinite="missing"`` (default): spreadsheet error values (:data:`ERROR_LITERALS`,
    e.g. ``#DIV/0!``) and infinite values (``inf`` / ``-inf`` text, or numbers) become missing
    cells (imputed inside the models), each counted per column. ``nonfinite="error"``: each of
    them, and a column empty for every patient, is an error naming the column and a patient.
    With ``drop`` (fitting), columns empty for every patient and constant columns (one value
    for every patient who has one: no information, and constant again after imputation) are
    dropped; without (applying a fitted model, which needs its columns) they are kept and
    counted. Text that is not a number, an error value or a missing-value text (``NA``,
    ``nan``, empty) is an error in both modes (exclude the column, or name it as the label
    column). ``exclude``: columns to leave out first. Returns ``(X, TableCleaning)``.
    """
    check_option("nonfinite", nonfinite, NONFINITE)
    unknown = [c for c in exclude if c not in table.columns]
    if unknown:
        raise GlioradInputError(f"{source}: column(s) to exclude not found: {', '.join(unknown)}")
    df = table.drop(columns=list(exclude))
    if df.shape[1] == 0:
        raise GlioradInputError(f"{source}: no feature columns besides the id column")
    strict = nonfinite == "error"
    hint = ("; features must be numbers: remove or exclude the column (for grading, it may be "
            "the label column)")
    record = TableCleaning(source=source, nonfinite=nonfinite, n_patients=int(df.shape[0]),
                           n_columns_read=int(df.shape[1]), dropped=drop)
    text_problems, error_problems = [], []
    columns: dict[str, np.ndarray] = {}
    plain_missing: dict[str, bool] = {}
    first_inf = None
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            values = s.to_numpy(dtype=np.float64, na_value=np.nan)
            err = np.zeros(len(s), bool)
        else:
            values, err_s, _, bad = _text_column(s)
            err = err_s.to_numpy()
            if bad.any():
                first = bad.to_numpy().argmax()
                text_problems.append(f"{source}: column {c!r} is not numeric (e.g. "
                                     f"{s.iloc[first]!r} for patient {s.index[first]}){hint}")
                continue
            if err.any():
                literals = Counter(str(v).strip().upper() for v in s[err_s])
                record.error_cells[str(c)] = dict(literals)
                first = int(err.argmax())
                error_problems.append(
                    f"{source}: column {c!r} is not numeric (e.g. {s.iloc[first]!r} for patient "
                    f"{s.index[first]}): {int(err.sum())} spreadsheet error cell(s); features must "
                    "be numbers or empty cells (nonfinite 'missing' reads them as missing)")
        inf = np.isinf(values)
        if inf.any():
            record.infinite_cells[str(c)] = int(inf.sum())
            if first_inf is None:
                first_inf = (df.index[int(inf.argmax())], c)
            values = np.where(inf, np.nan, values)
        columns[str(c)] = values
        plain_missing[str(c)] = bool((np.isnan(values) & ~err & ~inf).all())
    if len(text_problems) > 20:
        text_problems = text_problems[:20] + [
            f"{source}: ... and {len(text_problems) - 20} more non-numeric columns"]
    problems = text_problems + (error_problems if strict else [])
    if strict:
        empty = [c for c, flag in plain_missing.items() if flag]
        if empty:
            problems.append(f"{source}: {len(empty)} column(s) are empty for every patient: "
                            f"{_names(empty)}; drop them")
        if first_inf is not None:
            problems.append(
                f"{source}: {record.n_infinite_cells} infinite value(s) (first: patient "
                f"{first_inf[0]}, column {first_inf[1]!r}); expected finite numbers or empty "
                "cells")
    if problems:
        raise GlioradInputError(problems)
    X = pd.DataFrame(columns, index=df.index, dtype=np.float64)
    X.columns = [str(c) for c in X.columns]
    values = X.to_numpy()
    observed = ~np.isnan(values)
    empty_mask = ~observed.any(axis=0)
    with np.errstate(invalid="ignore"):
        lo = np.where(observed, values, np.inf).min(axis=0)
        hi = np.where(observed, values, -np.inf).max(axis=0)
    constant_mask = ~empty_mask & (lo == hi)
    record.empty_columns = [c for c, e in zip(X.columns, empty_mask, strict=True) if e]
    record.constant_columns = [c for c, k in zip(X.columns, constant_mask, strict=True) if k]
    if drop and record.dropped_columns:
        X = X.drop(columns=record.dropped_columns)
        if X.shape[1] == 0:
            raise GlioradInputError(
                f"{source}: no usable feature column: of {record.n_columns_read}, "
                f"{len(record.empty_columns)} are empty for every patient and "
                f"{len(record.constant_columns)} constant ({_names(record.dropped_columns)})")
    record.n_missing_cells = int(X.isna().to_numpy().sum())
    return X, record


def feature_matrix(table: pd.DataFrame, source: str, exclude: tuple[str, ...] = (),
                   nonfinite: str = "missing", drop: bool = True) -> pd.DataFrame:
    """The numeric feature columns as float64, after dropping ``exclude``
    (:func:`clean_features`, its changes logged as warnings).

    Missing cells are kept (imputed inside the model).
    """
    X, record = clean_features(table, source, nonfinite, exclude=exclude, drop=drop)
    record.log()
    return X


def read_features(
    path: str | Path, *, id_column: str | None = None, first_column_id: bool = False,
    exclude: tuple[str, ...] = (), nonfinite: str = "missing", drop: bool = True,
    source: str | None = None,
) -> tuple[pd.DataFrame, TableCleaning]:
    """:func:`read_table` then :func:`clean_features`: ``(X, TableCleaning)``."""
    table = read_table(path, id_column, first_column_id=first_column_id)
    return clean_features(table, source or Path(path).name, nonfinite, exclude=exclude,
                          drop=drop)


# --------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class GradeLabels:
    """Binary grade labels: ``y`` is 1 for HGG (positive class), 0 for LGG, indexed by id."""

    y: pd.Series
    coding: str
    source: str
    positive_class: str = POSITIVE_CLASS
    negative_class: str = NEGATIVE_CLASS

    @property
    def counts(self) -> dict[str, int]:
        """``{"HGG": n_pos, "LGG": n_neg}``."""
        return {self.positive_class: int(self.y.sum()),
                self.negative_class: int((self.y == 0).sum())}

    def describe(self) -> str:
        """e.g. ``'HGG (positive, label 1): 40, LGG: 30; coding WHO grade (IV = HGG)'``."""
        c = self.counts
        return (f"{self.positive_class} (positive, label 1): {c[self.positive_class]}, "
                f"{self.negative_class}: {c[self.negative_class]}; coding {self.coding}")


def _label_key(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or is_error_literal(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    return None if text in ("", "na", "n/a", "nan", "null") else text


def parse_grade_labels(values: pd.Series, source: str, missing: str = "error") -> GradeLabels:
    """Map a column of grade labels to 0/1 (HGG = 1); one coding per column.

    A patient without a label cannot be graded: with ``missing="error"`` that is an error naming
    the patients; with ``"exclude"`` (``clinical.missing``) they are left out with a warning
    naming them. See the module docstring for the accepted codings.
    """
    keys = values.map(_label_key)
    absent = keys.index[keys.isna()]
    if len(absent):
        listed = f"{', '.join(map(str, absent[:10]))}{' ...' if len(absent) > 10 else ''}"
        if missing == "error":
            raise GlioradInputError(
                f"{source}: grade label missing for {len(absent)} patient(s): {listed}")
        log.warning("%s: grade label missing for %d patient(s), left out of grading: %s", source,
                    len(absent), listed)
        values, keys = values.drop(index=absent), keys.drop(index=absent)
    found = set(keys)
    allowed = f"expected one of the codings {'; '.join(ALLOWED_LABELS)}"
    if found <= set(_BINARY):
        mapping, coding = _BINARY, "0/1 (1 = HGG)"
    elif found <= set(_NAMED) | set(_WHO):
        mapping = {**_NAMED, **_WHO}
        coding = ("WHO grade (IV = HGG)" if found & set(_WHO) else
                  "GBM/LGG" if found & {"gbm", "glioblastoma"} and "hgg" not in found else "HGG/LGG")
        if found & set(_WHO) and found & set(_NAMED):
            coding = "WHO grade and HGG/LGG (IV = HGG)"
    else:
        bad = sorted(found - set(_BINARY) - set(_NAMED) - set(_WHO))
        if not bad:  # 0/1 mixed with names or grades
            bad = sorted(found & set(_BINARY))
            raise GlioradInputError(
                f"{source}: labels mix 0/1 with named grades ({', '.join(sorted(found))}); "
                f"{allowed}, one coding per column")
        example = keys[keys.isin(bad)]
        raise GlioradInputError(
            f"{source}: grade label {values[example.index[0]]!r} (patient {example.index[0]}) "
            f"is not recognised; {allowed}")
    y = keys.map(mapping).astype(int).rename("label")
    y.index = y.index.map(str)
    y.index.name = "patient_id"
    return GradeLabels(y=y, coding=coding, source=source)


def labels_from_clinical(path: str | Path, cfg=None) -> GradeLabels:
    """Grade labels from a clinical table (:func:`gliorad.clinical.read_clinical`)."""
    from gliorad.clinical import read_clinical

    table = read_clinical(path, cfg, require=("grade",))
    return parse_grade_labels(table["grade_group"], source=f"{Path(path).name} grade")


def resolve_labels(
    spec: str | Path, table: pd.DataFrame, table_source: str, clinical_cfg=None
) -> tuple[GradeLabels, pd.DataFrame]:
    """``spec`` is a clinical-table file or the name of a label column in ``table``.

    Returns the labels and ``table`` without the label column.
    """
    text = str(spec)
    if text in table.columns:
        policy = getattr(clinical_cfg, "missing", "exclude")
        labels = parse_grade_labels(table[text], source=f"{table_source} column {text!r}",
                                    missing=policy)
        return labels, table.drop(columns=[text])
    if Path(text).is_file():
        return labels_from_clinical(text, clinical_cfg), table
    raise GlioradInputError(
        f"labels {text!r} is neither a file nor a column of {table_source}; pass a clinical "
        f"table (CSV with a grade column) or one of the columns: "
        f"{', '.join(map(str, table.columns[:10]))}{' ...' if table.shape[1] > 10 else ''}")


# ------------------------------------------------------------------------------- aligning
@dataclass(frozen=True)
class Alignment:
    """Which ids were dropped when features and labels were matched."""

    n_matched: int
    only_in_features: list[str] = field(default_factory=list)
    only_in_labels: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        out = []
        for what, ids in (("feature table", self.only_in_features),
                          ("labels", self.only_in_labels)):
            if ids:
                out.append(f"{len(ids)} patient(s) only in the {what} (left out): "
                           f"{', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}")
        return out


def align_features_labels(
    X: pd.DataFrame, labels: GradeLabels, min_per_class: int = 2
) -> tuple[pd.DataFrame, GradeLabels, Alignment]:
    """Keep the patients present in both, in the feature table's order; report the others."""
    fx = [str(i) for i in X.index]
    X = X.set_axis(pd.Index(fx, name="patient_id"), axis=0)
    in_labels = set(labels.y.index)
    in_features = set(fx)
    common = [i for i in fx if i in in_labels]
    align = Alignment(
        n_matched=len(common),
        only_in_features=[i for i in fx if i not in in_labels],
        only_in_labels=[i for i in labels.y.index if i not in in_features],
    )
    for msg in align.messages():
        log.warning(msg)
    if not common:
        raise GlioradInputError(
            f"no patient id is in both the feature table and {labels.source}; e.g. features "
            f"have {fx[:3]}, labels have {list(labels.y.index[:3])}")
    y = labels.y.loc[common]
    aligned = GradeLabels(y=y, coding=labels.coding, source=labels.source)
    counts = aligned.counts
    if min(counts.values()) < min_per_class:
        raise GlioradInputError(
            f"after matching ids, {aligned.describe()}; grading needs at least {min_per_class} "
            "patients of each class")
    return X.loc[common], aligned, align


def load_grading_inputs(
    features: str | Path,
    labels: str | Path,
    id_column: str | None = None,
    exclude: tuple[str, ...] = (),
    clinical_cfg=None,
    nonfinite: str = "missing",
) -> tuple[pd.DataFrame, GradeLabels, Alignment, TableCleaning]:
    """Read a feature table and its grade labels (clinical file or label column) and match ids.

    Returns the numeric feature matrix (patients in both, feature-table order; cleaned by
    :func:`clean_features` with ``nonfinite``), the labels in the same order, what was left out
    and what the cleaning changed.
    """
    table = read_table(features, id_column)
    source = Path(features).name
    grade, table = resolve_labels(labels, table, source, clinical_cfg)
    X, cleaning = clean_features(table, source, nonfinite, exclude=tuple(exclude))
    X, grade, align = align_features_labels(X, grade)
    return X, grade, align, cleaning

