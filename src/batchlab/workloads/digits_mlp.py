"""``digits-mlp``: a small MLP on scikit-learn's bundled 8x8 handwritten digits.

The 1,797 digits ship inside scikit-learn (no download); install the extra with
``pip install 'batchlab[digits]'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import WorkloadError
from .._seeding import with_torch_seed
from ._in_memory import ClassificationWorkload
from ._protocol import Target


def load_digits_split(num_val: int, split_seed: int) -> tuple[np.ndarray, ...]:
    """scikit-learn's digits scaled to [0, 1], split by a seeded permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise WorkloadError(
            "digits-mlp needs scikit-learn: pip install 'batchlab[digits]'"
        ) from error
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    if not 0 < num_val < len(y):
        raise ValueError(f"digits-mlp: num_val must be in 1..{len(y) - 1}, got {num_val}")
    order = np.random.default_rng(split_seed).permutation(len(y))
    val, train = order[:num_val], order[num_val:]
    return x[train], y[train], x[val], y[val]


class DigitsMLPWorkload(ClassificationWorkload):
    """Digits classification with a one-hidden-layer MLP (64-64-10, ~4.8k parameters).

    Default target: validation accuracy >= 0.97, reached from the default
    hyperparameters at batch sizes 16 to 1024 within the default budget
    (``benchmarks/workload_targets.py``).

    Args:
        num_val: validation examples held out of the 1,797 (default 497, leaving 1,300
            for training).
        hidden: hidden width.
        split_seed: seed of the train/validation split.
    """

    name = "digits-mlp"
    description = "MLP (~4.8k params) on scikit-learn's 8x8 digits"
    target = Target("accuracy", 0.97, "max")
    default_steps = 2000
    default_hparams = {"optimizer": "nesterov", "lr": 0.1, "momentum": 0.9}

    def __init__(self, num_val: int = 497, hidden: int = 64, split_seed: int = 0) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden <= 0:
            raise ValueError(f"digits-mlp: hidden must be a positive integer, got {hidden!r}")
        x_train, y_train, x_val, y_val = load_digits_split(num_val, split_seed)
        super().__init__(*(torch.from_numpy(a) for a in (x_train, y_train, x_val, y_val)))
        self.hidden = hidden
        self.params: dict[str, Any] = {
            "num_val": num_val,
            "hidden": hidden,
            "split_seed": split_seed,
        }

    def build_model(self, seed: int) -> nn.Module:
        return with_torch_seed(
            seed,
            lambda: nn.Sequential(
                nn.Linear(64, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 10)
            ),
        )
