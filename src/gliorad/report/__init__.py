"""The HTML report of a workspace: one self-contained file with every table and figure.

:func:`build_report` writes ``report.html`` (figures embedded as base64 PNG, CSS inline, no
external URL, so it opens offline) and every figure as PNG and SVG under ``figures/``.
:func:`inputs_from_workspace` finds the inputs in a ``gliorad run`` / ``gliorad demo`` workspace.
"""

from gliorad.report.build import SECTIONS, ReportInputs, build_report, inputs_from_workspace

__all__ = ["SECTIONS", "ReportInputs", "build_report", "inputs_from_workspace"]
