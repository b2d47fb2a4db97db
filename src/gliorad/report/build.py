"""Build the report: the sections of :mod:`gliorad.report.sections`, one self-contained HTML
file, the figures.

``report.html`` holds every figure as a base64 PNG, the CSS inline and a few lines of inline
script (records on ``<body>`` how many images decoded, for the browser test); it links to nothing,
so it opens offline. ``figures/<name>.png`` and ``figures/<name>.svg`` hold each figure (see
:mod:`gliorad.report.sections` for which SVGs are vector re-plots and which wrap the stage's PNG).
Every file is written atomically; ``report.html`` is written last.

Modules: :mod:`~gliorad.report.inputs` (what the report reads), :mod:`~gliorad.report.files`
(reading a stage's files), :mod:`~gliorad.report.markup` (HTML fragments),
:mod:`~gliorad.report.context` (context, figures, the section template),
:mod:`~gliorad.report.sections` (one module per topic), :mod:`~gliorad.report.figures` (drawing).
"""

from __future__ import annotations

from pathlib import Path

from gliorad.errors import GlioradInputError
from gliorad.report.context import Context, FigureSet, Section
from gliorad.report.inputs import ReportInputs, inputs_from_workspace, switched_off
from gliorad.report.markup import esc
from gliorad.report.sections import SECTIONS, TEMPLATES

__all__ = ["SECTIONS", "ReportInputs", "build_report", "inputs_from_workspace"]


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
    ctx = Context(inputs)
    off = switched_off(inputs.config)
    # the run carries only what ran
    built = [t.build(ctx) for t in TEMPLATES if t.included(ctx, off)]
    page = _page(inputs.title, built)
    _write_figures(ctx.figures, out / "figures")
    return write_text(page, out / "report.html")


def _write_figures(figures: FigureSet, folder: Path) -> None:
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


def _page(title: str, sections: list[Section]) -> str:
    import datetime as _dt

    from gliorad import __version__

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
