"""The journal file, the default storage: its path, its lock, and recovery after a crash.

A journal is one append-only file of JSON records. Every append holds a
``flock`` on ``<journal>.lock``; other writers of the study directory (planning,
reaping dead workers' trials) take locks of their own with :func:`locked`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

JOURNAL_NAME = "optuna.journal"


class FlockLock:
    """A journal lock held with ``fcntl.flock``: the kernel releases it if the holder dies.

    It has the ``acquire``/``release`` interface ``JournalFileBackend`` expects of its
    ``lock_obj``.

    Optuna's default symlink lock survives a ``kill -9`` of its holder and blocks
    every other worker until its 30 s grace period passes; ``flock`` does not.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, journal: str | os.PathLike[str] | None = None
    ) -> None:
        self._path = str(path)
        self._journal = Path(journal) if journal is not None else None
        self._handle: int | None = None
        self._thread_lock = threading.Lock()

    def acquire(self) -> bool:
        self._thread_lock.acquire()
        self._handle = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        if self._journal is not None:
            # Every append holds this lock, so a tail without a newline now is a write
            # that was cut short (its writer was killed, or the disk filled up): drop it
            # before the next record is appended, or the two would share one line and
            # make a corrupt record in the middle of the journal.
            try:
                _drop_torn_tail(self._journal)
            except BaseException:
                self.release()
                raise
        return True

    def release(self) -> None:
        assert self._handle is not None
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)
        self._handle = None
        self._thread_lock.release()


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (released if this process dies)."""
    lock = FlockLock(lock_file)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def recover_journal(path: Path) -> int:
    """Drop a truncated last record (a write cut short by a crash); returns bytes dropped.

    Every complete record ends with a newline and was fsync'ed before its writer
    went on, so a trailing fragment without one was never acknowledged to anyone:
    removing it loses nothing. Anything else that does not parse is reported, not
    guessed at.
    """
    if not path.exists():
        return 0
    with locked(Path(f"{path}.lock")):
        return _drop_torn_tail(path)


def _drop_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline (the caller holds the journal's lock)."""
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0  # the common case: one byte read
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
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


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal:///path`` URL or a plain path, else ``None``."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" not in url:
        return Path(url)
    return None
