"""Crash-safe file writes: write to a temporary file beside the target, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a process resumed
after ``kill -9``) sees either the old file or the complete new one, never half.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file, fsync it, rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's PID in the name lets a later process tell an abandoned temporary
    # (its writer was killed) from one being written right now.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666
        # less the umask), so a report or results file can be shared as usual.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        # Nothing half-written is left behind, whatever interrupted us.
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            # A failed write() (disk full) names no file: name the one being written.
            raise type(error)(error.errno, error.strerror, str(path)) from error
        raise
    return path


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it: do it once, and put it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN/inf are rejected)."""
    return atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries in ``directory`` left by writers that were killed mid-write."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        parts = tmp.name.split(".")
        pid = next((int(p) for p in reversed(parts[:-2]) if p.isdigit()), None)
        if pid is None or _alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
