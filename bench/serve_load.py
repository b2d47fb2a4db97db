"""Benchmark: ``gliorad serve`` under a burst of uploads on loopback.

    .venv/bin/python bench/serve_load.py [--quick] [--jobs 50] [--workers 1,2]
                                         [--bundle DIR --patient DIR]

For each number of prediction processes (``--workers``), the script starts ``gliorad serve`` as
a child process on a free 127.0.0.1 port (with a token and its own data folder), waits until
every prediction process has the bundle loaded, then sends ``--jobs`` uploads at once, one
thread each (the patient's sequences as NIfTI files, clinical values), and polls every job
until it is done or failed (at most 15 minutes), then stops the service with SIGINT.

Default inputs: the small bundle of ``tests/test_bundle.py`` (built in a temporary folder,
about 15 s) and its held-out synthetic patient (three 4 mm sequences, about 140 kB); with
``--bundle`` give a ``--patient`` folder too (BraTS naming). ``--quick``: 20 uploads, two
processes.

Measured per run: uploads accepted, jobs done / failed / lost (accepted but never finished),
wall time from the first upload to the last job done, throughput, the upload answer's latency
(median / 95th percentile / max), each job's wait in the queue and run time (the service's
millisecond timestamps), the most jobs running at once (from those intervals), and the peak
resident memory of the service and its prediction processes (``VmHWM``). Prints a table and
writes bench/out/serve_load.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _harness import Column, format_table, load_average, machine_info, write_results

HERE = Path(__file__).resolve().parent
CLINICAL = {"age": "45", "grade": "III", "histology": "astrocytoma"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _t(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def _pct(values: list[float], q: float) -> float:
    vals = sorted(values)
    return vals[min(len(vals) - 1, max(0, round(q * (len(vals) - 1))))] if vals else float("nan")


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                    key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def run_case(bundle: Path, patient: Path, n_jobs: int, workers: int) -> dict:
    import httpx

    files = sorted(p for p in patient.iterdir() if p.name.endswith((".nii.gz", ".nii"))
                   and not p.name.split(".")[0].endswith("seg"))
    payload = []
    for p in files:
        seq = p.name.split(".")[0].rsplit("_", 1)[-1]
        payload.append((seq, (p.name, p.read_bytes(), "application/gzip")))
    token = secrets.token_urlsafe(24)
    port = _free_port()
    data = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    exe = Path(sys.executable).with_name("gliorad")
    cmd = [str(exe), "serve", "--bundle", str(bundle), "--port", str(port), "--workers",
           str(workers), "--token", token, "--data", str(data), "--max-queue", str(n_jobs + 8),
           "--threads", "1"]
    log = open(data.parent / f"{data.name}.log", "w")  # noqa: SIM115 - closed below
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=300,
                          limits=httpx.Limits(max_connections=n_jobs)) as client:
            while True:
                if proc.poll() is not None:
                    sys.exit(f"gliorad serve exited ({proc.returncode}); see {log.name}")
                try:
                    info = client.get("/api/info").json()
                    if info["jobs"]["workers_ready"] == workers:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t_start > 600:
                    sys.exit("the service did not get ready in 10 minutes")
                time.sleep(0.2)
            ready_s = time.perf_counter() - t_start

            def upload(i: int) -> tuple[int, str | None, float]:
                t0 = time.perf_counter()
                r = client.post("/api/jobs", files=payload,
                                data={"clinical": json.dumps(CLINICAL), "patient_id": f"B{i:03d}"})
                return r.status_code, (r.json().get("id") if r.status_code == 202 else None), \
                    time.perf_counter() - t0

            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(n_jobs) as pool:
                answers = list(pool.map(upload, range(n_jobs)))
            ids = [a[1] for a in answers if a[1]]
            status: dict[str, dict] = {}
            last_done = t0
            while time.perf_counter() - t0 < 900:
                pending = [j for j in ids if status.get(j, {}).get("status") not in ("done", "failed")]
                if not pending:
                    break
                for j in pending:
                    r = client.get(f"/api/jobs/{j}")
                    status[j] = r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}
                    if status[j]["status"] in ("done", "failed"):
                        last_done = time.perf_counter()
                time.sleep(0.25)
            peak = _hwm_mb(proc.pid) + sum(_hwm_mb(c) for c in _children(proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    shutil.rmtree(data, ignore_errors=True)
    if proc.returncode == 0:
        Path(log.name).unlink(missing_ok=True)
    else:
        print(f"gliorad serve exited with {proc.returncode}: see {log.name}", file=sys.stderr)
    done = [s for s in status.values() if s.get("status") == "done"]
    failed = [s for s in status.values() if s.get("status") == "failed"]
    waits = [_t(s["started"]) - _t(s["created"]) for s in done]
    runs = [_t(s["finished"]) - _t(s["started"]) for s in done]
    latency = [a[2] for a in answers]
    return {
        "case": f"{n_jobs} uploads, {workers} process{'es' if workers > 1 else ''}",
        "jobs": n_jobs, "workers": workers, "accepted": len(ids), "done": len(done),
        "failed": len(failed), "lost": len(ids) - len(done) - len(failed),
        "rejected": n_jobs - len(ids), "service_ready_s": ready_s,
        "wall_s": last_done - t0, "jobs_per_min": 60 * len(done) / max(last_done - t0, 1e-9),
        "upload_p50_s": statistics.median(latency), "upload_p95_s": _pct(latency, 0.95),
        "upload_max_s": max(latency),
        "queue_wait_median_s": statistics.median(waits) if waits else float("nan"),
        "queue_wait_max_s": max(waits) if waits else float("nan"),
        "run_median_s": statistics.median(runs) if runs else float("nan"),
        "run_max_s": max(runs) if runs else float("nan"),
        "most_running_at_once": _most_at_once([(_t(s["started"]), _t(s["finished"])) for s in done]),
        "peak_rss_mb": peak, "exit_code": proc.returncode,
        "failures": [s.get("error") for s in failed][:5],
    }


COLUMNS = (Column("case", "case", align="<"), Column("done", "done"), Column("failed", "failed"),
           Column("lost", "lost"), Column("wall s", "wall_s", ".1f"),
           Column("jobs/min", "jobs_per_min", ".1f"),
           Column("upload p50/p95 s", lambda r: f"{r['upload_p50_s']:.2f}/{r['upload_p95_s']:.2f}"),
           Column("wait med/max s", lambda r: f"{r['queue_wait_median_s']:.1f}/{r['queue_wait_max_s']:.1f}"),
           Column("run med s", "run_median_s", ".2f"), Column("at once", "most_running_at_once"),
           Column("peak MiB", "peak_rss_mb", ".0f"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 uploads, 2 processes")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="comma-separated process counts")
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--patient", type=Path)
    args = parser.parse_args(argv)
    n_jobs, workers = (20, [2]) if args.quick else (args.jobs, [int(w) for w in args.workers.split(",")])
    tmp = None
    if args.bundle is None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from test_bundle import build_bundle

        tmp = Path(tempfile.mkdtemp(prefix="bench-serve-bundle-"))
        built = build_bundle(tmp)
        bundle, patient = built.bundle, built.cohort / built.held_out
    else:
        if args.patient is None:
            parser.error("--bundle needs --patient (a folder with the patient's sequences)")
        bundle, patient = args.bundle, args.patient
    load0 = load_average()
    results = [run_case(bundle, patient, n_jobs, w) for w in workers]
    print(format_table(results, COLUMNS))
    write_results("serve_load", {
        "machine": machine_info("platform", "machine", "python", "cpus", "memory_gb",
                                load_average_at_start=load0, load_average_at_end=load_average()),
        "inputs": {"bundle": str(bundle) if args.bundle else "tests/test_bundle.py build_bundle",
                   "patient": patient.name, "files": sorted(p.name for p in patient.iterdir())},
        "results": results})
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [r for r in results if r["failed"] or r["lost"] or r["rejected"]]
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
