"""Reading the files a stage wrote: a present file that cannot be read raises
:class:`~gliorad.errors.GlioradInputError` naming the file (and the key or column)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gliorad.errors import GlioradInputError

__all__ = ["get", "need", "present", "read_csv", "read_json"]


def need(path: Path, what: str) -> Path:
    """``path``, which must exist (its folder is a finished stage's output)."""
    path = Path(path)
    if not path.is_file():
        raise GlioradInputError(f"{path}: not found; expected {what}")
    return path


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise GlioradInputError(f"{path}: not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlioradInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise GlioradInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_csv(path: Path, required: Sequence[str] = (), dtype: Mapping[str, Any] | None = None
             ) -> pd.DataFrame:
    """A CSV table; an empty file is an empty table; missing ``required`` columns raise."""
    try:
        df = pd.read_csv(path, dtype=dict(dtype or {}))
    except FileNotFoundError as err:
        raise GlioradInputError(f"{path}: not found") from err
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise GlioradInputError(f"{path}: cannot parse the table ({err})") from err
    if not df.empty or len(df.columns):
        absent = [c for c in required if c not in df.columns]
        if absent:
            raise GlioradInputError(f"{path}: no column(s) {', '.join(map(repr, absent))}; "
                                    f"columns are {', '.join(map(str, df.columns))}")
    return df


def get(data: Mapping[str, Any], key: str, source: Path,
        kind: type | tuple[type, ...] = dict) -> Any:
    """``data[key]`` of the expected type, else an error naming the file and the key."""
    if key not in data:
        raise GlioradInputError(f"{source}: no {key!r} entry")
    value = data[key]
    if not isinstance(value, kind):
        raise GlioradInputError(f"{source}: {key!r} is a {type(value).__name__}, not a "
                                f"{kind.__name__ if isinstance(kind, type) else 'valid value'}")
    return value


def present(path: Path | None, folder: bool = True) -> bool:
    """``path`` is given and is a folder (``folder``) or a file."""
    return path is not None and (Path(path).is_dir() if folder else Path(path).is_file())
