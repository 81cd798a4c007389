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
