"""The HTML report (gliorad.report, ``gliorad report``): built from the outputs of the real stage
writers on a small seeded workspace, checked as files, against the writers' numbers, and
rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import typer
import yaml
from typer.testing import CliRunner

from gliorad.errors import GlioradInputError
from gliorad.report import SECTIONS, ReportInputs, build_report, inputs_from_workspace
from gliorad.report.figures import png_size, svg_wrapping_png, tumour_slice
from gliorad.report.sections import OPTIONAL

#: Every section of a run of the paper's models (the model comparison only comes with a search).
SECTION_IDS = [sid for sid, _ in SECTIONS if sid not in OPTIONAL]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ================================================================== fixtures (real writers)
def _stages(grade_dir: Path):
    """Pipeline stages that lay out a workspace as ``gliorad run`` does, each with a real writer."""
    from gliorad.pipeline import Stage

    def cohort(ctx):
        from gliorad.synthetic import SynthConfig, generate_cohort

        generate_cohort(ctx.out_dir / "cohort", SynthConfig(n_patients=6, seed=3, spacing=4.0),
                        n_jobs=1)

    def validate(ctx):
        from gliorad.config import load_config
        from gliorad.io import write_json
        from gliorad.validation import validate as run_validate

        root = ctx.input_dir("cohort") / "cohort"
        cfg = load_config(root / "cohort.yaml")
        rep = run_validate(root, cfg.clinical.path, cfg, n_jobs=1)
        write_json({"ok": rep.ok, "summary": rep.summary()}, ctx.out_dir / "validation.json")

    def segment(ctx):
        """Predicted masks faked by perturbing the manual ones (dilate / erode / shift)."""
        from scipy import ndimage

        from gliorad.cohort import discover_cohort
        from gliorad.config import load_config
        from gliorad.io import write_image
        from gliorad.segmentation import evaluate_masks, mask_path

        root = ctx.input_dir("cohort") / "cohort"
        coh = discover_cohort(root, load_config(root / "cohort.yaml").cohort)
        for k, pid in enumerate(coh.ids):
            img = sitk.ReadImage(str(coh.patients[pid].seg))
            a = sitk.GetArrayFromImage(img) > 0
            b = (ndimage.binary_dilation(a) if k % 3 == 0 else ndimage.binary_erosion(a)
                 if k % 3 == 1 else np.roll(a, k, axis=2))
            out = sitk.GetImageFromArray(b.astype(np.uint8))
            out.CopyInformation(img)
            write_image(out, mask_path(ctx.out_dir / "masks", pid))
        evaluate_masks(ctx.out_dir / "masks", coh, out_dir=ctx.out_dir / "evaluation")

    def agreement(ctx):
        from gliorad.features.agreement import run_agreement

        rng = np.random.default_rng(1)
        ids = [f"P{i:02d}" for i in range(12)]
        cols = [f"{s}_original_firstorder_f{j}" for s in ("t1", "t1ce") for j in range(15)]
        manual = pd.DataFrame(rng.normal(size=(12, 30)), index=ids, columns=cols)
        auto = manual + rng.normal(scale=0.5, size=manual.shape)
        run_agreement(auto, manual, ctx.out_dir)

    def grade(ctx):
        from gliorad.grading.config import GradingConfig
        from gliorad.grading.run import run_tables

        sets = {n: grade_dir / f"{n}.csv" for n in ("radiomics_t1", "radiomics_t1ce",
                                                     "deep_patch_se")}
        run_tables(sets, grade_dir / "clinical.csv", ctx.out_dir / "tables",
                   cnn_predictions={"cnn_patch_se": grade_dir / "cnn_patch_se.csv"},
                   stack_scores={"cnn_patch_se": grade_dir / "cnn_patch_se.csv"},
                   config=GradingConfig.preset("demo"), scheme="split")

    def survival(ctx):
        from gliorad.survival.artifacts import write_analysis
        from gliorad.survival.config import SurvivalConfig
        from gliorad.survival.evaluation import run_analysis
        from gliorad.synthetic import SynthConfig, sample_patients, synthetic_feature_table

        pat = sample_patients(SynthConfig(n_patients=240, seed=4))
        clin = pat.rename(columns={"os_time": "os_days"})[
            ["age", "sex", "grade", "grade_group", "histology", "location", "laterality",
             "enhancement", "centre", "os_days", "event"]]
        feats = synthetic_feature_table(pat, n_features=90, n_deep=30, seed=0)
        cfg = SurvivalConfig.model_validate({
            "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
            "sequence": {"sequences": ["t1", "t1ce", "t2"], "n_estimators": 20, "cv_folds": 3,
                         "top_k": 5},
            "signature": {"n_estimators": 80, "n_alphas": 8, "l1_ratios": [1.0], "cv_folds": 3},
            "calibration_boot": 3, "min_level_size": 10, "cv_folds": 3, "times": [1095]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = run_analysis(feats, clin, cfg)
        write_analysis(analysis, ctx.out_dir / "analysis", {"config": "test"}, bundle=False)

    return [
        Stage("cohort", cohort, settings={"n": 6}, description="synthetic cohort"),
        Stage("validate", validate, inputs=("cohort",)),
        Stage("segment", segment, inputs=("cohort",), description="perturbed manual masks"),
        Stage("agreement", agreement),
        Stage("grade", grade, description="grading tables (split)"),
        Stage("survival", survival, description="survival analysis"),
    ]


def _grading_inputs(folder: Path) -> None:
    from gliorad.synthetic import CLINICAL_COLUMNS, SynthConfig, sample_patients

    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    pat = sample_patients(SynthConfig(n_patients=40, seed=5))
    pat.reset_index()[CLINICAL_COLUMNS].to_csv(folder / "clinical.csv", index=False)
    y = (pat["grade_group"] == "HGG").astype(int).to_numpy()
    for name, strength in (("radiomics_t1", 0.8), ("radiomics_t1ce", 1.5), ("deep_patch_se", 1.0)):
        X = rng.normal(size=(len(y), 12))
        X[:, :3] += strength * y[:, None]
        pd.DataFrame(X, index=pat.index, columns=[f"f{j}" for j in range(12)]).to_csv(
            folder / f"{name}.csv", index_label="patient_id")
    prob = 1 / (1 + np.exp(-(2 * y - 1) * 1.5 + rng.normal(size=len(y))))
    pd.DataFrame({"patient_id": pat.index, "probability": prob}).to_csv(
        folder / "cnn_patch_se.csv", index=False)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    from gliorad.pipeline import run_pipeline

    base = tmp_path_factory.mktemp("report")
    _grading_inputs(base / "grade_inputs")
    ws = base / "ws"
    run_pipeline(_stages(base / "grade_inputs"), ws)
    cohort = ws / "cohort" / "cohort"
    (ws / "config.yaml").write_text(yaml.safe_dump({
        "cohort": {"root": str(cohort), "naming": "brats2018"},
        "clinical": {"path": str(cohort / "clinical.csv"), "time_unit": "days"},
        "grading": {"preset": "demo"}}))
    return ws


@pytest.fixture(scope="session")
def report(workspace, tmp_path_factory) -> Path:
    return build_report(inputs_from_workspace(workspace), tmp_path_factory.mktemp("out") / "report")


class _Dom(HTMLParser):
    """Sections (id -> class), images (attributes) and every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.body: dict[str, str] = {}
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "section":
            self.sections[a.get("id", "")] = a.get("class", "")
        if tag == "img":
            self.images.append(a)
        if tag == "body":
            self.body = a
        self.links += [v for k, v in a.items() if k in ("src", "href")]


