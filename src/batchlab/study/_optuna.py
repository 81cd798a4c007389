"""The few Optuna internals batchlab relies on, behind one small module.

Optuna's public API runs a study the ask-and-tell way (``Study.ask`` hands out the
next trial, ``Study.tell`` finishes it) and keeps its storage behind the study.
batchlab needs a little more, for which Optuna has no public API:

* claim a *chosen* ``WAITING`` trial, never a new one (``Study.ask`` pops the first
  waiting trial, and creates one when none waits): the trials of a rung are exactly
  the planned ones, claimed in an order of batchlab's choosing;
* write system attributes (heartbeat, host, pid) and states of trials by id, including
  trials another worker claimed (a dead worker's): ``Trial.set_system_attr`` is gone
  and ``Study.tell`` only finishes, it does not annotate;
* re-read one trial's state from the storage (has a peer reaped it?);
* read a waiting trial's planned point, and enqueue a copy of a trial: both go
  through the system attribute in which ``Study.enqueue_trial`` keeps the params
  of a trial that has not run yet;
* the storages' specifics: the journal backend with batchlab's lock (and its file),
  an RDB storage with Optuna's heartbeat (and its engine, seen through the cache
  Optuna wraps it in), its heartbeat threads and its stale-trial reaper.

Every other module goes through these functions and never touches an Optuna private
attribute or module, so an Optuna upgrade that moves one of them breaks here only
(``tests/study`` exercises each of them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

#: A trial as Optuna hands it out (to the worker that runs it) or reads it back.
AnyTrial = optuna.Trial | FrozenTrial

#: The system attribute in which ``Study.enqueue_trial`` keeps an enqueued trial's
#: params until it runs (Optuna's convention; no public accessor).
_FIXED_PARAMS = "fixed_params"


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (private in Optuna: ``Study._storage``)."""
    return study._storage


def trial_id(trial: AnyTrial) -> int:
    """The storage-wide id of a trial (private in Optuna: ``_trial_id``).

    Storage methods address trials by this id; ``Trial.number`` counts per study.
    """
    return trial._trial_id


def start_trial(study: optuna.Study, waiting: FrozenTrial) -> optuna.Trial | None:
    """Move one ``WAITING`` trial to ``RUNNING``; ``None`` if another worker took it first.

    The storage arbitrates the race: only one ``RUNNING`` transition succeeds. The
    returned ``Trial`` is the one ``Study.ask`` would have handed out for it.
    """
    storage, tid = storage_of(study), trial_id(waiting)
    try:
        if not storage.set_trial_state_values(tid, state=TrialState.RUNNING):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    return optuna.Trial(study, tid)


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params a trial was enqueued with (empty for a trial enqueued without any)."""
    return trial.system_attrs.get(_FIXED_PARAMS) or {}


def enqueue_copy(study: optuna.Study, trial: FrozenTrial, system_attrs: dict[str, Any]) -> None:
    """Enqueue a new ``WAITING`` trial with ``trial``'s enqueued params and user attributes."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            user_attrs=trial.user_attrs,
            system_attrs={_FIXED_PARAMS: trial.system_attrs.get(_FIXED_PARAMS, {}), **system_attrs},
        )
    )


