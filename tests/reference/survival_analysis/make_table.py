"""Build the seeded analysis whose Cox models are checked against R.

Run once (``python tests/reference/survival_analysis/make_table.py``) and commit the outputs;
``tests/reference/make_survival_analysis_reference.R`` reads them and writes ``expected.json``.

- ``analysis_table.csv``: every analysed LGG patient of the synthetic two-centre cohort
  (``gliorad.synthetic.sample_patients(SynthConfig(n_patients=480, seed=11, grade_slope=2.5,
  infiltration_slope=0.0, mismatch_slope=0.0))`` with
  ``synthetic_feature_table(n_features=300, n_deep=100, seed=2)``), after the analysis
  (train centre B, validate centre A): cohort, ``os_days``, ``event``, the coded clinical
  factors, the signature score and its group (``high`` / ``low`` at the training median).
- ``spec.json``: the factors of the integrated and clinical models chosen by the paper's rule on
  the training cohort, the reference levels and the survival times.

``tests/test_survival_analysis.py`` reruns :func:`build` and checks that it reproduces both files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gliorad.survival.config import SIGNATURE, SurvivalConfig
from gliorad.survival.evaluation import SurvivalAnalysis, run_analysis
from gliorad.synthetic import SynthConfig, sample_patients, synthetic_feature_table

HERE = Path(__file__).resolve().parent
CLINICAL_COLUMNS = ["age", "sex", "grade", "grade_group", "histology", "location", "laterality",
                    "enhancement", "centre", "os_days", "event"]


def inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    # the generator's settings when the R references were computed (grade from malignancy only)
    patients = sample_patients(SynthConfig(n_patients=480, seed=11, grade_slope=2.5,
                                           infiltration_slope=0.0, mismatch_slope=0.0))
    clinical = patients.rename(columns={"os_time": "os_days"})[CLINICAL_COLUMNS]
    features = synthetic_feature_table(patients, n_features=300, n_deep=100, seed=2)
    return features, clinical


def config() -> SurvivalConfig:
    return SurvivalConfig.model_validate({
        "split": {"method": "column", "column": "centre", "train": "B", "external": ["A"]},
        "sequence": {"sequences": ["t1", "t1ce", "t2"], "n_estimators": 30, "cv_folds": 4},
        "signature": {"n_estimators": 150, "n_alphas": 12, "l1_ratios": [0.5, 1.0], "cv_folds": 4},
        "calibration_boot": 5, "min_level_size": 10, "seed": 0,
    })


def build() -> SurvivalAnalysis:
    features, clinical = inputs()
    return run_analysis(features, clinical, config())


def tables(analysis: SurvivalAnalysis) -> tuple[pd.DataFrame, dict]:
    m = analysis.models
    parts = []
    for name, res in analysis.cohorts.items():
        d = res.data[[*m.coding.factors, "signature_score", SIGNATURE, "os_days", "event"]]
        parts.append(d.assign(cohort=name, role=res.role))
    table = pd.concat(parts)
    table["signature_score"] = table["signature_score"].round(12)
    spec = {
        "training": m.training,
        "external": [n for n, r in analysis.cohorts.items() if r.role != "training"],
        "candidates": [*m.coding.factors, SIGNATURE],
        "clinical_candidates": list(m.coding.factors),
        "integrated_factors": m.integrated_factors,
        "clinical_factors": m.clinical_factors,
        "references": {**m.coding.references, SIGNATURE: "low"},
        "numeric": m.coding.numeric,
        "times": list(m.config.times),
        "cutoff": m.cutoff,
    }
    return table, spec


if __name__ == "__main__":
    table, spec = tables(build())
    table.to_csv(HERE / "analysis_table.csv", index_label="patient_id")
    (HERE / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"wrote {len(table)} patients; integrated {spec['integrated_factors']}, "
          f"clinical {spec['clinical_factors']}")
