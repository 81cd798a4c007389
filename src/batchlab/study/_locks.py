"""Locks the storage itself holds, so that planning and re-queueing happen exactly once.

A study's slots are enqueued by whoever plans it (``study run``/``resume``, on any
machine), and re-enqueued by whoever reaps a dead worker's trial or finds a lost
slot. Two of them at once would enqueue a slot twice, so each holds a lock that
every process sharing the storage sees, and that is released if its holder dies:

* a journal, or an SQLite file: an ``flock`` on a file beside it (the kernel
  releases it with the process);
* PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``), which
  the server releases at the end of the transaction, or when the holder's
  connection drops;
* any other database: none; a warning says so once (its workers must not plan or
  reap at the same moment).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from .._errors import BatchlabError
from . import _optuna
from ._journal import locked

logger = logging.getLogger(__name__)

#: How long a process waits for a PostgreSQL lock before it gives up, seconds (a
#: holder that hangs, e.g. a stopped process whose connection stays open).
LOCK_TIMEOUT_S = 120

_warned: set[str] = set()


class StorageLockTimeout(BatchlabError):
    """A storage lock was held by another process for longer than :data:`LOCK_TIMEOUT_S`."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's advisory locks take a bigint)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def storage_lock(storage: BaseStorage, purpose: str, scope: str = "") -> Iterator[None]:
    """Hold the lock ``purpose`` of ``storage`` (e.g. ``"plan"``, ``"reap"``) while inside.

    ``scope`` narrows it on a database, which may hold many studies (e.g. the rung
    study being reaped); a journal or SQLite file holds one batchlab study, and its
    lock file is ``<file>.<purpose>.lock``.

    Raises:
        StorageLockTimeout: PostgreSQL only: another process held the lock for
            :data:`LOCK_TIMEOUT_S` seconds.
    """
    path = _optuna.journal_file(storage)
    engine = _optuna.rdb_engine(storage)
    if path is None and engine is not None and engine.dialect.name == "sqlite":
        database = engine.url.database
        path = database if database and database != ":memory:" else None
        if path is None:  # one process's memory: nobody to exclude
            yield
            return
    if path is not None:
        with locked(Path(f"{path}.{purpose}.lock")):
            yield
        return
    if engine is not None and engine.dialect.name == "postgresql":
        with _advisory_lock(engine, f"batchlab:{purpose}:{scope}"):
            yield
        return
    dialect = engine.dialect.name if engine is not None else type(storage).__name__
    if dialect not in _warned:
        _warned.add(dialect)
        logger.warning(
            "storage %s has no cross-process lock in batchlab: planning a study and "
            "re-queueing dead workers' trials from two processes at the same moment "
            "could enqueue a slot twice (use PostgreSQL or a journal file)",
            dialect,
        )
    yield


@contextlib.contextmanager
def table_creation_lock(url: str) -> Iterator[None]:
    """Held while an RDB storage at ``url`` is opened, which creates its tables if missing.

    Optuna creates them when none exist; two machines opening a fresh database at once
    would both try, and PostgreSQL refuses the second (``CREATE TYPE``: duplicate key).
    PostgreSQL: an advisory lock on a connection of its own; SQLite: an ``flock``
    beside the file; any other URL: none.
    """
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, poolclass=NullPool)
        try:
            with _advisory_lock(engine, "batchlab:create-tables"):
                yield
        finally:
            engine.dispose()
        return
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if database and database != ":memory:":
        with locked(Path(f"{database}.create.lock")):
            yield
        return
    yield


@contextlib.contextmanager
def _advisory_lock(engine: Any, name: str) -> Iterator[None]:
    """A PostgreSQL advisory lock, held for one transaction on its own connection."""
    from sqlalchemy import exc, text

    with engine.connect() as connection, connection.begin():
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'"))
        try:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)}
            )
        except exc.OperationalError as error:
            if "lock timeout" not in str(error):
                raise
            raise StorageLockTimeout(
                f"waited {LOCK_TIMEOUT_S} s for the storage lock {name!r}, held by another "
                "process (planning the study, or re-queueing a dead worker's trials); "
                "is one of them stopped or hung? Try again once it is gone"
            ) from None
        yield
