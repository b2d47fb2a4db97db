"""The report's sections, in report order: one :class:`SectionTemplate` each (id, title, the
input it reads, the run-config part that turns it off) and the function writing its HTML.

A section whose input is absent says so ("not run in this workspace"), except the model
comparison (:mod:`~gliorad.report.sections.models`), which only runs that searched a model have
(``grading.model: auto``, ``survival.model`` other than ``paper``): the others' reports do not
mention it. A file that is present but unreadable (bad JSON, a table without its columns, a PNG that is not one) raises
:class:`~gliorad.errors.GlioradInputError` naming the file.

Figures
-------
===============================  ============================================================
figure                           PNG / SVG
===============================  ============================================================
segmentation overlays            drawn here from the cohort images and both masks (PNG, SVG)
ROC curves (Tables S3, 1, 2)     drawn here from ``predictions/<set>.csv`` (PNG, SVG)
signature weights                drawn here from ``signature_formula.csv`` (PNG, SVG)
C-index comparison               drawn here from the survival ``metrics.json`` (PNG, SVG)
ICC histogram                    the stage's PNG; SVG re-plotted from ``icc_<comparison>.csv``
calibration curves, KM curves,   the stage's PNG and SVG (survival writes both); for stage
nomograms                        folders without the SVG: calibration re-plotted from
                                 ``calibration.csv``, KM and nomograms an SVG wrapping the PNG
===============================  ============================================================
"""

from __future__ import annotations

from gliorad.report.context import SectionTemplate
from gliorad.report.sections.agreement import agreement_html
from gliorad.report.sections.cohort import cohort_html, cohort_ran
from gliorad.report.sections.grading import grading_html
from gliorad.report.sections.models import model_comparison_html, model_search_ran
from gliorad.report.sections.provenance import provenance_html
from gliorad.report.sections.segmentation import segmentation_html
from gliorad.report.sections.survival import (
    calibration_html,
    cindex_html,
    cox_html,
    km_html,
    nomograms_html,
    signature_html,
)

__all__ = ["OPTIONAL", "SECTIONS", "TEMPLATES"]


def _survival(sid: str, title: str, body) -> SectionTemplate:
    return SectionTemplate(sid, title, body, reads="survival", absent="Survival analysis",
                           stage="survival")


#: Every section of the report, in report order.
TEMPLATES: tuple[SectionTemplate, ...] = (
    SectionTemplate("cohort", "Cohort", cohort_html, ran=cohort_ran),
    SectionTemplate("segmentation", "Segmentation quality", segmentation_html,
                    reads="seg_evaluation", absent="Segmentation evaluation",
                    stage="segmentation"),
    SectionTemplate("agreement", "Radiomics agreement (ICC)", agreement_html, reads="agreement",
                    absent="Feature agreement", stage="agreement"),
    SectionTemplate("grading", "Grading: Tables S3, 1, 2 and ROC curves", grading_html,
                    reads="grade_tables", absent="Grading tables", stage="grading"),
    _survival("signature", "Signature features and weights", signature_html),
    _survival("kaplan-meier", "Kaplan-Meier curves", km_html),
    _survival("cox", "Cox models: Tables 3 and 4", cox_html),
    _survival("nomograms", "Nomograms", nomograms_html),
    _survival("c-index", "C-index comparison", cindex_html),
    _survival("calibration", "Calibration curves", calibration_html),
    # only in runs that searched a model (grading.model auto, survival.model not paper)
    SectionTemplate("model-comparison", "Model comparison (beyond the paper)",
                    model_comparison_html, shown=model_search_ran),
    SectionTemplate("provenance", "Provenance", provenance_html),
)

#: ``(html id, title)`` of every section, in report order (the model comparison only in runs
#: that searched a model: :data:`OPTIONAL`).
SECTIONS: tuple[tuple[str, str], ...] = tuple((t.id, t.title) for t in TEMPLATES)
#: The ids of the sections only some runs have (left out of the others' reports).
OPTIONAL: tuple[str, ...] = tuple(t.id for t in TEMPLATES if t.shown is not None)
