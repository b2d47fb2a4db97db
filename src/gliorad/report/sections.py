"""The report's sections, each built from the files one stage wrote.

A section whose input is absent says so ("not run in this workspace"); a file that is present but
unreadable (bad JSON, a table without its columns, a PNG that is not one) raises
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

import base64
import datetime as _dt
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.report import figures as F

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gliorad.report.build import ReportInputs

NOT_RUN = "not run in this workspace"


# ====================================================================== small HTML helpers
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, float | np.floating) and not math.isfinite(v))
    except TypeError:
        return False


def fmt_num(v: Any, digits: int = 3) -> str:
    if _missing(v):
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    return str(v)


def fmt_p(p: Any) -> str:
    if _missing(p):
        return ""
    p = float(p)
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ci(est: Any, ci: Any, digits: int = 3) -> str:
    if _missing(est):
        return ""
    text = fmt_num(float(est), digits)
    if isinstance(ci, list | tuple) and len(ci) == 2 and not any(_missing(c) for c in ci):
        text += f" ({float(ci[0]):.{digits}f}-{float(ci[1]):.{digits}f})"
    return text


def para(text: str, cls: str = "") -> str:
    return f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{esc(text)}</p>'


def not_run(what: str) -> str:
    return f'<p class="not-run">{esc(what)}: {NOT_RUN}.</p>'


def note_list(notes: Iterable[str], title: str = "Notes") -> str:
    notes = [n for n in notes if n]
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (f'<details class="notes"><summary>{esc(title)} ({len(notes)})</summary>'
            f"<ul>{items}</ul></details>")


def html_table(df: pd.DataFrame, p_cols: Sequence[str] = (), digits: int = 3,
               caption: str | None = None, cls: str = "") -> str:
    """A table of text and numbers (numbers right-aligned; P values as ``< 0.001``)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for col, v in zip(df.columns, rec, strict=True):
            numeric = (isinstance(v, int | float | np.integer | np.floating)
                       and not isinstance(v, bool))
            text = fmt_p(v) if col in p_cols else fmt_num(v, digits) if numeric else (
                "" if _missing(v) else str(v))
            cells.append(f'<td class="num">{esc(text)}</td>' if numeric or col in p_cols
                         else f"<td>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return (f"<div class=\"table-wrap\"><table{klass}>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc('' if _missing(v) else v)}</td></tr>"
                   for k, v in items)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict/list -> ``(dotted key, value text)`` rows (short lists kept on one line)."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        if not obj and prefix:
            out.append((prefix, "{}"))
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        for i, v in enumerate(obj):
            out += flatten(v, f"{prefix}[{i}]")
    elif isinstance(obj, list):
        out.append((prefix, ", ".join(map(str, obj)) if obj else "(none)"))
    else:
        text = "" if obj is None else fmt_num(obj) if isinstance(obj, float) else str(obj)
        out.append((prefix, text))
    return out


# ====================================================================== reading stage files
def need(folder: Path, name: str, what: str) -> Path:
    """``folder/name``, which must exist (the folder is a finished stage's output)."""
    path = Path(folder) / name
    if not path.is_file():
        raise GlioradInputError(f"{path}: not found; expected {what}")
    return path


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise GlioradInputError(f"{path}: not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlioradInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise GlioradInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_csv(path: Path, required: Sequence[str] = (), dtype: Mapping[str, Any] | None = None
             ) -> pd.DataFrame:
    """A CSV table; an empty file is an empty table; missing ``required`` columns raise."""
    try:
        df = pd.read_csv(path, dtype=dict(dtype or {}))
    except FileNotFoundError as err:
        raise GlioradInputError(f"{path}: not found") from err
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise GlioradInputError(f"{path}: cannot parse the table ({err})") from err
    if not df.empty or len(df.columns):
        absent = [c for c in required if c not in df.columns]
        if absent:
            raise GlioradInputError(f"{path}: no column(s) {', '.join(map(repr, absent))}; "
                                    f"columns are {', '.join(map(str, df.columns))}")
    return df


def get(data: Mapping[str, Any], key: str, source: Path,
        kind: type | tuple[type, ...] = dict) -> Any:
    """``data[key]`` of the expected type, else an error naming the file and the key."""
    if key not in data:
        raise GlioradInputError(f"{source}: no {key!r} entry")
    value = data[key]
    if not isinstance(value, kind):
        raise GlioradInputError(f"{source}: {key!r} is a {type(value).__name__}, not a "
                                f"{kind.__name__ if isinstance(kind, type) else 'valid value'}")
    return value


def _slug(text: str) -> str:
    # the naming of gliorad.survival.analysis.write_analysis (km_<cohort>.png, ...)
    from gliorad.survival.analysis import _slug as survival_slug

    return survival_slug(text)


# ====================================================================== figures and context
@dataclass
class FigureFile:
    name: str
    png: bytes
    svg: bytes
    svg_kind: str


