"""The searched ranges, and whether they were wide enough: best trials on their edge.

Shallue et al. 2018 (Sec. 4.7, Fig. 9) check that the best trial of every batch
size lies inside the searched region: a best learning rate pinned to the top of
the range means the true optimum may lie outside, and the measured
steps-to-target at that batch size is then only an upper bound. Studies write
these flags into ``results.json`` (``edges``), print them at the end of a run,
and the report shows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._schema import RungResult, TrialRecord


@dataclass(frozen=True)
class SearchRange:
    """The searched interval of one hyperparameter (``scale``: ``"log"`` or ``"linear"``)."""

    low: float
    high: float
    scale: str = "log"


#: Fraction of the range (in the scale's own units) that counts as "on the edge".
EDGE_MARGIN = 0.05


@dataclass(frozen=True)
class EdgeWarning:
    """A rung whose best trial sits on one end of a searched range (:func:`edge_warnings`)."""

    batch_size: int
    param: str
    value: float
    low: float
    high: float
    side: str  # "low" or "high"
    #: The rung's refinement searched beyond the configured range for this parameter
    #: (``[search] edge_extension``): ``low``/``high`` are the extended range's, and the
    #: best trial is on the edge even of that.
    extended: bool = False

    def to_dict(self) -> dict[str, Any]:
        """For ``results.json``: the fields and the message."""
        return {**asdict(self), "message": self.message}

    @property
    def message(self) -> str:
        bound = self.low if self.side == "low" else self.high
        extreme = "smallest" if self.side == "low" else "largest"
        where = (
            f"at the {self.side} edge of the search space even after extending it beyond the "
            f"configured range ({bound:.4g})"
            if self.extended
            else f"at the {self.side} edge of the search space ({bound:.4g})"
        )
        return (
            f"batch size {self.batch_size}: best {self.param} = {self.value:.4g} is the "
            f"{extreme} tried, {where}: the optimum may lie outside it and the "
            "steps-to-target is then only an upper bound; widen the range"
        )


def parse_ranges(raw: Mapping[str, Any]) -> dict[str, SearchRange]:
    """Searched ranges from their JSON form (name -> ``{"low", "high", "scale"}``).

    Entries that are not a valid range (missing bounds, low >= high, a log scale
    reaching 0) are left out: a file that cannot tell gives no range, not an error.
    """
    space = {}
    for key, value in raw.items():
        try:
            low, high = float(value["low"]), float(value["high"])
        except (TypeError, KeyError, ValueError):
            continue
        scale = value.get("scale", "log")
        if low < high and scale in ("log", "linear") and (scale == "linear" or low > 0):
            space[str(key)] = SearchRange(low, high, scale)
    return space


def range_position(value: float, space: SearchRange) -> float:
    """Where ``value`` lies in ``space``: 0 at ``low``, 1 at ``high`` (log units for log scales)."""
    if space.scale == "log":
        if value <= 0:
            return -math.inf
        lo, hi, x = math.log(space.low), math.log(space.high), math.log(value)
    else:
        lo, hi, x = space.low, space.high, value
    return (x - lo) / (hi - lo)


def edge_side(position: float, others: Iterable[float], margin: float = EDGE_MARGIN) -> str | None:
    """Which edge of its range a best point is on: ``"low"``, ``"high"`` or ``None``.

    ``position``: the point's :func:`range_position`; ``others``: those of the other
    trials. On the high (low) edge: within ``margin`` of that end, or beyond every
    other trial on that side (none brackets the optimum there); on both or neither:
    ``None``.
    """
    others = list(others)
    lowest = position <= margin or all(position < p for p in others)
    highest = position >= 1 - margin or all(position > p for p in others)
    return "low" if lowest and not highest else "high" if highest and not lowest else None


def searched_ranges(rung: RungResult, space: Mapping[str, SearchRange]) -> dict[str, SearchRange]:
    """The ranges a rung searched: the configured ones, widened where its refinement
    reached beyond them (the trials' ``extended`` windows, ``[search] edge_extension``)."""
    ranges = dict(space)
    for trial in rung.trials:
        for name, window in (trial.extended or {}).items():
            r = ranges.get(name)
            if r is None:
                continue
            ranges[name] = SearchRange(min(r.low, window[0]), max(r.high, window[1]), r.scale)
    return ranges


def edge_warnings(
    rungs: Iterable[RungResult],
    space: Mapping[str, SearchRange],
    margin: float = EDGE_MARGIN,
) -> list[EdgeWarning]:
    """Every (rung, parameter) whose best trial is on the edge of the searched range.

    On the edge at the high (low) end: within ``margin`` of it, or the largest
    (smallest) value of that parameter among the rung's trials, so that no trial
    beyond it brackets the optimum on that side (:func:`edge_side`). The range is the
    one the rung searched (:func:`searched_ranges`): where its refinement reached
    beyond the configured range, the edge is the extended range's.

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
        searched = searched_ranges(rung, space)
        for name in sorted(space):
            if name not in best.params:
                continue
            r = searched[name]
            position = range_position(best.params[name], r)
            others = [
                range_position(t.params[name], r)
                for t in rung.trials
                if t.number != best.number and name in t.params and t.tuned
            ]
            side = edge_side(position, others, margin)
            if side is not None:
                extended = (r.low, r.high) != (space[name].low, space[name].high)
                found.append(
                    EdgeWarning(
                        rung.batch_size, name, best.params[name], r.low, r.high, side, extended
                    )
                )
    return found


def search_floor(
    rung: RungResult, space: Mapping[str, SearchRange], param: str = "lr"
) -> float | None:
    """A lower bound on the fewest steps-to-target any ``param`` of the rung's range takes.

    The rung's count is the best of the points it sampled, never better than the best
    point of the searched range: :func:`batchlab.analysis.search_gap` bounds how far
    below the search's best count that optimum can lie (a unimodal, log-log convex
    S(η); see its module). The floor is that count, less its evaluation resolution
    (:attr:`TrialRecord.resolution_steps`), times exp(−gap).

    Its points are the rung's search trials (refinement included), each at its count.
    A point whose search trial never reached the target (stopped once beaten, say) but
    whose fresh seeds did (confirmation, spread, a recheck of a smaller rung's point)
    takes their median (:func:`batchlab.analysis.median_steps`): it still gives a slope.
    Rule runs take no part. Only the trials that share every other searched value with
    the best one lie on its line through ``param`` (all of them when ``param`` is the
    only one searched): in a two-dimensional space a rung usually has none, and no floor.
    How far its points' repeats lie apart (:func:`seed_noise`) decides whether a secant
    shorter than the bracket it spans is extended (:func:`~batchlab.analysis.search_gap`).

    Args:
        rung: the rung.
        space: the configured ranges (widened as the rung searched, :func:`searched_ranges`).
        param: the log-scaled parameter to bound along.

    Returns:
        The floor in steps, or ``None`` (no reached trial, ``param`` not log-scaled,
        no second reached point on the line to give a slope, or only secants shorter
        than their bracket that rise by no more than twice the seeds' noise).
    """
    from ..analysis import median_steps, search_gap  # SciPy's fits: workers never need them.

    searched = searched_ranges(rung, space).get(param)
    if searched is None or searched.scale != "log":
        return None
    tuning = [
        t
        for t in rung.trials
        if not t.stage.startswith("rule:") and t.status != "error" and t.params.get(param, 0) > 0
    ]
    reached = [t for t in tuning if t.stage == "search" and t.steps_to_target is not None]
    if not reached:
        return None
    best = min(reached, key=lambda t: t.steps_to_target or 0)
    others = {k: v for k, v in best.params.items() if k != param}
    by_value: dict[float, list[TrialRecord]] = {}
    for t in tuning:
        if {k: v for k, v in t.params.items() if k != param} == others:
            by_value.setdefault(t.params[param], []).append(t)
    points = []
    for value, trials in by_value.items():
        counts = [t.steps_to_target for t in trials if t.stage == "search"]
        seeds = [t.steps_to_target for t in trials if t.stage != "search"]
        if not any(counts) and seeds:
            counts = [median_steps(seeds)]
        points += [(math.log(value), None if c is None else math.log(c)) for c in counts]
    xs = [x for x, _ in points]
    bounds = (min(math.log(searched.low), *xs), max(math.log(searched.high), *xs))
    gap = search_gap(points, math.log(best.params[param]), bounds, seed_noise(by_value.values()))
    if gap is None or best.steps_to_target is None:
        return None
    floor = max(best.steps_to_target - (best.resolution_steps or 0), 1)
    return floor * math.exp(-gap)


def seed_noise(points: Iterable[Sequence[TrialRecord]]) -> float | None:
    """How far apart in log steps the runs of one point lie, at most over ``points``.

    Each item holds the trials of one point (its search trial and its fresh seeds). A
    search trial stopped once beaten measured nothing and is left out; a point with a
    run that never reached the target among its runs lies infinitely far apart.
    ``None`` where no point has two runs (nothing to tell the noise by).
    """
    spreads = []
    for trials in points:
        runs = [t.steps_to_target for t in trials if t.status != "beaten"]
        if len(runs) < 2:
            continue
        reached = [s for s in runs if s is not None]
        spreads.append(
            math.log(max(reached) / min(reached)) if len(reached) == len(runs) else math.inf
        )
    return max(spreads, default=None)
