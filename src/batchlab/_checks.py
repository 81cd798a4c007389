"""Argument checks shared across the package: one clear message for one rule."""

from __future__ import annotations

from typing import Any


def check_positive_int(value: Any, name: str, *, optional: bool = False) -> Any:
    """Return ``value`` if it is an ``int`` >= 1 (a ``bool`` is not), else raise.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        optional: ``None`` is accepted (and returned) too.

    Raises:
        ValueError: naming ``name``, what was expected and what was given.
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value
