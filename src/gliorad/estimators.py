"""The scikit-learn contract of gliorad's estimators, in one place.

An estimator's ``__init__`` stores each argument unchanged as the attribute of its own name and
does nothing else: :meth:`~sklearn.base.BaseEstimator.get_params` and
:func:`~sklearn.base.clone` read the parameters back from those attributes, and every check
happens in ``fit``. :func:`keep_params` is that ``__init__`` body::

    def __init__(self, k: int = 8, random_state: int | None = 0):
        keep_params(self, locals())
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["keep_params"]


def keep_params(est: Any, args: Mapping[str, Any]) -> None:
    """Set every parameter of ``type(est).__init__`` (its signature, as ``get_params`` reads
    it) on ``est`` to the value in ``args`` (the ``__init__``'s ``locals()``), unchanged."""
    for name in inspect.signature(type(est).__init__).parameters:
        if name != "self":
            setattr(est, name, args[name])
