"""The files each stage of ``gliorad run`` writes: one class per stage owns its file names.

The next stage, the report, the bundle and the console summary find a stage's files through
its class, never through a string of their own: ``SplitFiles(ws / "split").table``, or, inside a
stage, ``SplitFiles.of(ctx)`` (the folder of a declared input). A class's ``stage`` is the name of
the stage (and of its folder in the workspace).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gliorad.files import File

__all__ = [
    "AgreementFiles",
    "Artifacts",
    "BundleFiles",
    "CohortFiles",
    "Deep2DFiles",
    "Deep3DFiles",
    "Deep3DOOFFiles",
    "File",
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


class CohortFiles(Artifacts):
    """``cohort``: the generated synthetic cohort (a folder in BraTS 2018 naming)."""

    stage = "cohort"
    cohort = File("cohort")


class ValidateFiles(Artifacts):
    """``validate``: the canonical clinical table (days), the validation summary and the input
    listing (a changed input file reruns the stages after it)."""

    stage = "validate"
    clinical = File("clinical.csv")
    validation = File("validation.json")
    inputs = File("inputs.json")


class PreprocessFiles(Artifacts):
    """``preprocess``: the preprocessed cohort (BraTS 2018 naming)."""

    stage = "preprocess"
    cohort = File("cohort")


class SplitFiles(Artifacts):
    """``split``: each patient's grading part and survival cohort, their counts, and who is
    left out of which analysis."""

    stage = "split"
    table = File("split.csv")
    summary = File("split.json")
    excluded = File("excluded.json")

    def read(self):
        """``split.csv`` with ids as text (a patient without a part or cohort: NaN there)."""
        import pandas as pd

        df = pd.read_csv(self.table, dtype={"patient_id": str})
        df["patient_id"] = df["patient_id"].astype(str)
        return df


class SegmentFiles(Artifacts):
    """``segment``: the U-Net, every patient's automatic mask, the evaluation against manual
    masks (of the raw predictions), the check of each mask (``qc.csv``, ``qc.json``:
    :mod:`gliorad.segmentation.qc`) and the raw predictions of the masks that failed it
    (``flagged/``; ``masks/`` holds the manual mask in their place, or none)."""

    stage = "segment"
    model = File("model")
    masks = File("masks")
    evaluation = File("evaluation")
    qc_table = File("qc.csv")
    qc_summary = File("qc.json")
    flagged = File("flagged")


class RadiomicsFiles(Artifacts):
    """``radiomics``: one feature table per mask source (``manual``, ``auto``)."""

    stage = "radiomics"

    def table(self, source: str) -> Path:
        return self.folder / f"radiomics_{source}.csv"


class AgreementFiles(Artifacts):
    """``agreement``: ICC of automatic- vs manual-mask features."""

    stage = "agreement"
    summary = File("agreement.json")


class Deep3DFiles(Artifacts):
    """``deep3d``: per variant a folder with its features, predictions and network."""

    stage = "deep3d"

    def variant(self, name: str) -> Path:
        return self.folder / name

    def features(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}.csv"

    def predictions(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}_predictions.csv"
    excluded = File("excluded.json")


class Deep3DOOFFiles(Artifacts):
    """``deep3d_oof``: out-of-fold CNN probabilities of the grading training part."""

    stage = "deep3d_oof"

    def predictions(self, name: str) -> Path:
        return self.folder / name / f"cnn3d_{name}_oof_predictions.csv"


class Deep2DFiles(Artifacts):
    """``deep2d``: the 2D dual-task network's features of the LGG patients; with
    ``deep2d.cross_fit`` also the cross-fitted head outputs, their sources and summary, and the
    fold networks' runs (:func:`gliorad.features.deep2d.cnn2d_cross_fit`)."""

    stage = "deep2d"
    features = File("cnn2d_dual.csv")
    excluded = File("excluded.json")
    cross_fitted = File("cnn2d_cross_fit.csv")
    cross_fit_predictions = File("cnn2d_cross_fit_predictions.csv")
    cross_fit_summary = File("cross_fit.json")
    folds = File("cross_fit")

    def signature_features(self, cross_fit: int) -> Path:
        """The table the survival signature reads: the cross-fitted head outputs when
        ``cross_fit`` (the run's ``deep2d_cross_fit``) is on, else the 512 features."""
        return self.cross_fitted if cross_fit else self.features


class GradeFiles(Artifacts):
    """``grade``: Tables S3, 1, 2, the fused features and the final grading model."""

    stage = "grade"
    tables = File("tables")
    metrics = File("tables", "metrics.json")
    table_2 = File("tables", "table_2.csv")
    fused = File("fused_features.csv")
    model = File("model")
    model_info = File("model", "model.json")
    model_inputs = File("model_inputs.json")


class SurvivalFiles(Artifacts):
    """``survival``: the analysis (tables, figures, metrics) and the survival models."""

    stage = "survival"
    analysis = File("analysis")
    metrics = File("analysis", "metrics.json")
    bundle = File("bundle")


class BundleFiles(Artifacts):
    """``bundle``: the model bundle of ``gliorad predict``."""

    stage = "bundle"
    bundle = File("bundle")


class ReportFiles(Artifacts):
    """``report``: the HTML report and its figures."""

    stage = "report"
    html = File("report.html")
