"""A rising rung's recheck (``[search] recheck``): a smaller rung's chosen point, run here.

A rung whose chosen candidate needed more steps on every seed than a smaller rung's
did on every seed (or on so many of more seeds that chance would do it as rarely) rises
(:func:`batchlab.results.rises_above`), which gradient noise
alone never makes it do (:mod:`batchlab.results._rises`): its search most likely
missed its optimum. Its recheck runs the chosen point of a smaller rung with the fewest
steps (the largest of those as fast as the fastest, :func:`recheck_source`) at this
batch size, on several seeds: one more candidate, which the rung's confirmed count
(:func:`batchlab.analysis.confirmed_candidate`) weighs like the others.
If that point rises too, the analysis leaves the rung out of the fit
(:func:`batchlab.results.rising_after_recheck`).

Whether a rung rises is decided from the tuning of this rung and of every smaller one
(search, refinement, neighbours, confirmation, reserve, spread), never from any rung's
recheck, so every worker decides alike and a rung's decision does not wait for
another's recheck.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna

from ..results import RISE_LEVEL, RungResult, rises_above, seeds_above, seeds_of
from ._collect import collect_rung
from ._plan import Rung, open_stages

#: The stages of a rung's tuning, which a recheck waits for (its own and smaller rungs').
TUNING_STAGES = frozenset({"search", "refine", "neighbour", "confirm", "reserve", "spread"})


@dataclass(frozen=True)
class Recheck:
    """What a rung's recheck trials do: run a smaller rung's point, or nothing.

    Attributes:
        from_batch_size: the smaller rung whose chosen point they run; ``None``: they
            are skipped.
        params: that point's searched values (``None`` when skipped).
        reason: why, in one sentence (recorded on each skipped trial).
    """

    from_batch_size: int | None
    params: dict[str, float] | None
    reason: str

    @property
    def runs(self) -> bool:
        """Whether the recheck trials train (rather than being skipped)."""
        return self.params is not None


def decide_recheck(rung: RungResult, smaller: Sequence[RungResult]) -> Recheck:
    """Whether a tuned rung rises above a smaller one, and if so which point to recheck.

    Args:
        rung: the rung, read from its tuning alone (``collect_rung(tuned_only=True)``).
        smaller: every smaller rung, read likewise.

    Returns:
        A :class:`Recheck`: the chosen point of the smaller rung :func:`recheck_source`
        picks (the largest of those as fast as the fastest), or why there is nothing to
        recheck: the rung does not rise, or it already confirmed that point.
    """
    b = rung.batch_size
    seeds = seeds_of(rung)
    below = [s for s in smaller if rises_above(seeds, seeds_of(s))]
    if not below:
        return Recheck(
            None,
            None,
            f"B = {b} does not rise: no smaller rung's chosen candidate needed fewer steps "
            "on every seed than it did on any, or on so many of its seeds that chance "
            f"would do it no more than 1 time in {round(1 / RISE_LEVEL)}",
        )
    source = recheck_source(smaller)
    assert source.best is not None  # (see ``recheck_source``)
    params = dict(source.best.params)
    confirmed = {t.slot: t.params for t in rung.trials}
    if any(confirmed.get(slot) == params for slot in rung.candidate_slots):
        return Recheck(
            None,
            None,
            f"B = {b} rises above B = {below[0].batch_size}, but it already confirmed "
            f"B = {source.batch_size}'s chosen point",
        )
    low, other = min(seeds), below[0]
    top = max(seeds_of(other))
    above = seeds_above(seeds, seeds_of(other))
    if math.isinf(low):
        needed = "never reached the target"
    elif above == len(seeds):
        needed = f"needed {low:g} steps or more on every seed"
    else:
        needed = f"needed more than {top:g} steps on {above} of its {len(seeds)} seeds"
    return Recheck(
        source.batch_size,
        params,
        f"B = {b} rises above B = {other.batch_size} (its chosen candidate {needed}, "
        f"B = {other.batch_size}'s {top:g} or fewer): "
        f"B = {source.batch_size}'s chosen point is run here",
    )


def recheck_source(smaller: Sequence[RungResult]) -> RungResult:
    """The smaller rung whose chosen point a rising rung rechecks.

    The rung with the fewest steps-to-target, or a larger one whose count lies within
    that rung's seeds (no more than its slowest seed that reached the target): as fast
    as the seeds can tell. Of those, the largest batch size: tuned hyperparameters
    change gradually with the batch size (Shallue et al. 2018, Sec. 4.7), so its point
    is the nearest to the rising rung's optimum, where a much smaller rung's point (its
    learning rate tuned for a batch many times smaller) can stall.

    Args:
        smaller: the smaller rungs, of which one at least reached the target (it is
            what a rung rises above).
    """
    reached = [s for s in smaller if s.steps_to_target is not None and s.best is not None]
    fastest = min(reached, key=lambda s: (s.steps_to_target, -s.batch_size))
    slowest = max(s for s in seeds_of(fastest) if s < math.inf)
    return max(
        (s for s in reached if s.steps_to_target <= slowest),  # type: ignore[operator]
        key=lambda s: s.batch_size,
    )


def recheck_for(rung: Rung, rung_studies: Sequence[tuple[Rung, optuna.Study]]) -> Recheck | None:
    """A rung's recheck (:func:`decide_recheck`), or ``None`` while it or a smaller rung
    is still tuning."""
    involved = [(r, s) for r, s in rung_studies if r.batch_size <= rung.batch_size]
    if any(open_stages(study) & TUNING_STAGES for _, study in involved):
        return None
    tuned = {r.batch_size: collect_rung(r, s, tuned_only=True) for r, s in involved}
    return decide_recheck(
        tuned[rung.batch_size], [tuned[b] for b in sorted(tuned) if b < rung.batch_size]
    )
