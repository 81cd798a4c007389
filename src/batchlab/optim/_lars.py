"""LARS: SGD with momentum whose step is rescaled per layer by a trust ratio."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from ._foreach import check_dense, use_foreach
from ._layerwise import LayerwiseOptimizer
from ._norms import stacked_norms, tensor_norm
from ._validation import check_real


def lars_trust_ratio(
    w_norm: Tensor | float,
    g_norm: Tensor | float,
    trust_coefficient: float,
    weight_decay: float,
    eps: float,
) -> Tensor | float:
    """LARS local learning rate λ = η‖w‖/(‖g‖ + β‖w‖ + eps), and 1 where ‖w‖ or ‖g‖ is 0.

    The fallback to 1 covers freshly zero-initialised tensors (no scale to be
    relative to) and tensors that got no gradient signal. The norms may be floats,
    0-d tensors (one tensor's) or 1-d tensors (many tensors' norms, stacked).

    References:
        You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
        Algorithm 1, https://arxiv.org/abs/1708.03888

    Args:
        w_norm: ‖w‖, the parameter norm(s).
        g_norm: ‖g‖, the gradient norm(s).
        trust_coefficient: η.
        weight_decay: β.
        eps: added to the denominator.

    Returns:
        λ, a float for float norms, else a tensor shaped like the norms.
    """
    if isinstance(w_norm, Tensor):
        ratio = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
        return torch.where((w_norm > 0) & (g_norm > 0), ratio, 1.0)
    if w_norm == 0 or g_norm == 0:
        return 1.0
    return trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)


def _check_group(group: dict[str, Any]) -> None:
    check_real("lr", group["lr"], low=0.0)
    check_real("momentum", group["momentum"], low=0.0)
    check_real("weight_decay", group["weight_decay"], low=0.0)
    check_real("trust_coefficient", group["trust_coefficient"], low=0.0, low_inclusive=False)
    check_real("eps", group["eps"], low=0.0)
    if not isinstance(group["nesterov"], bool):
        raise ValueError(f"nesterov must be a bool, got {group['nesterov']!r}")
    if group["nesterov"] and group["momentum"] <= 0:
        raise ValueError(f"nesterov=True needs momentum > 0, got momentum={group['momentum']!r}")
    if not isinstance(group["lars_exclude"], bool):
        raise ValueError(f"lars_exclude must be a bool, got {group['lars_exclude']!r}")
    if group["foreach"] is not None and not isinstance(group["foreach"], bool):
        raise ValueError(f"foreach must be a bool or None, got {group['foreach']!r}")


class LARS(LayerwiseOptimizer):
    """Layer-wise Adaptive Rate Scaling: momentum SGD with a per-tensor trust ratio.

    At large batch sizes the ratio ‖w‖/‖g‖ differs by orders of magnitude between
    layers, so one global learning rate is either too large for some layers (and
    training diverges in the first steps) or too small for others. LARS scales each
    tensor's step by its own λ, which made ImageNet training at batch sizes of 8k-32k
    possible. Per tensor w with gradient g, weight decay β, trust coefficient η::

        d   = g + β w                                 # 1. decayed gradient
        λ   = η ‖w‖ / (‖g‖ + β ‖w‖ + eps)             # 2. trust ratio (1 if ‖w‖ or ‖g‖ is 0)
        buf = momentum · buf + λ d                    # 3. momentum (buf = λ d at step 1)
        w   = w − lr · buf                            # 4. step
              (nesterov: w = w − lr · (λ d + momentum · buf))

    A param group with ``lars_exclude=True`` (biases and normalisation weights, see
    :func:`~batchlab.optim.lars_param_groups`) takes λ = 1 and no weight decay
    whatever its ``weight_decay``, as in Goyal et al. 2017 and You et al. 2017 (so a
    LARS whose every group is excluded is exactly ``torch.optim.SGD`` with the same
    momentum and no weight decay). ``p.grad`` is never modified (gradient-noise-scale
    hooks read it).

    References:
        You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
        https://arxiv.org/abs/1708.03888
        Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        https://arxiv.org/abs/1706.02677

    Args:
        params: parameters or param groups (a group may set ``lars_exclude=True``).
        lr: global learning rate (warm it up: see :func:`~batchlab.optim.warmup_schedule`).
        momentum: momentum factor, >= 0.
        weight_decay: β, L2 penalty folded into the gradient before the trust ratio.
        trust_coefficient: η, > 0; how far one step may move a tensor relative to its norm.
        eps: added to the trust ratio's denominator, >= 0.
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        foreach: multi-tensor ``torch._foreach_*`` path; ``None`` picks as torch does
            (multi-tensor on CUDA, per-tensor on CPU).

    Returns:
        The optimizer; ``step(closure=None)`` returns the closure's loss.
    """

    check_group = staticmethod(_check_group)
    optional_keys = {"nesterov": False, "lars_exclude": False, "foreach": None}

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        nesterov: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults: dict[str, Any] = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "nesterov": nesterov,
            "lars_exclude": False,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _init_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
        params, grads, buffers = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            params.append(p)
            grads.append(p.grad)
            buffers.append(self.state[p].get("momentum_buffer"))
        check_dense(grads, "LARS")
        return params, grads, buffers

    def _step_group(self, group: dict[str, Any]) -> None:
        """One LARS step of ``group``'s parameters that have a gradient."""
        params, grads, buffers = self._init_group(group)
        if not params:
            return
        exclude = group["lars_exclude"]
        hparams: dict[str, Any] = {
            "lr": float(group["lr"]),
            "momentum": group["momentum"],
            "weight_decay": 0.0 if exclude else group["weight_decay"],
            "trust_coefficient": group["trust_coefficient"],
            "eps": group["eps"],
            "nesterov": group["nesterov"],
            "exclude": exclude,
        }
        if use_foreach(group["foreach"], params):
            # Stacking norms needs one device and dtype per call.
            grouped = Optimizer._group_tensors_by_device_and_dtype(
                [params, grads, buffers],  # type: ignore[list-item]
                with_indices=True,
            )
            for (ws, gs, bufs), indices in grouped.values():
                _multi_tensor_lars(ws, gs, bufs, **hparams)  # type: ignore[arg-type]
                for buf, index in zip(bufs, indices, strict=True):
                    buffers[index] = buf
        else:
            _single_tensor_lars(params, grads, buffers, **hparams)
        if group["momentum"] != 0:
            for p, buf in zip(params, buffers, strict=True):
                self.state[p]["momentum_buffer"] = buf


