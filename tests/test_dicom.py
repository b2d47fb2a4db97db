"""DICOM studies as PACS exports them (gliorad.dicom): split by SeriesInstanceUID, sequences told
from tags, read with geometry. Every study is written at test time, slice by slice with realistic
headers (SimpleITK's DicomSeriesFromArray recipe), from small seeded volumes; the realdata test
writes the TCGA sample's four sequences as one mixed export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from gliorad.config import CohortConfig, DicomConfig
from gliorad.dicom import identify, identify_study, read_series, scan_study
from gliorad.errors import GlioradInputError
from gliorad.io import DicomSeries, Geometry, file_hash, read_image
from gliorad.preprocess.config import PreprocessConfig, make_config
from gliorad.preprocess.inputs import find_raw_patients, match_files

ROOT_UID = "1.2.826.0.1.3680043.8.498"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ROTATION = sitk.VersorTransform((0.2, 0.1, 1.0), 0.3).GetMatrix()  # a right-handed oblique frame


def volume(seed: int = 0, shape=(12, 10, 9), spacing=(0.9, 0.8, 5.5), origin=(-40.0, 25.0, -30.5),
           direction=ROTATION) -> sitk.Image:
    """A small int16 volume (numpy z, y, x ``shape``) on an anisotropic oblique grid."""
    arr = np.random.default_rng(seed).integers(0, 1200, shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def write_series(img: sitk.Image, folder: Path, number: int, description: str = "", *,
                 protocol: str | None = None, study: str = "1", patient: str = "PAT001",
                 image_type: str = "ORIGINAL\\PRIMARY\\M\\ND", contrast: str | None = None,
                 acquisition: str = "2D", ext: str = "", skip: tuple[int, ...] = (),
                 slices: list[sitk.Image] | None = None) -> str:
    """Write ``img`` as one MR series, one file per slice named by its SOPInstanceUID (+ ``ext``),
    with the tags a scanner writes; returns the SeriesInstanceUID."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = f"{ROOT_UID}.{study}"
    uid = f"{study_uid}.{number}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    d = img.GetDirection()
    iop = "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    for z in range(img.GetDepth()):
        if z in skip:
            continue
        sl = slices[z] if slices is not None else img[:, :, z]
        pos = img.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0016": MR_IMAGE_STORAGE, "0008|0018": f"{uid}.{z + 1}",
            "0008|0060": "MR", "0008|0008": image_type, "0008|0020": "20240115",
            "0008|103e": description, "0018|1030": description if protocol is None else protocol,
            "0010|0010": "Test^Patient", "0010|0020": patient, "0020|000d": study_uid,
            "0020|000e": uid, "0020|0011": str(number), "0020|0013": str(z + 1),
            "0020|0052": f"{study_uid}.0", "0020|0032": "\\".join(f"{v:.10g}" for v in pos),
            "0020|0037": iop, "0018|0050": f"{img.GetSpacing()[2]:.6g}",
            "0018|0088": f"{img.GetSpacing()[2]:.6g}", "0018|0023": acquisition,
        }
        if contrast is not None:
            tags["0018|0010"] = contrast
        for k, v in tags.items():
            sl.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"{uid}.{z + 1}{ext}"))
        writer.Execute(sl)
    return uid


def mixed_study(folder: Path, flair: bool = True, **ids: str) -> dict[str, str]:
    """A flat folder mixing six series: a localizer, T1, a post-contrast T1 whose description is
    just 'T1' (ContrastBolusAgent set), T2, FLAIR and an ADC map; returns name -> UID. ``ids``:
    ``study`` and ``patient`` for :func:`write_series`."""
    uids = {
        "localizer": write_series(volume(9, shape=(3, 10, 9)), folder, 1, "localizer",
                                  image_type="ORIGINAL\\PRIMARY\\LOCALIZER", **ids),
        "t1": write_series(volume(1), folder, 3, "t1_se_tra", **ids),
        "t1ce": write_series(volume(2), folder, 9, "T1", contrast="GADOVIST", ext=".dcm", **ids),
        "t2": write_series(volume(3), folder, 4, "AX T2 FSE", **ids),
        "adc": write_series(volume(5), folder, 6, "ep2d_diff_ADC",
                            image_type="DERIVED\\PRIMARY\\DIFFUSION\\ADC", **ids),
    }
    if flair:
        uids["flair"] = write_series(volume(4), folder, 5, "t2_tirm_tra_dark-fluid", ext=".dcm",
                                     **ids)
    return uids


