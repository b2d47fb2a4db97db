"""Provenance, fingerprints and skipping, for every stage and standalone command.

* :func:`versions`: the versions of gliorad, Python and the libraries a result depends on, read
  from the installed distributions' metadata (nothing is imported, so recording them is cheap
  and cannot fail on a broken extension).
* :func:`digest`: the fingerprint of settings and inputs, the SHA-256 of their canonical JSON
  (sorted keys; ``compact`` without spaces, the form the run workspace's stage records use).
* :func:`record`: a standalone command's ``provenance.json`` (settings, input files with their
  hashes, versions, command line, time, and the fingerprint of settings + input hashes).
* :func:`read_record`: a JSON record (provenance, per-case record, training state) as a dict,
  empty when it is missing or unreadable (then the work it describes is done again).
* :func:`finished_run`: the provenance of a finished run in a folder that matches, or None: the
  one skip rule (``provenance.json`` readable, matching, every output file present).
* :func:`run_folder`: write a command's outputs into a temporary folder that replaces the output
  folder as a whole, or skip when it already holds the same run.

The run workspace (:mod:`gliorad.pipeline`) fingerprints stages with :func:`digest`; the feature
networks (:mod:`gliorad.features.deep`), radiomics' case cache, preprocessing's per-patient
records and the grading and survival commands skip with :func:`finished_run`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from gliorad.errors import GlioradInputError

__all__ = ["PROVENANCE", "digest", "finished_run", "read_record", "record", "run_folder",
           "version_of", "versions"]

#: The provenance file of a standalone command's output folder.
PROVENANCE = "provenance.json"

#: Package name as recorded -> the distributions that provide it (first installed wins).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "pyradiomics": ("pyradiomics-bhklab", "pyradiomics"),
    "pywavelets": ("PyWavelets",),
}


@cache
def version_of(package: str) -> str | None:
    """The installed version of ``package`` (``gliorad`` and ``python`` included), or None."""
    from importlib.metadata import PackageNotFoundError, version

    if package == "python":
        return platform.python_version()
    if package == "gliorad":
        from gliorad import __version__

        return __version__
    for dist in DISTRIBUTIONS.get(package, (package,)):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def versions(*packages: str) -> dict[str, str]:
    """``{package: version}`` of ``packages`` in the order given (default: gliorad and Python
    first); packages that are not installed are left out."""
    names = packages if "gliorad" in packages else ("gliorad", "python", *packages)
    return {p: v for p in names if (v := version_of(p)) is not None}


def digest(obj: Any, compact: bool = False) -> str:
    """SHA-256 (hex) of ``obj`` as JSON with sorted keys (values JSON cannot hold as text);
    ``compact``: without spaces after separators."""
    separators = (",", ":") if compact else None
    text = json.dumps(obj, sort_keys=True, default=str, separators=separators)
    return hashlib.sha256(text.encode()).hexdigest()


def record(settings: Mapping[str, Any], inputs: Mapping[str, str | Path],
           command: str | None = None, packages: Iterable[str] = ()) -> dict[str, Any]:
    """A command's provenance: ``settings``, every input file's path and SHA-256, the
    ``versions`` of ``packages``, the command line, the time, and ``fingerprint`` =
    :func:`digest` of the settings and the input hashes (what decides the result)."""
    from gliorad.io import file_hash

    hashes = {name: {"path": str(Path(p).resolve()), "sha256": file_hash(p)}
              for name, p in inputs.items()}
    return {
        "settings": dict(settings),
        "inputs": hashes,
        "versions": versions(*packages),
        "command": command,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "fingerprint": digest({"settings": settings,
                               "inputs": {k: v["sha256"] for k, v in hashes.items()}}),
    }


def read_record(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when the file is missing, unreadable or holds
    something else than an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return {}
    return data if isinstance(data, dict) else {}


def finished_run(folder: str | Path, outputs: Iterable[str],
                 matches: Callable[[dict[str, Any]], bool] | str) -> dict[str, Any] | None:
    """The provenance of the finished run in ``folder`` when it ``matches`` (a fingerprint, or a
    test of the provenance) and every file of ``outputs`` is there; else None (no, unreadable
    or other provenance, or an output missing: the run is made again)."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in outputs):
        return None
    prov = read_record(folder / PROVENANCE)
    if not prov:
        return None
    ok = prov.get("fingerprint") == matches if isinstance(matches, str) else matches(prov)
    return prov if ok else None


@contextlib.contextmanager
def run_folder(out: str | Path, fingerprint: str, overwrite: bool = False,
               files: Iterable[str] = (PROVENANCE,)) -> Iterator[Path | None]:
    """Yield a temporary folder to write a run into, or ``None`` when ``out`` already holds the
    run with this ``fingerprint`` and all its ``files``.

    On success the temporary folder replaces ``out``; on failure it is removed and ``out`` is
    left as it was. A non-empty ``out`` holding another run is refused unless ``overwrite``.
    """
    from gliorad.io import atomic_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GlioradInputError(f"{out}: exists and is not a folder")
    if not overwrite and finished_run(out, files, fingerprint) is not None:
        yield None
        return
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GlioradInputError(
            f"{out}: folder is not empty and holds no run with the same inputs and settings; "
            "pass --overwrite to replace it, or choose another folder")
    with atomic_dir(out) as tmp:
        yield tmp
