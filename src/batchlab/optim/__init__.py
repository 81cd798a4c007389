"""Optimizers for large-batch training, schedules and learning-rate scaling rules."""

from ._factory import (
    OPTIMIZER_HPARAMS,
    OPTIMIZERS,
    UnknownOptimizerError,
    build_optimizer,
    check_optimizer_name,
)
from ._lamb import LAMB
from ._lars import LARS
from ._param_groups import lars_param_groups
from ._scaling import scale_lr
from ._schedules import DECAYS, lr_multiplier, warmup_schedule

__all__ = [
    "DECAYS",
    "LAMB",
    "LARS",
    "OPTIMIZERS",
    "OPTIMIZER_HPARAMS",
    "UnknownOptimizerError",
    "build_optimizer",
    "check_optimizer_name",
    "lars_param_groups",
    "lr_multiplier",
    "scale_lr",
    "warmup_schedule",
]
