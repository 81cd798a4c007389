"""Torch plumbing shared by the tracker and ``measure_noise_scale``.

Batches (a tensor or a tuple of tensors whose first dimension indexes examples) are
split into micro-batches; trainable parameters are grouped by the module that owns
them; squared norms are computed without host synchronisation.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from .._errors import BatchlabError

#: Micro-batches per batch when ``micro_batch_size`` is not given.
DEFAULT_MICRO_BATCHES = 4

#: Name of the group of parameters that belong to the model itself (no submodule).
ROOT_GROUP = "(root)"


def _tensors(batch: Any) -> list[Tensor]:
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [v for v in batch.values() if isinstance(v, Tensor)]
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return [v for v in batch if isinstance(v, Tensor)]
    return []


def batch_size_of(batch: Any, *, where: str = "batch") -> int:
    """Number of examples in ``batch``: the common first dimension of its tensors."""
    tensors = _tensors(batch)
    if not tensors:
        raise ValueError(
            f"{where} must be a tensor or a tuple of tensors (first dimension = examples), "
            f"got {type(batch).__name__}"
        )
    sizes = {int(t.shape[0]) if t.dim() else -1 for t in tensors}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"{where}: every tensor must have the same first dimension (examples), "
            f"got shapes {[tuple(t.shape) for t in tensors]}"
        )
    return sizes.pop()


def check_micro_batch_size(
    micro_batch_size: Any,
    batch_size: int | None = None,
    *,
    name: str = "micro_batch_size",
    batch_name: str | None = None,
    where: str = "batch",
) -> Any:
    """The one check of a micro-batch size (B_small); given its batch, also resolves it.

    Every boundary that takes a micro-batch size calls this — ``measure_noise_scale``,
    ``NoiseScaleTracker``, the DDP hook (its per-rank batch is the small batch), the
    framework callbacks, the CLI and CBS options — and passes the value on under the
    name ``micro_batch_size``, unchecked. The value must be a positive integer or
    ``None``. With ``batch_size`` (the big batch, B_big) it must also divide the batch
    into at least two micro-batches, as the two-batch-size estimators need
    (McCandlish et al. 2018, Appendix A); ``None`` then means
    :data:`DEFAULT_MICRO_BATCHES` equal micro-batches (so B_small = B/4).

    Args:
        micro_batch_size: examples per micro-batch, or ``None``.
        batch_size: examples in the batch it splits, when known.
        name: the micro-batch size's argument or option name (``"--micro-batch-size"``).
        batch_name: the batch size's argument or option name (``"--batch-size"``) when
            the user gave it by name; messages then quote it.
        where: which batch, for messages about one of many (``"batch 3"``).

    Returns:
        ``micro_batch_size`` (``None`` stays ``None``) without ``batch_size``; the
        micro-batch size to use (an ``int``) with it.

    Raises:
        ValueError: naming the sizes and what would be valid.
    """
    check_positive_int(micro_batch_size, name, optional=True)
    if batch_size is None:
        return micro_batch_size
    if micro_batch_size is None:
        if batch_size % DEFAULT_MICRO_BATCHES:
            subject = (
                _named(batch_name, batch_size)
                if batch_name
                else f"{where} has {batch_size} examples, which"
            )
            raise ValueError(
                f"{subject} does not split into {DEFAULT_MICRO_BATCHES} equal micro-batches; "
                f"pass {name} (a divisor of {batch_size}, at most {batch_size // 2})"
            )
        return batch_size // DEFAULT_MICRO_BATCHES
    batch = (
        _named(batch_name, batch_size) if batch_name else f"the {batch_size} examples of {where}"
    )
    if batch_size % micro_batch_size:
        raise ValueError(
            f"{_named(name, micro_batch_size)} does not divide {batch}; "
            f"use a divisor of {batch_size}"
        )
    if batch_size // micro_batch_size < 2:
        place = (
            f"per batch of {batch_size}" if batch_name else f"in {where} of {batch_size} examples"
        )
        raise ValueError(
            f"{_named(name, micro_batch_size)} leaves {batch_size // micro_batch_size} "
            f"micro-batch {place}; the noise scale needs at least two micro-batches per batch "
            f"({name} {batch_size // 2} or less)"
        )
    return micro_batch_size


def _named(name: str, value: Any) -> str:
    """``--micro-batch-size 48`` for a CLI option, ``micro_batch_size=48`` for an argument."""
    return f"{name} {value}" if name.startswith("--") else f"{name}={value}"


def split_batch(batch: Any, micro_batch_size: int) -> list[Any]:
    """``batch`` cut along its first dimension into pieces of ``micro_batch_size``."""
    if isinstance(batch, Tensor):
        return list(batch.split(micro_batch_size))
    if isinstance(batch, Mapping):
        keys = list(batch)
        parts = [
            batch[k].split(micro_batch_size) if isinstance(batch[k], Tensor) else None for k in keys
        ]
        count = next(len(p) for p in parts if p is not None)
        return [
            {k: (p[i] if p is not None else batch[k]) for k, p in zip(keys, parts, strict=True)}
            for i in range(count)
        ]
    parts = [v.split(micro_batch_size) if isinstance(v, Tensor) else None for v in batch]
    count = next(len(p) for p in parts if p is not None)
    return [
        tuple(p[i] if p is not None else v for v, p in zip(batch, parts, strict=True))
        for i in range(count)
    ]


def leading_size(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    """First dimension of the first tensor among a call's arguments (examples in a forward)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return int(value.shape[0]) if value.dim() else None
        tensors = _tensors(value) if isinstance(value, Mapping | list | tuple) else []
        if tensors:
            return int(tensors[0].shape[0]) if tensors[0].dim() else None
    return None


@dataclass(frozen=True)
class ParameterGroups:
    """Trainable parameters, and which module (group) each belongs to."""

    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    group_names: tuple[str, ...]
    group_index: Tensor  # (P,) int64: group of each parameter
    _matrices: dict[tuple[torch.dtype, torch.device], Tensor] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    def sum_by_group(self, values: Tensor) -> Tensor:
        """(..., P) per-parameter values -> (..., 1 + G): the total first, then each group.

        One matrix product with a cached 0/1 assignment matrix (P, 1 + G).
        """
        key = (values.dtype, values.device)
        matrix = self._matrices.get(key)
        if matrix is None:
            assign = group_assignment(self.group_index.tolist(), self.num_groups)
            matrix = torch.from_numpy(assign).to(dtype=values.dtype, device=values.device)
            self._matrices[key] = matrix
        return values @ matrix


class ShardedModelError(BatchlabError, TypeError):
    """The model's parameters or gradients are sharded across ranks (FSDP, DTensor)."""


def sharding_of(model: nn.Module) -> str | None:
    """How ``model``'s parameters are sharded across ranks, or ``None`` if they are not.

    A sharded gradient on one rank is a slice of the averaged gradient, neither a
    small-batch nor a big-batch gradient, so every squared norm taken from it is wrong.
    Detected: FSDP (``FullyShardedDataParallel``), FSDP2 (``fully_shard``, an
    ``FSDPModule``) and any ``DTensor`` parameter (tensor parallelism). The checks
    only look at modules already imported: a model cannot hold an FSDP module or a
    DTensor unless their modules were imported to build it.
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is not None:
        kinds = tuple(
            getattr(fsdp, name)
            for name in ("FullyShardedDataParallel", "FSDPModule")
            if hasattr(fsdp, name)
        )
        for name, module in model.named_modules():
            if isinstance(module, kinds):
                return f"{type(module).__name__} (FSDP) at {name or 'the top level'}"
    tensor = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(tensor, "DTensor", None) if tensor is not None else None
    if dtensor is not None:
        for name, param in model.named_parameters():
            if isinstance(param, dtensor):
                return f"a DTensor parameter ({name})"
    return None


def check_not_sharded(model: nn.Module, *, where: str) -> None:
    """Raise :class:`ShardedModelError` if ``model``'s gradients are sharded (FSDP, DTensor).

    For the paths that need whole gradients (``NoiseScaleTracker``,
    ``measure_noise_scale``, the DDP hook). FSDP2 models have their own hook,
    :func:`batchlab.noise.register_fsdp_noise_scale_hook`, which the message names.
    """
    sharding = sharding_of(model)
    if sharding is not None:
        fsdp2 = (
            "; for a model sharded with fully_shard (FSDP2, 1-D mesh) use "
            "batchlab.noise.register_fsdp_noise_scale_hook"
            if "FSDP" in sharding and "FullyShardedDataParallel" not in sharding
            else ""
        )
        raise ShardedModelError(
            f"{where}: the model has {sharding}; sharded gradients are not supported here, "
            "the noise scale would be computed from gradient shards and be wrong. Measure an "
            "unsharded copy of the model instead: batchlab.integrations.ddp."
            "register_noise_scale_hook under DistributedDataParallel, or "
            f"batchlab.measure_noise_scale / NoiseScaleTracker in one process{fsdp2}"
        )


def trainable_parameters(model: nn.Module, *, where: str) -> ParameterGroups:
    """The parameters with ``requires_grad``, grouped by owning module; error if none.

    Models with sharded gradients (FSDP, DTensor) are refused (:func:`check_not_sharded`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    check_not_sharded(model, where=where)
    everything = list(model.named_parameters())
    named = [(n, p) for n, p in everything if p.requires_grad]
    if not named:
        raise ValueError(
            f"{where}: the model has no trainable parameters (0 of {len(everything)} parameter "
            "tensors have requires_grad=True); there is no gradient to measure"
        )
    group_names, index = group_by_module([name for name, _ in named])
    return ParameterGroups(
        names=tuple(n for n, _ in named),
        params=tuple(p for _, p in named),
        group_names=group_names,
        group_index=torch.tensor(index, dtype=torch.long),
    )


def group_by_module(names: Sequence[str]) -> tuple[tuple[str, ...], list[int]]:
    """Parameter names -> the modules that own them (in first-seen order) and each one's.

    A parameter of the model itself (no dotted prefix) belongs to :data:`ROOT_GROUP`.
    """
    group_names: list[str] = []
    index: list[int] = []
    for name in names:
        module = name.rpartition(".")[0] or ROOT_GROUP
        if module not in group_names:
            group_names.append(module)
        index.append(group_names.index(module))
    return tuple(group_names), index


def group_assignment(group_index: Sequence[int], num_groups: int) -> np.ndarray:
    """(P, 1 + G) 0/1 matrix: per-parameter values @ it = the whole model, then each group."""
    matrix = np.zeros((len(group_index), 1 + num_groups))
    matrix[:, 0] = 1.0
    matrix[np.arange(len(group_index)), 1 + np.asarray(group_index, dtype=np.int64)] = 1.0
    return matrix


def sq_norm(tensor: Tensor) -> Tensor:
    """|tensor|² as a 0-d float32/float64 tensor, on the tensor's device (no sync).

    At least float32 whatever the tensor's dtype: a half-precision (bf16/fp16)
    gradient is cast to float32 before it is squared and summed, so neither the
    square's overflow (fp16 ends at 65504) nor bf16's 8-bit mantissa enters the
    noise-scale statistics.
    """
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    flat = tensor.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return torch.dot(flat, flat)


def sq_norms(tensors: Sequence[Tensor]) -> Tensor:
    """(len,) squared norms of dense tensors in one fused call, in float32 or float64.

    Never in half precision: float32/float64 tensors take the fused path, anything else
    (bf16/fp16, sparse) is squared one tensor at a time by :func:`sq_norm` and returned
    in float64.
    """
    if any(t.is_sparse or t.dtype not in (torch.float32, torch.float64) for t in tensors):
        # Half-precision norms could overflow: square in float32 one tensor at a time.
        return torch.stack([sq_norm(t).to(torch.float64) for t in tensors])
    norms = torch._foreach_norm([t.detach() for t in tensors])
    dtype = torch.float64 if any(n.dtype == torch.float64 for n in norms) else torch.float32
    return torch.stack([n.to(dtype) for n in norms]).square()
