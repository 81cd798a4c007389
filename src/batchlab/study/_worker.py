"""A worker: pops planned trials from the storage and runs them until none are left.

Any number of workers, in any processes on any machines, can share one storage;
each trial is claimed by exactly one of them. A trial that raises is recorded as
failed with its traceback (the study goes on unless ``fail_fast``); a worker that
dies leaves its trial ``RUNNING`` until another worker sees it is dead and
re-enqueues the slot; an interrupted worker (Ctrl-C) re-enqueues its slot itself.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .._seeding import seed_for
from ..training import (
    EnsembleUnsupported,
    RunResult,
    RunSpec,
    has_exact_curves,
    run_ddp_trial,
    run_ensemble,
    run_training,
)
from ..workloads import Workload, get_workload
from ._config import StudyConfig, resolve_target, validate_against_workload
from ._plan import Rung, plan_rungs, to_hparams, unit_distance, warm_start_point
from ._pruning import Pruner
from ._storage import (
    heartbeat,
    open_storage,
    pop_waiting_trial,
    requeue,
    requeue_stale_trials,
)

logger = logging.getLogger(__name__)

#: How often an idle worker looks whether its peers' trials have ended, seconds.
IDLE_CHECK_S = 0.25


@dataclass(frozen=True)
class TrialEvent:
    """Progress of one trial, for displays: it started, was evaluated, or finished."""

    kind: Literal["start", "eval", "finish"]
    rung: Rung
    trial_number: int
    slot: int
    step: int = 0
    metrics: dict[str, float] | None = None
    status: str | None = None
    steps_to_target: int | None = None


class FailFast(RuntimeError):
    """A trial failed and the study was asked to stop at the first failure."""


def load_rung_studies(storage: Any, config: StudyConfig) -> list[tuple[Rung, optuna.Study]]:
    """Every rung's Optuna study, with the sampler that proposes its TPE trials.

    Sobol and random trials carry their points from planning (the sampler is never
    asked); ``tpe`` trials are planned empty and proposed by a TPE sampler seeded per
    rung when a worker claims them (sequential, model-based: results then depend on
    the order trials finish in, as with any TPE run).
    """
    return [
        (
            rung,
            optuna.load_study(
                study_name=rung.study_name,
                storage=storage,
                sampler=optuna.samplers.TPESampler(seed=seed_for(config.seed, rung.index) % 2**32)
                if config.search.sampler == "tpe"
                else None,
            ),
        )
        for rung in plan_rungs(config)
    ]


def best_steps(study: optuna.Study) -> int | None:
    """Fewest steps-to-target among the rung's finished trials, if any reached it."""
    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    return int(min(values)) if values else None


class _BestSteps:
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


@dataclass(frozen=True)
class WarmStart:
    """Where a warm-started rung searches: around the next smaller rung's best point."""

    from_batch_size: int
    center: dict[str, float] | None  # None: the neighbour never reached the target
    width: float

    def to_dict(self) -> dict[str, Any]:
        return {"from_batch_size": self.from_batch_size, "center": self.center, "width": self.width}


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
        point = frozen.system_attrs.get("fixed_params") or {}
        if set(point) != set(space) or set(guide) != set(space):
            return math.inf  # not a planned point of this space: keep queue order
        if warm is not None and warm.center is not None:
            point = warm_start_point(point, warm.center, space, warm.width)
        return unit_distance(point, guide, space)

    return distance


@dataclass
class _Claimed:
    trial: optuna.Trial
    slot: int
    spec: RunSpec


def _claim(
    study: optuna.Study,
    config: StudyConfig,
    rung: Rung,
    count: int,
    warm: WarmStart | None = None,
    order: Callable[[FrozenTrial], float] | None = None,
) -> list[_Claimed]:
    """Pop up to ``count`` waiting trials of a rung and resolve their hyperparameters.

    The trial's Optuna params are its planned point; the searched values it runs
    with (different under warm start) are its ``params`` user attribute. ``order``
    ranks the waiting trials (see :func:`nearest_first`).
    """
    claimed = []
    space = config.search_space()
    while len(claimed) < count:
        trial = pop_waiting_trial(study, order)
        if trial is None:
            break
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
        spec = RunSpec(
            rung.batch_size,
            config.optimizer,
            hparams,
            rung.budget_steps,
            rung.eval_every,
            int(trial.user_attrs["seed"]),
            decay=config.schedule.decay,
        )
        claimed.append(_Claimed(trial, int(trial.user_attrs["slot"]), spec))
    return claimed


