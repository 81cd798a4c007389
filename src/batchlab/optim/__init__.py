"""Optimizers for large-batch training, schedules and learning-rate scaling rules."""

from ._factory import (
    LAYERWISE_OPTIMIZERS,
    OPTIMIZER_HPARAMS,
    OPTIMIZERS,
    UnknownOptimizerError,
    build_optimizer,
    check_optimizer_name,
    optimizer_for,
)
from ._lamb import LAMB
from ._lars import LARS
from ._param_groups import lars_param_groups
from ._scaling import SCALING_RULES, scale_lr
from ._schedules import DECAYS, lr_multiplier, warmup_schedule

__all__ = [
    "DECAYS",
    "LAMB",
    "LARS",
    "LAYERWISE_OPTIMIZERS",
    "OPTIMIZERS",
    "OPTIMIZER_HPARAMS",
    "SCALING_RULES",
    "UnknownOptimizerError",
    "build_optimizer",
    "check_optimizer_name",
    "lars_param_groups",
    "lr_multiplier",
    "optimizer_for",
    "scale_lr",
    "warmup_schedule",
]
