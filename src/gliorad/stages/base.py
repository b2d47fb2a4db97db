"""What every stage of ``gliorad run`` shares: the stage class and access to the cohort.

A stage is a :class:`RunStage`: a name, a description, whether a run config enables it, which
earlier stages it reads (``inputs``), the settings that determine its result (its fingerprint,
with the upstream outputs' hashes: :mod:`gliorad.pipeline`) and ``run(ctx, cfg)``, which writes
its files (:mod:`gliorad.stages.artifacts`) into ``ctx.out_dir``. :meth:`RunStage.bind` turns it
into the :class:`gliorad.pipeline.Stage` the pipeline runs, skips and resumes.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from gliorad.pipeline import Stage, StageContext
from gliorad.run_config import RunConfig
from gliorad.stages.artifacts import (
    CohortFiles,
    PreprocessFiles,
    SplitFiles,
    ValidateFiles,
)

__all__ = [
    "RunStage",
    "clinical_path",
    "cohort_config",
    "cohort_root",
    "copy_tree",
    "executor",
    "ids_of",
    "load_cohort",
    "mask_source",
    "progress",
    "read_split",
    "source_stage",
    "strict",
    "survival_training_name",
    "tumour_masks",
]


class RunStage:
    """One stage of a run (see the module docstring); subclasses set ``name``,
    ``description`` and override what differs."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: The run-config section that switches the stage on (set: enabled; None / {}: off).
    section: ClassVar[str | None] = None

    def enabled(self, cfg: RunConfig) -> bool:
        return self.section is None or bool(getattr(cfg, self.section))

    def inputs(self, cfg: RunConfig, before: Sequence[str]) -> tuple[str, ...]:
        """The earlier stages this one reads (``before``: the names of the stages before it)."""
        return ()

    def settings(self, cfg: RunConfig) -> dict[str, Any]:
        return {}

    def describe(self, cfg: RunConfig) -> str:
        return self.description

    def run(self, ctx: StageContext, cfg: RunConfig) -> None:
        raise NotImplementedError

    def bind(self, cfg: RunConfig, before: Sequence[str]) -> Stage:
        return Stage(self.name, partial(self.run, cfg=cfg), inputs=self.inputs(cfg, before),
                     settings=self.settings(cfg), description=self.describe(cfg))


# --------------------------------------------------------------------------- settings
def strict(cfg: RunConfig) -> dict[str, str]:
    """The feature-table setting of the stages that read tables: part of their fingerprints
    only when it is not the default, so workspaces made before the option keep theirs."""
    return {} if cfg.run.nonfinite == "missing" else {"nonfinite": cfg.run.nonfinite}


def executor(cfg: RunConfig):
    """Where the per-case work of a cohort stage runs (``run.executor``, ``run.scheduler``):
    None for this machine, else a :class:`gliorad.executor.Executor` of a Dask cluster. The
    results do not depend on it, so it is no part of a stage's fingerprint."""
    from gliorad.executor import Executor

    return Executor.of(cfg.run)


def mask_source(cfg: RunConfig) -> str:
    """``auto`` (the U-Net's masks) with segmentation, else ``manual``."""
    return "auto" if cfg.segmentation is not None else "manual"


def progress() -> bool:
    """Progress bars on a terminal; plain stage lines in logs and CI."""
    return sys.stderr.isatty()


def survival_training_name(cfg: RunConfig) -> str | None:
    """The ``survival_cohort`` value of the survival training patients in ``split.csv``."""
    if cfg.survival is None:
        return None
    sp = cfg.survival.split
    return str(sp.train) if sp.method == "column" else "training"


# ------------------------------------------------------------------------------ cohort
def source_stage(cfg: RunConfig) -> str:
    """The stage whose folder holds the images every later stage reads."""
    if cfg.preprocess is not None:
        return "preprocess"
    return "cohort" if cfg.synthetic is not None else "validate"


def cohort_root(ctx: StageContext, cfg: RunConfig) -> Path:
    src = source_stage(cfg)
    if src == "validate":
        ctx.input_dir("validate")  # declared
        return Path(cfg.cohort.root)
    files = PreprocessFiles if src == "preprocess" else CohortFiles
    return files.of(ctx).cohort


def cohort_config(cfg: RunConfig, root: Path):
    """The CohortConfig of the images: the synthetic cohort's own, BraTS 2018 names after
    preprocessing, else the run config's."""
    from gliorad.config import load_config

    if cfg.preprocess is not None:
        return cfg.cohort.model_copy(update={"root": root, "naming": "brats2018", "mapping": {}})
    if cfg.synthetic is not None:
        return load_config(root / "cohort.yaml").cohort.model_copy(update={"root": root})
    return cfg.cohort


def load_cohort(ctx: StageContext, cfg: RunConfig):
    from gliorad.cohort import discover_cohort

    root = cohort_root(ctx, cfg)
    return discover_cohort(root, cohort_config(cfg, root))


def clinical_path(ctx: StageContext) -> Path:
    """The canonical clinical table written by the validate stage."""
    return ValidateFiles.of(ctx).clinical


def read_split(ctx: StageContext):
    return SplitFiles.of(ctx).read()


def ids_of(split, column: str, *values: str) -> list[str]:
    """The patients of ``split`` whose ``column`` is one of ``values``."""
    return split.loc[split[column].isin(values), "patient_id"].astype(str).tolist()


def tumour_masks(mask_dir: Path, ids: list[str]) -> tuple[list[str], list[str]]:
    """Patients whose automatic mask has a tumour, and those whose mask is empty (the network
    missed the tumour: their deep features cannot be cut and they are left out, listed)."""
    import SimpleITK as sitk

    from gliorad.segmentation import mask_path

    kept, empty = [], []
    for pid in ids:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path(mask_dir, pid))))
        (kept if (arr > 0).any() else empty).append(pid)
    return kept, empty


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
