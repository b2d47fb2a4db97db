"""Where the per-case work of a cohort stage runs: this machine (joblib, the default) or a Dask
cluster.

A cohort stage is a loop over cases (a patient, or a patient x sequence x mask source) of a
per-case function (:func:`gliorad.preprocess.pipeline.run_patient`,
:func:`gliorad.segmentation.segment_case`, :func:`gliorad.features.radiomics.radiomics_case`,
the deep networks' input preparation, :func:`gliorad.validation.check_patient`). The stage hands
that loop to :func:`run_cases`, with an :class:`Executor` saying where it runs:

* ``local`` (the default, ``executor=None``): what each stage did before there was a choice:
  in this process for one job, else joblib's loky worker processes on this machine.
* ``dask``: a :mod:`dask.distributed` client submits every case to a scheduler (``scheduler``:
  its address, such as ``tcp://10.0.0.5:8786``, for a cluster started by ``dask scheduler`` /
  ``dask worker``, dask-jobqueue or dask-kubernetes; none: a local Dask cluster of ``n_workers``
  single-threaded processes, for the dashboard on one machine). A case that raises is retried
  ``retries`` times; a case whose worker dies is moved to another worker by the scheduler; a
  case that still fails comes back as a :class:`CaseError` in its place, the other cases'
  results intact. Objects every case needs (a model, the cohort) are sent to each worker once
  (``shared``), not with every case.

Either way :func:`run_cases` returns the results in the order of the cases, so a stage builds
the same tables and files from them. The workers must have the same environment (gliorad, its
version and dependencies) and see the same files at the same paths (shared storage): the cases
read their images and write their outputs (atomically, :mod:`gliorad.io`) there, and a rerun
skips the cases whose outputs are finished (each stage's per-case cache). See docs/scaling.md.

This module imports neither dask nor joblib until work is run (``gliorad config check`` stays
light).
"""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gliorad.errors import GlioradInputError

__all__ = ["EXECUTORS", "CaseError", "Executor", "check_scheduler", "resolve_jobs", "run_cases"]

#: The executors: ``local`` (this machine: in-process or joblib) and ``dask`` (a Dask cluster).
EXECUTORS: tuple[str, ...] = ("local", "dask")

#: Default retries of a failing case on a Dask cluster.
RETRIES = 2

#: Seconds to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT_S = 10

_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss|ucx|inproc)://)?(\[[0-9a-fA-F:.]+\]|[\w.-]+):(\d{1,5})$")


