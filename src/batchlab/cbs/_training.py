"""Shared plumbing of the base run and its branches: one optimizer, one SGD step.

The base run and every branch must build the *same* optimizer over the *same* param
groups, or a branch could not load the base run's optimizer state (LARS/LAMB put
biases and norm weights in a group of their own, as the study engine does).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..optim import build_optimizer, check_optimizer_name, lars_param_groups
from ..workloads import Batch, Workload

#: Optimizers with a per-layer trust ratio: they get :func:`batchlab.optim.lars_param_groups`.
LAYERWISE_OPTIMIZERS = ("lars", "lamb")


def split_optimizer(hparams: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """``{"optimizer": "adam", "lr": 3e-3}`` -> ``("adam", {"lr": 3e-3})``."""
    values = dict(hparams)
    name = values.pop("optimizer", None)
    if not isinstance(name, str):
        raise ValueError(f"hparams must name an 'optimizer', got {dict(hparams)!r}")
    return check_optimizer_name(name), {k: float(v) for k, v in values.items()}


def make_optimizer(
    model: nn.Module, optimizer: str, hparams: Mapping[str, float]
) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` over ``model``'s trainable parameters (constant LR)."""
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if optimizer in LAYERWISE_OPTIMIZERS:
        # Biases and norm weights skip the trust ratio and weight decay (You et al. 2017).
        params = lars_param_groups(model, float(hparams.get("weight_decay", 0.0)))
    return build_optimizer(optimizer, params, hparams)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's learning rate (after ``load_state_dict``, which restores it)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    workload: Workload,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Batch],
) -> float:
    """One optimizer step on the next batch; returns the batch's training loss (may be NaN)."""
    loss = workload.loss_fn(model, next(batches))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    value = float(loss.detach())
    if math.isfinite(value):
        optimizer.step()
    return value
