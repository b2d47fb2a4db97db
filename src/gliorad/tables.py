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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gliorad.clinical import CATEGORIES, GRADE_GROUP, ID_ALIASES
from gliorad.errors import GlioradInputError

__all__ = [
    "Alignment",
    "GradeLabels",
    "align_features_labels",
    "feature_matrix",
    "labels_from_clinical",
    "load_grading_data",
    "parse_grade_labels",
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


# -------------------------------------------------------------------------------- reading
def read_table(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """Read a CSV / TSV / Parquet table indexed by its patient id (as text).

    Raises :class:`GlioradInputError` for a missing or unreadable file, no id column, empty
    or duplicated ids.
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
            id_raw = raw_names[header.columns.get_loc(_id_column(header, id_column, p))]
            df = pd.read_csv(p, sep=sep, low_memory=False, dtype={id_raw: str})
    except GlioradInputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise GlioradInputError(f"{p}: cannot parse the table: {err}") from err
    if df.empty:
        raise GlioradInputError(f"{p}: table has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    column = _id_column(df, id_column, p)
    ids = df[column]
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
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


def _id_column(df: pd.DataFrame, id_column: str | None, p: Path) -> str:
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
    raise GlioradInputError(
        f"{p}: no patient id column; expected one named {', '.join(ID_ALIASES)} "
        f"(or pass the id column's name); first columns are: {', '.join(df.columns[:8])}")


def feature_matrix(table: pd.DataFrame, source: str, exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """The numeric feature columns as float64, after dropping ``exclude``.

    Raises naming every non-numeric column, every column that is missing for all patients,
    and infinite values. Missing cells in other columns are kept (imputed inside the model).
    """
    unknown = [c for c in exclude if c not in table.columns]
    if unknown:
        raise GlioradInputError(f"{source}: column(s) to exclude not found: {', '.join(unknown)}")
    df = table.drop(columns=list(exclude))
    if df.shape[1] == 0:
        raise GlioradInputError(f"{source}: no feature columns besides the id column")
    problems = []
    bad = [c for c in df.columns
           if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]
    for c in bad[:20]:
        values = df[c].dropna()
        sample = values[pd.to_numeric(values, errors="coerce").isna()]
        example = f" (e.g. {sample.iloc[0]!r} for patient {sample.index[0]})" if len(sample) else ""
        problems.append(f"{source}: column {c!r} is not numeric{example}; features must be "
                        "numbers (exclude it, or name it as the label column)")
    if len(bad) > 20:
        problems.append(f"{source}: ... and {len(bad) - 20} more non-numeric columns")
    if problems:
        raise GlioradInputError(problems)
    X = df.astype(np.float64)
    empty = [c for c in X.columns if X[c].isna().all()]
    if empty:
        raise GlioradInputError(
            f"{source}: {len(empty)} column(s) are empty for every patient: "
            f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}; drop them")
    inf = np.isinf(X.to_numpy())
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise GlioradInputError(
            f"{source}: {int(inf.sum())} infinite value(s) (first: patient {X.index[r]}, column "
            f"{X.columns[c]!r}); expected finite numbers or empty cells")
    return X


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
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    return None if text in ("", "na", "n/a", "nan", "null") else text


def parse_grade_labels(values: pd.Series, source: str) -> GradeLabels:
    """Map a column of grade labels to 0/1 (HGG = 1); one coding per column.

    Missing labels are an error naming the patients (a patient without a grade cannot be used
    for grading; drop the row). See the module docstring for the accepted codings.
    """
    keys = values.map(_label_key)
    missing = keys.index[keys.isna()]
    if len(missing):
        raise GlioradInputError(
            f"{source}: grade label missing for {len(missing)} patient(s): "
            f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
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
        labels = parse_grade_labels(table[text], source=f"{table_source} column {text!r}")
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


def load_grading_data(
    features: str | Path,
    labels: str | Path,
    id_column: str | None = None,
    exclude: tuple[str, ...] = (),
    clinical_cfg=None,
) -> tuple[pd.DataFrame, GradeLabels, Alignment]:
    """Read a feature table and its grade labels (clinical file or label column) and match ids.

    Returns the numeric feature matrix (patients in both, feature-table order), the labels in
    the same order and what was left out.
    """
    table = read_table(features, id_column)
    source = Path(features).name
    grade, table = resolve_labels(labels, table, source, clinical_cfg)
    X = feature_matrix(table, source, exclude)
    return align_features_labels(X, grade)
