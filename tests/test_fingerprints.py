"""Stage fingerprints follow the settings each stage reads (issue 17 item 6).

A stage is skipped when its fingerprint is unchanged (:func:`gliorad.pipeline.fingerprint`: the
stage's own settings plus the output hashes of the stages it reads). A setting a stage reads but
leaves out of its settings silently reuses stale results; leaving the grade stage's settings out
passed all 40 workflow, pipeline and CLI tests before these.

Here every upstream output hash is held fixed (a workspace of fake records), so a fingerprint
changes only through the stage's own settings. Each case changes one setting of one section and
asserts *exactly* which stages' fingerprints change, the others not. A change that reaches a
later stage only through an earlier stage's files (e.g. the cohort sequences, which the validate
stage's ``validation.json`` records) is not listed for the later stage: output hashes carry it.
``bundle`` changes with every setting: the bundle stores the whole resolved config.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from gliorad.pipeline import RECORD, StageContext, Workspace, fingerprint
from gliorad.run_config import load_run_config
from gliorad.workflow import build_stages

#: The demo preset with cross-fitted CNNs: every stage but preprocess.
DEMO = {"deep3d": {"cross_fit": 2}}
#: The demo with cross-fitted 2D CNNs too (the signature reads their out-of-fold head outputs).
DEEP2D_CF = {"deep3d": {"cross_fit": 2}, "deep2d": {"cross_fit": 2}}
#: Two 3D CNN variants (the first one feeds the fused grading model and the bundle).
TWO_VARIANTS = {"deep3d": {"variants": ["patch_se", "full_se"]}}
#: Grading by cross-validation (no cross-fitted CNNs: they need scheme split).
CV = {"grading": {"scheme": "cv"}}
#: A seeded random survival split (the demo's splits by centre).
RANDOM = {"survival": {"split": {"method": "random", "train_fraction": 0.6}}}
#: Survival only (the 3D CNN goes with grading): the U-Net trains on the survival training cohort.
NO_GRADING = {"grading": {"enabled": False}}
#: The demo's survival split by centre, training on A instead of B (same cohort names).
TRAIN_ON_A = {"survival": {"split": {"method": "column", "column": "centre", "train": "A",
                                     "external": ["B"]}}}
#: A cohort folder of one's own (the marker is replaced by the test's folder), preprocessed.
USER = {"cohort": {"root": "<data>", "naming": "brats2018"},
        "clinical": {"path": "<data>/clinical.csv"}, "preprocess": {"enabled": True}}

B = "bundle"
#: (stage under test, base config, change, the stages whose fingerprints must change)
CASES = [
    ("cohort", DEMO, {"synthetic": {"n_patients": 100}}, {"cohort", B}),
    ("cohort", DEMO, {"synthetic": {"hgg_fraction": 0.5}}, {"cohort", B}),
    ("validate", USER, {"clinical": {"time_unit": "months"}}, {"validate", B}),
    ("validate", USER, {"cohort": {"naming": "brats2023"}}, {"validate", B}),
    ("validate", USER, {"cohort": {"root": "<data>/other"}}, {"validate", B}),
    ("preprocess", USER, {"preprocess": {"spacing": 2.0}}, {"preprocess", B}),
    ("preprocess", USER, {"preprocess": {"reference": "t2"}}, {"preprocess", B}),
    ("split", DEMO, {"grading": {"split_ratios": [0.5, 0.25, 0.25]}}, {"split", "grade", B}),
    ("split", DEMO, {"grading": {"seed": 5}}, {"split", "grade", B}),
    # the survival stage reads the clinical table with the same policy
    ("split", DEMO, {"clinical": {"missing": "error"}}, {"validate", "split", "survival", B}),
    # a CV cohort too small for the 6:2:2 split puts every graded patient in training
    ("split", CV, {"grading": {"scheme": "split"}}, {"split", "grade", B}),
    ("split", RANDOM, {"survival": {"seed": 3}}, {"split", "survival", B}),
    # the cohort names in split.csv stay A and B: the 2D CNN's training cohort must show
    ("split", DEMO, TRAIN_ON_A, {"split", "deep2d", "survival", B}),
    ("segment", DEMO, {"segmentation": {"train": {"epochs": 3}}}, {"segment", B}),
    ("segment", DEMO, {"segmentation": {"train_patients": 40}}, {"segment", B}),
    # the handling of a mask that fails the checks, and the checks' rule
    ("segment", DEMO, {"segmentation": {"flagged": "exclude"}}, {"segment", B}),
    ("segment", DEMO, {"segmentation": {"qc": {"large": 3.0}}}, {"segment", B}),
    ("segment", NO_GRADING, TRAIN_ON_A, {"split", "segment", "deep2d", "survival", B}),
    ("radiomics", DEMO, {"radiomics": {"params": "paper"}}, {"radiomics", B}),
    ("radiomics", DEMO, {"radiomics": {"region": "core"}}, {"radiomics", B}),
    # the signature's candidate sequences default to the radiomics sequences
    ("radiomics", DEMO, {"radiomics": {"sequences": ["t1", "t2"]}}, {"radiomics", "survival", B}),
    ("agreement", DEMO, {"agreement": {"threshold": 0.8}}, {"agreement", B}),
    ("agreement", DEMO, {"agreement": {"kind": "ICC(3,1)"}}, {"agreement", B}),
    ("agreement", DEMO, {"run": {"nonfinite": "error"}}, {"agreement", "grade", "survival", B}),
    ("deep3d", DEMO, {"deep3d": {"train": {"epochs": 3}}}, {"deep3d", "deep3d_oof", B}),
    ("deep3d", DEMO, {"deep3d": {"variants": ["patch_nose"]}}, {"deep3d", "deep3d_oof", B}),
    ("deep3d_oof", DEMO, {"deep3d": {"cross_fit": 3}}, {"deep3d_oof", B}),
    ("deep2d", DEMO, {"deep2d": {"train": {"epochs": 3}}}, {"deep2d", B}),
    ("deep2d", DEMO, {"deep2d": {"size": [48, 48]}}, {"deep2d", B}),
    # the survival stage then reads another table of the deep2d stage
    ("deep2d", DEMO, {"deep2d": {"cross_fit": 3}}, {"deep2d", "survival", B}),
    ("deep2d", DEEP2D_CF, {"deep2d": {"cross_fit": 3}}, {"deep2d", "survival", B}),
    ("deep2d", DEEP2D_CF, {"deep2d": {"cross_fit": 0}}, {"deep2d", "survival", B}),
    # run.seed also shuffles the 2D CNN's folds
    ("run", DEEP2D_CF, {"run": {"seed": 1}},
     {"cohort", "split", "segment", "deep3d_oof", "deep2d", "grade", "survival", B}),
    ("grade", DEMO, {"grading": {"svm_C": [2.0]}}, {"grade", B}),
    ("grade", DEMO, {"grading": {"rf_k": 4}}, {"grade", B}),
    ("grade", DEMO, {"grading": {"class_weight": "balanced"}}, {"grade", B}),
    ("grade", DEMO, {"grading": {"feature_groups": None}}, {"grade", B}),
    ("grade", CV, {"grading": {"cv_repeats": 5}}, {"grade", B}),
    # the first variant is the fused model's (the bundle follows the grade stage's files; its
    # stored config is a mapping whose canonical form ignores the order)
    ("grade", TWO_VARIANTS, {"deep3d": {"variants": ["full_se", "patch_se"]}}, {"grade"}),
    ("survival", DEMO, {"survival": {"p_threshold": 0.1}}, {"survival", B}),
    ("survival", DEMO, {"survival": {"signature": {"n_estimators": 50}}}, {"survival", B}),
    ("survival", DEMO, {"survival": {"clinical_selection": "prespecified"}}, {"survival", B}),
    ("bundle", DEMO, {"survival": {"cutoff": "optimal"}}, {"survival", B}),
    ("report", DEMO, {"report": {"title": "another title"}}, {"report", B}),
    # run.seed seeds the cohort, the splits, the U-Net's training draw, the cross-fitting folds
    # and the models; the networks' weights are seeded by their own train.seed
    ("run", DEMO, {"run": {"seed": 1}},
     {"cohort", "split", "segment", "deep3d_oof", "grade", "survival", B}),
    # worker count: the survival settings carry n_jobs (a harmless rerun, never a stale result)
    ("run", DEMO, {"run": {"n_jobs": 1}}, {"survival", B}),
]


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve(data, folder: Path):
    """The config with the ``<data>`` marker replaced by the test's cohort folder."""
    if isinstance(data, dict):
        return {k: _resolve(v, folder) for k, v in data.items()}
    return data.replace("<data>", str(folder)) if isinstance(data, str) else data


