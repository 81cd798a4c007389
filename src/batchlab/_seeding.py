"""Seeds without global state: derived with SeedSequence, applied in a forked RNG."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def derive_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 63-bit seeds derived from ``seed`` (NumPy SeedSequence.spawn)."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for child in children]


def seed_for(*keys: int) -> int:
    """A 63-bit seed determined by a tuple of non-negative integers (e.g. study, rung, slot)."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def with_torch_seed(seed: int, build: Callable[[], T]) -> T:
    """Run ``build()`` (e.g. a module constructor) with torch's CPU RNG seeded to ``seed``.

    The global RNG state is forked and restored, so the caller's random stream is
    untouched: module initialisers draw from the global RNG and offer no generator
    argument, which is why this is needed at all.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
