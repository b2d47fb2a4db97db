"""gliorad.provenance: the one fingerprint / skip / output-folder helper of stages and commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gliorad.errors import GlioradInputError
from gliorad.provenance import PROVENANCE, digest, finished_run, read_record, record, run_folder


# --------------------------------------------------------------------------------- reference
def test_digest_is_the_sha256_of_sorted_json():
    # Reference: Python's own hashlib/json (the formats every stored fingerprint was made with:
    # stage records compact, commands and caches with json.dumps' default separators).
    obj = {"b": [1, 2.5, None], "a": {"path": Path("/x/y")}, "c": "é"}
    plain = json.dumps(obj, sort_keys=True, default=str)
    compact = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    assert digest(obj) == hashlib.sha256(plain.encode()).hexdigest()
    assert digest(obj, compact=True) == hashlib.sha256(compact.encode()).hexdigest()


# --------------------------------------------------------------------------------- properties
def test_digest_ignores_key_order_and_sees_values():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest({"a": 1}) != digest({"a": 1}, compact=True)


def test_record_fingerprint_follows_settings_and_input_content(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a\n1\n")
    r1 = record({"k": 1}, {"table": f}, "gliorad x", ("numpy",))
    assert r1["inputs"]["table"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert r1["settings"] == {"k": 1} and r1["command"] == "gliorad x"
    assert {"gliorad", "python", "numpy"} <= set(r1["versions"])
    assert record({"k": 1}, {"table": f})["fingerprint"] == r1["fingerprint"]
    assert record({"k": 2}, {"table": f})["fingerprint"] != r1["fingerprint"]
    f.write_text("a\n2\n")
    assert record({"k": 1}, {"table": f})["fingerprint"] != r1["fingerprint"]


def _finished(folder: Path, prov: object, outputs=("out.csv",)) -> None:
    folder.mkdir(exist_ok=True)
    for name in outputs:
        (folder / name).write_text("x")
    (folder / PROVENANCE).write_text(prov if isinstance(prov, str) else json.dumps(prov))


def test_finished_run_matches_fingerprint_or_test(tmp_path):
    _finished(tmp_path / "r", {"fingerprint": "abc", "key": {"k": 1}})
    assert finished_run(tmp_path / "r", ["out.csv"], "abc")["key"] == {"k": 1}
    assert finished_run(tmp_path / "r", ["out.csv"], "abd") is None
    assert finished_run(tmp_path / "r", [], lambda p: p.get("key") == {"k": 1}) is not None
    assert finished_run(tmp_path / "r", [], lambda p: p.get("key") == {"k": 2}) is None


@pytest.mark.parametrize("prov", [b"{not json", b"[1, 2]", b"", b"\xff\xfe\x00"])
def test_finished_run_unreadable_provenance_is_not_finished(tmp_path, prov):
    _finished(tmp_path / "r", "")
    (tmp_path / "r" / PROVENANCE).write_bytes(prov)
    assert finished_run(tmp_path / "r", ["out.csv"], "abc") is None


def test_finished_run_needs_every_output(tmp_path):
    _finished(tmp_path / "r", {"fingerprint": "abc"})
    assert finished_run(tmp_path / "r", ["out.csv", "other.csv"], "abc") is None
    assert finished_run(tmp_path / "missing", [], "abc") is None


# --------------------------------------------------------------------------------- run_folder
def test_run_folder_writes_whole_then_skips(tmp_path):
    out = tmp_path / "run"
    with run_folder(out, "fp1", files=(PROVENANCE, "a.txt")) as tmp:
        assert tmp is not None and tmp != out
        (tmp / "a.txt").write_text("1")
        (tmp / PROVENANCE).write_text(json.dumps({"fingerprint": "fp1"}))
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    with run_folder(out, "fp1", files=(PROVENANCE, "a.txt")) as tmp:
        assert tmp is None


def test_run_folder_refuses_another_run_and_keeps_it(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"fingerprint": "fp1"}, outputs=("a.txt",))
    with (pytest.raises(GlioradInputError, match=r"run: folder is not empty .* --overwrite"),
          run_folder(out, "fp2")):
        pass
    assert (out / "a.txt").read_text() == "x"


def test_run_folder_failure_leaves_the_old_run(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"fingerprint": "fp1"}, outputs=("a.txt",))
    with pytest.raises(RuntimeError, match="boom"), run_folder(out, "fp2", overwrite=True) as tmp:
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", PROVENANCE]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left


def test_run_folder_on_a_file_is_refused(tmp_path):
    f = tmp_path / "run"
    f.write_text("x")
    with pytest.raises(GlioradInputError, match=r"run: exists and is not a folder"), \
            run_folder(f, "fp"):
        pass
    assert f.read_text() == "x"


@pytest.mark.parametrize("content", [None, b"{bad", b"[1]", b"\xff\xfe", b'"text"'])
def test_read_record_missing_or_unreadable_is_empty(tmp_path, content):
    path = tmp_path / "rec.json"
    if content is not None:
        path.write_bytes(content)
    assert read_record(path) == {}


def test_read_record_reads_an_object(tmp_path):
    (tmp_path / "rec.json").write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_record(tmp_path / "rec.json") == {"a": [1, 2]}
