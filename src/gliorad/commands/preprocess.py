"""``gliorad preprocess RAW_DIR OUT_DIR``: raw MRI -> a preprocessed cohort folder.

Registered in :mod:`gliorad.cli` with ``app.command("preprocess")(preprocess_cmd)``; ``app`` here is
a one-command typer app for tests. Only typer, the standard library and
:mod:`gliorad.commands._common` are imported at module level; the library is imported inside the
command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gliorad.commands._common import SchedulerOpt, echo_batch, executor_of, exit_on_input_error

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

STEP_NAMES = ("n4", "coregister", "skull_strip", "resample", "zscore")


def _overrides(
    sequences: str | None, reference: str | None, spacing: float | None,
    transform: str | None, stripper: str | None, skip: str | None,
    pattern: list[str] | None, layout: str | None, threads: int | None,
) -> dict[str, Any]:
    from gliorad.errors import GlioradInputError, check_option

    out: dict[str, Any] = {}
    if sequences:
        out["sequences"] = [s.strip() for s in sequences.split(",") if s.strip()]
    if reference:
        out["reference"] = reference
    if spacing is not None:
        out["spacing"] = spacing
    if transform:
        out["registration"] = {"transform": check_option("--transform", transform,
                                                         ["rigid", "affine"])}
    if stripper:
        out["stripper"] = stripper
    if skip:
        steps = {}
        for name in (s.strip() for s in skip.split(",") if s.strip()):
            steps[check_option("--skip step", name, STEP_NAMES)] = False
        out["steps"] = steps
    if pattern:
        pats: dict[str, list[str]] = {}
        for item in pattern:
            seq, sep, pat = item.partition("=")
            if not sep or not seq.strip() or not pat.strip():
                raise GlioradInputError(
                    f"--pattern {item!r} is not valid; expected SEQUENCE=PATTERN, e.g. "
                    "t1ce='*post*gad*'")
            pats.setdefault(seq.strip(), []).append(pat.strip())
        out["patterns"] = pats
    if layout:
        out["layout"] = check_option("--layout", layout, ["auto", "patient", "cohort", "folders"])
    if threads is not None:
        out["threads"] = threads
    return out


@app.command("preprocess")
def preprocess_cmd(
    raw_dir: Annotated[Path, typer.Argument(
        help="One patient's raw folder (image files, or a DICOM export in any layout), or a "
             "cohort folder (one such folder per patient).")],
    out_dir: Annotated[Path, typer.Argument(help="Output cohort folder (one folder per patient).")],
    config: Annotated[Path | None, typer.Option(
        help="YAML with a 'preprocess:' section (and optionally 'cohort:', e.g. cohort.dicom "
             "patterns for DICOM series; see gliorad dicom scan).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="raw (full pipeline, default) or brats (already stripped/co-registered: z-score "
             "only).")] = None,
    sequences: Annotated[str | None, typer.Option(
        help="Comma-separated sequences, e.g. t1,t1ce,t2,flair.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Sequence the others are registered to (default t1ce).")] = None,
    spacing: Annotated[float | None, typer.Option(
        min=0.1, max=10.0, help="Output voxel size in mm (default 1).")] = None,
    transform: Annotated[str | None, typer.Option(help="rigid (default) or affine.")] = None,
    stripper: Annotated[str | None, typer.Option(
        help="Skull stripper: atlas (default) or nonzero.")] = None,
    skip: Annotated[str | None, typer.Option(
        help="Comma-separated steps to switch off: n4, coregister, skull_strip, resample, "
             "zscore.")] = None,
    pattern: Annotated[list[str] | None, typer.Option(
        help="File-name pattern for a sequence, SEQ=PATTERN (repeatable; replaces that "
             "sequence's defaults), e.g. --pattern 't1ce=*post*gad*'.")] = None,
    layout: Annotated[str | None, typer.Option(
        help="auto, patient, cohort or folders.")] = None,
    patient_id: Annotated[str | None, typer.Option(
        help="Patient id for a single-patient folder (default: the folder name).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="SimpleITK threads.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace patients already in OUT_DIR.")] = False,
    scheduler: SchedulerOpt = None,
) -> None:
    """N4, co-registration to the reference sequence, skull stripping, resampling (1 mm by
    default) and z-score inside the brain, per patient; writes BraTS-named files in the reference
    sequence's space (its physical box, axes reoriented to LPS; not an atlas space), a brain mask,
    qc.json and qc.png."""
    from gliorad.preprocess.config import load_preprocess_config, with_overrides
    from gliorad.preprocess.pipeline import preprocess

    with exit_on_input_error():
        cfg, cohort = load_preprocess_config(config, preset)
        over = _overrides(sequences, reference, spacing, transform, stripper, skip, pattern,
                          layout, threads)
        if over:
            cfg = with_overrides(cfg, **over)
        result = preprocess(raw_dir, out_dir, cfg, cohort, overwrite=overwrite,
                            patient_id=patient_id, echo=typer.echo,
                            executor=executor_of(scheduler))
    echo_batch(result, f"{len(result.done)} done, {len(result.skipped)} skipped, "
                       f"{len(result.failed)} failed -> {result.out_dir}")
