"""HTML fragments of the report: escaping, number formats, paragraphs, tables.

The report is built by joining these escaped fragments (no template engine): every value goes
through :func:`esc`, numbers through :func:`fmt_num` / :func:`fmt_p` / :func:`fmt_ci`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NOT_RUN", "esc", "flatten", "fmt_ci", "fmt_num", "fmt_p", "html_table", "is_missing",
           "kv_table", "not_run", "note_list", "para"]

NOT_RUN = "not run in this workspace"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def is_missing(v: Any) -> bool:
    """None, pd.NA, NaN or an infinity: shown as an empty cell."""
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, float | np.floating) and not math.isfinite(v))
    except TypeError:
        return False


def fmt_num(v: Any, digits: int = 3) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    return str(v)


def fmt_p(p: Any) -> str:
    if is_missing(p):
        return ""
    p = float(p)
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ci(est: Any, ci: Any, digits: int = 3) -> str:
    if is_missing(est):
        return ""
    text = fmt_num(float(est), digits)
    if isinstance(ci, list | tuple) and len(ci) == 2 and not any(is_missing(c) for c in ci):
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
                "" if is_missing(v) else str(v))
            cells.append(f'<td class="num">{esc(text)}</td>' if numeric or col in p_cols
                         else f"<td>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return (f"<div class=\"table-wrap\"><table{klass}>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc('' if is_missing(v) else v)}</td></tr>"
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