def _config(tmp_path: Path, *parts: dict):
    data = tmp_path / "data"
    (data / "other").mkdir(parents=True, exist_ok=True)
    if not (data / "clinical.csv").is_file():  # written once: its mtime is in the fingerprint
        (data / "clinical.csv").write_text("patient_id,grade\n", encoding="utf-8")
    merged: dict = {}
    for p in parts:
        merged = _merge(merged, p)
    return load_run_config("demo", _resolve(merged, data))


def fingerprints(cfg, root: Path) -> dict[str, str]:
    """Each stage's fingerprint with every upstream output hash held fixed."""
    stages = build_stages(cfg)
    ws = Workspace(root)
    for s in stages:
        ws.stage_dir(s.name).mkdir(parents=True, exist_ok=True)
        (ws.stage_dir(s.name) / RECORD).write_text(
            json.dumps({"stage": s.name, "outputs_hash": f"fixed-{s.name}"}), encoding="utf-8")
    return {s.name: fingerprint(s, ws) for s in stages}


def _id(case) -> str:
    stage, _, change, _ = case
    return f"{stage}-" + re.sub(r"[^A-Za-z0-9_.=]+", "", json.dumps(change)).replace(":", "=")


@pytest.mark.parametrize("stage, base, change, expected", CASES, ids=[_id(c) for c in CASES])
def test_a_setting_reruns_exactly_the_stages_that_read_it(tmp_path, stage, base, change,
                                                           expected):
    before = fingerprints(_config(tmp_path, base), tmp_path / "ws")
    after = fingerprints(_config(tmp_path, base, change), tmp_path / "ws")
    assert stage in before or stage == "run"
    assert list(after) == list(before)  # same stage graph: only settings differ
    changed = {name for name in before if before[name] != after[name]}
    assert changed == expected, (f"{change}: expected {sorted(expected)} to rerun, "
                                 f"got {sorted(changed)}")


