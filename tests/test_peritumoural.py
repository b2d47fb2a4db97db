"""Peritumoural (ring) radiomics (gliorad.features.peritumoural): ring masks against scipy's
Euclidean distance transform, ring first-order values against numpy, the ring properties, the
column naming through the table and ICC code, the setting off by default (dumps, stage
settings, cache keys and tables as before), predict == cohort with rings, every bad input,
small rings as NaN with a note, and one real BraTS case (skipped without ../shared/data)."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from scipy import ndimage
from typer.testing import CliRunner

from gliorad.errors import GlioradInputError
from gliorad.features import radiomics as R
from gliorad.features.peritumoural import ring_bounds, ring_masks, ring_name
from gliorad.io import Geometry

runner = CliRunner()
#: First-order features only, no normalisation: ring values are plain statistics of the image.
PLAIN = {"imageType": {"Original": {}}, "featureClass": {"firstorder": []}, "setting": {}}
#: A cheap parameter set with normalisation (as the presets), for the cohort runs.
NORM = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "shape": []},
        "setting": {"normalize": True, "normalizeScale": 100, "binWidth": 5,
                    "voxelArrayShift": 300}}
REFERENCE = Path(__file__).resolve().parent / "reference" / "run_presets"


def _phantom(spacing=(1.0, 1.0, 1.0), centre=(20, 20, 20), radius=6.0, brain_radius=17.0,
             seed=0) -> tuple[sitk.Image, sitk.Image]:
    """A 40^3 image: a spherical tumour (radius in voxels) in a zero-background spherical
    'brain' of noisy positive intensities; the tumour mask on the same grid."""
    z, y, x = np.mgrid[:40, :40, :40]
    r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    brain = np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) < brain_radius
    rng = np.random.default_rng(seed)
    img = np.where(brain, 100 + 10 * rng.standard_normal(r.shape) + 40 * np.exp(-r / 5), 0)
    image = sitk.GetImageFromArray(img.astype(np.float32))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray((r < radius).astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def _reference_rings(mask: sitk.Image, image: sitk.Image, bounds) -> list[np.ndarray]:
    """Rings from scipy's exact Euclidean distance transform (an independent implementation):
    ``scipy.ndimage.distance_transform_edt(~mask, sampling=spacing_zyx)``, lo < d <= hi, inside
    the image's nonzero voxels."""
    m = sitk.GetArrayFromImage(mask) > 0
    d = ndimage.distance_transform_edt(~m, sampling=image.GetSpacing()[::-1])
    brain = sitk.GetArrayFromImage(image) != 0
    return [(d > a) & (d <= b) & brain for a, b in itertools.pairwise(bounds)]


# ----------------------------------------------------------------- (a) reference: scipy, numpy
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.5)])
def test_ring_masks_equal_scipy_distance_transform(spacing):
    image, mask = _phantom(spacing)
    bounds = (0, 2.5, 5, 9)
    rings = ring_masks(mask, image, bounds)
    assert [n for n, _, _ in rings] == ["peri0-2.5mm", "peri2.5-5mm", "peri5-9mm"]
    m = sitk.GetArrayFromImage(mask) > 0
    d = ndimage.distance_transform_edt(~m, sampling=spacing[::-1])
    for (name, ring, n), ref in zip(rings, _reference_rings(mask, image, bounds), strict=True):
        got = sitk.GetArrayFromImage(ring).astype(bool)
        assert not Geometry.of(ring).differences(Geometry.of(image))
        assert n == int(got.sum()) > 50, name
        differ = got ^ ref
        # only voxels on a ring boundary (float32 distance vs float64) may differ
        at_bound = np.min(np.abs(d[..., None] - np.asarray(bounds, float)), axis=-1) < 1e-4
        assert not (differ & ~at_bound).any(), name
        assert differ.sum() <= 0.01 * ref.sum(), name


