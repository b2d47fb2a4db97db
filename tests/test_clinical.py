from __future__ import annotations

import re

import pandas as pd
import pytest

from gliorad.clinical import parse_clinical, read_clinical
from gliorad.config import ClinicalConfig
from gliorad.errors import GlioradInputError

GOOD = """patient_id,age,sex,grade,histology,location,laterality,enhancement,centre,os_time,event
P1,45,M,II,astrocytoma,frontal,left,no,A,1200,0
P2,61.5,female,IV,Glioblastoma,temporal,R,yes,B,300,1
P3,,F,LGG,oligodendroglioma,,,,A,,
"""


def write(tmp_path, text, name="clinical.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_table_is_canonicalised(tmp_path):
    t = read_clinical(write(tmp_path, GOOD))
    assert list(t.index) == ["P1", "P2", "P3"]
    assert t.loc["P2", "sex"] == "F" and t.loc["P2", "histology"] == "GBM"
    assert t.loc["P2", "laterality"] == "right" and t.loc["P2", "grade_group"] == "HGG"
    assert t.loc["P3", "grade_group"] == "LGG" and pd.isna(t.loc["P3", "grade"])
    assert pd.isna(t.loc["P3", "age"]) and pd.isna(t.loc["P3", "event"])
    assert t.loc["P1", "os_days"] == 1200 and t.loc["P2", "event"] == 1


def test_months_are_converted_to_days_and_columns_mapped(tmp_path):
    text = "ID,Diagnosis Age,OS (months),Status\nX,50,12,DECEASED\nY,40,6.5,LIVING\n"
    cfg = ClinicalConfig(time_unit="months", event_values={"DECEASED": 1, "LIVING": 0},
                         columns={"age": "Diagnosis Age", "os_time": "OS (months)", "event": "Status"})
    t = read_clinical(write(tmp_path, text), cfg)
    assert t.loc["X", "os_days"] == pytest.approx(365.25)
    assert list(t["event"]) == [1, 0]


def test_require_names_rows_lacking_a_field(tmp_path):
    # clinical.missing: error keeps the strict behaviour, naming the row and the setting
    with pytest.raises(GlioradInputError, match=r"clinical\.csv row 4 \(patient P3\): os_time is "
                                                r"missing but required .*clinical\.missing: error"):
        read_clinical(write(tmp_path, GOOD), ClinicalConfig(missing="error"),
                      require=("os_time", "event"))


def test_missing_required_field_leaves_the_patient_out_and_lists_it(tmp_path, caplog):
    # clinical.missing: exclude (the default): the patient is left out of this analysis only
    path = write(tmp_path, GOOD)
    everyone = read_clinical(path)
    excluded: list = []
    t = read_clinical(path, require=("os_time", "event"), excluded=excluded)
    assert "P3" in everyone.index and "P3" not in t.index
    assert len(t) == len(everyone) - 1
    assert excluded == [{"patient_id": "P3", "row": 4, "missing": ["os_time", "event"],
                         "source": "clinical.csv"}]
    with caplog.at_level("WARNING", logger="gliorad.clinical"):
        read_clinical(path, require=("os_time",))  # no list given: logged
    assert re.search(r"clinical\.csv: 1 patient\(s\) lack os_time and are left out of this "
                     r"analysis: P3", caplog.text)


@pytest.mark.parametrize(
    "row, pattern",
    [
        ("P9,abc,M,II,astrocytoma,frontal,left,no,A,100,0", r"row 2 \(patient P9\): column 'age' value 'abc' is not a number"),
        ("P9,130,M,II,astrocytoma,frontal,left,no,A,100,0", r"column 'age' value '130' is out of range; expected an age in years within \[0, 120\]"),
        ("P9,40,M,II,astrocytoma,frontal,left,no,A,-5,0", r"column 'os_time' value '-5' is out of range; expected a survival time in days"),
        ("P9,40,M,II,astrocytoma,frontal,left,no,A,1e9,0", r"column 'os_time' value '1e9' is out of range"),
        ("P9,40,M,II,astrocytoma,frontal,left,no,A,ten,0", r"column 'os_time' value 'ten' is not a number"),
        ("P9,40,M,II,astrocytoma,frontal,left,no,A,100,2", r"column 'event' value '2' is not valid; expected 0 \(censored\) or 1 \(death\)"),
        ("P9,40,M,II,astrocytoma,frontal,left,no,A,100,dead", r"column 'event' value 'dead' is not valid"),
        ("P9,40,X,II,astrocytoma,frontal,left,no,A,100,0", r"column 'sex' value 'X' is not an allowed sex; expected one of: F, M"),
        ("P9,40,M,V,astrocytoma,frontal,left,no,A,100,0", r"column 'grade' value 'V' is not an allowed grade; expected one of: HGG, II, III, IV, LGG"),
        ("P9,40,M,II,ependymoma,frontal,left,no,A,100,0", r"column 'histology' value 'ependymoma' is not an allowed histology; expected one of: astrocytoma, GBM, oligoastrocytoma, oligodendroglioma, other"),
        ("P9,40,M,II,astrocytoma,nose,left,no,A,100,0", r"column 'location' value 'nose' is not an allowed location; expected one of: .*frontal"),
        ("P9,40,M,II,astrocytoma,frontal,up,no,A,100,0", r"column 'laterality' value 'up' is not an allowed laterality; expected one of: bilateral, left, midline, right"),
        ("P9,40,M,II,astrocytoma,frontal,left,maybe,A,100,0", r"column 'enhancement' value 'maybe' is not an allowed enhancement; expected one of: no, yes"),
    ],
)
def test_each_bad_value_is_reported_with_row_column_value(row, pattern):
    header = GOOD.splitlines()[0].split(",")
    raw = pd.DataFrame([row.split(",")], columns=header)
    _, problems = parse_clinical(raw, source="clinical.csv")
    assert len(problems) == 1, problems
    assert re.search(pattern, problems[0]), problems[0]


def test_duplicate_and_empty_ids(tmp_path):
    text = GOOD + "P1,50,M,II,astrocytoma,frontal,left,no,A,10,0\n,50,M,II,,,,,,,\n"
    with pytest.raises(GlioradInputError) as exc:
        read_clinical(write(tmp_path, text))
    msgs = exc.value.problems
    assert any("row 5: duplicate patient id 'P1' (first seen in row 2)" in m for m in msgs)
    assert any("row 6: column 'patient_id' is empty" in m for m in msgs)


def test_all_problems_are_collected_not_just_the_first(tmp_path):
    text = GOOD.splitlines()[0] + "\nA,abc,M,II,x,frontal,left,no,A,1,0\nB,40,Q,II,astrocytoma,frontal,left,no,A,1,7\n"
    with pytest.raises(GlioradInputError) as exc:
        read_clinical(write(tmp_path, text))
    assert len(exc.value.problems) == 4


def test_table_level_errors(tmp_path):
    with pytest.raises(GlioradInputError, match=r"no patient id column \(looked for patient_id, id"):
        read_clinical(write(tmp_path, "name,age\nx,1\n"))
    with pytest.raises(GlioradInputError, match=r"column 'Age at dx' \(mapped to age\) not found"):
        read_clinical(write(tmp_path, GOOD), ClinicalConfig(columns={"age": "Age at dx"}))
    with pytest.raises(GlioradInputError, match=r"'weight' is not a clinical field"):
        read_clinical(write(tmp_path, GOOD), ClinicalConfig(columns={"weight": "age"}))
    with pytest.raises(GlioradInputError, match=r"nope\.csv: clinical table not found"):
        read_clinical(tmp_path / "nope.csv")
    with pytest.raises(GlioradInputError, match=r"clinical table has no rows"):
        read_clinical(write(tmp_path, "patient_id,age\n"))


def test_categories_and_aliases_from_config(tmp_path):
    text = "patient_id,histology,location\nA,glioblastoma multiforme,cerebellar\n"
    cfg = ClinicalConfig(aliases={"histology": {"glioblastoma multiforme": "GBM"}},
                         categories={"location": ["cerebellar", "supratentorial"]})
    t = read_clinical(write(tmp_path, text), cfg)
    assert t.loc["A", "histology"] == "GBM" and t.loc["A", "location"] == "cerebellar"
    with pytest.raises(GlioradInputError, match=r"'colour' is not a categorical field"):
        read_clinical(write(tmp_path, text), ClinicalConfig(categories={"colour": ["red"]}))


@pytest.mark.realdata
def test_real_tcga_clinical_export_with_mapping(shared_data):
    cfg = ClinicalConfig(
        columns={"patient_id": "tcga_id", "os_time": "Overall Survival (Months)",
                 "event": "Overall Survival Status", "grade": "Neoplasm Histologic Grade",
                 "histology": "Cancer Type Detailed", "age": "Diagnosis Age", "sex": "Sex"},
        time_unit="months", event_values={"DECEASED": 1, "LIVING": 0},
    )
    t = read_clinical(shared_data / "tcga_lgg_slices" / "clinical_with_os.csv", cfg)
    assert len(t) == 3 and set(t["grade"]) <= {"II", "III"}
    assert t.loc["TCGA-CS-4941", "event"] == 1
