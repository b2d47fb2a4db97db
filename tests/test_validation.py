"""`gliorad validate`: each bad case of the issue gets a message naming the file or row."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from gliorad.config import CohortConfig, GlioradConfig
from gliorad.validation import validate
from tests.conftest import make_image

HEADER = "patient_id,age,sex,grade,histology,location,laterality,enhancement,centre,os_time,event\n"


def clinical_for(tmp_path, ids, extra_rows=""):
    rows = "".join(f"{pid},50,M,II,astrocytoma,frontal,left,no,A,100,0\n" for pid in ids)
    p = tmp_path / "clinical.csv"
    p.write_text(HEADER + rows + extra_rows)
    return p


def only_problem(report, pattern):
    assert len(report.problems) == 1, report.problems
    assert re.search(pattern, report.problems[0]), report.problems[0]


def test_valid_cohort_and_table(make_cohort, tmp_path):
    root = make_cohort(ids=("P1", "P2"))
    report = validate(root, clinical_for(tmp_path, ["P1", "P2"]))
    assert report.ok, report.problems
    assert "2 patients (brats2018 naming)" in report.summary()


def test_missing_sequence_file(make_cohort):
    root = make_cohort(ids=("P1",))
    (root / "P1" / "P1_flair.nii.gz").unlink()
    only_problem(validate(root), r"patient P1: missing flair file \(expected P1_flair\.nii\.gz\)")


def test_missing_segmentation_only_when_required(make_cohort):
    root = make_cohort(ids=("P1",), seg=False)
    assert validate(root).ok
    cfg = GlioradConfig(cohort=CohortConfig(require_seg=True))
    only_problem(validate(root, config=cfg), r"patient P1: missing seg file \(expected P1_seg\.nii\.gz\)")


def test_unreadable_and_truncated_images(make_cohort):
    root = make_cohort(ids=("P1", "P2"))
    (root / "P1" / "P1_t2.nii.gz").write_bytes(b"garbage")
    f = root / "P2" / "P2_t1.nii.gz"
    f.write_bytes(f.read_bytes()[:-40])
    report = validate(root)
    assert len(report.problems) == 2, report.problems
    assert re.search(r"P1_t2\.nii\.gz: cannot read image \(unreadable or truncated", report.problems[0])
    assert re.search(r"P2_t1\.nii\.gz: cannot read image \(unreadable or truncated", report.problems[1])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"shape": (10, 12, 9)}, r"P1_t2\.nii\.gz: shape \(9, 12, 10\) differs from \(8, 12, 10\) of P1_t1\.nii\.gz"),
        ({"spacing": (1.0, 1.0, 1.5)}, r"P1_t2\.nii\.gz: spacing \(1, 1, 1\.5\) differs from \(1, 1, 1\)"),
        ({"origin": (0.0, 2.0, 0.0)}, r"P1_t2\.nii\.gz: origin \(0, 2, 0\) differs from \(0, 0, 0\)"),
        ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, r"P1_t2\.nii\.gz: direction .* differs from"),
    ],
)
def test_geometry_mismatch_between_sequences(make_cohort, kwargs, pattern):
    root = make_cohort(ids=("P1",), seg=False)
    direction = kwargs.pop("direction", None)
    img = make_image(**kwargs)
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(root / "P1" / "P1_t2.nii.gz"))
    only_problem(validate(root), pattern)


def test_small_geometry_differences_within_tolerance_are_accepted(make_cohort):
    root = make_cohort(ids=("P1",), seg=False)
    sitk.WriteImage(make_image(origin=(0.001, 0.0, 0.0)), str(root / "P1" / "P1_t2.nii.gz"))
    assert validate(root).ok


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd"])
def test_non_finite_voxels(make_cohort, ext):
    # ITK's NIfTI reader silently maps NaN/inf to 0; the check must read the file itself.
    root = make_cohort(ids=("P1",), seg=False)
    (root / "P1" / "P1_t1ce.nii.gz").unlink()
    arr = np.ones((10, 12, 8), np.float32)
    arr[0, 0, :3] = np.nan
    arr[1, 1, 1] = np.inf
    sitk.WriteImage(make_image(array=arr), str(root / "P1" / f"P1_t1ce{ext}"))
    only_problem(validate(root), r"P1_t1ce\.n\w+(\.gz)?: 4 non-finite voxels \(NaN or inf\); expected finite")


def test_constant_image(make_cohort):
    root = make_cohort(ids=("P1",), seg=False)
    sitk.WriteImage(make_image(array=np.zeros((10, 12, 8), np.int16)), str(root / "P1" / "P1_flair.nii.gz"))
    only_problem(validate(root), r"P1_flair\.nii\.gz: image is constant \(every voxel = 0\)")


def test_segmentation_labels_outside_set_and_empty(make_cohort):
    root = make_cohort(ids=("P1", "P2"))
    bad = np.zeros((10, 12, 8), np.uint8)
    bad[2, 2, 2], bad[3, 3, 3] = 3, 7
    sitk.WriteImage(make_image(array=bad), str(root / "P1" / "P1_seg.nii.gz"))
    sitk.WriteImage(make_image(array=np.zeros_like(bad)), str(root / "P2" / "P2_seg.nii.gz"))
    report = validate(root)
    assert len(report.problems) == 2, report.problems
    assert re.search(r"P1_seg\.nii\.gz: segmentation label values \[3, 7\] are outside the declared set \[0, 1, 2, 4\]",
                     report.problems[0])
    assert re.search(r"P2_seg\.nii\.gz: segmentation is empty \(no tumour voxels\)", report.problems[1])
    cfg = GlioradConfig(cohort=CohortConfig(seg_labels=[0, 1, 2, 3, 4, 7]))
    assert len(validate(root, config=cfg).problems) == 1


def test_table_and_disk_disagree(make_cohort, tmp_path):
    root = make_cohort(ids=("P1", "P2"))
    report = validate(root, clinical_for(tmp_path, ["P1", "P3"]))
    assert len(report.problems) == 2, report.problems
    assert re.search(r"clinical\.csv row 3: patient 'P3' is in the table but has no images in .*cohort",
                     report.problems[0])
    assert re.search(r"cohort: patient 'P2' has images but no row in clinical\.csv", report.problems[1])


def test_clinical_value_problems_reach_the_report(make_cohort, tmp_path):
    root = make_cohort(ids=("P1",))
    extra = "P1,50,M,II,astrocytoma,frontal,left,no,A,100,0\n"
    report = validate(root, clinical_for(tmp_path, ["P1"], extra))
    only_problem(report, r"clinical\.csv row 3: duplicate patient id 'P1' \(first seen in row 2\)")


def test_no_cohort_is_a_problem_not_a_crash(tmp_path):
    report = validate(tmp_path / "nothing")
    only_problem(report, r"nothing: cohort folder not found")


@pytest.mark.realdata
def test_real_brats2018_is_accepted(shared_data):
    report = validate(shared_data / "brats2018")
    assert report.ok, report.problems
    assert len(report.cohort) == 6


@pytest.mark.realdata
def test_real_brats2023_without_segmentation_is_accepted(shared_data):
    report = validate(shared_data / "brats2023_format")
    assert report.ok, report.problems
    assert report.cohort.naming == "brats2023"