def _dom(text: str) -> _Dom:
    d = _Dom()
    d.feed(text)
    return d


def _section_html(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{re.escape(sid)}".*?</section>', text, re.DOTALL)
    assert m, sid
    return m.group(0)


# ================================================================== the report as files
def test_every_section_present_and_ran(report):
    text = report.read_text(encoding="utf-8")
    dom = _dom(text)
    assert list(dom.sections) == SECTION_IDS
    assert all(cls == "ran" for cls in dom.sections.values()), dom.sections
    # only the absent model bundle is "not run" here
    assert text.count("not run in this workspace") == 1
    assert "Model bundle: not run in this workspace" in _section_html(text, "provenance")


def test_self_contained_no_external_url(report):
    text = report.read_text(encoding="utf-8")
    dom = _dom(text)
    assert "http://" not in text and "https://" not in text
    assert "link" not in dom.tags and not re.search(r"<script[^>]*\bsrc=", text)
    assert all(v.startswith(("data:image/png;base64,", "#")) for v in dom.links), \
        [v[:40] for v in dom.links if not v.startswith(("data:", "#"))]
    assert len(dom.images) >= 12
    for img in dom.images:
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png_size(data, "embedded") == (int(img["width"]), int(img["height"]))


def test_figures_written_as_png_and_svg(report):
    dom = _dom(report.read_text(encoding="utf-8"))
    figs = report.parent / "figures"
    names = [img["data-figure"] for img in dom.images]
    assert len(set(names)) == len(names)
    assert {"segmentation_overlays", "icc_histogram", "roc_table_s3", "roc_table_1", "roc_table_2",
            "signature_weights", "km_A", "km_B", "nomogram_integrated", "nomogram_clinical",
            "c_index"} <= set(names)
    assert sum(n.startswith("calibration_") for n in names) == 4  # 2 models x 2 cohorts x 1 time
    for img in dom.images:
        name = img["data-figure"]
        png = (figs / f"{name}.png").read_bytes()
        assert base64.b64decode(img["src"].split(",", 1)[1]) == png
        root = ET.parse(figs / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert sorted(p.stem for p in figs.glob("*.png")) == sorted(p.stem for p in figs.glob("*.svg"))


def test_stage_pngs_embedded_as_written_and_svg_kinds(report, workspace):
    """Stage figures are embedded byte for byte, with the stage's own vector SVG (KM curves,
    nomograms); the re-plotted and report-drawn SVGs are vector drawings (no raster image)."""
    figs = report.parent / "figures"
    surv = workspace / "survival" / "analysis"
    images = "{http://www.w3.org/2000/svg}image"
    for name in ("km_A", "km_B", "nomogram_integrated", "nomogram_clinical"):
        stage_png = (surv / f"{name}.png").read_bytes()
        assert (figs / f"{name}.png").read_bytes() == stage_png
        assert (figs / f"{name}.svg").read_bytes() == (surv / f"{name}.svg").read_bytes()
        assert not list(ET.parse(figs / f"{name}.svg").getroot().iter(images))
    cal = sorted(figs.glob("calibration_*.png"))
    for png in cal:
        assert png.read_bytes() == (surv / png.name).read_bytes()
    assert (figs / "icc_histogram.png").read_bytes() == (
        workspace / "agreement" / "icc_histogram.png").read_bytes()
    for name in ("icc_histogram", "roc_table_s3", "c_index", "signature_weights", cal[0].stem):
        root = ET.parse(figs / f"{name}.svg").getroot()
        assert not list(root.iter(images)), name
        assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 10


def test_numbers_match_the_writers(report, workspace):
    """Tables show the stages' numbers; Table S2 medians agree with numpy's type-7 quantiles."""
    import json

    text = report.read_text(encoding="utf-8")
    metrics = json.loads((workspace / "survival" / "analysis" / "metrics.json").read_text(encoding="utf-8"))
    cidx = _section_html(text, "c-index")
    for name, c in metrics["cohorts"].items():
        lo, hi = c["c_index_integrated_ci"]
        assert f"{c['c_index_integrated']:.3f} ({lo:.3f}-{hi:.3f})" in cidx, name
    assert metrics["signature"]["formula"] in _section_html(text, "signature")
    ev = json.loads((workspace / "segment" / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))
    assert f"{ev['summary']['WT']['dice']['mean']:.3f}" in _section_html(text, "segmentation")
    s3 = pd.read_csv(workspace / "grade" / "tables" / "table_s3.csv")
    grading = _section_html(text, "grading")
    assert all(str(v) in grading for v in s3["AUC (95% CI)"])
    t1 = pd.read_csv(workspace / "grade" / "tables" / "table_1.csv")
    assert list(t1["set"]) == ["fused_patch_se", "stacked_patch_se"]
    assert all(str(v) in grading for v in t1["AUC (95% CI)"])
    assert "How the fused and stacked rows were built" in grading
    assert "Stacked rows (not in the paper)" in grading and "stacked_patch_se = " in grading
    clin = pd.read_csv(workspace / "cohort" / "cohort" / "clinical.csv")
    cohort = _section_html(text, "cohort")
    for centre, g in clin.groupby("centre"):
        q1, med, q3 = np.quantile(g["age"], [0.25, 0.5, 0.75])
        assert f"{med:.1f} ({q1:.1f}\u2013{q3:.1f})" in cohort, centre
        assert f"Centre {centre} (n={len(g)})" in cohort


def test_overlays_pick_best_median_worst(report, workspace):
    ev = pd.read_csv(workspace / "segment" / "evaluation" / "evaluation.csv",
                     dtype={"patient_id": str})
    wt = ev[ev["region"] == "WT"].sort_values(["dice", "patient_id"]).reset_index(drop=True)
    n = len(wt)
    seg = _section_html(report.read_text(encoding="utf-8"), "segmentation")
    for label, i in (("best", n - 1), ("median", (n - 1) // 2), ("worst", 0)):
        assert f"{label} {wt.loc[i, 'patient_id']} (Dice {wt.loc[i, 'dice']:.3f})" in seg


def test_provenance_lists_stage_records(report, workspace):
    import json

    prov = _section_html(report.read_text(encoding="utf-8"), "provenance")
    for stage in ("cohort", "validate", "segment", "agreement", "grade", "survival"):
        rec = json.loads((workspace / stage / "_stage.json").read_text(encoding="utf-8"))
        assert rec["fingerprint"][:16] in prov
    assert "grading:" in prov and "preset: demo" in prov  # the run config, as YAML


# ================================================================== inputs from a workspace
def test_inputs_from_workspace_layout(workspace):
    inp = inputs_from_workspace(workspace)
    cohort = workspace / "cohort" / "cohort"
    assert inp.cohort_root == cohort and inp.clinical == cohort / "clinical.csv"
    assert inp.truth == cohort / "truth.json"
    assert inp.validation == workspace / "validate" / "validation.json"
    assert inp.seg_evaluation == workspace / "segment" / "evaluation"
    assert inp.masks == workspace / "segment" / "masks"
    assert inp.agreement == workspace / "agreement"
    assert inp.grade_tables == workspace / "grade" / "tables"
    assert inp.survival == workspace / "survival" / "analysis"
    assert inp.bundle is None
    assert list(inp.stage_records) == ["cohort", "validate", "segment", "agreement", "grade",
                                       "survival"]
    assert inp.config["grading"] == {"preset": "demo"}


def test_inputs_from_user_run_config(tmp_path, workspace):
    """Without a demo cohort, the cohort and the clinical table come from config.yaml (relative
    paths relative to the workspace)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(workspace / "cohort" / "cohort", tmp_path / "data")
    (ws / "config.yaml").write_text(
        "cohort: {root: ../data}\nclinical: {path: ../data/clinical.csv}\n")
    inp = inputs_from_workspace(ws)
    assert inp.cohort_root == ws / ".." / "data"
    assert inp.clinical == ws / ".." / "data" / "clinical.csv"
    assert inp.survival is None and inp.stage_records == {}


def test_preprocessed_images_used_for_overlays(tmp_path, workspace):
    """With preprocessing, the overlays read <ws>/preprocess/cohort (BraTS names detected), not
    the raw cohort of config.yaml (here absent and named another way)."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace / "cohort" / "cohort", ws / "preprocess" / "cohort",
                    ignore=shutil.ignore_patterns("cohort.yaml", "*.csv", "*.json"))
    shutil.copytree(workspace / "segment", ws / "segment")
    (ws / "config.yaml").write_text(yaml.safe_dump({"cohort": {
        "root": str(tmp_path / "raw"), "naming": "custom", "mapping": {"t1": "{id}/a.nii"}}}))
    inp = inputs_from_workspace(ws)
    assert inp.cohort_root == ws / "preprocess" / "cohort" and inp.clinical is None
    text = build_report(inp, tmp_path / "r").read_text(encoding="utf-8")
    assert 'data-figure="segmentation_overlays"' in text


def test_inputs_bad_workspace_files(tmp_path):
    with pytest.raises(GlioradInputError, match=r"none: workspace folder not found"):
        inputs_from_workspace(tmp_path / "none")
    (tmp_path / "config.yaml").write_text("cohort: [unclosed\n")
    with pytest.raises(GlioradInputError, match=r"config.yaml: not valid YAML"):
        inputs_from_workspace(tmp_path)
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(GlioradInputError, match=r"config.yaml: expected a mapping"):
        inputs_from_workspace(tmp_path)
    (tmp_path / "config.yaml").unlink()
    (tmp_path / ".grade.tmp-99").mkdir()  # a killed run's leftover is not a finished stage
    (tmp_path / ".grade.tmp-99" / "_stage.json").write_text("{")
    assert inputs_from_workspace(tmp_path).stage_records == {}
    (tmp_path / "grade").mkdir()
    (tmp_path / "grade" / "_stage.json").write_text("{not json")
    with pytest.raises(GlioradInputError, match=r"grade/_stage.json: not valid JSON"):
        inputs_from_workspace(tmp_path)


# ================================================================== missing and bad inputs
def test_missing_inputs_say_not_run(tmp_path):
    out = build_report(ReportInputs(title="empty"), tmp_path / "r")
    text = out.read_text(encoding="utf-8")
    dom = _dom(text)
    assert list(dom.sections) == SECTION_IDS
    for sid in SECTION_IDS[:-1]:
        assert dom.sections[sid] == "not-run"
        assert "not run in this workspace" in _section_html(text, sid)
    assert dom.sections["provenance"] == "ran" and not dom.images
    assert not (tmp_path / "r" / "figures").exists()


def test_section_template_says_not_run_without_calling_the_body(tmp_path):
    """Every section goes through one template: an absent input (None or no such folder) gives
    the "not run" line without calling the body; a present one gives the body's HTML."""
    from gliorad.report.context import Context, SectionTemplate
    from gliorad.report.sections import TEMPLATES

    calls = []

    def body(ctx):
        calls.append(ctx)
        return "<p>body</p>"

    template = SectionTemplate("grading", "Grading", body, reads="grade_tables",
                               absent="Grading tables", stage="grading")
    for absent in (None, tmp_path / "never-written"):
        section = template.build(Context(ReportInputs(grade_tables=absent)))
        assert (section.id, section.title, section.ran) == ("grading", "Grading", False)
        assert section.body == '<p class="not-run">Grading tables: not run in this workspace.</p>'
    assert calls == []
    section = template.build(Context(ReportInputs(grade_tables=tmp_path)))
    assert section.ran and section.body == "<p>body</p>" and len(calls) == 1
    assert [(t.id, t.title) for t in TEMPLATES] == list(SECTIONS)


def test_switched_off_parts_leave_their_sections_out(tmp_path):
    """A run config that turns a part off drops its sections; the cohort section says which."""
    config = {"agreement": None, "survival": {"enabled": False}, "grading": {"preset": "demo"}}
    text = build_report(ReportInputs(config=config), tmp_path / "r").read_text(encoding="utf-8")
    survival = {"signature", "kaplan-meier", "cox", "nomograms", "c-index", "calibration"}
    assert list(_dom(text).sections) == [s for s in SECTION_IDS
                                         if s not in survival | {"agreement"}]
    assert "Switched off in this run&#x27;s config: agreement, survival" in _section_html(
        text, "cohort")


def test_partial_inputs(tmp_path, workspace):
    """Only the survival analysis: its five sections ran, the others say so; a folder that does
    not exist counts as not run."""
    inp = ReportInputs(survival=workspace / "survival" / "analysis",
                       grade_tables=tmp_path / "never-written")
    dom = _dom(build_report(inp, tmp_path / "r").read_text(encoding="utf-8"))
    ran = {sid for sid, cls in dom.sections.items() if cls == "ran"}
    assert ran == {"signature", "kaplan-meier", "cox", "nomograms", "c-index", "calibration",
                   "provenance"}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_metrics_names_the_file_and_keeps_old_report(tmp_path, workspace):
    surv = _copy(workspace / "survival" / "analysis", tmp_path / "surv")
    out = tmp_path / "r"
    build_report(ReportInputs(agreement=workspace / "agreement"), out)
    before = (out / "report.html").read_bytes()
    (surv / "metrics.json").write_text('{"cohorts": {')
    with pytest.raises(GlioradInputError, match=r"surv/metrics.json: not valid JSON"):
        build_report(ReportInputs(survival=surv), out)
    assert (out / "report.html").read_bytes() == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary leftovers


def test_rebuild_replaces_the_figure_set(tmp_path, workspace):
    """A rebuild with fewer inputs leaves no stale figure; with none, no figure folder."""
    out = tmp_path / "r"
    build_report(ReportInputs(grade_tables=workspace / "grade" / "tables",
                              agreement=workspace / "agreement"), out)
    assert (out / "figures" / "roc_table_s3.svg").is_file()
    build_report(ReportInputs(agreement=workspace / "agreement"), out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["icc_histogram.png",
                                                                   "icc_histogram.svg"]
    build_report(ReportInputs(), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


@pytest.mark.parametrize("case", ["evaluation_column", "evaluation_json", "stage_png", "icc_csv",
                                  "grading_predictions", "calibration_png"])
def test_bad_stage_files(tmp_path, workspace, case):
    ev_src = workspace / "segment" / "evaluation"
    if case == "evaluation_column":
        ev = _copy(ev_src, tmp_path / "ev")
        pd.read_csv(ev / "evaluation.csv").drop(columns=["dice"]).to_csv(ev / "evaluation.csv")
        inp, match = ReportInputs(seg_evaluation=ev), r"ev/evaluation.csv: no column\(s\) 'dice'"
    elif case == "evaluation_json":
        ev = _copy(ev_src, tmp_path / "ev")
        (ev / "evaluation.json").write_text('{"patients": []}')
        inp, match = ReportInputs(seg_evaluation=ev), r"ev/evaluation.json: no 'summary' entry"
    elif case == "stage_png":
        surv = _copy(workspace / "survival" / "analysis", tmp_path / "surv")
        (surv / "km_A.png").write_bytes(b"GIF89a not a png at all")
        inp, match = ReportInputs(survival=surv), r"surv/km_A.png: not a PNG image"
    elif case == "icc_csv":
        agr = _copy(workspace / "agreement", tmp_path / "agr")
        (agr / "icc_auto_vs_manual.csv").unlink()
        inp, match = ReportInputs(agreement=agr), r"agr/icc_auto_vs_manual.csv: not found"
    elif case == "grading_predictions":
        tab = _copy(workspace / "grade" / "tables", tmp_path / "tab")
        (tab / "predictions" / "radiomics_t1.csv").write_text("patient_id,label\nA,1\n")
        inp = ReportInputs(grade_tables=tab)
        match = r"radiomics_t1.csv: no column\(s\) 'probability'"
    else:
        surv = _copy(workspace / "survival" / "analysis", tmp_path / "surv")
        next(surv.glob("calibration_clinical_A_*.png")).unlink()
        inp, match = ReportInputs(survival=surv), r"calibration_clinical_A_1095d.png: not found"
    with pytest.raises(GlioradInputError, match=match):
        build_report(inp, tmp_path / "r")
    assert not (tmp_path / "r" / "report.html").exists()


def test_overlay_inputs_missing_or_inconsistent(tmp_path, workspace):
    ev = workspace / "segment" / "evaluation"
    # no images: the tables still show, the overlays say why they are absent
    text = build_report(ReportInputs(seg_evaluation=ev, cohort_root=tmp_path / "gone",
                                     masks=workspace / "segment" / "masks"),
                        tmp_path / "r").read_text(encoding="utf-8")
    assert "cohort folder" in text and "not found" in _section_html(text, "segmentation")
    # a mask listed in the evaluation but deleted: named
    masks = _copy(workspace / "segment" / "masks", tmp_path / "masks")
    for p in masks.glob("*.nii.gz"):
        p.unlink()
    with pytest.raises(GlioradInputError, match=r"masks/SYN\w+\.nii\.gz: predicted mask not found"):
        build_report(ReportInputs(seg_evaluation=ev, masks=masks,
                                  cohort_root=workspace / "cohort" / "cohort"), tmp_path / "r2")


def test_bundle_manifest_listed(tmp_path):
    """The bundle's manifest (files -> SHA-256, as gliorad.bundle writes) is listed in the
    provenance section; a bundle folder without one lists its files."""
    import json

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({
        "format_version": 1, "created_utc": "2026-01-01T00:00:00+00:00",
        "files": {"grading/model.skops": "ab" * 32, "segmentation/model.safetensors": "cd" * 32},
        "inputs": {"sequences": ["t1", "t1ce"]}}))
    prov = _section_html(build_report(ReportInputs(bundle=bundle), tmp_path / "r").read_text(encoding="utf-8"),
                         "provenance")
    assert "segmentation/model.safetensors" in prov and "cd" * 8 in prov
    assert "format_version" in prov and "&quot;t1ce&quot;" in prov
    (bundle / "manifest.json").unlink()
    (bundle / "x.bin").write_bytes(b"1")
    prov = _section_html(build_report(ReportInputs(bundle=bundle), tmp_path / "r").read_text(encoding="utf-8"),
                         "provenance")
    assert "no manifest.json; files: x.bin" in prov


def test_bad_inputs_object(tmp_path):
    with pytest.raises(GlioradInputError, match=r"expected ReportInputs"):
        build_report({"survival": tmp_path}, tmp_path / "r")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GlioradInputError, match=r"file: exists and is not a folder"):
        build_report(ReportInputs(), tmp_path / "file")


# ================================================================== figure helpers
def _write(arr: np.ndarray, path: Path, direction=None) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 2.0, 3.0))
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


def test_tumour_slice_largest_area_and_orientation(tmp_path):
    """The slice with the largest manual area; an image stored in another orientation (axes
    flipped in the array and in the direction) gives the same picture."""
    rng = np.random.default_rng(0)
    img = rng.normal(size=(7, 9, 11)).astype(np.float32)
    man = np.zeros(img.shape, np.uint8)
    man[2, 2:5, 3:6] = 1      # 9 voxels
    man[4, 1:6, 2:8] = 1      # 30 voxels: the largest axial area
    auto = np.roll(man, 1, axis=2)
    a = tumour_slice(_write(img, tmp_path / "i.nii.gz"), _write(man, tmp_path / "m.nii.gz"),
                     _write(auto, tmp_path / "a.nii.gz"))
    np.testing.assert_array_equal(a[0], img[4])
    assert a[1].sum() == 30 and a[2].sum() == 30 and a[3] == pytest.approx(2.0)
    flip = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)  # RAS-like storage: x and y reversed
    b = tumour_slice(_write(img[:, ::-1, ::-1].copy(), tmp_path / "i2.nii.gz", flip),
                     _write(man[:, ::-1, ::-1].copy(), tmp_path / "m2.nii.gz", flip),
                     _write(auto[:, ::-1, ::-1].copy(), tmp_path / "a2.nii.gz", flip))
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    # a mask on another grid is refused, naming it
    with pytest.raises(GlioradInputError, match=r"m3.nii.gz: mask grid"):
        tumour_slice(tmp_path / "i.nii.gz", _write(man[:, :, :5].copy(), tmp_path / "m3.nii.gz"),
                     tmp_path / "a.nii.gz")


