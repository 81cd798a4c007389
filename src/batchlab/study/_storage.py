"""Optuna storages for studies: journal file by default, any RDB URL for many machines.

One Optuna study per rung lives in one storage. Trials are *planned*: every rung's
trials are enqueued up front (``WAITING``), each with its slot number and seed, and
workers claim them one at a time (:mod:`batchlab.study._claims`), so the set of
trials is fixed whatever the number of workers and each runs exactly once. A trial
whose worker died is re-run (:mod:`batchlab.study._liveness`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from .._errors import BatchlabError, ConfigError
from .._secrets import redact_url
from . import _optuna
from ._config import StudyConfig
from ._journal import FlockLock, journal_path, recover_journal
from ._liveness import requeue
from ._locks import table_creation_lock
from ._plan import CONFIG_ATTR


class StorageError(BatchlabError):
    """The storage cannot be opened or read."""


class StorageUnreachable(StorageError):
    """The storage stopped answering while a worker ran (its database server is down)."""


def storage_unreachable(url: str, error: BaseException) -> StorageUnreachable:
    """The error a worker stops with when the storage at ``url`` stops answering.

    It names the storage (password masked) and how to go on: nothing is lost, a trial
    the worker held is re-run by the next worker once the storage is back.
    """
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__:
        error = error.__cause__  # Optuna's wrapper says "during the commit"; the driver, why
    detail = " ".join(str(error).split())[:300]
    return StorageUnreachable(
        redact_url(
            f"the storage {url!r} became unreachable ({type(error).__name__}: {detail}); "
            "this worker stopped. Finished trials are kept, and a trial it was running "
            "is re-run: once the storage answers again, run `batchlab study resume DIR` "
            "where the study was started, or `batchlab study worker URL` on any machine"
        )
    )


def open_storage(
    url: str,
    *,
    heartbeat_interval: float = 5.0,
    grace_period: float = 30.0,
    max_retries: int | None = None,
    create: bool = True,
) -> BaseStorage:
    """Open an Optuna storage from a URL.

    ``journal:///abs/path`` or a plain file path opens a journal file (created if
    missing, truncated last record recovered); anything else is an SQLAlchemy URL
    (``sqlite:///...``, ``postgresql://...``) for Optuna's RDB storage, with Optuna's
    heartbeat and a retry callback that re-enqueues trials of dead workers.

    Errors show the URL with its password masked (:func:`batchlab._secrets.redact_url`);
    the driver's own message is masked too, in case it quotes the URL.
    """
    path = journal_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"no journal file at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_journal(path)
        try:
            return _optuna.journal_storage(str(path), FlockLock(f"{path}.lock", journal=path))
        except ValueError as error:
            raise StorageError(_corrupt_journal(path, error)) from None
    try:
        with table_creation_lock(url):  # machines opening a fresh database at once
            return _optuna.rdb_storage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                on_stale=functools.partial(requeue, max_retries=max_retries),
            )
    except Exception as error:  # SQLAlchemy raises many kinds; all mean "cannot open"
        raise StorageError(
            redact_url(f"cannot open storage {url!r}: {type(error).__name__}: {error}")
        ) from None  # the chained driver error would carry the URL into a traceback


def _corrupt_journal(path: Path, error: ValueError) -> str:
    """What is wrong with a journal that does not parse: which line, and what to do."""
    where = f"it holds a record that does not parse ({error}); "
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                json.loads(line)
            except ValueError:
                if line.endswith(b"\n"):  # a torn last line is repaired, not reported
                    where = f"line {number} (record {number}) is not a valid record; "
                    break
    return (
        f"cannot read the journal {path}: {where}"
        "batchlab does not guess what it held, and nothing was written. Restore the "
        "journal from a backup; or delete that line (the trial update it recorded is "
        "lost, and later records of that trial may no longer apply)"
    )


def storage_summary_attrs(storage: BaseStorage) -> list[tuple[str, dict[str, Any]]]:
    """(study name, user attrs) of every study in the storage."""
    return [
        (summary.study_name, summary.user_attrs)
        for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=False)
    ]


def find_study_config(storage_url: str, name: str | None = None) -> StudyConfig:
    """The config of the batchlab study in a storage (``name``: which, if it holds several).

    Raises:
        StorageError: the storage cannot be opened.
        ConfigError: no batchlab study, or no one study to choose, in the storage.
    """
    storage = open_storage(storage_url, create=False)
    configs: dict[str, str] = {}
    for _, attrs in storage_summary_attrs(storage):
        if CONFIG_ATTR in attrs:
            config = json.loads(attrs[CONFIG_ATTR])
            configs.setdefault(config["name"], attrs[CONFIG_ATTR])
    if not configs:
        raise ConfigError(
            f"no batchlab study in storage {redact_url(storage_url)!r}; "
            "start one with `batchlab study run`"
        )
    if name is None:
        if len(configs) > 1:
            raise ConfigError(
                f"the storage holds several studies; choose one with --study: {', '.join(sorted(configs))}"
            )
        name = next(iter(configs))
    if name not in configs:
        raise ConfigError(
            f"no study named {name!r} in the storage; it holds: {', '.join(sorted(configs))}"
        )
    return StudyConfig.model_validate_json(configs[name])