# The update twice, on purpose, as torch.optim writes its own optimizers
# (_single_tensor_sgd / _multi_tensor_sgd): a per-tensor loop and a multi-tensor
# (torch._foreach_*) version, with the same keyword signature and the same numbered
# steps. Folding them into one would cost either the foreach path's speed or the
# per-tensor path's readability; tests/optim/test_contract.py holds them to the same
# update. Steps 3-4 never materialise the decayed gradient d = g + βw where it can be
# avoided: λd = λg + (λβ)w is added term by term, one pass and one allocation fewer.


def _single_tensor_lars(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    exclude: bool,
) -> None:
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        # 1.-2. Trust ratio λ (1 in an excluded group): a float on a CPU, a 0-d tensor
        #    elsewhere (see tensor_norm).
        trust: Tensor | float = 1.0
        if not exclude:
            trust = lars_trust_ratio(
                tensor_norm(w), tensor_norm(g), trust_coefficient, weight_decay, eps
            )
        decayed = trust * weight_decay if weight_decay != 0 else None
        if momentum == 0:
            w.sub_(_lambda_d(w, g, trust, decayed), alpha=lr)
            continue
        # 3. Momentum buf = momentum·buf + λd (buf = λd at the first step).
        buf = buffers[i]
        if buf is None:
            buf = buffers[i] = _lambda_d(w, g, trust, decayed)
        else:
            _axpy_(buf.mul_(momentum), g, trust)
            if decayed is not None:
                _axpy_(buf, w, decayed)
        # 4. Step w ← w − lr·buf, or w ← w − lr·(λd + momentum·buf) with Nesterov.
        if nesterov:
            w.sub_(_lambda_d(w, g, trust, decayed).add_(buf, alpha=momentum), alpha=lr)
        else:
            w.sub_(buf, alpha=lr)


