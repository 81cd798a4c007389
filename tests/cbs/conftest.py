"""Shared settings of the critical-batch-size tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Branches are thousands of tiny steps: intra-op threads only add contention (on a
    # loaded 2-core machine a 2x64 matmul takes 16 ms with two threads, 8 µs with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
