"""Build the report: inputs from a workspace, sections, one self-contained HTML file, figures.

``report.html`` holds every figure as a base64 PNG, the CSS inline and a few lines of inline
script (records on ``<body>`` how many images decoded, for the browser test); it links to nothing,
so it opens offline. ``figures/<name>.png`` and ``figures/<name>.svg`` hold each figure (see
:mod:`gliorad.report.sections` for which SVGs are vector re-plots and which wrap the stage's PNG).
Every file is written atomically; ``report.html`` is written last.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.report import sections as S

__all__ = ["SECTIONS", "ReportInputs", "build_report", "inputs_from_workspace"]

#: ``(html id, title)`` of every section, in report order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("cohort", "Cohort"),
    ("segmentation", "Segmentation quality"),
    ("agreement", "Radiomics agreement (ICC)"),
    ("grading", "Grading: Tables S3, 1, 2 and ROC curves"),
    ("signature", "Signature features and weights"),
    ("kaplan-meier", "Kaplan-Meier curves"),
    ("cox", "Cox models: Tables 3 and 4"),
    ("nomograms", "Nomograms"),
    ("c-index", "C-index comparison"),
    ("calibration", "Calibration curves"),
    ("provenance", "Provenance"),
)


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
    agreement : folder written by :func:`gliorad.features.agreement.run_agreement`
    grade_tables : folder written by :func:`gliorad.grading.run.run_tables`
    survival : folder written by :func:`gliorad.survival.analysis.write_analysis`
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
    agreement: Path | None = None
    grade_tables: Path | None = None
    survival: Path | None = None
    bundle: Path | None = None
    excluded: dict[str, Path] = field(default_factory=dict)
    stage_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    title: str = "gliorad report"


PATH_FIELDS = ("cohort_root", "clinical", "truth", "validation", "seg_evaluation", "masks",
               "agreement", "grade_tables", "survival", "bundle")


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
    ``segment/masks``, ``segment/evaluation``, ``agreement``, ``grade/tables``,
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
    found_records = [(S.read_json(rec), rec) for rec in root.glob(f"*/{RECORD}")
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


SECTION_BUILDERS = {
    "cohort": S.cohort_section,
    "segmentation": S.segmentation_section,
    "agreement": S.agreement_section,
    "grading": S.grading_section,
    "signature": S.signature_section,
    "kaplan-meier": S.km_section,
    "cox": S.cox_section,
    "nomograms": S.nomogram_section,
    "c-index": S.cindex_section,
    "calibration": S.calibration_section,
}


#: The run-config section whose ``enabled: false`` leaves a report section out.
SECTION_STAGE = {"segmentation": "segmentation", "agreement": "agreement", "grading": "grading",
                 **{sid: "survival" for sid in ("signature", "kaplan-meier", "cox", "nomograms",
                                                "c-index", "calibration")}}


def build_report(inputs: ReportInputs, out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/*.png|*.svg``; return the HTML path.

    Raises :class:`GlioradInputError` naming the file when an input that is present cannot be
    read; nothing is written then.
    """
    from gliorad.io import write_text

    if not isinstance(inputs, ReportInputs):
        raise GlioradInputError(f"inputs: expected ReportInputs, got {type(inputs).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: exists and is not a folder")
    ctx = S.Context(inputs)
    built: list[S.Section] = []
    off = S.switched_off(inputs.config)
    for sid, title in SECTIONS:
        if SECTION_STAGE.get(sid) in off:  # the run carries only what ran
            continue
        if sid == "provenance":
            section = S.provenance_section(ctx, _input_rows(inputs))
        else:
            section = SECTION_BUILDERS[sid](ctx)
        section.title = title
        built.append(section)
    page = _page(inputs.title, built)
    _write_figures(ctx.figures, out / "figures")
    return write_text(page, out / "report.html")


