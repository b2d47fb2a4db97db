"""The data stages: the synthetic cohort, validation, preprocessing and the split."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError
from gliorad.io import write_json, write_text
from gliorad.pipeline import StageContext
from gliorad.provenance import digest
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import CohortFiles, PreprocessFiles, SplitFiles, ValidateFiles
from gliorad.stages.base import RunStage, clinical_path, executor, load_cohort, source_stage

__all__ = ["CohortStage", "PreprocessStage", "SplitStage", "ValidateStage",
           "canonical_clinical_csv", "input_listing"]


def input_listing(root: Path, extra: list[Path]) -> list[dict[str, Any]]:
    """Every file under ``root`` plus ``extra``: path, size and modification time."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) + [p for p in extra if p.is_file()]
    out = []
    for p in files:
        st = p.stat()
        out.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def canonical_clinical_csv(table) -> str:
    """The canonical clinical table as CSV readable with the default ClinicalConfig (days)."""
    df = table.drop(columns=["_row"], errors="ignore").copy()
    df["grade"] = df["grade"].where(df["grade"].notna(), df["grade_group"])
    df = df.drop(columns=["grade_group"]).rename(columns={"os_days": "os_time"})
    df.index.name = "patient_id"
    return df.to_csv(float_format="%.10g")


class CohortStage(RunStage):
    """(``synthetic:`` configs only) the generated two-centre cohort."""

    name = "cohort"
    description = "synthetic two-centre cohort"
    section = "synthetic"

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"synthetic": cfg.synthetic.model_dump(mode="json")}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.synthetic import generate_cohort

        out = CohortFiles(ctx.out_dir).cohort
        generate_cohort(out, cfg.synthetic, n_jobs=cfg.run.n_jobs, overwrite=True)


class ValidateStage(RunStage):
    """Checks the cohort and the clinical table; writes the canonical clinical table and a
    listing of the input files (sizes, modification times), so that a changed input file reruns
    what depends on it."""

    name = "validate"
    description = "check the cohort and the clinical table"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return ("cohort",) if cfg.synthetic else ()

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        listed = None
        if cfg.synthetic is None:  # a changed, added or removed input file reruns validate
            listing = input_listing(Path(cfg.cohort.root), [Path(cfg.clinical.path)])
            listed = digest(listing)
        return {"cohort": cfg.cohort.model_dump(mode="json"),
                "clinical": cfg.clinical.model_dump(mode="json"), "input_files": listed}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.clinical import read_clinical
        from gliorad.config import GlioradConfig, load_config
        from gliorad.validation import validate as run_validate

        out = ValidateFiles(ctx.out_dir)
        if cfg.synthetic is not None:
            root = CohortFiles.of(ctx).cohort
            gcfg = load_config(root / "cohort.yaml")
            clin_path, clin_cfg = gcfg.clinical.path, gcfg.clinical
        else:
            root = Path(cfg.cohort.root)
            gcfg = GlioradConfig(cohort=cfg.cohort, clinical=cfg.clinical)
            clin_path, clin_cfg = cfg.clinical.path, cfg.clinical
            write_json({"files": input_listing(root, [Path(clin_path)])}, out.inputs)
        report = run_validate(root, clin_path, gcfg, n_jobs=cfg.run.n_jobs,
                              executor=executor(cfg))
        if not report.ok:
            raise GlioradInputError(report.problems)
        table = read_clinical(clin_path, clin_cfg)
        write_text(canonical_clinical_csv(table), out.clinical)
        write_json({"ok": True, "summary": report.summary()}, out.validation)


class PreprocessStage(RunStage):
    """(``preprocess.enabled``) N4, registration, skull strip, resampling."""

    name = "preprocess"
    description = "N4, registration, skull strip, resampling"
    section = "preprocess"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return ("validate",)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"preprocess": cfg.preprocess.model_dump(mode="json")}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        from gliorad.preprocess.pipeline import preprocess as run_preprocess

        # per-patient results are kept in the resumable work folder, then moved in place
        res = run_preprocess(cfg.cohort.root, ctx.work_dir / "cohort", cfg.preprocess, cfg.cohort,
                             executor=executor(cfg))
        if res.failed:
            raise GlioradInputError([f"preprocess: {f}" for f in res.failed])
        shutil.move(str(ctx.work_dir / "cohort"), PreprocessFiles(ctx.out_dir).cohort)


def base_inputs(cfg: RunConfig) -> tuple[str, ...]:
    """The image source and the validated clinical table: what every later stage reads."""
    return tuple(dict.fromkeys((source_stage(cfg), "validate")))


def _usable(cfg: RunConfig, table, fields: tuple[str, ...], analysis: str, source: str,
            excluded: dict[str, list[dict[str, Any]]]):
    """The patients with ``fields``; the others recorded in ``excluded[analysis]``."""
    from gliorad.clinical import drop_missing

    records: list[dict[str, Any]] = []
    kept = drop_missing(table, fields, source, cfg.clinical.missing, records)
    # row numbers of the canonical table would mislead: the patient id names the row
    excluded[analysis] = [{"patient_id": r["patient_id"], "missing": r["missing"]}
                          for r in records]
    return kept