# ------------------------------------------------------------------------------ scan + identify
def test_mixed_flat_folder_is_split_by_series_and_identified_from_tags(tmp_path):
    uids = mixed_study(tmp_path / "export")
    (tmp_path / "export" / "README.txt").write_text("exported by PACS")
    scan = scan_study(tmp_path / "export")
    assert sorted(s.uid for s in scan.series) == sorted(uids.values())
    assert [len(s.series.files) for s in scan.series] == [3, 12, 12, 12, 12, 12]
    assert scan.patient_ids == ["PAT001"] and len(scan.other) == 1 and not scan.unreadable
    ident = identify(scan)
    assert ident.ok, ident.problems
    assert {s: i.uid for s, i in ident.chosen.items()} == {
        k: uids[k] for k in ("t1", "t1ce", "t2", "flair")}
    res = {r.info.uid: r for r in ident.results}
    assert res[uids["localizer"]].status == "ignored"
    assert res[uids["localizer"]].reason == "ImageType LOCALIZER"
    assert res[uids["adc"]].reason == "ImageType DERIVED"
    assert res[uids["t1ce"]].reason == "description + ContrastBolusAgent 'GADOVIST'"
    table = ident.table()
    assert "ignored: ImageType LOCALIZER" in table and "t1ce <- series 9 'T1'" in table
    listing = json.loads(json.dumps(ident.to_dict()))
    assert listing["ok"] and listing["chosen"]["flair"] == uids["flair"]
    assert {s["number"]: s["status"] for s in listing["series"]} == {
        "1": "ignored", "3": "sequence", "4": "sequence", "5": "sequence", "6": "ignored",
        "9": "sequence"}


def test_series_is_read_with_its_geometry(tmp_path):
    src = volume(7, spacing=(0.7, 0.9, 4.4), origin=(12.5, -80.25, 33.0))
    write_series(src, tmp_path / "s", 2, "AX T2")
    ident = identify_study(tmp_path / "s", sequences=["t2"])
    img = read_series(ident.chosen["t2"])
    assert Geometry.of(src).differences(Geometry.of(img), 1e-6, 1e-5, 1e-6) == []
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(src))
    series = ident.files()["t2"]
    assert isinstance(series, DicomSeries) and str(series).endswith(f"series 2 'AX T2' ({series.uid})")
    assert len(file_hash(series)) == 64


def test_folders_named_by_number_at_any_depth_feed_preprocessing(tmp_path):
    """PATIENT/STUDY/<series number>/IMxxxx as many PACS write it; preprocess finds one patient,
    reads each series with its geometry and records what it chose in qc.json."""
    patient = tmp_path / "export" / "PAT001"
    study = patient / "STUDY_20240115"
    for number, desc, contrast in ((3, "AX T1", None), (7, "AX T1 POST GAD", "DOTAREM"),
                                   (4, "AX T2 FSE", None), (5, "AX T2 FLAIR", None)):
        write_series(volume(number), study / str(number), number, desc, contrast=contrast)
    write_series(volume(1, shape=(3, 10, 9)), study / "1", 1, "3 PLANE LOC")
    layout, pats = find_raw_patients(patient, PreprocessConfig())
    assert layout == "patient" and pats[0].id == "PAT001" and not pats[0].problems
    assert {k: v.label for k, v in pats[0].files.items()} == {
        "t1": "series 3 'AX T1'", "t1ce": "series 7 'AX T1 POST GAD'", "t2": "series 4 'AX T2 FSE'",
        "flair": "series 5 'AX T2 FLAIR'"}
    cfg = make_config(steps={"n4": False, "coregister": False, "skull_strip": False}, spacing=3.0)
    from gliorad.preprocess.pipeline import preprocess

    said: list[str] = []
    res = preprocess(patient, tmp_path / "out", cfg, echo=said.append)
    assert res.ok, res.failed
    assert said[0].startswith("PAT001: DICOM t1 <- series 3 'AX T1'; t1ce <- series 7")
    qc = json.loads((tmp_path / "out" / "PAT001" / "qc.json").read_text(encoding="utf-8"))
    assert qc["dicom"]["chosen"]["t1ce"] == f"{ROOT_UID}.1.7"
    assert qc["inputs"]["t1"]["path"].endswith(f"series 3 'AX T1' ({ROOT_UID}.1.3)")


