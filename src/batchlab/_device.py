"""Where models train and in what precision: devices, autocast, and moving data without a sync.

One code path for CPU and CUDA: a run trains on the device its workload's data live on
(:func:`batchlab.workloads.on_device`), and everything here is a no-op on the CPU.

* ``device``: ``"auto"`` (CUDA if this process sees a GPU, else the CPU), ``"cpu"``,
  ``"cuda"`` or ``"cuda:N"``.
* ``precision``: ``"fp32"``; ``"tf32"`` (fp32 tensors, TensorFloat-32 matrix products
  on Ampere and later GPUs; the CPU ignores it); ``"bf16"`` (``torch.autocast`` to
  bfloat16 around the forward pass and the loss: weights, gradients and optimizer state
  stay fp32, so no loss scaling is needed, unlike fp16; Micikevicius et al. 2018,
  Kalamkar et al. 2019). The noise-scale statistics accumulate in fp32/fp64 whatever the
  precision (:mod:`batchlab.noise`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, get_args

import torch
from torch import Tensor

Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: What ``device`` accepts, in words (for errors and ``--help``).
DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(
    device: str | torch.device | None = "auto", *, name: str = "device"
) -> torch.device:
    """The ``torch.device`` that ``device`` names on this machine (``"auto"``/``None``: CUDA if seen).

    ``"cuda"`` resolves to the current CUDA device with its index, so that two spellings
    of one GPU compare equal.

    Raises:
        ValueError: not one of :data:`DEVICE_CHOICES`, or a CUDA device this process
            does not see (named, with what it sees).
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be {DEVICE_CHOICES}, got {device!r}") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ValueError(f"{name} must be {DEVICE_CHOICES}, got {device!r}")
    if not torch.cuda.is_available():
        why = "torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(
            f"{name}={str(device)!r} asks for CUDA, but {why} here (torch {torch.__version__}); "
            "use 'cpu', or 'auto' to take a GPU only where there is one"
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if resolved.index is None else resolved.index
    if index >= count:
        raise ValueError(
            f"{name}={str(device)!r}: this process sees {count} CUDA device(s), cuda:0..cuda:{count - 1}"
        )
    return torch.device("cuda", index)


def check_precision(precision: str, *, name: str = "precision") -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision  # type: ignore[return-value]


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """float32 matrix products and convolutions as ``precision`` asks, while inside.

    Enter it around a whole training run (backward passes too). ``tf32``: TensorFloat-32
    (10-bit mantissa products, fp32 accumulation) on GPUs that have it; otherwise full
    fp32 products, even where cuDNN would use TF32 convolutions by default. The settings
    are process-wide and restored on leaving.
    """
    tf32 = precision == "tf32"
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The forward pass's autocast for ``precision`` on ``device``: enter it around the loss.

    ``bf16``: ``torch.autocast`` to bfloat16 (matrix products and convolutions in bf16,
    reductions and losses in fp32; the backward pass follows the forward's dtypes).
    ``fp32``/``tf32``: nothing (see :func:`matmul_precision`).
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; a host-to-GPU copy is asynchronous (pinned, no host sync).

    A copy from ordinary (pageable) host memory waits for the GPU's queue to drain; from
    pinned memory it is queued like a kernel, so a training loop never stalls on its data.
    """
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