def test_ring_first_order_values_equal_numpy():
    """Without normalisation a ring's first-order Mean, Minimum, Maximum and Variance are numpy's
    statistics of the image over the reference ring (pyradiomics' Variance is the population
    variance, numpy's default ddof=0)."""
    image, mask = _phantom((1.0, 1.0, 1.5))
    case = R.extract_case(image, mask, PLAIN, peritumoural_mm=[0, 5, 10])
    img = sitk.GetArrayFromImage(image).astype(np.float64)
    for (a, b), ref in zip([(0, 5), (5, 10)], _reference_rings(mask, image, (0, 5, 10)),
                           strict=True):
        name = ring_name(a, b)
        vals = img[ref]
        assert case.diagnostics[f"diagnostics_{name}_VoxelNum"] == ref.sum()
        f = case.features
        assert f[f"{name}_firstorder_Mean"] == pytest.approx(vals.mean(), rel=1e-6)
        assert f[f"{name}_firstorder_Minimum"] == pytest.approx(vals.min(), rel=1e-6)
        assert f[f"{name}_firstorder_Maximum"] == pytest.approx(vals.max(), rel=1e-6)
        assert f[f"{name}_firstorder_Variance"] == pytest.approx(vals.var(), rel=1e-5)
    # the tumour's own features are those of a run without rings, unchanged
    plain = R.extract_case(image, mask, PLAIN)
    assert {k: v for k, v in case.features.items() if k.startswith("original_")} == plain.features
    assert len(case.features) == 3 * len(plain.features) and not case.warnings


# ------------------------------------------------------------------------------ (b) properties
def test_rings_are_disjoint_in_the_brain_and_outside_the_tumour():
    image, mask = _phantom((1.0, 1.0, 2.0), centre=(20, 20, 12))  # near the brain's edge
    rings = [sitk.GetArrayFromImage(r).astype(bool)
             for _, r, _ in ring_masks(mask, image, (0, 3, 6, 12))]
    tumour = sitk.GetArrayFromImage(mask) > 0
    brain = sitk.GetArrayFromImage(image) != 0
    total = np.sum(rings, axis=0)
    assert total.max() == 1  # disjoint
    assert not (total.astype(bool) & tumour).any() and not (total.astype(bool) & ~brain).any()
    # nested: the union of rings = every brain voxel within 12 mm outside the tumour
    d = ndimage.distance_transform_edt(~tumour, sampling=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(total.astype(bool), (d > 0) & (d <= 12) & brain)


def test_ring_of_a_region_other_than_the_whole_tumour():
    """Region ``core`` (labels 1, 4): the rings lie outside the core and hold the oedema (2)."""
    image, mask = _phantom()
    arr = sitk.GetArrayFromImage(mask).astype(np.uint8)
    oedema = ndimage.binary_dilation(arr > 0, iterations=3) & (arr == 0)
    seg = sitk.GetImageFromArray((arr * 4 + oedema * 2).astype(np.uint8))
    seg.CopyInformation(image)
    case = R.extract_case(image, seg, PLAIN, region="core", peritumoural_mm=[0, 3])
    ref = _reference_rings(mask, image, (0, 3))[0]
    assert case.diagnostics["diagnostics_peri0-3mm_VoxelNum"] == ref.sum()
    assert (ref & oedema).sum() == oedema.sum()


# ------------------------------------------------------------------------------ small rings
def test_a_ring_too_small_gives_nan_and_a_note():
    """A tumour at the brain's edge: its outer ring lies in the zero background -> NaN features
    for that ring, a note, and the other features as usual (a result, not an error)."""
    image, mask = _phantom(centre=(20, 20, 31), radius=5.0, brain_radius=16.0)
    case = R.extract_case(image, mask, PLAIN, peritumoural_mm=[0, 2, 30, 40])
    f = case.features
    assert case.diagnostics["diagnostics_peri30-40mm_VoxelNum"] < R.MIN_VOXELS
    assert math.isnan(f["peri30-40mm_firstorder_Mean"])
    assert all(math.isnan(v) for k, v in f.items() if k.startswith("peri30-40mm_"))
    assert np.isfinite(f["peri0-2mm_firstorder_Mean"]) and np.isfinite(f["original_firstorder_Mean"])
    assert len([k for k in f if k.startswith("peri30-40mm_")]) == \
        len([k for k in f if k.startswith("peri0-2mm_")]) == 18
    assert any(w.startswith("peritumoural ring peri30-40mm:") and "fewer than min_voxels 27" in w
               and "NaN" in w for w in case.warnings)


# ---------------------------------------------------------------------------- cohort and names
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("peri") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=12, seed=5, spacing=4.0), n_jobs=1)
    return root


