"""LAMB: Adam with decoupled weight decay whose step is rescaled per layer by a trust ratio."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT, _get_scalar_dtype, _get_value

from ._foreach import check_dense, use_foreach
from ._layerwise import LayerwiseOptimizer
from ._norms import stacked_norms, tensor_norm
from ._validation import check_fraction, check_real


def lamb_trust_ratio(w_norm: Tensor | float, r_norm: Tensor | float) -> Tensor | float:
    """LAMB trust ratio ‖w‖/‖r‖, and 1 where ‖w‖ or ‖r‖ is 0.

    References:
        You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
        76 minutes", Algorithm 2, https://arxiv.org/abs/1904.00962

    Args:
        w_norm: ‖w‖, the parameter norm(s): a float, 0-d or stacked 1-d tensor.
        r_norm: ‖r‖, the norm(s) of the Adam direction plus weight decay.

    Returns:
        The ratio, a float for float norms, else a tensor shaped like the norms.
    """
    if isinstance(w_norm, Tensor):
        return torch.where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, 1.0)
    return 1.0 if w_norm == 0 or r_norm == 0 else w_norm / r_norm


def _check_group(group: dict[str, Any]) -> None:
    check_real("lr", group["lr"], low=0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_fraction("betas[0]", betas[0], high_inclusive=False)
    check_fraction("betas[1]", betas[1], high_inclusive=False)
    check_real("eps", group["eps"], low=0.0)
    check_real("weight_decay", group["weight_decay"], low=0.0)
    if not isinstance(group["lars_exclude"], bool):
        raise ValueError(f"lars_exclude must be a bool, got {group['lars_exclude']!r}")
    if group["foreach"] is not None and not isinstance(group["foreach"], bool):
        raise ValueError(f"foreach must be a bool or None, got {group['foreach']!r}")


class LAMB(LayerwiseOptimizer):
    """Layer-wise Adaptive Moments for Batch training: Adam with a per-tensor trust ratio.

    LAMB is to AdamW what LARS is to momentum SGD: every tensor's step is rescaled so
    that its size is proportional to the tensor's norm, which keeps large learning
    rates (and so large batches) stable; it trained BERT at batch sizes of 32k-64k. Per
    tensor w with gradient g at step t >= 1::

        m     = β1 m + (1 − β1) g                     # 1. first moment
        v     = β2 v + (1 − β2) g²                    # 2. second moment
        m̂, v̂  = m / (1 − β1^t), v / (1 − β2^t)       # 3. bias correction
        r     = m̂ / (√v̂ + eps) + λ_wd w              # 4. Adam direction + decoupled decay
        ratio = ‖w‖ / ‖r‖                             # 5. trust ratio (1 if either is 0)
        w     = w − lr · ratio · r                    # 6. step

    A param group with ``lars_exclude=True`` (see :func:`~batchlab.optim.lars_param_groups`)
    takes ratio 1 and no weight decay, i.e. a plain bias-corrected Adam step (what
    TensorFlow Addons' LAMB calls ``exclude_from_layer_adaptation``). ``p.grad`` is
    never modified.

    References:
        You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
        76 minutes", https://arxiv.org/abs/1904.00962

    Args:
        params: parameters or param groups (a group may set ``lars_exclude=True``).
        lr: global learning rate, >= 0.
        betas: (β1, β2), each in [0, 1).
        eps: added to √v̂, >= 0.
        weight_decay: λ_wd, decoupled weight decay added to the Adam direction, >= 0.
        foreach: multi-tensor ``torch._foreach_*`` path; ``None`` picks as torch does
            (multi-tensor on CUDA, per-tensor on CPU).

    Returns:
        The optimizer; ``step(closure=None)`` returns the closure's loss.
    """

    check_group = staticmethod(_check_group)
    optional_keys = {"lars_exclude": False, "foreach": None}

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults: dict[str, Any] = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "lars_exclude": False,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _init_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                # The step count lives on the CPU, as in torch.optim.Adam: the bias
                # corrections are then host scalars and cost no device sync.
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        check_dense(grads, "LAMB")
        return params, grads, exp_avgs, exp_avg_sqs, steps

    def _step_group(self, group: dict[str, Any]) -> None:
        """One LAMB step of ``group``'s parameters that have a gradient."""
        params, grads, exp_avgs, exp_avg_sqs, steps = self._init_group(group)
        if not params:
            return
        update = (
            _multi_tensor_lamb if use_foreach(group["foreach"], params) else _single_tensor_lamb
        )
        beta1, beta2 = group["betas"]
        update(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            steps,
            lr=float(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=0.0 if group["lars_exclude"] else group["weight_decay"],
            exclude=group["lars_exclude"],
        )


# The update twice, on purpose, as in _lars.py and torch.optim (_single_tensor_adam /
# _multi_tensor_adam): a per-tensor loop and a torch._foreach_* version with the same
# signature and numbered steps; tests/optim/test_contract.py holds them to one update.
# Step 4 in Kingma & Ba's cheaper order (Adam, Sec. 2): with ε̂ = eps·√(1 − β2^t),
#     m̂ / (√v̂ + eps) = (√(1 − β2^t) / (1 − β1^t)) · m / (√v + ε̂)
# exactly, which saves a pass over v̂. Large temporaries are few on purpose: on a CPU a
# fresh allocation costs more than an in-place pass.


def _single_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    exclude: bool,
) -> None:
    for w, g, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        step += 1
        t = _get_value(step)
        # 1.-2. Moments: m = β1 m + (1 − β1) g,  v = β2 v + (1 − β2) g².
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        # 3. Bias corrections 1 − β^t, as host scalars.
        bias_correction1, bias_correction2_sqrt = 1 - beta1**t, math.sqrt(1 - beta2**t)
        # 4. r = m̂ / (√v̂ + eps) + λ_wd w, built in one temporary (√v + ε̂ becomes r).
        r = v.sqrt().add_(eps * bias_correction2_sqrt)
        torch.div(m, r, out=r).mul_(bias_correction2_sqrt / bias_correction1)
        if weight_decay != 0:
            r.add_(w, alpha=weight_decay)
        # 5.-6. Trust ratio ‖w‖/‖r‖ (1 in an excluded group; a float on a CPU, a 0-d
        #    tensor elsewhere, see tensor_norm) and the step w ← w − lr·ratio·r.
        ratio = 1.0 if exclude else lamb_trust_ratio(tensor_norm(w), tensor_norm(r))
        if isinstance(ratio, float):
            w.sub_(r, alpha=lr * ratio)
        else:
            w.addcmul_(r, ratio, value=-lr)


def _multi_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    exclude: bool,
) -> None:
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, steps],  # type: ignore[list-item]
        with_indices=True,
    )
    for (ws, gs, ms, vs, ts), _ in grouped.values():
        torch._foreach_add_(ts, 1)
        # 1.-2. Moments: m = β1 m + (1 − β1) g,  v = β2 v + (1 − β2) g².
        torch._foreach_lerp_(ms, gs, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, 1 - beta2)
        # 3. Bias corrections 1 − β^t, as host scalars (steps live on the CPU).
        bias_corrections1 = [1 - beta1 ** _get_value(t) for t in ts]
        bias_corrections2_sqrt = [math.sqrt(1 - beta2 ** _get_value(t)) for t in ts]
        # 4. r = m̂ / (√v̂ + eps) + λ_wd w, built in one set of temporaries (√v + ε̂ becomes
        #    r; foreach ops have no out=, so m/x is taken as (1/x)·m).
        rs = torch._foreach_sqrt(vs)
        torch._foreach_add_(rs, [eps * bc for bc in bias_corrections2_sqrt])
        torch._foreach_reciprocal_(rs)
        torch._foreach_mul_(rs, ms)
        torch._foreach_mul_(
            rs,
            [bc2 / bc1 for bc1, bc2 in zip(bias_corrections1, bias_corrections2_sqrt, strict=True)],
        )
        if weight_decay != 0:
            torch._foreach_add_(rs, ws, alpha=weight_decay)
        # 5.-6. Trust ratios ‖w‖/‖r‖ (from stacked norms) and the step w ← w − lr·ratio·r.
        if exclude:
            torch._foreach_sub_(ws, rs, alpha=lr)
        else:
            ratios = lamb_trust_ratio(stacked_norms(ws), stacked_norms(rs))
            torch._foreach_addcmul_(ws, rs, list(cast(Tensor, ratios).unbind(0)), value=-lr)
