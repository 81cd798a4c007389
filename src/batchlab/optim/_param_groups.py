"""Param groups for LARS/LAMB: which tensors get a trust ratio and weight decay."""

from __future__ import annotations

from typing import Any

from torch import nn

from ._validation import check_real

# Normalisation layers whose (possibly multi-dimensional) affine weights are scales,
# not features: decaying or trust-scaling them only fights the normalisation.
_NORM_LAYERS: tuple[type[nn.Module], ...] = tuple(
    layer
    for layer in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    )
    if layer is not None
)


def lars_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into a LARS/LAMB group and an excluded group.

    Biases and normalisation weights are few, but their gradients are small relative
    to their norms (or their norms are 0 at initialisation), so the trust ratio and
    weight decay distort them; large-batch recipes leave them out. Excluded: every
    parameter with at most one dimension and every parameter of a normalisation layer
    (BatchNorm/InstanceNorm, LayerNorm, GroupNorm, RMSNorm). Those go to a group with
    ``lars_exclude=True`` and ``weight_decay=0``; all others get ``weight_decay``.
    Frozen parameters (``requires_grad=False``) are left out, and a parameter shared
    between modules appears once. Empty groups are omitted.

    References:
        Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        Sec. 5.1, https://arxiv.org/abs/1706.02677
        You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
        https://arxiv.org/abs/1708.03888

    Args:
        model: the model whose parameters are to be optimised.
        weight_decay: weight decay of the non-excluded group, >= 0.

    Returns:
        Param groups for :class:`~batchlab.optim.LARS` or :class:`~batchlab.optim.LAMB`
        (or any torch optimizer, which ignores the ``lars_exclude`` key).
    """
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    excluded_ids = {
        id(p)
        for module in model.modules()
        if isinstance(module, _NORM_LAYERS)
        for p in module.parameters(recurse=False)
    }
    decayed, excluded, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (excluded if p.ndim <= 1 or id(p) in excluded_ids else decayed).append(p)
    groups: list[dict[str, Any]] = []
    if decayed:
        groups.append({"params": decayed, "weight_decay": weight_decay})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups
