"""What one synchronised DDP backward leaves for the noise scale: per-bucket norms.

The parts of :class:`~batchlab.noise.NoiseScaleHook` that work on DDP's flat gradient
buckets: which parameters a bucket holds (:class:`BucketLayout`, learnt again when DDP
rebuilds its buckets), one backward's norms as its buckets finish (:class:`Iteration`),
a bucket's squared norms (:func:`bucket_sq_norms`), and the reduction of an
iteration's host copy to one step's small- and big-batch norms (:meth:`Iteration.step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._running import Step

#: Bucket dtypes whose all-reduce can carry the small-batch norms too (exactly enough:
#: a squared norm in half precision overflows at 65504).
FUSABLE = (torch.float32, torch.float64)


@dataclass
class BucketLayout:
    """Which parameters a DDP bucket holds, in the order of its flat buffer."""

    ids: tuple[int, ...]
    positions: np.ndarray  # index of each parameter in NoiseScaleHook's parameter list
    numels: list[int]


@dataclass
class Iteration:
    """One synchronised backward pass: its buckets' norms, filled in as they finish."""

    # Per bucket: squared norms of the whole bucket (1 value) or of each parameter in it.
    local: dict[int, Tensor] = field(default_factory=dict)  # the rank's own gradient
    big: dict[int, Tensor] = field(default_factory=dict)  # the all-reduced mean gradient
    layouts: dict[int, BucketLayout] = field(default_factory=dict)  # with per_module only
    reduced: Tensor | None = None  # mean over ranks of [the local norms..., 1/b_r]
    work: Any = None  # the separate all-reduce of ``reduced`` when it was not fused
    size_error: str | None = None

    def host_parts(self) -> list[Tensor]:
        """``reduced``, then each bucket's big-batch norms, as float64 tensors to copy.

        Waits for the separate all-reduce of ``reduced`` if there was one.
        """
        if self.work is not None:
            self.work.wait()
            self.work = None
        assert self.reduced is not None
        return [self.reduced.to(torch.float64)] + [
            self.big[i].to(torch.float64) for i in sorted(self.big)
        ]

    def step(
        self, index: int, flat: np.ndarray, assign: np.ndarray | None, world_size: int
    ) -> Step:
        """This backward's (small, big) norms from ``flat``, its :meth:`host_parts` copied.

        Args:
            index: the optimizer step's index.
            flat: the host copy of :meth:`host_parts`, concatenated.
            assign: (parameters, 1 + modules) 0/1 matrix with ``per_module``, else
                ``None`` (buckets are summed into the whole model).
            world_size: ranks; B_big = world size x B_small.
        """
        buckets = sorted(self.big)
        count = sum(self.big[i].numel() for i in buckets)
        reduced, norms = flat[: count + 1], flat[count + 1 :]
        if assign is None:
            rows = np.ones((count, 1))
        else:  # parameters (in bucket order) -> the model, then modules
            rows = assign[np.concatenate([self.layouts[i].positions for i in buckets])]
        with np.errstate(divide="ignore"):  # 1/0: a NaN/inf size, and the step is skipped
            b_small = snap(float(1.0 / reduced[count]))
        return (index, reduced[:count] @ rows, norms @ rows, b_small, world_size * b_small)


def bucket_sq_norms(buffer: Tensor, layout: BucketLayout | None) -> Tensor:
    """Squared norms of a flat bucket: the whole of it, or each parameter's part.

    Computed in the bucket's dtype, or in float32 for half precision. The whole
    bucket is one dot product; per parameter is one fused call, which on a CPU
    still costs a few microseconds per tensor (so it is opt-in).
    """
    if buffer.layout is not torch.strided:
        raise TypeError(
            "register_noise_scale_hook: a DDP bucket holds sparse gradients, which are "
            "not supported; use dense gradients (e.g. nn.Embedding(sparse=False))"
        )
    flat = buffer.detach()
    if layout is None:
        if flat.dtype in FUSABLE:
            return torch.dot(flat, flat).reshape(1)
        return torch.linalg.vector_norm(flat, dtype=torch.float32).square().reshape(1)
    dtype = flat.dtype if flat.dtype in FUSABLE else torch.float32
    norms = torch.stack(torch._foreach_norm(list(flat.split(layout.numels)), 2, dtype=dtype))
    return norms * norms


def snap(size: float) -> float:
    """A harmonic-mean batch size, rounded to the integer it equals up to float32 error."""
    if math.isfinite(size) and size > 0 and abs(size - round(size)) <= 1e-5 * size:
        return float(round(size))
    return size
