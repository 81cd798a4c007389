"""One training run: the loop, vmapped trial ensembles, DDP ranks, and step helpers.

* :func:`run_training` — train one :class:`RunSpec` on a workload, evaluate on its
  schedule and report steps-to-target (Shallue et al. 2018, Sec. 3.3);
* :func:`run_ensemble` — several trials of one batch size as one vmapped model;
* :func:`run_ddp_trial` — one trial on P processes through torchrun;
* :class:`BatchSizeSchedule` — grow the batch during training with the noise scale;
* :class:`BatchRamp`, :func:`ramp_training` — grow it to a fraction of B_crit, the
  noise scale calibrated online by short branches (:func:`estimate_ratio`);
* :func:`eval_schedule` — evaluation steps spaced by a relative resolution;
* :func:`train_step`, :func:`set_lr`, :func:`split_optimizer` — for runs driven step
  by step (branching CBS).

Everything above the workloads that trains a model goes through this package.
"""

from ._batch_size_schedule import BatchSizeSchedule, Growth, rescale_learning_rates
from ._ddp_launch import DDPTrialError, run_ddp_trial
from ._ensemble import (
    ENSEMBLE_OPTIMIZERS,
    EnsembleUnsupported,
    check_ensemble_support,
    member_memory,
    run_ensemble,
)
from ._evaluation import eval_schedule
from ._parallel import DataParallel, shard_batch
from ._ramp import BatchRamp, RampChange, move_hparams, optimizer_name_of
from ._ramp_calibration import (
    CalibratedBCrit,
    CalibrationPoint,
    RatioEstimate,
    calibrated_b_crit,
    estimate_ratio,
)
from ._ramp_training import RampBranch, RampCalibration, RampResult, ramp_training
from ._run import (
    LOSS_READBACK_EVERY,
    SCHEDULE_HPARAMS,
    PendingLosses,
    PruneRule,
    RunResult,
    RunSpec,
    Status,
    best_so_far,
    has_exact_curves,
    optimizer_and_schedule,
    run_training,
    split_hparams,
    steps_to_target,
)
from ._step import set_lr, split_optimizer, train_step

__all__ = [
    "ENSEMBLE_OPTIMIZERS",
    "LOSS_READBACK_EVERY",
    "SCHEDULE_HPARAMS",
    "BatchRamp",
    "BatchSizeSchedule",
    "CalibratedBCrit",
    "CalibrationPoint",
    "DDPTrialError",
    "DataParallel",
    "EnsembleUnsupported",
    "Growth",
    "PendingLosses",
    "PruneRule",
    "RampBranch",
    "RampCalibration",
    "RampChange",
    "RampResult",
    "RatioEstimate",
    "RunResult",
    "RunSpec",
    "Status",
    "best_so_far",
    "calibrated_b_crit",
    "check_ensemble_support",
    "estimate_ratio",
    "has_exact_curves",
    "optimizer_and_schedule",
    "rescale_learning_rates",
    "member_memory",
    "move_hparams",
    "optimizer_name_of",
    "ramp_training",
    "eval_schedule",
    "run_ddp_trial",
    "run_ensemble",
    "run_training",
    "set_lr",
    "shard_batch",
    "split_hparams",
    "split_optimizer",
    "steps_to_target",
    "train_step",
]
