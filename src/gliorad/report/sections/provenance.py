"""Provenance section: what made this report (versions, inputs, stage records, config, bundle).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.errors import GlioradInputError
from gliorad.report.context import Context
from gliorad.report.files import present, read_json
from gliorad.report.inputs import input_rows
from gliorad.report.markup import esc, html_table, kv_table, not_run, para

__all__ = ["provenance_html"]


def _versions_text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return "" if v is None else str(v)


def provenance_html(ctx: Context) -> str:
    """Versions, inputs, stage records and settings, the run config, stage provenance files,
    the model bundle."""
    import yaml

    from gliorad import __version__

    inp = ctx.inputs
    parts = [kv_table([("report generated (UTC)",
                        _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
                       ("gliorad", __version__)]),
             "<h3>Inputs</h3>", kv_table(input_rows(inp))]
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
        if present(path) and (Path(path) / "provenance.json").is_file():
            prov = read_json(Path(path) / "provenance.json")
            extra.append((f"{label}: fingerprint", str(prov.get("fingerprint", ""))[:16]))
            extra.append((f"{label}: created", prov.get("created_utc", "")))
            if prov.get("versions"):
                extra.append((f"{label}: versions", _versions_text(prov.get("versions"))))
    if present(inp.seg_evaluation) and (Path(inp.seg_evaluation) / "evaluation.json").is_file():
        ev = read_json(Path(inp.seg_evaluation) / "evaluation.json")
        extra.append(("segmentation evaluation: versions", _versions_text(ev.get("versions"))))
    if present(inp.agreement) and (Path(inp.agreement) / "agreement.json").is_file():
        rec = read_json(Path(inp.agreement) / "agreement.json")
        extra.append(("agreement: created", rec.get("created_utc", "")))
        extra.append(("agreement: gliorad", rec.get("gliorad", "")))
    if extra:
        parts += ["<h3>Stage provenance files</h3>", kv_table(extra)]
    parts.append("<h3>Model bundle</h3>")
    parts.append(_bundle(inp.bundle))
    return "".join(parts)


def _bundle(folder: Path | None) -> str:
    if not present(folder):
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