def test_cohort_of_dicom_patients_is_one_folder_per_patient(tmp_path):
    """Two PatientIDs under the root: one patient per sub-folder; the second patient's export has
    a second axial T1 that no rule may choose between."""
    for k, pid in enumerate(("A01", "B02")):
        mixed_study(tmp_path / "cohort" / pid / "DICOM", study=str(k + 1), patient=pid)
    write_series(volume(11), tmp_path / "cohort" / "B02" / "DICOM", 21, "AX T1", study="2",
                 patient="B02")
    layout, pats = find_raw_patients(tmp_path / "cohort", PreprocessConfig())
    assert layout == "folders" and [p.id for p in pats] == ["A01", "B02"]
    assert not pats[0].problems and pats[0].files["flair"].label.startswith("series 5")
    assert "patient B02:" in pats[1].problems[0] and "ambiguous t1:" in pats[1].problems[0]


def test_description_empty_uses_protocol_name(tmp_path):
    write_series(volume(1), tmp_path / "s", 8, "", protocol="t2_tse_tra_p2")
    ident = identify_study(tmp_path / "s", sequences=["t2"])
    assert ident.ok and ident.results[0].reason == "protocol"


@pytest.mark.parametrize("desc, agent, expected", [
    ("T1", "GADOVIST", "t1ce"), ("T1", "NONE", "t1"), ("T1", "", "t1"),
    ("AX T1 PRE", "MULTIHANCE", "t1"), ("T1 POST", None, "t1ce"), ("AX T1 FLAIR", None, "t1"),
])
def test_contrast_agent_tag_makes_a_t1_a_t1ce_unless_named_pre_contrast(tmp_path, desc, agent,
                                                                      expected):
    write_series(volume(1), tmp_path / "s", 3, desc, contrast=agent)
    r = identify(scan_study(tmp_path / "s"), sequences=["t1", "t1ce"]).results[0]
    assert (r.status, r.sequence) == ("sequence", expected)
    dicom = DicomConfig(contrast_tag=False)
    r = identify(scan_study(tmp_path / "s"), dicom, sequences=["t1", "t1ce"]).results[0]
    assert r.sequence == ("t1ce" if "POST" in desc else "t1")


def test_few_slices_and_site_ignore_patterns_are_skipped(tmp_path):
    write_series(volume(1, shape=(4, 10, 9)), tmp_path / "s", 2, "T1 SAG")
    write_series(volume(2), tmp_path / "s", 3, "AX T1 old protocol")
    write_series(volume(3), tmp_path / "s", 4, "AX T1")
    ident = identify_study(tmp_path / "s", DicomConfig(ignore=["old protocol"]), ["t1"])
    reasons = [r.reason for r in ident.results]
    assert reasons[0] == "4 image(s) < cohort.dicom.min_slices 10 (a localizer?)"
    assert reasons[1] == "description matches ignore pattern 'old protocol'"
    assert ident.chosen["t1"].number == "4"


