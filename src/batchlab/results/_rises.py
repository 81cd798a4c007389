"""Rungs that need more steps than a smaller rung: by chance, a search miss, or the data.

Steps-to-target does not rise with the batch size while gradient noise is what limits
training: at the same hyperparameters a larger batch's gradient is less noisy, so at
its best settings it needs no more steps (McCandlish et al. 2018, eq. 2.11; Shallue et
al. 2018, Fig. 1). A rung whose chosen candidate needs more steps on every seed than a
smaller rung's does on every seed (with 3 seeds each, 1 chance in 20 when both need the
same: 1 / C(6, 3)), or on so many of more seeds that chance would do it as rarely
(:func:`rises_above`), has either missed its optimum, which its recheck (``[search]
recheck``: the smaller rung's chosen point run here) can show, or rises for a reason
S_min (1 + B_crit / B) does not describe: a small training set seen for many epochs at
large batches generalizes worse (Keskar et al. 2017), so the held-out target takes more
steps. A rung whose recheck rises above that same smaller rung too, measured in steps
on most of its seeds, is of the second kind, and the fit leaves it out
(:func:`rising_after_recheck`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ._schema import RungResult


def seeds_of(rung: RungResult) -> list[float]:
    """A rung's chosen candidate's steps per seed (``inf``: a seed that never reached
    the target); its single count without confirmation, ``[inf]`` when unreached."""
    runs: Sequence[int | None] = rung.seed_steps or [rung.steps_to_target]
    return [math.inf if s is None else float(s) for s in runs]


#: How rarely chance alone may make a rung read as rising: 1 in 20, the chance that 3
#: seeds each, all alike, put one rung's three above the other's (1 / C(6, 3)).
RISE_LEVEL = 1 / 20


def rise_chance(n: int, m: int, k: int) -> float:
    """The chance that ``k`` or more of a rung's ``n`` seeds need more steps than all
    ``m`` of a smaller rung's, were all ``n + m`` counts drawn alike (exchangeable): the
    ``m`` then all fall among the lowest ``n + m - k`` of the ``n + m`` ranks,
    ``C(n + m - k, m) / C(n + m, m)`` (an exact rank test, as Mann and Whitney 1947's,
    on the smaller rung's largest count)."""
    return math.comb(n + m - k, m) / math.comb(n + m, m)


def seeds_above(seeds: Sequence[float], smaller: Sequence[float]) -> int:
    """How many of a rung's seeds needed more steps than every seed of a smaller rung."""
    top = max(smaller)
    return sum(s > top for s in seeds)


def rises_above(seeds: Sequence[float], smaller: Sequence[float]) -> bool:
    """A rung needs more steps than a smaller rung, which reached the target on one seed
    at least (``inf``: never reached): every seed of it above every seed of the smaller
    rung, or, where it has more seeds (``[search] spread_seeds``), so many of them above
    all the smaller rung's that chance alone would put them there no more than
    :data:`RISE_LEVEL` of the time (:func:`rise_chance`): 6 of 7 above 3, say, where
    the seventh is the search's luckiest trial."""
    if not seeds or not smaller or min(smaller) == math.inf:
        return False
    above = seeds_above(seeds, smaller)
    if above == len(seeds):
        return True
    return rise_chance(len(seeds), len(smaller), above) <= RISE_LEVEL


def rising_after_recheck(rungs: Sequence[RungResult]) -> list[str | None]:
    """Per rung, why the fit leaves it out (``None``: it is in the fit).

    A rung is left out when it ran a smaller rung's chosen point (its recheck) and that
    point too needed more steps here, on every seed, than on every seed of the smaller
    rung: the rise is then not its search's miss, and S_min (1 + B_crit / B), which
    never rises, would read it as scatter and widen B_crit's interval with it.

    The rise must be measured: most of the recheck's seeds reached the target, or the
    rung's own chosen candidate did not either (its median seed never reached it). A
    recheck that mostly never reached the target, at a rung whose own candidate did,
    counted no steps: the smaller rung's point stalls at this batch (a point near the
    edge of stability at one batch size can diverge at a larger one), which tells
    neither a search miss nor a rise, so the rung stays in the fit at its own count, as
    a rung without a recheck does.

    Args:
        rungs: the study's rungs, ascending.
    """
    by_size = {r.batch_size: r for r in rungs}
    reasons: list[str | None] = []
    for rung in rungs:
        runs = rung.rechecks
        source = by_size.get(runs[0].recheck_from) if runs else None  # type: ignore[arg-type]
        if source is None:
            reasons.append(None)
            continue
        here = [math.inf if t.steps_to_target is None else float(t.steps_to_target) for t in runs]
        there = seeds_of(source)
        if not rises_above(here, there) or recheck_stalled(rung):
            reasons.append(None)
            continue
        reasons.append(
            f"B = {rung.batch_size} needs more steps than B = {source.batch_size} even at "
            f"B = {source.batch_size}'s chosen point ({_steps(here)} against "
            f"{_steps(there)}), so it does not rise for a search miss; steps that rise with "
            "the batch are not gradient noise's S_min (1 + B_crit / B) (e.g. a small "
            "training set seen for many epochs at large batches generalizes worse), so "
            "the fit leaves it out."
        )
    return reasons


def recheck_stalled(rung: RungResult) -> bool:
    """The rung's recheck (a smaller rung's chosen point run here) never reached the
    target on most of its seeds, while the rung's own chosen candidate did: it counted
    no steps, so it measures no rise (:func:`rising_after_recheck`)."""
    runs = rung.rechecks
    reached = sum(t.steps_to_target is not None for t in runs)
    return bool(runs) and 2 * reached <= len(runs) and rung.steps_to_target is not None


def steps_text(values: Iterable[float | None]) -> str:
    """Steps-to-target for a sentence, in order: ``"159, never, 1416"`` (``None`` or
    ``inf``: never reached)."""
    return ", ".join("never" if v is None or math.isinf(v) else f"{int(v)}" for v in values)


def _steps(values: Sequence[float]) -> str:
    return f"{steps_text(values)} steps"
