"""``gliorad dicom scan|patterns``: what gliorad makes of a DICOM export, before any run.

A thin layer over :mod:`gliorad.dicom`. Only typer, the standard library and
:mod:`gliorad.commands._common` are imported at module import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gliorad.commands._common import command_group, exit_on_input_error, fail

app = command_group(
    "dicom", "DICOM studies as PACS exports them: which series is which sequence.")

ConfigOpt = Annotated[Path | None, typer.Option(
    help="YAML with a 'cohort:' section (cohort.dicom patterns, cohort.sequences) and optionally "
         "'preprocess:' (its patterns name series folders; its sequences are the ones wanted). A "
         "run config works.")]


def _settings(config: Path | None, sequences: str | None) -> tuple[Any, list[str], Any]:
    """(DicomConfig, wanted sequences, folder-name matcher) from the YAML file and the option."""
    from gliorad.config import CohortConfig
    from gliorad.errors import GlioradInputError
    from gliorad.preprocess.config import PreprocessConfig
    from gliorad.preprocess.inputs import compile_patterns, match_name
    from gliorad.settings import read_yaml_mapping, validate

    data = read_yaml_mapping(config) if config is not None else {}
    where = str(config) if config is not None else ""
    cohort = validate(CohortConfig, data.get("cohort") or {}, where, "cohort")
    pre = data.get("preprocess") or {}
    seqs = ([s.strip() for s in sequences.split(",") if s.strip()] if sequences
            else list(pre.get("sequences") or cohort.sequences))
    if not seqs:
        raise GlioradInputError("--sequences: expected at least one sequence, e.g. t1,t1ce,t2,flair")
    patterns = {s: list(p) for s, p in (pre.get("patterns") or {}).items()}
    file_cfg = validate(PreprocessConfig, {"sequences": seqs, "reference": seqs[0],
                                           "patterns": patterns}, where, "preprocess")
    compiled = compile_patterns(file_cfg.sequence_patterns())

    def folder_names(name: str) -> list[str]:
        return [s for s, pats in compiled.items() if match_name(name, pats)]

    return cohort.dicom, seqs, folder_names


@app.command("scan")
def scan_cmd(
    study_dir: Annotated[Path, typer.Argument(help="One patient's DICOM export (any layout).")],
    config: ConfigOpt = None,
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated sequences wanted (default: the config's, else t1,t1ce,t2,flair).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List every series of a DICOM study (split by SeriesInstanceUID) with its tags and what
    gliorad makes of it (a sequence, ignored, unrecognised, ambiguous), then the series chosen
    per sequence. Exit 0 when every wanted sequence has exactly one series, else 2 with the
    problems (missing, ambiguous, unreadable files) and the config keys that settle them."""
    from gliorad.dicom import identify_study
    from gliorad.errors import GlioradInputError

    with exit_on_input_error():
        dicom, seqs, folder_names = _settings(config, sequences)
        ident = identify_study(study_dir, dicom, seqs, folder_names)
    if as_json:
        typer.echo(json.dumps(ident.to_dict(), indent=2))
    else:
        typer.echo(ident.table())
    if not ident.ok:
        fail(GlioradInputError(ident.problems))


@app.command("patterns")
def patterns_cmd(config: ConfigOpt = None) -> None:
    """Print the patterns in force (built-in plus the config's cohort.dicom) as YAML."""
    import yaml

    with exit_on_input_error():
        dicom, seqs, _ = _settings(config, None)
    out = {
        "patterns": dicom.sequence_patterns(list(dict.fromkeys(
            ["t1", "t1ce", "t2", "flair", *seqs, *dicom.patterns]))),
        "ignore": dicom.ignore_patterns(),
        "pre_contrast": dicom.pre_contrast_patterns(),
        "ignore_image_types": list(dicom.ignore_image_types),
        "min_slices": dicom.min_slices, "contrast_tag": dicom.contrast_tag,
        "prefer": list(dicom.prefer), "series": dict(dicom.series),
    }
    typer.echo(yaml.safe_dump({"cohort": {"dicom": out}}, sort_keys=False, width=200,
                              allow_unicode=True).rstrip())
