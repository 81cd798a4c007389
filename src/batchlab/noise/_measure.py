"""``measure_noise_scale``: the gradient noise scale at the current parameters.

Plumbing only: it computes each micro-batch's gradient with ``torch.autograd.grad``
(so ``.grad`` is never touched), reduces them to squared norms and hands those to
:class:`~batchlab.noise.NoiseScaleStatistics`.

Whatever the precision of the forward pass, the statistics are not computed in it:
under autocast the gradients of fp32 parameters are fp32, squared norms are taken in
float32/float64 (:func:`~._plumbing.sq_norms`, which upcasts half-precision
gradients) and averaged over batches in float64 on the host.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._device import autocast, check_precision
from ._estimators import grad_sq_norm_estimate, trace_cov_estimate
from ._plumbing import (
    ParameterGroups,
    batch_size_of,
    check_micro_batch_size,
    split_batch,
    sq_norms,
    trainable_parameters,
)
from ._results import NoiseScaleRecord, NoiseScaleResult, make_record, make_result
from ._statistics import NoiseScaleStatistics

LossFn = Callable[[nn.Module, Any], Tensor]


def _scalar_loss(loss: Any) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (mean) loss tensor, got {shape}")
    if not loss.requires_grad:
        raise ValueError(
            "loss_fn returned a loss that does not depend on the model's trainable parameters "
            "(it does not require grad; was it computed under torch.no_grad()?)"
        )
    return loss.reshape(())


def _gradients(loss: Tensor, params: Sequence[Tensor], **kwargs: Any) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, **kwargs)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _under_autocast(loss_fn: LossFn, precision: str, device: torch.device) -> LossFn:
    """``loss_fn`` with its forward pass under ``precision``'s autocast on ``device``."""

    def wrapped(model: nn.Module, batch: Any) -> Tensor:
        with autocast(precision, device):
            return loss_fn(model, batch)

    return wrapped


def _batch_norms(
    model: nn.Module,
    loss_fn: LossFn,
    groups: ParameterGroups,
    batch: Any,
    micro_batch_size: int,
    *,
    keep: bool,
) -> tuple[Tensor, Tensor, list[list[Tensor]]]:
    """Per-parameter |G_small|² (mean over micro-batches) and |G_big|², shape (P,) each."""
    parts = split_batch(batch, micro_batch_size)
    small: Tensor | None = None
    total: list[Tensor] | None = None
    kept: list[list[Tensor]] = []
    for part in parts:
        grads = _gradients(_scalar_loss(loss_fn(model, part)), groups.params)
        squares = sq_norms(grads)
        small = squares if small is None else small + squares
        if total is None:
            total = [g.clone() for g in grads] if keep else grads
        else:
            torch._foreach_add_(total, grads)
        if keep:
            kept.append(grads)
    assert small is not None and total is not None
    k = len(parts)
    # Equal micro-batches: the big-batch gradient is the mean of theirs.
    big = sq_norms(torch._foreach_div(total, float(k)))
    return small / k, big, kept


def _hessian_forms(
    model: nn.Module, loss_fn: LossFn, params: Sequence[Tensor], batch: Any, vectors: list
) -> tuple[float, float]:
    """With H this batch's Hessian: mean_j v_jᵀ H v_j and v̄ᵀ H v̄ (v̄ = mean_j v_j).

    One double-backward graph, one Hessian-vector product per vector: d(∇L·v)/dθ = Hv.
    """
    loss = _scalar_loss(loss_fn(model, batch))
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not live:  # the loss is linear in the parameters: H = 0
        return 0.0, 0.0
    k = len(vectors)
    mean = [sum(v[i] for v in vectors) / k for i in live]
    small = big = 0.0
    for j, v in enumerate(vectors):
        hv = torch.autograd.grad(
            [grads[i] for i in live],
            params,
            grad_outputs=[v[i] for i in live],
            retain_graph=j < k - 1,
            allow_unused=True,
        )
        for position, i in enumerate(live):
            if hv[i] is None:
                continue
            h = hv[i].detach().reshape(-1).double()
            small += float(torch.dot(v[i].detach().reshape(-1).double(), h))
            big += float(torch.dot(mean[position].detach().reshape(-1).double(), h))
    return small / k, big / k


