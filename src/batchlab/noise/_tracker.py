"""``NoiseScaleTracker``: the gradient noise scale of a model while it trains.

Plumbing only: parameter hooks collect squared norms during backward, and
:class:`~batchlab.noise.NoiseScaleStatistics` does the statistics.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd import Variable

from .._checks import check_positive_int
from ._plumbing import (
    check_micro_batch_size,
    leading_size,
    sq_norm,
    trainable_parameters,
)
from ._running import HookedNoiseScale, Step

logger = logging.getLogger(__name__)


class LossScaler(Protocol):
    """What the tracker needs from a loss scaler (``torch.amp.GradScaler`` has it)."""

    def get_scale(self) -> float: ...


class NoiseScaleTracker(HookedNoiseScale):
    """Measures B_simple during training from the micro-batches of gradient accumulation.

    Attach it to any model; the training loop stays as it is, plus one
    ``tracker.step()`` per optimizer step::

        tracker = NoiseScaleTracker(model)
        for batch in loader:
            for micro in batch.split(micro_batch_size):
                (loss_fn(model, micro) / k).backward()   # the usual accumulation idiom
            clip_grad_norm_(model.parameters(), 1.0)   # optional: measured before it
            optimizer.step()
            tracker.step()
            optimizer.zero_grad()
        tracker.b_simple, tracker.b_simple_ci

    How it measures: a hook on every trainable parameter sees each backward's
    gradient before it is accumulated into ``.grad`` and records its squared norm; one
    backward = one micro-batch (the small batch). When a backward ends (an autograd
    engine callback), the squared norm of the accumulated ``.grad`` is recorded, so
    the big-batch gradient is the one of the last backward before ``step()`` — before
    any clipping or unscaling. Gradients must be zeroed between optimizer steps
    (``zero_grad``), as gradient accumulation requires anyway.

    Scaling convention: ``.grad`` at ``step()`` is taken to be the big batch's mean
    gradient, i.e. each micro-batch loss was multiplied by (its examples / big batch),
    which for equal micro-batches is the usual ``loss / k``. B_simple does not depend
    on this (a common factor cancels in tr(Σ)/|G|²); the reported |G|² and tr(Σ) are
    in units of ``.grad``. With a loss scaler, norms are divided by the scale used in
    that step's backward passes.

    Examples per micro-batch come from a forward pre-hook on ``model`` (the first
    dimension of the first tensor argument of the last forward with grad enabled
    before each backward), or from ``micro_batch_size``. Steps with a NaN/inf gradient
    are skipped (a warning; an INFO log when a scaler is given, since dynamic loss
    scaling skips such steps by design) and never enter the averages.

    The norms stay on the model's device; they are copied to the host every 32 steps
    or when a statistic is read (on a GPU, reading ``b_simple`` every step costs a
    sync), which is also when a NaN/inf step is reported. The running statistics and
    the history's intervals are computed then too, off the training loop's path.

    Precision: the statistics never inherit the forward pass's. Under ``torch.autocast``
    (bf16) the gradients of fp32 parameters are fp32, and their norms are taken in
    fp32; gradients of half-precision parameters are cast to float32 before squaring
    (:func:`~._plumbing.sq_norm`) and their norms kept in float64; the averages over
    steps are float64, on the host.
    Parameters frozen when the tracker is created are not measured; call
    :meth:`remove` (or use ``with``) to detach the hooks.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        model: the model; it is not changed (only hooks are added).
        micro_batch_size: examples per micro-batch, overriding the forward pre-hook.
        scaler: a ``torch.amp.GradScaler`` (or any object with ``get_scale()``) whose
            scaled losses are backpropagated.
        ema_decay: ``None`` for a plain average over all steps so far, or β in [0, 1)
            for an exponential moving average (to follow B_simple as it grows).
        confidence: coverage of the intervals.
        measure_every: measure one optimizer step in every ``measure_every`` (steps 0,
            k, 2k, ...). Between them the parameter hooks are detached, so a left-out
            step's backward calls no hook at all, and ``step()`` only counts it. The
            overhead, a fixed cost per parameter tensor and backward, falls about
            k-fold; the estimates average k times fewer steps (over a given span of
            training their variance grows about k-fold), which tracks a noise scale
            that drifts over hundreds of steps (``benchmarks/gns_overhead.py
            --measure-every``).

    Raises:
        ValueError: a bad ``micro_batch_size`` or ``measure_every``; no trainable
            parameter.
        TypeError: a ``scaler`` without ``get_scale()``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        micro_batch_size: int | None = None,
        scaler: LossScaler | None = None,
        ema_decay: float | None = None,
        confidence: float = 0.95,
        measure_every: int = 1,
    ) -> None:
        self._groups = trainable_parameters(model, where="NoiseScaleTracker")
        check_micro_batch_size(micro_batch_size)
        self.measure_every = check_positive_int(measure_every, "measure_every")
        if scaler is not None and not callable(getattr(scaler, "get_scale", None)):
            raise TypeError(
                f"scaler must have a get_scale() method (torch.amp.GradScaler), "
                f"got {type(scaler).__name__}"
            )
        super().__init__(self._groups.group_names, ema_decay=ema_decay, confidence=confidence)
        self.micro_batch_size = micro_batch_size
        self.scaler = scaler
        params = self._groups.params
        # Fast path: one full-precision dtype on one device (fused norms, no casts).
        self._fast = len({p.device for p in params}) == 1 and (
            {p.dtype for p in params} in ({torch.float32}, {torch.float64})
        )
        self._device = params[0].device
        self._zero = torch.zeros(
            (), dtype=params[0].dtype if self._fast else torch.float64, device=self._device
        )
        self._paused = False
        self._reset_step()
        self._model = model
        self._hooks = [self._make_hook(i) for i in range(len(params))]
        self._start_hooks()

    # ----- plumbing: hooks -------------------------------------------------------------

    def _reset_step(self) -> None:
        self._current: list[Tensor | None] = []
        self._micro: list[tuple[int | None, Tensor]] = []
        self._big: Tensor | None = None
        self._scale: Tensor | float | None = None
        self._forward_size: int | None = None

    def _register_hooks(self) -> list[Any]:
        params = self._groups.params
        handles = [p.register_hook(h) for p, h in zip(params, self._hooks, strict=True)]
        if self.micro_batch_size is None:  # the micro-batch sizes, read off the forward
            handles.append(
                self._model.register_forward_pre_hook(self._on_forward, with_kwargs=True)
            )
        return handles

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.is_grad_enabled() and not self._paused:
            self._forward_size = leading_size(args, kwargs)

    def _norm(self, tensor: Tensor) -> Tensor:
        """|tensor| as a 0-d tensor on the tracker's device, without a host sync."""
        if self._fast and tensor.layout is torch.strided:
            return torch.linalg.vector_norm(tensor.detach())
        return sq_norm(tensor).to(device=self._device, dtype=self._zero.dtype).sqrt()

    def _make_hook(self, index: int):  # noqa: ANN202 - a closure over the parameter index
        # This runs once per parameter per backward: keep it lean (locals, no method
        # calls on the fast path). A shared zero marks "no gradient yet", and an empty
        # ``_current`` means "first hook of a new backward" (the callback empties it).
        zero, fast, vector_norm = self._zero, self._fast, torch.linalg.vector_norm
        strided, count = torch.strided, len(self._groups.params)
        queue_callback = Variable._execution_engine.queue_callback

        def hook(grad: Tensor) -> None:
            if self._paused:
                return
            current = self._current
            if not current:
                current = self._current = [zero] * count
                queue_callback(self._end_backward)
            if fast and grad.layout is strided and not grad.requires_grad:
                norm = vector_norm(grad)
            else:
                norm = self._norm(grad)
            previous = current[index]
            # A parameter's hook fires once per backward; twice only for exotic graphs.
            current[index] = norm if previous is zero else torch.hypot(previous, norm)

        return hook

    def _end_backward(self) -> None:
        """Engine callback after each backward: close the micro-batch, read ``.grad``."""
        current, self._current = self._current, []
        with torch.no_grad():
            small = torch.stack(current)
            grads = [p.grad for p in self._groups.params]
            # One fused call where it applies: one device and dtype (``_fast``) and every
            # gradient present and dense; otherwise one norm per parameter.
            if self._fast and all(g is not None and g.layout is torch.strided for g in grads):
                big = torch.stack(torch._foreach_norm(grads))  # type: ignore[arg-type]
            else:
                big = torch.stack([self._zero if g is None else self._norm(g) for g in grads])
        self._micro.append((self.micro_batch_size or self._forward_size, small))
        self._big = big
        if self.scaler is not None and self._scale is None:
            self._scale = self._read_scale()

    def _read_scale(self) -> Tensor | float:
        # GradScaler.get_scale() syncs with the device; its tensor (copied now: update()
        # changes it in place later) does not. Fall back to the public method.
        scale_async = getattr(self.scaler, "_get_scale_async", None)
        scale = scale_async() if callable(scale_async) else None
        if isinstance(scale, Tensor):
            return scale.detach().to(torch.float64).clone().reshape(())
        return float(self.scaler.get_scale())  # type: ignore[union-attr]

    # ----- the training loop's one call ------------------------------------------------

    def step(self) -> None:
        """Close one optimizer step: its micro-batches give one (small, big) pair.

        Call once per optimizer step, after the step's backward passes (before or after
        clipping, ``optimizer.step()`` and ``scaler.update()``; before ``zero_grad``).
        On a step that ``measure_every`` leaves out it only counts the step.

        Raises:
            ValueError: fewer than two micro-batches (backward passes) since the last
                step, or micro-batch sizes that cannot be told.
        """
        index = self._start_step()
        self._attach_hooks(self.measures_next_step)
        micro, big, scale = self._micro, self._big, self._scale
        self._reset_step()
        if index % self.measure_every:  # left out: no hook ran
            return
        sizes = [size for size, _ in micro]
        if len(micro) < 2 or big is None:
            raise ValueError(
                f"NoiseScaleTracker.step(): {len(micro)} micro-batch(es) (backward passes) of "
                f"{sizes or 'no'} examples since the last step; the noise scale needs at least "
                "two micro-batches per optimizer step (the small batch is one micro-batch, the "
                "big batch their sum): accumulate gradients over k >= 2 micro-batches"
            )
        if any(size is None or size <= 0 for size in sizes):
            raise ValueError(
                f"NoiseScaleTracker.step(): could not tell the examples per micro-batch "
                f"(got {sizes}); pass micro_batch_size= to NoiseScaleTracker"
            )
        counts = [float(size) for size in sizes]  # type: ignore[arg-type]
        k, b_big = len(counts), sum(counts)
        b_small = k / sum(1.0 / size for size in counts)  # harmonic mean
        # |G_small|² = mean_j |h_j · B/b_j|² undoes micro-batch j's b_j/B loss weight;
        # the weights are applied on the host (no host-to-device copy, no sync).
        weights = np.array([(b_big / size) ** 2 / k for size in counts])
        # Rows: each micro-batch's squared norms, then |.grad|² after the last backward;
        # columns: the whole model, then each module.
        rows = self._groups.sum_by_group(torch.stack([norm for _, norm in micro] + [big]).square())
        if scale is not None:
            rows = rows / scale**2
        self._queue((index, rows, weights, b_small, b_big))

    def _to_host(self, pending: list[Any]) -> list[Step]:
        """The pending steps' norms in one device-to-host copy; |G_small|² weighted here."""
        flat = torch.cat([rows.reshape(-1) for _, rows, *_ in pending])
        flat = flat.to(torch.float64).cpu().numpy()
        width = 1 + self._groups.num_groups
        steps: list[Step] = []
        offset = 0
        for index, rows, weights, b_small, b_big in pending:
            values = flat[offset : offset + rows.numel()].reshape(-1, width)
            offset += rows.numel()
            with np.errstate(invalid="ignore", over="ignore"):  # a NaN/inf step is skipped
                steps.append((index, weights @ values[:-1], values[-1], b_small, b_big))
        return steps

    def _report_skip(self, index: int) -> None:
        if self.scaler is None:
            super()._report_skip(index)
        else:  # dynamic loss scaling skips such steps by design: no warning
            logger.info(
                "NoiseScaleTracker: step %d has a NaN/inf gradient; skipped (the loss scaler "
                "skips it too)",
                index,
            )