def test_every_stage_has_a_case():
    """A new stage (or a stage's new settings section) gets a case above."""
    names: set[str] = set()
    for base in (DEMO, USER):
        cfg = load_run_config("demo", _resolve(base, Path("/nonexistent")))
        names |= {s.name for s in build_stages(cfg)}
    assert names == {"cohort", "validate", "preprocess", "split", "segment", "radiomics",
                     "agreement", "deep3d", "deep3d_oof", "deep2d", "grade", "survival", "bundle",
                     "report"}
    assert names <= {c[0] for c in CASES}


def test_a_changed_input_file_reruns_validate_only(tmp_path):
    """A user cohort's files are listed (size, modification time): one more image reruns the
    validate stage, whose files then carry the change to the rest."""
    cfg = _config(tmp_path, USER)
    before = fingerprints(cfg, tmp_path / "ws")
    (tmp_path / "data" / "P1").mkdir()
    (tmp_path / "data" / "P1" / "P1_t1.nii.gz").write_bytes(b"\0")
    after = fingerprints(_config(tmp_path, USER), tmp_path / "ws")
    assert {n for n in before if before[n] != after[n]} == {"validate"}


def test_the_report_stage_uses_the_configured_title(tmp_path):
    """``report.title`` is the title of the run's report (not only part of its fingerprint)."""
    cfg = load_run_config("demo", {"report": {"title": "Glioma cohort 2024"}})
    (stage,) = [s for s in build_stages(cfg) if s.name == "report"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.resolved()), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    stage.run(StageContext(Workspace(tmp_path), stage, out, tmp_path / "work",
                           logging.getLogger("test")))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>Glioma cohort 2024</title>" in html
    assert "<h1>Glioma cohort 2024</h1>" in html