@pytest.fixture(scope="module")
def runs(cohort, tmp_path_factory):
    """The cohort with and without rings (FLAIR and T2, two workers with rings)."""
    base = tmp_path_factory.mktemp("runs")
    off = R.extract_radiomics(cohort, base / "off", params=NORM, sequences=["t2", "flair"],
                              n_jobs=1, progress=False)
    on = R.extract_radiomics(cohort, base / "on", params=NORM, sequences=["t2", "flair"],
                             n_jobs=2, progress=False, peritumoural_mm=[0, 4, 8])
    return off, on


def test_cohort_columns_parse_and_tumour_features_are_unchanged(runs):
    from gliorad.features.agreement import feature_icc

    off, on = runs
    t_off, t_on = off.tables["manual"], on.tables["manual"]
    assert not any("peri" in c for c in t_off.columns)
    ring_cols = [c for c in t_on.columns if "_peri" in c]
    assert len(ring_cols) == 2 * 2 * 18 and "flair_peri0-4mm_firstorder_Mean" in ring_cols
    assert R.parse_column("flair_peri0-4mm_firstorder_Mean") == (
        "flair", "peri0-4mm", "firstorder", "Mean")
    assert {R.parse_column(c)[:3] for c in ring_cols} == {
        (s, r, "firstorder") for s in ("t2", "flair") for r in ("peri0-4mm", "peri4-8mm")}
    # the tumour's features are those of the run without rings, to the last bit
    pd.testing.assert_frame_equal(t_on[list(t_off.columns)], t_off, check_exact=True)
    assert np.isfinite(t_on[ring_cols].to_numpy()).all()
    back = R.read_feature_table(on.out_dir / "radiomics_manual.csv")
    pd.testing.assert_frame_equal(back, t_on, check_exact=True)
    prov = json.loads((on.out_dir / "provenance.json").read_text(encoding="utf-8"))
    assert prov["peritumoural_mm"] == [0.0, 4.0, 8.0] and prov["features_per_sequence"] == {
        "t2": 18 + 14 + 36, "flair": 18 + 14 + 36}
    diag = pd.read_csv(on.out_dir / "diagnostics_manual.csv", index_col=0)
    assert (diag["flair_diagnostics_peri0-4mm_VoxelNum"] > 0).all()
    # the ICC code reads the ring as the image type
    icc, _ = feature_icc(t_on, t_on * 1.01)
    assert icc.loc["t2_peri4-8mm_firstorder_Mean", "image_type"] == "peri4-8mm"
    assert icc.loc["t2_peri4-8mm_firstorder_Mean", "sequence"] == "t2"


def test_cache_keys_without_rings_are_as_before_and_rings_recompute(runs, cohort):
    import radiomics

    from gliorad.provenance import digest

    p = R.load_params(NORM)
    # the key's formula before the option existed
    assert R.settings_key(p, None, 27) == R.settings_key(p, None, 27, ()) == digest(
        {"params": p, "labels": None, "min_voxels": 27, "cache": R.CACHE_VERSION,
         "pyradiomics": radiomics.__version__})
    assert R.settings_key(p, None, 27, (0.0, 4.0)) != R.settings_key(p, None, 27)
    off, _ = runs
    again = R.extract_radiomics(cohort, off.out_dir, params=NORM, sequences=["t2", "flair"],
                                n_jobs=1, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 24)
    rings = R.extract_radiomics(cohort, off.out_dir, params=NORM, sequences=["t2", "flair"],
                                n_jobs=1, progress=False, peritumoural_mm=[0, 4, 8])
    assert (rings.n_computed, rings.n_cached) == (24, 0)
    pd.testing.assert_frame_equal(rings.tables["manual"], runs[1].tables["manual"],
                                  check_exact=True)


