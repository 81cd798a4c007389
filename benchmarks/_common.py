"""What several benchmark scripts share: CPU time, the environment line, search-only configs.

Imported as ``from _common import ...``: the scripts run as ``python benchmarks/NAME.py``,
which puts this directory first on ``sys.path``.
"""

from __future__ import annotations

import platform
import resource
import sys

import torch

import batchlab
from batchlab.study import StudyConfig


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def study_environment(workers: int, config_name: str) -> str:
    """One line saying what a study benchmark ran on, printed first so figures carry it."""
    return (
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"{workers} workers; config {config_name}"
    )


def search_only(config: StudyConfig) -> StudyConfig:
    """``config`` with its search stage alone (``refine = 0``, ``confirm_top = 0``)."""
    data = config.to_json_dict()
    data["search"] = {**data["search"], "refine": 0, "confirm_top": 0}
    return StudyConfig.model_validate(data)
