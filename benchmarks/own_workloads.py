"""The default study's model and data as a user would bring them: two ``module:function`` workloads.

Both hold the very tensors and the very CNN of the built-in ``mnist1d-cnn`` workload
(same ``num_train``/``num_val``/``data_seed``/``channels`` parameters), so a study of
either measures only the cost of how a user wrote the workload:

- ``tensors``: built with :func:`batchlab.workloads.from_tensors` (the fast path);
- ``protocol``: the Workload protocol written by hand, the way the ``batchlab init``
  template does it (a generator over ``torch.randperm``, ``evaluate`` with
  ``.item()``); its trials are still vmapped, but evaluated one member at a time.

Used by ``benchmarks/study_speed.py`` (``[workload] name = "own_workloads:tensors"``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

import batchlab as bl
from batchlab.workloads import Target
from batchlab.workloads.mnist1d_cnn import MNIST1DCNN, MNIST1DWorkload


def _builtin(num_train: int, num_val: int, data_seed: int, channels: int) -> MNIST1DWorkload:
    return MNIST1DWorkload(
        num_train=num_train, num_val=num_val, data_seed=data_seed, channels=channels
    )


def tensors(
    num_train: int = 4000, num_val: int = 1000, data_seed: int = 42, channels: int = 16
) -> bl.workloads.TensorWorkload:
    """mnist1d-cnn through ``from_tensors``: same batches and curves as the built-in."""
    data = _builtin(num_train, num_val, data_seed, channels)
    return bl.workloads.from_tensors(
        lambda: MNIST1DCNN(channels),
        train=(data.x_train, data.y_train),
        val=(data.x_val, data.y_val),
        target=data.target,
        name="mnist1d-cnn (from_tensors)",
        default_steps=data.default_steps,
    )


class ProtocolWorkload:
    """mnist1d-cnn written against the protocol only, as in ``batchlab init``'s template."""

    name = "mnist1d-cnn (protocol)"
    description = "the default study's CNN and data, protocol methods only"
    target = Target("accuracy", 0.85, "max")
    metrics = ("accuracy", "loss")
    default_steps = 3000
    default_hparams = {"optimizer": "nesterov", "lr": 0.05, "momentum": 0.9}

    def __init__(self, data: MNIST1DWorkload, channels: int) -> None:
        self.x_train, self.y_train = data.x_train, data.y_train
        self.x_val, self.y_val = data.x_val, data.y_val
        self.train_size = int(data.x_train.shape[0])
        self.channels = channels
        self.params = dict(data.params)

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return MNIST1DCNN(self.channels)

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            order = torch.randperm(self.train_size, generator=generator)
            for start in range(0, self.train_size - batch_size + 1, batch_size):
                index = order[start : start + batch_size]
                yield self.x_train[index], self.y_train[index]

    def loss_fn(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        logits = model(self.x_val)
        return {
            "accuracy": (logits.argmax(1) == self.y_val).float().mean().item(),
            "loss": nn.functional.cross_entropy(logits, self.y_val).item(),
        }


def protocol(
    num_train: int = 4000, num_val: int = 1000, data_seed: int = 42, channels: int = 16
) -> ProtocolWorkload:
    """mnist1d-cnn as a protocol-only workload."""
    return ProtocolWorkload(_builtin(num_train, num_val, data_seed, channels), channels)
