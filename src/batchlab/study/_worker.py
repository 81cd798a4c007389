"""A worker: claims planned trials from the storage and runs them until none are left.

Any number of workers, in any processes on any machines, can share one storage;
each trial is claimed by exactly one of them (:mod:`batchlab.study._claims`). A
trial that raises is recorded as failed with its traceback (the study goes on
unless ``fail_fast``); a worker that dies leaves its trial ``RUNNING`` until another
worker sees it is dead and re-enqueues the slot (:mod:`batchlab.study._liveness`);
an interrupted worker (Ctrl-C) re-enqueues its slot itself.

A worker that joins through the storage reads the config, workload included, from
it: whoever can write the storage names the code the worker imports. So a
``module:function`` workload runs only with the worker's local consent
(:func:`check_workload_consent`); built-in workloads need none.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import NamedTuple

import optuna
from optuna.trial import TrialState

from .._errors import ConfigError
from ..workloads import BUILTIN_WORKLOADS, get_workload, on_device
from ._claims import claim, neighbour_starts
from ._collect import unfinished_by_rung
from ._config import StudyConfig, validate_against_workload
from ._liveness import requeue_stale_trials
from ._optuna import is_storage_outage
from ._order import TransferBase, nearest_first, transfer_base_for, warm_start_for
from ._plan import Rung, load_rung_studies
from ._recheck import recheck_for
from ._runner import TrialEvent, TrialRunner
from ._storage import open_storage, storage_unreachable

#: How often an idle worker looks whether its peers' trials have ended, seconds.
IDLE_CHECK_S = 0.25


class WorkloadNotAllowed(ConfigError):
    """A study's ``module:function`` workload that this worker was not allowed to import."""


def check_workload_consent(config: StudyConfig, allowed: Collection[str]) -> None:
    """Refuse a ``module:function`` workload that is not in ``allowed`` (built-ins pass).

    Raises:
        WorkloadNotAllowed: names the workload the config asks for and how to allow it.
        TypeError: ``allowed`` is a string, not a collection of names.
    """
    if isinstance(allowed, str):  # "m:f" in "m:fn" would be a substring match
        raise TypeError(
            f"allowed_workloads must be a collection of 'module:function' names, got {allowed!r}"
        )
    name = config.workload.name
    if name in BUILTIN_WORKLOADS or name in allowed:
        return
    # Quoted: the name comes from the storage, and users copy the option from here.
    option = f"--allow-workload {shlex.quote(name)}"
    raise WorkloadNotAllowed(
        f"study {config.name!r} asks this worker to import and run workload {name!r}, "
        "code named by whoever wrote the storage; a worker runs a module:function "
        f"workload only with local consent: pass {option} (or --config with the "
        f"study's own config file); in Python, work(..., allowed_workloads=[{name!r}])"
    )


def unfinished_trials(config: StudyConfig, storage_url: str) -> dict[int, list[int]]:
    """Batch size -> planned slots of the study in ``storage_url`` without a final trial."""
    storage = open_storage(storage_url, create=False)
    return unfinished_by_rung(load_rung_studies(storage, config))


