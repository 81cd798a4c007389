"""Optuna storages for studies: journal file by default, any RDB URL for many machines.

One Optuna study per rung lives in one storage. Trials are *planned*: every rung's
trials are enqueued up front (``WAITING``), each with its slot number and seed, and
workers pop them one at a time, so the set of trials is fixed whatever the number of
workers and each runs exactly once. A trial whose worker died (its heartbeat went
stale, or its process is gone) is failed and its slot re-enqueued.

Why not Optuna's heartbeat alone: ``JournalStorage`` has none, and re-enqueueing
from two reapers at once would duplicate a slot, so journal reaping runs under a
file lock; on RDB storages Optuna's own heartbeat and retry callback are used, whose
state change is transactional.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from .._errors import BatchlabError

logger = logging.getLogger(__name__)

JOURNAL_NAME = "optuna.journal"
HEARTBEAT_ATTR = "batchlab:heartbeat"
HOST_ATTR = "batchlab:host"
PID_ATTR = "batchlab:pid"
RETRY_ATTR = "batchlab:retry_of"


class StorageError(BatchlabError):
    """The storage cannot be opened or read."""


class FlockLock:
    """A journal lock held with ``fcntl.flock``: the kernel releases it if the holder dies.

    It has the ``acquire``/``release`` interface ``JournalFileBackend`` expects of its
    ``lock_obj``.

    Optuna's default symlink lock survives a ``kill -9`` of its holder and blocks
    every other worker until its 30 s grace period passes; ``flock`` does not.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = str(path)
        self._handle: int | None = None
        self._thread_lock = threading.Lock()

    def acquire(self) -> bool:
        self._thread_lock.acquire()
        self._handle = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        assert self._handle is not None
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)
        self._handle = None
        self._thread_lock.release()


