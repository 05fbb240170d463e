"""The one exception type for mistakes a user can make.

The CLI turns a :class:`RobometaError` into a one-line message and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class RobometaError(ValueError):
    """A user-facing error: bad name, bad value, missing file, unavailable device."""


def choice_error(what: str, got: object, valid: Iterable[object]) -> RobometaError:
    """``unknown family 'foo'; valid: a, b, c`` — the shape every lookup error takes."""
    names = ", ".join(str(v) for v in valid)
    return RobometaError(f"unknown {what} {got!r}; valid: {names}")
