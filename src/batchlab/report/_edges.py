"""Was the search space wide enough? Flag best trials on its edge.

Shallue et al. 2018 (Sec. 4.7, Fig. 9) check that the best trial of every batch
size lies inside the searched region: a best learning rate pinned to the top of
the range means the true optimum may lie outside, and the measured
steps-to-target at that batch size is then only an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..results import RungResult, SearchRange

#: Fraction of the range (in the scale's own units) that counts as "on the edge".
EDGE_MARGIN = 0.05


@dataclass(frozen=True)
class EdgeWarning:
    """A rung whose best trial sits within ``margin`` of one end of a searched range."""

    batch_size: int
    param: str
    value: float
    low: float
    high: float
    side: str  # "low" or "high"

    @property
    def message(self) -> str:
        bound = self.low if self.side == "low" else self.high
        return (
            f"batch size {self.batch_size}: best {self.param} = {self.value:.4g} is at the "
            f"{self.side} edge of the search space ({bound:.4g}); widen the range"
        )


def range_position(value: float, space: SearchRange) -> float:
    """Where ``value`` lies in ``space``: 0 at ``low``, 1 at ``high`` (log units for log scales)."""
    if space.scale == "log":
        if value <= 0:
            return -math.inf
        lo, hi, x = math.log(space.low), math.log(space.high), math.log(value)
    else:
        lo, hi, x = space.low, space.high, value
    return (x - lo) / (hi - lo)


def edge_warnings(
    rungs: Iterable[RungResult],
    space: Mapping[str, SearchRange],
    margin: float = EDGE_MARGIN,
) -> list[EdgeWarning]:
    """Every (rung, parameter) whose best trial lies within ``margin`` of a range end.

    Args:
        rungs: the study's rungs; those without a best trial are skipped.
        space: the searched ranges, by the name used in each trial's ``params``.
        margin: fraction of the range, in log units for log-scaled parameters.

    Returns:
        The warnings, by batch size then parameter name.
    """
    if not 0 <= margin < 0.5:
        raise ValueError(f"margin must lie in [0, 0.5), got {margin!r}")
    found = []
    for rung in rungs:
        best = rung.best
        if best is None:
            continue
        for name in sorted(space):
            if name not in best.params:
                continue
            position = range_position(best.params[name], space[name])
            side = "low" if position <= margin else "high" if position >= 1 - margin else None
            if side is not None:
                found.append(
                    EdgeWarning(
                        rung.batch_size,
                        name,
                        best.params[name],
                        space[name].low,
                        space[name].high,
                        side,
                    )
                )
    return found