def grading_parts(ctx: StageContext, cfg: RunConfig, table, source: str,
                  excluded: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Each graded patient's part of the grading split (train / val / test); patients without
    a grade recorded in ``excluded["grading"]``."""
    from gliorad.grading.evaluate import split_positions
    from gliorad.tables import parse_grade_labels

    if cfg.grading is None:
        return {}
    graded = _usable(cfg, table, ("grade",), "grading", source, excluded)
    y = parse_grade_labels(graded["grade_group"], source=f"{source} grade").y
    try:
        train, val, test = split_positions(y, cfg.grading)
    except GlioradInputError as err:
        if cfg.grading_scheme == "split":
            raise
        # scheme cv grades by cross-validation; the split only keeps the networks from the
        # test part, and a cohort too small for it trains them on every graded patient
        # (the grade stage warns that CNN rows under scheme cv are optimistic anyway)
        train, val, test = range(len(y)), [], []
        ctx.log.warning("grading split: %s; scheme cv: every graded patient is in the "
                        "training part of the networks", " ".join(err.problems))
    return {graded.index[i]: name
            for name, pos in (("train", train), ("val", val), ("test", test)) for i in pos}


def survival_cohorts(cfg: RunConfig, table, source: str,
                     excluded: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Each patient's survival cohort; patients without survival time or event recorded in
    ``excluded["survival"]``."""
    from gliorad.survival import split_cohorts

    if cfg.survival is None:
        return {}
    timed = _usable(cfg, table, ("os_time", "event"), "survival", source, excluded)
    cohorts, _roles, _ = split_cohorts(timed, cfg.survival.split, cfg.survival.seed)
    return {p: str(name) for name, members in cohorts.items() for p in members.map(str)}


class SplitStage(RunStage):
    """``split.csv``: each patient's grading part (train / val / test; empty when grading is off
    or the patient has no grade) and survival cohort (empty when survival is off or the patient
    lacks survival time or event); ``split.json`` counts them; ``excluded.json`` lists who is
    left out of which analysis and why (``clinical.missing: exclude``)."""

    name = "split"
    description = "grading split (6:2:2) and survival cohorts"

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        return base_inputs(cfg)

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {"ratios": list(cfg.grading.split_ratios) if cfg.grading else None,
                "seed": cfg.grading.seed if cfg.grading else cfg.run.seed,
                "survival_split": (cfg.survival.split.model_dump(mode="json")
                                   if cfg.survival else None),
                **({} if cfg.clinical.missing == "exclude" else {"missing": cfg.clinical.missing}),
                # scheme cv may fall back to an all-training split; a random survival split
                # draws with the survival seed
                **({"scheme": "cv"} if cfg.grading and cfg.grading_scheme == "cv" else {}),
                **({"survival_seed": cfg.survival.seed} if cfg.survival
                   and cfg.survival.split.method == "random" else {})}

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        import pandas as pd

        from gliorad.clinical import read_clinical

        cohort = load_cohort(ctx, cfg)
        table = read_clinical(clinical_path(ctx))  # one read: grades and survival cohorts
        table.index = table.index.map(str)
        in_cohort = set(cohort.ids)
        ids = [p for p in table.index if p in in_cohort]
        missing = sorted(in_cohort - set(ids))
        excluded: dict[str, list[dict[str, Any]]] = {}
        source = clinical_path(ctx).name
        part = grading_parts(ctx, cfg, table.loc[ids], source, excluded)
        surv = survival_cohorts(cfg, table.loc[ids], source, excluded)
        df = pd.DataFrame({
            "patient_id": ids,
            "grade_group": table.loc[ids, "grade_group"].to_numpy(),
            "grade_split": [part.get(p, "") for p in ids],
            "survival_cohort": [surv.get(p, "") for p in ids],
        })
        out = SplitFiles(ctx.out_dir)
        write_text(df.to_csv(index=False), out.table)
        for analysis, records in excluded.items():
            if records:
                ctx.log.warning("%s: %d patient(s) left out (no %s): %s", analysis, len(records),
                                " / ".join(records[0]["missing"]),
                                ", ".join(r["patient_id"] for r in records[:10]))
        parts = ("train", "val", "test")
        write_json({"grading": ({k: int((df["grade_split"] == k).sum()) for k in parts}
                                if cfg.grading is not None else None),
                    "survival": ({k: int(v) for k, v in df["survival_cohort"].value_counts().items()
                                  if k} if cfg.survival is not None else None),
                    "excluded": {k: len(v) for k, v in excluded.items()},
                    "not_in_clinical_table": missing}, out.summary)
        write_json({"policy": cfg.clinical.missing, "not_in_clinical_table": missing, **excluded},
                   out.excluded)