def test_svg_wrapping_png(tmp_path):
    from matplotlib.figure import Figure

    from gliorad.report.figures import render

    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    png, svg = render(fig)
    assert png_size(png, "x") == (240, 120)
    wrapped = ET.fromstring(svg_wrapping_png(png, "x"))
    assert (wrapped.get("width"), wrapped.get("height")) == ("240", "120")
    ET.fromstring(svg)  # the vector SVG parses
    with pytest.raises(GlioradInputError, match=r"bad.png: not a PNG image"):
        svg_wrapping_png(b"\x89PNG\r\n\x1a\n" + b"\0" * 4, "bad.png")


# ================================================================== model comparison
#: Survival settings of the searched analysis: the report fixture's, with survival.model auto
#: and the signature's continuous term (what the best preset sets).
SURVIVAL_SEARCH = {
    "signature_term": "continuous",
    "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
    "sequence": {"sequences": ["t1", "t1ce", "t2"], "n_estimators": 20, "cv_folds": 3, "top_k": 5},
    "signature": {"n_estimators": 80, "n_alphas": 8, "l1_ratios": [1.0], "cv_folds": 3},
    "calibration_boot": 3, "min_level_size": 10, "cv_folds": 3, "times": [1095],
    "model": "auto", "candidates": ["paper", "clinical", "coxnet"], "search": {"inner_folds": 3}}


