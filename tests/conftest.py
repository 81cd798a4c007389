"""Shared fixtures: a per-session data cache so tests never touch the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Reuse CI's cache if set (generated data survive between test processes).
    if not os.environ.get("BATCHLAB_CACHE_DIR"):
        os.environ["BATCHLAB_CACHE_DIR"] = str(
            Path(os.environ.get("BATCHLAB_TEST_CACHE", tmp_path_factory.mktemp("cache")))
        )
