"""Running claimed trials: as one vmapped ensemble, one by one, or each with DDP.

The runner holds the claimed trials' heartbeat while they train, gives each the
rung's early-stopping rules (stop at target, stop once beaten, optional pruning),
and records every outcome (:mod:`batchlab.study._claims`). A trial that raises is
recorded as failed with its traceback; the study goes on unless ``fail_fast``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna
import torch

from ..training import (
    EnsembleUnsupported,
    RunResult,
    RunSpec,
    has_exact_curves,
    member_memory,
    run_ddp_trial,
    run_ensemble,
    run_training,
)
from ..workloads import Workload, workload_device
from ._claims import Claimed, record, record_failure, release_interrupted
from ._config import StudyConfig, resolve_target
from ._liveness import heartbeat
from ._optuna import is_storage_outage
from ._order import BestSteps, best_steps
from ._plan import Rung
from ._pruning import Pruner

logger = logging.getLogger(__name__)


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


#: On a GPU, an ensemble takes at most this fraction of the free memory (the rest is
#: headroom for the allocator's fragmentation and for evaluation).
GPU_MEMORY_FRACTION = 0.5


def members_that_fit(member_bytes: int, free_bytes: int, trials: int, cap: int) -> int:
    """How many trials of a rung one GPU ensemble takes: as many as fit, within ``cap``.

    An ensemble of K members holds K members' weights, optimizer state and activations:
    K times one member's peak memory (``member_bytes``, measured) within
    :data:`GPU_MEMORY_FRACTION` of ``free_bytes``. At least 1, at most ``trials`` and ``cap``.
    """
    fit = int(GPU_MEMORY_FRACTION * free_bytes // member_bytes) if member_bytes > 0 else cap
    return max(1, min(trials, cap, fit))


class TrialRunner:
    """Runs claimed trials of one study, batched into ensembles where possible.

    Trials train on the device of ``workload``'s data (placed by the caller with
    :func:`~batchlab.workloads.on_device`).
    """

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
        self.device = workload_device(workload)
        self._gpu_sizes: dict[int, int] = {}

    def ensemble_size(self, rung: Rung) -> int:
        """How many of the rung's trials to claim and train together (1: one by one).

        On a CPU, ``performance.size_for``; on a GPU with ``ensemble_size = "auto"``,
        as many as fit in its free memory (a probe of one member's training step,
        :func:`members_that_fit`), at most ``ensemble_max_members``: logged per rung.
        """
        performance = self.config.performance
        trials = self.config.search.trials_per_rung
        if (
            self.ensemble_off is not None
            or has_exact_curves(self.workload)
            or performance.processes_per_trial > 1
        ):
            return 1
        if self.device.type != "cuda" or performance.ensemble_size != "auto":
            return performance.size_for(rung.batch_size, trials)
        if rung.batch_size not in self._gpu_sizes:
            spec = RunSpec(
                batch_size=rung.batch_size,
                optimizer=self.config.optimizer,
                hparams={"lr": 1e-3},
                max_steps=1,
                eval_every=1,
                seed=0,
                precision=performance.precision,
            )
            member = member_memory(self.workload, spec)
            free, _ = torch.cuda.mem_get_info(self.device)
            size = members_that_fit(member, free, trials, performance.ensemble_max_members)
            self._gpu_sizes[rung.batch_size] = size
            logger.info(
                "batch size %d on %s: ensembles of up to %d trials (one member's step "
                "peaks at %.1f MiB; %.1f GiB free)",
                rung.batch_size,
                self.device,
                size,
                member / 2**20,
                free / 2**30,
            )
        return self._gpu_sizes[rung.batch_size]

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

    def _stop_after(self, study: optuna.Study) -> int | None:
        """The rung's best steps-to-target so far, when stop-once-beaten is on."""
        return best_steps(study) if self.config.stopping.once_beaten else None

    def _early_stops(
        self, rung: Rung, study: optuna.Study, claimed: list[Claimed], known: int | None
    ) -> tuple[BestSteps | None, Pruner | None]:
        """Stop-once-beaten and pruning for ``claimed`` (each ``None`` where off).

        Neither applies to confirmation trials: they measure their point on a fresh
        seed, to the target or the budget, not whether it beats another trial.
        """
        if any(c.measures_alone for c in claimed):
            return None, None
        best = BestSteps(study, known) if self.config.stopping.once_beaten else None
        return best, self._pruner(rung, study)

    def run(self, rung: Rung, study: optuna.Study, claimed: list[Claimed]) -> None:
        """Train and record ``claimed`` (trials of ``rung``), as an ensemble if they can be."""
        for c in claimed:
            self.emit(TrialEvent("start", rung, c.trial.number, c.slot))
        stop_after = self._stop_after(study)
        trials = [c.trial for c in claimed]
        with heartbeat(study, trials, self.config.workers.heartbeat_interval):
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
                    stop_after = self._stop_after(study)
            except KeyboardInterrupt:
                release_interrupted(study, claimed)
                raise

    def _run_alone(
        self, rung: Rung, study: optuna.Study, c: Claimed, stop_after: int | None
    ) -> None:
        """Train one trial in this process (or on its own DDP processes) and record it."""

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            self.emit(TrialEvent("eval", rung, c.trial.number, c.slot, step=step, metrics=metrics))

        best, prune = self._early_stops(rung, study, [c], stop_after)
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
                    prune=prune,
                )
        except Exception as error:
            if is_storage_outage(error):
                raise  # not the trial's fault: the worker stops, the trial is re-run
            self._failed(rung, study, c, error, time.perf_counter() - started)
            return
        if record(
            study, c, result, time.perf_counter() - started, ensemble=1, device=str(self.device)
        ):
            self._finished(rung, c, result)

    def _run_ensemble(
        self, rung: Rung, study: optuna.Study, claimed: list[Claimed], stop_after: int | None
    ) -> None:
        """Train ``claimed`` as one vmapped ensemble; if that fails, each trial alone."""

        def on_eval(member: int, step: int, metrics: dict[str, float]) -> None:
            c = claimed[member]
            self.emit(TrialEvent("eval", rung, c.trial.number, c.slot, step=step, metrics=metrics))

        best, prune = self._early_stops(rung, study, claimed, stop_after)
        started = time.perf_counter()
        try:
            results = run_ensemble(
                self.workload,
                [c.spec for c in claimed],
                self.target,
                stop_at_target=self.config.stopping.at_target,
                stop_after=best,
                on_eval=on_eval,
                prune=prune,
            )
        except EnsembleUnsupported:
            raise
        except Exception as error:
            if is_storage_outage(error):
                raise  # not the trials' fault: the worker stops, they are re-run
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
            if record(study, c, result, wall, ensemble=len(claimed), device=str(self.device)):
                self._finished(rung, c, result)

    def _failed(
        self, rung: Rung, study: optuna.Study, c: Claimed, error: Exception, wall: float
    ) -> None:
        reason = record_failure(study, c, error, wall)
        if reason is None:
            return
        self.emit(TrialEvent("finish", rung, c.trial.number, c.slot, status="error"))
        logger.error("trial %d of %s failed: %s", c.trial.number, rung.study_name, reason)
        if self.fail_fast:
            raise FailFast(
                f"trial {c.trial.number} at batch size {rung.batch_size} failed: {reason}"
            ) from error

    def _finished(self, rung: Rung, c: Claimed, result: RunResult) -> None:
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
