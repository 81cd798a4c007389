"""Fixtures for the noise-scale tests."""

import pytest
import torch

from batchlab.workloads import get_workload


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These models are tiny: one intra-op thread is faster than two, and immune to
    # the oversubscription slow-downs seen when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mnist1d():
    """A small mnist1d-cnn workload and six training batches of 64 examples."""
    workload = get_workload("mnist1d-cnn", {"num_train": 512, "num_val": 64})
    stream = workload.train_batches(64, torch.Generator().manual_seed(0))
    return workload, [next(stream) for _ in range(6)]
