"""ICC agreement between feature tables: R reference values through the wrapper, alignment,
undefined ICCs, summary, reliable-feature filter, figure, the file-level run, synthetic cohort
end to end (radiomics from manual and perturbed masks), CLI and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gliorad.commands.features import app
from gliorad.errors import GlioradInputError
from gliorad.features import agreement as A

runner = CliRunner()
REF_DIR = Path(__file__).parent / "reference" / "stats"


def ref_tables(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = pd.read_csv(REF_DIR / f"{name}_a.csv")
    b = pd.read_csv(REF_DIR / f"{name}_b.csv")
    ids = [f"P{i:03d}" for i in range(len(a))]
    return a.set_axis(ids), b.set_axis(ids)


def toy(n: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two raters: f_good agrees closely, f_mid moderately, f_bad not at all."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, 3))
    a = pd.DataFrame(truth + rng.normal(scale=[0.05, 0.6, 3.0], size=(n, 3)),
                     columns=["t1_original_firstorder_Good", "t1_original_glcm_Mid",
                              "t2_original_glcm_Bad"],
                     index=[f"P{i:02d}" for i in range(n)])
    b = pd.DataFrame(truth + rng.normal(scale=[0.05, 0.6, 3.0], size=(n, 3)), columns=a.columns,
                     index=a.index)
    return a, b


# ---------------------------------------------------------------------- (a) reference values
@pytest.mark.parametrize("kind", ["ICC(2,1)", "ICC(3,1)"])
def test_feature_icc_against_R_psych(kind):
    """R 4.2, psych::ICC(cbind(a[[f]], b[[f]]), lmer = FALSE, alpha = 0.05)$results
    (tests/reference/make_stats_reference.R, values in expected.json)."""
    expected = json.loads((REF_DIR / "expected.json").read_text(encoding="utf-8"))["icc"]
    a, b = ref_tables("icc1")
    table, report = A.feature_icc(a, b.iloc[::-1], kind=kind)  # row order does not matter
    refs = [r for r in expected if r["dataset"] == "icc1" and r["kind"] == kind]
    assert len(refs) == len(a.columns) == report["n_features"]
    for ref in refs:
        row = table.loc[ref["feature"]]
        for col in ("icc", "ci_low", "ci_high", "F"):
            assert row[col] == pytest.approx(ref[col], abs=1e-6), (ref["feature"], col)


# ------------------------------------------------------------------------------ (b) properties
def test_alignment_reports_what_is_left_out():
    a, b = toy()
    b2 = b.drop(index=["P03"]).assign(extra=1.0)
    a2 = a.rename(index={"P00": "X00"})
    table, report = A.feature_icc(a2, b2, names=("auto", "manual"))
    assert report["auto_only_patients"] == ["X00", "P03"]
    assert report["manual_only_patients"] == ["P00"]
    assert report["manual_only_features"] == ["extra"] and report["auto_only_features"] == []
    assert report["n_patients"] == 28
    assert list(table.index) == list(a.columns)
    assert list(table.columns[:6]) == A.ICC_COLUMNS
    assert table.loc["t1_original_glcm_Mid", "sequence"] == "t1"
    assert table.loc["t2_original_glcm_Bad", "feature_class"] == "glcm"


def test_identical_tables_give_one_and_ordering_is_irrelevant():
    a, b = toy()
    same, _ = A.feature_icc(a, a.copy())
    assert (same["icc"] == 1.0).all()
    t1, _ = A.feature_icc(a, b)
    t2, _ = A.feature_icc(a.sample(frac=1, random_state=1), b)
    pd.testing.assert_frame_equal(t1, t2)
    assert t1.loc["t1_original_firstorder_Good", "icc"] > 0.99
    assert t1.loc["t2_original_glcm_Bad", "icc"] < 0.5


def test_undefined_icc_is_reported_not_dropped():
    a, b = toy()
    a["t1_original_shape_Flat"] = 5.0
    b["t1_original_shape_Flat"] = 5.0
    a.loc["P02", "t1_original_glcm_Mid"] = np.nan
    table, _ = A.feature_icc(a, b, names=("auto", "manual"))
    assert np.isnan(table.loc["t1_original_glcm_Mid", "icc"])
    assert "non-finite values (auto: 1, manual: 0 patients)" in table.loc["t1_original_glcm_Mid",
                                                                          "note"]
    assert np.isnan(table.loc["t1_original_shape_Flat", "icc"])
    assert "zero variance" in table.loc["t1_original_shape_Flat", "note"]
    s = A.summarize_icc(table)
    assert (s["n_features"], s["n_defined"], s["n_undefined"]) == (4, 2, 2)


def test_summary_values():
    icc = pd.DataFrame({"icc": [0.5, 0.8, 0.9, 0.76, np.nan],
                        "sequence": ["t1", "t1", "t2", "t2", "t2"]},
                       index=list("abcde"))
    s = A.summarize_icc(icc, threshold=0.75)
    assert s["min"] == 0.5 and s["max"] == 0.9 and s["median"] == pytest.approx(0.78)
    assert s["n_above"] == 3 and s["fraction_above"] == pytest.approx(0.75)
    assert s["by_sequence"]["t1"]["n_above"] == 1
    assert s["by_sequence"]["t2"]["n_undefined"] == 1
    none = A.summarize_icc(pd.DataFrame({"icc": [np.nan]}, index=["x"]))
    assert none["n_defined"] == 0 and none["fraction_above"] is None


def test_reliable_features_and_filter():
    a, b = toy()
    t, _ = A.feature_icc(a, b)
    rel = A.reliable_features(t, 0.75)
    assert rel == [c for c in a.columns if t.loc[c, "icc"] > 0.75]
    assert "t1_original_firstorder_Good" in rel and "t2_original_glcm_Bad" not in rel
    by_ci = A.reliable_features(t, 0.75, by="ci_low")
    assert set(by_ci) <= set(rel)
    other = t.copy()
    other.loc["t1_original_firstorder_Good", "icc"] = 0.1
    assert "t1_original_firstorder_Good" not in A.reliable_features([t, other], 0.75)
    kept = A.keep_reliable(a, t, 0.75)
    assert list(kept.columns) == rel and kept.index.equals(a.index)
    with pytest.raises(GlioradInputError, match=r"by 'mean' is not valid; expected one of: icc, ci_low"):
        A.reliable_features(t, by="mean")


def test_histogram_png_written_atomically(tmp_path):
    a, b = toy()
    t, _ = A.feature_icc(a, b)
    path = A.plot_icc_histogram({"auto_vs_manual": t, "rater": t}, tmp_path / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]


# ------------------------------------------------------------------------------- file-level run
def test_run_agreement_with_second_rater(tmp_path):
    a, b = toy()
    rng = np.random.default_rng(9)
    r2 = b + rng.normal(scale=0.01, size=b.shape)
    for name, t in (("auto", a), ("manual", b), ("r2", r2)):
        t.rename_axis("patient_id").to_csv(tmp_path / f"{name}.csv")
    out = tmp_path / "agree"
    res = A.run_agreement(tmp_path / "auto.csv", tmp_path / "manual.csv", out,
                          second_rater=tmp_path / "r2.csv")
    assert set(res.icc) == {"auto_vs_manual", "manual_vs_rater2"}
    for f in ("icc_auto_vs_manual.csv", "icc_manual_vs_rater2.csv", "icc_histogram.png",
              "reliable_features.txt", "radiomics_auto_reliable.csv", "agreement.json"):
        assert (out / f).is_file(), f
    rec = json.loads((out / "agreement.json").read_text(encoding="utf-8"))
    assert rec["settings"]["kind"] == "ICC(2,1)" and len(rec["inputs"]["auto"]["sha256"]) == 64
    assert rec["summary"]["manual_vs_rater2"]["min"] > 0.99
    assert (out / "reliable_features.txt").read_text(encoding="utf-8").split() == res.reliable
    kept = pd.read_csv(out / "radiomics_auto_reliable.csv", index_col=0)
    assert list(kept.columns) == res.reliable


@pytest.mark.parametrize(("change", "pattern"), [
    (lambda a, b: (a.iloc[:1], b), r"share 1 patient\(s\).*needs at least 2 patients"),
    (lambda a, b: (a, b.add_prefix("x_")), r"share no feature column"),
    (lambda a, b: (pd.concat([a, a.iloc[:1]]), b), r"auto: patient ids repeated: \['P00'\]"),
])
def test_bad_tables(change, pattern):
    a, b = change(*toy())
    with pytest.raises(GlioradInputError, match=pattern):
        A.feature_icc(a, b, names=("auto", "manual"))


def test_bad_run_arguments(tmp_path):
    a, b = toy()
    with pytest.raises(GlioradInputError, match=r"threshold 1.5: expected an ICC value in \[-1, 1\]"):
        A.run_agreement(a, b, tmp_path, threshold=1.5)
    with pytest.raises(GlioradInputError, match=r"alpha 0: expected a number between 0 and 1"):
        A.run_agreement(a, b, tmp_path, alpha=0)
    with pytest.raises(GlioradInputError, match=r"kind 'ICC\(1,1\)' is not valid"):
        A.run_agreement(a, b, tmp_path, kind="ICC(1,1)")
    with pytest.raises(GlioradInputError, match=r"nope\.csv: feature table not found"):
        A.run_agreement(tmp_path / "nope.csv", b, tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(GlioradInputError, match=r"output path exists and is not a folder"):
        A.run_agreement(a, b, tmp_path / "f")


# ------------------------------------------------------------------------------ synthetic cohort
@pytest.fixture(scope="module")
def radiomics_tables(tmp_path_factory):
    """The fast preset on a 6-patient synthetic cohort (4 mm): manual masks and 'automatic'
    masks made by random boundary noise on the manual ones (the network is not trained yet)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from gliorad.features.radiomics import extract_radiomics
    from gliorad.synthetic import SynthConfig, generate_cohort

    base = tmp_path_factory.mktemp("agree")
    root = base / "cohort"
    generate_cohort(root, SynthConfig(n_patients=6, seed=11, spacing=4.0), n_jobs=1)
    auto = base / "auto"
    auto.mkdir()
    rng = np.random.default_rng(0)
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        seg = sitk.ReadImage(str(d / f"{d.name}_seg.nii.gz"))
        m = sitk.GetArrayFromImage(seg) > 0
        shell = ndimage.binary_dilation(m) ^ ndimage.binary_erosion(m)
        img = sitk.GetImageFromArray((m ^ (shell & (rng.random(m.shape) < 0.2))).astype(np.uint8))
        img.CopyInformation(seg)
        sitk.WriteImage(img, str(auto / f"{d.name}_seg.nii.gz"))
    res = extract_radiomics(root, base / "radiomics", auto_masks=auto, sequences=["t1ce", "flair"],
                            n_jobs=2, progress=False)
    return res.out_dir


