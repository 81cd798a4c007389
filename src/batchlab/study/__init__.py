"""Scaling studies: batch-size ladder, per-batch-size tuning, steps-to-target, storage."""

from ._config import StudyConfig
from ._results import RungResult, StudyResult, TrialRecord
from ._study import RungStatus, Study, WorkersDied
from ._trial import RunResult, RunSpec, run_training, steps_to_target
from ._worker import TrialEvent, work

__all__ = [
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
    "run_training",
    "steps_to_target",
    "work",
]
