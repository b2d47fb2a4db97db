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
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _harness import (
    Column,
    Stopwatch,
    format_table,
    load_average,
    machine_info,
    run_child,
    write_results,
)


def _rss_mb() -> float:
    from gliorad.features.radiomics import peak_rss_mb as _peak_rss_mb

    return _peak_rss_mb()


def _load() -> float:
    return load_average()[0]


def _spin(n: int = 20_000_000) -> float:
    with Stopwatch() as clock:
        acc = 0
        for i in range(n):
            acc += i
    return clock.wall_s


def parallel_capacity(jobs: int) -> float:
    """Throughput speed-up of ``jobs`` pure-Python busy loops run in parallel processes over one:
    the ceiling any parallel code can reach on this machine right now (about ``jobs`` on idle
    cores; near 1 when other users' jobs already fill the cores)."""
    import multiprocessing as mp

    one = _spin()
    with Stopwatch() as clock, mp.get_context("spawn").Pool(jobs) as pool:
        pool.map(_spin, [20_000_000] * jobs)
    return round(jobs * one / clock.wall_s, 2)


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
    with Stopwatch() as clock:
        ex = featureextractor.RadiomicsFeatureExtractor(str(preset_path(preset)))
        with threadpool_limits(limits=1):  # BLAS too (numpy eigvals in GLCM MCC)
            for pid in cohort.ids:
                seg = sitk.ReadImage(str(cohort.patients[pid].seg))
                mask = seg > 0
                for seq in sequences:
                    res = ex.execute(str(cohort.image_path(pid, seq)), mask, label=1)
                    values[(pid, seq)] = {k: float(v) for k, v in res.items()
                                          if not k.startswith("diagnostics_")}
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)
    return clock.wall_s, values


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
    with Stopwatch() as clock:
        res = extract_radiomics(cohort, out, params=preset, sequences=sequences, n_jobs=jobs,
                                progress=False, overwrite=True)
    return clock.wall_s, res


