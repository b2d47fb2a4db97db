"""Feature tables from the wild (issue 16 item 4): spreadsheet error cells, infinite values,
empty and constant columns are read as missing / dropped and counted, or refused with
``nonfinite: error``; every command that reads a feature table does so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gliorad.errors import GlioradInputError
from gliorad.tables import (
    ERROR_LITERALS,
    TableCleaning,
    clean_features,
    feature_matrix,
    is_error_literal,
    read_features,
    read_table,
)

runner = CliRunner()
SEVEN = ("#DIV/0!", "#N/A", "#VALUE!", "#NUM!", "#REF!", "#NAME?", "#NULL!")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------- cells read as missing
@pytest.mark.parametrize("literal", SEVEN)
def test_each_error_literal_is_missing_and_counted(tmp_path, literal):
    p = _csv(tmp_path / "t.csv", f"id,a,b\nP1,1,0.5\nP2,2,{literal}\nP3,3,1.5\nP4,4, {literal} \n")
    X, rec = read_features(p)
    assert X.dtypes.eq(np.float64).all() and list(X.columns) == ["a", "b"]
    assert X["b"].isna().tolist() == [False, True, False, True]
    assert X.loc["P3", "b"] == 1.5
    assert rec.error_cells == {"b": {literal: 2}} and rec.n_error_cells == 2
    assert rec.warnings() == [(f"t.csv: 2 spreadsheet error cell(s) read as missing in 1 "
                              f"column(s): b ({literal} x2)")]
    with pytest.raises(GlioradInputError, match=(
            rf"t\.csv: column 'b' is not numeric \(e\.g\. '{re.escape(literal)}' for patient P2\): "
            r"2 spreadsheet error cell\(s\)")):
        read_features(p, nonfinite="error")


def test_error_literal_spellings():
    for v in (*ERROR_LITERALS, "#div/0!", " #N/A ", "Err:502", "#n/a n/a"):
        assert is_error_literal(v), v
    for v in ("#", "DIV/0", "N/A", "nan", "", "#DIV/0", "Err:5", 1.0, None):
        assert not is_error_literal(v), v


@pytest.mark.parametrize(("text", "value"), [("inf", np.inf), ("-inf", -np.inf),
                                             ("Infinity", np.inf), ("-Infinity", -np.inf),
                                             ("INF", np.inf), ("1e400", np.inf)])
def test_infinite_text_is_missing_and_counted(tmp_path, text, value):
    p = _csv(tmp_path / "t.csv", f"id,a,b\nP1,1,0.5\nP2,2,{text}\nP3,3,1.5\n")
    assert read_table(p)["b"].map(lambda v: float(v)).iloc[1] == value
    X, rec = read_features(p)
    assert np.isnan(X.loc["P2", "b"]) and X.loc["P3", "b"] == 1.5
    assert rec.infinite_cells == {"b": 1} and not rec.error_cells
    assert "1 infinite value(s) read as missing in 1 column(s): b (x1)" in rec.warnings()[0]
    with pytest.raises(GlioradInputError, match=(
            r"t\.csv: 1 infinite value\(s\) \(first: patient P2, column 'b'\); expected finite "
            r"numbers or empty cells")):
        read_features(p, nonfinite="error")


@pytest.mark.parametrize("text", ["nan", "NaN", "NA", "", "null", "N/A"])
def test_missing_value_text_is_plain_missing(tmp_path, text):
    """nan text was already read as missing: not a change, not counted, not an error."""
    p = _csv(tmp_path / "t.csv", f"id,a,b\nP1,1,0.5\nP2,2,{text}\nP3,3,1.5\n")
    for mode in ("missing", "error"):
        X, rec = read_features(p, nonfinite=mode)
        assert np.isnan(X.loc["P2", "b"]) and not rec.changed and rec.n_missing_cells == 1


def test_parquet_real_infinity_and_text_cells(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"patient_id": ["001", "002", "003", "004"],
                       "a": [1.0, np.inf, -np.inf, 4.0],
                       "b": ["1.5", "#DIV/0!", "nan", "2.5"],
                       "c": [1, 2, 3, 5]})
    df.to_parquet(tmp_path / "t.parquet")
    X, rec = read_features(tmp_path / "t.parquet")
    assert list(X.index) == ["001", "002", "003", "004"]
    assert X["a"].isna().tolist() == [False, True, True, False]
    assert X["b"].tolist()[::3] == [1.5, 2.5] and X["b"].isna().sum() == 2
    assert rec.infinite_cells == {"a": 2} and rec.error_cells == {"b": {"#DIV/0!": 1}}
    assert X.columns.tolist() == ["a", "b", "c"] and rec.n_missing_cells == 4
    with pytest.raises(GlioradInputError) as err:
        read_features(tmp_path / "t.parquet", nonfinite="error")
    assert any(re.search(r"column 'b' is not numeric \(e\.g\. '#DIV/0!' for patient 002\)", m)
               for m in err.value.problems)
    assert any(re.search(r"2 infinite value\(s\) \(first: patient 002, column 'a'\)", m)
               for m in err.value.problems)


# ------------------------------------------------------------------------- dropped columns
def test_empty_and_constant_columns_dropped_and_counted():
    t = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan],
                      "empty": [np.nan] * 4,
                      "errors_only": ["#DIV/0!", "#DIV/0!", None, "#N/A"],
                      "const": [5.0, 5.0, np.nan, 5.0],
                      "const_after": ["2", "#VALUE!", "2", "inf"],
                      "flag": [True, True, True, True],
                      "b": [0, 1, 0, 1]},
                     index=pd.Index(["P1", "P2", "P3", "P4"], name="patient_id"))
    X, rec = clean_features(t, "t.csv")
    assert list(X.columns) == ["a", "b"]
    assert rec.empty_columns == ["empty", "errors_only"]
    assert rec.constant_columns == ["const", "const_after", "flag"]
    assert rec.error_cells == {"errors_only": {"#DIV/0!": 2, "#N/A": 1},
                               "const_after": {"#VALUE!": 1}}
    assert rec.infinite_cells == {"const_after": 1}
    d = rec.to_dict()
    assert d["n_columns_read"] == 7 and d["n_columns_kept"] == 2 and d["columns_dropped"]
    assert d["n_error_cells"] == 4 and d["n_infinite_cells"] == 1 and d["n_missing_cells"] == 1
    json.dumps(d)
    lines = rec.warnings()
    assert len(lines) == 4
    assert lines[2] == "t.csv: 2 column(s) empty for every patient dropped: empty, errors_only"
    assert lines[3] == ("t.csv: 3 constant column(s) (one value for every patient) dropped: "
                        "const, const_after, flag")
    # applying a fitted model: nothing is dropped (the model needs its columns)
    X, rec = clean_features(t, "t.csv", drop=False)
    assert list(X.columns) == list(t.columns) and rec.dropped_columns == []
    assert "2 column(s) empty for every patient kept" in rec.warnings()[2]
    # strict: the empty column is refused, named (the constant ones are still dropped)
    with pytest.raises(GlioradInputError, match=(
            r"t\.csv: 1 column\(s\) are empty for every patient: empty; drop them")):
        clean_features(t[["a", "empty", "const"]], "t.csv", nonfinite="error")
    X, rec = clean_features(t[["a", "const"]], "t.csv", nonfinite="error")
    assert list(X.columns) == ["a"] and rec.constant_columns == ["const"]


def test_warnings_name_columns_capped():
    t = pd.DataFrame({f"e{i}": [np.nan, np.nan] for i in range(14)} | {"x": [1.0, 2.0]},
                     index=["p", "q"])
    _, rec = clean_features(t, "t.csv")
    assert rec.warnings() == [("t.csv: 14 column(s) empty for every patient dropped: e0, e1, e2, "
                              "e3, e4, e5, e6, e7, e8, e9 ... and 4 more")]
    assert len(rec.to_dict()["empty_columns"]) == 14


def test_text_is_still_an_error_and_no_column_left(tmp_path):
    p = _csv(tmp_path / "t.csv", "id,a,site\nP1,1,A\nP2,#DIV/0!,B\nP3,3,A\n")
    for mode in ("missing", "error"):
        with pytest.raises(GlioradInputError, match=(
                r"t\.csv: column 'site' is not numeric \(e\.g\. 'A' for patient P1\); features "
                r"must be numbers")):
            read_features(p, nonfinite=mode)
    X, _ = read_features(p, exclude=("site",))
    assert X["a"].isna().tolist() == [False, True, False]
    p = _csv(tmp_path / "u.csv", "id,a,b,c\nP1,#DIV/0!,,3\nP2,#N/A,,3\n")
    with pytest.raises(GlioradInputError, match=(
            r"u\.csv: no usable feature column: of 3, 2 are empty for every patient and 1 "
            r"constant \(a, b, c\)")):
        read_features(p)
    with pytest.raises(GlioradInputError, match=r"nonfinite 'skip' is not valid; expected one "
                       r"of: missing, error"):
        read_features(p, nonfinite="skip")


def test_ids_and_labels_stay_text(tmp_path):
    p = _csv(tmp_path / "t.csv", "patient_id,grade,a\n007,IV,1\n1e5,II,#DIV/0!\n0012,#N/A,3\n")
    t = read_table(p)
    assert list(t.index) == ["007", "1e5", "0012"]
    X, rec = clean_features(t, "t.csv", exclude=("grade",))
    assert list(X.index) == ["007", "1e5", "0012"] and rec.error_cells == {"a": {"#DIV/0!": 1}}
    from gliorad.tables import parse_grade_labels

    with pytest.raises(GlioradInputError, match=r"grade label missing for 1 patient\(s\): 0012"):
        parse_grade_labels(t["grade"], "t.csv column 'grade'")
    p = _csv(tmp_path / "u.csv", "patient_id,a\nP1,1\n#N/A,2\n")
    with pytest.raises(GlioradInputError, match=r"row 3: empty 'patient_id'"):
        read_table(p)


def test_feature_matrix_logs_the_changes(caplog):
    t = pd.DataFrame({"a": [1.0, np.inf, 2.0], "b": [np.nan] * 3}, index=["p", "q", "r"])
    with caplog.at_level("WARNING", logger="gliorad.tables"):
        X = feature_matrix(t, "t.csv")
    assert list(X.columns) == ["a"]
    assert "1 infinite value(s) read as missing" in caplog.text
    assert "1 column(s) empty for every patient dropped: b" in caplog.text


def test_survival_and_radiomics_readers_delegate(tmp_path):
    from gliorad.features.radiomics import read_feature_table as read_radiomics
    from gliorad.survival.coding import read_feature_table as read_survival

    p = _csv(tmp_path / "t.csv", "patient_id,a,b,c\n007,1,#DIV/0!,7\nP2,2,inf,7\nP3,3,4,7\nP4,4,5,7\n")
    s = read_survival(p)
    assert list(s.index) == ["007", "P2", "P3", "P4"] and list(s.columns) == ["a", "b"]
    assert s["b"].isna().tolist() == [True, True, False, False]
    assert list(read_survival(p, drop=False).columns) == ["a", "b", "c"]
    r = read_radiomics(p)  # a gliorad table: no column dropped
    assert list(r.columns) == ["a", "b", "c"] and r["b"].isna().sum() == 2
    with pytest.raises(GlioradInputError, match=r"column 'b' is not numeric \(e\.g\. '#DIV/0!' "
                       r"for patient 007\)"):
        read_survival(p, nonfinite="error")
    with pytest.raises(GlioradInputError, match=r"column 'b' is not numeric \(e\.g\. '#DIV/0!' "
                       r"for patient 007\)"):
        read_radiomics(p, nonfinite="error")
    # no id-like column: the survival reader takes the first column
    q = _csv(tmp_path / "q.csv", "case,a\nX1,1\nX2,#NUM!\nX3,3\n")
    assert list(read_survival(q).index) == ["X1", "X2", "X3"]


def test_table_cleaning_default_is_unchanged():
    rec = TableCleaning("t.csv")
    assert not rec.changed and rec.warnings() == [] and rec.to_dict()["n_error_cells"] == 0


# ---------------------------------------------------------------------------- the Seen case
def _seen_table(tmp_path: Path, n: int = 60, p: int = 12, seed: int = 0) -> Path:
    """A published radiomic table as met in the wild: two columns with #DIV/0! cells, one
    infinite cell, four columns empty for every patient (and a constant one, a #N/A)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    X = rng.normal(size=(n, p))
    X[:, [1, 4, 7]] += y[:, None] * 1.2
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(p)]).astype(object)
    df.insert(0, "patient_id", [f"TCGA-{i:04d}" for i in range(n)])
    df.insert(1, "grade", np.where(y == 1, "GBM", "LGG"))
    df.loc[[3, 17, 40], "f2"] = "#DIV/0!"
    df.loc[[8, 9], "f5"] = "#DIV/0!"
    df.loc[11, "f6"] = "#N/A"
    df.loc[21, "f9"] = "inf"
    for j in range(4):
        df[f"empty{j}"] = ""
    df["scanner_version"] = 3
    path = tmp_path / "published.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_yaml(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("grading:\n  svm_C: [1.0, 8.0]\n  svm_gamma: [0.03, 0.125]\n"
                   "  rf_n_estimators: 30\n  lasso_strengths: 4\n  lasso_cv: 3\n  inner_cv: 3\n"
                   "  cv_splits: 3\n  cv_repeats: 1\n")
    return cfg


