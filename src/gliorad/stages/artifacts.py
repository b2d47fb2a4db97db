"""The files each stage of ``gliorad run`` writes: one class per stage owns its file names.

The next stage, the report, the bundle and the console summary find a stage's files through
its class, never through a string of their own: ``SplitFiles(ws / "split").table``, or, inside a
stage, ``SplitFiles.of(ctx)`` (the folder of a declared input). A class's ``stage`` is the name of
the stage (and of its folder in the workspace).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "AgreementFiles",
    "Artifacts",
    "BundleFiles",
    "CohortFiles",
    "Deep2DFiles",
    "Deep3DFiles",
    "Deep3DOOFFiles",
    "GradeFiles",
    "PreprocessFiles",
    "RadiomicsFiles",
    "ReportFiles",
    "SegmentFiles",
    "SplitFiles",
    "SurvivalFiles",
    "ValidateFiles",
]


@dataclass(frozen=True)
class Artifacts:
    """The folder of one stage's outputs."""

    folder: Path
    stage: ClassVar[str] = ""

    @classmethod
    def of(cls, ctx: Any) -> Artifacts:
        """The outputs of this stage as an input of the running stage ``ctx`` (which must
        declare it) or, with a workspace folder, in that workspace."""
        if isinstance(ctx, (str, Path)):
            return cls(Path(ctx) / cls.stage)
        return cls(ctx.input_dir(cls.stage))

    def exists(self) -> bool:
        return self.folder.is_dir()

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))


class CohortFiles(Artifacts):
    """``cohort``: the generated synthetic cohort (a folder in BraTS 2018 naming)."""

    stage = "cohort"

    @property
    def cohort(self) -> Path:
        return self.folder / "cohort"


class ValidateFiles(Artifacts):
    """``validate``: the canonical clinical table (days), the validation summary and the input
    listing (a changed input file reruns the stages after it)."""

    stage = "validate"

    @property
    def clinical(self) -> Path:
        return self.folder / "clinical.csv"

    @property
    def validation(self) -> Path:
        return self.folder / "validation.json"

    @property
    def inputs(self) -> Path:
        return self.folder / "inputs.json"


class PreprocessFiles(Artifacts):
    """``preprocess``: the preprocessed cohort (BraTS 2018 naming)."""

    stage = "preprocess"

    @property
    def cohort(self) -> Path:
        return self.folder / "cohort"


class SplitFiles(Artifacts):
    """``split``: each patient's grading part and survival cohort, their counts, and who is
    left out of which analysis."""

    stage = "split"

    @property
    def table(self) -> Path:
        return self.folder / "split.csv"

    @property
    def summary(self) -> Path:
        return self.folder / "split.json"

    @property
    def excluded(self) -> Path:
        return self.folder / "excluded.json"

    def read(self):
        """``split.csv`` with ids as text and empty parts as empty strings."""
        import pandas as pd

        df = pd.read_csv(self.table, dtype={"patient_id": str})
        df["patient_id"] = df["patient_id"].astype(str)
        return df


class SegmentFiles(Artifacts):
    """``segment``: the U-Net, every patient's automatic mask, the evaluation against manual
    masks."""

    stage = "segment"

    @property
    def model(self) -> Path:
        return self.folder / "model"

    @property
    def masks(self) -> Path:
        return self.folder / "masks"

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation"


class RadiomicsFiles(Artifacts):
    """``radiomics``: one feature table per mask source (``manual``, ``auto``)."""

    stage = "radiomics"

    def table(self, source: str) -> Path:
        return self.folder / f"radiomics_{source}.csv"


class AgreementFiles(Artifacts):
    """``agreement``: ICC of automatic- vs manual-mask features."""

    stage = "agreement"

    @property
    def summary(self) -> Path:
        return self.folder / "agreement.json"


class Deep3DFiles(Artifacts):
    """``deep3d``: per variant a folder with its features, predictions and network."""

    stage = "deep3d"

    def variant(self, name: str) -> Path:
        return self.folder / name

    def features(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}.csv"

    def predictions(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}_predictions.csv"

    @property
    def excluded(self) -> Path:
        return self.folder / "excluded.json"


class Deep3DOOFFiles(Artifacts):
    """``deep3d_oof``: out-of-fold CNN probabilities of the grading training part."""

    stage = "deep3d_oof"

    def predictions(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}_oof_predictions.csv"


class Deep2DFiles(Artifacts):
    """``deep2d``: the 2D dual-task network's features of the LGG patients."""

    stage = "deep2d"

    @property
    def features(self) -> Path:
        return self.folder / "cnn2d_dual.csv"

    @property
    def excluded(self) -> Path:
        return self.folder / "excluded.json"


class GradeFiles(Artifacts):
    """``grade``: Tables S3, 1, 2, the fused features and the final grading model."""

    stage = "grade"

    @property
    def tables(self) -> Path:
        return self.folder / "tables"

    @property
    def metrics(self) -> Path:
        return self.folder / "tables" / "metrics.json"

    @property
    def table_2(self) -> Path:
        return self.folder / "tables" / "table_2.csv"

    @property
    def fused(self) -> Path:
        return self.folder / "fused_features.csv"

    @property
    def model(self) -> Path:
        return self.folder / "model"

    @property
    def model_info(self) -> Path:
        return self.folder / "model" / "model.json"

    @property
    def model_inputs(self) -> Path:
        return self.folder / "model_inputs.json"


class SurvivalFiles(Artifacts):
    """``survival``: the analysis (tables, figures, metrics) and the survival models."""

    stage = "survival"

    @property
    def analysis(self) -> Path:
        return self.folder / "analysis"

    @property
    def metrics(self) -> Path:
        return self.folder / "analysis" / "metrics.json"

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle"


class BundleFiles(Artifacts):
    """``bundle``: the model bundle of ``gliorad predict``."""

    stage = "bundle"

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle"


class ReportFiles(Artifacts):
    """``report``: the HTML report and its figures."""

    stage = "report"

    @property
    def html(self) -> Path:
        return self.folder / "report.html"