def test_synthetic_cohort_auto_vs_manual(radiomics_tables, tmp_path):
    out = tmp_path / "agreement"
    res = A.run_agreement(radiomics_tables / "radiomics_auto.csv",
                          radiomics_tables / "radiomics_manual.csv", out)
    t = res.icc["auto_vs_manual"]
    assert len(t) == 2 * 107 and set(t["sequence"]) == {"t1ce", "flair"}
    s = res.summary["auto_vs_manual"]
    assert s["n_defined"] > 150 and s["alignment"]["n_patients"] == 6
    # mask-independent intensity statistics agree better than boundary-sensitive shape ones
    fo = t[t["feature_class"] == "firstorder"]["icc"].median()
    assert fo > 0.5
    assert 0 < len(res.reliable) < len(t)
    cli = runner.invoke(app, ["agreement", str(radiomics_tables / "radiomics_auto.csv"),
                              str(radiomics_tables / "radiomics_manual.csv"), "--out",
                              str(tmp_path / "cli"), "--threshold", "0.9", "--kind", "ICC(3,1)"])
    assert cli.exit_code == 0, cli.output
    assert "auto_vs_manual: ICC" in cli.output and "features > 0.9" in cli.output
    assert (tmp_path / "cli" / "icc_histogram.png").is_file()


def test_cli_agreement_bad_input_exit_2(tmp_path):
    a, b = toy()
    a.rename_axis("patient_id").to_csv(tmp_path / "a.csv")
    b.rename_axis("patient_id").to_csv(tmp_path / "b.csv")
    res = runner.invoke(app, ["agreement", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                              "--out", str(tmp_path / "o"), "--by", "median"])
    assert res.exit_code == 2 and "error: by 'median' is not valid" in res.output
    res = runner.invoke(app, ["agreement", str(tmp_path / "a.csv"), str(tmp_path / "zz.csv"),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "zz.csv: feature table not found" in res.output
