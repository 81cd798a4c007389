"""How far the best point a search sampled can lie above the optimum of the searched range.

A rung's steps-to-target is the best of N sampled learning rates, never better than
the best learning rate in the range: a downward bias that a seed bootstrap cannot
see (on a noiseless workload every seed gives the same count). The bias is bounded
from the rung's own trials, under two assumptions stated here and in the docs:

1. **Unimodal in the learning rate.** The optimum x* (x = log η) lies strictly
   between the sampled points nearest the best one on either side (x_l, x_r), or
   between the best one and the end of the searched range where no point was
   sampled beyond it. A point that did not reach the target (stopped once beaten,
   out of budget, diverged) still brackets the optimum: its count exceeds the best.
2. **Convex in log-log.** log S(x) is convex near the optimum (S ∝ 1/η at small η,
   a wall at the edge of stability; Shallue et al. 2018, Fig. 9; Zhang et al. 2019,
   Sec. 3). A secant of a convex function, extended past its end, lies below the
   function. So for x* in (x_b, x_r), with any reached point x_2 < x_b,
   log S* ≥ log S(x_b) − m₂·(x_r − x_b), m₂ = (log S(x_2) − log S(x_b)) / (x_b − x_2);
   and mirrored for x* in (x_l, x_b). The bound takes the flattest such secant: on a
   convex curve that is the nearest point's (the tightest bound), and a measured
   curve's noise (a near neighbour that happened to take many more steps) cannot
   make it steeper. A secant is extended at most its own length: one between two
   nearly equal learning rates measures their seeds' noise, not the curve's slope.

The gap is the larger of the two sides' bounds, in log units. Where no secant from
the other side of the best is that long (a refinement window stretched beyond an edge
of the range, ``[search] edge_extension``, leaves the best point's neighbours far
apart), the longest one is extended further if it rises by more than twice the seeds'
own ``noise`` (how far apart a point's repeats lie, in log steps): each end lies within
that noise of its own count, so the rise is then measured to within half of itself, and
on a convex curve the secant bounds however far it is extended (an unknown gap lets the
rung's interval, :func:`rung_steps_interval`, count none at all). A side with neither
borrows a secant from its own side the same way (an assumption of symmetry, weaker
than the two above); failing that, the gap is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence


def search_gap(
    points: Sequence[tuple[float, float | None]],
    best: float,
    bounds: tuple[float, float],
    noise: float | None = None,
) -> float | None:
    """An upper bound on log S(best) − log S*, S* the fewest steps over the searched range.

    Args:
        points: the sampled points of one rung, ``(x, y)``: x the log learning rate,
            y the log steps-to-target (``None``: not reached; it brackets but gives no
            slope). Repeats of one x keep the smallest y.
        best: x of the best point (its y is the smallest reached).
        bounds: the searched range of x, ``(low, high)``.
        noise: how far apart in y a point's repeats lie (fresh seeds; 0 on a noiseless
            workload); a secant shorter than the bracket it must span is extended only
            if it rises by more than twice that. ``None`` (unknown): never.

    Returns:
        The gap in log units (≥ 0; 0 when the best point is bracketed on both sides
        at zero distance); ``None`` when no other reached point gives a slope.

    Raises:
        ValueError: ``best`` is not among the reached points, or lies outside ``bounds``.
    """
    low, high = bounds
    values: dict[float, float | None] = {}
    for x, y in points:
        known = values.get(x)
        values[x] = y if known is None else (known if y is None else min(known, y))
    if values.get(best) is None:
        raise ValueError(f"best = {best!r} must be one of the reached points")
    if not low <= best <= high:
        raise ValueError(f"best = {best!r} must lie in bounds [{low!r}, {high!r}]")
    y_best = values[best]
    assert y_best is not None
    left = max((x for x in values if x < best), default=low)
    right = min((x for x in values if x > best), default=high)
    # The optimum right of the best is bounded by a left secant, and vice versa; a side
    # without one borrows a secant from the other side.
    from_left = _bounding_slope(values, best, y_best, ("left", "right"), right - best, noise)
    from_right = _bounding_slope(values, best, y_best, ("right", "left"), best - left, noise)
    if from_left is None or from_right is None:
        return None
    return max(from_left * (right - best), from_right * (best - left), 0.0)


def _bounding_slope(
    values: dict[float, float | None],
    best: float,
    y_best: float,
    sides: tuple[str, str],
    reach: float,
    noise: float | None,
) -> float | None:
    """The |slope| that bounds the optimum ``reach`` beyond the best, away from
    ``sides[0]``: from that side, the flattest secant at least ``reach`` long, else the
    longest one that rises by more than twice ``noise``; failing both, from
    ``sides[1]`` the same way (borrowed)."""
    for side in sides:
        secants = [  # (length, rise) of each secant on this side
            (abs(best - x), y - y_best)
            for x, y in values.items()
            if y is not None and (x < best if side == "left" else x > best)
        ]
        long_enough = [max(rise, 0.0) / length for length, rise in secants if length >= reach]
        if long_enough:
            return min(long_enough)
        if noise is not None:
            measured = [(length, rise) for length, rise in secants if rise > 2 * noise]
            if measured:
                length, rise = max(measured)
                return rise / length
    return None