def test_radiomics_case_gives_the_cohort_row_with_rings(runs, cohort):
    from gliorad.cohort import discover_cohort

    _, on = runs
    c = discover_cohort(cohort)
    pid = c.ids[0]
    files = c.patients[pid].files
    cases = R.radiomics_case({s: str(files[s]) for s in ("t2", "flair")}, str(c.patients[pid].seg),
                             NORM, peritumoural_mm=[0, 4, 8], n_jobs=2)
    row = R.feature_row({s: cf.features for s, cf in cases.items()})
    np.testing.assert_array_equal(np.array(list(row.values())),
                                  on.tables["manual"].loc[pid, list(row)].to_numpy(float))


# ------------------------------------------------------------------------- off by default
def test_default_is_off_and_left_out_of_the_dumps():
    from gliorad.run_config import load_run_config
    from gliorad.stages.images import RadiomicsStage

    cohort = {"cohort": {"root": "c"}, "clinical": {"path": "c.csv"}}
    for name, extra in (("demo", {}), ("paper", cohort)):
        want = json.loads((REFERENCE / f"{name}.json").read_text(encoding="utf-8"))["radiomics"]
        default = load_run_config(name, extra or None)
        explicit = load_run_config(name, {**extra, "radiomics": {"peritumoural_mm": []}})
        assert default.radiomics.peritumoural_mm == explicit.radiomics.peritumoural_mm == []
        assert default.resolved()["radiomics"] == explicit.resolved()["radiomics"] == want
        assert default.resolved() == {**explicit.resolved(), "source": default.source}
        stage = RadiomicsStage().settings(default)
        assert "peritumoural_mm" not in stage and stage == RadiomicsStage().settings(explicit)
    on = load_run_config("demo", {"radiomics": {"peritumoural_mm": [0, 5, 10]}})
    assert on.radiomics.peritumoural_mm == [0.0, 5.0, 10.0]
    assert on.resolved()["radiomics"]["peritumoural_mm"] == [0.0, 5.0, 10.0]
    assert RadiomicsStage().settings(on)["peritumoural_mm"] == [0.0, 5.0, 10.0]


def test_rings_rerun_the_radiomics_stage_and_the_bundle_only(tmp_path):
    from test_fingerprints import DEMO, _config, fingerprints

    before = fingerprints(_config(tmp_path, DEMO), tmp_path / "ws")
    same = fingerprints(_config(tmp_path, DEMO, {"radiomics": {"peritumoural_mm": []}}),
                        tmp_path / "ws")
    after = fingerprints(_config(tmp_path, DEMO, {"radiomics": {"peritumoural_mm": [0, 5]}}),
                         tmp_path / "ws")
    assert same == before
    assert {n for n in before if before[n] != after[n]} == {"radiomics", "bundle"}


