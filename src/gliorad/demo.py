"""The demo (``make demo``, ``gliorad demo``): ``gliorad run demo`` on a generated cohort.

The packaged ``demo`` run preset (``gliorad config show demo``) generates a synthetic two-centre
cohort and runs every stage of :mod:`gliorad.workflow` at settings sized for 2 CPU cores:
segmentation network, radiomics from manual and automatic masks, ICC agreement, 3D and 2D CNN
deep features, the grading tables, the LGG survival analysis (train centre B, validate on A), the
model bundle and the HTML report. Rerunning skips finished stages; a killed run resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gliorad.workflow import run_workflow, summary_lines


def demo_overrides(n_patients: int | None = None, seed: int | None = None,
                   n_jobs: int | None = None, spacing: float | None = None) -> dict:
    """Command-line changes to the demo preset (None keeps the preset's value)."""
    synth = {k: v for k, v in {"n_patients": n_patients, "spacing": spacing, "seed": seed}.items()
             if v is not None}
    run = {k: v for k, v in {"seed": seed, "n_jobs": n_jobs}.items() if v is not None}
    return {k: v for k, v in {"synthetic": synth, "run": run}.items() if v}


def run_demo(
    workspace: str | Path,
    n_patients: int | None = None,
    seed: int | None = None,
    n_jobs: int | None = None,
    spacing: float | None = None,
    echo: Callable[[str], None] = print,
    force: tuple[str, ...] = (),
    from_stage: str | None = None,
    until: str | None = None,
) -> Path:
    """Run the demo into ``workspace``, print the headline results and where the report is."""
    ws = Path(workspace)
    results = run_workflow("demo", ws, overrides=demo_overrides(n_patients, seed, n_jobs, spacing),
                           force=force, from_stage=from_stage, until=until, echo=echo)
    for line in summary_lines(ws):
        echo(line)
    if results and results[-1].name != "report":
        echo(f"stopped after stage {results[-1].name!r}; outputs in {ws}/")
    else:
        echo(f"outputs in {ws}/ (one folder per stage; pipeline.log); open {ws / 'report' / 'report.html'}")
    return ws
