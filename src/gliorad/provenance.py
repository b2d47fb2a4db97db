"""One record of the software a result was made with: :func:`versions`.

Every stage and command records, next to its outputs, the versions of gliorad, Python and the
libraries its result depends on. They are read from the installed distributions' metadata
(nothing is imported, so recording them is cheap and cannot fail on a broken extension).
"""

from __future__ import annotations

import platform
from functools import cache

__all__ = ["version_of", "versions"]

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
