"""Fixtures for the noise-scale tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These models are tiny: one intra-op thread is faster than two, and immune to
    # the oversubscription slow-downs seen when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
