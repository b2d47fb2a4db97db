"""The stages of ``gliorad run``: one class each, run in this order (disabled ones left out).

=============  ==========================================================================
``cohort``     (``synthetic:`` configs only) the generated two-centre cohort
``validate``   checks the cohort and the clinical table; writes the canonical clinical table
               and a listing of the input files, so that a changed input file reruns what
               depends on it
``preprocess`` (``preprocess.enabled``) N4, registration, skull strip, resampling
``split``      the grading split (stratified 6:2:2, :func:`gliorad.grading.evaluate.split_positions`,
               the same split the grading tables use), the survival cohorts, who is left out
``segment``    3D U-Net (recombination + SE) trained on the grading training patients
               (validation part for monitoring); masks for every patient; Dice vs manual
``radiomics``  pyradiomics from the manual and the automatic masks
``agreement``  ICC of automatic- vs manual-mask features
``deep3d``     3D ResNet18(+SE) per variant, trained on the grading training part only
``deep3d_oof`` (``deep3d.cross_fit``) cross-fitted 3D CNNs: out-of-fold scores (stacked rows)
``deep2d``     2D dual-task ResNet18 on LGG patients of the survival training cohort only
``grade``      Tables S3, 1, 2 (test part of the split) and the final fused grading model
``survival``   deep-radiomics signature, Cox models, nomograms, C-index, calibration
``bundle``     the model bundle for ``gliorad predict``
``report``     the HTML report
=============  ==========================================================================

Each stage is a :class:`~gliorad.stages.base.RunStage` (:mod:`gliorad.stages.base`); the files
it writes are named by its class in :mod:`gliorad.stages.artifacts`; the pipeline
(:mod:`gliorad.pipeline`) skips a stage whose settings and inputs are unchanged, writes it
atomically and resumes it after a kill.
"""

from __future__ import annotations

from gliorad.pipeline import Stage
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import (
    AgreementFiles,
    Artifacts,
    BundleFiles,
    CohortFiles,
    Deep2DFiles,
    Deep3DFiles,
    Deep3DOOFFiles,
    GradeFiles,
    PreprocessFiles,
    RadiomicsFiles,
    ReportFiles,
    SegmentFiles,
    SplitFiles,
    SurvivalFiles,
    ValidateFiles,
)
from gliorad.stages.base import RunStage, survival_training_name, tumour_masks
from gliorad.stages.data import CohortStage, PreprocessStage, SplitStage, ValidateStage
from gliorad.stages.deep import Deep2DStage, Deep3DOOFStage, Deep3DStage
from gliorad.stages.images import AgreementStage, RadiomicsStage, SegmentStage, segmentation_ids
from gliorad.stages.models import (
    BundleStage,
    GradeStage,
    ReportStage,
    SurvivalStage,
    honest_cnn_scores,
    training_ranges,
)

__all__ = [
    "STAGES", "AgreementFiles", "AgreementStage", "Artifacts", "BundleFiles", "BundleStage",
    "CohortFiles", "CohortStage", "Deep2DFiles", "Deep2DStage", "Deep3DFiles", "Deep3DOOFFiles",
    "Deep3DOOFStage", "Deep3DStage", "GradeFiles", "GradeStage", "PreprocessFiles",
    "PreprocessStage", "RadiomicsFiles", "RadiomicsStage", "ReportFiles", "ReportStage",
    "RunStage", "SegmentFiles", "SegmentStage", "SplitFiles", "SplitStage", "SurvivalFiles",
    "SurvivalStage", "ValidateFiles", "ValidateStage", "build_stages", "honest_cnn_scores",
    "segmentation_ids", "survival_training_name", "training_ranges", "tumour_masks",
]

#: Every stage of a run, in the order they run.
STAGES: tuple[RunStage, ...] = (
    CohortStage(), ValidateStage(), PreprocessStage(), SplitStage(), SegmentStage(),
    RadiomicsStage(), AgreementStage(), Deep3DStage(), Deep3DOOFStage(), Deep2DStage(),
    GradeStage(), SurvivalStage(), BundleStage(), ReportStage(),
)


def build_stages(cfg: RunConfig) -> list[Stage]:
    """The stage graph of a run config: the enabled stages of :data:`STAGES`, bound to it."""
    stages: list[Stage] = []
    for spec in STAGES:
        if spec.enabled(cfg):
            stages.append(spec.bind(cfg, [s.name for s in stages]))
    return stages
