"""The one progress bar of gliorad: a rich bar on stderr, or nothing when disabled.

Used by the training loop (epochs), segmentation prediction (patients) and radiomics extraction
(cases). rich is imported only when a bar is shown.

Columns are named by strings: ``"bar"``, ``"count"`` (done / total), ``"elapsed"`` and
``"remaining"`` are rich's columns of those roles; any other string is a text column (a rich
format string such as ``"{task.fields[info]}"``). No columns: rich's default ones (description,
bar, percentage, time remaining).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

__all__ = ["ProgressBar"]


class ProgressBar:
    """A bar over ``total`` steps, started at ``completed``; ``fields`` are the task's fields.

    Usable as a context manager (closed on exit) or with :meth:`close`.
    """

    def __init__(self, enabled: bool, total: int, description: str = "", *,
                 columns: Sequence[str] = (), completed: int = 0, **fields: Any):
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        named = {"bar": BarColumn, "count": MofNCompleteColumn, "elapsed": TimeElapsedColumn,
                 "remaining": TimeRemainingColumn}
        cols = [named[c]() if c in named else TextColumn(c) for c in columns]
        self._bar = Progress(*cols, console=Console(stderr=True))
        self._task = self._bar.add_task(description, total=total, completed=completed, **fields)
        self._bar.start()

    def advance(self, steps: int = 1, **fields: Any) -> None:
        """``steps`` more done; ``fields`` update the task's fields."""
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, **fields)

    def update(self, **fields: Any) -> None:
        """Change the task's fields without advancing."""
        if self._bar is not None:
            self._bar.update(self._task, **fields)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
