"""Synthetic curves and run records with known answers, for the findings' pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from batchlab.reproduce import Curve

LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)


def exact_steps(batch_sizes: Sequence[int], s_min: float, b_crit: float) -> tuple[int, ...]:
    """S(B) = S_min (1 + B_crit / B), rounded to whole steps."""
    return tuple(round(s_min * (1 + b_crit / b)) for b in batch_sizes)


def noisy_steps(
    batch_sizes: Sequence[int], s_min: float, b_crit: float, sigma: float, seed: int
) -> tuple[int, ...]:
    """The exact curve times log-normal scatter (as between tuning runs)."""
    rng = np.random.default_rng(seed)
    return tuple(
        round(s * math.exp(sigma * z))
        for s, z in zip(
            exact_steps(batch_sizes, s_min, b_crit),
            rng.standard_normal(len(batch_sizes)),
            strict=True,
        )
    )


def sharp_bend_steps(
    batch_sizes: Sequence[int], s_min: float, b_crit: float, alpha: float, sigma: float, seed: int
) -> tuple[int, ...]:
    """S_min (1 + (B_crit / B)^α)^(1/α) (α > 1: sharper than the hyperbola), with scatter."""
    rng = np.random.default_rng(seed)
    return tuple(
        round(s_min * (1 + (b_crit / b) ** alpha) ** (1 / alpha) * math.exp(sigma * z))
        for b, z in zip(batch_sizes, rng.standard_normal(len(batch_sizes)), strict=True)
    )


def make_curve(
    name: str,
    steps: Sequence[int | None],
    *,
    batch_sizes: Sequence[int] = LADDER,
    lrs: Sequence[float] | None = None,
    optimizer: str = "nesterov",
    workload: str = "mnist1d-cnn",
    eval_every: int = 10,
    train_size: int | None = 4000,
    workload_params: dict | None = None,
) -> Curve:
    """A curve as a study would produce it (tuned LRs default to a constant 0.1)."""
    lrs = list(lrs) if lrs is not None else [0.1] * len(batch_sizes)
    return Curve(
        name=name,
        workload=workload,
        optimizer=optimizer,
        batch_sizes=tuple(batch_sizes),
        steps=tuple(steps),
        hparams=tuple(None if s is None else {"lr": lr} for s, lr in zip(steps, lrs, strict=True)),
        seeds=tuple(None if s is None else i for i, s in enumerate(steps)),
        budget_steps=tuple(3000 for _ in batch_sizes),
        eval_every=tuple(eval_every for _ in batch_sizes),
        trials_per_rung=16,
        target={"metric": "accuracy", "value": 0.85, "direction": "max"},
        workload_params=(
            {"num_train": train_size} if workload_params is None else dict(workload_params)
        ),
        train_size=train_size,
    )
