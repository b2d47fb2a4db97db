from __future__ import annotations

import pytest

from gliorad.cohort import NAMING_SCHEMES, discover_cohort
from gliorad.config import CohortConfig
from gliorad.errors import GlioradInputError
from tests.conftest import make_image


@pytest.mark.parametrize("naming", ["brats2018", "brats2023"])
def test_auto_detects_brats_naming(make_cohort, naming):
    root = make_cohort(ids=("A_1", "B-2", "C"), naming=naming)
    cohort = discover_cohort(root)
    assert cohort.naming == naming
    assert cohort.ids == ["A_1", "B-2", "C"]
    pat = cohort.patients["A_1"]
    assert sorted(pat.files) == ["flair", "seg", "t1", "t1ce", "t2"]
    assert cohort.image_path("C", "t1ce").name == ("C_t1ce.nii.gz" if naming == "brats2018" else "C-t1c.nii.gz")


def test_t1ce_is_not_mistaken_for_t1():
    scheme = NAMING_SCHEMES["brats2018"]
    assert scheme.parse("Brats18_2013_3_1_t1ce.nii.gz") == ("Brats18_2013_3_1", "t1ce")
    assert scheme.parse("Brats18_2013_3_1_t1.nii.gz") == ("Brats18_2013_3_1", "t1")
    assert scheme.parse("notes.txt") is None
    assert NAMING_SCHEMES["brats2023"].parse("BraTS-GLI-00001-000-t2f.nii.gz") == ("BraTS-GLI-00001-000", "flair")


def test_flat_folder_layout_is_found(make_cohort, tmp_path):
    root = make_cohort(ids=("P1",))
    flat = tmp_path / "flat"
    (root / "P1").rename(flat)
    assert discover_cohort(flat).ids == ["P1"]


def test_sequence_subset_and_unknown_sequence(make_cohort):
    root = make_cohort(sequences=("t1ce", "flair"), seg=False)
    cohort = discover_cohort(root, CohortConfig(sequences=["t1ce", "flair"]))
    assert cohort.sequences == ["t1ce", "flair"]
    with pytest.raises(GlioradInputError, match=r"cohort\.sequences \['dwi'\] not known.*t1, t1ce, t2, flair"):
        discover_cohort(root, CohortConfig(sequences=["t1ce", "dwi"]))


def test_at_least_one_sequence_is_required():
    with pytest.raises(ValueError, match="at least one sequence"):
        CohortConfig(sequences=[])


def test_custom_mapping_with_other_sequence_names(tmp_path):
    import SimpleITK as sitk

    for pid in ("s01", "s02"):
        (tmp_path / pid / "anat").mkdir(parents=True)
        sitk.WriteImage(make_image(), str(tmp_path / pid / "anat" / f"{pid}_T1w.nii.gz"))
        sitk.WriteImage(make_image(seed=1), str(tmp_path / pid / "anat" / f"{pid}_dwi.nrrd"))
    cfg = CohortConfig(naming="custom", sequences=["t1", "dwi"],
                       mapping={"t1": "{id}/anat/{id}_T1w.nii.gz", "dwi": "{id}/anat/{id}_dwi.nrrd"})
    cohort = discover_cohort(tmp_path, cfg)
    assert cohort.ids == ["s01", "s02"]
    assert cohort.patients["s02"].files["dwi"].name == "s02_dwi.nrrd"


def test_custom_mapping_needs_id_placeholder(tmp_path):
    cfg = CohortConfig(naming="custom", sequences=["t1"], mapping={"t1": "T1.nii.gz"})
    with pytest.raises(GlioradInputError, match=r"has no '\{id\}' placeholder"):
        discover_cohort(tmp_path, cfg)


def test_no_patients_and_bad_naming_messages(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(GlioradInputError, match=r"no patients found \(looked for BraTS 2018-2021 naming"):
        discover_cohort(tmp_path)
    with pytest.raises(GlioradInputError, match=r"cohort\.naming 'brats2015' is not valid; expected one of: auto, brats2018, brats2023, custom"):
        discover_cohort(tmp_path, CohortConfig(naming="brats2015"))
    with pytest.raises(GlioradInputError, match=r"missing_dir: cohort folder not found"):
        discover_cohort(tmp_path / "missing_dir")


@pytest.mark.realdata
def test_real_brats2018_and_2023_folders(shared_data):
    c18 = discover_cohort(shared_data / "brats2018")
    assert c18.naming == "brats2018" and len(c18) == 6
    assert all(p.seg is not None for p in c18.patients.values())
    c23 = discover_cohort(shared_data / "brats2023_format")
    assert c23.naming == "brats2023" and c23.ids == ["BraTS-GLI-00001-000"]
    assert c23.patients["BraTS-GLI-00001-000"].seg is None
