"""Fast checks of the FSDP2 hook's pure part: one step from the all-reduced norms."""

from __future__ import annotations

import numpy as np
import pytest

from batchlab.noise._fsdp import step_from_reduced
from batchlab.noise._plumbing import group_assignment


def test_step_from_reduced_means_small_sums_big_and_harmonic_batch() -> None:
    # Two ranks, two parameters; rank 0: |g|² = (1, 2), shards (0.5, 0.25), b = 3;
    # rank 1: |g|² = (3, 6), shards (0.25, 0.5), b = 5. Summed over ranks:
    reduced = np.array([4.0, 8.0, 0.75, 0.75, 1 / 3 + 1 / 5])
    index, small, big, b_small, b_big = step_from_reduced(7, reduced, None, world_size=2)
    assert index == 7
    assert small.tolist() == [6.0]  # mean over ranks of 3 and 9
    assert big.tolist() == [1.5]  # shards partition the big gradient: their norms add
    assert b_small == 3.75 and b_big == 7.5  # harmonic mean of 3 and 5, times 2


def test_step_from_reduced_per_module_columns() -> None:
    reduced = np.array([4.0, 8.0, 0.75, 0.75, 0.5])
    assign = group_assignment([0, 1], 2)
    _, small, big, b_small, _ = step_from_reduced(0, reduced, assign, world_size=2)
    assert small.tolist() == [6.0, 2.0, 4.0]
    assert big.tolist() == [1.5, 0.75, 0.75]
    assert b_small == 4.0


def test_non_fsdp_model_is_refused_with_the_argument_named() -> None:
    torch = pytest.importorskip("torch")
    from batchlab.noise import register_fsdp_noise_scale_hook

    with pytest.raises(TypeError, match=r"model must be a module sharded with .*fully_shard"):
        register_fsdp_noise_scale_hook(torch.nn.Linear(2, 2))
