"""The jobs of ``gliorad serve``: folders, queue, prediction processes, time limits, retention.

Each job lives in its own folder ``<data>/jobs/<id>/``: ``upload/`` (what was sent, unpacked),
``result/`` (``predict``'s outputs), ``viewer/`` (the slice viewer's volumes), ``job.json`` (its
state, rewritten at each change) and, after a bug, ``error.log``. A job id is 128 random bits
(hex): it is the only handle on a job, and the service lists no jobs, so one person cannot
find another's.

Uploads are checked in ``<data>/incoming/<id>/`` and moved into ``jobs/`` only once accepted;
a refused upload's folder is removed at once.

``workers`` prediction processes (:mod:`gliorad.serve.worker`, spawned, each with the bundle
loaded) run one job each; the other jobs wait in a first-in first-out queue of at most
``max_queue`` jobs (more are refused: :class:`QueueFull`). A job that runs past the time
limit, or is deleted while running, has its process killed (a new one is started); a process
that dies (a crash, out of memory) fails its job only. Finished jobs are kept ``keep_hours``
after they end, then removed with their folder (checked on every access and by a janitor
thread). With ``--data``, jobs survive a restart: finished ones are served again, queued and
interrupted ones are run again.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gliorad.serve.settings import ServeSettings
from gliorad.serve.uploads import rel

__all__ = ["Job", "JobManager", "QueueFull", "new_job_id", "valid_job_id"]

JOB_JSON = "job.json"
#: Task keys that hold paths relative to the job folder.
_PATH_KEYS = ("patient_dir", "study_dir", "mask")
_ID_CHARS = set("0123456789abcdef")
WORKER_START_S = 600.0  # loading a large bundle (and importing torch) on a busy machine


def new_job_id() -> str:
    return secrets.token_hex(16)


def valid_job_id(text: str) -> bool:
    return len(text) == 32 and set(text) <= _ID_CHARS


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs (or the service is stopping)."""


@dataclass
class Job:
    """One job's state (``job.json``, less the in-memory events)."""

    id: str
    status: str  # queued, running, done, failed
    created: float
    source: str  # files, zip-nifti, zip-dicom
    patient_id: str
    task: dict[str, Any]
    steps: list[str]
    step: str | None = None
    started: float | None = None
    finished: float | None = None
    error: dict[str, Any] | None = None
    cancel: bool = field(default=False, repr=False)
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "created": self.created,
                "source": self.source, "patient_id": self.patient_id, "task": self.task,
                "steps": self.steps, "step": self.step, "started": self.started,
                "finished": self.finished, "error": self.error}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Job:
        return cls(**{k: d[k] for k in ("id", "status", "created", "source", "patient_id", "task",
                                         "steps", "step", "started", "finished", "error")})

    @property
    def progress(self) -> float:
        if self.status in ("done", "failed"):
            return 1.0
        if self.step in self.steps:
            return round(self.steps.index(self.step) / len(self.steps), 3)
        return 0.0


