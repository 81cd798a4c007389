import math

import pytest
import torch

from batchlab.workloads import Target, check_batch_size, shuffled_index_batches


def test_target_reached_respects_direction_and_nan():
    assert Target("accuracy", 0.9, "max").reached(0.9)
    assert not Target("accuracy", 0.9, "max").reached(0.89)
    assert Target("loss", 2.0, "min").reached(1.5)
    assert not Target("loss", 2.0, "min").reached(math.nan)


def test_target_rejects_bad_direction_and_value():
    with pytest.raises(ValueError, match="direction"):
        Target("loss", 1.0, "down")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Target("loss", math.inf, "min")


@pytest.mark.parametrize("bad", [0, -3])
def test_check_batch_size_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        check_batch_size(bad, 100)


def test_check_batch_size_names_the_training_set_limit():
    with pytest.raises(ValueError, match="at most 100"):
        check_batch_size(101, 100)
    assert check_batch_size(100, 100) == 100
    assert check_batch_size(10**6, None) == 10**6


def test_index_batches_cover_each_epoch_once():
    generator = torch.Generator().manual_seed(0)
    stream = shuffled_index_batches(10, 4, generator)
    first_twenty = torch.cat([next(stream) for _ in range(5)])
    # Two full epochs of 10 examples in 5 batches of 4: each index exactly twice.
    assert torch.bincount(first_twenty, minlength=10).tolist() == [2] * 10


def test_index_batches_are_reproducible_from_the_generator_seed():
    a = shuffled_index_batches(50, 7, torch.Generator().manual_seed(3))
    b = shuffled_index_batches(50, 7, torch.Generator().manual_seed(3))
    for _ in range(20):
        assert torch.equal(next(a), next(b))