def add_failed_copy(
    study: optuna.Study,
    trial: FrozenTrial,
    system_attrs: dict[str, Any],
    user_attrs: dict[str, Any],
) -> None:
    """Add a finished ``FAIL`` copy of ``trial`` (its slot, seed, attributes) with ``user_attrs``."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            user_attrs={**trial.user_attrs, **user_attrs},
            system_attrs={_FIXED_PARAMS: trial.system_attrs.get(_FIXED_PARAMS, {}), **system_attrs},
        )
    )


def reload_trial(study: optuna.Study, trial: AnyTrial) -> FrozenTrial:
    """One trial as the storage holds it now (a peer may have finished or failed it)."""
    return storage_of(study).get_trial(trial_id(trial))


def set_system_attrs(study: optuna.Study, trial: AnyTrial, attrs: dict[str, Any]) -> None:
    """Write system attributes of a trial (batchlab's bookkeeping, not its results)."""
    storage, tid = storage_of(study), trial_id(trial)
    for key, value in attrs.items():
        storage.set_trial_system_attr(tid, key, value)


def fail_trial(study: optuna.Study, trial: AnyTrial, user_attrs: dict[str, Any]) -> None:
    """Fail a ``RUNNING`` trial held by another (dead) worker, annotating it first."""
    storage, tid = storage_of(study), trial_id(trial)
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(tid, key, value)
    storage.set_trial_state_values(tid, state=TrialState.FAIL)


# -- storage specifics ------------------------------------------------------------


def journal_storage(path: str, lock: Any) -> BaseStorage:
    """A journal-file storage whose appends hold ``lock`` (``acquire``/``release``).

    Raises ``ValueError`` when the journal holds a record that does not parse.
    """
    return JournalStorage(_NamedJournalFileBackend(path, lock_obj=lock))


class _NamedJournalFileBackend(JournalFileBackend):
    """A journal backend whose failed appends (disk full) name the journal file."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        try:
            super().append_logs(logs)
        except OSError as error:
            if error.filename is not None:
                raise
            # A torn record left behind is dropped before the next append (FlockLock).
            raise type(error)(error.errno, error.strerror, self._file_path) from error


def rdb_storage(
    url: str,
    *,
    heartbeat_interval: float,
    grace_period: float,
    on_stale: Callable[[optuna.Study, FrozenTrial], None],
) -> BaseStorage:
    """An SQLAlchemy storage with Optuna's heartbeat; ``on_stale`` gets each dead trial.

    Optuna counts heartbeats in whole seconds (at least 1 s, and a grace of 2 s).
    """
    return RDBStorage(
        url,
        heartbeat_interval=max(1, round(heartbeat_interval)),
        grace_period=max(2, round(grace_period)),
        heartbeat_stale_trial_callback=on_stale,
        engine_kwargs={"pool_pre_ping": True},
    )


def _unwrapped(storage: BaseStorage) -> BaseStorage:
    """The storage behind Optuna's cache: a study loaded on an ``RDBStorage`` holds it
    wrapped in ``_CachedStorage`` (private in Optuna: ``_CachedStorage._backend``)."""
    from optuna.storages._cached_storage import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def journal_file(storage: BaseStorage) -> str | None:
    """The file of a journal storage (private in Optuna: the backend's ``_file_path``)."""
    storage = _unwrapped(storage)
    if isinstance(storage, JournalStorage) and isinstance(storage._backend, JournalFileBackend):
        return str(storage._backend._file_path)
    return None


def rdb_engine(storage: BaseStorage) -> Any | None:
    """The SQLAlchemy engine of an RDB storage (``RDBStorage.engine``), else ``None``."""
    storage = _unwrapped(storage)
    return storage.engine if isinstance(storage, RDBStorage) else None


def has_optuna_heartbeat(study: optuna.Study) -> bool:
    """Whether the study's storage is an RDB storage with Optuna's own heartbeat on.

    Seen through Optuna's cache (which forwards heartbeats to the RDB storage): its
    heartbeats carry the database server's clock, not each worker's, and its reaper
    fails a stale trial in one row-locked transaction, so of two reapers only one
    wins and calls the stale-trial callback.
    """
    storage = _unwrapped(storage_of(study))
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def record_optuna_heartbeat(study: optuna.Study, trial: AnyTrial) -> None:
    """One heartbeat of Optuna's (server time) for a trial, e.g. right at its claim:
    Optuna's reaper never takes a ``RUNNING`` trial without one for dead."""
    storage = _unwrapped(storage_of(study))
    assert isinstance(storage, RDBStorage)
    storage.record_heartbeat(trial_id(trial))


def is_storage_outage(error: BaseException) -> bool:
    """Whether ``error`` means the storage stopped answering (a database server down).

    Optuna's RDB storage wraps SQLAlchemy's errors in ``StorageInternalError``; a
    read outside its sessions raises SQLAlchemy's ``OperationalError`` itself.
    SQLite's "database is locked" is contention between writers, not an outage: it
    is handled as before (the trial, or the worker, fails with it).
    """
    if "database is locked" in f"{error} {error.__cause__}":
        return False
    if isinstance(error, optuna.exceptions.StorageInternalError):
        return True
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:  # no SQLAlchemy: no RDB storage either
        return False
    return isinstance(error, (InterfaceError, OperationalError))


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's reaper: fail stale trials of an RDB storage and call its stale callback."""
    from optuna.storages import fail_stale_trials as optuna_fail_stale_trials

    with warnings.catch_warnings():  # "experimental since v2.9": used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna_fail_stale_trials(study)
