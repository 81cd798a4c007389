"""Scaling studies: batch-size ladder, per-batch-size tuning, steps-to-target, storage."""

from ..training import RunResult, RunSpec, run_training, steps_to_target
from ._config import StudyConfig
from ._plan import CONFIG_ATTR
from ._results import RungResult, StudyResult, TrialRecord
from ._storage import open_storage, storage_summary_attrs
from ._study import RungStatus, Study, WorkersDied
from ._worker import FailFast, TrialEvent, work

__all__ = [
    "CONFIG_ATTR",
    "FailFast",
    "RunResult",
    "RunSpec",
    "RungResult",
    "RungStatus",
    "Study",
    "StudyConfig",
    "StudyResult",
    "TrialEvent",
    "TrialRecord",
    "WorkersDied",
    "open_storage",
    "run_training",
    "steps_to_target",
    "storage_summary_attrs",
    "work",
]
