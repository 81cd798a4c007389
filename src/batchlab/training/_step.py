"""One optimizer step, and the small helpers of runs driven step by step (branching CBS).

The base run and every branch build their optimizer with
:func:`batchlab.optim.optimizer_for`, so a branch loads the base run's optimizer state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._device import autocast
from ..optim import check_optimizer_name
from ..workloads import Batch, Workload, workload_device


def split_optimizer(hparams: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """``{"optimizer": "adam", "lr": 3e-3}`` -> ``("adam", {"lr": 3e-3})``."""
    values = dict(hparams)
    name = values.pop("optimizer", None)
    if not isinstance(name, str):
        raise ValueError(f"hparams must name an 'optimizer', got {dict(hparams)!r}")
    return check_optimizer_name(name), {k: float(v) for k, v in values.items()}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's learning rate (after ``load_state_dict``, which restores it)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    workload: Workload,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Batch],
    *,
    precision: str = "fp32",
) -> float:
    """One optimizer step on the next batch; returns the batch's training loss (may be NaN).

    The model trains where the workload's data are (:func:`batchlab.workloads.workload_device`;
    the caller moves the model there). The forward pass and the loss run under
    :func:`batchlab._device.autocast` for ``precision`` (``"fp32"``, ``"tf32"``,
    ``"bf16"``); backward and the optimizer step run outside it, on fp32 weights.

    The loss is read back every step (``float(loss)``, a host sync on a GPU): the base
    run and the branches of :func:`batchlab.cbs.measure_critical_batch` need it to stop a
    diverged run before its optimizer step, and their steps are few and short, so the
    sync is kept (:func:`batchlab.training.run_training` reads losses back in blocks).
    """
    with autocast(precision, workload_device(workload)):
        loss = workload.loss_fn(model, next(batches))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    value = float(loss.detach())
    if math.isfinite(value):
        optimizer.step()
    return value
