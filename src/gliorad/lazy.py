"""Lazy re-exports for a package's ``__init__`` (the package convention of docs/architecture.md,
"Package imports"): the light names are imported eagerly, the heavy ones on first access.

Usage in ``gliorad/<package>/__init__.py``::

    _LAZY = {"run_analysis": "evaluation", ...}          # name -> submodule defining it
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

The names stay importable (``from gliorad.<package> import run_analysis``); list them in
``__all__`` and import them under ``TYPE_CHECKING`` for tools.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, lazy: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``lazy[name]`` is the submodule
    that defines ``name``, imported on first access (the value is then cached in ``namespace``,
    the package's globals); any other missing name is an :class:`AttributeError`."""

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later accesses skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())) | set(lazy))

    return __getattr__, __dir__
