"""``grading.all_sequences``: a radiomics set of every sequence together beside the per-sequence
sets (issue 18; not in the paper).

Properties: when each sequence carries a different part of the grade signal, the combined set
beats every single sequence (the reason for it); the per-sequence sets and their rows are those
of the paper's tables; the default leaves the dump and the tables unchanged. Shapes: the row
label, and a one-sequence table gets no combined set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliorad.grading.config import GradingConfig
from gliorad.grading.paper import ALL_SEQUENCES, radiomics_by_sequence
from gliorad.grading.run import run_tables


def _inputs(folder: Path, n: int = 160, seed: int = 0) -> tuple[Path, str]:
    """Three sequences of 6 features; the grade is ``a + b + c`` with ``a`` in t1, ``b`` in t2
    and ``c`` in flair: each sequence alone sees a third of the signal."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    latent = rng.normal(size=(n, 3))
    hgg = (latent.sum(axis=1) + 0.5 * rng.normal(size=n)) > 0
    cols = {}
    for k, seq in enumerate(("t1", "t2", "flair")):
        for j in range(6):
            cols[f"{seq}_original_firstorder_f{j}"] = (
                (latent[:, k] if j < 2 else 0.0) + 0.4 * rng.normal(size=n))
    cols["grade"] = np.where(hgg, "HGG", "LGG")  # the label column
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols, index=pd.Index(ids, name="patient_id")).to_csv(folder / "rad.csv")
    return folder / "rad.csv", "grade"


def _run(folder: Path, **config) -> dict:
    rad, clin = _inputs(folder)
    cfg = GradingConfig.preset("demo", model="logistic_l1", **config)
    run_tables({}, clin, folder / "out", config=cfg, scheme="split", radiomics_table=rad)
    return json.loads((folder / "out" / "metrics.json").read_text(encoding="utf-8"))


def test_default_dump_and_sets_unchanged():
    assert "all_sequences" not in GradingConfig.preset("paper").model_dump()
    assert GradingConfig.preset("paper", all_sequences=True).model_dump()["all_sequences"]
    table = pd.DataFrame({"t1_a": [1.0], "t2_a": [2.0]})
    assert set(radiomics_by_sequence(table)) == {"radiomics_t1", "radiomics_t2"}
    both = radiomics_by_sequence(table, combined=True)
    assert list(both[ALL_SEQUENCES].columns) == ["t1_a", "t2_a"]
    assert set(radiomics_by_sequence(table[["t1_a"]], combined=True)) == {"radiomics_t1"}
    with pytest.raises(ValueError, match=r"preset .paper.: all_sequences: Input should be a valid boolean"):
        GradingConfig.preset("paper", all_sequences="sometimes")


def test_combined_set_sees_what_each_sequence_sees_part_of(tmp_path):
    off = _run(tmp_path / "off")
    on = _run(tmp_path / "on", all_sequences=True)
    assert ALL_SEQUENCES not in off and ALL_SEQUENCES in on
    for seq in ("t1", "t2", "flair"):  # the per-sequence rows are the same with it on
        assert on[f"radiomics_{seq}"]["auc"] == off[f"radiomics_{seq}"]["auc"]
    best_single = max(on[f"radiomics_{s}"]["auc"] for s in ("t1", "t2", "flair"))
    assert on[ALL_SEQUENCES]["auc"] > best_single + 0.1
    s3 = pd.read_csv(tmp_path / "on" / "out" / "table_s3.csv")
    assert s3.iloc[:, 0].astype(str).str.contains("All sequences").any()