def _axpy_(y: Tensor, x: Tensor, a: Tensor | float) -> Tensor:
    """y += a·x, in place, for a float or a 0-d tensor ``a``."""
    return y.add_(x, alpha=a) if isinstance(a, float) else y.addcmul_(x, a)


def _lambda_d(
    w: Tensor, g: Tensor, trust: Tensor | float, decayed: Tensor | float | None
) -> Tensor:
    """λd = λg + (λβ)w as a new tensor (``g`` is ``p.grad``: never written)."""
    scaled = torch.mul(g, trust)
    return scaled if decayed is None else _axpy_(scaled, w, decayed)


def _multi_tensor_lars(
    ws: list[Tensor],
    gs: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    exclude: bool,
) -> None:
    """LARS on tensors of one device and dtype; ``bufs`` is updated in place."""
    # 1.-2. Trust ratios λ of all tensors from their stacked norms: a handful of tiny
    #    ops per group rather than per tensor, and no host-device sync. ``None``: λ = 1.
    trusts: list[Tensor] | None = None
    decayed: list[Tensor] | None = None
    if not exclude:
        trust = lars_trust_ratio(
            stacked_norms(ws),
            stacked_norms(gs),
            trust_coefficient,
            weight_decay,
            eps,
        )
        trusts = list(cast(Tensor, trust).unbind(0))
        if weight_decay != 0:
            decayed = list((trust * weight_decay).unbind(0))
    if momentum == 0:
        torch._foreach_sub_(ws, _foreach_lambda_d(ws, gs, trusts, decayed), alpha=lr)
        return
    # 3. Momentum buf = momentum·buf + λd (buf = λd at the first step).
    old = [i for i, buf in enumerate(bufs) if buf is not None]
    if old:
        old_bufs = [bufs[i] for i in old]
        torch._foreach_mul_(old_bufs, momentum)  # type: ignore[arg-type]
        _foreach_axpy_(old_bufs, [gs[i] for i in old], _pick(trusts, old))  # type: ignore[arg-type]
        if decayed is not None:
            _foreach_axpy_(old_bufs, [ws[i] for i in old], _pick(decayed, old))  # type: ignore[arg-type]
    new = [i for i, buf in enumerate(bufs) if buf is None]
    if new:
        new_bufs = _foreach_lambda_d(
            [ws[i] for i in new], [gs[i] for i in new], _pick(trusts, new), _pick(decayed, new)
        )
        for i, buf in zip(new, new_bufs, strict=True):
            bufs[i] = buf
    # 4. Step w ← w − lr·buf, or w ← w − lr·(λd + momentum·buf) with Nesterov.
    if nesterov:
        steps = _foreach_lambda_d(ws, gs, trusts, decayed)
        torch._foreach_add_(steps, bufs, alpha=momentum)  # type: ignore[arg-type]
        torch._foreach_sub_(ws, steps, alpha=lr)
    else:
        torch._foreach_sub_(ws, bufs, alpha=lr)  # type: ignore[arg-type]


def _pick(values: list[Tensor] | None, indices: list[int]) -> list[Tensor] | None:
    return None if values is None else [values[i] for i in indices]


def _foreach_axpy_(ys: list[Tensor], xs: list[Tensor], scales: list[Tensor] | None) -> None:
    """ys += scales·xs, in place; ``scales=None`` means 1."""
    if scales is None:
        torch._foreach_add_(ys, xs)
    else:
        torch._foreach_addcmul_(ys, xs, scales)


def _foreach_lambda_d(
    ws: list[Tensor], gs: list[Tensor], trusts: list[Tensor] | None, decayed: list[Tensor] | None
) -> list[Tensor]:
    """λd = λg + (λβ)w for many tensors, as new tensors (``gs`` are never written)."""
    scaled = list(torch._foreach_mul(gs, trusts)) if trusts is not None else [g.clone() for g in gs]
    if decayed is not None:
        torch._foreach_addcmul_(scaled, ws, decayed)
    return scaled
