"""The shared progress bar (gliorad.progress): the layouts of training, prediction and radiomics."""

from __future__ import annotations

import sys

from gliorad.progress import ProgressBar


def test_disabled_bar_writes_nothing_and_needs_no_rich(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # importing it would fail
    with ProgressBar(False, 3, "predict", columns=("bar",), info="") as bar:
        bar.advance()
        bar.update(info="x")
    assert capsys.readouterr() == ("", "")


def test_named_and_text_columns_with_fields(capsys):
    columns = ("radiomics", "bar", "count", "{task.fields[failed]} failed", "elapsed", "remaining")
    with ProgressBar(True, 3, "radiomics", columns=columns, failed=0) as bar:
        for failed in (0, 1, 1):
            bar.advance(failed=failed)
    err = capsys.readouterr().err
    assert "radiomics" in err and "3/3" in err and "1 failed" in err


def test_default_columns_start_and_fields_update(capsys):
    bar = ProgressBar(True, 4, "predict")
    bar.advance(2)
    bar.close()
    assert "predict" in capsys.readouterr().err
    bar = ProgressBar(True, 5, "train", columns=("epoch", "count", "{task.fields[info]}"),
                      completed=2, info="")
    bar.update(info="step 1 loss 0.5")
    bar.advance(info="val_dice 0.8")
    bar.close()
    err = capsys.readouterr().err
    assert "3/5" in err and "val_dice 0.8" in err
