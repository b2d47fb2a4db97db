"""Cohort stages on a Dask cluster (gliorad.executor): a scheduler and two single-threaded worker
processes started by the tests as separate processes on free ports, addressed as a cluster's
would be (``--scheduler tcp://127.0.0.1:PORT``).

Reference: the local path (the same per-case functions in this process). Radiomics tables and
predicted masks from the cluster must be byte-identical to it; a worker killed while it holds a
case must lose no case; a failing case must be retried, then reported in its place without
losing the others.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gliorad.errors import GlioradInputError
from gliorad.executor import CaseError, Executor, check_scheduler, run_cases

PY = sys.executable
# the per-case functions run single-threaded on a worker, as --nthreads 1 promises
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on this machine (the test's own)."""

    def __init__(self, logs: Path):
        self.logs, self.port = logs, _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {**os.environ, **ONE_THREAD}
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = self._start("scheduler", [
            "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
            "--port", str(self.port), "--dashboard-address", "127.0.0.1:0"])

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([PY, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.logs)

    def add_worker(self, name: str) -> None:
        self.workers[name] = self._start(name, [
            "-m", "distributed.cli.dask_worker", self.address, "--name", name, "--nworkers", "1",
            "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
            "--local-directory", str(self.logs / name)])

    def wait(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout) as c:
            c.wait_for_workers(n, timeout=timeout)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            _stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        c.wait(2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    from gliorad.synthetic import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("dasksynth") / "cohort"
    generate_cohort(root, SynthConfig(n_patients=4, seed=3, spacing=3.0), n_jobs=1)
    return root


def _cli(args: list[str]):
    from gliorad.cli import app

    return CliRunner().invoke(app, args)


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ------------------------------------------------------------------------- the cohort stages
def test_radiomics_on_the_cluster_is_byte_identical_to_the_local_path(cluster, cohort_dir,
                                                                      tmp_path):
    common = ["features", "radiomics", str(cohort_dir), "--sequences", "t1ce,flair",
              "--no-progress"]
    local = _cli([*common, "--out", str(tmp_path / "local"), "--jobs", "1"])
    assert local.exit_code == 0, local.output
    dask = _cli([*common, "--out", str(tmp_path / "dask"), "--scheduler", cluster.address])
    assert dask.exit_code == 0, dask.output
    assert f"dask: {cluster.address}, 2 worker(s); dashboard http://127.0.0.1:" in dask.output
    assert "manual: 4 patients" in dask.output and "cases computed 8, from cache 0" in dask.output
    _same_files(tmp_path / "local", tmp_path / "dask",
                ["radiomics_manual.csv", "diagnostics_manual.csv", "failures.csv"])
    # a rerun (a client killed and started again) computes nothing: the cache holds every case
    again = _cli([*common, "--out", str(tmp_path / "dask"), "--scheduler", cluster.address])
    assert again.exit_code == 0 and "cases computed 0, from cache 8" in again.output


def test_segmentation_prediction_on_the_cluster_is_byte_identical(cluster, cohort_dir, tmp_path):
    from gliorad.segmentation import SegmentationConfig, get_preset, train_segmentation
    from gliorad.settings import merge

    tiny = {"spacing": 6.0, "patch_size": [16, 16, 16], "samples_per_volume": 1,
            "net": {"features": [2, 4], "bottleneck": 4, "expand_channels": 4},
            "train": {"epochs": 1, "batch_size": 1, "device": "cpu"}, "val_fraction": 0.34,
            "inference": {"roi_size": [32, 32, 32], "device": "cpu", "min_component_ml": 0.0}}
    cfg = SegmentationConfig.model_validate(merge(get_preset("demo").model_dump(), tiny))
    from gliorad.cohort import discover_cohort

    train_segmentation(discover_cohort(cohort_dir), tmp_path / "model", cfg, progress=False)
    common = ["segment", "predict", str(cohort_dir), "--model", str(tmp_path / "model"),
              "--no-progress"]
    local = _cli([*common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    dask = _cli([*common, "--out", str(tmp_path / "dask"), "--scheduler", cluster.address])
    assert dask.exit_code == 0, dask.output
    assert "4 masks" in dask.output
    ids = sorted(p.name for p in cohort_dir.iterdir() if p.is_dir())
    _same_files(tmp_path / "local", tmp_path / "dask", [f"{pid}.nii.gz" for pid in ids])
    pred = yaml.safe_load((tmp_path / "dask" / "prediction.json").read_text(encoding="utf-8"))
    assert sorted(pred["patients"]) == ids
    assert any(rec["tumour_voxels"] for rec in pred["patients"].values())  # masks, not blanks


def test_deep_network_inputs_prepared_on_the_cluster_equal_the_local_ones(cluster, cohort_dir):
    import numpy as np

    from gliorad.cohort import discover_cohort
    from gliorad.features import deep
    from gliorad.features.deep3d import CNN3D

    cfg = CNN3D.load_config("demo")
    cohort = discover_cohort(cohort_dir)
    files = deep.input_files(cohort, cohort.ids, cfg.sequences, None, need_mask=True)
    settings = CNN3D.case_settings(cfg)
    local = deep.prepare_all(CNN3D.prepare_one, files, settings, 1)
    remote = deep.prepare_all(CNN3D.prepare_one, files, settings, 1,
                              Executor("dask", cluster.address, echo=lambda _line: None))
    assert list(remote[0]) == cohort.ids and remote[1] == local[1]
    for pid in cohort.ids:
        np.testing.assert_array_equal(remote[0][pid], local[0][pid])


def test_a_worker_killed_while_it_holds_a_case_loses_no_case(cluster, cohort_dir, tmp_path):
    """The scheduler moves the dead worker's case to the other one: every case is in the table,
    with the local path's values."""
    from distributed import Client

    from gliorad.features.radiomics import extract_radiomics

    seqs = ["t1", "t1ce", "t2", "flair"]
    ref = extract_radiomics(cohort_dir, tmp_path / "local", sequences=seqs, n_jobs=1,
                            progress=False)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = extract_radiomics(
                cohort_dir, tmp_path / "dask", sequences=seqs, progress=False,
                executor=Executor("dask", cluster.address, echo=lambda _line: None))
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run)
    with Client(cluster.address, timeout=30) as watch:
        names = {w["name"]: a for a, w in watch.scheduler_info()["workers"].items()}
        thread.start()
        deadline = time.monotonic() + 120
        while not watch.processing(workers=[names["w2"]]).get(names["w2"]):
            assert time.monotonic() < deadline and thread.is_alive(), "w2 never took a case"
            time.sleep(0.02)
        os.kill(cluster.workers["w2"].pid, signal.SIGKILL)  # while it holds a case
        thread.join(180)
    try:
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        res = outcome["result"]
        assert res.n_computed == 16 and len(res.failures) == 0
        _same_files(tmp_path / "local", tmp_path / "dask",
                    ["radiomics_manual.csv", "diagnostics_manual.csv"])
        assert res.tables["manual"].equals(ref.tables["manual"])
    finally:  # the next tests get two workers again
        cluster.add_worker("w3")
        cluster.wait(2)


# ------------------------------------------------------------------ retries and lost cases
def _flaky():
    """A case that fails the first time it sees ``item`` (a marker file on shared storage), and
    always for item 2. Made here: the workers cannot import this test module, and a local
    function travels by value."""

    def case(item: int, marks: str) -> int:
        mark = Path(marks) / f"{item}.tried"
        if item == 2 or not mark.exists():
            mark.touch()
            raise RuntimeError(f"case {item} broke")
        return item * 10

    return case


def test_failing_cases_are_retried_then_reported_in_place(cluster, tmp_path):
    lines: list[str] = []
    ex = Executor("dask", cluster.address, retries=1, echo=lines.append)
    got = run_cases(_flaky(), [0, 1, 2, 3], executor=ex, names=["a", "b", "c", "d"],
                    shared={"marks": str(tmp_path)})
    assert got[:2] == [0, 10] and got[3] == 30  # failed once, then the retry succeeded
    assert got[2] == CaseError("c", "RuntimeError: case 2 broke")
    assert len(lines) == 1 and lines[0].startswith(f"dask: {cluster.address}, 2 worker(s)")
    # no retries: the first failure is the case's result; the others are untouched
    for m in tmp_path.glob("*.tried"):
        m.unlink()
    seen: list[int] = []
    got = run_cases(_flaky(), [0, 5], executor=Executor("dask", cluster.address, retries=0,
                                                        echo=lines.append),
                    shared={"marks": str(tmp_path)}, on_result=lambda i, r: seen.append(i))
    assert [type(r) for r in got] == [CaseError, CaseError] and sorted(seen) == [0, 1]


def test_validate_and_preprocess_through_the_cluster(cluster, cohort_dir, tmp_path):
    ok = _cli(["validate", str(cohort_dir), "--scheduler", cluster.address])
    assert ok.exit_code == 0, ok.output
    local = _cli(["validate", str(cohort_dir)])
    assert local.output.startswith("ok: ") and ok.output.splitlines()[-1] == local.output.strip()
    # the brats preset (z-score only) of two patients: the same files as the local path
    raw = tmp_path / "raw"
    ids = sorted(p.name for p in cohort_dir.iterdir() if p.is_dir())[:2]
    for pid in ids:
        (raw / pid).mkdir(parents=True)
        for f in (cohort_dir / pid).iterdir():
            (raw / pid / f.name).write_bytes(f.read_bytes())
    res = {}
    for where, extra in (("local", []), ("dask", ["--scheduler", cluster.address])):
        res[where] = _cli(["preprocess", str(raw), str(tmp_path / where), "--preset", "brats",
                           *extra])
        assert res[where].exit_code == 0, res[where].output
    assert "2 done, 0 skipped, 0 failed" in res["dask"].output
    for pid in ids:
        names = sorted(f.name for f in (tmp_path / "local" / pid).iterdir()
                       if f.suffix == ".gz")
        assert names and names == sorted(f.name for f in (tmp_path / "dask" / pid).iterdir()
                                         if f.suffix == ".gz")
        _same_files(tmp_path / "local" / pid, tmp_path / "dask" / pid, names)


# ------------------------------------------------------------------------- no cluster needed
def test_no_scheduler_address_starts_a_local_dask_cluster():
    lines: list[str] = []
    got = run_cases(abs, [-1, 2, -3], executor=Executor("dask", None, n_workers=1,
                                                        echo=lines.append))
    assert got == [1, 2, 3]
    assert len(lines) == 1 and ", 1 worker(s); dashboard http://" in lines[0]


def test_local_run_cases_keeps_order_and_raises():
    assert run_cases(abs, [-3, 2, -1]) == [3, 2, 1]
    assert run_cases(abs, [-3, 2, -1], jobs=2) == [3, 2, 1]  # loky processes, item order
    assert run_cases(abs, []) == []
    with pytest.raises(TypeError):
        run_cases(abs, ["x"])


@pytest.mark.parametrize("address", ["localhost", "tcp://host", "tcp://h:0", "h:99999",
                                     "http://h:8786", "tcp://a b:8786"])
def test_bad_scheduler_addresses(address):
    with pytest.raises(GlioradInputError, match=r"not a Dask scheduler address; expected "
                                                 r"scheme://host:port such as tcp://"):
        check_scheduler(address)
    r = _cli(["validate", ".", "--scheduler", address])
    assert r.exit_code == 2 and "error: --scheduler" in r.output


def test_good_scheduler_addresses_and_executor_checks():
    for a in ("tcp://127.0.0.1:8786", "10.0.0.5:8786", "tls://node-1.cluster:8786",
              "tcp://[::1]:8786"):
        assert check_scheduler(a) == a
    assert Executor.from_options(None) is None
    assert Executor.from_options("local", jobs=3) == Executor("dask", None, n_workers=3)
    with pytest.raises(GlioradInputError, match=r"executor 'spark' is not valid"):
        Executor("spark")
    with pytest.raises(GlioradInputError, match=r"scheduler 'tcp://h:1' given with the local"):
        Executor("local", "tcp://h:1")
    with pytest.raises(GlioradInputError, match=r"retries -1: expected 0 or more"):
        Executor("dask", retries=-1)


def test_no_scheduler_at_the_address(monkeypatch):
    import gliorad.executor as ex

    monkeypatch.setattr(ex, "CONNECT_TIMEOUT_S", 1)
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(GlioradInputError, match=rf"Dask scheduler {address}: no answer .*"
                                                 r"start one with 'dask scheduler'"):
        run_cases(abs, [1], executor=Executor("dask", address, echo=lambda _l: None))


def test_run_settings_dump_unchanged_at_default_and_checked():
    from gliorad.run_config import RunSettings
    from gliorad.settings import validate

    assert RunSettings().model_dump() == {"seed": 0, "n_jobs": 2, "nonfinite": "missing"}
    s = RunSettings(executor="dask", scheduler="tcp://10.0.0.5:8786", retries=4)
    assert s.model_dump()["scheduler"] == "tcp://10.0.0.5:8786"
    assert Executor.of(s) == Executor("dask", "tcp://10.0.0.5:8786", retries=4)
    assert Executor.of(RunSettings()) is None
    with pytest.raises(GlioradInputError, match=r"run.yaml: run: scheduler 'tcp://h:1' is set "
                                                 r"but executor is 'local'; set executor: dask"):
        validate(RunSettings, {"scheduler": "tcp://h:1"}, "run.yaml", "run")
    with pytest.raises(GlioradInputError, match=r"run.yaml: run.scheduler: not a Dask scheduler "
                                                 r"address"):
        validate(RunSettings, {"executor": "dask", "scheduler": "nohost"}, "run.yaml", "run")
    with pytest.raises(GlioradInputError, match=r"run.yaml: run.executor: Input should be"):
        validate(RunSettings, {"executor": "ray"}, "run.yaml", "run")
