"""Every neural workload reaches its default target from its default hyperparameters."""

import numpy as np
import pytest
import torch

from batchlab import get_workload
from batchlab.study import RunSpec, run_training


def train_to_default_target(name: str, batch_size: int):
    workload = get_workload(name)
    hparams = dict(workload.default_hparams)
    optimizer = hparams.pop("optimizer")
    spec = RunSpec(
        batch_size=batch_size,
        optimizer=optimizer,
        hparams=hparams,
        max_steps=workload.default_steps,
        eval_every=50,
        seed=0,
    )
    return run_training(workload, spec, workload.target)


@pytest.mark.parametrize(
    ("name", "batch_size"),
    [("mnist1d-cnn", 32), ("mnist1d-cnn", 256), ("digits-mlp", 16), ("digits-mlp", 512)],
)
def test_workload_reaches_default_target_at_two_batch_sizes(name, batch_size):
    result = train_to_default_target(name, batch_size)
    assert result.status == "reached", result.reason


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [16, 64])
def test_shakespeare_reaches_default_target_at_two_batch_sizes(batch_size):
    result = train_to_default_target("shakespeare-char", batch_size)
    assert result.status == "reached", result.reason


def test_mnist1d_generation_restores_global_rngs_and_is_cached(tmp_path, monkeypatch):
    from batchlab.workloads import mnist1d_cnn

    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(tmp_path))
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    x, y = mnist1d_cnn.generate_mnist1d(50, seed=5)
    assert np.random.random() == expected_next  # the generator's set_seed was undone
    assert x.shape == (50, 40) and x.dtype == np.float32 and set(np.unique(y)) <= set(range(10))
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp"))
    x2, y2 = mnist1d_cnn.generate_mnist1d(50, seed=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_validation_set_does_not_depend_on_training_set_size():
    small = get_workload("mnist1d-cnn", {"num_train": 200})
    large = get_workload("mnist1d-cnn", {"num_train": 400})
    assert torch.equal(small.x_val, large.x_val)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("mnist1d-cnn", 5_000, 10_000),
        ("shakespeare-char", 90_000, 130_000),
        ("digits-mlp", 4_000, 6_000),
    ],
)
def test_model_sizes_are_as_documented(name, low, high):
    model = get_workload(name).build_model(seed=0)
    assert low <= sum(p.numel() for p in model.parameters()) <= high


def test_build_model_is_seeded_and_leaves_the_global_rng_alone():
    workload = get_workload("digits-mlp")
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a, b = workload.build_model(3), workload.build_model(3)
    assert torch.rand(1) == before
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
