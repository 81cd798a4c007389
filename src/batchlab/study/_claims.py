"""Claiming planned trials, and writing what became of them back into Optuna.

A worker claims a rung's ``WAITING`` trials (exactly the planned ones, never new
ones), resolves each to the :class:`~batchlab.training.RunSpec` it trains, and when
it has run records its result, or its failure with the traceback, in the trial's
user attributes. A trial whose worker was declared dead meanwhile (its slot runs
again elsewhere) is not written twice: its late result is dropped.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..training import RunResult, RunSpec
from . import _optuna
from ._config import StudyConfig
from ._liveness import mark_claimed, requeue
from ._order import WarmStart
from ._plan import Rung, to_hparams
from ._space import ParamRange, warm_start_point

logger = logging.getLogger(__name__)


def claim_waiting_trial(
    study: optuna.Study, order: Callable[[FrozenTrial], float] | None = None
) -> optuna.Trial | None:
    """Claim the next ``WAITING`` trial, or ``None`` if there is none.

    Unlike ``Study.ask`` this never creates a new trial when the queue is empty: a
    study's trials are exactly the planned ones. The storage arbitrates a race for
    the same trial (only one ``RUNNING`` transition succeeds). ``order`` ranks the
    waiting trials (lowest first; ties keep the queue's order).
    """
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if order is not None:
        waiting = sorted(waiting, key=order)
    for frozen in waiting:
        trial = _optuna.start_trial(study, frozen)
        if trial is not None:
            mark_claimed(study, trial)
            return trial
    return None


@dataclass
class Claimed:
    """A trial this worker holds: the Optuna trial, its slot, and what it trains."""

    trial: optuna.Trial
    slot: int
    spec: RunSpec


def claim(
    study: optuna.Study,
    config: StudyConfig,
    rung: Rung,
    count: int,
    warm: WarmStart | None = None,
    order: Callable[[FrozenTrial], float] | None = None,
) -> list[Claimed]:
    """Claim up to ``count`` waiting trials of a rung and resolve their hyperparameters.

    The trial's Optuna params are its planned point; the searched values it runs
    with (different under warm start) are its ``params`` user attribute. ``order``
    ranks the waiting trials (see :func:`~batchlab.study._order.nearest_first`).
    """
    claimed = []
    space = config.search_space()
    while len(claimed) < count:
        trial = claim_waiting_trial(study, order)
        if trial is None:
            break
        try:
            spec = _resolve(trial, config, rung, space, warm)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Declared dead by a peer before its first heartbeat (an overloaded machine):
            # its slot was re-enqueued and runs again, so this claim is dropped.
            logger.warning(
                "trial %d was declared dead by another worker while being claimed; skipping it",
                trial.number,
            )
            continue
        claimed.append(Claimed(trial, int(trial.user_attrs["slot"]), spec))
    return claimed


def _resolve(
    trial: optuna.Trial,
    config: StudyConfig,
    rung: Rung,
    space: dict[str, ParamRange],
    warm: WarmStart | None,
) -> RunSpec:
    """A claimed trial's searched values and hyperparameters, recorded; the spec it trains."""
    params = {
        name: trial.suggest_float(name, r.low, r.high, log=r.scale == "log")
        for name, r in space.items()
    }
    if warm is not None:
        if warm.center is not None:
            params = warm_start_point(params, warm.center, space, warm.width)
        trial.set_user_attr("warm_start", warm.to_dict())
    trial.set_user_attr("params", params)
    hparams = to_hparams(config, params, rung.budget_steps)
    trial.set_user_attr("hparams", hparams)
    trial.set_user_attr("budget_steps", rung.budget_steps)
    return RunSpec(
        batch_size=rung.batch_size,
        optimizer=config.optimizer,
        hparams=hparams,
        max_steps=rung.budget_steps,
        eval_every=rung.eval_every,
        seed=int(trial.user_attrs["seed"]),
        decay=config.schedule.decay,
        resolution=config.evaluation.resolution,
    )


def release_interrupted(study: optuna.Study, claimed: list[Claimed]) -> None:
    """Give back the unfinished trials of an interrupted worker (Ctrl-C): re-enqueue them."""
    for c in claimed:
        if not _optuna.reload_trial(study, c.trial).state.is_finished():
            c.trial.set_user_attr("status", "interrupted")
            study.tell(c.trial, state=TrialState.FAIL)
            requeue(study, _optuna.reload_trial(study, c.trial))


def _warn_reaped(claimed: Claimed) -> None:
    # A heartbeat starved for longer than the grace period (an overloaded machine)
    # makes a peer fail the trial and re-enqueue its slot; the slot runs again and
    # is recorded there, so this copy's result is dropped, not written twice.
    logger.warning(
        "trial %d was declared dead by another worker (late heartbeat) and its slot "
        "re-enqueued; dropping this run's result, the slot runs again",
        claimed.trial.number,
    )


def record(
    study: optuna.Study, claimed: Claimed, result: RunResult, wall_time: float, ensemble: int
) -> bool:
    """Write a finished trial's result; ``False`` if the trial was reaped meanwhile."""
    trial = claimed.trial
    try:
        for key, value in {
            "status": result.status,
            "steps_to_target": result.steps_to_target,
            "resolution_steps": result.resolution_steps,
            "reason": result.reason,
            "wall_time_s": wall_time,
            "ensemble": ensemble,
            "threads": torch.get_num_threads(),
            "curve": {"steps": result.steps, **result.to_dict()["metrics"]},
        }.items():
            trial.set_user_attr(key, value)
        steps = result.steps_to_target
        study.tell(trial, float(steps) if steps is not None else math.inf)
    except optuna.exceptions.UpdateFinishedTrialError:
        _warn_reaped(claimed)
        return False
    return True


def record_failure(
    study: optuna.Study, claimed: Claimed, error: BaseException, wall_time: float
) -> str | None:
    """Write a failed trial's reason and traceback; ``None`` if it was reaped meanwhile."""
    reason = describe_failure(error)
    trial = claimed.trial
    try:
        trial.set_user_attr("status", "error")
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("traceback", traceback.format_exc())
        trial.set_user_attr("wall_time_s", wall_time)
        study.tell(trial, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        _warn_reaped(claimed)
        return None
    return reason


def describe_failure(error: BaseException) -> str:
    """A failed trial's reason in one line (out-of-memory errors say so first)."""
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return f"out of memory: {error}"
    return f"{type(error).__name__}: {error}"
