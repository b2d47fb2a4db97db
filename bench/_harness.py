"""Shared pieces of the benchmarks in bench/: timing, memory, machine description, tables, JSON.

Each benchmark stays one script run with one command (``.venv/bin/python bench/<name>.py``); it
imports this module (the script's folder is on ``sys.path``) for:

* :func:`measure` - median / min wall time of a callable over a few repeats, tracemalloc peak;
  :func:`measure_main` - the whole command line of a benchmark made of such cases;
* :class:`Stopwatch` - wall and CPU seconds of a ``with`` block;
* :func:`peak_rss_mb`, :func:`load_average`, :func:`machine_info` - memory and machine facts;
* :func:`run_child` - one case in a fresh Python process that prints a JSON line;
* :class:`Column`, :func:`format_table` - fixed-width text tables;
* :func:`write_results` - ``bench/out/<name>.json``, written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

OUT_DIR = Path(__file__).resolve().parent / "out"


# ------------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """One table column: its ``header``, the row's ``key`` (or a function of the row giving the
    cell), a format ``spec`` for the value (e.g. ``".4f"``), a fixed ``width`` (default: the
    widest of header and cells) and an ``align``ment (``>`` right, ``<`` left)."""

    header: str
    key: str | Callable[[Mapping[str, Any]], Any]
    spec: str = ""
    width: int | None = None
    align: str = ">"

    def cell(self, row: Mapping[str, Any]) -> str:
        value = self.key(row) if callable(self.key) else row[self.key]
        return format(value, self.spec)


def format_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], sep: str = "  ",
                 rule: str | None = None) -> str:
    """Header line and one line per row, cells padded to the column widths and joined by ``sep``;
    with ``rule`` (e.g. ``"-+-"``) a line of dashes joined by it under the header."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [c.width if c.width is not None else max([len(c.header), *(len(r[i]) for r in cells)])
              for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return sep.join(f"{v:{c.align}{w}}" for v, c, w in zip(values, columns, widths))

    lines = [line([c.header for c in columns])]
    if rule is not None:
        lines.append(rule.join("-" * w for w in widths))
    lines += [line(r) for r in cells]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- timing
def measure(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median / min wall time over ``repeats`` runs (after one warm-up) and tracemalloc peak."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats,
            "peak_mem_mb": peak / 2**20}


def measure_cases(cases: Mapping[str, Callable[[], object]], repeats: int) -> list[dict[str, Any]]:
    """``{"case": name, **measure(fn, repeats)}`` for each named case, in order."""
    return [{"case": name, **measure(fn, repeats)} for name, fn in cases.items()]


MEASURE_COLUMNS = (Column("case", "case", align="<"), Column("median s", "median_s", ".4f", 9),
                   Column("min s", "min_s", ".4f", 8), Column("peak MiB", "peak_mem_mb", ".1f", 8))


def measure_main(name: str, description: str,
                 make_cases: Callable[[], Mapping[str, Callable[[], object]]],
                 default_repeats: int, argv: list[str] | None = None) -> int:
    """The whole command line of a benchmark of in-process cases (``[--quick] [--repeats N]``):
    measure each case, print the table, write ``bench/out/<name>.json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help=f"1 repeat instead of {default_repeats}")
    parser.add_argument("--repeats", type=int, default=default_repeats)
    args = parser.parse_args(argv)
    results = measure_cases(make_cases(), 1 if args.quick else args.repeats)
    print(format_table(results, MEASURE_COLUMNS))
    write_results(name, {"machine": machine_info("platform", "machine", "python", "numpy", "cpus"),
                         "results": results})
    return 0


class Stopwatch:
    """``with Stopwatch() as t: ...``, then ``t.wall_s`` and ``t.cpu_s`` (this process's CPU)."""

    wall_s: float
    cpu_s: float

    def __enter__(self) -> Self:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        self.cpu_s = time.process_time() - self._cpu0


# ------------------------------------------------------------------------------------ machine
def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``ru_maxrss``, which Linux gives in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other users' jobs share the cores)."""
    return [round(v, 2) for v in os.getloadavg()]


def _memory_gb() -> float:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


# Field name -> how to read it. Two names for one fact ("cpus" / "cpu_count", "machine" /
# "processor") keep the keys each benchmark's JSON has always had.
MACHINE_FIELDS: dict[str, Callable[[], Any]] = {
    "platform": platform.platform,
    "machine": platform.machine,
    "processor": platform.machine,
    "python": platform.python_version,
    "numpy": _numpy_version,
    "cpus": os.cpu_count,
    "cpu_count": os.cpu_count,
    "memory_gb": _memory_gb,
    "load_average_at_start": load_average,
}


def machine_info(*fields: str, **extra: Any) -> dict[str, Any]:
    """``{field: value}`` for the named :data:`MACHINE_FIELDS`, in that order, then ``extra``."""
    unknown = [f for f in fields if f not in MACHINE_FIELDS]
    if unknown:
        raise KeyError(f"unknown machine field(s) {unknown}; expected: {', '.join(MACHINE_FIELDS)}")
    return {**{f: MACHINE_FIELDS[f]() for f in fields}, **extra}


# -------------------------------------------------------------------------------- child cases
def run_child(args: Sequence[str], env: Mapping[str, str] | None = None,
              what: str = "benchmark case") -> dict[str, Any]:
    """Run ``python *args`` in a fresh process and return the JSON object on its last stdout
    line; exit with the end of its stderr when it fails."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          encoding="utf-8", check=False, env=None if env is None else dict(env))
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------- JSON
def write_results(name: str, data: Mapping[str, Any], *,
                  default: Callable[[Any], Any] | None = None, echo: bool = True) -> Path:
    """Write ``data`` as indented JSON to ``bench/out/<name>.json`` (atomically: an interrupted run
    leaves the previous file); print ``wrote <path>`` unless ``echo`` is false."""
    from gliorad.io import write_text

    path = write_text(json.dumps(data, indent=2, default=default) + "\n", OUT_DIR / f"{name}.json")
    if echo:
        print(f"wrote {path}")
    return path


# ------------------------------------------------------------------------------ pipeline draws
def run_demo_draw(seed: int, workspace: Path, until: str, settings: Sequence[str]) -> float:
    """``gliorad run demo`` for one cohort draw (``run.seed = seed``) up to the stage ``until``
    with ``--set`` for each of ``settings``; the wall seconds (exits with the run's stderr tail
    if it fails). A rerun with the same workspace reuses finished stages."""
    exe = Path(sys.executable).with_name("gliorad")
    cmd = [str(exe), "run", "demo", "-w", str(workspace), "--until", until,
           "--set", f"run.seed={seed}"]
    for s in settings:
        cmd += ["--set", s]
    with Stopwatch() as clock:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"draw {seed} failed:\n{done.stderr[-3000:]}")
    return clock.wall_s