def _write_figures(figures: S.FigureSet, folder: Path) -> None:
    """Replace ``folder`` as a whole by this report's figures (no stale or half-written set)."""
    import shutil

    from gliorad.io import atomic_dir, write_bytes

    if not figures.files:
        if folder.is_dir():
            shutil.rmtree(folder)
        return
    with atomic_dir(folder) as tmp:
        for fig in figures.files.values():
            write_bytes(fig.png, tmp / f"{fig.name}.png")
            write_bytes(fig.svg, tmp / f"{fig.name}.svg")


def _input_rows(inputs: ReportInputs) -> list[tuple[str, str]]:
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


CSS = """
:root { --fg: #1b1b1b; --muted: #5f6368; --line: #d7dbe0; --accent: #8e1b3b; --bg2: #f5f6f8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; display: flex; }
nav { position: sticky; top: 0; align-self: flex-start; height: 100vh; overflow-y: auto;
      width: 15rem; flex: none; padding: 1.2rem 1rem; background: var(--bg2);
      border-right: 1px solid var(--line); }
nav ol { padding-left: 1.2rem; margin: 0.4rem 0; }
nav a { color: var(--fg); text-decoration: none; } nav a:hover { color: var(--accent); }
nav .off a { color: var(--muted); }
main { padding: 1.2rem 2rem 4rem; max-width: 72rem; min-width: 0; }
h1 { font-size: 1.6rem; margin: 0 0 0.2rem; color: var(--accent); }
h2 { font-size: 1.25rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.2rem;
     border-bottom: 2px solid var(--accent); }
h3 { font-size: 1.02rem; margin: 1.4rem 0 0.4rem; }
section.not-run h2 { color: var(--muted); border-color: var(--line); }
p.not-run { color: var(--muted); font-style: italic; }
.small, .files { font-size: 0.82rem; color: var(--muted); }
.table-wrap { overflow-x: auto; margin: 0.5rem 0 0.8rem; }
table { border-collapse: collapse; font-size: 0.86rem; }
caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
thead th { background: var(--bg2); border-bottom: 2px solid var(--line); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: 600; background: none; white-space: nowrap; }
table.small { font-size: 0.78rem; }
table.s2 td:nth-child(3), table.s2 td:nth-child(4) { white-space: nowrap; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.fig-grid { display: flex; flex-wrap: wrap; gap: 0 1.2rem; align-items: flex-start; }
.fig-grid figure { flex: 1 1 26rem; max-width: 38rem; }
figcaption { font-size: 0.88rem; max-width: 60rem; }
figcaption .files { display: block; }
pre { background: var(--bg2); padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
code { font-size: 0.85rem; }
p.formula code { white-space: normal; word-break: break-word; }
details { margin: 0.5rem 0; } summary { cursor: pointer; color: var(--accent); }
@media print { nav { display: none; } main { max-width: none; } details { display: block; } }
"""

#: Records on <body> how many images there are and how many decoded (read by the browser test).
SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    var img = images[i];
    img.setAttribute("data-natural-width", String(img.naturalWidth));
    if (img.complete && img.naturalWidth > 0) { decoded++; }
  }
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-decoded", String(decoded));
});
"""


def _page(title: str, sections: list[S.Section]) -> str:
    import datetime as _dt

    from gliorad import __version__

    esc = S.esc
    toc = "".join(f'<li class="{"on" if s.ran else "off"}"><a href="#{esc(s.id)}">'
                  f"{esc(s.title)}</a></li>" for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}" class="{"ran" if s.ran else "not-run"}">'
        f"<h2>{esc(s.title)}</h2>{s.body}</section>" for s in sections)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"generator\" content=\"gliorad {esc(__version__)}\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><nav><strong>Contents</strong><ol>{toc}</ol></nav><main>"
        f"<h1>{esc(title)}</h1><p class=\"small\">Generated by gliorad {esc(__version__)} on "
        f"{esc(stamp)}. Automated glioma grading and LGG survival (Xu et al. 2022). Sections "
        "whose stage has not run say so.</p>"
        f"{body}</main><script>{SCRIPT}</script></body></html>\n"
    )
