"""Liveness of claimed trials: heartbeats, and re-running the trials of dead workers.

A worker that claims a trial records its host, pid and a first heartbeat, then
beats every ``heartbeat_interval`` while the trial trains. A trial whose worker
died (its heartbeat went stale, or its process is gone) is failed and its slot
re-enqueued (:func:`requeue`): the same params, slot and seed, run again by any
worker.

On an RDB storage (PostgreSQL, SQLite) Optuna's own heartbeat is used (see
:func:`~batchlab.study._optuna.has_optuna_heartbeat`): it carries the database
server's clock, and its reaper fails a stale trial in a row-locked transaction and
calls the stale-trial callback (:func:`requeue`) for the one reaper that won.
``JournalStorage`` has no heartbeat, so batchlab beats there itself. On both, a
trial whose process is gone from this machine is reaped without waiting for the
grace period, and every reaping holds the storage's ``reap`` lock
(:func:`~batchlab.study._locks.storage_lock`): a slot between "failed" and
"re-enqueued" is never taken for lost by a process repairing lost slots.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import _optuna
from ._locks import storage_lock
from ._plan import SKIPPED

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "batchlab:heartbeat"
HOST_ATTR = "batchlab:host"
PID_ATTR = "batchlab:pid"
RETRY_ATTR = "batchlab:retry_of"
ADOPTED_ATTR = "batchlab:adopted"


#: Statuses of failed trials that were not a dead worker (an interrupt, the trial's own
#: error, a reserve trial skipped as not needed).
_NOT_DEATHS = ("interrupted", "error", SKIPPED)


def deaths(study: optuna.Study, root: int) -> int:
    """How many runs of the slot first run as trial ``root`` lost their worker."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.system_attrs.get(RETRY_ATTR, t.number) == root
        and t.user_attrs.get("status") not in _NOT_DEATHS
    )


def requeue(study: optuna.Study, trial: FrozenTrial, max_retries: int | None = None) -> None:
    """Enqueue a fresh copy of a failed trial's slot (same params, slot and seed).

    With ``max_retries`` (the slot's worker died): a slot whose worker died more than
    ``max_retries`` times is not run again. A trial that kills its worker (the kernel's
    out-of-memory killer, a segfault) would otherwise be re-run forever; it is
    recorded as failed instead (status ``error``, with the reason), and the study
    goes on.
    """
    root = trial.system_attrs.get(RETRY_ATTR, trial.number)
    died = deaths(study, root) if max_retries is not None else 0
    if max_retries is not None and died > max_retries:
        reason = (
            f"its worker died {died} times running it (killed by the operating system, "
            f"e.g. out of memory, or crashed); not run again (workers.max_retries = "
            f"{max_retries})"
        )
        _optuna.add_failed_copy(
            study, trial, {RETRY_ATTR: root}, {"status": "error", "reason": reason}
        )
        logger.error("slot %s of %s: %s", trial.user_attrs.get("slot"), study.study_name, reason)
        return
    _optuna.enqueue_copy(study, trial, {RETRY_ATTR: root})