def test_custom_patterns_from_the_config_file(tmp_path):
    """A site's own (German) names, given in cohort.dicom.patterns of a YAML config."""
    from gliorad.commands.dicom import app

    folder = tmp_path / "s"
    for number, desc in ((2, "Anatomie nativ"), (3, "Anatomie mit KM"), (4, "Wasserbild"),
                         (5, "Wasser unterdrueckt")):
        write_series(volume(number), folder, number, desc)
    assert identify_study(folder).missing == ["t1", "t1ce", "t2", "flair"]
    yml = tmp_path / "site.yaml"
    yml.write_text("cohort:\n  dicom:\n    patterns:\n      t1: [anatomie]\n"
                   "      t1ce: ['anatomie.*km']\n      t2: ['^wasser', '!unterdr']\n"
                   "      flair: ['wasser unterdr']\n")
    res = CliRunner().invoke(app, ["scan", str(folder), "--config", str(yml), "--json"])
    assert res.exit_code == 0, res.output
    assert {s: u.rsplit(".", 1)[1] for s, u in json.loads(res.output)["chosen"].items()} == {
        "t1": "2", "t1ce": "3", "t2": "4", "flair": "5"}
    yml.write_text("cohort:\n  dicom:\n    patterns:\n      t1: ['(']\n")
    res = CliRunner().invoke(app, ["scan", str(folder), "--config", str(yml)])
    assert res.exit_code == 2
    assert "site.yaml: cohort.dicom.patterns: patterns.t1: pattern '(' is not a valid regular " \
           "expression" in res.output


def test_ambiguous_series_error_names_both_and_the_keys(tmp_path):
    folder = tmp_path / "s"
    for number in (7, 12):
        write_series(volume(number), folder, number, "AX T1 POST GAD", contrast="GADOVIST")
    write_series(volume(1), folder, 3, "AX T1")
    with pytest.raises(GlioradInputError, match=(
            r"s: ambiguous t1ce: 2 DICOM series identified as t1ce: series 7 'AX T1 POST GAD' "
            r"\(.*\.7; 12 images, 2D, axial, study 20240115\), series 12 'AX T1 POST GAD' .*; "
            r"cohort.dicom.prefer \['3d', 'axial'\] does not decide; name one in "
            r"cohort.dicom.series.t1ce")):
        match_files(folder, make_config(sequences=["t1", "t1ce"]))
    files = match_files(folder, make_config(sequences=["t1", "t1ce"]),
                        DicomConfig(series={"t1ce": 12}))
    assert files["t1ce"].label == "series 12 'AX T1 POST GAD'"
    ident = identify_study(folder, DicomConfig(prefer=["latest"]), ["t1", "t1ce"])
    assert ident.chosen["t1ce"].number == "12"
    assert [r.note for r in ident.results if r.info.number == "7"] == [
        "series 12 'AX T1 POST GAD' chosen for t1ce (cohort.dicom.prefer: latest)"]
    with pytest.raises(GlioradInputError, match=r"cohort.dicom.series.t1ce '99' names no series"):
        match_files(folder, make_config(sequences=["t1", "t1ce"]), DicomConfig(series={"t1ce": 99}))


def test_prefer_3d_then_axial_picks_safely(tmp_path):
    folder = tmp_path / "s"
    sagittal = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    write_series(volume(1), folder, 5, "AX T1 POST", contrast="GADOVIST")
    write_series(volume(2, spacing=(1.0, 1.0, 1.0), direction=sagittal), folder, 6,
                 "SAG 3D T1 MPRAGE POST", acquisition="3D")
    write_series(volume(3, direction=sagittal), folder, 7, "SAG T1 POST")
    ident = identify_study(folder, sequences=["t1ce"])
    assert ident.chosen["t1ce"].number == "6" and ident.chosen["t1ce"].plane == "sagittal"
    ident = identify_study(folder, DicomConfig(prefer=["axial"]), ["t1ce"])
    assert ident.chosen["t1ce"].number == "5"
    assert not identify_study(folder, DicomConfig(prefer=[]), ["t1ce"]).ok


