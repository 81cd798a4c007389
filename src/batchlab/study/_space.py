"""The search space: hyperparameter ranges, their defaults, and their unit coordinates.

Shallue et al. 2018 (Sec. 3.4) search the learning rate and one minus the momentum
on log scales over fixed ranges. Every point of a range also has a position in
[0, 1] along it (on its log or linear scale): quasi-random points are drawn there,
distances between points are measured there, and warm-start windows are cut there.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

#: Hyperparameters sampled as 1 − x on a log scale (Shallue et al. 2018, Sec. 3.4).
ONE_MINUS = {
    "one_minus_momentum": "momentum",
    "one_minus_beta1": "beta1",
    "one_minus_beta2": "beta2",
}
#: Schedule hyperparameters any optimizer accepts.
SCHEDULE_PARAMS = ("warmup_fraction",)
#: The values a searched hyperparameter can take at all, where narrower than [0, inf):
#: a refinement window extended beyond an edge of the configured range stops there.
DOMAINS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in ONE_MINUS},
    **{name: (0.0, 1.0) for name in ONE_MINUS.values()},
    "warmup_fraction": (0.0, 1.0),
}


class ParamRange(BaseModel):
    """One searched hyperparameter: a range on a log or linear scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    scale: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _valid(self) -> ParamRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be smaller than high ({self.high:g})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got low={self.low:g}")
        return self


def default_search_space(optimizer: str) -> dict[str, ParamRange]:
    """Shallue et al. 2018's defaults: LR log-uniform, 1 − momentum log-uniform."""
    if optimizer in ("adam", "adamw", "lamb"):
        return {"lr": ParamRange(low=1e-4, high=1e-1)}
    space = {"lr": ParamRange(low=1e-3, high=10.0 if optimizer == "lars" else 1.0)}
    if optimizer in ("momentum", "nesterov", "lars"):
        space["one_minus_momentum"] = ParamRange(low=1e-2, high=0.5)
    return space


def from_unit(unit: float, space: ParamRange) -> float:
    """The value at position ``unit`` in [0, 1] along a range (on its scale)."""
    if space.scale == "log":
        value = math.exp(math.log(space.low) + unit * (math.log(space.high) - math.log(space.low)))
    else:
        value = space.low + unit * (space.high - space.low)
    return min(max(value, space.low), space.high)  # guard the last ulp of rounding


def to_unit(value: float, space: ParamRange) -> float:
    """Inverse of :func:`from_unit`: a value's position in [0, 1] along its range."""
    if space.scale == "log":
        unit = (math.log(value) - math.log(space.low)) / (
            math.log(space.high) - math.log(space.low)
        )
    else:
        unit = (value - space.low) / (space.high - space.low)
    return min(max(unit, 0.0), 1.0)


def warm_start_point(
    planned: dict[str, float],
    center: dict[str, float],
    space: dict[str, ParamRange],
    width: float,
) -> dict[str, float]:
    """Map a planned point of the whole space into a window around ``center``.

    Per dimension, in the unit coordinates of the (log or linear) range: the window
    has width ``width``, is centred on ``center`` and shifted to stay inside [0, 1];
    the planned point's position in the whole range becomes its position in the
    window, so a rung's quasi-random points keep their spread, on a finer scale.
    """
    point = {}
    for name, r in space.items():
        low = min(max(to_unit(center[name], r) - width / 2, 0.0), 1.0 - width)
        point[name] = from_unit(low + width * to_unit(planned[name], r), r)
    return point


def unit_distance(a: dict[str, float], b: dict[str, float], space: dict[str, ParamRange]) -> float:
    """Euclidean distance of two points in the unit coordinates of the search space."""
    return math.sqrt(sum((to_unit(a[n], r) - to_unit(b[n], r)) ** 2 for n, r in space.items()))


def domain(name: str, space: ParamRange) -> tuple[float, float]:
    """The values hyperparameter ``name`` can take (:data:`DOMAINS`; others: >= 0)."""
    low, high = DOMAINS.get(name, (0.0, math.inf))
    return min(low, space.low), max(high, space.high)


def _unit_of(value: float, space: ParamRange) -> float:
    """:func:`to_unit` without the clamp: beyond [0, 1] outside the range."""
    if space.scale == "log":
        if value <= 0:
            return -math.inf
        if math.isinf(value):
            return math.inf
        return (math.log(value) - math.log(space.low)) / (
            math.log(space.high) - math.log(space.low)
        )
    if math.isinf(value):
        return math.copysign(math.inf, value)
    return (value - space.low) / (space.high - space.low)


def _value_at(unit: float, space: ParamRange) -> float:
    """:func:`from_unit` without the clamp: beyond the range outside [0, 1]."""
    if space.scale == "log":
        return math.exp(math.log(space.low) + unit * (math.log(space.high) - math.log(space.low)))
    return space.low + unit * (space.high - space.low)


def extended_windows(
    center: dict[str, float],
    space: dict[str, ParamRange],
    width: float,
    edges: dict[str, str],
    extension: float,
) -> dict[str, tuple[float, float]]:
    """The refinement windows that reach beyond an edge of the configured range.

    Per dimension whose best point is on its ``"low"`` or ``"high"`` edge (``edges``):
    in unit coordinates, the window runs from ``width / 2`` inward of the centre (or
    ``width`` inward of that end, whichever is further in: at least the usual window)
    to ``extension`` beyond that end of the range, clamped to the hyperparameter's
    :func:`domain`. Dimensions with no room beyond the edge (``extension`` 0, or the
    end of the range is already the end of the domain) are left out: their window
    is the usual one (:func:`warm_start_point`).

    Returns:
        name -> ``(low, high)``, the window's bounds as values.
    """
    windows = {}
    for name, side in sorted(edges.items()):
        r = space[name]
        if extension <= 0 or name not in center:
            continue
        c = _unit_of(center[name], r)
        d_low, d_high = (_unit_of(v, r) for v in domain(name, r))
        if side == "high":
            low, high = max(min(c - width / 2, 1.0 - width), 0.0), min(1.0 + extension, d_high)
            beyond = high > 1.0
        else:
            low, high = max(-extension, d_low), min(max(c + width / 2, width), 1.0)
            beyond = low < 0.0
        if not beyond:
            continue
        lo, hi = domain(name, r)
        value_low = min(max(_value_at(low, r), lo), hi)
        value_high = min(max(_value_at(high, r), lo), hi)
        if r.scale == "log" and value_low <= 0:  # (a log range never reaches 0)
            continue
        if value_low < value_high:
            windows[name] = (value_low, value_high)
    return windows


def point_in_window(planned: float, space: ParamRange, window: tuple[float, float]) -> float:
    """A planned value's position in its whole range, carried to the same position in
    ``window`` (on the range's scale)."""
    return from_unit(
        to_unit(planned, space), ParamRange(low=window[0], high=window[1], scale=space.scale)
    )
