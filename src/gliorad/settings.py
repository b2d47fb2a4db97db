"""Shared rules of gliorad's settings: how a user's settings are laid over a preset.

The merge rule (every config file, ``--set`` override and command-line option goes through
:func:`merge`):

* a mapping merges key by key into the mapping beneath it, so ``train: {epochs: 40}`` changes the
  number of epochs and keeps every other training setting of the preset;
* a list or a scalar replaces the value beneath it (``sequences: [t1ce, flair]`` is the whole list);
* a mapping named in ``whole`` (by its dotted path) replaces the mapping beneath it *as a whole*:
  its keys depend on each other, so keeping the preset's other keys would change what the user
  wrote. This is the case of ``survival.split``: ``{method: column, column: centre, train: DU}``
  laid over the paper's ``{train: B, external: [A]}`` must validate on every value but DU, not on
  the preset's ``A``. Keys left out of such a mapping take their defaults.

The layers, lowest first: the packaged preset, the user's file, ``--set`` / command-line options.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["WHOLE", "merge", "relative"]

#: Mappings replaced as a whole by a user's value (dotted paths from the run config's root).
WHOLE: frozenset[str] = frozenset({"survival.split"})


def merge(base: Mapping[str, Any], update: Mapping[str, Any], whole: Collection[str] = (),
          _path: str = "") -> dict[str, Any]:
    """``base`` with ``update`` laid over it (the module docstring's rule).

    ``whole`` holds the dotted paths (relative to ``base``) of mappings that ``update`` replaces
    as a whole. Neither argument is modified.
    """
    out = dict(base)
    for key, value in update.items():
        path = f"{_path}.{key}" if _path else str(key)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and path not in whole:
            out[key] = merge(out[key], value, whole, path)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def relative(whole: Collection[str], section: str) -> frozenset[str]:
    """The paths of ``whole`` inside ``section`` (``survival.split`` -> ``split``)."""
    prefix = f"{section}."
    return frozenset(p.removeprefix(prefix) for p in whole if p.startswith(prefix))
