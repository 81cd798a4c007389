"""Per-tensor L2 norms for trust ratios, the fastest way each device offers."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_BLAS_DTYPES = (torch.float32, torch.float64)


def stacked_norms(tensors: list[Tensor]) -> Tensor:
    """‖t‖₂ of every tensor (one device and dtype), stacked into a 1-d tensor.

    On a CPU, ``torch._foreach_norm`` is a loop over ``torch.linalg.vector_norm``,
    which runs on one thread, while a BLAS dot product uses the thread pool: √(t·t) is
    about 2x faster with two threads, and a trust ratio needs two norms per tensor.
    Both overflow alike (neither rescales). Elsewhere ``torch._foreach_norm`` is one
    fused kernel (CUDA).

    Args:
        tensors: non-empty list of tensors on one device, of one dtype.

    Returns:
        A 1-d tensor of the norms, on the tensors' device.
    """
    first = tensors[0]
    if first.device.type == "cpu" and first.dtype in _BLAS_DTYPES:
        flats = [t.reshape(-1) for t in tensors]
        return torch.stack([torch.dot(flat, flat) for flat in flats]).sqrt_()
    return torch.stack(torch._foreach_norm(tensors))


def tensor_norm(tensor: Tensor) -> Tensor | float:
    """‖t‖₂: a Python float for a CPU tensor, else a 0-d tensor on its device.

    Reading a CPU scalar costs nothing, and float arguments make the cheapest kernels;
    on an accelerator the norm stays on the device, so that there is no sync.
    """
    if tensor.device.type != "cpu":
        return torch.linalg.vector_norm(tensor)
    if tensor.dtype in _BLAS_DTYPES:  # see stacked_norms: BLAS dot uses the thread pool
        flat = tensor.reshape(-1)
        return math.sqrt(torch.dot(flat, flat).item())
    return torch.linalg.vector_norm(tensor).item()
