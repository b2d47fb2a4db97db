"""What the report reads: :class:`ReportInputs`, found in a workspace by
:func:`inputs_from_workspace`, and the parts of a run the config switched off."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.report.files import read_json

__all__ = ["PATH_FIELDS", "ReportInputs", "input_rows", "inputs_from_workspace", "switched_off"]


@dataclass
class ReportInputs:
    """Where the report reads from; every field is optional (a missing one gives a section that
    says "not run in this workspace").

    Attributes
    ----------
    cohort_root : the cohort folder (images, ``cohort.yaml``)
    clinical : the clinical table (read with the run config's ``clinical`` section, else the
        cohort's ``cohort.yaml``)
    truth : ``truth.json`` of a synthetic cohort
    validation : ``validation.json`` of the validate stage
    seg_evaluation : folder written by :func:`gliorad.segmentation.evaluate_masks`
    masks : the :func:`gliorad.segmentation.predict_cohort` mask folder
    seg_qc : ``qc.json`` of the segment stage (:mod:`gliorad.segmentation.qc`), next to its
        ``qc.csv`` and the ``flagged/`` folder of the raw masks that failed the checks
    agreement : folder written by :func:`gliorad.features.agreement.run_agreement`
    grade_tables : folder written by :func:`gliorad.grading.run.run_tables`
    survival : folder written by :func:`gliorad.survival.artifacts.write_analysis`
    bundle : the model bundle folder (``manifest.json``)
    excluded : ``excluded.json`` files: the split stage's (patients left out of grading or
        survival for a missing grade / survival time) and the deep-feature stages' (empty
        automatic masks)
    stage_records : stage name -> its parsed ``_stage.json``
    config : the run's configuration
    title : the report's title
    """

    cohort_root: Path | None = None
    clinical: Path | None = None
    truth: Path | None = None
    validation: Path | None = None
    seg_evaluation: Path | None = None
    masks: Path | None = None
    seg_qc: Path | None = None
    agreement: Path | None = None
    grade_tables: Path | None = None
    survival: Path | None = None
    bundle: Path | None = None
    excluded: dict[str, Path] = field(default_factory=dict)
    stage_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    title: str = "gliorad report"


PATH_FIELDS = ("cohort_root", "clinical", "truth", "validation", "seg_evaluation", "masks",
               "seg_qc", "agreement", "grade_tables", "survival", "bundle")


def _config_path(config: dict[str, Any], section: str, key: str, base: Path,
                 source: Path) -> Path | None:
    part = config.get(section)
    if part is None:
        return None
    if not isinstance(part, dict):
        raise GlioradInputError(f"{source}: {section!r} must be a mapping")
    value = part.get(key)
    if value in (None, ""):
        return None
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def inputs_from_workspace(ws: str | Path) -> ReportInputs:
    """The report's inputs in a ``gliorad run`` / ``gliorad demo`` workspace.

    Layout: ``cohort/cohort`` (demo cohort, else ``config.yaml``'s ``cohort.root``; the clinical
    table is that cohort's ``clinical.csv``, else ``clinical.path``; the images are
    ``preprocess/cohort`` when preprocessing ran), ``validate/validation.json``,
    ``segment/masks``, ``segment/evaluation``, ``segment/qc.json``, ``agreement``, ``grade/tables``,
    ``survival/analysis``, ``bundle``, ``<stage>/_stage.json`` and ``config.yaml``. Only what
    exists is filled in.
    """
    from gliorad.io import read_yaml_mapping
    from gliorad.pipeline import RECORD

    root = Path(ws)
    if not root.is_dir():
        raise GlioradInputError(f"{root}: workspace folder not found")
    cfg_path = root / "config.yaml"
    config = read_yaml_mapping(cfg_path) if cfg_path.is_file() else {}

    demo = root / "cohort" / "cohort"
    if demo.is_dir():
        cohort_root: Path | None = demo
        clinical = demo / "clinical.csv" if (demo / "clinical.csv").is_file() else None
    else:
        cohort_root = _config_path(config, "cohort", "root", root, cfg_path)
        clinical = None
    if clinical is None:
        clinical = _config_path(config, "clinical", "path", root, cfg_path)
    truth = demo / "truth.json" if demo.is_dir() else None
    # with preprocessing, the masks were predicted on the preprocessed images
    if (root / "preprocess" / "cohort").is_dir():
        cohort_root = root / "preprocess" / "cohort"

    # in the order the stages ran: start time (1 s resolution), then when each record was written
    # (hidden folders are a killed run's leftovers: .<stage>.tmp-<pid>, .<stage>.trash-<pid>)
    found_records = [(read_json(rec), rec) for rec in root.glob(f"*/{RECORD}")
                     if not rec.parent.name.startswith(".")]
    found_records.sort(key=lambda r: (str(r[0].get("started", "")), r[1].stat().st_mtime_ns))
    records = {rec.parent.name: data for data, rec in found_records}

    def found(path: Path | None, folder: bool = True) -> Path | None:
        if path is None:
            return None
        return path if (path.is_dir() if folder else path.is_file()) else None

    return ReportInputs(
        cohort_root=found(cohort_root),
        clinical=found(clinical, folder=False),
        truth=found(truth, folder=False),
        validation=found(root / "validate" / "validation.json", folder=False),
        seg_evaluation=found(root / "segment" / "evaluation"),
        masks=found(root / "segment" / "masks"),
        seg_qc=found(root / "segment" / "qc.json", folder=False),
        agreement=found(root / "agreement"),
        grade_tables=found(root / "grade" / "tables"),
        survival=found(root / "survival" / "analysis"),
        bundle=found(root / "bundle"),
        excluded={stage: p for stage in ("split", "deep3d", "deep2d")
                  if (p := root / stage / "excluded.json").is_file()},
        stage_records=records,
        config=config,
        title=f"gliorad report: {root.resolve().name}",
    )


def input_rows(inputs: ReportInputs) -> list[tuple[str, str]]:
    """``(field, path)`` of every path input, ``(none)`` or ``(absent)`` marked."""
    rows = []
    for f in fields(inputs):
        if f.name in PATH_FIELDS:
            value = getattr(inputs, f.name)
            if value is None:
                rows.append((f.name, "(none)"))
            else:
                state = "" if Path(value).exists() else " (absent)"
                rows.append((f.name, f"{value}{state}"))
    return rows


def switched_off(config: dict[str, Any]) -> list[str]:
    """The parts a run config (``config.yaml`` of a workspace, every preset resolved) turned
    off: a stage section resolved to null, or with ``enabled: false``. Empty for no config."""
    out = []
    for name in ("segmentation", "agreement", "deep3d", "deep2d", "grading", "survival"):
        if name not in config:
            continue
        value = config[name]
        if value is None or value == {} or (isinstance(value, dict) and value.get("enabled") is False):
            out.append(name)
    return out
