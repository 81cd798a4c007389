"""Optimizers for large-batch training, schedules and learning-rate scaling rules."""

from ._factory import (
    OPTIMIZER_HPARAMS,
    OPTIMIZERS,
    UnknownOptimizerError,
    build_optimizer,
    check_optimizer_name,
)

__all__ = [
    "OPTIMIZERS",
    "OPTIMIZER_HPARAMS",
    "UnknownOptimizerError",
    "build_optimizer",
    "check_optimizer_name",
]
