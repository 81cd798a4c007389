"""Shared by the framework integration tests."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(name: str, extra: str) -> ModuleType:
    """Import framework ``name``; skip the module when it is absent, unless CI requires it.

    CI sets ``BATCHLAB_REQUIRE_INTEGRATIONS=1`` (it installs every extra), so there a
    missing framework fails loudly instead of skipping its tests.
    """
    if os.environ.get("BATCHLAB_REQUIRE_INTEGRATIONS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed (batchlab[{extra}])")
