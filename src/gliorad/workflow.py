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

__all__ = ["build_stages", "honest_cnn_scores", "mask_check_lines", "run_workflow",
           "segmentation_ids", "summary_lines", "tumour_masks"]


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
    return [*lines, *mask_check_lines(ws)]


def mask_check_lines(ws: Path, limit: int = 20) -> list[str]:
    """Warnings about the automatic masks that failed the segment stage's checks
    (``segment/qc.json``): how many, which were replaced by the manual mask and which patients
    were left out of what reads the automatic masks. Empty when every mask passed."""
    files = SegmentFiles.of(ws)
    qc = _load(files.qc_summary) or {}
    flagged = qc.get("flagged") or []
    if not flagged:
        return []
    counts = ", ".join(f"{n} {f}" for f, n in (qc.get("counts") or {}).items() if f != "ok" and n)

    def who(rows: list[dict[str, Any]]) -> str:
        names = [f"{r['patient_id']} ({r['flag']})" for r in rows]
        return ", ".join(names[:limit]) + (f" ... (+{len(names) - limit})"
                                          if len(names) > limit else "")

    head = (f"warning: segmentation: {len(flagged)} of {qc.get('n_masks')} automatic mask(s) "
            f"failed the checks ({counts}; {qc.get('rule')}); see {files.qc_table}")
    lines = [head]
    replaced = [r for r in flagged if r.get("action") == "replaced_by_manual"]
    excluded = [r for r in flagged if r.get("action") == "excluded"]
    if replaced:
        lines.append(f"warning: segmentation: replaced by the manual mask ({len(replaced)}): "
                     f"{who(replaced)}")
    if excluded:
        lines.append(f"warning: segmentation: excluded from what reads the automatic masks "
                     f"(radiomics, CNNs, grading, survival) ({len(excluded)}): {who(excluded)}")
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
