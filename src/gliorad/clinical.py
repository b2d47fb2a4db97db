"""Clinical table: schema, column mapping, parsing into canonical values, and row-level checks.

The canonical table (:func:`read_clinical`) is indexed by ``patient_id`` with columns

========== ===========================================================================
age        years (float)
sex        ``M`` / ``F``
grade      WHO grade ``II`` / ``III`` / ``IV`` (missing when only LGG/HGG is known)
grade_group``LGG`` (WHO II/III) / ``HGG`` (WHO IV)
histology  ``astrocytoma`` / ``oligodendroglioma`` / ``oligoastrocytoma`` / ``GBM`` / ``other``
location   ``frontal`` / ``temporal`` / ``parietal`` / ``occipital`` / ``insula`` / ``deep`` /
           ``brainstem`` / ``cerebellum`` / ``multiple`` / ``other``
laterality ``left`` / ``right`` / ``bilateral`` / ``midline``
enhancement``yes`` / ``no`` (contrast enhancement on T1-Gd)
centre     free text
os_days    overall survival in days (converted from the declared unit)
event      1 = death, 0 = censored
========== ===========================================================================

Every field but ``patient_id`` is optional; an analysis asks for the ones it needs with
``require=``. Empty cells and ``NA``/``N/A``/``NaN``/``null`` are missing values. Problems are
reported as ``clinical.csv row 17 (patient X): column 'age' value 'abc' is not a number``, where the
row number is the line in the file (the header is row 1), as a spreadsheet shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from gliorad.config import DAYS_PER_UNIT, ClinicalConfig
from gliorad.errors import GlioradInputError

log = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = (
    "patient_id", "age", "sex", "grade", "histology", "location", "laterality", "enhancement",
    "centre", "os_time", "event",
)
ID_ALIASES: tuple[str, ...] = ("patient_id", "id", "patient", "subject_id", "subject", "case_id")
MISSING = frozenset({"", "na", "n/a", "nan", "null"})

#: Allowed canonical values and the spellings accepted for them (matched case-insensitively).
CATEGORIES: dict[str, dict[str, str]] = {
    "sex": {"m": "M", "male": "M", "f": "F", "female": "F"},
    "grade": {
        "ii": "II", "2": "II", "g2": "II", "grade ii": "II",
        "iii": "III", "3": "III", "g3": "III", "grade iii": "III",
        "iv": "IV", "4": "IV", "g4": "IV", "grade iv": "IV",
        "lgg": "LGG", "hgg": "HGG",
    },
    "histology": {
        "astrocytoma": "astrocytoma", "oligodendroglioma": "oligodendroglioma",
        "oligoastrocytoma": "oligoastrocytoma", "gbm": "GBM", "glioblastoma": "GBM",
        "other": "other",
    },
    "location": {
        k: k for k in (
            "frontal", "temporal", "parietal", "occipital", "insula", "deep", "brainstem",
            "cerebellum", "multiple", "other",
        )
    },
    "laterality": {
        "left": "left", "l": "left", "right": "right", "r": "right",
        "bilateral": "bilateral", "midline": "midline",
    },
    "enhancement": {
        "yes": "yes", "y": "yes", "1": "yes", "true": "yes", "present": "yes",
        "no": "no", "n": "no", "0": "no", "false": "no", "absent": "no",
    },
}
GRADE_GROUP = {"II": "LGG", "III": "LGG", "IV": "HGG", "LGG": "LGG", "HGG": "HGG"}


def allowed_values(cfg: ClinicalConfig) -> dict[str, dict[str, str]]:
    """Accepted spelling (lower case) -> canonical value, per categorical field, with config."""
    out: dict[str, dict[str, str]] = {}
    for name, table in CATEGORIES.items():
        if name in cfg.categories:
            table = {v.lower(): v for v in cfg.categories[name]}
        table = dict(table)
        for spelling, canon in cfg.aliases.get(name, {}).items():
            table[spelling.lower()] = canon
        out[name] = table
    for name in cfg.categories:
        if name not in out:
            raise GlioradInputError(
                f"clinical.categories: {name!r} is not a categorical field; expected one of: "
                f"{', '.join(CATEGORIES)}"
            )
    return out


def _resolve_columns(header: list[str], cfg: ClinicalConfig, source: str) -> dict[str, str]:
    """gliorad field -> column name in the file."""
    lower = {h.strip().lower(): h for h in header}
    out: dict[str, str] = {}
    for fld, col in cfg.columns.items():
        if fld not in FIELDS:
            raise GlioradInputError(
                f"clinical.columns: {fld!r} is not a clinical field; expected one of: {', '.join(FIELDS)}"
            )
        if col not in header:
            raise GlioradInputError(
                f"{source}: column {col!r} (mapped to {fld}) not found; columns are: {', '.join(header)}"
            )
        out[fld] = col
    for fld in FIELDS:
        if fld not in out and fld in lower:
            out[fld] = lower[fld]
    if "patient_id" not in out:
        alias = next((lower[a] for a in ID_ALIASES if a in lower), None)
        if alias is None:
            raise GlioradInputError(
                f"{source}: no patient id column (looked for {', '.join(ID_ALIASES)} or "
                f"clinical.columns.patient_id); columns are: {', '.join(header)}"
            )
        out["patient_id"] = alias
    return out


def _number(raw: str) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v


def parse_clinical(
    raw: pd.DataFrame, cfg: ClinicalConfig | None = None, source: str = "clinical table"
) -> tuple[pd.DataFrame, list[str]]:
    """Turn a table of strings into the canonical table, collecting one message per problem.

    Returns the canonical table (bad cells left missing) and the list of problems.
    """
    cfg = cfg or ClinicalConfig()
    header = [str(c) for c in raw.columns]
    cols = _resolve_columns(header, cfg, source)
    cats = allowed_values(cfg)
    days_per = DAYS_PER_UNIT[cfg.time_unit]
    lo_age, hi_age = cfg.age_range
    max_time = cfg.max_time_years * 365.25 / days_per
    event_map = {str(k).strip().lower(): int(v) for k, v in cfg.event_values.items()}
    problems: list[str] = []
    records: list[dict[str, object]] = []
    first_row: dict[str, int] = {}

    for i, (_, row) in enumerate(raw.iterrows()):
        line = i + 2  # header is row 1
        pid = str(row[cols["patient_id"]]).strip()
        where = f"{source} row {line} (patient {pid})" if pid else f"{source} row {line}"

        def bad(col_field: str, value: str, expected: str, where: str = where) -> None:
            problems.append(f"{where}: column {cols[col_field]!r} value {value!r} {expected}")

        if pid.lower() in MISSING:
            problems.append(f"{source} row {line}: column {cols['patient_id']!r} is empty; "
                            "every row needs a patient id")
            continue
        if pid in first_row:
            problems.append(f"{source} row {line}: duplicate patient id {pid!r} "
                            f"(first seen in row {first_row[pid]})")
            continue
        first_row[pid] = line
        rec: dict[str, object] = {"patient_id": pid, "_row": line}
        for fld in ("age", "os_time"):
            if fld not in cols:
                continue
            value = str(row[cols[fld]]).strip()
            if value.lower() in MISSING:
                continue
            num = _number(value)
            if num is None or not np.isfinite(num):
                bad(fld, value, "is not a number")
            elif fld == "age" and not lo_age <= num <= hi_age:
                bad(fld, value, f"is out of range; expected an age in years within [{lo_age:g}, {hi_age:g}]")
            elif fld == "os_time" and not 0 <= num <= max_time:
                bad(fld, value, f"is out of range; expected a survival time in {cfg.time_unit} "
                                f"within [0, {max_time:g}]")
            else:
                rec["age" if fld == "age" else "os_days"] = num if fld == "age" else num * days_per
        if "event" in cols:
            value = str(row[cols["event"]]).strip()
            if value.lower() not in MISSING:
                key = value.lower()
                num = _number(value)
                if key in event_map:
                    rec["event"] = event_map[key]
                elif num is not None and num in (0.0, 1.0):
                    rec["event"] = int(num)
                else:
                    extra = f" or one of {sorted(cfg.event_values)}" if cfg.event_values else ""
                    bad("event", value, f"is not valid; expected 0 (censored) or 1 (death){extra}")
        for fld, table in cats.items():
            if fld not in cols:
                continue
            value = str(row[cols[fld]]).strip()
            if value.lower() in MISSING:
                continue
            canon = table.get(value.lower())
            if canon is None:
                allowed = sorted(set(table.values()), key=str.lower)
                bad(fld, value, f"is not an allowed {fld}; expected one of: {', '.join(allowed)}")
            else:
                rec[fld] = canon
        if "centre" in cols:
            value = str(row[cols["centre"]]).strip()
            if value.lower() not in MISSING:
                rec["centre"] = value
        records.append(rec)

    table = _canonical_frame(records)
    return table, problems


def _canonical_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    columns = ["patient_id", "_row", "age", "sex", "grade", "grade_group", "histology", "location",
               "laterality", "enhancement", "centre", "os_days", "event"]
    df = pd.DataFrame.from_records(records, columns=columns)
    g = df["grade"]
    df["grade_group"] = g.map(GRADE_GROUP)
    df.loc[g.isin(["LGG", "HGG"]), "grade"] = np.nan
    df["age"] = df["age"].astype(float)
    df["os_days"] = df["os_days"].astype(float)
    df["event"] = df["event"].astype("Int64")
    return df.set_index("patient_id")


def read_clinical_raw(path: str | Path) -> pd.DataFrame:
    """Read a CSV (or TSV, by extension) as strings, keeping empty cells as ''."""
    p = Path(path)
    if not p.is_file():
        raise GlioradInputError(f"{p}: clinical table not found")
    sep = "\t" if p.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        raw = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise GlioradInputError(f"{p}: cannot parse as a {'TSV' if sep == chr(9) else 'CSV'} "
                                f"table: {err}") from err
    if raw.empty:
        raise GlioradInputError(f"{p}: clinical table has no rows")
    return raw


def read_clinical(
    path: str | Path, cfg: ClinicalConfig | None = None, require: Iterable[str] = (),
    excluded: list[dict[str, object]] | None = None,
) -> pd.DataFrame:
    """Read and check a clinical table; raise :class:`GlioradInputError` listing every problem.

    ``require`` names fields an analysis needs (e.g. ``("os_time", "event")`` for survival).
    With ``cfg.missing == "exclude"`` (the default) a row that lacks one is left out of the
    returned table with a warning, and recorded in ``excluded`` (see :func:`drop_missing`);
    with ``"error"`` every such row is a problem.
    """
    p = Path(path)
    cfg = cfg or ClinicalConfig()
    table, problems = parse_clinical(read_clinical_raw(p), cfg, source=p.name)
    if problems:
        raise GlioradInputError(problems)
    return drop_missing(table, require, p.name, cfg.missing, excluded)


def drop_missing(
    table: pd.DataFrame, require: Iterable[str], source: str, policy: str = "exclude",
    excluded: list[dict[str, object]] | None = None,
) -> pd.DataFrame:
    """``table`` without the rows that lack a required field.

    ``policy`` ``"error"`` raises one line per such row instead. Each left-out patient is
    appended to ``excluded`` as ``{"patient_id", "row", "missing": [fields], "source"}`` for the
    caller to report; without ``excluded`` they are logged as a warning.
    """
    require = tuple(require)
    if policy == "error":
        problems = missing_required(table, require, source)
        if problems:
            raise GlioradInputError([f"{m} (clinical.missing: error; set it to exclude to leave "
                                     "such patients out of this analysis)" for m in problems])
        return table
    canon = {"os_time": "os_days", "grade": "grade_group"}
    for fld in require:
        if canon.get(fld, fld) not in table.columns:
            raise GlioradInputError(f"unknown clinical field {fld!r}; expected one of: {', '.join(FIELDS)}")
    lacks = {pid: [f for f in require if pd.isna(table.at[pid, canon.get(f, f)])] for pid in table.index}
    lacks = {pid: fields for pid, fields in lacks.items() if fields}
    if not lacks:
        return table
    records = [{"patient_id": str(pid), "row": int(table.at[pid, "_row"]) if "_row" in table.columns
                else None, "missing": fields, "source": source} for pid, fields in lacks.items()]
    if excluded is not None:  # the caller reports them
        excluded.extend(records)
        return table.drop(index=list(lacks))
    ids = [r["patient_id"] for r in records]
    log.warning("%s: %d patient(s) lack %s and are left out of this analysis: %s%s", source,
                len(ids), " / ".join(require), ", ".join(ids[:10]), " ..." if len(ids) > 10 else "")
    return table.drop(index=list(lacks))


def missing_required(table: pd.DataFrame, require: Iterable[str], source: str) -> list[str]:
    """One message per row that lacks a required field."""
    canon = {"os_time": "os_days", "grade": "grade_group"}
    out = []
    for fld in require:
        col = canon.get(fld, fld)
        if col not in table.columns:
            raise GlioradInputError(f"unknown clinical field {fld!r}; expected one of: {', '.join(FIELDS)}")
        for pid in table.index[table[col].isna()]:
            out.append(f"{source} row {table.at[pid, '_row']} (patient {pid}): "
                       f"{fld} is missing but required for this analysis")
    return out