def work(
    config: StudyConfig,
    storage_url: str,
    *,
    fail_fast: bool = False,
    on_event: Callable[[TrialEvent], None] | None = None,
    poll_interval: float | None = None,
    max_trials: int | None = None,
    allowed_workloads: Collection[str] | None = None,
    device: str | None = None,
) -> int:
    """Run planned trials until every rung's queue is empty and nothing is running.

    Smallest batch sizes are served first: their trials are batched into ensembles
    and finish quickly, and their best points then decide the order in which the
    larger rungs' trials run (:func:`~batchlab.study._order.nearest_first`, with
    stop-once-beaten on), so that the long trials of the largest rungs stop early
    once beaten. While other workers still run trials, an idle worker waits and
    watches for dead ones (every ``poll_interval``), so a study finishes even if a
    peer is killed; it leaves as soon as nothing is running.

    Args:
        config: the study's config; its storage URL is ``storage_url``.
        storage_url: where the planned trials are (with its password, if any).
        fail_fast: stop at the first trial that raises.
        on_event: per-trial progress.
        poll_interval: how often an idle worker looks for dead peers [default: the
            heartbeat interval].
        max_trials: leave after this many trials.
        allowed_workloads: the ``module:function`` workloads this worker may import.
            Pass it whenever ``config`` was read from the storage
            (:func:`~batchlab.study.find_study_config`): a workload not in it raises
            :class:`WorkloadNotAllowed` before anything is imported. ``None``: the
            config is the caller's own (``Study.run`` passes its own).
        device: where this worker trains (``"auto"``, ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``) [default: the config's ``performance.device``]. The
            workload's data move there once; DDP trials
            (``performance.processes_per_trial`` > 1) train on the CPU.

    Returns:
        The number of trials this worker ran.

    Raises:
        StorageUnreachable: the storage stopped answering (its server is down); the
            message says how to go on. Nothing is lost: a trial this worker held is
            re-run once the storage is back.
    """
    if allowed_workloads is not None:
        check_workload_consent(config, allowed_workloads)
    try:
        return _work(config, storage_url, fail_fast, on_event, poll_interval, max_trials, device)
    except Exception as error:
        if is_storage_outage(error):  # a database server down: say so, not a traceback
            raise storage_unreachable(storage_url, error) from None
        raise


class _Queue(NamedTuple):
    """How many trials the study's rungs hold, and how many wait or run."""

    trials: int
    waiting: int
    running: int


def _queue(rung_studies: list[tuple[Rung, optuna.Study]]) -> _Queue:
    """The rungs' trial counts (:class:`_Queue`), read once."""
    states = [t.state for _, study in rung_studies for t in study.get_trials(deepcopy=False)]
    return _Queue(len(states), states.count(TrialState.WAITING), states.count(TrialState.RUNNING))


def _work(
    config: StudyConfig,
    storage_url: str,
    fail_fast: bool,
    on_event: Callable[[TrialEvent], None] | None,
    poll_interval: float | None,
    max_trials: int | None,
    device: str | None,
) -> int:
    """:func:`work`, after the consent check."""
    storage = open_storage(
        storage_url,
        heartbeat_interval=config.workers.heartbeat_interval,
        grace_period=config.workers.grace_period,
        max_retries=config.workers.max_retries,
    )
    workload = get_workload(config.workload.name, config.workload.params, config.workload.path)
    validate_against_workload(config, workload)
    if config.performance.processes_per_trial > 1:
        device = "cpu"
    workload = on_device(workload, device or config.performance.device)
    rung_studies = sorted(load_rung_studies(storage, config), key=lambda rs: rs[0].batch_size)
    runner = TrialRunner(workload, config, fail_fast=fail_fast, on_event=on_event)
    poll = poll_interval if poll_interval is not None else config.workers.heartbeat_interval
    ran = 0
    last_reap = 0.0
    base: TransferBase | None = None
    while max_trials is None or ran < max_trials:
        if time.monotonic() - last_reap > poll:
            for _, study in rung_studies:
                requeue_stale_trials(study, config.workers.grace_period, config.workers.max_retries)
            last_reap = time.monotonic()
        claimed = None
        before = _queue(rung_studies)
        if base is None:  # once the base rung is over, its chosen point never changes
            base = transfer_base_for(config, rung_studies)
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
            trials = claim(
                study,
                config,
                rung,
                want,
                warm,
                order,
                runner.target,
                base,
                partial(neighbour_starts, config, rung, rung_studies, runner.target),
                partial(recheck_for, rung, rung_studies),
            )
            if trials:
                claimed = (rung, study, trials)
                break
        if claimed is None:
            after = _queue(rung_studies)
            if after == before and after.running == 0:
                break  # a whole pass over an idle, unchanging queue found nothing to run
            if after.running == 0:
                # Trials ended during the pass (skipped as not needed, here or by a
                # peer), which can make a later stage ready: look again at once.
                continue
            # Look again soon (a peer's last trial ending ends the study; the
            # reaping above still runs once per poll interval).
            time.sleep(min(poll, IDLE_CHECK_S))
            continue
        rung, study, trials = claimed
        runner.run(rung, study, trials)
        ran += len(trials)
    return ran
