"""Benchmark: radiomics throughput on a Dask cluster of 1 and 2 workers on this machine, and a
projection of a BraTS-sized cohort's wall time on a cluster (issue 21).

    .venv/bin/python bench/scale.py [--quick] [--patients N] [--spacing MM] [--preset fast]
                                    [--sequences t1,t1ce,t2,flair] [--workers 1,2]

On a seeded synthetic cohort (default 8 patients at 1.5 mm, four sequences, manual masks: 32
cases; ``--quick``: 4 patients, two sequences):

* ``local, 1 job``: :func:`gliorad.features.radiomics.extract_radiomics` in this process, the
  reference (tables, per-case cache, provenance included);
* ``dask, N workers``: the same call with ``executor=Executor("dask", ADDRESS)`` on a cluster the
  benchmark starts itself, as a cluster is started: ``dask scheduler`` and N ``dask worker``
  processes (``--nthreads 1``, behind their nannies), warmed up (radiomics imported, one run over
  the first sequence) before the clock starts, so the times are steady-state throughput.
  Connecting, the worker check, submitting and gathering are inside the times.

Reported per run: wall seconds, cases per second, speed-up over one Dask worker, the overhead of
Dask per case over the in-process run (connection and worker check included, so an upper bound
for a run of thousands of cases), whether the tables are byte-identical to the local
run's; the machine's load average and parallel capacity (two busy loops vs one: the ceiling for
any speed-up at that moment, since other users' jobs share the cores).

The projection for a BraTS 2021-sized cohort (1,251 patients x 4 sequences x 2 mask sources =
10,008 cases) uses a per-case cost of the paper's filters at 1 mm (``--paper-case-s``, default 7 s:
measured for issue 21 on one core) plus the Dask overhead measured here, divided over W worker
cores at the parallel efficiency measured here with two workers (or 1 on dedicated cores).
Prints the tables and writes bench/out/scale.json.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

from _harness import Column, Stopwatch, format_table, load_average, machine_info, write_results

BRATS_PATIENTS, BRATS_SEQUENCES, MASK_SOURCES = 1251, 4, 2
PROJECTED_WORKERS = (1, 2, 16, 64, 256)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spin(n: int = 20_000_000) -> float:
    with Stopwatch() as clock:
        acc = 0
        for i in range(n):
            acc += i
    return clock.wall_s


def parallel_capacity(jobs: int) -> float:
    """Throughput speed-up of ``jobs`` busy loops in parallel processes over one (about ``jobs``
    on idle cores; near 1 when other jobs already fill them)."""
    import multiprocessing as mp

    one = _spin()
    with Stopwatch() as clock, mp.get_context("spawn").Pool(jobs) as pool:
        pool.map(_spin, [20_000_000] * jobs)
    return round(jobs * one / clock.wall_s, 2)


class LocalDaskCluster:
    """``dask scheduler`` + ``n`` ``dask worker`` processes (one thread each), stopped on exit."""

    def __init__(self, n: int, logs: Path):
        self.n, self.logs = n, logs
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                           stderr=subprocess.STDOUT, cwd=self.logs))

    def __enter__(self) -> Self:
        from distributed import Client

        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", port, "--dashboard-address", "127.0.0.1:0"])
        for i in range(self.n):
            self._start(f"worker{i}", ["distributed.cli.dask_worker", self.address, "--nworkers",
                                       "1", "--nthreads", "1", "--host", "127.0.0.1",
                                       "--local-directory", str(self.logs / f"w{i}")])
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(self.n, timeout=120)
            client.run(_warm)  # imports paid before the clock starts
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _warm() -> bool:
    import radiomics.featureextractor  # noqa: F401

    import gliorad.features.radiomics  # noqa: F401

    return True


def _run(cohort: Path, out: Path, preset: str, seqs: list[str], executor=None) -> dict:
    from gliorad.features.radiomics import extract_radiomics

    with Stopwatch() as clock:
        res = extract_radiomics(cohort, out, params=preset, sequences=seqs, n_jobs=1,
                                progress=False, executor=executor)
    assert not len(res.failures), res.failures
    return {"wall_s": clock.wall_s, "cases": res.n_computed,
            "table": (out / "radiomics_manual.csv").read_bytes()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 patients, two sequences")
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--sequences", default="t1,t1ce,t2,flair")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--paper-case-s", type=float, default=7.0,
                        help="CPU seconds of one case with the paper's filters at 1 mm")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.sequences = 4, "t1ce,flair"
    seqs = [s.strip() for s in args.sequences.split(",") if s.strip()]
    workers = [int(w) for w in args.workers.split(",")]

    from gliorad.executor import Executor
    from gliorad.synthetic import SynthConfig, generate_cohort

    results: dict = {"machine": machine_info("platform", "machine", "python", "cpus",
                                             "memory_gb", "load_average_at_start"),
                     "settings": {"patients": args.patients, "spacing_mm": args.spacing,
                                  "preset": args.preset, "sequences": seqs}}
    results["parallel_capacity_before"] = parallel_capacity(2)
    print(f"machine parallel capacity (2 busy loops vs 1): {results['parallel_capacity_before']}x,"
          f" load {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gliorad-scale-") as tmp:
        work = Path(tmp)
        cohort = work / "cohort"
        generate_cohort(cohort, SynthConfig(n_patients=args.patients, seed=0,
                                            spacing=args.spacing), n_jobs=2)
        _run(cohort, work / "warmup", args.preset, seqs[:1])  # imports paid in this process
        rows = []
        local = _run(cohort, work / "local", args.preset, seqs)
        rows.append({"run": "local, 1 job (this process)", "workers": 0, **local})
        for n in workers:
            (work / f"dask{n}").mkdir()
            with LocalDaskCluster(n, work / f"dask{n}") as cluster:
                ex = Executor("dask", cluster.address, echo=lambda _line: None)
                # every worker's first case (extractor set-up) before the clock starts
                _run(cohort, work / f"warm{n}", args.preset, seqs[:1], ex)
                got = _run(cohort, work / f"out{n}", args.preset, seqs, ex)
            rows.append({"run": f"dask, {n} worker{'s' if n > 1 else ''}", "workers": n, **got})
    results["parallel_capacity_after"] = parallel_capacity(2)
    results["load_average_at_end"] = load_average()

    one = next((r for r in rows if r["workers"] == 1), None)
    for r in rows:
        r["cases_per_s"] = r["cases"] / r["wall_s"]
        r["s_per_case"] = r["wall_s"] / r["cases"]
        r["speedup_vs_1_worker"] = (one["wall_s"] / r["wall_s"]) if one else float("nan")
        r["identical_table"] = r.pop("table") == local["table"]
    print(format_table(rows, (
        Column("run", "run", align="<"), Column("cases", "cases"),
        Column("wall s", "wall_s", ".2f"), Column("s/case", "s_per_case", ".3f"),
        Column("cases/s", "cases_per_s", ".2f"), Column("vs 1 worker", "speedup_vs_1_worker", ".2f"),
        Column("identical table", lambda r: "yes" if r["identical_table"] else "NO"))))
    print(f"machine parallel capacity after: {results['parallel_capacity_after']}x, "
          f"load {results['load_average_at_end']}")
    results["runs"] = rows

    # projection for a BraTS-sized cohort
    two = next((r for r in rows if r["workers"] == 2), None)
    overhead = max(0.0, one["s_per_case"] - local["wall_s"] / local["cases"]) if one else 0.0
    efficiency = min(1.0, two["speedup_vs_1_worker"] / 2) if two and one else 1.0
    cases = BRATS_PATIENTS * BRATS_SEQUENCES * MASK_SOURCES
    per_case = args.paper_case_s + overhead
    proj = [{"workers": w, "dedicated_h": cases * per_case / w / 3600,
             "measured_efficiency_h": cases * per_case / (w * (efficiency if w > 1 else 1)) / 3600}
            for w in PROJECTED_WORKERS]
    results["projection"] = {"cases": cases, "paper_case_s": args.paper_case_s,
                             "dask_overhead_s_per_case": overhead,
                             "efficiency_2_workers": efficiency, "rows": proj}
    print(f"\nprojection, BraTS 2021 size: {BRATS_PATIENTS} patients x {BRATS_SEQUENCES} sequences "
          f"x {MASK_SOURCES} mask sources = {cases} cases at {args.paper_case_s:g} s + "
          f"{overhead:.3f} s Dask overhead per case; parallel efficiency measured here "
          f"{efficiency:.2f}")
    print(format_table(proj, (
        Column("worker cores", "workers"), Column("dedicated cores, h", "dedicated_h", ".2f"),
        Column(f"at efficiency {efficiency:.2f}, h", "measured_efficiency_h", ".2f"))))
    write_results("scale", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