def _grade(args):
    from gliorad.commands.grade import app

    return runner.invoke(app, [str(a) for a in args])


def test_seen_grade_cv_on_a_published_table(tmp_path, tiny_yaml):
    """Issue 16, Seen 1: one run to a result instead of three rounds of --exclude."""
    path = _seen_table(tmp_path)
    base = ["cv", "--features", path, "--labels", "grade", "--preset", "demo",
            "--config", tiny_yaml, "--jobs", "1"]
    res = _grade([*base, "--out", tmp_path / "cv"])
    assert res.exit_code == 0, res.output
    assert "AUC" in res.output and "wrote" in res.output
    out = res.output
    assert ("warning: published.csv: 6 spreadsheet error cell(s) read as missing in 3 column(s): "
            "f2 (#DIV/0! x3), f5 (#DIV/0! x2), f6 (#N/A x1)") in out
    assert "warning: published.csv: 1 infinite value(s) read as missing in 1 column(s): f9 (x1)" in out
    assert ("warning: published.csv: 4 column(s) empty for every patient dropped: empty0, empty1, "
            "empty2, empty3") in out
    assert ("warning: published.csv: 1 constant column(s) (one value for every patient) dropped: "
            "scanner_version") in out
    m = json.loads((tmp_path / "cv" / "metrics.json").read_text(encoding="utf-8"))
    assert m["auc"] is not None and m["auc"] > 0.5
    tc = m["table_cleaning"]["features"]
    assert tc["error_cells"] == {"f2": {"#DIV/0!": 3}, "f5": {"#DIV/0!": 2}, "f6": {"#N/A": 1}}
    assert tc["infinite_cells"] == {"f9": 1}
    assert tc["empty_columns"] == ["empty0", "empty1", "empty2", "empty3"]
    assert tc["constant_columns"] == ["scanner_version"]
    assert tc["n_columns_read"] == 17 and tc["n_columns_kept"] == 12 and tc["n_missing_cells"] == 7
    assert any("spreadsheet error cell(s)" in n for n in m["notes"])
    prov = json.loads((tmp_path / "cv" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["settings"]["nonfinite"] == "missing"

    # nonfinite error: today's clear errors, every kind in one round, nothing written
    res = _grade([*base, "--out", tmp_path / "strict", "--nonfinite", "error"])
    assert res.exit_code == 2
    for pattern in ((r"error: published\.csv: column 'f2' is not numeric \(e\.g\. '#DIV/0!' for "
                    r"patient TCGA-0003\): 3 spreadsheet error cell\(s\)"),
                    (r"error: published\.csv: column 'f6' is not numeric \(e\.g\. '#N/A' for "
                    r"patient TCGA-0011\)"),
                    (r"error: published\.csv: 4 column\(s\) are empty for every patient: empty0, "
                    r"empty1, empty2, empty3; drop them"),
                    (r"error: published\.csv: 1 infinite value\(s\) \(first: patient TCGA-0021, "
                    r"column 'f9'\)")):
        assert re.search(pattern, res.output), (pattern, res.output)
    assert not (tmp_path / "strict").exists()
    res = _grade([*base, "--out", tmp_path / "x", "--nonfinite", "skip"])
    assert res.exit_code == 2 and "nonfinite 'skip' is not valid" in res.output


def test_grade_fit_then_evaluate_keeps_the_model_columns(tmp_path, tiny_yaml):
    path = _seen_table(tmp_path)
    res = _grade(["fit", "--features", path, "--labels", "grade", "--preset", "demo",
                  "--config", tiny_yaml, "--jobs", "1", "--out", tmp_path / "fit"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "fit" / "model.json").read_text(encoding="utf-8"))
    assert "empty0" not in info["feature_columns"] and "f2" in info["feature_columns"]
    assert info["table_cleaning"]["features"]["n_error_cells"] == 6
    # new patients: a model column empty or constant there is kept (imputed), not dropped
    new = pd.read_csv(path, dtype=str, keep_default_na=False).iloc[:20].copy()
    new["f3"] = ""
    new["f8"] = "1.0"
    new.loc[2, "f1"] = "#REF!"
    new.to_csv(tmp_path / "new.csv", index=False)
    res = _grade(["evaluate", "--model", tmp_path / "fit", "--features", tmp_path / "new.csv",
                  "--labels", "grade", "--out", tmp_path / "ev"])
    assert res.exit_code == 0, res.output
    assert "f1 (#REF! x1)" in res.output and "empty for every patient kept: f3" in res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert m["table_cleaning"]["features"]["empty_columns"] == ["f3"]
    assert m["table_cleaning"]["features"]["columns_dropped"] is False
    res = _grade(["evaluate", "--model", tmp_path / "fit", "--features", tmp_path / "new.csv",
                  "--out", tmp_path / "ev2", "--nonfinite", "error"])
    assert res.exit_code == 2
    assert re.search(r"column 'f1' is not numeric \(e\.g\. '#REF!' for patient TCGA-0002\)",
                     res.output)


def test_grade_tables_records_cleaning_per_set(tmp_path, tiny_yaml):
    from gliorad.grading.config import GradingConfig
    from gliorad.grading.run import run_tables

    path = _seen_table(tmp_path, n=45)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    feats = [c for c in table.columns if c.startswith(("f", "empty", "scanner"))]
    rad = table[["patient_id", "grade"]].join(table[feats].add_prefix("t1ce_original_"))
    rad.to_csv(tmp_path / "rad.csv", index=False)
    cfg = GradingConfig.from_yaml(tiny_yaml, "demo")
    res = run_tables({}, "grade", tmp_path / "tables", config=cfg, radiomics_table=tmp_path / "rad.csv")
    assert any("t1ce_original_f2 (#DIV/0! x3)" in w for w in res.warnings)
    m = json.loads((tmp_path / "tables" / "metrics.json").read_text(encoding="utf-8"))
    assert m["table_cleaning"]["radiomics"]["n_error_cells"] == 6
    assert "radiomics_t1ce" in m
    assert "spreadsheet error cell(s)" in (tmp_path / "tables" / "tables.md").read_text()


# ------------------------------------------------------------------------------- survival
# the survival CLI tests' settings (small forests, one horizon): the same analysis, messier table
from test_survival_analysis import CLI_YAML as SURV_YAML


@pytest.fixture(scope="module")
def survival_files(tmp_path_factory):
    from gliorad.synthetic import (
        CLINICAL_COLUMNS,
        SynthConfig,
        sample_patients,
        synthetic_feature_table,
    )

    d = tmp_path_factory.mktemp("surv")
    patients = sample_patients(SynthConfig(n_patients=240, seed=4, grade_slope=2.5,
                                           infiltration_slope=0.0, mismatch_slope=0.0))
    patients.reset_index()[CLINICAL_COLUMNS].to_csv(d / "clinical.csv", index=False)
    feats = synthetic_feature_table(patients, n_features=90, n_deep=30, seed=0)
    out = feats.astype(object)
    cols = list(feats.columns)
    ids = list(feats.index)
    out.loc[ids[3], cols[0]] = "#DIV/0!"
    out.loc[ids[10], cols[0]] = "#DIV/0!"
    out.loc[ids[5], cols[40]] = "#VALUE!"
    out.loc[ids[7], cols[-1]] = "-inf"
    out["all_missing"] = "#N/A"
    out["constant"] = 1.0
    out.to_csv(d / "features.csv", index_label="patient_id")
    (d / "config.yaml").write_text(SURV_YAML)
    return d, cols


def _survival(args):
    from gliorad.commands.survival import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_survival_fit_and_validate_on_a_table_with_error_cells(survival_files, tmp_path):
    d, cols = survival_files
    base = ["fit", d / "features.csv", d / "clinical.csv", "--config", d / "config.yaml",
            "--train", "B", "--external", "A"]
    res = _survival([*base, "--out", tmp_path / "fit"])
    assert res.exit_code == 0, res.output
    assert "C integrated" in res.output
    assert (f"warning: features.csv: 243 spreadsheet error cell(s) read as missing in 3 column(s): "
            f"{cols[0]} (#DIV/0! x2), {cols[40]} (#VALUE! x1), all_missing (#N/A x240)") in res.output
    assert f"infinite value(s) read as missing in 1 column(s): {cols[-1]} (x1)" in res.output
    assert "1 column(s) empty for every patient dropped: all_missing" in res.output
    assert "1 constant column(s) (one value for every patient) dropped: constant" in res.output
    m = json.loads((tmp_path / "fit" / "metrics.json").read_text(encoding="utf-8"))
    tc = m["table_cleaning"]["features"]
    assert tc["error_cells"][cols[0]] == {"#DIV/0!": 2} and tc["infinite_cells"] == {cols[-1]: 1}
    assert tc["empty_columns"] == ["all_missing"] and tc["constant_columns"] == ["constant"]
    prov = json.loads((tmp_path / "fit" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["key"]["nonfinite"] == "missing"
    # applying the bundle: nothing dropped, the cells still read as missing
    res = _survival(["validate", tmp_path / "fit" / "bundle", d / "features.csv",
                     d / "clinical.csv", "--out", tmp_path / "val", "--cohort-column", "centre"])
    assert res.exit_code == 0, res.output
    v = json.loads((tmp_path / "val" / "metrics.json").read_text(encoding="utf-8"))
    assert v["table_cleaning"]["features"]["columns_dropped"] is False


def test_survival_nonfinite_error(survival_files, tmp_path):
    d, cols = survival_files
    res = _survival(["fit", d / "features.csv", d / "clinical.csv", "--config", d / "config.yaml",
                     "--train", "B", "--out", tmp_path / "fit", "--nonfinite", "error"])
    assert res.exit_code == 2
    for pattern in ((rf"error: features\.csv: column '{cols[0]}' is not numeric \(e\.g\. "
                    r"'#DIV/0!' for patient \S+\): 2 spreadsheet error cell\(s\)"),
                    r"error: features\.csv: column 'all_missing' is not numeric \(e\.g\. '#N/A'",
                    (rf"error: features\.csv: 1 infinite value\(s\) \(first: patient \S+, column "
                    rf"'{cols[-1]}'\)")):
        assert re.search(pattern, res.output), (pattern, res.output)
    assert not (tmp_path / "fit").exists()


@pytest.mark.slow
def test_survival_cv_records_cleaning(survival_files, tmp_path):
    d, _ = survival_files
    res = _survival(["cv", d / "features.csv", d / "clinical.csv", "--config", d / "config.yaml",
                     "--train", "B", "--out", tmp_path / "cv"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "cv" / "metrics.json").read_text(encoding="utf-8"))
    assert m["table_cleaning"]["features"]["empty_columns"] == ["all_missing"]


# ------------------------------------------------------------------------------ agreement
def test_agreement_reads_error_cells_as_missing(tmp_path):
    from gliorad.commands.features import app

    rng = np.random.default_rng(1)
    base = rng.normal(size=(12, 4))
    ids = pd.Index([f"P{i}" for i in range(12)], name="patient_id")
    auto = pd.DataFrame(base + rng.normal(scale=0.1, size=base.shape), index=ids,
                        columns=list("abcd")).astype(object)
    manual = pd.DataFrame(base, index=ids, columns=list("abcd"))
    auto.loc["P3", "b"] = "#DIV/0!"
    auto.loc["P4", "c"] = "inf"
    auto.to_csv(tmp_path / "auto.csv")
    manual.to_csv(tmp_path / "manual.csv")
    res = runner.invoke(app, ["agreement", str(tmp_path / "auto.csv"), str(tmp_path / "manual.csv"),
                              "--out", str(tmp_path / "agr")])
    assert res.exit_code == 0, res.output
    assert "b (#DIV/0! x1)" in res.output and "c (x1)" in res.output
    record = json.loads((tmp_path / "agr" / "agreement.json").read_text(encoding="utf-8"))
    assert record["table_cleaning"]["auto"]["error_cells"] == {"b": {"#DIV/0!": 1}}
    assert record["table_cleaning"]["manual"]["n_error_cells"] == 0
    icc = pd.read_csv(tmp_path / "agr" / "icc_auto_vs_manual.csv", index_col=0)
    assert np.isnan(icc.loc["b", "icc"]) and icc.loc["a", "icc"] > 0.9
    res = runner.invoke(app, ["agreement", str(tmp_path / "auto.csv"), str(tmp_path / "manual.csv"),
                              "--out", str(tmp_path / "agr2"), "--nonfinite", "error"])
    assert res.exit_code == 2
    assert re.search(r"auto\.csv: column 'b' is not numeric \(e\.g\. '#DIV/0!' for patient P3\)",
                     res.output)


# ------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_pyradiomics_baseline_as_a_wide_table(tmp_path):
    """pyradiomics' own expected values (one file per feature class, cases in columns) turned
    into the wide table a user would make: one row per case, the classes joined (cases a class
    lacks are empty), numeric diagnostics kept (several constant across cases)."""
    folder = DATA / "pyradiomics" / "baseline"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    parts = []
    for f in sorted(folder.glob("baseline_*.csv")):
        t = pd.read_csv(f, index_col=0, dtype=str).T
        numeric = [c for c in t.columns
                   if pd.to_numeric(t[c].dropna(), errors="coerce").notna().all()]
        parts.append(t[numeric].add_prefix(f"{f.stem.removeprefix('baseline_')}:"))
    wide = pd.concat(parts, axis=1, join="outer").rename_axis("case_id")
    wide.to_csv(tmp_path / "baseline_wide.csv")
    X, rec = read_features(tmp_path / "baseline_wide.csv")
    raw = wide.apply(pd.to_numeric)
    constant = [c for c in raw.columns if raw[c].nunique() == 1]
    assert rec.constant_columns == constant and len(constant) > 0
    assert rec.empty_columns == [c for c in raw.columns if raw[c].isna().all()]
    assert list(X.columns) == [c for c in raw.columns if c not in set(constant + rec.empty_columns)]
    np.testing.assert_allclose(X.to_numpy(), raw[X.columns].to_numpy(), rtol=1e-12)
    assert rec.n_missing_cells == int(raw[X.columns].isna().to_numpy().sum()) > 0
    # a spreadsheet round trip of the same table: the undefined cells as Excel writes them
    odd = wide.copy()
    odd.iloc[0, 5] = "#DIV/0!"
    odd.iloc[1, 6] = "#NUM!"
    odd.to_csv(tmp_path / "baseline_excel.csv")
    X2, rec2 = read_features(tmp_path / "baseline_excel.csv")
    assert rec2.n_error_cells == 2 and np.isnan(X2.iloc[0][wide.columns[5]])