def mark_claimed(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record who runs a just-claimed trial (host, pid) and its first heartbeat.

    On an RDB storage that heartbeat is Optuna's too, recorded first: its reaper
    ignores a trial that has none, so a worker killed before it started training
    would otherwise hold its slot forever. A worker that died (or lost the storage)
    between the claim and these marks left a trial with no host: the reaper adopts
    it (:func:`_adopt_unmarked`).
    """
    if _optuna.has_optuna_heartbeat(study):  # first: a trial with a host has a heartbeat
        _optuna.record_optuna_heartbeat(study, trial)
    _optuna.set_system_attrs(
        study,
        trial,
        {HOST_ATTR: socket.gethostname(), PID_ATTR: os.getpid(), HEARTBEAT_ATTR: time.time()},
    )


@contextlib.contextmanager
def heartbeat(
    study: optuna.Study, trials: Sequence[optuna.Trial], interval: float
) -> Iterator[None]:
    """Record a heartbeat for each of ``trials`` every ``interval`` seconds while inside.

    On an RDB storage the heartbeat is Optuna's (server time, read by its reaper),
    recorded from this loop rather than from Optuna's own threads: a failed beat (the
    trial finished meanwhile, or the server is down) is logged, not printed as a
    thread's traceback; the worker itself reports an outage once, with what to do.
    """
    optuna_beats = _optuna.has_optuna_heartbeat(study)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial in trials:
                try:
                    if optuna_beats:
                        _optuna.record_optuna_heartbeat(study, trial)
                    else:
                        _optuna.set_system_attrs(study, trial, {HEARTBEAT_ATTR: time.time()})
                except Exception:  # the trial finished meanwhile, or a storage hiccup
                    logger.debug("heartbeat for trial %d failed", trial.number, exc_info=True)

    thread = threading.Thread(target=beat, name="batchlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _process_gone(trial: FrozenTrial) -> bool:
    """Whether a ``RUNNING`` trial was claimed on this machine by a process that is gone."""
    host, pid = trial.system_attrs.get(HOST_ATTR), trial.system_attrs.get(PID_ATTR)
    if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return False


def _is_dead(trial: FrozenTrial, grace_period: float, now: float) -> bool:
    """Whether a ``RUNNING`` trial's worker is gone: no process, or a stale heartbeat."""
    if _process_gone(trial):
        return True  # same machine, process gone: no need to wait for the grace period
    last = trial.system_attrs.get(HEARTBEAT_ATTR)
    if last is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > grace_period
    return now - float(last) > grace_period


def _adopt_unmarked(study: optuna.Study, running: Sequence[FrozenTrial]) -> None:
    """Give Optuna's reaper the ``RUNNING`` trials no worker marked as its own.

    A worker that died, or lost the storage, between claiming a trial and marking it
    (:func:`mark_claimed`) left it with no host, pid or heartbeat, and Optuna's reaper
    never fails a trial without a heartbeat: it would hold its slot, and the study,
    forever. The first reaper to see such a trial records one heartbeat for it
    (server time), once: a live worker about to mark it beats on; a dead one's trial
    goes stale after the grace period and is re-run like any other.
    """
    for trial in running:
        if HOST_ATTR in trial.system_attrs or ADOPTED_ATTR in trial.system_attrs:
            continue
        try:
            _optuna.record_optuna_heartbeat(study, trial)
            _optuna.set_system_attrs(study, trial, {ADOPTED_ATTR: True})
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile


def reaping(study: optuna.Study) -> contextlib.AbstractContextManager[None]:
    """The storage lock under which a rung's trials are failed and re-enqueued.

    Held while reaping, while an interrupted worker gives its trials back, and
    while :meth:`Study.prepare` re-enqueues lost slots, so that a slot between
    "failed" and "re-enqueued" is never taken for lost, and no slot is re-enqueued
    by two processes.
    """
    return storage_lock(_optuna.storage_of(study), "reap", study.study_name)


def requeue_stale_trials(
    study: optuna.Study, grace_period: float, max_retries: int | None = None
) -> int:
    """Fail the ``RUNNING`` trials whose worker died and re-enqueue their slots.

    A slot whose worker died more than ``max_retries`` times is recorded as failed
    instead (:func:`requeue`). Returns the number of trials failed as stale.
    """
    with reaping(study):
        optuna_reaps = _optuna.has_optuna_heartbeat(study)
        now = time.time()
        requeued = 0
        running = study.get_trials(states=(TrialState.RUNNING,))
        if optuna_reaps:
            _adopt_unmarked(study, running)
        # First the trials whose worker is known dead (gone from this machine; on a
        # journal, also a stale heartbeat): failed as ``worker_died``, then re-enqueued.
        for trial in running:
            if not (_process_gone(trial) if optuna_reaps else _is_dead(trial, grace_period, now)):
                continue
            try:
                _optuna.fail_trial(study, trial, {"status": "worker_died"})
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it finished (or its worker recorded it) meanwhile
            requeue(study, _optuna.reload_trial(study, trial), max_retries)
            requeued += 1
            logger.warning(
                "trial %d of %s: its worker died; re-enqueued its slot",
                trial.number,
                study.study_name,
            )
        if optuna_reaps:  # then Optuna's reaper: stale by the server's clock
            before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            _optuna.fail_stale_trials(study)  # calls requeue(..., max_retries) per trial
            requeued += len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before
    return requeued
