"""Stage graph: skip-if-unchanged, --from / --force / --until, atomic stage folders, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gliorad.errors import GlioradInputError
from gliorad.pipeline import RECORD, Stage, Workspace, outputs_hash, run_pipeline


def toy_stages(seed=0, scale=1.0, calls=None):
    calls = calls if calls is not None else []

    def make(ctx):
        calls.append("make")
        rng = np.random.default_rng(ctx.stage.settings["seed"])
        np.save(ctx.out_dir / "x.npy", rng.normal(size=100))

    def transform(ctx):
        calls.append("transform")
        x = np.load(ctx.input_dir("make") / "x.npy")
        np.save(ctx.out_dir / "y.npy", x * ctx.stage.settings["scale"])

    def summarise(ctx):
        calls.append("summarise")
        y = np.load(ctx.input_dir("transform") / "y.npy")
        (ctx.out_dir / "summary.json").write_text(json.dumps({"mean": float(y.mean())}))

    return [
        Stage("make", make, settings={"seed": seed}),
        Stage("transform", transform, inputs=("make",), settings={"scale": scale}),
        Stage("summarise", summarise, inputs=("transform",)),
    ], calls


def statuses(results):
    return [r.status for r in results]


def test_second_run_skips_everything(tmp_path):
    stages, calls = toy_stages()
    assert statuses(run_pipeline(stages, tmp_path)) == ["ran"] * 3
    assert statuses(run_pipeline(stages, tmp_path)) == ["skipped"] * 3
    assert calls == ["make", "transform", "summarise"]
    rec = Workspace(tmp_path).record("transform")
    assert rec["settings"] == {"scale": 1.0} and "numpy" in rec["versions"]
    assert rec["outputs_hash"] == outputs_hash(tmp_path / "transform")
    assert (tmp_path / "pipeline.log").read_text(encoding="utf-8").count("running") == 3


def test_changed_settings_rerun_that_stage_and_consumers(tmp_path):
    run_pipeline(toy_stages()[0], tmp_path)
    stages, calls = toy_stages(scale=2.0)
    assert statuses(run_pipeline(stages, tmp_path)) == ["skipped", "ran", "ran"]
    assert calls == ["transform", "summarise"]


def test_forced_stage_with_identical_outputs_does_not_rerun_consumers(tmp_path):
    run_pipeline(toy_stages()[0], tmp_path)
    stages, _ = toy_stages()
    assert statuses(run_pipeline(stages, tmp_path, force=["make"])) == ["ran", "skipped", "skipped"]
    assert statuses(run_pipeline(stages, tmp_path, from_stage="transform")) == ["skipped", "ran", "ran"]
    assert statuses(run_pipeline(stages, tmp_path, until="make", force=["make"])) == ["ran"]


def test_bad_stage_options_name_the_valid_stages(tmp_path):
    stages, _ = toy_stages()
    with pytest.raises(GlioradInputError, match=r"--force 'segment' is not a stage; expected one of: make, transform, summarise"):
        run_pipeline(stages, tmp_path, force=["segment"])
    with pytest.raises(GlioradInputError, match=r"reads \['make'\], which do not run before it"):
        run_pipeline(stages[1:], tmp_path)
    with pytest.raises(GlioradInputError, match=r"stage names must be unique"):
        run_pipeline(stages + stages[:1], tmp_path)


def test_undeclared_input_is_refused(tmp_path):
    def sneaky(ctx):
        ctx.input_dir("make")

    with pytest.raises(GlioradInputError, match=r"stage 'sneaky' reads 'make', which it does not declare"):
        run_pipeline([toy_stages()[0][0], Stage("sneaky", sneaky)], tmp_path)


def test_failing_stage_keeps_previous_output_and_leaves_no_partial_folder(tmp_path):
    run_pipeline(toy_stages()[0], tmp_path)
    before = outputs_hash(tmp_path / "transform")

    def broken(ctx):
        (ctx.out_dir / "y.npy").write_bytes(b"half")
        raise RuntimeError("out of memory")

    stages = toy_stages()[0]
    stages[1] = Stage("transform", broken, inputs=("make",), settings={"scale": 3.0})
    with pytest.raises(RuntimeError, match="out of memory"):
        run_pipeline(stages, tmp_path)
    assert outputs_hash(tmp_path / "transform") == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


SCRIPT = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import numpy as np
    from gliorad.pipeline import Stage, run_pipeline

    ws, slow = Path(sys.argv[1]), sys.argv[2] == "slow"

    def make(ctx):
        np.save(ctx.out_dir / "x.npy", np.random.default_rng(0).normal(size=1000))

    def chunks(ctx):
        x = np.load(ctx.input_dir("make") / "x.npy")
        for i in range(10):
            done = ctx.work_dir / f"part{i}.npy"      # resumable partial results
            if not done.exists():
                np.save(done, x[i * 100:(i + 1) * 100] ** 2)
                if slow and i == 4:
                    (ws / "READY").write_text("x")
                    time.sleep(60)
        parts = [np.load(ctx.work_dir / f"part{i}.npy") for i in range(10)]
        np.save(ctx.out_dir / "y.npy", np.concatenate(parts))

    def total(ctx):
        (ctx.out_dir / "total.txt").write_text(repr(float(np.load(ctx.input_dir("chunks") / "y.npy").sum())))

    res = run_pipeline([Stage("make", make), Stage("chunks", chunks, inputs=("make",)),
                        Stage("total", total, inputs=("chunks",))], ws)
    print(",".join(r.status for r in res))
''')


def test_sigkill_mid_stage_then_resume_matches_uninterrupted_run(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "slow"], env=env)
    deadline = time.time() + 60
    while not (killed / "READY").exists():
        assert time.time() < deadline and proc.poll() is None, "toy pipeline did not reach the stage"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "make" / RECORD).exists() and not (killed / "chunks").exists()
    out = subprocess.run([sys.executable, str(script), str(killed), "fast"], env=env,
                         capture_output=True, encoding="utf-8", check=True)
    assert out.stdout.strip() == "skipped,ran,ran"
    subprocess.run([sys.executable, str(script), str(clean), "fast"], env=env, check=True,
                   capture_output=True)
    for stage in ("make", "chunks", "total"):
        assert outputs_hash(killed / stage) == outputs_hash(clean / stage), stage
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")]