def test_missing_sequence_lists_what_was_found(tmp_path):
    mixed_study(tmp_path / "s", flair=False)
    with pytest.raises(GlioradInputError, match=(
            r"s: missing flair: no DICOM series identified as flair \(found: series 1 'localizer' "
            r"-> ignored: ImageType LOCALIZER; series 3 't1_se_tra' -> t1; .*series 6 "
            r"'ep2d_diff_ADC' -> ignored: ImageType DERIVED; series 9 'T1' -> t1ce\); add a "
            r"pattern under cohort.dicom.patterns.flair or name the series in "
            r"cohort.dicom.series.flair")):
        match_files(tmp_path / "s", PreprocessConfig())
    ident = identify_study(tmp_path / "s", sequences=["t1", "t1ce", "t2"])
    assert ident.ok and ident.summary().startswith("t1 <- series 3")


def test_scan_command_prints_table_and_exits_2_on_problems(tmp_path):
    from gliorad.cli import app

    mixed_study(tmp_path / "s", flair=False)
    res = CliRunner().invoke(app, ["dicom", "scan", str(tmp_path / "s"), "--sequences",
                                   "t1,t1ce,t2"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].endswith("s: 5 series, patient PAT001")
    assert lines[1].split() == ["no.", "description", "protocol", "images", "acq", "plane",
                                "contrast", "result"]
    assert any(ln.split()[:2] == ["9", "T1"] and "GADOVIST" in ln and
               ln.endswith("t1ce (description + ContrastBolusAgent 'GADOVIST')") for ln in lines)
    res = CliRunner().invoke(app, ["dicom", "scan", str(tmp_path / "s")])
    assert res.exit_code == 2 and "error: " in res.output and "missing flair" in res.output
    res = CliRunner().invoke(app, ["dicom", "patterns"])
    assert res.exit_code == 0 and "locali[sz]er" in res.output


# ------------------------------------------------------------------------------------ bad input
def test_corrupt_file_is_named(tmp_path):
    mixed_study(tmp_path / "s")
    victim = sorted((tmp_path / "s").glob("*.dcm"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 200])  # a transfer cut short inside the pixel data
    with pytest.raises(GlioradInputError, match=(
            rf"s: 1 DICOM file\(s\) cannot be read \(corrupt or truncated\): .*{victim.name}; "
            r"expected complete DICOM images")):
        match_files(tmp_path / "s", PreprocessConfig())


def test_folder_without_dicom_is_an_error(tmp_path):
    from gliorad.cli import app

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    (tmp_path / "d" / "IM0001").write_bytes(b"not dicom at all")
    with pytest.raises(GlioradInputError, match=r"d: no DICOM image found \(2 other file\(s\)\); "
                       r"expected a DICOM study folder"):
        identify_study(tmp_path / "d")
    res = CliRunner().invoke(app, ["dicom", "scan", str(tmp_path / "d")])
    assert res.exit_code == 2 and "no DICOM image found" in res.output
    with pytest.raises(GlioradInputError, match=r"nowhere: DICOM study folder not found"):
        scan_study(tmp_path / "nowhere")


def test_missing_slice_is_refused_with_the_series_named(tmp_path):
    write_series(volume(1), tmp_path / "s", 4, "AX T2", skip=(5,))
    ident = identify_study(tmp_path / "s", sequences=["t2"])
    with pytest.raises(GlioradInputError, match=(
            r"s: series 4 'AX T2' \(.*\.4\): slice spacing is not uniform \(5\.5 to 11 mm between "
            r"neighbours, usually 5\.5 mm: about 1 slice\(s\) missing\?\); expected evenly spaced")):
        read_series(ident.chosen["t2"])


def test_two_echoes_in_one_series_are_refused(tmp_path):
    img = volume(1)
    write_series(img, tmp_path / "s", 4, "AX T2")
    # a second echo: same positions, same SeriesInstanceUID, other SOPInstanceUIDs
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for f in sorted((tmp_path / "s").iterdir())[:3]:
        sl = sitk.ReadImage(str(f))
        sl.SetMetaData("0008|0018", sl.GetMetaData("0008|0018") + ".2")
        writer.SetFileName(str(f) + ".echo2.dcm")
        writer.Execute(sl)
    ident = identify_study(tmp_path / "s", sequences=["t2"])
    with pytest.raises(GlioradInputError, match=r"series 4 'AX T2' .*: 3 slices share a position "
                       r"with another slice \(several echoes"):
        read_image(ident.files()["t2"])


def test_mixed_orientations_are_refused(tmp_path):
    write_series(volume(1), tmp_path / "s", 4, "AX T2")
    other = sorted((tmp_path / "s").iterdir())[2]
    sl = sitk.ReadImage(str(other))
    sl.SetMetaData("0020|0037", "1\\0\\0\\0\\0\\-1")  # one coronal slice among axial ones
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(other))
    writer.Execute(sl)
    ident = identify_study(tmp_path / "s", sequences=["t2"])
    with pytest.raises(GlioradInputError, match=r"slices have 2 different orientations \(a "
                       r"localizer or a multi-plane series\)"):
        read_image(ident.files()["t2"])