# ------------------------------------------------------------------------------- predict
def test_predict_computes_the_cohort_ring_features(runs, cohort, tmp_path):
    """A bundle whose grading model reads ring columns: predict_patient's features of a
    training patient (with its manual mask) are the cohort run's, to the last bit, because the
    bundle carries the ring boundaries into the same per-case function."""
    from gliorad.bundle import load_model_bundle, save_model_bundle
    from gliorad.grading.config import GradingConfig
    from gliorad.grading.run import run_fit
    from gliorad.predict import predict_patient

    _, on = runs
    table = on.tables["manual"]
    cols = [c for c in table.columns if c.endswith(("firstorder_Mean", "firstorder_Median"))]
    assert sum("_peri" in c for c in cols) == 8
    table[cols].to_csv(tmp_path / "features.csv")
    run_fit(tmp_path / "features.csv", cohort / "clinical.csv", tmp_path / "grade",
            GradingConfig.preset("demo"))
    b = save_model_bundle(
        tmp_path / "bundle",
        config={"cohort": {"naming": "brats2018", "sequences": ["t1", "t1ce", "t2", "flair"],
                           "mapping": {}}},
        segmentation=None, cnn3d=None, cnn2d=None, grading=tmp_path / "grade", survival=None,
        radiomics_params=R.load_params(NORM),
        info={"radiomics_peritumoural_mm": [0, 4, 8], "working_spacing": 4.0})
    bundle = load_model_bundle(b)
    assert bundle.radiomics["peritumoural_mm"] == [0.0, 4.0, 8.0]
    pid = table.index[0]
    predict_patient(cohort / pid, bundle, tmp_path / "o",
                    mask=cohort / pid / f"{pid}_seg.nii.gz")
    row = pd.read_csv(tmp_path / "o" / "features.csv", index_col=0,
                      float_precision="round_trip").iloc[0]
    ring = [c for c in bundle.feature_columns("grading") if "_peri" in c]
    assert ring and set(ring) <= set(row.index)
    used = [c for c in row.index if c in table.columns]
    assert set(ring) <= set(used)
    np.testing.assert_array_equal(row[used].to_numpy(float), table.loc[pid, used].to_numpy(float))


def test_bundle_without_rings_reads_as_before():
    from gliorad.bundle import _radiomics_settings

    p = R.load_params(NORM)
    s = _radiomics_settings(p, {})
    assert "peritumoural_mm" not in s and s["min_voxels"] == R.MIN_VOXELS
    s2 = _radiomics_settings({"params": p, "peritumoural_mm": [0, 3]}, {})
    assert s2["peritumoural_mm"] == [0.0, 3.0]
    with pytest.raises(GlioradInputError, match=r"radiomics peritumoural_mm \[3, 0\]: boundaries "
                                                 r"must be strictly increasing"):
        _radiomics_settings(p, {"radiomics_peritumoural_mm": [3, 0]})


# ------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("value, pattern", [
    ([5, 0], r"peritumoural_mm \[5, 0\]: boundaries must be strictly increasing"),
    ([0, 5, 5], r"strictly increasing"),
    ([-1, 5], r"\[-1, 5\]: the first boundary must be >= 0 mm"),
    ([5], r"\[5\]: expected at least two boundaries"),
    ([0, float("inf")], r"must be finite numbers of mm"),
    ([0, float("nan")], r"must be finite numbers of mm"),
    ("0,5", r"peritumoural_mm '0,5': expected a list of ring boundaries in mm"),
    ([0, "5"], r"expected numbers"),
    ([0, True], r"expected numbers"),
])
def test_bad_boundaries(value, pattern):
    with pytest.raises(GlioradInputError, match=pattern):
        ring_bounds(value)


def test_bad_boundaries_in_the_run_config_and_the_api(tmp_path, cohort):
    from gliorad.run_config import load_run_config

    with pytest.raises(GlioradInputError, match=r"demo.yaml: radiomics.peritumoural_mm: "
                                                 r"boundaries must be strictly increasing.*"
                                                 r"\(got \[10, 5\]\)"):
        load_run_config("demo", {"radiomics": {"peritumoural_mm": [10, 5]}})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "demo", "radiomics": {"peritumoural_mm": [3]}}))
    with pytest.raises(GlioradInputError, match=r"run.yaml: radiomics.peritumoural_mm: expected "
                                                 r"at least two boundaries"):
        load_run_config(path)
    image, mask = _phantom()
    with pytest.raises(GlioradInputError, match=r"peritumoural_mm \[-2, 3\]: the first boundary"):
        R.extract_case(image, mask, PLAIN, peritumoural_mm=[-2, 3])
    with pytest.raises(GlioradInputError, match=r"peritumoural_mm \[3, 1\]: boundaries must be"):
        R.extract_radiomics(cohort, tmp_path / "x", params=PLAIN, peritumoural_mm=[3, 1],
                            progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_rings_and_bad_values_exit_2(cohort, tmp_path):
    from gliorad.commands.features import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PLAIN))
    base = ["radiomics", str(cohort), "--params", str(params), "--sequences", "flair",
            "--jobs", "1", "--no-progress"]
    for value, pattern in (("5,0", (r"--peritumoural-mm '5,0': boundaries must be "
                                   r"strictly increasing")),
                           ("0,a", (r"--peritumoural-mm '0,a': expected comma-separated ring "
                                   r"boundaries")),
                           ("4", r"expected at least two boundaries")):
        res = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--peritumoural-mm",
                                  value])
        assert res.exit_code == 2, res.output
        assert re.search(pattern, res.output), res.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "ok"), "--peritumoural-mm", "0,4"])
    assert res.exit_code == 0, res.output
    table = R.read_feature_table(tmp_path / "ok" / "radiomics_manual.csv")
    assert table.shape == (12, 2 * 18) and "flair_peri0-4mm_firstorder_Mean" in table.columns


