"""Exceptions shared by the whole package.

Bad input (a file, a table row, an argument) raises :class:`GlioradInputError`; the command line
turns it into exit code 2 with the message on one line per problem. Anything else is a bug (exit 1).
Messages name the file / row / argument, the bad value and what was expected, e.g.
``clinical.csv row 17 (patient BraTS20_012): age 'abc' is not a number``.
"""

from __future__ import annotations

from collections.abc import Iterable


class GlioradInputError(ValueError):
    """Bad user input. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: str | Iterable[str]):
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


def check_option(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise naming the valid choices."""
    choices = list(choices)
    if value not in choices:
        raise GlioradInputError(
            f"{name} {value!r} is not valid; expected one of: {', '.join(map(str, choices))}"
        )
    return value