@pytest.fixture(scope="session")
def searched(workspace, tmp_path_factory) -> dict[str, Path]:
    """The writers' outputs of model searches (small): grading tables with grading.model auto
    under a split and under repeated CV, a grading model fitted with auto in a bundle folder, and
    a survival analysis with survival.model auto."""
    from gliorad.grading.config import GradingConfig
    from gliorad.grading.run import run_fit, run_tables
    from gliorad.survival.artifacts import write_analysis
    from gliorad.survival.config import SurvivalConfig
    from gliorad.survival.evaluation import run_analysis
    from gliorad.synthetic import SynthConfig, sample_patients, synthetic_feature_table

    base = tmp_path_factory.mktemp("searched")
    gi = base / "grade_inputs"
    _grading_inputs(gi)
    auto = {"model": "auto", "candidates": ["paper", "logistic_l1", "rf"]}
    sets = {"radiomics_t1ce": gi / "radiomics_t1ce.csv"}
    run_tables(sets, gi / "clinical.csv", base / "split", config=GradingConfig.preset("demo", **auto),
               scheme="split")
    run_tables(sets, gi / "clinical.csv", base / "cv", scheme="cv",
               config=GradingConfig.preset("demo", model="auto", cv_splits=3, cv_repeats=2,
                                           candidates=["paper", "logistic_l1"]))
    run_fit(gi / "radiomics_t1ce.csv", gi / "clinical.csv", base / "fit",
            GradingConfig.preset("demo", **auto))
    # as in a workspace: the bundle stage's folder holds the bundle (bundle/bundle/manifest.json)
    (base / "bundle" / "bundle" / "grading").mkdir(parents=True)
    (base / "bundle" / "bundle" / "manifest.json").write_text("{}", encoding="utf-8")
    shutil.copyfile(base / "fit" / "model.json",
                    base / "bundle" / "bundle" / "grading" / "model.json")
    pat = sample_patients(SynthConfig(n_patients=240, seed=4))
    clin = pat.rename(columns={"os_time": "os_days"})[
        ["age", "sex", "grade", "grade_group", "histology", "location", "laterality",
         "enhancement", "centre", "os_days", "event"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = run_analysis(synthetic_feature_table(pat, n_features=90, n_deep=30, seed=0),
                                clin, SurvivalConfig.model_validate(SURVIVAL_SEARCH))
    write_analysis(analysis, base / "survival", {"config": "test"}, bundle=False)
    return {"split": base / "split", "cv": base / "cv", "bundle": base / "bundle",
            "survival": base / "survival"}


class _Tables(HTMLParser):
    """The cell texts of every table of a page: ``[header, *rows]`` per table."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _tables(html: str) -> list[pd.DataFrame]:
    parser = _Tables()
    parser.feed(html)
    return [pd.DataFrame(t[1:], columns=t[0]) for t in parser.tables]


def _stampless(text: str) -> str:
    """The page without the two times it was built at (heading, provenance)."""
    text = re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", "on <time>", text, count=1)
    return re.sub(r"(report generated \(UTC\)</th><td>)[^<]*<", r"\1<time><", text, count=1)


def test_model_comparison_absent_for_the_paper_models(report, workspace, tmp_path, monkeypatch):
    """A run of the paper's models (no candidates block, no model search) has no model
    comparison: no section, no contents entry, and the report is byte for byte the report
    built without the section existing (the time stamp aside)."""
    from gliorad.report import build

    text = report.read_text(encoding="utf-8")
    assert "model-comparison" not in text and "Model comparison" not in text
    inputs = inputs_from_workspace(workspace)
    before = [t for t in build.TEMPLATES if t.id not in OPTIONAL]
    assert len(before) == len(build.TEMPLATES) - 1
    monkeypatch.setattr(build, "TEMPLATES", tuple(before))
    old = build_report(inputs, tmp_path / "old").read_bytes()
    monkeypatch.undo()
    new = build_report(inputs, tmp_path / "new").read_bytes()
    assert _stampless(new.decode()) == _stampless(old.decode())
    assert _stampless(new.decode()) == _stampless(text)
    for fig in (tmp_path / "old" / "figures").iterdir():
        assert (tmp_path / "new" / "figures" / fig.name).read_bytes() == fig.read_bytes()


def test_model_comparison_shows_the_searches(searched, tmp_path):
    """grading.model auto (split) and survival.model auto: one section before the provenance,
    with every candidate's numbers as the writers computed them, the chosen one marked, the
    rule and why; the bundle's grading model with its choice."""
    import json

    inp = ReportInputs(grade_tables=searched["split"], survival=searched["survival"],
                       bundle=searched["bundle"])
    text = build_report(inp, tmp_path / "r").read_text(encoding="utf-8")
    dom = _dom(text)
    assert list(dom.sections)[-2:] == ["model-comparison", "provenance"]
    assert dom.sections["model-comparison"] == "ran"
    assert '<a href="#model-comparison">Model comparison (beyond the paper)</a>' in text
    sec = _section_html(text, "model-comparison")
    grading, survival = _tables(sec)
    # grading: the writer's candidates block of the set
    block = json.loads((searched["split"] / "metrics.json").read_text(encoding="utf-8"))[
        "radiomics_t1ce"]["candidates"]
    assert "<h3>T1-Gd (radiomics_t1ce)</h3>" in sec
    assert f"Choice rule: {block['rule']}".replace("'", "&#x27;") in sec
    chosen = block["choices"][0]["chosen"]
    assert f"repeat 1 fold 1: {chosen} ({block['choices'][0]['reason']})" in sec
    assert list(grading["Candidate"]) == ["auto (nested choice)", "paper", "logistic_l1", "rf"]
    assert grading.set_index("Candidate")["Chosen"].to_dict() == {
        "auto (nested choice)": "", **{n: "chosen" if n == chosen else ""
                                       for n in ("paper", "logistic_l1", "rf")}}
    assert "Mean AUC (SD) over repeats" not in grading.columns  # a split: no repeats
    for r, shown in zip(block["table"], grading.to_dict(orient="records"), strict=True):
        assert shown["Outer AUC (95% CI)"] == (f"{r['auc']:.3f} ({r['auc_ci_low']:.3f}-"
                                               f"{r['auc_ci_high']:.3f})")
        assert shown["Validation AUC"] == f"{r['validation_auc']:.3f}"
        if r["candidate"] == "paper":
            assert shown["AUC minus paper (95% CI)"] == shown["P vs paper"] == ""
        else:
            assert shown["AUC minus paper (95% CI)"] == (
                f"{r['diff_vs_paper']:+.3f} ({r['diff_ci_low']:+.3f} to {r['diff_ci_high']:+.3f})")
            p = r["p_vs_paper"]
            assert shown["P vs paper"] == ("< 0.001" if p < 0.001 else f"{p:.3f}")
        if r["candidate"] != "auto":
            assert shown["Chosen in outer folds"] == (
                f"{int(r['n_chosen'])} of 1 ({100 * r['n_chosen']:.0f}%)")
            assert shown["Inner AUC (mean)"] == f"{r['inner_auc_mean']:.3f}"
            assert shown["Most often selected (frequency over outer folds)"] == (
                r["top_features"] or "")
    assert grading.set_index("Candidate").at["paper", "Features (mean)"] == "8.0"  # rf_k 8
    # the bundle's grading model (fitted on every patient) and its choice
    info = json.loads((searched["bundle"] / "bundle" / "grading" / "model.json")
                      .read_text(encoding="utf-8"))
    assert (f"grading.model auto; chose {info['chosen']}: {info['choice_reason']}."
            in sec)
    # survival: the writer's model_search block
    ms = json.loads((searched["survival"] / "metrics.json").read_text(encoding="utf-8"))[
        "model_search"]
    assert f"survival.model auto: {ms['chosen']} chosen ({ms['why']})." in sec
    assert "ties going to the first of paper, clinical, coxnet, gbcox, rsf" in sec
    assert "Validation-cohort C-indices are computed after the choice, for reporting only" in sec
    assert list(survival["Candidate"]) == [c["name"] for c in ms["candidates"]] == [
        "paper", "clinical", "coxnet"]
    assert list(survival["Chosen"]) == ["chosen" if c["name"] == ms["chosen"] else ""
                                        for c in ms["candidates"]]
    for c, shown in zip(ms["candidates"], survival.to_dict(orient="records"), strict=True):
        assert shown["Inner C-index"] == f"{c['inner_c_index']:.4f}"
        a = c["external"]["A"]
        assert shown["C-index A (external) (95% CI)"] == (f"{a['c_index']:.3f} ({a['ci'][0]:.3f}-"
                                                          f"{a['ci'][1]:.3f})")
        sig = c["inner_c_index_signature"]
        assert shown["Inner C-index of the signature"] == ("" if sig is None else f"{sig:.4f}")
    # the search's notes (escaped as every text of the report)
    assert all(html.escape(n) in sec for n in ms["notes"])


def test_continuous_signature_term_in_the_survival_sections(searched, tmp_path):
    """survival.signature_term continuous: Table 3 shows the signature per SD and the
    Kaplan-Meier captions give its hazard ratio per SD in the integrated model beside the
    groups' (which stay)."""
    import json

    metrics = json.loads((searched["survival"] / "metrics.json").read_text(encoding="utf-8"))
    text = build_report(ReportInputs(survival=searched["survival"]), tmp_path / "r").read_text(
        encoding="utf-8")
    assert "Signature (per SD)" in _section_html(text, "cox")
    assert any(c["hr_signature_per_sd"] for c in metrics["cohorts"].values())
    for c in metrics["cohorts"].values():
        per_sd = c["hr_signature_per_sd"]
        if per_sd is not None:
            assert (f"in the integrated model HR per SD of the signature {per_sd['hr']:.2f}"
                    in _section_html(text, "kaplan-meier"))
        assert "HR high vs low" in _section_html(text, "kaplan-meier")


def test_model_comparison_under_repeated_cv(searched, tmp_path):
    """Under repeated CV every outer fold chose: the count over the folds, the most often
    chosen marked, the mean AUC (SD) over repeats."""
    import json

    sec = _section_html(build_report(ReportInputs(grade_tables=searched["cv"]), tmp_path / "r")
                        .read_text(encoding="utf-8"), "model-comparison")
    (table,) = _tables(sec)
    block = json.loads((searched["cv"] / "metrics.json").read_text(encoding="utf-8"))[
        "radiomics_t1ce"]["candidates"]
    n = len(block["choices"])
    assert n == 6 and "LGG survival" not in sec
    counts = {c: sum(x["chosen"] == c for x in block["choices"]) for c in ("paper", "logistic_l1")}
    top = max(counts.values())
    rows = table.set_index("Candidate")
    for c, k in counts.items():
        assert rows.at[c, "Chosen in outer folds"] == f"{k} of {n} ({100 * k / n:.0f}%)"
        assert rows.at[c, "Chosen"] == ("most often" if k == top else "")
    for r in block["table"]:
        name = "auto (nested choice)" if r["candidate"] == "auto" else r["candidate"]
        assert rows.at[name, "Mean AUC (SD) over repeats"] == f"{r['auc_mean']:.3f} ({r['auc_sd']:.3f})"
    assert "Validation AUC" not in table.columns
    assert sec.count("<li>repeat ") == 6


def test_model_comparison_parts_follow_the_run(searched, workspace, tmp_path):
    """Only the survival search (grading with the paper's model): the survival part alone; a
    search whose part the config switched off is not shown; a bad block names the file."""
    inp = ReportInputs(grade_tables=workspace / "grade" / "tables", survival=searched["survival"])
    sec = _section_html(build_report(inp, tmp_path / "r").read_text(encoding="utf-8"),
                        "model-comparison")
    assert "LGG survival" in sec and "Grading (HGG vs LGG)" not in sec
    inp = ReportInputs(grade_tables=searched["split"], survival=searched["survival"],
                       config={"survival": {"enabled": False}})
    sec = _section_html(build_report(inp, tmp_path / "r").read_text(encoding="utf-8"),
                        "model-comparison")
    assert "LGG survival" not in sec and "Grading (HGG vs LGG)" in sec
    inp = ReportInputs(grade_tables=searched["split"], bundle=searched["bundle"] / "bundle")
    sec = _section_html(build_report(inp, tmp_path / "r").read_text(encoding="utf-8"),
                        "model-comparison")
    assert "The bundle&#x27;s grading model" in sec and "grading.model auto; chose " in sec
    inp = ReportInputs(grade_tables=searched["split"], config={"grading": {"enabled": False}})
    assert "model-comparison" not in build_report(inp, tmp_path / "r").read_text(encoding="utf-8")
    # a bad survival block, a bad grading table
    import json

    surv = _copy(searched["survival"], tmp_path / "surv")
    data = json.loads((surv / "metrics.json").read_text(encoding="utf-8"))
    data["model_search"] = ["not", "a", "block"]
    (surv / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GlioradInputError, match=r"surv/metrics\.json: 'model_search' is a list, "
                                                r"not a dict"):
        build_report(ReportInputs(survival=surv), tmp_path / "r2")
    grade = _copy(searched["split"], tmp_path / "grade")
    data = json.loads((grade / "metrics.json").read_text(encoding="utf-8"))
    data["radiomics_t1ce"]["candidates"]["table"] = "rows"
    (grade / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GlioradInputError, match=r"grade/metrics\.json: radiomics_t1ce\.candidates"
                                                r"\.table: expected a list of rows"):
        build_report(ReportInputs(grade_tables=grade), tmp_path / "r3")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


# ================================================================== command line
def test_cli_report(workspace, tmp_path):
    """The command builds WORKSPACE/report (or --out) and prints the path; bad input: exit 2."""
    from gliorad.commands.report import report as report_cmd

    app = typer.Typer()
    app.command()(report_cmd)
    app.command("other")(lambda: None)  # two commands: typer keeps the command name
    runner = CliRunner()
    ws = tmp_path / "ws"
    shutil.copytree(workspace / "agreement", ws / "agreement")
    res = runner.invoke(app, ["report", str(ws), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(tmp_path / "r" / "report.html")
    res = runner.invoke(app, ["report", str(ws)])
    assert res.exit_code == 0 and res.output.strip() == str(ws / "report" / "report.html")
    assert 'id="agreement" class="ran"' in (ws / "report" / "report.html").read_text(encoding="utf-8")
    res = runner.invoke(app, ["report", str(tmp_path / "none")])
    assert res.exit_code == 2
    assert "error: " in res.output and "workspace folder not found" in res.output


# ================================================================== headless Chromium
def _render(path: Path) -> _Dom:
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", path.resolve().as_uri()],
        capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return _dom(res.stdout)


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium is not installed (Debian package 'chromium')")
def test_chromium_renders_sections_and_images(report, tmp_path):
    n_img = report.read_text(encoding="utf-8").count("<img ")
    dom = _render(report)
    assert list(dom.sections) == SECTION_IDS
    assert dom.body["data-images-total"] == str(n_img) and n_img >= 12
    assert dom.body["data-images-decoded"] == str(n_img)
    assert all(int(img["data-natural-width"]) > 100 for img in dom.images)
    # the check can fail: one image with corrupted data does not decode
    text = report.read_text(encoding="utf-8")
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(text[:start] + "AAAA" + text[start + 4:], encoding="utf-8")
    dom = _render(broken)
    assert dom.body["data-images-decoded"] == str(n_img - 1)
    assert min(int(img["data-natural-width"]) for img in dom.images) == 0
