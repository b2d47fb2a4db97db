"""Stage graph, workspace, skip-if-unchanged caching and provenance.

A workspace is a folder with one sub-folder per stage. A stage's folder appears only when the stage
has finished: the stage writes into a temporary sibling folder, its record ``_stage.json`` is written
last, and the folder is renamed into place. A stage is skipped when its fingerprint is unchanged. The
fingerprint covers the stage's name, the gliorad version, the stage's own settings, and the content
hashes of the outputs of the stages it reads (so a redone upstream stage that produced identical
files does not force its consumers to run again). A run killed at any point (even SIGKILL) leaves
either the old complete folder, or none, plus temporary leftovers that the next run removes.

Long stages may keep resumable state (training checkpoints, per-case caches) in
``context.work_dir``, a folder kept across interrupted runs for the same fingerprint and removed
once the stage has finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliorad import __version__
from gliorad.errors import GlioradInputError
from gliorad.io import file_hash, write_json
from gliorad.provenance import digest, versions

RECORD = "_stage.json"
log = logging.getLogger("gliorad.pipeline")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``run(context)`` writes the stage's outputs into ``context.out_dir``. ``inputs`` names the
    stages whose outputs it reads (``context.input_dir(name)``); ``settings`` is the JSON-able dict
    of everything else that determines its result (config section, seed, external input hashes).
    """

    name: str
    run: Callable[[StageContext], Any]
    inputs: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class StageContext:
    workspace: Workspace
    stage: Stage
    out_dir: Path
    work_dir: Path
    log: logging.Logger

    def input_dir(self, name: str) -> Path:
        if name not in self.stage.inputs:
            raise GlioradInputError(
                f"stage {self.stage.name!r} reads {name!r}, which it does not declare as an input; "
                f"declared: {', '.join(self.stage.inputs) or 'none'}"
            )
        return self.workspace.stage_dir(name)


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    fingerprint: str


class Workspace:
    """The folder of a run: ``<root>/<stage>/`` per finished stage, ``<root>/pipeline.log``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def stage_dir(self, name: str) -> Path:
        return self.root / name

    def record(self, name: str) -> dict | None:
        """The finished stage's record, or None when the stage has not finished."""
        path = self.stage_dir(name) / RECORD
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def clean_leftovers(self) -> list[Path]:
        """Remove temporary folders left by a killed run (not the resumable work folders)."""
        removed = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(".") and (".tmp-" in p.name or ".trash-" in p.name):
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed


def outputs_hash(folder: Path) -> str:
    """Hash of every file in a stage folder except its record (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != RECORD):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(file_hash(f).encode())
    return h.hexdigest()


def fingerprint(stage: Stage, workspace: Workspace) -> str:
    upstream = {}
    for name in stage.inputs:
        rec = workspace.record(name)
        if rec is None:
            raise GlioradInputError(f"stage {stage.name!r} needs stage {name!r}, which has not run")
        upstream[name] = rec["outputs_hash"]
    payload = {"stage": stage.name, "gliorad": __version__, "settings": stage.settings,
               "inputs": upstream}
    return digest(payload, compact=True)


#: The libraries a run's results depend on, recorded in every stage record.
PACKAGES = ("python", "gliorad", "numpy", "torch", "monai", "SimpleITK", "pyradiomics-bhklab",
            "scikit-learn", "lifelines", "scikit-survival")


def _run_stage(stage: Stage, ws: Workspace, fp: str) -> None:
    final = ws.stage_dir(stage.name)
    tmp = ws.root / f".{stage.name}.tmp-{os.getpid()}"
    work = ws.root / f".{stage.name}.work-{fp[:16]}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    work.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(ws, stage, tmp, work, log.getChild(stage.name))
    started = time.time()
    try:
        stage.run(ctx)
        record = {
            "stage": stage.name, "description": stage.description, "fingerprint": fp,
            "settings": stage.settings, "inputs": {n: ws.record(n)["outputs_hash"] for n in stage.inputs},
            "outputs_hash": outputs_hash(tmp), "versions": versions(*PACKAGES),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": round(time.time() - started, 3),
        }
        write_json(record, tmp / RECORD)
        trash = ws.root / f".{stage.name}.trash-{os.getpid()}"
        if final.exists():
            os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_names(stages: Sequence[Stage], names: Iterable[str], option: str) -> None:
    known = [s.name for s in stages]
    for n in names:
        if n not in known:
            raise GlioradInputError(f"{option} {n!r} is not a stage; expected one of: {', '.join(known)}")


def run_pipeline(
    stages: Sequence[Stage],
    workspace: str | os.PathLike | Workspace,
    from_stage: str | None = None,
    force: Iterable[str] = (),
    until: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[StageResult]:
    """Run ``stages`` in order, skipping those whose fingerprint is unchanged.

    ``from_stage`` redoes that stage and every later one; ``force`` redoes the named stages only
    (their consumers then run again only if the redone outputs differ); ``until`` stops after the
    named stage.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    force = set(force)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise GlioradInputError(f"stage names must be unique: {names}")
    _check_names(stages, force, "--force")
    _check_names(stages, [n for n in (from_stage, until) if n], "--from/--until")
    for i, s in enumerate(stages):
        missing = [n for n in s.inputs if n not in names[:i]]
        if missing:
            raise GlioradInputError(f"stage {s.name!r} reads {missing}, which do not run before it")
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.clean_leftovers()
    handler = _file_handler(ws)

    def say(msg: str) -> None:
        log.info(msg)
        if echo is not None:
            echo(msg)

    results: list[StageResult] = []
    redo_from = names.index(from_stage) if from_stage else len(names)
    try:
        for i, stage in enumerate(stages):
            fp = fingerprint(stage, ws)
            rec = ws.record(stage.name)
            redo = i >= redo_from or stage.name in force
            if rec is not None and rec.get("fingerprint") == fp and not redo:
                say(f"[{i + 1}/{len(stages)}] {stage.name}: up to date, skipped")
                results.append(StageResult(stage.name, "skipped", 0.0, fp))
            else:
                say(f"[{i + 1}/{len(stages)}] {stage.name}: running ...")
                t0 = time.perf_counter()
                _run_stage(stage, ws, fp)
                dt = time.perf_counter() - t0
                say(f"[{i + 1}/{len(stages)}] {stage.name}: done in {dt:.1f} s")
                results.append(StageResult(stage.name, "ran", dt, fp))
            if until and stage.name == until:
                break
    finally:
        logging.getLogger("gliorad").removeHandler(handler)
        handler.close()
    return results


def _file_handler(ws: Workspace) -> logging.Handler:
    handler = logging.FileHandler(ws.root / "pipeline.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("gliorad")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler
