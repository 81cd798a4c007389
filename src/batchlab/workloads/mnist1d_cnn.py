"""``mnist1d-cnn``: a small 1-D CNN on MNIST-1D (Greydanus 2020).

MNIST-1D is generated procedurally by the ``mnist1d`` package (40-sample signals of
ten 1-D digit templates, shifted, scaled, sheared and noised), so it needs no
download. Generation costs about 0.4 ms per example, so the arrays are cached in
:func:`~batchlab.workloads._cache.cache_dir` after the first use.
"""

from __future__ import annotations

import importlib.metadata
import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from .._seeding import with_torch_seed
from ._cache import load_arrays, save_arrays
from ._in_memory import ClassificationWorkload
from ._protocol import Target


def generate_mnist1d(num_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` MNIST-1D signals (float32, shape (n, 40)) and labels (int64).

    The ``mnist1d`` generator seeds NumPy's and Python's global RNGs; their states
    are saved and restored so that using batchlab never changes the caller's RNGs.
    Results are cached on disk per (count, seed, mnist1d version).
    """
    version = importlib.metadata.version("mnist1d")
    key = f"mnist1d-{version}-n{num_examples}-seed{seed}"
    cached = load_arrays(key)
    if cached is not None and cached["x"].shape[0] == num_examples:
        return cached["x"], cached["y"]

    from mnist1d.data import get_dataset_args, make_dataset  # lazily: pulls in matplotlib

    args = get_dataset_args()
    # make_dataset draws num_samples // 10 examples per class, then shuffles.
    args.num_samples = 10 * math.ceil(num_examples / 10)
    args.train_split = 1.0
    args.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x = np.asarray(data["x"][:num_examples], dtype=np.float32)
    y = np.asarray(data["y"][:num_examples], dtype=np.int64)
    save_arrays(key, x=x, y=y)
    return x, y


class MNIST1DCNN(nn.Module):
    """Three strided 1-D convolutions and a linear read-out (about 6.4k parameters).

    Every convolution halves the length (40 -> 20 -> 10 -> 5), which keeps a step at
    batch size 2048 cheap on a CPU. No batch normalisation: per-example gradients
    stay independent, which keeps the gradient noise scale well defined.
    """

    def __init__(self, channels: int = 16, length: int = 40, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, 2 * channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * channels, 2 * channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * channels * math.ceil(length / 8), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(-2)).flatten(-2))


class MNIST1DWorkload(ClassificationWorkload):
    """MNIST-1D classification with a small CNN.

    Default target: validation accuracy >= 0.85, chosen from a measurement
    (``python benchmarks/workload_targets.py mnist1d-cnn --targets 0.8 0.85 0.88 0.9
    --lrs 0.003 0.01 0.02 0.05 0.1 0.2 0.4 --steps 3000 --examples 1500000``): with
    Nesterov momentum 0.9 and the best of those learning rates it is reached at every
    batch size from 16 to 2048 within 3,000 steps (about 1,500 steps at B=16, about
    300 from B=128 on), while the model's ceiling is 0.91-0.95, so steps-to-target
    still falls with batch size at the small end.

    Args:
        num_train: training examples (default 4,000).
        num_val: validation examples (default 1,000), drawn with seed ``data_seed + 1``
            so that the validation set does not depend on ``num_train``.
        data_seed: seed of the mnist1d generator.
        channels: width of the first convolution.
    """

    name = "mnist1d-cnn"
    description = "1-D CNN (~6.4k params) on MNIST-1D, generated offline"
    target = Target("accuracy", 0.85, "max")
    default_steps = 3000
    default_hparams = {"optimizer": "nesterov", "lr": 0.05, "momentum": 0.9}

    def __init__(
        self, num_train: int = 4000, num_val: int = 1000, data_seed: int = 42, channels: int = 16
    ) -> None:
        for field, value in (
            ("num_train", num_train),
            ("num_val", num_val),
            ("channels", channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"mnist1d-cnn: {field} must be a positive integer, got {value!r}")
        x_train, y_train = generate_mnist1d(num_train, data_seed)
        x_val, y_val = generate_mnist1d(num_val, data_seed + 1)
        super().__init__(
            torch.from_numpy(x_train),
            torch.from_numpy(y_train),
            torch.from_numpy(x_val),
            torch.from_numpy(y_val),
        )
        self.channels = channels
        self.params: dict[str, Any] = {
            "num_train": num_train,
            "num_val": num_val,
            "data_seed": data_seed,
            "channels": channels,
        }

    def build_model(self, seed: int) -> nn.Module:
        return with_torch_seed(seed, lambda: MNIST1DCNN(self.channels))
