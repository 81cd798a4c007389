"""Which trials to run first, and what the finished ones already tell the running ones.

Nothing here changes what a rung measures: every planned trial still runs (or
stops once it can no longer beat the rung's best). What changes is the order, so
that good trials finish early and the others stop early (stop-once-beaten), and
under ``search.warm_start`` where a rung searches (around its neighbour's best).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import _optuna
from ._collect import collect_rung
from ._config import StudyConfig
from ._plan import Rung, transfer_base
from ._space import unit_distance, warm_start_point


def best_steps(study: optuna.Study) -> int | None:
    """Fewest steps-to-target among the rung's finished trials, if any reached it."""
    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    return int(min(values)) if values else None


class BestSteps:
    """The rung's best steps-to-target, re-read from the storage every few seconds.

    Lets a trial stop as soon as a trial on another worker has beaten it.
    """

    def __init__(self, study: optuna.Study, known: int | None, every_s: float = 2.0) -> None:
        self._study, self._value, self._every = study, known, every_s
        self._read_at = time.monotonic()

    def __call__(self) -> int | None:
        if time.monotonic() - self._read_at > self._every:
            self._read_at = time.monotonic()
            fresh = best_steps(self._study)
            if fresh is not None and (self._value is None or fresh < self._value):
                self._value = fresh
        return self._value


def best_point(trials: list[FrozenTrial]) -> dict[str, float] | None:
    """The searched point of the best finished trial, ``None`` if none reached the target.

    Best: fewest steps-to-target, then lowest slot, as in the results.
    """
    reached = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    if not reached:
        return None
    best = min(reached, key=lambda t: (t.value, int(t.user_attrs.get("slot", 0))))
    return dict(best.user_attrs.get("params") or best.params)


@dataclass(frozen=True)
class WarmStart:
    """Where a warm-started rung searches: around the next smaller rung's best point."""

    from_batch_size: int
    center: dict[str, float] | None  # None: the neighbour never reached the target
    width: float

    def to_dict(self) -> dict[str, Any]:
        return {"from_batch_size": self.from_batch_size, "center": self.center, "width": self.width}


@dataclass(frozen=True)
class TransferBase:
    """The tuned rung that transfer rules start from, once all its stages are over.

    ``params``/``hparams`` are its chosen trial's (``None``: it never reached the
    target, so there is nothing to transfer).
    """

    batch_size: int
    params: dict[str, float] | None
    hparams: dict[str, float] | None


def transfer_base_for(
    config: StudyConfig, rung_studies: list[tuple[Rung, optuna.Study]]
) -> TransferBase | None:
    """The base rung of ``[transfer]`` once it is over (``None``: no rules, or not yet).

    Its chosen point is the one the results report (:func:`collect_rung`: after
    confirmation, the candidate with the fewest median steps over seeds).
    """
    base = transfer_base(config)
    if base is None:
        return None
    rung, study = next((r, s) for r, s in rung_studies if r.batch_size == base)
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        return None
    chosen = collect_rung(rung, study)
    best = chosen.best
    if best is None or chosen.steps_to_target is None:
        return TransferBase(base, None, None)
    return TransferBase(base, dict(best.params), dict(best.hparams))


def warm_start_for(
    config: StudyConfig, rung: Rung, rung_studies: list[tuple[Rung, optuna.Study]]
) -> WarmStart | None | Literal["wait"]:
    """A rung's warm start; ``"wait"`` while its neighbour still has trials to finish.

    ``None`` when warm start is off or for the smallest rung (it searches the whole
    space). The centre is the searched point of the neighbour's best trial (fewest
    steps-to-target, then lowest slot, as in the results).
    """
    if not config.search.warm_start or rung.index == 0:
        return None
    neighbour_rung, neighbour = next(rs for rs in rung_studies if rs[0].index == rung.index - 1)
    trials = neighbour.get_trials(deepcopy=False)
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return "wait"
    return WarmStart(neighbour_rung.batch_size, best_point(trials), config.search.warm_start_width)


def nearest_first(
    config: StudyConfig,
    rung: Rung,
    rung_studies: list[tuple[Rung, optuna.Study]],
    warm: WarmStart | None,
) -> Callable[[FrozenTrial], float] | None:
    """Rank a rung's waiting trials by distance to the best point of the nearest rung.

    With stop-once-beaten a trial stops as soon as it passes the rung's best known
    steps-to-target, so the sooner a good trial finishes, the sooner the others stop.
    Tuned hyperparameters change gradually from one batch size to the next (see the
    tuned learning rates of Shallue et al. 2018), so the best point of the nearest
    rung that has one is a good first guess for this rung's. Only the order changes:
    every planned trial still runs, and a trial stopped once beaten could not have
    been the rung's best, so what the rung measures is the same. ``None`` (queue
    order) when nothing is known yet, or for TPE, whose trials have no point before
    they are claimed.
    """
    if config.search.sampler == "tpe":
        return None
    guide = None
    by_distance = sorted(rung_studies, key=lambda rs: (abs(rs[0].index - rung.index), rs[0].index))
    for other_rung, other in by_distance:
        if other_rung.index != rung.index:
            guide = best_point(other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            if guide is not None:
                break
    if guide is None:
        return None
    space = config.search_space()

    def distance(frozen: FrozenTrial) -> float:
        point = _optuna.enqueued_params(frozen)
        if set(point) != set(space) or set(guide) != set(space):
            return math.inf  # not a planned point of this space: keep queue order
        if warm is not None and warm.center is not None:
            point = warm_start_point(point, warm.center, space, warm.width)
        return unit_distance(point, guide, space)

    return distance
