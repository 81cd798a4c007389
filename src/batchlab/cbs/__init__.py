"""Critical batch size over training, measured directly by branching from checkpoints.

* :func:`measure_critical_batch` — at checkpoints of one run, branch short runs at
  several batch sizes, count the steps to a fixed improvement, fit S(B) per
  checkpoint, and set B_crit beside the noise scale B_simple measured there.
* :class:`Checkpoint`, :class:`CheckpointSaver`, :func:`train_base_run`,
  :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_checkpoints` — the
  checkpoints of a run (model + optimizer state at chosen steps).
* :func:`run_branch` — one branch; :func:`improvement_target`, :func:`eval_schedule` —
  its target and evaluation grid.
* :func:`exact_branch_curve` — expected branch curves on ``nqm`` and ``linreg``.
* :class:`Cooldown`, :func:`describe_schedule`, ``SCHEDULES`` — measuring under a
  warmup-stable-decay schedule (branch in the stable phase, read after a cooldown).

References:
    Merrill, Arora, Groeneveld, Hajishirzi 2025, "Critical Batch Size Revisited",
    arXiv:2505.23971; Zhang et al. 2024, "How Does Critical Batch Size Scale in
    Pre-training?", arXiv:2410.21676; McCandlish et al. 2018, arXiv:1812.06162.
"""

from ._branch import OPTIMIZER_STATES, BranchResult, run_branch
from ._checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointSaver,
    checkpoint_path,
    load_checkpoint,
    load_checkpoints,
    save_checkpoint,
    snapshot,
    train_base_run,
)
from ._exact import (
    exact_branch_curve,
    linreg_cooldown_excess_loss,
    linreg_expected_excess_loss,
)
from ._measure import measure_critical_batch
from ._results import CheckpointMeasurement, CriticalBatchResult, RungMeasurement
from ._schedule import SCHEDULES, Cooldown, describe_schedule
from ._target import eval_schedule, improvement_target

__all__ = [
    "OPTIMIZER_STATES",
    "SCHEDULES",
    "BranchResult",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeasurement",
    "CheckpointSaver",
    "Cooldown",
    "CriticalBatchResult",
    "RungMeasurement",
    "checkpoint_path",
    "describe_schedule",
    "eval_schedule",
    "exact_branch_curve",
    "improvement_target",
    "linreg_cooldown_excess_loss",
    "linreg_expected_excess_loss",
    "load_checkpoint",
    "load_checkpoints",
    "measure_critical_batch",
    "run_branch",
    "save_checkpoint",
    "snapshot",
    "train_base_run",
]