def test_dicom_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"prefer\.0\n.*Input should be '3d', 'axial', 'finest', "
                       r"'most_slices' or 'latest'"):
        CohortConfig(dicom={"prefer": ["newest"]})
    with pytest.raises(ValueError, match=r"min_slices\n.*greater than or equal to 1"):
        DicomConfig(min_slices=0)


# ------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_tcga_sequences_written_as_one_mixed_export(tmp_path, shared_data):
    """The four anisotropic TCGA-FG-6692 acquisitions, written as one flat PACS-style folder (UID
    file names, no extension) with a localizer, are scanned, identified from their descriptions
    and read back: same voxels at the same physical points as the NIfTI files."""
    raw = shared_data / "tcga_raw" / "TCGA-FG-6692" / "raw"
    export = tmp_path / "export"
    sources = {}
    for number, (seq, glob, desc) in enumerate((
            ("t1", "T1_AX_*_t1.nii.gz", "T1 AX SE"),
            ("t2", "*T2_AX*_t2.nii.gz", "MRHR T2 AX SE"),
            ("flair", "*FLAIR*_fla.nii.gz", "MRHR FLAIR AX SE IR"),
            ("t1ce", "*POST_GAD*_t1c.nii.gz", "MRHR T1 AX POST GAD SE")), start=2):
        src = read_image(min(raw.glob(glob)))
        sources[seq] = src
        write_series(src, export, number, desc, patient="TCGA-FG-6692",
                     contrast="MAGNEVIST" if seq == "t1ce" else None)
    loc = sources["t1"][:, :, 10:13]
    write_series(loc, export, 1, "3 PLANE LOC", image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    ident = identify_study(export)
    assert ident.ok, ident.problems
    assert {s: i.number for s, i in ident.chosen.items()} == {
        "t1": "2", "t2": "3", "flair": "4", "t1ce": "5"}
    assert ident.results[0].reason == "ImageType LOCALIZER"
    for seq, src in sources.items():
        img = read_series(ident.chosen[seq])
        # the NIfTI frames are left-handed: DICOM stacks slices along the row x column normal, so
        # the read volume runs the other way along z; in one orientation both are the same grid
        a, b = sitk.DICOMOrient(src, "LPS"), sitk.DICOMOrient(img, "LPS")
        assert Geometry.of(a).differences(Geometry.of(b), 1e-5, 1e-3, 1e-5) == [], seq
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert img.GetSpacing()[2] == pytest.approx(5.5, abs=1e-4)


def test_cohort_discovery_on_a_dicom_export_points_to_preprocessing(tmp_path):
    from gliorad.cohort import discover_cohort

    mixed_study(tmp_path / "export")
    with pytest.raises(GlioradInputError, match=r"export: no patients found .*It holds DICOM files: "
                                                 r"a DICOM export is read by preprocessing.*"
                                                 r"preprocess\.enabled: true"):
        discover_cohort(tmp_path / "export")
