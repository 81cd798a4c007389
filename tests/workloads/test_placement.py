"""``on_device``: data move once, a shallow copy; a protocol-only workload stays on the CPU."""

from __future__ import annotations

import logging

import torch

from batchlab import get_workload
from batchlab.workloads import _placement, on_device, workload_device


class ProtocolOnly:
    """A workload without ``to(device)``: the protocol's methods and nothing more."""

    name = "protocol-only"
    iter_exact_metrics = None


def test_a_workload_without_to_stays_on_the_cpu_with_one_notice(monkeypatch, caplog):
    # A GPU asked for (resolve_device is the only part that needs one to exist).
    monkeypatch.setattr(_placement, "resolve_device", lambda device: torch.device("cuda", 0))
    monkeypatch.setattr(_placement, "_noticed", set())
    workload = ProtocolOnly()
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads._placement"):
        assert on_device(workload, "cuda") is workload
        assert on_device(workload, "cuda") is workload
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1
    assert (
        "'protocol-only' has no to(device) method: it trains on the CPU, not cuda:0" in notices[0]
    )
    assert workload_device(workload) == torch.device("cpu")


def test_moving_an_in_memory_workload_copies_it_and_moves_every_tensor(monkeypatch):
    workload = get_workload("digits-mlp")
    moved = workload.to(torch.device("meta"))  # a device every machine has
    assert moved is not workload and workload.device == torch.device("cpu")
    assert moved.device == torch.device("meta")
    assert all(
        value.device == torch.device("meta")
        for value in vars(moved).values()
        if isinstance(value, torch.Tensor)
    )
    assert workload.x_train.device == torch.device("cpu")  # the original is untouched
    assert workload.to(torch.device("cpu")) is workload


def test_workloads_with_exact_curves_are_not_moved(monkeypatch, caplog):
    monkeypatch.setattr(_placement, "resolve_device", lambda device: torch.device("cuda", 0))
    nqm = get_workload("nqm", {"dim": 10})
    with caplog.at_level(logging.WARNING):
        assert on_device(nqm, "cuda") is nqm  # nothing trains: no move, no notice
    assert not caplog.records
