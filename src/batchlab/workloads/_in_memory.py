"""Workloads whose data live in memory as tensors: batches are sampled by index.

After airbench: no DataLoader in the hot loop, just an index permutation drawn from
a ``torch.Generator`` and one gather per batch; evaluation is one batched pass under
``torch.inference_mode``.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._device import to_device
from ._protocol import Batch, Workload, check_batch_size


def shuffled_index_batches(
    num_examples: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | None = None,
) -> Iterator[Tensor]:
    """Endless batches of example indices, epoch by epoch without replacement.

    Each epoch is a fresh permutation; a batch that straddles two epochs takes the
    rest of one and the start of the next, so every batch has exactly ``batch_size``
    indices and every example is seen once per epoch. The permutations are drawn from
    the CPU ``generator`` (the same batches on every device) and sent to ``device`` once
    per epoch, asynchronously.
    """
    check_batch_size(batch_size, num_examples)
    device = device or torch.device("cpu")

    def permutation() -> Tensor:
        return to_device(torch.randperm(num_examples, generator=generator), device)

    perm = permutation()
    pos = 0
    while True:
        if pos + batch_size <= num_examples:
            yield perm[pos : pos + batch_size]
            pos += batch_size
        else:
            rest = perm[pos:]
            perm = permutation()
            pos = batch_size - rest.numel()
            yield torch.cat([rest, perm[:pos]])


class InMemoryWorkload(Workload):
    """Base class: training examples addressed by index, metrics from one batched pass.

    A :class:`~batchlab.workloads.Workload` by inheritance (so the protocol's
    attributes are declared once, there): subclasses set its class attributes and
    ``num_train``, and implement :meth:`build_model`, :meth:`take_train`,
    :meth:`loss_fn` and :meth:`val_metrics`. Every tensor attribute is data:
    :meth:`to` moves them all, once.
    """

    num_train: int
    #: Where the data live and the models train (:func:`~batchlab.workloads.on_device`).
    device: torch.device = torch.device("cpu")

    def to(self, device: torch.device) -> InMemoryWorkload:
        """This workload with every tensor attribute on ``device`` (a shallow copy; self if there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(moved, name, to_device(value, device))
        moved.device = device
        return moved

    @property
    def train_size(self) -> int:
        return self.num_train

    @abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model; the same seed gives the same weights."""

    @abstractmethod
    def take_train(self, indices: Tensor) -> Batch:
        """The training batch made of the examples at ``indices``."""

    @abstractmethod
    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        """Scalar mean training loss of ``model`` over ``batch``."""

    @abstractmethod
    def val_metrics(self, model: nn.Module) -> dict[str, Tensor]:
        """Validation metrics as 0-d tensors (so they can be computed under vmap)."""

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        for indices in shuffled_index_batches(self.num_train, batch_size, generator, self.device):
            yield self.take_train(indices)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                values = self.val_metrics(model)
        finally:
            model.train(was_training)
        return {key: float(value) for key, value in values.items()}


class ClassificationWorkload(InMemoryWorkload):
    """Inputs ``x`` and integer labels ``y``; cross-entropy loss; accuracy and loss metrics."""

    metrics = ("accuracy", "loss")

    def __init__(self, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor) -> None:
        self.x_train, self.y_train = x_train, y_train
        self.x_val, self.y_val = x_val, y_val
        self.num_train = int(x_train.shape[0])

    def take_train(self, indices: Tensor) -> Batch:
        return self.x_train[indices], self.y_train[indices]

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def val_metrics(self, model: nn.Module) -> dict[str, Tensor]:
        logits = model(self.x_val)
        return {
            "accuracy": (logits.argmax(dim=-1) == self.y_val).float().mean(),
            "loss": F.cross_entropy(logits, self.y_val),
        }
