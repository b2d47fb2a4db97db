"""Benchmark: feature extraction (radiomics now; a deep-feature section is to be added).

    .venv/bin/python bench/features.py [--quick] [--sections radiomics] [--presets fast,paper]
                                       [--patients N] [--spacing MM] [--jobs N]

Radiomics section, on a seeded synthetic cohort (default 8 patients at 1.5 mm, whole-tumour manual
masks; the paper preset on the first 2 patients, T1-Gd and FLAIR), per preset:

* ``pyradiomics serial``: one ``RadiomicsFeatureExtractor(preset)`` and a plain loop of
  ``.execute(image, mask > 0)`` over every (patient, sequence) case, in this process: the
  reference run;
* ``gliorad n_jobs=1``: :func:`gliorad.features.radiomics.extract_radiomics` in this process
  (reading, checks, per-case cache, tables, provenance included);
* ``gliorad n_jobs=N cold``: the same with N loky workers, from a cold worker pool (start-up and
  imports included, as a fresh ``gliorad features radiomics`` run pays them);
* ``gliorad n_jobs=N warm``: workers started and radiomics imported before the clock starts
  (steady-state throughput, what a run over hundreds of patients sees).

The plain loop runs SimpleITK and BLAS single-threaded, as gliorad does per case. Reported: wall
seconds per case; CPU seconds per case inside extract_case (serial vs in the workers: equal means
the parallel run does no extra work per case, so its wall-clock speed-up is bounded only by the
free cores); speed-ups of the parallel runs over the plain serial loop and over gliorad's serial
run; whether every feature value is bit-identical to the plain pyradiomics run; peak resident
memory of this process and of the busiest worker; the machine's load average and, before and
after, its parallel capacity (N busy loops in N processes vs one: the ceiling for any speed-up at
that moment, since other users' jobs share the cores).
Prints a table and writes bench/out/features.json.

Adding a section (e.g. deep features): write ``def bench_<name>(args, work) -> dict`` returning
``{"rows": [...], ...}`` (rows are dicts printed as a table) and register it in ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    from gliorad.features.radiomics import _peak_rss_mb

    return _peak_rss_mb()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _spin(n: int = 20_000_000) -> float:
    t0 = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i
    return time.perf_counter() - t0


def parallel_capacity(jobs: int) -> float:
    """Throughput speed-up of ``jobs`` pure-Python busy loops run in parallel processes over one:
    the ceiling any parallel code can reach on this machine right now (about ``jobs`` on idle
    cores; near 1 when other users' jobs already fill the cores)."""
    import multiprocessing as mp

    one = _spin()
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        pool.map(_spin, [20_000_000] * jobs)
    return round(jobs * one / (time.perf_counter() - t0), 2)


# -------------------------------------------------------------------------------------- radiomics
def _plain_pyradiomics(cohort, preset: str, sequences: list[str]) -> tuple[float, dict]:
    """The reference: pyradiomics alone, serial, on the binary whole-tumour mask."""
    import logging

    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    from gliorad.features.radiomics import preset_path

    radiomics.setVerbosity(logging.ERROR)
    values: dict[tuple[str, str], dict[str, float]] = {}
    # single-threaded SimpleITK and BLAS, as gliorad runs each case (multi-threaded reductions
    # change the last bit of a few normalised / LoG / MCC features with the thread count)
    from threadpoolctl import threadpool_limits

    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    t0 = time.perf_counter()
    ex = featureextractor.RadiomicsFeatureExtractor(str(preset_path(preset)))
    with threadpool_limits(limits=1):  # BLAS too (numpy eigvals in GLCM MCC)
        for pid in cohort.ids:
            seg = sitk.ReadImage(str(cohort.patients[pid].seg))
            mask = seg > 0
            for seq in sequences:
                res = ex.execute(str(cohort.image_path(pid, seq)), mask, label=1)
                values[(pid, seq)] = {k: float(v) for k, v in res.items()
                                      if not k.startswith("diagnostics_")}
    elapsed = time.perf_counter() - t0
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)
    return elapsed, values


def _warm_worker() -> int:
    import radiomics.featureextractor  # noqa: F401 - import cost paid before timing

    import gliorad.features.radiomics  # noqa: F401

    return os.getpid()


def _gliorad(cohort, preset: str, sequences: list[str], jobs: int, out: Path,
             warm: bool = False) -> tuple[float, object]:
    """Time extract_radiomics; parallel runs start from a cold worker pool (start-up and imports
    counted, as a fresh CLI run) or, with ``warm``, from workers that already imported radiomics
    (steady-state throughput, what a long cohort run sees)."""
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    from gliorad.features.radiomics import extract_radiomics

    get_reusable_executor().shutdown(wait=True)
    if warm and jobs > 1:
        Parallel(n_jobs=jobs, backend="loky")(delayed(_warm_worker)() for _ in range(4 * jobs))
    t0 = time.perf_counter()
    res = extract_radiomics(cohort, out, params=preset, sequences=sequences, n_jobs=jobs,
                            progress=False, overwrite=True)
    return time.perf_counter() - t0, res


