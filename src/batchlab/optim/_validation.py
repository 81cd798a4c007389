"""Argument checks shared by the optimizers, schedules and scaling rules.

Every check raises ``ValueError`` naming the argument, the value and what was
expected, as torch's own optimizers do, so that a bad config fails at the boundary
rather than as a NaN many steps later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _is_real_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_real(name: str, value: Any, *, low: float, low_inclusive: bool = True) -> float:
    """``value`` as a float if it is a finite real number >= ``low`` (or > if exclusive)."""
    bound = f">= {low}" if low_inclusive else f"> {low}"
    if not _is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    if value < low or (not low_inclusive and value == low):
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any, *, high_inclusive: bool) -> float:
    """``value`` as a float if it lies in [0, 1] (or [0, 1) if ``high_inclusive`` is False)."""
    interval = "[0, 1]" if high_inclusive else "[0, 1)"
    if not _is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    if value < 0 or value > 1 or (not high_inclusive and value == 1):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, *, low: int) -> int:
    """``value`` if it is an integer >= ``low`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else an error listing them."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(c) for c in options)}, got {value!r}"
        )
    return value