def recover_journal(path: Path) -> int:
    """Drop a truncated last record (a write cut short by a crash); returns bytes dropped.

    Every complete record ends with a newline and was fsync'ed before its writer
    went on, so a trailing fragment without one was never acknowledged to anyone:
    removing it loses nothing. Anything else that does not parse is reported, not
    guessed at.
    """
    if not path.exists():
        return 0
    with _locked(Path(f"{path}.lock")):
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        dropped = len(data) - keep
        logger.warning(
            "journal %s ended with a truncated record (%d bytes, never completed); dropped it",
            path,
            dropped,
        )
        return dropped


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (released if this process dies)."""
    lock = FlockLock(lock_file)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal:///path`` URL or a plain path, else ``None``."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" not in url:
        return Path(url)
    return None


def open_storage(
    url: str,
    *,
    heartbeat_interval: float = 5.0,
    grace_period: float = 30.0,
    create: bool = True,
) -> BaseStorage:
    """Open an Optuna storage from a URL.

    ``journal:///abs/path`` or a plain file path opens a journal file (created if
    missing, truncated last record recovered); anything else is an SQLAlchemy URL
    (``sqlite:///...``, ``postgresql://...``) for Optuna's RDB storage, with Optuna's
    heartbeat and a retry callback that re-enqueues trials of dead workers.
    """
    path = journal_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"no journal file at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_journal(path)
        try:
            return JournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(f"{path}.lock")))
        except ValueError as error:
            raise StorageError(f"cannot read the journal {path}: {error}") from error
    try:
        return RDBStorage(
            url,
            heartbeat_interval=max(1, round(heartbeat_interval)),
            grace_period=max(2, round(grace_period)),
            heartbeat_stale_trial_callback=_requeue_callback,
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as error:  # SQLAlchemy raises many kinds; all mean "cannot open"
        raise StorageError(
            f"cannot open storage {url!r}: {type(error).__name__}: {error}"
        ) from error


def _requeue_callback(study: optuna.Study, trial: FrozenTrial) -> None:
    requeue(study, trial)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a fresh copy of a failed trial's slot (same params, slot and seed)."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            user_attrs=trial.user_attrs,
            system_attrs={
                "fixed_params": trial.system_attrs.get("fixed_params", {}),
                RETRY_ATTR: trial.system_attrs.get(RETRY_ATTR, trial.number),
            },
        )
    )


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def pop_waiting_trial(
    study: optuna.Study, order: Callable[[FrozenTrial], float] | None = None
) -> optuna.Trial | None:
    """Claim the next ``WAITING`` trial, or ``None`` if there is none.

    Unlike ``Study.ask`` this never creates a new trial when the queue is empty: a
    study's trials are exactly the planned ones. The storage arbitrates a race for
    the same trial (only one ``RUNNING`` transition succeeds). ``order`` ranks the
    waiting trials (lowest first; ties keep the queue's order).
    """
    storage = study._storage
    study_id = study._study_id
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    if order is not None:
        waiting = sorted(waiting, key=order)
    for frozen in waiting:
        try:
            if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        trial = optuna.Trial(study, frozen._trial_id)
        storage.set_trial_system_attr(frozen._trial_id, HOST_ATTR, socket.gethostname())
        storage.set_trial_system_attr(frozen._trial_id, PID_ATTR, os.getpid())
        storage.set_trial_system_attr(frozen._trial_id, HEARTBEAT_ATTR, time.time())
        return trial
    return None


@contextlib.contextmanager
def heartbeat(storage: BaseStorage, trial_ids: list[int], interval: float) -> Iterator[None]:
    """Record a heartbeat for each of ``trial_ids`` every ``interval`` seconds while inside."""
    if uses_optuna_heartbeat(storage):
        from optuna.storages._heartbeat import get_heartbeat_thread

        with contextlib.ExitStack() as stack:
            for trial_id in trial_ids:
                stack.enter_context(get_heartbeat_thread(trial_id, storage))
            yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids:
                try:
                    storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except Exception:  # the trial finished meanwhile, or a storage hiccup
                    logger.debug("heartbeat for trial %d failed", trial_id, exc_info=True)

    thread = threading.Thread(target=beat, name="batchlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _is_dead(trial: FrozenTrial, grace_period: float, now: float) -> bool:
    host, pid = trial.system_attrs.get(HOST_ATTR), trial.system_attrs.get(PID_ATTR)
    if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # same machine, process gone: no need to wait for the grace period
        except PermissionError:
            pass
    last = trial.system_attrs.get(HEARTBEAT_ATTR)
    if last is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > grace_period
    return now - float(last) > grace_period


def requeue_stale_trials(study: optuna.Study, storage_url: str, grace_period: float) -> int:
    """Fail the ``RUNNING`` trials whose worker died and re-enqueue their slots.

    Returns the number of trials re-enqueued.
    """
    storage = study._storage
    if uses_optuna_heartbeat(storage):
        from optuna.storages import fail_stale_trials

        before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        fail_stale_trials(study)
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before
    path = journal_path(storage_url)
    # Its own lock file: the journal's lock is taken by every append inside.
    lock = _locked(Path(f"{path}.reap.lock")) if path is not None else contextlib.nullcontext()
    requeued = 0
    with lock:
        now = time.time()
        running = storage.get_all_trials(study._study_id, states=(TrialState.RUNNING,))
        for trial in running:
            if not _is_dead(trial, grace_period, now):
                continue
            storage.set_trial_user_attr(trial._trial_id, "status", "worker_died")
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            requeue(study, trial)
            requeued += 1
            logger.warning(
                "trial %d of %s: its worker died; re-enqueued its slot",
                trial.number,
                study.study_name,
            )
    return requeued


def storage_summary_attrs(storage: BaseStorage) -> list[tuple[str, dict[str, Any]]]:
    """(study name, user attrs) of every study in the storage."""
    return [
        (summary.study_name, summary.user_attrs)
        for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=False)
    ]