def _snapshot(model: nn.Module) -> tuple[list[tuple[nn.Module, bool]], dict[str, Tensor]]:
    modes = [(module, module.training) for module in model.modules()]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    return modes, buffers


def _restore(model: nn.Module, modes: list, buffers: dict[str, Tensor]) -> None:
    for module, training in modes:
        module.training = training
    with torch.no_grad():
        for name, saved in buffers.items():
            current = model.get_buffer(name)
            if current is not None and current.shape == saved.shape:
                current.copy_(saved)


def measure_noise_scale(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    micro_batch_size: int | None = None,
    *,
    b_noise: bool = False,
    confidence: float = 0.95,
    precision: str = "fp32",
) -> NoiseScaleResult:
    """The gradient noise scale B_simple of ``model`` at its current parameters.

    Each batch is cut into equal micro-batches (the small batch, B_small examples);
    the batch itself is the big batch (B_big). Per batch, the mean of the micro-batch
    gradients' squared norms and the squared norm of their mean give one unbiased
    estimate of |G|² and of tr(Σ); these are averaged over batches and B_simple =
    tr(Σ)/|G|² is their ratio, with Fieller's interval (see
    :func:`~batchlab.noise.fieller_interval`). Batches are independent draws at fixed
    parameters, so the interval's independence assumption holds exactly.

    No optimizer step is taken and the model is left as it was found: parameters and
    any existing ``.grad`` are untouched (gradients come from ``torch.autograd.grad``),
    every module's train/eval flag is restored, and buffers (e.g. BatchNorm running
    statistics) are restored. The model is measured in the mode it is in (dropout
    active in train mode, as in training). Nothing here draws random numbers.

    With ``b_noise=True`` it also estimates the Hessian-weighted noise scale
    B_noise = tr(HΣ)/(GᵀHG) (McCandlish et al. eq. 2.8) with Hessian-vector products
    (double backward). E[g_Bᵀ H g_B] = GᵀHG + tr(HΣ)/B for a fixed H, so the same
    two-batch-size estimators apply to H-weighted squared norms — provided H is
    independent of the gradients: batches are paired (0, 1), (2, 3), ... and each
    batch's micro-batch gradients are weighted by its partner's full-batch Hessian.
    A pair's two estimates are averaged, so pairs are the independent units of the
    interval (an odd last batch is not used for B_noise). Costs one HVP per
    micro-batch and keeps the micro-batch gradients of two batches in memory.

    The model is measured on the device its parameters are on (put the batches there
    too). ``precision="bf16"`` runs the forward passes under ``torch.autocast``; the
    gradients of fp32 parameters are fp32 all the same, and squared norms and their
    averages are float32/float64 whatever the precision, so only the gradients
    themselves carry bf16's rounding.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A (estimators), eqs. 2.8-2.9,
        https://arxiv.org/abs/1812.06162.

    Args:
        model: any ``nn.Module``; only parameters with ``requires_grad`` are measured.
        loss_fn: ``loss_fn(model, batch)`` -> scalar mean loss over the batch.
        batches: iterable of batches; a batch is a tensor or a tuple of tensors whose
            first dimension indexes examples. One (small, big) pair per batch; use at
            least ~20 batches for a trustworthy interval.
        micro_batch_size: examples per micro-batch; must divide every batch and leave
            at least two micro-batches. Default: each batch in 4 equal parts.
        b_noise: also estimate B_noise (needs at least two batches).
        confidence: coverage of the intervals.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``: the numerics of the forward
            passes (:func:`batchlab._device.autocast`, on the parameters' device).

    Returns:
        A :class:`~batchlab.noise.NoiseScaleResult` (``b_simple``, ``b_simple_ci``,
        ``grad_sq_norm``, ``trace_cov``, ``n``, ``per_module``, ``history``, and
        ``b_noise``/``b_noise_ci`` when asked for).

    Raises:
        ValueError: no trainable parameters, a micro-batch size that does not divide a
            batch or leaves fewer than two micro-batches, no batches, a loss that is
            not a scalar depending on the parameters, or an unknown ``precision``.
    """
    groups = trainable_parameters(model, where="measure_noise_scale")
    if check_precision(precision) != "fp32":
        loss_fn = _under_autocast(loss_fn, precision, groups.params[0].device)
    total = NoiseScaleStatistics(confidence=confidence)
    modules = NoiseScaleStatistics(confidence=confidence, shape=(groups.num_groups,))
    noise_stats = NoiseScaleStatistics(confidence=confidence) if b_noise else None
    history: list[NoiseScaleRecord] = []
    skipped = seen = 0
    partner: tuple[Any, list[list[Tensor]], int, int] | None = None
    modes, buffers = _snapshot(model)
    try:
        with torch.enable_grad():
            for index, batch in enumerate(batches):
                seen += 1
                where = f"batch {index}"
                size = batch_size_of(batch, where=where)
                micro = check_micro_batch_size(micro_batch_size, size, where=where)
                small, big, kept = _batch_norms(model, loss_fn, groups, batch, micro, keep=b_noise)
                values = groups.sum_by_group(torch.stack([small, big]))
                small_np, big_np = values.detach().double().cpu().numpy()
                if not (np.all(np.isfinite(small_np)) and np.all(np.isfinite(big_np))):
                    skipped += 1
                    warnings.warn(
                        f"measure_noise_scale: {where} has a NaN/inf gradient; skipped",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                small_total, big_total = float(small_np[0]), float(big_np[0])
                total.update(small_total, big_total, micro, size)
                modules.update(small_np[1:], big_np[1:], micro, size)
                history.append(
                    make_record(index, total.estimate(), small_total, big_total, micro, size)
                )
                if noise_stats is None:
                    continue
                if partner is None:
                    partner = (batch, kept, micro, size)
                    continue
                _update_b_noise(
                    noise_stats, model, loss_fn, groups, partner, (batch, kept, micro, size)
                )
                partner = None
    finally:
        _restore(model, modes, buffers)
    if not seen:
        raise ValueError(
            "batches is empty: need at least one batch (20 or more for a good interval)"
        )
    if noise_stats is not None and not noise_stats.n:
        raise ValueError(
            f"b_noise=True needs at least two batches with finite gradients (one pair: the "
            f"gradients of one batch are weighted by the other's Hessian), got {seen - skipped}"
        )
    return make_result(
        total, modules, groups.group_names, history, skipped=skipped, b_noise_stats=noise_stats
    )


def _update_b_noise(
    noise_stats: NoiseScaleStatistics,
    model: nn.Module,
    loss_fn: LossFn,
    groups: ParameterGroups,
    first: tuple[Any, list[list[Tensor]], int, int],
    second: tuple[Any, list[list[Tensor]], int, int],
) -> None:
    """One pair's GᵀHG and tr(HΣ) estimates: each batch's gradients, the other's Hessian."""
    estimates = []
    for (_, kept, micro, size), (hessian_batch, *_) in ((first, second), (second, first)):
        small_h, big_h = _hessian_forms(model, loss_fn, groups.params, hessian_batch, kept)
        estimates.append(
            (
                grad_sq_norm_estimate(small_h, big_h, micro, size),
                trace_cov_estimate(small_h, big_h, micro, size),
            )
        )
    curvature = 0.5 * (estimates[0][0] + estimates[1][0])
    trace_h_cov = 0.5 * (estimates[0][1] + estimates[1][1])
    if math.isfinite(curvature) and math.isfinite(trace_h_cov):
        noise_stats.update_estimates(curvature, trace_h_cov)
