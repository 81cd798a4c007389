"""The Workload protocol: the handful of methods a study needs from a model + data set.

After MLCommons' algorithmic-efficiency workloads: build a seeded model, stream
training batches of a chosen size, a mean loss, an evaluation, and a default target.
A user's own workload only has to provide these (see ``module:function`` specs in
:func:`batchlab.workloads.get_workload`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

#: A batch is a tensor or a tuple of tensors whose first dimension indexes examples.
Batch = Tensor | tuple[Tensor, ...]

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Target:
    """A goal on an evaluation metric, e.g. validation accuracy >= 0.9.

    Steps-to-target (Shallue et al. 2018, Sec. 3.3) is the first evaluated step at
    which ``metric`` reaches ``value`` in ``direction``.
    """

    metric: str
    value: float
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"target direction must be 'max' or 'min', got {self.direction!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"target value must be a finite number, got {self.value!r}")

    def reached(self, metric_value: float) -> bool:
        """Whether ``metric_value`` meets the target (NaN never does)."""
        if math.isnan(metric_value):
            return False
        if self.direction == "max":
            return metric_value >= self.value
        return metric_value <= self.value

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.direction == 'max' else '<='} {self.value:g}"


@runtime_checkable
class Workload(Protocol):
    """What batchlab needs from a model and its data.

    Attributes:
        name: short identifier, e.g. ``"mnist1d-cnn"``.
        description: one line for tables.
        target: the default target (metric, value, direction).
        metrics: names of the metrics :meth:`evaluate` returns.
        default_steps: default step budget of one training run.
        default_hparams: optimizer name and hyperparameters that reach ``target``
            within ``default_steps`` at moderate batch sizes.
        train_size: number of training examples, or ``None`` for workloads that
            draw fresh examples (an unlimited stream).
        params: the keyword arguments that built this workload (for reproducibility).

    Optional, for GPUs: a ``device`` attribute (where the data live; models train
    there) and ``to(device) -> Workload`` returning the workload with its data on that
    device (:func:`~batchlab.workloads.on_device`); batches and evaluation then stay on
    it. Without them a workload trains on the CPU.
    """

    name: str
    description: str
    target: Target
    metrics: tuple[str, ...]
    default_steps: int
    default_hparams: Mapping[str, Any]
    train_size: int | None
    params: Mapping[str, Any]

    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model; the same seed gives the same weights."""
        ...

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """An endless stream of training batches of ``batch_size`` examples."""
        ...

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        """Scalar mean training loss of ``model`` over ``batch``."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of ``model`` (keys: :attr:`metrics`)."""
        ...


def check_batch_size(batch_size: int, train_size: int | None, *, name: str = "batch_size") -> int:
    """Validate a batch size against a training set size; returns it as ``int``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"{name} must be an integer, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"{name} must be positive, got {batch_size}")
    if train_size is not None and batch_size > train_size:
        raise ValueError(
            f"{name}={batch_size} is larger than the training set "
            f"({train_size} examples); use at most {train_size}"
        )
    return batch_size
