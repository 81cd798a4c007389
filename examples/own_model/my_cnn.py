"""A complete own-model example: my CNN on my tensors, as a batchlab workload.

Run the study (about 2.5 minutes on 2 CPU cores):

    batchlab study run examples/own_model/my_study.toml --workers 2

``my_study.toml`` names ``my_cnn:make``; batchlab imports this file from the config's
directory, so no PYTHONPATH is needed. Replace ``load_data`` and ``MyCNN`` with yours.
"""

from __future__ import annotations

import torch
from torch import nn

from batchlab.workloads import Target, from_tensors
from batchlab.workloads.mnist1d_cnn import generate_mnist1d


def load_data(num_train: int, num_val: int) -> tuple[torch.Tensor, ...]:
    """Your data as tensors. Here: MNIST-1D (40-sample signals, 10 classes), generated offline."""
    x, y = generate_mnist1d(num_train + num_val, seed=7)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


class MyCNN(nn.Module):
    """Two convolutions, global average pooling, a linear read-out (about 5k parameters)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, width, kernel_size=5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.unsqueeze(-2)).mean(-1))


def make(num_train: int = 4000, num_val: int = 1000, width: int = 24):
    """The workload; ``[workload] params`` in my_study.toml arrive here."""
    x_train, y_train, x_val, y_val = load_data(num_train, num_val)
    return from_tensors(
        lambda: MyCNN(width),
        train=(x_train, y_train),
        val=(x_val, y_val),
        loss="cross_entropy",
        target=Target("accuracy", 0.85, "max"),
        name="my-cnn",
        description="my CNN on MNIST-1D",
        default_steps=2000,
        params={"num_train": num_train, "num_val": num_val, "width": width},
    )
