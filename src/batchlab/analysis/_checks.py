"""Input checks shared by the analysis functions, and the error they raise.

Every public function validates its arguments here, at the boundary, so that a
typo in a hand-typed table of published results fails with a message that names
the argument, the bad value and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import BatchlabError

#: The fit of S(B) = S_min (1 + B_crit / B) has two parameters; three points are the minimum.
MIN_FIT_POINTS = 3


class AnalysisError(BatchlabError, ValueError):
    """Bad input to an analysis function; the message names the argument."""


@dataclass(frozen=True)
class Ladder:
    """A checked ladder of rungs: batch sizes, steps-to-target, and which were reached.

    Attributes:
        batch_sizes: every rung's batch size, strictly increasing, shape (n,).
        steps: steps-to-target per rung, ``nan`` where the target was never reached.
        reached: boolean mask of the rungs with a finite, positive step count.
    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    reached: np.ndarray


def _as_float(value: Any, name: str, index: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"{name}[{index}] must be a number, got {value!r}") from None


def check_batch_sizes(batch_sizes: Sequence[float], name: str = "batch_sizes") -> np.ndarray:
    """Batch sizes as a float array: finite, positive and strictly increasing."""
    if isinstance(batch_sizes, str | bytes) or not hasattr(batch_sizes, "__len__"):
        raise AnalysisError(f"{name} must be a sequence of numbers, got {batch_sizes!r}")
    values = np.array([_as_float(b, name, i) for i, b in enumerate(batch_sizes)], dtype=float)
    bad = [b for b in values if not (math.isfinite(b) and b > 0)]
    if bad:
        raise AnalysisError(f"{name} must be positive and finite, got {bad[0]!r}")
    if np.any(np.diff(values) <= 0):
        raise AnalysisError(f"{name} must be strictly increasing, got {[rung(b) for b in values]}")
    return values


def check_per_rung(values: Any, name: str, sizes: np.ndarray, what: str) -> None:
    """``values`` is a sequence with one entry per rung (``what`` names its entries)."""
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise AnalysisError(f"{name} must be a sequence of {what}, got {values!r}")
    if len(values) != len(sizes):
        raise AnalysisError(
            f"batch_sizes and {name} must have the same length, got {len(sizes)} and {len(values)}"
        )


def check_ladder(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    *,
    min_reached: int = MIN_FIT_POINTS,
) -> Ladder:
    """Check a ladder of (batch size, steps-to-target) rungs.

    ``None``, ``nan`` and ``+inf`` steps mean "never reached the target" and are kept
    as ``nan``; any other step count must be positive.

    Raises:
        AnalysisError: mismatched lengths, bad batch sizes, non-positive steps, or
            fewer than ``min_reached`` rungs that reached the target.
    """
    sizes = check_batch_sizes(batch_sizes)
    check_per_rung(steps, "steps", sizes, "numbers or None")
    values = np.full(len(sizes), np.nan)
    for i, s in enumerate(steps):
        if s is None:
            continue
        value = _as_float(s, "steps", i)
        if math.isnan(value) or value == math.inf:
            continue
        if not value > 0:
            raise AnalysisError(
                f"steps must be positive (None, nan or inf for a rung that never reached "
                f"the target), got {s!r} at batch size {rung(sizes[i])}"
            )
        values[i] = value
    reached = np.isfinite(values)
    if int(reached.sum()) < min_reached:
        raise AnalysisError(
            f"steps: the fit needs at least {min_reached} rungs that reached the target "
            f"(finite steps), got {int(reached.sum())}"
        )
    return Ladder(batch_sizes=sizes, steps=values, reached=reached)


def check_confidence(confidence: float) -> float:
    """A confidence level strictly between 0 and 1."""
    if not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise AnalysisError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def check_positive(value: Any, name: str) -> float:
    """A finite, positive float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise AnalysisError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise AnalysisError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def check_count(value: Any, name: str, minimum: int) -> int:
    """An integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise AnalysisError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rung(batch_size: float) -> int | float:
    """A batch size as it is reported: an ``int`` when it is a whole number."""
    value = float(batch_size)
    return int(value) if value.is_integer() else value


def plain(value: float | None) -> float | None:
    """A JSON-safe float: ``None`` for ``None``, ``nan`` and ``±inf``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def plain_pair(pair: tuple[float, float] | None) -> list[float | None] | None:
    """A (low, high) interval as a JSON-safe list."""
    return None if pair is None else [plain(pair[0]), plain(pair[1])]
