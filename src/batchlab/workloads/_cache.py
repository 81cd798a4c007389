"""On-disk cache for generated data sets (e.g. mnist1d), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import atomic_write


def cache_dir() -> Path:
    """``$BATCHLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/batchlab``, else ``~/.cache/batchlab``."""
    explicit = os.environ.get("BATCHLAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "batchlab"


def load_arrays(name: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``name``, or ``None`` if absent or unreadable."""
    path = cache_dir() / f"{name}.npz"
    if not path.exists():
        return None
    try:
        # allow_pickle=False: a cache file is data, never code.
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError):
        return None


def save_arrays(name: str, **arrays: np.ndarray) -> Path:
    """Cache ``arrays`` under ``name`` (atomic: temporary file, then rename)."""
    return atomic_write(cache_dir() / f"{name}.npz", lambda handle: np.savez(handle, **arrays))
