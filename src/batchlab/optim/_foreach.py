"""The choice between the per-tensor and the multi-tensor (``torch._foreach_*``) update.

torch's optimizers take ``foreach: bool | None``; ``None`` means "multi-tensor where
torch has fused multi-tensor kernels" (CUDA and similar devices), per-tensor elsewhere
(on a CPU the ``_foreach_*`` ops are plain loops). LARS and LAMB follow the same rule
so that they are drop-in replacements for SGD and AdamW.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import _default_to_fused_or_foreach


def use_foreach(foreach: bool | None, params: list[torch.Tensor]) -> bool:
    """Whether to take the multi-tensor path: ``foreach`` if given, else torch's default."""
    if foreach is not None:
        return bool(foreach)
    _, default = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
    return default


def check_dense(grads: list[torch.Tensor], optimizer: str) -> None:
    """Sparse gradients have no per-tensor norm that the trust ratio could use."""
    for grad in grads:
        if grad.is_sparse:
            raise RuntimeError(f"{optimizer} does not support sparse gradients")
