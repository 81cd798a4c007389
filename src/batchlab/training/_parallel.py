"""This process's place in a DDP trial: its slice of every global batch, its wrapped model.

Every rank draws the same global batches from the same generator and trains on its
1/P slice inside ``DistributedDataParallel``: the all-reduced gradient is the mean over
the global batch (Goyal et al. 2017, Sec. 3), so a trial's curve is the
single-process curve at the same global batch size up to float rounding.

Every rank evaluates its (identical) model, and all of them use rank 0's metrics
(:meth:`DataParallel.from_rank0`): when to stop and when to evaluate next are decided
from those values, so the ranks agree by construction, even where evaluation kernels
are not bitwise reproducible across devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..workloads import Batch


def shard_batch(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rank ``rank``'s equal slice (along the first dimension) of a global batch."""
    if isinstance(batch, tuple):
        return tuple(shard_batch(part, rank, world_size) for part in batch)  # type: ignore[return-value]
    size = batch.shape[0]
    if size % world_size:
        raise ValueError(
            f"a batch of {size} examples does not split evenly over {world_size} processes"
        )
    local = size // world_size
    return batch[rank * local : (rank + 1) * local]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a DDP trial: wraps the model, slices batches, averages losses."""

    rank: int
    world_size: int

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def shard(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for batch in batches:
            yield shard_batch(batch, self.rank, self.world_size)

    def mean(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss (the mean of the equal slices' means)."""
        import torch.distributed as dist

        total = loss.detach().clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def from_rank0(self, metrics: dict[str, float], device: torch.device) -> dict[str, float]:
        """Rank 0's ``metrics`` on every rank (sent as float64 on ``device``: exact)."""
        import torch.distributed as dist

        names = list(metrics)  # the same workload on every rank: the same names, in order
        values = torch.tensor([metrics[n] for n in names], dtype=torch.float64, device=device)
        dist.broadcast(values, src=0)
        return dict(zip(names, values.tolist(), strict=True))
