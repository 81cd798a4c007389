"""Putting a workload on a device: its data move once, its models follow.

A workload may offer ``to(device) -> Workload`` and a ``device`` attribute (the built-ins
do; :class:`~batchlab.workloads.InMemoryWorkload` subclasses get both). A run trains on
the device its workload says its data live on (:func:`workload_device`), so moving the
workload once per process is all a caller does. A workload without ``to`` keeps working
on the CPU, with a one-line notice.
"""

from __future__ import annotations

import logging

import torch

from .._device import resolve_device
from ._protocol import Workload

logger = logging.getLogger(__name__)
_noticed: set[str] = set()


def workload_device(workload: Workload) -> torch.device:
    """The device ``workload``'s data live on, where its models train (CPU if it doesn't say)."""
    return torch.device(getattr(workload, "device", None) or "cpu")


def on_device(workload: Workload, device: str | torch.device | None) -> Workload:
    """``workload`` with its data on ``device`` (``"auto"``/``None``: CUDA if seen, else CPU).

    The same workload when it is there already or computes exact curves (nothing
    trains); a workload without ``to(device)`` stays on the CPU, with a notice once per
    workload name.

    Raises:
        ValueError: a device this machine does not have (see
            :func:`batchlab._device.resolve_device`).
    """
    target = resolve_device(device)
    if workload_device(workload) == target or callable(
        getattr(workload, "iter_exact_metrics", None)
    ):
        return workload
    move = getattr(workload, "to", None)
    if not callable(move):
        if workload.name not in _noticed:
            _noticed.add(workload.name)
            logger.warning(
                "workload %r has no to(device) method: it trains on the CPU, not %s "
                "(README, 'On a GPU')",
                workload.name,
                target,
            )
        return workload
    moved = move(target)
    if workload_device(moved) != target:
        raise ValueError(
            f"workload {workload.name!r}: to({str(target)!r}) returned a workload whose device "
            f"is {workload_device(moved)}"
        )
    return moved
