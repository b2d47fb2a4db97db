"""The command line, in process (typer's CliRunner): exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from gliorad.cli import app
from gliorad.commands._common import Options, command_group, with_options

runner = CliRunner()


def test_help_and_version():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("validate", "synth", "demo", "features", "grade", "survival", "preprocess", "segment",
                "run", "config", "report"):
        assert cmd in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("gliorad ")


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from gliorad.cli import app; "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'pandas', 'radiomics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", check=True)
    assert out.stdout.strip() == "[]"


def test_validate_ok_exit_0(make_cohort):
    root = make_cohort(ids=("P1",))
    res = runner.invoke(app, ["validate", str(root)])
    assert res.exit_code == 0, res.output
    assert "ok: 1 patients (brats2018 naming)" in res.output


def test_validate_problems_exit_2_one_line_each(make_cohort, tmp_path):
    root = make_cohort(ids=("P1", "P2"))
    (root / "P1" / "P1_t2.nii.gz").unlink()
    csv = tmp_path / "clin.csv"
    csv.write_text("patient_id,age,event\nP1,abc,0\nP2,40,3\n")
    res = runner.invoke(app, ["validate", str(root), "--clinical", str(csv)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 3, res.output
    assert "patient P1: missing t2 file (expected P1_t2.nii.gz)" in lines[0]
    assert "clin.csv row 2 (patient P1): column 'age' value 'abc' is not a number" in lines[1]
    assert "clin.csv row 3 (patient P2): column 'event' value '3' is not valid" in lines[2]


def test_validate_options_sequences_and_time_unit(make_cohort, tmp_path):
    root = make_cohort(ids=("P1",), sequences=("t1ce",), seg=False)
    assert runner.invoke(app, ["validate", str(root)]).exit_code == 2
    assert runner.invoke(app, ["validate", str(root), "--sequences", "t1ce"]).exit_code == 0
    res = runner.invoke(app, ["validate", str(root), "--sequences", "t1ce", "--time-unit", "weeks"])
    assert res.exit_code == 2
    assert "--time-unit 'weeks' is not valid; expected one of: days, months, years" in res.output


def test_validate_bad_config_file_names_key(make_cohort, tmp_path):
    root = make_cohort(ids=("P1",))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cohort:\n  sequence: [t1]\n")
    res = runner.invoke(app, ["validate", str(root), "--config", str(cfg)])
    assert res.exit_code == 2
    assert "c.yaml: cohort.sequence: Extra inputs are not permitted" in res.output


def test_synth_then_validate_then_refuse_overwrite(tmp_path):
    out = tmp_path / "syn"
    res = runner.invoke(app, ["synth", str(out), "--patients", "3", "--seed", "2", "--spacing", "4"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 patients" in res.output
    res = runner.invoke(app, ["validate", str(out), "--config", str(out / "cohort.yaml")])
    assert res.exit_code == 0, res.output
    assert "clinical table with 3 rows" in res.output
    res = runner.invoke(app, ["synth", str(out), "--patients", "3"])
    assert res.exit_code == 2 and "pass overwrite" in res.output


def test_demo_runs_stages_and_resumes(tmp_path):
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["demo", "--workspace", str(ws), "--patients", "40", "--until", "validate"])
    assert res.exit_code == 0, res.output
    assert "[1/12] cohort: running" in res.output and "[2/12] validate: done" in res.output
    assert "stopped after stage 'validate'" in res.output
    res = runner.invoke(app, ["demo", "--workspace", str(ws), "--patients", "40", "--until", "validate"])
    assert res.exit_code == 0 and "cohort: up to date, skipped" in res.output
    res = runner.invoke(app, ["demo", "--workspace", str(ws), "--until", "segmentation"])
    assert res.exit_code == 2 and "is not a stage; expected one of: cohort, validate" in res.output


# ------------------------------------------------------------------------ option groups
def _pair(
    first: Annotated[int, typer.Option(help="First of the pair.")] = 1,
    second: Annotated[str, typer.Option(help="Second of the pair.")] = "b",
) -> None:
    """A group's template (never called)."""


PAIR = Options(_pair)
SECOND_AND_THIRD = PAIR.without("first").plus(
    "third", Annotated[float, typer.Option(help="Third, added.")], 0.5)


def test_option_groups_stand_in_place_and_arrive_together():
    """commands._common: a group declared once stands where a command names it (its --help
    too) and reaches the command as one namespace; without() / plus() derive a group."""
    toy = command_group("toy", "Toy commands.")
    got = {}

    @toy.command()
    @with_options
    def one(
        name: Annotated[str, typer.Argument(help="A name.")],
        pair: SimpleNamespace = PAIR,
        last: Annotated[bool, typer.Option(help="The last option.")] = False,
    ) -> None:
        got["one"] = (name, vars(pair), last)

    @toy.command()
    @with_options
    def two(pair: SimpleNamespace = SECOND_AND_THIRD) -> None:
        got["two"] = vars(pair)

    res = runner.invoke(toy, ["one", "x", "--second", "s", "--last"])
    assert res.exit_code == 0, res.output
    assert got["one"] == ("x", {"first": 1, "second": "s"}, True)
    res = runner.invoke(toy, ["two", "--third", "2"])
    assert res.exit_code == 0, res.output
    assert got["two"] == {"second": "b", "third": 2.0}
    text = runner.invoke(toy, ["one", "--help"], env={"COLUMNS": "200"}).output
    assert 0 < text.index("--first") < text.index("--second") < text.index("--last")
    text = runner.invoke(toy, ["two", "--help"], env={"COLUMNS": "200"}).output
    assert "--first" not in text and "Third, added." in text
    with pytest.raises(ValueError, match=r"no option\(s\) \['nope'\] in this group"):
        PAIR.without("nope")
