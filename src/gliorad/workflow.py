"""``gliorad run``: the whole pipeline of Xu et al. 2022 as a stage graph over a workspace.

The stages are :mod:`gliorad.stages` (one class each; the table of what each does is there); the
pipeline (:mod:`gliorad.pipeline`) skips a stage whose settings and inputs are unchanged, writes
it atomically and resumes it after a kill. This module runs a config's stages in a workspace and
prints the headline results. The workspace layout is in docs/architecture.md ("Workspace").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gliorad.io import write_text
from gliorad.pipeline import StageResult, run_pipeline
from gliorad.run_config import RunConfig, load_run_config
from gliorad.stages import (
    AgreementFiles,
    BundleFiles,
    GradeFiles,
    ReportFiles,
    SegmentFiles,
    SurvivalFiles,
    build_stages,
    honest_cnn_scores,
    segmentation_ids,
    tumour_masks,
)

__all__ = ["build_stages", "honest_cnn_scores", "run_workflow", "segmentation_ids",
           "summary_lines", "tumour_masks"]


def run_workflow(
    config: str | Path | RunConfig,
    workspace: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    from_stage: str | None = None,
    force: tuple[str, ...] = (),
    until: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> list[StageResult]:
    """Run (or resume) the pipeline of ``config`` in ``workspace``."""
    import yaml

    from gliorad.run_config import check_run_inputs

    cfg = config if isinstance(config, RunConfig) else load_run_config(config, overrides)
    for note in (*cfg.notes, *check_run_inputs(cfg)):  # before any stage: fail in seconds
        if echo:
            echo(f"note: {note}")
    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False), ws / "config.yaml")
    return run_pipeline(build_stages(cfg), ws, from_stage=from_stage, force=force, until=until,
                        echo=echo)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def summary_lines(workspace: str | Path) -> list[str]:
    """The headline results of a workspace, for the console (missing stages are left out)."""
    ws = Path(workspace)
    lines = [*_segmentation_lines(ws), *_grading_lines(ws), *_survival_lines(ws)]
    report = ReportFiles.of(ws).html
    if report.is_file():
        lines.append(f"report: {report}")
    bundle = BundleFiles.of(ws).bundle
    if bundle.is_dir():
        lines.append(f"model bundle: {bundle} (gliorad predict PATIENT_DIR --bundle ...)")
    return lines


def _segmentation_lines(ws: Path) -> list[str]:
    lines = []
    ev = _load(SegmentFiles.of(ws).evaluation / "evaluation.json")
    wt = (ev or {}).get("summary", ev or {}).get("WT") if ev else None
    if wt and isinstance(wt.get("dice"), dict) and wt["dice"].get("mean") is not None:
        d = wt["dice"]
        lines.append(f"segmentation: whole-tumour Dice {d['mean']:.3f} "
                     f"(median {d.get('median', float('nan')):.3f})")
    agr = _load(AgreementFiles.of(ws).summary)
    for pair, summ in ((agr or {}).get("summary") or {}).items():
        if isinstance(summ, dict) and summ.get("fraction_above") is not None:
            lines.append(f"agreement ({pair.replace('_', ' ')}): ICC median {summ['median']:.3f}, "
                         f"{summ['fraction_above']:.0%} of {summ['n_defined']} features above "
                         f"{summ['threshold']}")
    return lines


def _grading_lines(ws: Path) -> list[str]:
    grade = GradeFiles.of(ws)
    gm = _load(grade.metrics)
    if not gm:
        return []
    lines = []
    for prefix, what in (("fused_", "fused"), ("stacked_", "stacked"),
                         ("radiomics_", "best radiomics sequence")):
        best = max(((k, v) for k, v in gm.items() if k.startswith(prefix)),
                   key=lambda kv: kv[1]["auc"], default=None)
        if best:
            k, v = best
            lines.append(f"grading ({what}, {k}): test AUC {v['auc']:.3f} "
                         f"(95% CI {v['auc_ci_low']:.3f}-{v['auc_ci_high']:.3f})")
    if grade.table_2.is_file() and grade.table_2.stat().st_size > 1:  # empty without CNN rows
        import pandas as pd

        for _, r in pd.read_csv(grade.table_2).iterrows():
            lines.append(f"grading (CNN alone, {r['Methods']}): test AUC {r['AUC (95% CI)']}")
    return lines


def _survival_lines(ws: Path) -> list[str]:
    sm = _load(SurvivalFiles.of(ws).metrics) or {}
    lines = []
    for which in ("integrated", "clinical"):
        info = (sm.get("models") or {}).get(which) or {}
        if info.get("same_as_clinical") or info.get("fitted") is False:
            lines.append(f"survival: {which} model: {info.get('reason') or 'not fitted'}")
    for name, m in (sm.get("cohorts") or {}).items():
        why = m.get("null_reasons") or {}

        def c(key: str, m: dict = m, why: dict = why) -> str:
            v = m.get(key)
            v = v.get("c_index") if isinstance(v, dict) else v  # the signature's: {c_index, ci}
            return f"{v:.3f}" if v is not None else f"n/a ({why.get(key, 'not computed')})"

        p = m.get("compare_p")
        lines.append(f"survival, cohort {name}: C-index integrated {c('c_index_integrated')} vs "
                     f"clinical {c('c_index_clinical')}; signature {c('c_index_signature')}"
                     + (f"; paired P {p:.3g}" if p is not None else ""))
    return lines
