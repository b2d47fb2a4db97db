"""File names declared once, as attributes of the class that owns an output folder.

``table = File("split.csv")`` in a class whose instances have a ``folder`` makes
``instance.table`` the path ``folder / "split.csv"`` (and ``Class.table`` the :class:`File`
itself). The stage outputs (:mod:`gliorad.stages.artifacts`) and the survival analysis folders
(:mod:`gliorad.survival.artifacts`) declare their files this way. Standard library only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["File"]


class File:
    """A file (or folder) of an output folder, relative to it: ``table = File("x.csv")`` makes
    ``SplitFiles(folder).table`` the path ``folder / "x.csv"``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.folder.joinpath(*self.parts)
