"""Scaling studies: batch-size ladder, per-batch-size tuning, steps-to-target, storage.

A study is planned (:mod:`._plan`: rungs, quasi-random points), stored in Optuna
(:mod:`._storage`, with every Optuna internal behind :mod:`._optuna`), and run by
workers (:mod:`._worker`) that claim trials (:mod:`._claims`) in a useful order
(:mod:`._order`), run them (:mod:`._runner`) and keep them alive
(:mod:`._liveness`). :class:`Study` ties it together in a directory.
"""

from ..results import RungResult, StudyResult, TrialRecord
from ..training import RunResult, RunSpec, run_training, steps_to_target
from ._collect import slot_counts
from ._config import StudyConfig
from ._optuna import is_storage_outage
from ._plan import CONFIG_ATTR
from ._runner import FailFast, TrialEvent
from ._storage import (
    StorageError,
    StorageUnreachable,
    find_study_config,
    open_storage,
    storage_summary_attrs,
    storage_unreachable,
)
from ._study import RungStatus, Study, StudyIncomplete, WorkersDied, describe_unfinished
from ._worker import WorkloadNotAllowed, check_workload_consent, unfinished_trials, work

__all__ = [
    "CONFIG_ATTR",
    "FailFast",
    "RunResult",
    "RunSpec",
    "RungResult",
    "RungStatus",
    "StorageError",
    "StorageUnreachable",
    "is_storage_outage",
    "storage_unreachable",
    "Study",
    "StudyConfig",
    "StudyIncomplete",
    "StudyResult",
    "TrialEvent",
    "TrialRecord",
    "WorkersDied",
    "WorkloadNotAllowed",
    "check_workload_consent",
    "describe_unfinished",
    "find_study_config",
    "open_storage",
    "run_training",
    "slot_counts",
    "steps_to_target",
    "storage_summary_attrs",
    "unfinished_trials",
    "work",
]