def bench_radiomics(args: argparse.Namespace, work: Path) -> dict:
    from gliorad.cohort import discover_cohort
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = work / "cohort"
    t0 = time.perf_counter()
    generate_cohort(root, SynthConfig(n_patients=args.patients, seed=2024, spacing=args.spacing),
                    n_jobs=args.jobs)
    print(f"synthetic cohort: {args.patients} patients at {args.spacing} mm "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    cohort = discover_cohort(root)
    rows = []
    for preset in args.presets:
        seqs = ["t1", "t1ce", "t2", "flair"] if preset == "fast" else ["t1ce", "flair"]
        ids = cohort.ids if preset == "fast" else cohort.ids[: args.paper_patients]
        sub = type(cohort)(cohort.root, cohort.naming, cohort.sequences,
                           {pid: cohort.patients[pid] for pid in ids})
        n_cases = len(ids) * len(seqs)
        voxels = []
        load_before = _load()
        t_plain, plain = _plain_pyradiomics(sub, preset, seqs)
        print(f"  {preset}: pyradiomics serial {t_plain:.1f} s", flush=True)
        t_ser, ser = _gliorad(sub, preset, seqs, 1, work / f"{preset}_serial")
        print(f"  {preset}: gliorad n_jobs=1 {t_ser:.1f} s", flush=True)
        t_par, par = _gliorad(sub, preset, seqs, args.jobs, work / f"{preset}_parallel")
        print(f"  {preset}: gliorad n_jobs={args.jobs} (cold pool) {t_par:.1f} s", flush=True)
        t_warm, warm = _gliorad(sub, preset, seqs, args.jobs, work / f"{preset}_warm", warm=True)
        print(f"  {preset}: gliorad n_jobs={args.jobs} (warm pool) {t_warm:.1f} s", flush=True)
        table = par.tables["manual"]
        n_values = n_equal = 0
        max_rel = 0.0
        for (pid, seq), feats in plain.items():
            for k, v in feats.items():
                got = float(table.loc[pid, f"{seq}_{k}"])
                n_values += 1
                n_equal += got == v or (np.isnan(got) and np.isnan(v))
                if v != 0 and np.isfinite(v):
                    max_rel = max(max_rel, abs(got - v) / abs(v))
        identical_serial = bool(ser.tables["manual"].equals(table)
                                and warm.tables["manual"].equals(table))
        for pid in ids:
            voxels.append(int(par.diagnostics["manual"].loc[pid, f"{seqs[0]}_diagnostics_Mask-original_VoxelNum"]))
        prov = json.loads((work / f"{preset}_parallel" / "provenance.json").read_text())
        cpu = {name: sum(json.loads(f.read_text())["cpu_seconds"]
                         for f in (work / name / "cache").rglob("*.json"))
               for name in (f"{preset}_serial", f"{preset}_parallel")}
        rows.append({
            "preset": preset, "cases": n_cases, "features/case": table.shape[1] // len(seqs),
            "tumour voxels (median)": int(np.median(voxels)),
            "pyradiomics serial s/case": round(t_plain / n_cases, 3),
            "gliorad n_jobs=1 s/case": round(t_ser / n_cases, 3),
            f"n_jobs={args.jobs} cold s/case": round(t_par / n_cases, 3),
            f"n_jobs={args.jobs} warm s/case": round(t_warm / n_cases, 3),
            "speed-up cold vs pyradiomics": round(t_plain / t_par, 2),
            "speed-up warm vs pyradiomics": round(t_plain / t_warm, 2),
            "speed-up warm vs n_jobs=1": round(t_ser / t_warm, 2),
            "identical to pyradiomics": f"{n_equal}/{n_values}",
            "max rel diff": max_rel,
            "tables equal (1, cold, warm)": identical_serial,
            "CPU s/case n_jobs=1": round(cpu[f"{preset}_serial"] / n_cases, 3),
            f"CPU s/case n_jobs={args.jobs}": round(cpu[f"{preset}_parallel"] / n_cases, 3),
            "worker peak RSS MB": round(prov["worker_peak_rss_mb"], 1),
            "load avg before/after": f"{load_before}/{_load()}",
        })
    return {"rows": rows, "cohort": {"patients": args.patients, "spacing_mm": args.spacing,
                                     "paper_patients": args.paper_patients}}


#: Sections of this benchmark: name -> function(args, work_dir) -> {"rows": [...], ...}.
#: The deep-feature timing (features/deep.py) is to be registered here by its author.
SECTIONS: dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "radiomics": bench_radiomics,
}


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[f"{r[c]:.2e}" if isinstance(r[c], float) and c.startswith("max rel") else str(r[c])
              for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cols, width)),
             "-+-".join("-" * w for w in width)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, from: {', '.join(SECTIONS)}")
    p.add_argument("--presets", default="fast,paper", help="radiomics presets to time")
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--paper-patients", type=int, default=2,
                   help="patients for the (slow) paper presets; 2 sequences each")
    p.add_argument("--spacing", type=float, default=1.5)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fast preset, 4 patients at 3 mm")
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.patients, args.spacing = "fast", 4, 3.0
    args.presets = [s for s in args.presets.split(",") if s]
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {unknown}; expected: {', '.join(SECTIONS)}")
    import joblib
    import radiomics
    import SimpleITK as sitk

    results: dict = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "joblib_cpu_count": joblib.cpu_count(),
                    "pyradiomics": radiomics.__version__,
                    "SimpleITK": sitk.Version.VersionString()},
        "args": {k: v for k, v in vars(args).items()},
        "sections": {},
    }
    results["parallel_capacity_before"] = parallel_capacity(args.jobs)
    print(f"machine parallel capacity ({args.jobs} busy loops vs 1): "
          f"{results['parallel_capacity_before']}x, load {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gliorad-bench-features-") as tmp:
        for name in sections:
            print(f"== {name}", flush=True)
            work = Path(tmp) / name
            work.mkdir()
            res = SECTIONS[name](args, work)
            results["sections"][name] = res
            print(_table(res["rows"]), flush=True)
    results["parallel_capacity_after"] = parallel_capacity(args.jobs)
    print(f"machine parallel capacity after: {results['parallel_capacity_after']}x, "
          f"load {_load()}")
    results["peak_rss_main_mb"] = round(_rss_mb(), 1)
    print(f"peak RSS of this process: {results['peak_rss_main_mb']} MB")
    out = Path(__file__).parent / "out" / "features.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