def resolve_jobs(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` (-1: all cores, -2: all but one, ...); 0 is refused."""
    import joblib

    cores = joblib.cpu_count()
    if n_jobs == 0:
        raise GlioradInputError("n_jobs 0 is not valid; expected a positive number or -1 (all cores)")
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs


def check_scheduler(address: str, where: str = "--scheduler") -> str:
    """``address`` if it is a Dask scheduler address (``[scheme://]host:port``); else a
    :class:`GlioradInputError` naming ``where``."""
    text = str(address).strip()
    m = _ADDRESS.match(text)
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise GlioradInputError(
            f"{where} {address!r}: not a Dask scheduler address; expected scheme://host:port such "
            "as tcp://10.0.0.5:8786 (what 'dask scheduler' prints)")
    return text


@dataclass(frozen=True)
class CaseError:
    """A case that failed on the cluster after its retries (in place of its result)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class Executor:
    """Where :func:`run_cases` runs the cases (the module docstring).

    ``kind`` ``local`` | ``dask``; ``scheduler``: a Dask scheduler's address (``dask``; None: a
    local Dask cluster of ``n_workers`` processes); ``retries``: reruns of a case that raises on
    the cluster; ``echo``: where the connection line (workers, dashboard) goes (default stderr).
    """

    kind: str = "local"
    scheduler: str | None = None
    retries: int = RETRIES
    n_workers: int = 2
    echo: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise GlioradInputError(
                f"executor {self.kind!r} is not valid; expected one of: {', '.join(EXECUTORS)}")
        if self.scheduler is not None:
            if self.kind != "dask":
                raise GlioradInputError(
                    f"scheduler {self.scheduler!r} given with the local executor; a scheduler "
                    "address needs executor dask")
            check_scheduler(self.scheduler, "scheduler")
        if int(self.retries) < 0:
            raise GlioradInputError(f"retries {self.retries!r}: expected 0 or more")

    @property
    def distributed(self) -> bool:
        return self.kind == "dask"

    @classmethod
    def from_options(cls, scheduler: str | None, jobs: int = 2, retries: int = RETRIES,
                     echo: Callable[[str], None] | None = None) -> Executor | None:
        """A command's ``--scheduler``: ``None`` (the local path), an address (that cluster) or
        ``local`` (a local Dask cluster of ``jobs`` workers)."""
        if scheduler is None:
            return None
        if scheduler.strip() == "local":
            return cls("dask", None, retries, max(1, jobs), echo)
        return cls("dask", check_scheduler(scheduler), retries, max(1, jobs), echo)

    @classmethod
    def of(cls, run: Any, echo: Callable[[str], None] | None = None) -> Executor | None:
        """The executor of a run config's ``run`` section (``executor``, ``scheduler``,
        ``retries``, ``n_jobs``); ``None`` for the local one."""
        if getattr(run, "executor", "local") == "local":
            return None
        return cls("dask", run.scheduler, run.retries, run.n_jobs, echo)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A connected :class:`distributed.Client` (a local cluster when no scheduler is given);
        prints the workers and the dashboard address; closes it on exit."""
        from distributed import Client, LocalCluster

        say = self.echo or (lambda line: print(line, file=sys.stderr, flush=True))
        with contextlib.ExitStack() as stack:
            if self.scheduler is None:
                cluster = stack.enter_context(LocalCluster(
                    n_workers=self.n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0"))
                target: Any = cluster
            else:
                target = self.scheduler
            try:
                client = stack.enter_context(Client(target, timeout=CONNECT_TIMEOUT_S))
            except OSError as err:
                raise GlioradInputError(
                    f"Dask scheduler {self.scheduler}: no answer ({err}); start one with 'dask "
                    "scheduler' and workers with 'dask worker ADDRESS' (docs/scaling.md)") from err
            _check_workers(client)
            n = len(client.nthreads())
            say(f"dask: {client.scheduler.address}, {n} worker(s)"
                + ("" if n else " (the cases wait until a worker joins)")
                + f"; dashboard {_dashboard(client)}")
            yield client


def _dashboard(client: Any) -> str:
    """The dashboard's address, when the scheduler serves one (its plots need bokeh there)."""
    if "dashboard" not in client.scheduler_info().get("services", {}):
        return "not served (a scheduler started with its dashboard, and bokeh, serves one)"
    return str(client.dashboard_link)


def _worker_version() -> str:
    import gliorad

    return gliorad.__version__


def _check_workers(client: Any) -> None:
    """The workers import gliorad, at this version (else every case would fail there)."""
    import gliorad

    try:
        found = client.run(_worker_version)
    except Exception as err:
        raise GlioradInputError(
            f"the Dask workers cannot run gliorad ({type(err).__name__}: {err}); start them in "
            "the same environment as this command (docs/scaling.md)") from err
    other = {w: v for w, v in found.items() if v != gliorad.__version__}
    if other:
        raise GlioradInputError(
            [f"Dask worker {w} has gliorad {v}, this command {gliorad.__version__}; start the "
             "workers in the same environment" for w, v in sorted(other.items())])


def _indexed(i: int, fn: Callable[..., Any], item: Any, kwargs: Mapping[str, Any]
             ) -> tuple[int, Any]:
    return i, fn(item, **kwargs)


def run_cases(
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    names: Sequence[str] | None = None,
    shared: Mapping[str, Any] | None = None,
    progress: bool = False,
    label: str = "cases",
    columns: Sequence[str] = (),
    failed: Callable[[Any], bool] | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(item, **shared) for item in items]``, run by ``executor``; results in item order.

    Local (``executor`` None or ``local``): in this process when ``jobs == 1``, else ``jobs``
    loky processes (joblib; an exception propagates, as in a plain loop). Dask: every case
    submitted to the cluster; one that still fails after the retries (or whose workers kept
    dying) gives a :class:`CaseError` named by ``names[i]`` in its place. ``progress``: a bar
    labelled ``label`` (``columns`` as :class:`gliorad.progress.ProgressBar`'s, which may show
    ``{task.fields[failed]}``: the results for which ``failed`` is true, and the case errors).
    ``on_result(i, result)`` is called in this process as each case finishes.
    """
    items = list(items)
    kwargs = dict(shared or {})
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(len(items))]
    out: list[Any] = [None] * len(items)
    if not items:
        return out
    if executor is not None and executor.distributed:
        stream = _dask_stream(fn, items, kwargs, names, executor, label)
    elif jobs == 1:
        stream = ((i, fn(item, **kwargs)) for i, item in enumerate(items))
    else:
        from joblib import Parallel, delayed

        stream = Parallel(n_jobs=min(jobs, len(items)), backend="loky",
                          return_as="generator_unordered", batch_size=1)(
            delayed(_indexed)(i, fn, item, kwargs) for i, item in enumerate(items))
    from gliorad.progress import ProgressBar

    n_failed = 0
    with ProgressBar(progress, len(items), label, columns=columns, failed=0) as bar:
        for i, result in stream:
            out[i] = result
            n_failed += isinstance(result, CaseError) or bool(failed and failed(result))
            if on_result is not None:
                on_result(i, result)
            bar.advance(failed=n_failed)
    return out


def _dask_stream(fn: Callable[..., Any], items: list[Any], kwargs: dict[str, Any],
                 names: list[str], executor: Executor, label: str
                 ) -> Iterator[tuple[int, Any]]:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    with executor.client() as client:
        # big objects go to every worker once (a worker that dies takes its copy only)
        sent = {k: client.scatter(v, broadcast=True, hash=False) for k, v in kwargs.items()}
        keys = [f"{label}-{token}-{i}-{n}" for i, n in enumerate(names)]
        futures = client.map(fn, items, key=keys, retries=executor.retries, pure=False, **sent)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                if fut.status == "finished":
                    yield i, fut.result()
                else:
                    err = fut.exception()
                    yield i, CaseError(names[i], f"{type(err).__name__}: {err}")
        finally:  # this client stopped early (an error, ^C): its cases leave the cluster
            client.cancel([f for f in futures if not f.done()])
