"""What every section shares: the :class:`Context` (inputs, figures, cached tables), the
:class:`FigureSet` and the one section template, :class:`SectionTemplate`.

A section is a function ``ctx -> HTML body``; its :class:`SectionTemplate` holds its id, title,
the input it reads and the run-config part whose ``enabled: false`` leaves it out. When that
input is absent the template writes the "<what>: not run in this workspace" line instead of
calling the function.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

import gliorad.report.figures as F
from gliorad.report.files import get, need, present, read_json
from gliorad.report.inputs import ReportInputs
from gliorad.report.markup import esc, not_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gliorad.survival.artifacts import AnalysisFiles

__all__ = ["Context", "FigureFile", "FigureSet", "Section", "SectionTemplate"]


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
    """One built section: its HTML body, and whether its stage ran (else it says so)."""

    id: str
    title: str
    body: str
    ran: bool = True


@dataclass(frozen=True)
class SectionTemplate:
    """How every section is built: an absent input gives the "not run" line, else ``body(ctx)``.

    Attributes
    ----------
    id, title : the section's html id and heading
    body : ``body(ctx) -> str``, the section's HTML
    reads : the :class:`ReportInputs` folder the body reads; absent (None or no such folder):
        the section is "<absent>: not run in this workspace" and marked not run
    absent : what that line names (e.g. "Grading tables")
    stage : the run-config section whose ``enabled: false`` leaves this section out
    ran : for a section that reads several inputs (``reads`` None): whether any is present
    shown : for a section that only some runs have (the model comparison): whether this run
        has it; when not, the section is left out of the report (no "not run" line, no entry
        in the contents), so that other runs' reports stay as they were
    """

    id: str
    title: str
    body: Callable[[Context], str]
    reads: str | None = None
    absent: str = ""
    stage: str | None = None
    ran: Callable[[ReportInputs], bool] | None = None
    shown: Callable[[Context], bool] | None = None

    def included(self, ctx: Context, off: list[str]) -> bool:
        """Whether the report has this section: its stage is not switched off and, for a
        section only some runs have, this run has it."""
        return self.stage not in off and (self.shown is None or self.shown(ctx))

    def build(self, ctx: Context) -> Section:
        if self.reads is not None and not present(getattr(ctx.inputs, self.reads)):
            return Section(self.id, self.title, not_run(self.absent), False)
        ran = True if self.ran is None else self.ran(ctx.inputs)
        return Section(self.id, self.title, self.body(ctx), ran)


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
        from gliorad.config import ClinicalConfig, load_config
        from gliorad.settings import validate

        def make():
            section = self.config().get("clinical")
            if isinstance(section, dict):
                data = {k: v for k, v in section.items() if k != "path"}
                return validate(ClinicalConfig, data, "config", "clinical")
            if self.cohort_yaml() is not None:
                return load_config(self.cohort_yaml()).clinical
            return ClinicalConfig()

        return self._once("clinical_config", make)

    def clinical(self) -> pd.DataFrame:
        from gliorad.clinical import read_clinical

        return self._once("clinical", lambda: read_clinical(self.inputs.clinical,
                                                            self.clinical_config()))

    def cohort(self, root: Path):
        from gliorad.cohort import discover_cohort
        from gliorad.config import CohortConfig, load_config
        from gliorad.settings import validate

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
            return discover_cohort(root, validate(CohortConfig, data, "config", "cohort"))

        return self._once(f"cohort:{root}", make)

    def survival_files(self) -> AnalysisFiles:
        """The file names of the survival analysis folder, as its writer names them."""
        from gliorad.survival.artifacts import AnalysisFiles

        return AnalysisFiles(Path(self.inputs.survival))

    def survival_metrics(self) -> dict[str, Any]:
        path = self.survival_files().metrics
        return self._once("survival_metrics", lambda: read_json(
            need(path, "the survival analysis (write_analysis) metrics")))

    def survival_cohorts(self) -> dict[str, dict[str, Any]]:
        return get(self.survival_metrics(), "cohorts", self.survival_files().metrics)

