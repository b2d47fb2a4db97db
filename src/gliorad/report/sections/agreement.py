"""Agreement section: radiomics ICC between two mask sources
(``gliorad.features.agreement.run_agreement``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

import gliorad.report.figures as F
from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import get, need, read_csv, read_json
from gliorad.report.markup import esc, html_table, para

__all__ = ["agreement_html"]


def agreement_html(ctx: Context) -> str:
    """ICC summaries (overall and by sequence), the ICC histogram, the lowest-ICC features."""
    folder = Path(ctx.inputs.agreement)
    rec_path = need(folder / "agreement.json",
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
        tables[name] = read_csv(need(folder / f"icc_{name}.csv", f"the ICC table of {name}"),
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
    return "".join(parts)


def _icc_row(name: str, s: Mapping[str, Any]) -> dict[str, Any]:
    frac = s.get("fraction_above")
    return {"Comparison": name, "Features": s.get("n_features"), "Defined": s.get("n_defined"),
            "Min": s.get("min"), "Q1": s.get("q25"), "Median": s.get("median"),
            "Q3": s.get("q75"), "Max": s.get("max"),
            f"> {s.get('threshold', 0.75):g}": (f"{s.get('n_above')} ({frac:.0%})"
                                                 if frac is not None else "")}
