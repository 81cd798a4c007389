"""The target of a branch and the steps at which a branch is evaluated: pure functions.

A branch from a checkpoint is asked for a *fixed improvement* of one metric over its
value at the checkpoint (Merrill et al. 2025 read the critical batch size off the
loss reached by branches of one run; Zhang et al. 2024 count the steps to a fixed
loss). Steps-to-target is then read at a geometric evaluation grid, so that it is
equally precise (relative to itself) at large batch sizes, where it is a few steps,
and at small ones, where it is hundreds.
"""

from __future__ import annotations

import math

from ..training import eval_schedule
from ..workloads import Target

__all__ = ["eval_schedule", "improvement_target"]


def improvement_target(
    value: float,
    direction: str,
    *,
    metric: str,
    delta: float | None = None,
    fraction: float | None = None,
) -> Target:
    """The target "``metric`` improved by ``delta`` (or by ``fraction``) from ``value``".

    For a metric that is minimised (a loss), the target is ``value − delta`` or
    ``value · (1 − fraction)``; for one that is maximised (accuracy), ``value + delta``
    (a fraction is not defined there: how much is 10% better than 0.97 accuracy?).

    Args:
        value: the metric at the checkpoint, finite.
        direction: ``"min"`` or ``"max"``, the metric's direction.
        metric: the metric's name (carried into the :class:`~batchlab.workloads.Target`).
        delta: absolute improvement, > 0.
        fraction: relative improvement of a minimised metric, in (0, 1).

    Returns:
        The :class:`~batchlab.workloads.Target` every branch from this checkpoint must reach.

    Raises:
        ValueError: neither or both of ``delta`` and ``fraction``, values out of range,
            a non-finite ``value``, or ``fraction`` with a maximised metric.
    """
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    if not math.isfinite(value):
        raise ValueError(f"the {metric} at the checkpoint must be finite, got {value!r}")
    if (delta is None) == (fraction is None):
        raise ValueError("give exactly one of improvement_delta and improvement_fraction")
    if delta is not None:
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"improvement_delta must be a positive number, got {delta!r}")
        return Target(metric, value - delta if direction == "min" else value + delta, direction)
    assert fraction is not None
    if not (0 < fraction < 1):
        raise ValueError(f"improvement_fraction must be in (0, 1), got {fraction!r}")
    if direction == "max":
        raise ValueError(
            f"improvement_fraction applies to a minimised metric (a loss); {metric!r} is "
            "maximised: give improvement_delta instead"
        )
    if value <= 0:
        raise ValueError(
            f"improvement_fraction needs a positive {metric} at the checkpoint, got {value!r}; "
            "give improvement_delta instead"
        )
    return Target(metric, value * (1.0 - fraction), direction)