# ------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_brats_case_rings(shared_data):
    """One BraTS 2018 LGG case (1 mm, skull-stripped): FLAIR rings 0-5 and 5-10 mm outside the
    whole tumour match scipy's distance transform and numpy's mean; the oedema-adjacent ring is
    inside the brain and non-empty."""
    folder = shared_data / "brats2018" / "Brats18_TCIA10_628_1"
    if not folder.is_dir():
        pytest.skip("brats2018 sample absent")
    image = sitk.ReadImage(str(folder / "Brats18_TCIA10_628_1_flair.nii.gz"))
    seg = sitk.ReadImage(str(folder / "Brats18_TCIA10_628_1_seg.nii.gz"))
    case = R.extract_case(image, seg, PLAIN, peritumoural_mm=[0, 5, 10])
    mask = R.region_mask(seg, None)
    img = sitk.GetArrayFromImage(image).astype(np.float64)
    for (a, b), ref in zip([(0, 5), (5, 10)], _reference_rings(mask, image, (0, 5, 10)),
                           strict=True):
        name = ring_name(a, b)
        n = case.diagnostics[f"diagnostics_{name}_VoxelNum"]
        assert abs(n - int(ref.sum())) <= 0.001 * ref.sum() and n > 1000
        assert case.features[f"{name}_firstorder_Mean"] == pytest.approx(img[ref].mean(), rel=1e-4)
    assert not case.warnings


def test_the_stages_pass_the_rings_on(tmp_path, monkeypatch):
    """The radiomics stage hands radiomics.peritumoural_mm to extract_radiomics and the bundle
    stage to the bundle (info radiomics_peritumoural_mm); without rings neither gets the key."""
    from types import SimpleNamespace

    import gliorad.bundle
    from gliorad.run_config import load_run_config
    from gliorad.stages import images, models

    class Captured(Exception):
        pass

    seen: dict = {}

    def capture(name):
        def fake(*args, **kwargs):
            seen[name] = kwargs
            raise Captured
        return fake

    monkeypatch.setattr(images, "load_cohort", lambda ctx, cfg: "cohort")
    monkeypatch.setattr(R, "extract_radiomics", capture("extract"))
    monkeypatch.setattr(gliorad.bundle, "save_model_bundle", capture("bundle"))
    monkeypatch.setattr(models, "training_ranges", lambda *a, **k: {})
    ctx = SimpleNamespace(work_dir=tmp_path, out_dir=tmp_path, stage=SimpleNamespace(inputs=[]),
                          log=None)
    for rings in ([0, 5, 10], []):
        cfg = load_run_config("demo", {"segmentation": {"enabled": False},
                                       "radiomics": {"peritumoural_mm": rings}})
        for stage in (images.RadiomicsStage(), models.BundleStage()):
            with pytest.raises(Captured):
                stage.run(ctx, cfg)
        assert seen["extract"]["peritumoural_mm"] == rings
        info = seen["bundle"]["info"]
        assert info.get("radiomics_peritumoural_mm") == (rings or None)
        assert ("radiomics_peritumoural_mm" in info) == bool(rings)