def _warn_reaped(claimed: _Claimed) -> None:
    # A heartbeat starved for longer than the grace period (an overloaded machine)
    # makes a peer fail the trial and re-enqueue its slot; the slot runs again and
    # is recorded there, so this copy's result is dropped, not written twice.
    logger.warning(
        "trial %d was declared dead by another worker (late heartbeat) and its slot "
        "re-enqueued; dropping this run's result, the slot runs again",
        claimed.trial.number,
    )


def _record(
    study: optuna.Study, claimed: _Claimed, result: RunResult, wall_time: float, ensemble: int
) -> bool:
    """Write a finished trial's result; ``False`` if the trial was reaped meanwhile."""
    trial = claimed.trial
    try:
        for key, value in {
            "status": result.status,
            "steps_to_target": result.steps_to_target,
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


def _record_failure(
    study: optuna.Study, claimed: _Claimed, error: BaseException, wall_time: float
) -> str | None:
    """Write a failed trial's reason and traceback; ``None`` if it was reaped meanwhile."""
    reason = _describe_failure(error)
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


class TrialRunner:
    """Runs claimed trials of one study, batched into ensembles where possible."""

    def __init__(
        self,
        workload: Workload,
        config: StudyConfig,
        *,
        fail_fast: bool = False,
        on_event: Callable[[TrialEvent], None] | None = None,
    ) -> None:
        self.workload = workload
        self.config = config
        self.target = resolve_target(config, workload)
        self.fail_fast = fail_fast
        self.emit = on_event or (lambda event: None)
        #: Why ensembles were turned off for this study (``None`` while they work).
        self.ensemble_off: str | None = None

    def ensemble_size(self, rung: Rung) -> int:
        if (
            self.ensemble_off is not None
            or has_exact_curves(self.workload)
            or self.config.performance.processes_per_trial > 1
        ):
            return 1
        return self.config.performance.size_for(rung.batch_size, self.config.search.trials_per_rung)

    def _pruner(self, rung: Rung, study: optuna.Study) -> Pruner | None:
        pruning = self.config.pruning
        if not pruning.enabled:
            return None
        return Pruner(
            study,
            self.target,
            quantile=pruning.quantile,
            first_step=math.ceil(pruning.after * rung.budget_steps),
            min_peers=pruning.min_peers,
        )

    def run(self, rung: Rung, study: optuna.Study, claimed: list[_Claimed]) -> None:
        for c in claimed:
            self.emit(TrialEvent("start", rung, c.trial.number, c.slot))
        stop_after = best_steps(study) if self.config.stopping.once_beaten else None
        ids = [c.trial._trial_id for c in claimed]
        with heartbeat(study._storage, ids, self.config.workers.heartbeat_interval):
            try:
                if len(claimed) > 1:
                    try:
                        self._run_ensemble(rung, study, claimed, stop_after)
                        return
                    except EnsembleUnsupported as why:
                        self.ensemble_off = str(why)
                        logger.warning("trial ensembles off, running trials one by one: %s", why)
                for c in claimed:
                    self._run_alone(rung, study, c, stop_after)
                    stop_after = best_steps(study) if self.config.stopping.once_beaten else None
            except KeyboardInterrupt:
                for c in claimed:
                    frozen = study._storage.get_trial(c.trial._trial_id)
                    if not frozen.state.is_finished():
                        c.trial.set_user_attr("status", "interrupted")
                        study.tell(c.trial, state=TrialState.FAIL)
                        requeue(study, study._storage.get_trial(c.trial._trial_id))
                raise

    def _run_alone(
        self, rung: Rung, study: optuna.Study, c: _Claimed, stop_after: int | None
    ) -> None:
        def on_eval(step: int, metrics: dict[str, float]) -> None:
            self.emit(TrialEvent("eval", rung, c.trial.number, c.slot, step=step, metrics=metrics))

        best = _BestSteps(study, stop_after) if self.config.stopping.once_beaten else None
        processes = self.config.performance.processes_per_trial
        started = time.perf_counter()
        try:
            if processes > 1:
                result = run_ddp_trial(
                    self.config.workload.model_dump(),
                    c.spec,
                    self.target,
                    processes,
                    stop_at_target=self.config.stopping.at_target,
                    stop_after=best() if best is not None else None,
                    on_eval=on_eval,
                )
            else:
                result = run_training(
                    self.workload,
                    c.spec,
                    self.target,
                    stop_at_target=self.config.stopping.at_target,
                    stop_after=best,
                    on_eval=on_eval,
                    prune=self._pruner(rung, study),
                )
        except Exception as error:
            self._failed(rung, study, c, error, time.perf_counter() - started)
            return
        if _record(study, c, result, time.perf_counter() - started, ensemble=1):
            self._finished(rung, c, result)

    def _run_ensemble(
        self, rung: Rung, study: optuna.Study, claimed: list[_Claimed], stop_after: int | None
    ) -> None:
        def on_eval(member: int, step: int, metrics: dict[str, float]) -> None:
            c = claimed[member]
            self.emit(TrialEvent("eval", rung, c.trial.number, c.slot, step=step, metrics=metrics))

        started = time.perf_counter()
        try:
            results = run_ensemble(
                self.workload,
                [c.spec for c in claimed],
                self.target,
                stop_at_target=self.config.stopping.at_target,
                stop_after=_BestSteps(study, stop_after)
                if self.config.stopping.once_beaten
                else None,
                on_eval=on_eval,
                prune=self._pruner(rung, study),
            )
        except EnsembleUnsupported:
            raise
        except Exception as error:
            # One member's failure fails the batched step: run them alone to find it.
            logger.warning(
                "ensemble at batch size %d failed (%s); running its trials alone",
                rung.batch_size,
                error,
            )
            for c in claimed:
                self._run_alone(rung, study, c, stop_after)
            return
        # Wall time is shared: each member is charged an equal part.
        wall = (time.perf_counter() - started) / len(claimed)
        for c, result in zip(claimed, results, strict=True):
            if _record(study, c, result, wall, ensemble=len(claimed)):
                self._finished(rung, c, result)

    def _failed(
        self, rung: Rung, study: optuna.Study, c: _Claimed, error: Exception, wall: float
    ) -> None:
        reason = _record_failure(study, c, error, wall)
        if reason is None:
            return
        self.emit(TrialEvent("finish", rung, c.trial.number, c.slot, status="error"))
        logger.error("trial %d of %s failed: %s", c.trial.number, rung.study_name, reason)
        if self.fail_fast:
            raise FailFast(
                f"trial {c.trial.number} at batch size {rung.batch_size} failed: {reason}"
            ) from error

    def _finished(self, rung: Rung, c: _Claimed, result: RunResult) -> None:
        self.emit(
            TrialEvent(
                "finish",
                rung,
                c.trial.number,
                c.slot,
                status=result.status,
                steps_to_target=result.steps_to_target,
            )
        )


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return f"out of memory: {error}"
    return f"{type(error).__name__}: {error}"


def work(
    config: StudyConfig,
    storage_url: str,
    *,
    fail_fast: bool = False,
    on_event: Callable[[TrialEvent], None] | None = None,
    poll_interval: float | None = None,
    max_trials: int | None = None,
) -> int:
    """Run planned trials until every rung's queue is empty and nothing is running.

    Smallest batch sizes are served first: their trials are batched into ensembles
    and finish quickly, and their best points then decide the order in which the
    larger rungs' trials run (:func:`nearest_first`, with stop-once-beaten on), so
    that the long trials of the largest rungs stop early once beaten. While
    other workers still run trials, an idle worker waits and watches for dead
    ones (every ``poll_interval``), so a study finishes even if a peer is killed;
    it leaves as soon as nothing is running.

    Returns:
        The number of trials this worker ran.
    """
    storage = open_storage(
        storage_url,
        heartbeat_interval=config.workers.heartbeat_interval,
        grace_period=config.workers.grace_period,
    )
    workload = get_workload(config.workload.name, config.workload.params)
    validate_against_workload(config, workload)
    rung_studies = sorted(load_rung_studies(storage, config), key=lambda rs: rs[0].batch_size)
    runner = TrialRunner(workload, config, fail_fast=fail_fast, on_event=on_event)
    poll = poll_interval if poll_interval is not None else config.workers.heartbeat_interval
    ran = 0
    last_reap = 0.0
    while max_trials is None or ran < max_trials:
        if time.monotonic() - last_reap > poll:
            for _, study in rung_studies:
                requeue_stale_trials(study, storage_url, config.workers.grace_period)
            last_reap = time.monotonic()
        claimed = None
        for rung, study in rung_studies:
            warm = warm_start_for(config, rung, rung_studies)
            if warm == "wait":
                continue  # its neighbour is still searching; a later pass takes it
            want = runner.ensemble_size(rung)
            if max_trials is not None:
                want = min(want, max_trials - ran)
            order = None
            if config.stopping.once_beaten:
                order = nearest_first(config, rung, rung_studies, warm)
            trials = _claim(study, config, rung, want, warm, order)
            if trials:
                claimed = (rung, study, trials)
                break
        if claimed is None:
            running = sum(
                len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
                for _, study in rung_studies
            )
            if running == 0:
                break
            # Look again soon (a peer's last trial ending ends the study; the
            # reaping above still runs once per poll interval).
            time.sleep(min(poll, IDLE_CHECK_S))
            continue
        rung, study, trials = claimed
        runner.run(rung, study, trials)
        ran += len(trials)
    return ran
