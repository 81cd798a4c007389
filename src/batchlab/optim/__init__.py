"""Optimizers for large-batch training, schedules, and the rules that move
hyperparameters (learning rate, β2, weight decay) from one batch size to another."""

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
from ._schedules import DECAYS, WSD_DECAYS, lr_multiplier, warmup_schedule, wsd_multiplier
from ._transfer import (
    LR_RULES,
    NOISE_SCALE_LR_RULES,
    HparamTransfer,
    SeesawStep,
    TransferResult,
    beta2_half_life,
    default_lr_rule,
    saturating_lr,
    scale_beta2,
    scale_weight_decay,
    seesaw_step,
    surge_lr,
    transfer_hparams,
)

__all__ = [
    "DECAYS",
    "LAMB",
    "LARS",
    "LAYERWISE_OPTIMIZERS",
    "LR_RULES",
    "NOISE_SCALE_LR_RULES",
    "OPTIMIZERS",
    "OPTIMIZER_HPARAMS",
    "SCALING_RULES",
    "WSD_DECAYS",
    "HparamTransfer",
    "SeesawStep",
    "TransferResult",
    "UnknownOptimizerError",
    "beta2_half_life",
    "build_optimizer",
    "check_optimizer_name",
    "default_lr_rule",
    "lars_param_groups",
    "lr_multiplier",
    "optimizer_for",
    "saturating_lr",
    "scale_beta2",
    "scale_lr",
    "scale_weight_decay",
    "seesaw_step",
    "surge_lr",
    "transfer_hparams",
    "warmup_schedule",
    "wsd_multiplier",
]