def bench_radiomics(args: argparse.Namespace, work: Path) -> dict:
    from gliorad.cohort import discover_cohort
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = work / "cohort"
    with Stopwatch() as clock:
        generate_cohort(root, SynthConfig(n_patients=args.patients, seed=2024,
                                          spacing=args.spacing), n_jobs=args.jobs)
    print(f"synthetic cohort: {args.patients} patients at {args.spacing} mm "
          f"({clock.wall_s:.1f} s)", flush=True)
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
        prov = json.loads((work / f"{preset}_parallel" / "provenance.json").read_text(encoding="utf-8"))
        cpu = {name: sum(json.loads(f.read_text(encoding="utf-8"))["cpu_seconds"]
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
    """Every key of the first row as a left-aligned column (``max rel ...`` floats as 1.23e-04)."""
    if not rows:
        return "(no rows)"

    def cell(key: str) -> Callable[[dict], str]:
        return lambda r: (f"{r[key]:.2e}" if isinstance(r[key], float) and key.startswith("max rel")
                          else str(r[key]))

    return format_table(rows, [Column(k, cell(k), align="<") for k in rows[0]], sep=" | ",
                        rule="-+-")


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
        "machine": machine_info("platform", "python", "cpu_count",
                                joblib_cpu_count=joblib.cpu_count(),
                                pyradiomics=radiomics.__version__,
                                SimpleITK=sitk.Version.VersionString()),
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
    write_results("features", results, default=str)
    return 0



# ================================================================================================
# Deep-feature section (features/deep3d.py, features/deep2d.py). Added by the deep-feature
# author; everything above is unchanged. Registered as SECTIONS["deep"] at the end of this block.
#
#     .venv/bin/python bench/features.py --sections deep [--quick] [--jobs N]
#
# On a seeded synthetic cohort (120 patients at 3 mm, seed 2024; --quick: 24 patients, 1 epoch),
# stratified 70/30 split (seed 0): the 3D CNN (demo preset: ResNet18 + SE, 32x40x32 patches,
# 4 epochs, batch 8) and the 2D dual-task CNN (demo preset: ResNet18, 80x80 largest slices, LGG
# training patients, 20 epochs; no ImageNet file, so from scratch), each in a fresh process with
# torch using --jobs threads. Reported per network: training seconds, input preparation and
# feature extraction seconds per patient, held-out metrics (3D: HGG-vs-LGG AUC of the network's
# own probability with DeLong 95% CI; 2D: grade III-vs-II AUC and C-index on held-out LGG
# patients), peak resident memory of that process (VmHWM). Then the extraction time per patient
# at the paper's input sizes (96x128x96 3D patch, 3x240x240 slice; untrained true ResNet18, eval
# mode, CPU). Also writes bench/out/features_deep.json (the section alone). 120 patients rather
# than 70-80: with 50 training patients the from-scratch ResNet18 over-fits (held-out AUC near
# 0.5 in every setting tried); with 84 it generalises.
# ================================================================================================
DEEP_PATIENTS, DEEP_SPACING, DEEP_SEED = 120, 3.0, 2024


def _deep_child(spec_json: str) -> None:
    """Run in a child process: one network trained and extracted, or the paper-size timing;
    prints one JSON line."""
    import torch

    spec = json.loads(spec_json)
    torch.set_num_threads(int(spec["threads"]))
    from gliorad.features.radiomics import peak_rss_mb as _peak_rss_mb

    if spec["kind"] == "paper_forward":
        from gliorad.features.deep2d import build_network_2d, load_deep2d_config
        from gliorad.features.deep3d import build_network_3d, load_deep3d_config

        out = {}
        for name, net, shape in (
                ("3d", build_network_3d(load_deep3d_config("paper")), (1, 3, 96, 128, 96)),
                ("2d", build_network_2d(load_deep2d_config("paper")), (1, 3, 240, 240))):
            net.eval()
            x = torch.randn(*shape)
            times = []
            with torch.no_grad():
                for _ in range(3):
                    t0 = time.perf_counter()
                    net.features(x)
                    times.append(time.perf_counter() - t0)
            out[name] = {"seconds_per_patient": min(times[1:]), "first_call_s": times[0]}
        out["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return
    import warnings

    from gliorad.clinical import read_clinical
    from gliorad.features.deep import with_changes

    clin = read_clinical(Path(spec["root"]) / "clinical.csv")
    if spec["kind"] == "cnn3d":
        from gliorad.features.deep3d import deep_features_3d as run
        from gliorad.features.deep3d import load_deep3d_config as load
    else:
        from gliorad.features.deep2d import deep_features_2d as run
        from gliorad.features.deep2d import load_deep2d_config as load
    cfg = load("demo")
    if spec.get("epochs"):
        cfg = with_changes(cfg, {"train": {"epochs": spec["epochs"]}})
    with Stopwatch() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 2D net trains from scratch here
        res = run(spec["root"], clin, spec["train"], spec["out"], cfg, progress=False)
    prov = res.provenance
    print(json.dumps({"wall_s": clock.wall_s, "seconds": prov["seconds"], "metrics": res.metrics,
                      "shape": list(res.table.shape), "n_train": len(res.train_ids),
                      "epochs": prov["training"]["epochs_run"], "peak_rss_mb": _peak_rss_mb()}))


def _run_deep_child(spec: dict) -> dict:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import features; "
            "features._deep_child(sys.argv[2])")
    return run_child(["-c", code, str(Path(__file__).parent), json.dumps(spec)],
                     what=f"deep child {spec['kind']}")


def _fmt_auc(m: dict | None) -> str:
    if not m or m.get("auc") is None:
        return "n/a"
    return f"{m['auc']:.3f} ({m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}), n={m['n_pos']}+{m['n_neg']}"


def bench_deep(args: argparse.Namespace, work: Path) -> dict:
    from gliorad.clinical import read_clinical
    from gliorad.features.deep import stratified_split
    from gliorad.synthetic import SynthConfig, generate_cohort

    n = 24 if args.quick else DEEP_PATIENTS
    epochs = 1 if args.quick else None
    root = work / "cohort"
    with Stopwatch() as clock:
        generate_cohort(root, SynthConfig(n_patients=n, seed=DEEP_SEED, spacing=DEEP_SPACING),
                        n_jobs=args.jobs)
    print(f"synthetic cohort: {n} patients at {DEEP_SPACING} mm ({clock.wall_s:.1f} s)",
          flush=True)
    clin = read_clinical(root / "clinical.csv")
    y = (clin["grade_group"] == "HGG").astype(int)
    train, test = stratified_split(y, 0.3, 0)
    truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))["oracle"]
    rows, raw = [], {}
    for kind in ("cnn3d", "cnn2d"):
        load_before = _load()
        r = _run_deep_child({"kind": kind, "root": str(root), "out": str(work / kind),
                             "train": train, "threads": args.jobs, "epochs": epochs})
        raw[kind] = r
        sec, m = r["seconds"], r["metrics"].get("test", {})
        held = (f"HGG vs LGG AUC {_fmt_auc(m)}" if kind == "cnn3d" else
                f"II vs III AUC {_fmt_auc(m.get('grade'))}; C-index "
                + (f"{m['survival']['cindex']:.3f} ({m['survival']['ci_low']:.3f}-"
                   f"{m['survival']['ci_high']:.3f})" if m.get("survival", {}).get("cindex")
                   is not None else "n/a"))
        rows.append({
            "network": "3D ResNet18+SE, 32x40x32 patch" if kind == "cnn3d"
            else "2D ResNet18 dual, 3x80x80 slice",
            "patients (train/all)": f"{r['n_train']}/{r['shape'][0]}",
            "features": r["shape"][1], "epochs": r["epochs"],
            "train s": round(sec["train"], 1),
            "prepare s/patient": round(sec["prepare"] / r["shape"][0], 3),
            "extract s/patient": round(sec["extract_per_patient"], 4),
            "held-out": held,
            "peak RSS MB": round(r["peak_rss_mb"], 1),
            "load avg before/after": f"{load_before}/{_load()}",
        })
        print(f"  {kind}: {rows[-1]}", flush=True)
    paper = _run_deep_child({"kind": "paper_forward", "threads": args.jobs})
    raw["paper_forward"] = paper
    for name, label in (("3d", "3D ResNet18+SE, 3x96x128x96 (paper)"),
                        ("2d", "2D ResNet18 dual, 3x240x240 (paper)")):
        rows.append({"network": label, "patients (train/all)": "-", "features": 512,
                     "epochs": "-", "train s": "-", "prepare s/patient": "-",
                     "extract s/patient": round(paper[name]["seconds_per_patient"], 3),
                     "held-out": "(untrained: timing only)",
                     "peak RSS MB": round(paper["peak_rss_mb"], 1),
                     "load avg before/after": f"-/{_load()}"})
    result = {"rows": rows, "raw": raw,
              "cohort": {"patients": n, "spacing_mm": DEEP_SPACING, "seed": DEEP_SEED,
                         "split": "stratified 70/30, seed 0", "n_train": len(train),
                         "n_test": len(test), "oracle": truth},
              "torch_threads": args.jobs}
    write_results("features_deep", result, default=str, echo=False)
    return result


SECTIONS["deep"] = bench_deep

if __name__ == "__main__":
    sys.exit(main())
