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
from typing import Any

import optuna
from optuna.storages import BaseStorage

from .._errors import BatchlabError, ConfigError
from .._secrets import redact_url
from . import _optuna
from ._config import StudyConfig
from ._journal import FlockLock, journal_path, recover_journal
from ._liveness import requeue
from ._plan import CONFIG_ATTR


class StorageError(BatchlabError):
    """The storage cannot be opened or read."""


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
            return _optuna.journal_storage(str(path), FlockLock(f"{path}.lock"))
        except ValueError as error:
            raise StorageError(f"cannot read the journal {path}: {error}") from error
    try:
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