class JobManager:
    """Jobs of one service; see the module docstring. :meth:`start` starts the prediction
    processes and the janitor, :meth:`stop` ends them (and removes a temporary data folder)."""

    def __init__(self, settings: ServeSettings, data: Path, owns_data: bool = False):
        self.settings = settings
        self.root = Path(data)
        self.owns_data = owns_data
        self.jobs_dir = self.root / "jobs"
        self.incoming = self.root / "incoming"
        self.keep_s = settings.keep_hours * 3600.0
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        self._slots: list[_Slot] = []
        self._janitor: threading.Thread | None = None
        self.started = False
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.incoming, ignore_errors=True)  # uploads cut off by a stop
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._load()

    # ----------------------------------------------------------------------------- folders
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def new_upload(self) -> tuple[str, Path]:
        """A new job id and its folder under ``incoming/`` for the upload to be checked in."""
        job_id = new_job_id()
        folder = self.incoming / job_id
        folder.mkdir()
        return job_id, folder

    def _save(self, job: Job) -> None:
        from gliorad.io import write_json

        folder = self.job_dir(job.id)
        if folder.is_dir():
            write_json(job.state(), folder / JOB_JSON)

    def _load(self) -> None:
        """Jobs of an earlier run in the data folder: finished ones kept until they expire,
        queued and interrupted ones queued again; unreadable folders removed."""
        now = time.time()
        again = []
        for folder in sorted(p for p in self.jobs_dir.iterdir() if p.is_dir()):
            try:
                job = Job.from_state(json.loads((folder / JOB_JSON).read_text(encoding="utf-8")))
                if job.id != folder.name:
                    raise ValueError("id differs from the folder name")
            except (OSError, ValueError, KeyError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if job.status in ("done", "failed"):
                if job.finished is not None and job.finished + self.keep_s < now:
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
            else:
                job.status, job.step, job.started = "queued", None, None
                again.append(job)
            self._jobs[job.id] = job
        for job in sorted(again, key=lambda j: j.created):
            self._queue.append(job.id)
            self._save(job)

    # ------------------------------------------------------------------------------- jobs
    def submit(self, job_id: str, folder: Path, *, source: str, patient_id: str,
               task: dict[str, Any], steps: Sequence[str]) -> Job:
        """Queue the checked upload in ``folder`` (moved to the job's folder); ``task`` paths
        are relative to that folder. Raises :class:`QueueFull`."""
        with self._cv:
            if self._stopping.is_set():
                raise QueueFull("the service is stopping")
            if len(self._queue) >= self.settings.max_queue:
                raise QueueFull(f"{len(self._queue)} jobs are waiting, the most this service "
                                f"queues (--max-queue {self.settings.max_queue})")
            job = Job(job_id, "queued", time.time(), source, patient_id, dict(task),
                      ["queued", *steps])
            folder.replace(self.job_dir(job_id))
            self._jobs[job_id] = job
            self._queue.append(job_id)
            self._save(job)
            self._cv.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown, deleted or expired (removed now)."""
        with self._cv:
            job = self._jobs.get(job_id)
            if job is not None and self._expired(job, time.time()):
                self._remove(job)
                return None
            return job

    def counts(self) -> dict[str, int]:
        """Jobs by status, and the prediction processes ready."""
        with self._cv:
            out = {"queued": 0, "running": 0, "done": 0, "failed": 0}
            for j in self._jobs.values():
                out[j.status] = out.get(j.status, 0) + 1
            out["workers_ready"] = sum(s.ready for s in self._slots)
            return out

    def queue_position(self, job: Job) -> int | None:
        with self._cv:
            try:
                return self._queue.index(job.id) + 1
            except ValueError:
                return None

    def delete(self, job_id: str, wait_s: float = 30.0) -> bool:
        """Remove a job and its folder; a running job's process is killed first."""
        with self._cv:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            running = job.status == "running"
            if job.status == "queued":
                self._queue.remove(job_id)
            job.cancel = True
        if running:
            job.stopped.wait(wait_s)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return True

    def public(self, job: Job) -> dict[str, Any]:
        """The job's status as the API shows it."""
        base = f"/api/jobs/{job.id}"
        out = {"id": job.id, "status": job.status, "patient_id": job.patient_id,
               "source": job.source, "step": job.step, "steps": job.steps,
               "progress": job.progress, "queue_position": self.queue_position(job),
               "created": _iso(job.created), "started": _iso(job.started),
               "finished": _iso(job.finished), "error": job.error,
               "expires": _iso(job.finished + self.keep_s) if job.finished else None,
               "links": {"status": base}}
        if job.status == "done":
            out["links"].update({k: f"{base}/{k}" for k in
                                 ("result", "mask", "summary", "features", "viewer")})
        return out

    def _expired(self, job: Job, now: float) -> bool:
        return job.status in ("done", "failed") and job.finished is not None \
            and job.finished + self.keep_s < now

    def _remove(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(self.job_dir(job.id), ignore_errors=True)

    # --------------------------------------------------------------------- slots' side
    def _next(self) -> Job | None:
        with self._cv:
            while not self._queue and not self._stopping.is_set():
                self._cv.wait(1.0)
            if self._stopping.is_set():
                return None
            job = self._jobs[self._queue.popleft()]
            job.status, job.started, job.step = "running", time.time(), None
            self._save(job)
            return job

    def _progress(self, job: Job, step: str) -> None:
        with self._cv:
            if job.id in self._jobs:
                job.step = step
                self._save(job)

    def _finish(self, job: Job, status: str, kind: str | None = None,
                problems: Sequence[str] = ()) -> None:
        with self._cv:
            if job.id in self._jobs:
                if status == "queued":  # interrupted by a stop: run again at the next start
                    job.status, job.step, job.started = "queued", None, None
                else:
                    job.status, job.finished = status, time.time()
                    if status == "failed":
                        folder = self.job_dir(job.id)
                        job.error = {"kind": kind,
                                     "problems": [rel(str(p), folder) for p in problems]}
                self._save(job)
            job.stopped.set()

    def _task(self, job: Job) -> dict[str, Any]:
        folder = self.job_dir(job.id)
        task = {k: (str(folder / v) if k in _PATH_KEYS and v else v) for k, v in job.task.items()}
        task.update(id=job.id, job_dir=str(folder), out_dir=str(folder / "result"),
                    viewer_dir=str(folder / "viewer"))
        return task

    # --------------------------------------------------------------------- start / stop
    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._slots = [_Slot(self, i) for i in range(self.settings.workers)]
        for s in self._slots:
            s.thread.start()
        self._janitor = threading.Thread(target=self._clean_loop, name="gliorad-serve-janitor",
                                         daemon=True)
        self._janitor.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        for s in self._slots:
            s.thread.join(30)
            s.kill()
        if self._janitor is not None:
            self._janitor.join(5)
        if self.owns_data:
            shutil.rmtree(self.root, ignore_errors=True)

    def clean(self, now: float | None = None) -> int:
        """Remove expired jobs and stray folders; the number of jobs removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._cv:
            for job in [j for j in self._jobs.values() if self._expired(j, now)]:
                self._remove(job)
                removed += 1
            for folder in self.jobs_dir.iterdir():
                if folder.name not in self._jobs:
                    shutil.rmtree(folder, ignore_errors=True)
        for folder in self.incoming.iterdir():  # an upload abandoned for an hour
            try:
                if folder.stat().st_mtime < now - 3600:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
        return removed

    def _clean_loop(self) -> None:
        every = max(1.0, min(60.0, self.keep_s / 4))
        while not self._stopping.wait(every):
            try:
                self.clean()
            except OSError:  # a folder removed meanwhile: next round
                pass


class _Slot:
    """One prediction process and the thread that feeds it jobs."""

    def __init__(self, manager: JobManager, index: int):
        self.m = manager
        self.index = index
        self.proc: Any = None
        self.conn: Any = None
        self.job: Job | None = None  # the job it runs now
        self.ready = False  # its process has the bundle loaded
        self.thread = threading.Thread(target=self._loop, name=f"gliorad-serve-slot-{index}",
                                       daemon=True)

    def _start_worker(self) -> str | None:
        """Start the process and wait until its bundle is loaded; an error message or None."""
        from gliorad.serve import worker

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        s = self.m.settings
        proc = ctx.Process(target=worker.main, args=(child, str(s.bundle), s.threads_per_worker),
                           name=f"gliorad-serve-worker-{self.index}", daemon=True)
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        deadline = time.monotonic() + WORKER_START_S
        while time.monotonic() < deadline and not self.m._stopping.is_set():
            try:
                if parent.poll(0.2):
                    msg = parent.recv()
                    if msg[0] == "ready":
                        self.ready = True
                        return None
                    self.kill()
                    return f"the prediction process could not load the bundle: {msg[1]}"
            except (EOFError, OSError):
                break
            if not proc.is_alive() and not parent.poll(0):
                break
        code = proc.exitcode
        self.kill()
        return ("the service is stopping" if self.m._stopping.is_set() else
                f"the prediction process did not start (exit code {code})")

    def kill(self) -> None:
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        self.ready = False
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        if proc is not None:
            proc.join(0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if conn is not None:
            conn.close()

    def _loop(self) -> None:
        self._start_worker()  # warm: the bundle is loaded before the first job arrives
        while True:
            job = self.m._next()
            if job is None:
                break
            self.job = job
            try:
                outcome = self._run(job)
            except Exception as err:  # noqa: BLE001 - a bug here fails the job, not the slot
                self.kill()
                outcome = ("failed", "internal", [f"{type(err).__name__}: {err}"])
            self.job = None
            self.m._finish(job, *outcome)
        self.kill()

    def _run(self, job: Job) -> tuple[str, str | None, list[str]]:
        if self.proc is None or not self.proc.is_alive():
            self.kill()
            err = self._start_worker()
            if err is not None:
                return (("queued", None, []) if self.m._stopping.is_set()
                        else ("failed", "internal", [err]))
        self.conn.send(self.m._task(job))
        limit = self.m.settings.time_limit_s
        deadline = time.monotonic() + limit
        while True:
            if job.cancel:
                self.kill()
                return "failed", "cancelled", ["deleted while running"]
            if self.m._stopping.is_set():
                self.kill()
                return "queued", None, []
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                return "failed", "time", [(f"the job ran longer than the time limit of "
                                           f"{limit:g} s (--time-limit) and was stopped")]
            try:
                if self.conn.poll(min(0.2, remaining)):
                    msg = self.conn.recv()
                elif not self.proc.is_alive():
                    raise EOFError
                else:
                    continue
            except (EOFError, OSError):
                code = None
                if self.proc is not None:
                    self.proc.join(2)  # reaped, so that its exit code is known
                    code = self.proc.exitcode
                self.kill()
                return "failed", "internal", [(f"the prediction process ended unexpectedly "
                                               f"(exit code {code}); the service starts a new "
                                               "one")]
            if msg[0] == "progress":
                self.m._progress(job, msg[1])
            elif msg[0] == "done":
                return "done", None, []
            elif msg[0] == "failed":
                return "failed", msg[1], list(msg[2])
