"""``gliorad import slices SRC_DIR OUT_DIR``: slice-stack sets -> a BraTS 2018 cohort folder.

Thin layer over :mod:`gliorad.slices` (imported inside the command). Exit 2 lists each problem on
its own ``error:`` line, after the patients that were fine have been written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gliorad.commands._common import command_group, echo_batch, exit_on_input_error
from gliorad.errors import GlioradInputError

app = command_group("import", "Bring other data layouts into a cohort folder gliorad reads.")


def _floats(value: str, name: str) -> list[float]:
    parts = [v.strip() for v in value.replace("x", ",").split(",") if v.strip()]
    try:
        out = [float(v) for v in parts]
    except ValueError as err:
        raise GlioradInputError(f"{name} {value!r}: expected three numbers x,y,z in mm, e.g. "
                                "1,1,5") from err
    if len(out) != 3 or not all(v > 0 for v in out):
        raise GlioradInputError(f"{name} {value!r}: expected three positive numbers x,y,z in mm, "
                                "e.g. 1,1,5")
    return out


@app.command()
def slices(
    src_dir: Annotated[Path, typer.Argument(
        help="Folder of patient folders of 2D slices (<id>_<n>.tif, masks <id>_<n>_mask.tif), or "
             "one such patient folder.")],
    out_dir: Annotated[Path, typer.Argument(help="Cohort folder to write (BraTS 2018 naming).")],
    spacing: Annotated[str, typer.Option(
        help="Voxel size x,y,z in mm. The slices do not record it: the default (1,1,5) is an "
             "assumption; give the acquisition's where known.")] = "1,1,5",
    channels: Annotated[str, typer.Option(
        help="Sequence of each slice channel, in order (TCGA-LGG slice set: t1,flair,t1ce).")
    ] = "t1,flair,t1ce",
    label: Annotated[int, typer.Option(
        help="Label of the mask's non-zero pixels in <id>_seg.nii.gz (set cohort.seg_labels "
             "to [0, LABEL]).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace patients already in OUT_DIR.")] = False,
) -> None:
    """Stack each patient's slices (slice-number order) into NIfTI volumes <id>_t1, _flair,
    _t1ce (per --channels) and <id>_seg from the masks; a channel that is a copy of FLAIR on every
    slice (a missing sequence's stand-in) is not written. Assumed spacing and orientation are
    recorded in <id>_import.json."""
    from gliorad.slices import import_slices

    with exit_on_input_error():
        res = import_slices(src_dir, out_dir, spacing=_floats(spacing, "--spacing"),
                            channels=[c for c in channels.split(",") if c.strip()], label=label,
                            overwrite=overwrite, echo=typer.echo)
    echo_batch(res, f"{len(res.done)} imported, {len(res.skipped)} skipped (already there; "
               f"--overwrite replaces), {len(res.failed)} failed -> {out_dir}")