class FigureSet:
    """Figures of one report: embedded in the HTML and written as PNG + SVG by the builder."""

    def __init__(self) -> None:
        self.files: dict[str, FigureFile] = {}

    def _unique(self, name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "figure"
        out, k = base, 2
        while out in self.files:
            out, k = f"{base}_{k}", k + 1
        return out

    def add(self, name: str, fig: Figure, caption: str, source: str) -> str:
        """A figure drawn by the report (PNG and vector SVG from the same drawing)."""
        png, svg = F.render(fig)
        return self._store(name, png, svg, f"drawn by the report from {source}", caption)

    def add_png(self, name: str, png_path: Path, caption: str,
                svg_from: Callable[[], Figure] | None = None, svg_source: str = "") -> str:
        """A stage's PNG, embedded as is; its SVG re-plotted by ``svg_from`` or wrapping it."""
        data = Path(png_path).read_bytes()
        F.png_size(data, str(png_path))
        stage_svg = Path(png_path).with_suffix(".svg")
        if stage_svg.is_file():
            svg = stage_svg.read_bytes()
            kind = f"PNG and SVG from the stage ({png_path.name}, {stage_svg.name})"
        elif svg_from is not None:
            svg = F.render(svg_from(), png=False)[1]
            kind = f"PNG from the stage ({png_path.name}); SVG re-plotted from {svg_source}"
        else:
            svg = F.svg_wrapping_png(data, str(png_path))
            kind = (f"PNG from the stage ({png_path.name}); the SVG wraps that PNG (the data "
                    "behind it is not in the stage's files)")
        return self._store(name, data, svg, kind, caption)

    def _store(self, name: str, png: bytes, svg: bytes, kind: str, caption: str) -> str:
        name = self._unique(name)
        self.files[name] = FigureFile(name, png, svg, kind)
        w, h = F.png_size(png, name)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return (f'<figure id="fig-{esc(name)}"><img src="{uri}" alt="{esc(caption)}" '
                f'width="{w}" height="{h}" data-figure="{esc(name)}">'
                f"<figcaption>{esc(caption)}<span class=\"files\">figures/{esc(name)}.png, "
                f"figures/{esc(name)}.svg; {esc(kind)}</span></figcaption></figure>")


@dataclass
class Section:
    id: str
    title: str
    body: str
    ran: bool = True


@dataclass
class Context:
    inputs: ReportInputs
    figures: FigureSet = field(default_factory=FigureSet)
    _cache: dict[str, Any] = field(default_factory=dict)

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def config(self) -> dict[str, Any]:
        return dict(self.inputs.config or {})

    def cohort_yaml(self) -> Path | None:
        root = self.inputs.cohort_root
        p = None if root is None else Path(root) / "cohort.yaml"
        return p if p is not None and p.is_file() else None

    def clinical_config(self):
        from pydantic import ValidationError

        from gliorad.config import ClinicalConfig, load_config

        def make():
            section = self.config().get("clinical")
            if isinstance(section, dict):
                data = {k: v for k, v in section.items() if k != "path"}
                try:
                    return ClinicalConfig.model_validate(data)
                except ValidationError as err:
                    raise GlioradInputError([
                        f"config: clinical.{'.'.join(map(str, e['loc']))}: {e['msg']} "
                        f"(got {e.get('input')!r})" for e in err.errors()]) from err
            if self.cohort_yaml() is not None:
                return load_config(self.cohort_yaml()).clinical
            return ClinicalConfig()

        return self._once("clinical_config", make)

    def clinical(self) -> pd.DataFrame:
        from gliorad.clinical import read_clinical

        return self._once("clinical", lambda: read_clinical(self.inputs.clinical,
                                                            self.clinical_config()))

    def cohort(self, root: Path):
        from pydantic import ValidationError

        from gliorad.cohort import discover_cohort
        from gliorad.config import CohortConfig, load_config

        def make():
            # the folder's own cohort.yaml; else the run config's cohort section when it
            # describes this folder; else BraTS naming detected (e.g. preprocessed images)
            yml = Path(root) / "cohort.yaml"
            section = self.config().get("cohort")
            section = section if isinstance(section, dict) else {}
            own = section.get("root") in (None, "") or (
                Path(str(section["root"])).resolve() == Path(root).resolve())
            if yml.is_file():
                return discover_cohort(root, load_config(yml).cohort)
            data = ({k: v for k, v in section.items() if k != "root"} if own else
                    {k: v for k, v in section.items() if k == "sequences"})
            try:
                cfg = CohortConfig.model_validate(data)
            except ValidationError as err:
                raise GlioradInputError([
                    f"config: cohort.{'.'.join(map(str, e['loc']))}: {e['msg']} "
                    f"(got {e.get('input')!r})" for e in err.errors()]) from err
            return discover_cohort(root, cfg)

        return self._once(f"cohort:{root}", make)

    def survival_metrics(self) -> dict[str, Any]:
        folder = Path(self.inputs.survival)
        return self._once("survival_metrics", lambda: read_json(
            need(folder, "metrics.json", "the survival analysis (write_analysis) metrics")))

    def survival_cohorts(self) -> dict[str, dict[str, Any]]:
        folder = Path(self.inputs.survival)
        return get(self.survival_metrics(), "cohorts", folder / "metrics.json")


def _present(path: Path | None, folder: bool = True) -> bool:
    return path is not None and (Path(path).is_dir() if folder else Path(path).is_file())


# ====================================================================== cohort
LABELS = {"age": "Age (years)", "os_days": "Overall survival (days)", "sex": "Sex",
          "grade": "WHO grade", "grade_group": "Grade group", "histology": "Histology",
          "location": "Location", "laterality": "Laterality", "enhancement": "Contrast enhancement",
          "event": "Status at last follow-up"}
CONTINUOUS = ("age", "os_days")
CATEGORICAL = ("sex", "grade", "grade_group", "histology", "location", "laterality", "enhancement",
               "event")


def table_s2(clin: pd.DataFrame, group_col: str = "centre") -> tuple[str, list[str]]:
    """Table S2 (characteristics by centre) of a canonical clinical table, or a count table with
    a note when the table does not hold exactly two centres."""
    from gliorad.stats import cohort_table

    notes: list[str] = []
    if group_col not in clin.columns or clin[group_col].notna().sum() == 0:
        return (para(f"The clinical table has no {group_col} values: no between-centre table."),
                notes)
    df = clin[clin[group_col].notna()].copy()
    if len(df) < len(clin):
        notes.append(f"{len(clin) - len(df)} patient(s) without a {group_col} left out")
    groups = sorted(df[group_col].astype(str).unique())
    df[group_col] = df[group_col].astype(str)
    if len(groups) != 2:
        counts = df[group_col].value_counts().sort_index()
        return (para(f"Table S2 compares two centres; this table has {len(groups)}.")
                + html_table(pd.DataFrame({"centre": counts.index, "patients": counts.to_numpy()})),
                notes)
    if "event" in df.columns:
        df["event"] = df["event"].map({1: "death", 0: "censored"}).astype(object)
    cont = [c for c in CONTINUOUS if c in df.columns
            and all(df.loc[df[group_col] == g, c].notna().any() for g in groups)]
    cat = [c for c in CATEGORICAL if c in df.columns and df[c].notna().any()]
    for c in CATEGORICAL:
        if c in df.columns:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    df = df.rename(columns=LABELS)
    table = cohort_table(df, group_col, [LABELS[c] for c in cont], [LABELS[c] for c in cat])
    n = df[group_col].value_counts()
    shown = pd.DataFrame({
        "Characteristic": [r.variable if not r.level else f"\u2003{r.level}"
                           for r in table.itertuples()],
        "Statistic": [r.statistic if not r.level else "" for r in table.itertuples()],
        **{f"Centre {g} (n={int(n[g])})": table[g] for g in groups},
        "Missing": [int(v) if not r.level else "" for v, r in
                    zip(table["n_missing"], table.itertuples(), strict=True)],
        "P": table["p"], "Test": table["test"],
    })
    return html_table(shown, p_cols=("P",), cls="s2"), notes


def cohort_section(ctx: Context) -> Section:
    inp = ctx.inputs
    parts: list[str] = []
    ran = False
    if _present(inp.clinical, folder=False):
        ran = True
        clin = ctx.clinical()
        parts.append(para(f"{len(clin)} patients in {Path(inp.clinical).name}"
                          + (f" (cohort folder {inp.cohort_root})." if inp.cohort_root else ".")))
        body, notes = table_s2(clin)
        parts += ["<h3>Table S2. Characteristics by centre (all patients)</h3>", body]
        if "grade_group" in clin.columns and (clin["grade_group"] == "LGG").any():
            lgg = clin[clin["grade_group"] == "LGG"]
            if "centre" in lgg.columns and lgg["centre"].nunique() == 2:
                lgg_body, lgg_notes = table_s2(lgg.drop(columns=["grade_group"]))
                parts += ["<h3>LGG patients (the survival cohorts)</h3>", lgg_body]
                notes += lgg_notes
        parts.append(para("Continuous: median (IQR), Mann-Whitney U test; categorical: n (%), "
                          "chi-square or Fisher's exact test (gliorad.stats.cohort_table).",
                          "small"))
        parts.append(note_list(notes))
    else:
        parts.append(not_run("Clinical table"))
    parts.append(_excluded_html(inp.excluded, inp.config))
    if _present(inp.validation, folder=False):
        ran = True
        v = read_json(Path(inp.validation))
        parts += ["<h3>Validation</h3>", kv_table(flatten(v))]
    if _present(inp.truth, folder=False):
        ran = True
        t = read_json(Path(inp.truth))
        cfg = t.get("config", {}) if isinstance(t.get("config"), dict) else {}
        rows = [("generator", t.get("generator", "")), ("seed", cfg.get("seed", "")),
                ("patients", cfg.get("n_patients", "")),
                ("voxel spacing (mm)", cfg.get("spacing", ""))]
        rows += flatten(t.get("oracle", {}), "oracle")
        parts += ["<h3>Synthetic cohort (ground truth)</h3>",
                  para("The images and the clinical table are synthetic; the oracle values are "
                       "the best a model could reach given the generating model.", "small"),
                  kv_table(rows)]
    return Section("cohort", "Cohort", "".join(parts), ran)


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


def _excluded_html(files: Mapping[str, Path], config: Mapping[str, Any]) -> str:
    """Which parts the run's config switched off, and which patients each analysis left out
    (``excluded.json`` of the split and deep-feature stages), counted and listed."""
    out = []
    off = switched_off(dict(config or {}))
    if off:
        out.append(para(f"Switched off in this run's config: {', '.join(off)}; their sections are "
                        "left out of this report."))
    rows = []
    why = {"grading": "no grade in the clinical table",
           "survival": "no survival time or event in the clinical table"}
    for stage, path in sorted((files or {}).items()):
        data = read_json(Path(path))
        if stage == "split":
            for analysis in ("grading", "survival"):
                recs = data.get(analysis) or []
                if recs:
                    rows.append({"Left out of": analysis, "Patients": len(recs), "Why": why[analysis],
                                 "Who": _id_list(r.get("patient_id") for r in recs)})
            missing = data.get("not_in_clinical_table") or []
            if missing:
                rows.append({"Left out of": "every analysis", "Patients": len(missing),
                             "Why": "images without a row in the clinical table",
                             "Who": _id_list(missing)})
        else:
            empty = data.get("empty_automatic_mask") or []
            if empty:
                rows.append({"Left out of": f"{stage} (and what uses its features)",
                             "Patients": len(empty), "Why": "the automatic mask is empty",
                             "Who": _id_list(empty)})
    if rows:
        out += ["<h3>Patients left out of an analysis</h3>", html_table(pd.DataFrame(rows)),
                para("clinical.missing: exclude leaves a patient without the values an analysis "
                     "needs out of that analysis only; clinical.missing: error refuses the table "
                     "instead.", "small")]
    return "".join(out)


def _id_list(ids: Iterable[Any], limit: int = 20) -> str:
    ids = [str(i) for i in ids]
    return ", ".join(ids[:limit]) + (f" ... (+{len(ids) - limit})" if len(ids) > limit else "")


# ====================================================================== segmentation
def _summary_rows(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for region, s in summary.items():
        if not isinstance(s, dict) or "dice" not in s:
            continue
        d, h = s.get("dice") or {}, s.get("hd95_mm") or {}
        rows.append({
            "Region": region, "n": d.get("n"),
            "Dice mean (95% CI)": fmt_ci(d.get("mean"), [d.get("ci95_low"), d.get("ci95_high")]),
            "Dice median": d.get("median"), "Dice SD": d.get("sd"), "Dice min": d.get("min"),
            "Dice max": d.get("max"), "HD95 mean (mm)": h.get("mean"),
            "HD95 median (mm)": h.get("median"),
            "HD95 undefined": (s.get("hd95_undefined") or {}).get("n"),
        })
    return pd.DataFrame(rows)


def _overlays(ctx: Context, ev: dict[str, Any], ev_path: Path, rows: pd.DataFrame) -> str:
    from gliorad.segmentation import mask_path

    inp = ctx.inputs
    region = "WT" if (rows["region"] == "WT").any() else str(rows["region"].iloc[0])
    scored = rows[(rows["region"] == region) & rows["dice"].notna()].sort_values(
        ["dice", "patient_id"], kind="stable")
    if scored.empty:
        return para("No Dice value to pick example cases from.")
    # the evaluation records the cohort and the mask folder it compared
    root = inp.cohort_root or ev.get("cohort")
    masks = inp.masks or ev.get("mask_dir")
    root = Path(root) if root else None
    masks = Path(masks) if masks else None
    if root is None or not root.is_dir():
        return para(f"Example overlays need the cohort images; cohort folder {root} not found.")
    if masks is None or not masks.is_dir():
        return para(f"Example overlays need the predicted masks; mask folder {masks} not found.")
    cohort = ctx.cohort(root)
    n = len(scored)
    picks: list[tuple[str, int]] = []
    for label, i in (("best", n - 1), ("median", (n - 1) // 2), ("worst", 0)):
        if all(i != j for _, j in picks):
            picks.append((label, i))
    cases = []
    for label, i in picks:
        row = scored.iloc[i]
        pid = str(row["patient_id"])
        if pid not in cohort.patients:
            raise GlioradInputError(f"{ev_path}: patient {pid} is not in the cohort {root}")
        patient = cohort.patients[pid]
        if patient.seg is None:
            raise GlioradInputError(f"{root}: patient {pid} has no manual segmentation")
        seq = "t1ce" if "t1ce" in patient.files else next(
            (s for s in cohort.sequences if s in patient.files), None)
        if seq is None:
            raise GlioradInputError(f"{root}: patient {pid} has no image of {cohort.sequences}")
        auto = mask_path(masks, pid)
        if not auto.is_file():
            raise GlioradInputError(f"{auto}: predicted mask not found (listed in {ev_path.name})")
        image, man, aut, aspect = F.tumour_slice(cohort.image_path(pid, seq), patient.seg, auto)
        cases.append(F.OverlayCase(label, pid, float(row["dice"]), seq, image, man, aut, aspect))
    picked = "; ".join(f"{c.label} {c.patient_id} (Dice {c.dice:.3f})" for c in cases)
    caption = (f"Best, median and worst {region} Dice ({picked}): axial slice with the largest "
               "manual tumour area; manual mask green, automatic mask red (radiological view: "
               "the patient's right on the left).")
    return ctx.figures.add("segmentation_overlays", F.overlay_figure(cases), caption,
                           "the cohort images, the manual masks and the predicted masks")


def segmentation_section(ctx: Context) -> Section:
    folder = ctx.inputs.seg_evaluation
    title = "Segmentation quality"
    if not _present(folder):
        return Section("segmentation", title, not_run("Segmentation evaluation"), False)
    folder = Path(folder)
    ev_path = need(folder, "evaluation.json", "the output of gliorad.segmentation.evaluate_masks")
    ev = read_json(ev_path)
    summary = get(ev, "summary", ev_path)
    rows = read_csv(need(folder, "evaluation.csv", "per-patient Dice (evaluate_masks)"),
                    required=("patient_id", "region", "dice"), dtype={"patient_id": str})
    if rows.empty:
        raise GlioradInputError(f"{folder / 'evaluation.csv'}: no rows")
    parts = [para(f"{summary.get('n_patients', rows['patient_id'].nunique())} patients with a "
                  f"manual and an automatic mask; label mode {summary.get('label_mode', 'wt')}. "
                  "Dice of the automatic vs the manual mask; mean with a percentile-bootstrap "
                  "95% CI."),
             html_table(_summary_rows(summary), caption="Dice and HD95 by region")]
    notes = []
    if summary.get("patients_without_mask"):
        notes.append("patients with a manual mask but no prediction: "
                     + ", ".join(map(str, summary["patients_without_mask"])))
    if summary.get("masks_without_manual_segmentation"):
        notes.append("predicted masks without a manual mask: "
                     + ", ".join(map(str, summary["masks_without_manual_segmentation"])))
    parts.append(note_list(notes))
    parts.append("<h3>Examples</h3>")
    parts.append(_overlays(ctx, ev, ev_path, rows))
    cols = [c for c in ("patient_id", "region", "dice", "hd95_mm", "pred_ml", "truth_ml", "note")
            if c in rows.columns]
    per = rows[cols].sort_values(["region", "dice"], ascending=[True, False], kind="stable")
    per = per.rename(columns={"patient_id": "Patient", "region": "Region", "dice": "Dice",
                              "hd95_mm": "HD95 (mm)", "pred_ml": "Automatic (ml)",
                              "truth_ml": "Manual (ml)", "note": "Note"})
    parts.append(f"<details><summary>Per patient ({len(per)} rows)</summary>"
                 f"{html_table(per)}</details>")
    return Section("segmentation", title, "".join(parts))


# ====================================================================== agreement (ICC)
def agreement_section(ctx: Context) -> Section:
    folder = ctx.inputs.agreement
    title = "Radiomics agreement (ICC)"
    if not _present(folder):
        return Section("agreement", title, not_run("Feature agreement"), False)
    folder = Path(folder)
    rec_path = need(folder, "agreement.json",
                    "the output of gliorad.features.agreement.run_agreement")
    record = read_json(rec_path)
    summary = get(record, "summary", rec_path)
    settings = record.get("settings", {}) if isinstance(record.get("settings"), dict) else {}
    threshold = float(settings.get("threshold", 0.75))
    rows, seq_rows, tables = [], [], {}
    for name, s in summary.items():
        if not isinstance(s, dict):
            raise GlioradInputError(f"{rec_path}: summary {name!r} is not an object")
        rows.append(_icc_row(name, s))
        for seq, ss in (s.get("by_sequence") or {}).items():
            seq_rows.append(_icc_row(f"{name}: {seq}", ss))
        tables[name] = read_csv(need(folder, f"icc_{name}.csv", f"the ICC table of {name}"),
                                required=("feature", "icc"))
    parts = [para(f"{settings.get('kind', 'ICC')} per radiomics feature between the feature "
                  f"tables of the two mask sources; reliable: ICC "
                  f"{'lower 95% limit' if settings.get('reliable_by') == 'ci_low' else 'estimate'}"
                  f" > {threshold:g} in every comparison ({record.get('n_reliable', '?')} "
                  "features)."),
             html_table(pd.DataFrame(rows), caption="ICC summary")]
    if seq_rows:
        parts.append(html_table(pd.DataFrame(seq_rows), caption="ICC summary by sequence"))
    caption = "Distribution of the per-feature ICC; dashed line: the reliability threshold."
    png = folder / "icc_histogram.png"
    if png.is_file():
        parts.append(ctx.figures.add_png(
            "icc_histogram", png, caption,
            lambda: F.icc_histogram_figure(tables, threshold),
            ", ".join(f"icc_{n}.csv" for n in tables)))
    else:
        parts.append(ctx.figures.add("icc_histogram", F.icc_histogram_figure(tables, threshold),
                                     caption, ", ".join(f"icc_{n}.csv" for n in tables)))
    first, table = next(iter(tables.items()))
    low = table.assign(icc=pd.to_numeric(table["icc"], errors="coerce")).sort_values(
        "icc", kind="stable").head(10)
    cols = [c for c in ("feature", "icc", "ci_low", "ci_high", "note") if c in low.columns]
    parts.append(f"<details><summary>Lowest ICC ({esc(first)})</summary>"
                 f"{html_table(low[cols])}</details>")
    return Section("agreement", title, "".join(parts))


def _icc_row(name: str, s: Mapping[str, Any]) -> dict[str, Any]:
    frac = s.get("fraction_above")
    return {"Comparison": name, "Features": s.get("n_features"), "Defined": s.get("n_defined"),
            "Min": s.get("min"), "Q1": s.get("q25"), "Median": s.get("median"),
            "Q3": s.get("q75"), "Max": s.get("max"),
            f"> {s.get('threshold', 0.75):g}": (f"{s.get('n_above')} ({frac:.0%})"
                                                 if frac is not None else "")}


# ====================================================================== grading
GRADING_TABLES = (("table_s3", "Table S3. Grading with the radiomics of each sequence"),
                  ("table_1", "Table 1. Grading with fused CNN + radiomics features"),
                  ("table_2", "Table 2. Grading with the CNN alone"))


def grading_section(ctx: Context) -> Section:
    folder = ctx.inputs.grade_tables
    title = "Grading (HGG vs LGG): Tables S3, 1, 2 and ROC curves"
    if not _present(folder):
        return Section("grading", title, not_run("Grading tables"), False)
    folder = Path(folder)
    scheme = None
    if (folder / "provenance.json").is_file():
        prov = read_json(folder / "provenance.json")
        settings = prov.get("settings")
        scheme = settings.get("scheme") if isinstance(settings, dict) else None
    what = {"cv": "repeated stratified cross-validation (out-of-fold predictions of repeat 1)",
            "split": "the test part of a stratified train/validation/test split"}.get(
        scheme or "", "the stage's evaluation scheme")
    parts = [para(f"HGG is the positive class; AUC with DeLong 95% CI; metrics on {what}.")]
    shown = ["Methods", "AUC (95% CI)", "Accuracy", "Sensitivity", "Precision", "Specificity"]
    for key, caption in GRADING_TABLES:
        path = need(folder, f"{key}.csv", "the output of gliorad.grading.run.run_tables")
        df = read_csv(path)
        parts.append(f"<h3>{esc(caption)}</h3>")
        if df.empty:
            parts.append(para("No feature set of this kind was given to the stage."))
            continue
        absent = [c for c in ("Methods", "AUC (95% CI)", "set") if c not in df.columns]
        if absent:
            raise GlioradInputError(f"{path}: no column(s) {', '.join(map(repr, absent))}")
        if "n_pos" in df.columns and "n_neg" in df.columns:
            parts.append(para(f"{int(df['n_pos'].iloc[0])} HGG, {int(df['n_neg'].iloc[0])} LGG "
                              "patients evaluated.", "small"))
        parts.append(html_table(df[[c for c in shown if c in df.columns]]))
        curves = {}
        for method, name in zip(df["Methods"], df["set"], strict=True):
            pred_path = need(folder / "predictions", f"{name}.csv", f"the predictions of {name}")
            pred = read_csv(pred_path, required=("label", "probability"))
            curves[str(method)] = (pred["label"].to_numpy(int), pred["probability"].to_numpy(float))
        parts.append(ctx.figures.add(f"roc_{key}", F.roc_figure(curves, caption.split(". ")[0]),
                                     f"ROC curves, {caption.split('. ')[0]}.",
                                     "predictions/<set>.csv"))
    notes_path = folder / "notes.json"
    if notes_path.is_file():
        notes = read_json(notes_path).get("notes") or []
        if notes:
            parts += ["<h3>How the fused and stacked rows were built</h3>", "<ul>",
                      *(f"<li>{esc(str(n))}</li>" for n in notes), "</ul>"]
            if any(str(n).startswith("stacked_") for n in notes):
                parts.append(para(
                    "Stacked rows (not in the paper): the radiomics model's out-of-fold scores "
                    "and the 3D CNN's out-of-sample scores (cross-fitted networks for the CNN's "
                    "own training patients) combined by a logistic regression. The fused rows "
                    "concatenate the CNN's deep features as the paper does; on the patients the "
                    "CNN was trained on those features are in-sample.", "small"))
    comp_path = folder / "comparisons.csv"
    if comp_path.is_file():
        comp = read_csv(comp_path)
        if not comp.empty:
            cols = [c for c in ("comparison", "model_a", "model_b", "auc_a", "auc_b", "diff",
                                "ci_low", "ci_high", "p") if c in comp.columns]
            parts += ["<h3>Paired DeLong comparisons (same patients)</h3>",
                      html_table(comp[cols], p_cols=("p",))]
    return Section("grading", title, "".join(parts))


# ====================================================================== survival sections
def _survival_missing(ctx: Context, sid: str, title: str) -> Section | None:
    if not _present(ctx.inputs.survival):
        return Section(sid, title, not_run("Survival analysis"), False)
    return None


#: How the survival metrics.json names the metrics whose reasons a section lists.
_NULL_LABELS = {
    "logrank_p": "log-rank test", "c_index_signature": "C-index of the signature",
    "hr_signature_univariate": "hazard ratio of the signature groups (univariate)",
    "hr_signature": "hazard ratio of the signature groups",
    "c_index_integrated": "C-index of the integrated model",
    "c_index_clinical": "C-index of the clinical model", "compare_p": "paired C-index comparison",
    "table_integrated": "Table 3 column (integrated model refit)",
    "table_clinical": "Table 4 column (clinical model refit)",
}


def _null_reasons(ctx: Context, keys: Sequence[str] | None = None, prefix: str = "") -> list[str]:
    """``cohort X: <metric> not computed: <why>`` for the null metrics of every cohort (the
    ``null_reasons`` of the survival metrics.json); ``keys`` or a key ``prefix`` select them."""
    out = []
    for name, c in ctx.survival_cohorts().items():
        for key, why in (c.get("null_reasons") or {}).items():
            if (keys is not None and key in keys) or (prefix and key.startswith(prefix)):
                label = _NULL_LABELS.get(key, key.replace("calibration.", "calibration "))
                out.append(f"cohort {name}: {label} not computed: {why}")
    return out


def _reasons_html(lines: Sequence[str], title: str = "Not computed") -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{esc(x)}</li>" for x in lines)
    return f'<p class="small"><b>{esc(title)}</b></p><ul class="small">{items}</ul>'


_RULES = {
    "paper": ("the paper's rule: univariate P < {p}, then multivariable P < {p}, refitted with the "
              "factors kept"),
    "prespecified": ("pre-specified: every usable candidate factor{sig}, no P-value selection "
                     "(factors with one level or that cannot be estimated are left out, with a "
                     "warning)"),
}


def _model_lines(metrics: Mapping[str, Any]) -> list[str]:
    """One sentence per Cox model: its factor rule, its factors, and why it is absent or equals
    the other model (``metrics["models"]``; older metrics.json files lack it)."""
    models = metrics.get("models") or {}
    out = []
    for which in ("integrated", "clinical"):
        info = models.get(which)
        if not info:
            continue
        rule = _RULES.get(info.get("rule"), str(info.get("rule")))
        rule = rule.format(p=f"{info.get('p_threshold', 0.05):g}",
                           sig=" plus the signature" if which == "integrated" else "")
        factors = ", ".join(map(str, info.get("factors") or [])) or "none"
        text = f"{which.capitalize()} model: {rule}. Factors: {factors}."
        if not info.get("fitted"):
            text += f" No model: {info.get('reason')}."
        elif info.get("same_as_clinical"):
            text += f" It is the clinical model ({info.get('reason')})."
        elif info.get("reason"):
            text += f" {info.get('reason')[:1].upper()}{info.get('reason')[1:]}."
        out.append(text)
    return out


def signature_section(ctx: Context) -> Section:
    title = "Deep-radiomics signature: features and weights"
    if (s := _survival_missing(ctx, "signature", title)) is not None:
        return s
    folder = Path(ctx.inputs.survival)
    metrics = ctx.survival_metrics()
    sig = get(metrics, "signature", folder / "metrics.json")
    formula = read_csv(need(folder, "signature_formula.csv", "the signature (write_analysis)"),
                       required=("feature", "weight"))
    rows = [("training cohort", metrics.get("training", "")),
            ("sequence", sig.get("sequence") or "(none chosen)"),
            ("features", len(formula)), ("non-zero weights", int((formula["weight"] != 0).sum())),
            ("cut-off", (f"{fmt_num(sig.get('cutoff'), 4)} ({sig.get('cutoff_method', '')}); "
                        "high risk: signature > cut-off"))]
    parts = [f'<p class="formula"><code>{esc(sig.get("formula", ""))}</code></p>',
             para("z(f) = (f - centre) / scale with the training cohort's centre and scale.",
                  "small"),
             kv_table(rows)]
    cols = [c for c in ("rank", "feature", "weight", "raw_weight", "center", "scale")
            if c in formula.columns]
    parts.append(html_table(formula[cols], digits=4))
    if len(formula):
        parts.append(ctx.figures.add("signature_weights", F.signature_weights_figure(formula),
                                     "Signature weights per standard deviation of each feature.",
                                     "signature_formula.csv"))
    if sig.get("constant"):
        parts.insert(0, para(f"The signature is constant (every weight is 0): "
                             f"{sig.get('constant_reason')}. It is left out of the Cox models; its "
                             "C-index, hazard ratio and log-rank test are not computed."))
    seq_path = folder / "sequence_choice.csv"
    choice = metrics.get("sequence_choice") or {}
    if seq_path.is_file():
        seq = read_csv(seq_path)
        if not seq.empty:
            parts += ["<h3>Sequence choice</h3>",
                      para("Prognosis (median-OS) model per sequence on the training cohort; the "
                           "best AUC chooses the radiomics that join the deep features.", "small"),
                      html_table(seq)]
            if choice.get("fallback"):
                parts.append(para(f"Fallback: {choice['fallback']}."))
    return Section("signature", title, "".join(parts))


def km_section(ctx: Context) -> Section:
    title = "Kaplan-Meier curves by signature risk group"
    if (s := _survival_missing(ctx, "kaplan-meier", title)) is not None:
        return s
    folder = Path(ctx.inputs.survival)
    parts = []
    for name, c in ctx.survival_cohorts().items():
        png = folder / f"km_{_slug(name)}.png"
        if not png.is_file():
            parts.append(para(f"Cohort {name}: no Kaplan-Meier figure (no survival data)."))
            continue
        hr = c.get("hr_signature") or {}
        why_no_lr = (c.get("null_reasons") or {}).get("logrank_p")
        caption = (f"Cohort {name} ({c.get('role', '')}): {c.get('n_analysed', '?')} patients, "
                   f"{c.get('n_events', '?')} events; high risk {c.get('n_high', '?')}, low risk "
                   f"{c.get('n_low', '?')}; log-rank P {fmt_p(c.get('logrank_p')) or 'n/a'}"
                   + (f" ({why_no_lr})" if why_no_lr and _missing(c.get("logrank_p")) else "")
                   + (f"; HR high vs low {fmt_ci(hr.get('hr'), hr.get('ci'), 2)}"
                      f" ({c.get('hr_signature_model', '')})" if hr else "") + ".")
        parts.append(ctx.figures.add_png(f"km_{name}", png, caption))
    if not parts:
        parts.append(para("The survival analysis lists no cohort."))
    return Section("kaplan-meier", title, f'<div class="fig-grid">{"".join(parts)}</div>')


def cox_section(ctx: Context) -> Section:
    title = "Cox models: Table 3 (integrated) and Table 4 (clinical)"
    if (s := _survival_missing(ctx, "cox", title)) is not None:
        return s
    folder = Path(ctx.inputs.survival)
    metrics = ctx.survival_metrics()
    lines = _model_lines(metrics)
    if lines:
        parts = [para(x) for x in lines]
        parts.append(para("Factors chosen on the training cohort; validation columns refit the same "
                          "factors in that cohort.", "small"))
    else:  # a metrics.json written before the factor rule was a setting
        parts = [para("Factors chosen on the training cohort by the paper's rule (univariate P < "
                      "0.05, then multivariable P < 0.05, refitted); validation columns refit the "
                      "same factors in that cohort.")]
    tables = (("table3_integrated", "Table 3. Integrated model (clinical factors + signature)",
               "integrated"),
              ("table4_clinical", "Table 4. Clinical model", "clinical"))
    for key, caption, which in tables:
        factors = metrics.get(f"{which}_factors") or []
        parts.append(f"<h3>{esc(caption)}</h3>")
        parts.append(para(f"Factors: {', '.join(map(str, factors)) or '(none selected)'}.",
                          "small"))
        path = folder / f"{key}.csv"
        info = (metrics.get("models") or {}).get(which) or {}
        if path.is_file():
            parts.append(html_table(read_csv(path)))
        elif info.get("reason"):
            parts.append(para(f"No table: {info['reason']}."))
        else:
            parts.append(para("No table: no factor was selected or the model is not estimable."))
    uni = folder / "table_univariate.csv"
    if uni.is_file():
        t = read_csv(uni, required=("label", "hr", "ci_lower", "ci_upper", "p_value"))
        shown = pd.DataFrame({"Characteristic": t["label"],
                              "HR (95% CI)": [
                                  fmt_ci(h, [lo, hi], 2) for h, lo, hi in
                                  zip(t["hr"], t["ci_lower"], t["ci_upper"], strict=True)],
                              "P": t["p_value"]})
        parts.append(f"<details><summary>Univariate screen, training cohort ({len(t)} rows)"
                     f"</summary>{html_table(shown, p_cols=('P',))}</details>")
    parts.append(_reasons_html(_null_reasons(ctx, ("table_integrated", "table_clinical"))))
    parts.append(note_list(metrics.get("warnings") or [], "Warnings"))
    return Section("cox", title, "".join(parts))


def nomogram_section(ctx: Context) -> Section:
    title = "Nomograms"
    if (s := _survival_missing(ctx, "nomograms", title)) is not None:
        return s
    folder = Path(ctx.inputs.survival)
    metrics = ctx.survival_metrics()
    times = ", ".join(f"{t:g}" for t in metrics.get("times_days") or [])
    parts = []
    for which in ("integrated", "clinical"):
        png = folder / f"nomogram_{which}.png"
        factors = ", ".join(map(str, metrics.get(f"{which}_factors") or [])) or "(none)"
        info = (metrics.get("models") or {}).get(which) or {}
        if png.is_file():
            same = (" It is the clinical model's nomogram." if info.get("same_as_clinical") else "")
            parts.append(ctx.figures.add_png(
                f"nomogram_{which}", png,
                f"Nomogram of the {which} model (factors: {factors}); survival at {times} days."
                + same))
        else:
            why = info.get("reason") or f"the {which} model has no factor"
            parts.append(para(f"No {which} nomogram: {why}."))
    return Section("nomograms", title, "".join(parts))


def cindex_section(ctx: Context) -> Section:
    title = "C-index: integrated vs clinical model"
    if (s := _survival_missing(ctx, "c-index", title)) is not None:
        return s
    rows, fig_rows = [], []
    for name, c in ctx.survival_cohorts().items():
        sig = c.get("c_index_signature") or {}
        rows.append({
            "Cohort": name, "Role": c.get("role", ""), "Patients": c.get("n_analysed"),
            "Events": c.get("n_events"),
            "C integrated (95% CI)": fmt_ci(c.get("c_index_integrated"),
                                            c.get("c_index_integrated_ci")),
            "C clinical (95% CI)": fmt_ci(c.get("c_index_clinical"), c.get("c_index_clinical_ci")),
            "Difference (95% CI)": fmt_ci(c.get("compare_diff"), c.get("compare_diff_ci")),
            "Paired P": c.get("compare_p"),
            "C signature (95% CI)": fmt_ci(sig.get("c_index"), sig.get("ci")),
        })
        fig_rows.append({"cohort": name, "integrated": c.get("c_index_integrated"),
                         "integrated_ci": c.get("c_index_integrated_ci"),
                         "clinical": c.get("c_index_clinical"),
                         "clinical_ci": c.get("c_index_clinical_ci"), "p": c.get("compare_p")})
    if not rows:
        return Section("c-index", title, para("The survival analysis lists no cohort."))
    parts = [para("Harrell's C with infinitesimal-jackknife 95% CIs; the paired P compares the "
                  "two models' C on the same patients."),
             html_table(pd.DataFrame(rows), p_cols=("Paired P",))]
    integrated = (ctx.survival_metrics().get("models") or {}).get("integrated") or {}
    if integrated.get("same_as_clinical"):
        parts.append(para(f"The integrated model is the clinical model ({integrated.get('reason')}): "
                          "their C-indices are equal and not compared."))
    parts.append(_reasons_html(_null_reasons(
        ctx, ("c_index_signature", "c_index_integrated", "c_index_clinical", "compare_p"))))
    if any(r["integrated"] is not None or r["clinical"] is not None for r in fig_rows):
        parts.append(ctx.figures.add("c_index", F.cindex_figure(fig_rows),
                                     "C-index of the integrated and the clinical model per cohort.",
                                     "the survival metrics.json"))
    return Section("c-index", title, "".join(parts))


def calibration_section(ctx: Context) -> Section:
    title = "Calibration curves"
    if (s := _survival_missing(ctx, "calibration", title)) is not None:
        return s
    from gliorad.survival.analysis import time_label

    folder = Path(ctx.inputs.survival)
    csv_path = folder / "calibration.csv"
    table = (read_csv(csv_path, required=("model", "cohort", "t_days", "predicted", "observed"),
                      dtype={"cohort": str}) if csv_path.is_file() else None)
    intro = para("Training cohort: bootstrap-corrected calibration of the fitted model; "
                 "validation cohorts: the training model's predictions against Kaplan-Meier, "
                 "without refitting.")
    parts: list[str] = []
    for name, c in ctx.survival_cohorts().items():
        cal = c.get("calibration") or {}
        for key, entry in cal.items():
            if entry is None:  # not computed; the reason is in null_reasons
                continue
            which = key.split("/")[0]
            t = float(entry.get("t_days", key.split("/")[-1]))
            png = folder / f"calibration_{which}_{_slug(name)}_{t:g}d.png"
            if not png.is_file():
                raise GlioradInputError(f"{png}: not found; metrics.json lists calibration {key!r} "
                                        f"of cohort {name}")
            label = f"{time_label(t)} survival"
            boot = f"; {entry['n_boot']} bootstrap resamples" if entry.get("n_boot") else ""
            caption = (f"{which.capitalize()} nomogram, cohort {name}: {label}; mean absolute "
                       f"error {fmt_num(entry.get('mean_abs_error'))}{boot}.")
            svg_from = None
            if table is not None:
                sub = table[(table["model"] == which) & (table["cohort"] == str(name))
                            & np.isclose(table["t_days"].astype(float), t)]
                if not sub.empty:
                    svg_from = _calibration_plot(sub, t, int(entry.get("n_boot") or 0), which,
                                                 name, label)
            parts.append(ctx.figures.add_png(f"calibration_{which}_{name}_{t:g}d", png, caption,
                                             svg_from, "calibration.csv"))
    reasons = _reasons_html(_null_reasons(ctx, prefix="calibration."))
    if not parts:
        return Section("calibration", title, intro + para(
            "No calibration curve was computed (calibration times beyond the follow-up, no model, "
            "or calibration disabled).") + reasons)
    return Section("calibration", title,
                   intro + f'<div class="fig-grid">{"".join(parts)}</div>' + reasons)


def _calibration_plot(sub: pd.DataFrame, t: float, n_boot: int, which: str, name: str,
                      label: str) -> Callable[[], Figure]:
    def make() -> Figure:
        from gliorad.survival.calibration import CalibrationResult
        from gliorad.survival.plots import plot_calibration

        tab = sub.drop(columns=["model", "cohort", "t_days"]).reset_index(drop=True)
        res = CalibrationResult(tab, t, np.array([]), np.array([]), n_boot)
        fig = plot_calibration(res, xlabel=f"Nomogram-predicted {label}",
                               ylabel=f"Observed {label} (Kaplan-Meier)")
        fig.axes[0].set_title(f"{which} nomogram, {name}", fontsize=9)
        return fig

    return make


# ====================================================================== provenance
def _versions_text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return "" if v is None else str(v)


def provenance_section(ctx: Context, input_rows: Sequence[tuple[str, str]]) -> Section:
    import yaml

    from gliorad import __version__

    inp = ctx.inputs
    parts = [kv_table([("report generated (UTC)",
                        _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
                       ("gliorad", __version__)]),
             "<h3>Inputs</h3>", kv_table(input_rows)]
    records = dict(inp.stage_records or {})
    parts.append("<h3>Stages</h3>")
    if records:
        rows = []
        for name, r in records.items():
            if not isinstance(r, dict):
                raise GlioradInputError(f"stage record {name!r} is not a JSON object")
            fp = str(r.get("fingerprint", ""))
            rows.append({"Stage": name, "Description": r.get("description", ""),
                         "Fingerprint": fp[:16], "Started": r.get("started", ""),
                         "Seconds": r.get("seconds"),
                         "Outputs hash": str(r.get("outputs_hash", ""))[:16],
                         "Versions": _versions_text(r.get("versions"))})
        parts.append(html_table(pd.DataFrame(rows), digits=1, cls="small"))
        parts.append(para("Fingerprints and output hashes are SHA-256 prefixes; the full records "
                          "are the stages' _stage.json files.", "small"))
        settings = "".join(
            f"<details><summary>{esc(n)}: settings</summary><pre>"
            f"{esc(json.dumps(r.get('settings', {}), indent=2, sort_keys=True, default=str))}"
            "</pre></details>" for n, r in records.items())
        parts.append(settings)
    else:
        parts.append(not_run("Stage records (_stage.json)"))
    parts.append("<h3>Configuration</h3>")
    if inp.config:
        text = yaml.safe_dump(json.loads(json.dumps(inp.config, default=str)), sort_keys=False)
        parts.append(f"<pre class=\"config\">{esc(text)}</pre>")
    else:
        parts.append(not_run("Run configuration (config.yaml)"))
    extra = []
    for label, path in (("grading tables", inp.grade_tables), ("survival analysis", inp.survival)):
        if _present(path) and (Path(path) / "provenance.json").is_file():
            prov = read_json(Path(path) / "provenance.json")
            extra.append((f"{label}: fingerprint", str(prov.get("fingerprint", ""))[:16]))
            extra.append((f"{label}: created", prov.get("created_utc", "")))
            if prov.get("versions"):
                extra.append((f"{label}: versions", _versions_text(prov.get("versions"))))
    if _present(inp.seg_evaluation) and (Path(inp.seg_evaluation) / "evaluation.json").is_file():
        ev = read_json(Path(inp.seg_evaluation) / "evaluation.json")
        extra.append(("segmentation evaluation: versions", _versions_text(ev.get("versions"))))
    if _present(inp.agreement) and (Path(inp.agreement) / "agreement.json").is_file():
        rec = read_json(Path(inp.agreement) / "agreement.json")
        extra.append(("agreement: created", rec.get("created_utc", "")))
        extra.append(("agreement: gliorad", rec.get("gliorad", "")))
    if extra:
        parts += ["<h3>Stage provenance files</h3>", kv_table(extra)]
    parts.append("<h3>Model bundle</h3>")
    parts.append(_bundle(inp.bundle))
    return Section("provenance", "Provenance", "".join(parts))


def _bundle(folder: Path | None) -> str:
    if not _present(folder):
        return not_run("Model bundle")
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        data = read_json(manifest)
        files = data.get("files")
        head = kv_table([(k, v) for k, v in data.items() if not isinstance(v, dict | list)])
        head += "".join(
            f"<details><summary>{esc(k)}</summary><pre>"
            f"{esc(json.dumps(v, indent=2, sort_keys=True, default=str))}</pre></details>"
            for k, v in data.items() if isinstance(v, dict | list) and k != "files")
        if isinstance(files, dict):
            rows = [{"File": k,
                     "SHA-256": (v.get("sha256", "") if isinstance(v, dict) else str(v))[:16]}
                    for k, v in files.items()]
            return head + html_table(pd.DataFrame(rows), cls="small")
        if isinstance(files, list):
            rows = [{"File": f.get("path", f.get("name", "")) if isinstance(f, dict) else str(f),
                     "SHA-256": str(f.get("sha256", ""))[:16] if isinstance(f, dict) else ""}
                    for f in files]
            return head + html_table(pd.DataFrame(rows), cls="small")
        return head
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return para(f"{folder}: no manifest.json; files: {', '.join(names) or '(none)'}.")
