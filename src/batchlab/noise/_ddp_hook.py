"""The gradient noise scale under DistributedDataParallel, from a communication hook.

Under DDP each rank's gradient is a small batch and the all-reduced average of them
is the big batch: the two batch sizes of McCandlish et al. (2018, Appendix A) come
for free, and no gradient has to be sent twice. The hook here does DDP's usual
all-reduce (the same averaged gradient as plain DDP) and, on the side, takes the
squared norm of each bucket's gradient before the all-reduce (the rank's own small
batch) and after it (the big batch). Only the small-batch norms cross ranks, one
float per bucket (per parameter tensor with ``per_module=True``) plus one for the
batch size, appended to the last bucket's all-reduce (no extra collective) when
that bucket is float32 or float64.

Plumbing only: the statistics are :class:`~batchlab.noise.NoiseScaleStatistics`.
FSDP (sharded gradients) is refused with a clear error, see
:func:`batchlab.noise.check_not_sharded`; FSDP2 models have their own hook,
:func:`batchlab.noise.register_fsdp_noise_scale_hook` (:mod:`._fsdp`).

The bucket-level pieces (layouts, one backward's norms, their reduction to one step)
are in :mod:`._ddp_buckets`; the running statistics it feeds in :mod:`._running`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from ._ddp_buckets import FUSABLE, BucketLayout, Iteration, bucket_sq_norms
from ._plumbing import (
    check_micro_batch_size,
    check_not_sharded,
    group_assignment,
    group_by_module,
    leading_size,
)
from ._results import NoiseScaleResult
from ._running import RunningNoiseScale, Step


class NoiseScaleHook(RunningNoiseScale):
    """B_simple during DDP training: per-rank gradients are the small batch, free.

    Create it with :func:`register_noise_scale_hook` (which documents the use); this
    class holds the statistics and exposes the same results as
    :class:`~batchlab.noise.NoiseScaleTracker`: :attr:`b_simple`,
    :attr:`b_simple_ci`, :attr:`grad_sq_norm`, :attr:`trace_cov`, :attr:`history`,
    :attr:`per_module` and :meth:`result`. Every rank holds identical statistics.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162 (per-rank gradients
        of data-parallel training as the small batch).
    """

    _skip_reason = "a NaN/inf gradient or batch size"

    def __init__(
        self,
        model: DistributedDataParallel,
        *,
        local_batch_size: int | None = None,
        per_module: bool = False,
        ema_decay: float | None = None,
        confidence: float = 0.95,
    ) -> None:
        where = "register_noise_scale_hook"
        if isinstance(model, nn.Module):
            check_not_sharded(model, where=where)
        if not isinstance(model, DistributedDataParallel):
            raise TypeError(
                f"{where}: model must be a torch.nn.parallel.DistributedDataParallel, got "
                f"{type(model).__name__}; in one process, use batchlab.NoiseScaleTracker "
                "with gradient accumulation instead"
            )
        process_group = model.process_group
        world_size = dist.get_world_size(process_group)
        if world_size < 2:
            raise ValueError(
                f"{where}: the DDP process group has world_size={world_size}; the noise scale "
                "needs two batch sizes, and with one rank the local and the all-reduced "
                "gradient are the same batch. Run on >= 2 ranks, or use "
                "batchlab.NoiseScaleTracker with gradient accumulation in one process"
            )
        if not isinstance(per_module, bool):
            raise TypeError(f"{where}: per_module must be True or False, got {per_module!r}")
        self.local_batch_size = local_batch_size  # validated by the setter
        self._by_module = per_module
        self.world_size = world_size
        self._process_group = process_group
        # The parameters DDP all-reduces, grouped by owning module as in NoiseScaleTracker.
        ignored = set(getattr(model, "parameters_to_ignore", ()))
        named = [
            (name, p)
            for name, p in model.module.named_parameters()
            if p.requires_grad and name not in ignored
        ]
        self._position = {id(p): i for i, (_, p) in enumerate(named)}
        group_names, group_of = group_by_module([name for name, _ in named])
        super().__init__(
            group_names if per_module else (), ema_decay=ema_decay, confidence=confidence
        )
        self._assign = group_assignment(group_of, len(group_names)) if per_module else None
        self._layouts: dict[int, BucketLayout] = {}
        self._inv_sizes: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}
        self._iteration: Iteration | None = None
        self._done: list[Iteration] = []
        self._forward_examples = 0
        self._active = True
        model.register_comm_hook(process_group, self._hook)
        self._handle = model.register_forward_pre_hook(self._on_forward, with_kwargs=True)

    # ----- configuration ---------------------------------------------------------------

    @property
    def local_batch_size(self) -> int | None:
        """Examples this rank contributes per optimizer step (``None``: counted).

        With gradient accumulation under ``no_sync()`` this is all k micro-batches
        together. ``None`` counts the first dimension of the first tensor argument of
        every forward of the DDP model with grad enabled since the last synchronised
        backward. Set it before a step's backward to change it (e.g. a short last
        batch); ranks may differ (see :func:`register_noise_scale_hook`).
        """
        return self._local_batch_size

    @local_batch_size.setter
    def local_batch_size(self, value: int | None) -> None:
        self._local_batch_size = check_micro_batch_size(value, name="local_batch_size")

    # ----- plumbing: hooks (run inside backward) ---------------------------------------

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.is_grad_enabled():
            self._forward_examples += leading_size(args, kwargs) or 0

    def _layout(self, bucket: dist.GradBucket) -> BucketLayout:
        params = bucket.parameters()
        ids = tuple(map(id, params))
        layout = self._layouts.get(bucket.index())
        # DDP rebuilds its buckets after the first iteration: check, don't assume.
        if layout is None or layout.ids != ids:
            layout = self._layouts[bucket.index()] = BucketLayout(
                ids=ids,
                positions=np.array([self._position[i] for i in ids], dtype=np.int64),
                numels=[p.numel() for p in params],
            )
        return layout

    def _batch_size(self, iteration: Iteration) -> float:
        size = self._local_batch_size or self._forward_examples
        self._forward_examples = 0
        if size <= 0:
            iteration.size_error = (
                "could not tell this rank's examples per step: no forward of the DDP model "
                "with a tensor argument (first dimension = examples) since the last step; "
                "pass local_batch_size= to register_noise_scale_hook"
            )
            return math.nan  # every rank sees NaN after the all-reduce and skips the step
        return float(size)

    def _inverse_size(self, size: float, dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (size, dtype, device)
        tensor = self._inv_sizes.get(key)
        if tensor is None:
            if len(self._inv_sizes) > 64:
                self._inv_sizes.clear()
            tensor = self._inv_sizes[key] = torch.tensor([1.0 / size], dtype=dtype, device=device)
        return tensor

    # The hook's ``bucket`` and return value are left unannotated on purpose: DDP compares
    # the annotations with dist.GradBucket and Future[Tensor] at registration, and with
    # postponed evaluation of annotations they would be strings and refused.
    def _hook(self, process_group, bucket):  # noqa: ANN001, ANN202
        """DDP's all-reduce of one bucket, plus the bucket's small- and big-batch norms."""
        if not self._active:
            return allreduce_hook(process_group, bucket)
        iteration = self._iteration
        if iteration is None:
            iteration = self._iteration = Iteration()
        index, buffer = bucket.index(), bucket.buffer()
        layout = None
        if self._by_module:
            layout = iteration.layouts[index] = self._layout(bucket)
        # The rank's own (accumulated) gradient, before the all-reduce overwrites it.
        iteration.local[index] = bucket_sq_norms(buffer, layout)

        def big_norms(fut: torch.futures.Future) -> Tensor:
            averaged = fut.value()
            iteration.big[index] = bucket_sq_norms(averaged, layout)
            return averaged

        if not bucket.is_last():
            return allreduce_hook(process_group, bucket).then(big_norms)

        # The last bucket of this backward: all ranks' small-batch norms cross in one go.
        self._iteration = None
        self._done.append(iteration)
        locals_ = [iteration.local[i] for i in sorted(iteration.local)]
        size = self._batch_size(iteration)
        if buffer.dtype in FUSABLE:
            extra = [t if t.dtype == buffer.dtype else t.to(buffer.dtype) for t in locals_]
            extra.append(self._inverse_size(size, buffer.dtype, buffer.device))
            # Divide before summing, as DDP does: the sum of ranks is then their mean.
            flat = torch.cat([buffer, *extra]).div_(self.world_size)
            count = buffer.numel()

            def unpack(fut: torch.futures.Future) -> Tensor:
                reduced = fut.value()[0]
                # DDP copies a hook's result into the gradients when it is not the bucket
                # itself, taking each gradient at its bucket offset from the start of the
                # result's storage: so the gradients come first in ``flat``, norms after.
                averaged = reduced[:count]
                iteration.reduced = reduced[count:].clone()  # not a view: frees ``flat``
                iteration.big[index] = bucket_sq_norms(averaged, layout)
                return averaged

            work = dist.all_reduce(flat, group=process_group, async_op=True)
            return work.get_future().then(unpack)
        # Half precision: the norms take a separate (asynchronous) float64 all-reduce.
        scalars = torch.cat(
            [t.to(torch.float64) for t in locals_]
            + [self._inverse_size(size, torch.float64, buffer.device)]
        ).div_(self.world_size)
        future = allreduce_hook(process_group, bucket).then(big_norms)
        iteration.work = dist.all_reduce(scalars, group=process_group, async_op=True)
        iteration.reduced = scalars
        return future

    # ----- the training loop's one call ------------------------------------------------

    def step(self) -> None:
        """Close one optimizer step: its synchronised backward gives one (small, big) pair.

        Call once per optimizer step, after the backward pass that synchronises
        gradients (the one outside ``no_sync()``), on every rank.

        Raises:
            ValueError: no synchronised backward since the last step, more than one
                (gradient accumulation without ``no_sync()``: DDP then all-reduces
                after every micro-batch and the local gradient is no longer one
                rank's own batch), or examples per step that cannot be told.
        """
        index = self._start_step()
        done, self._done = self._done, []
        if not done:
            raise ValueError(
                "NoiseScaleHook.step(): no synchronised backward pass since the last step; "
                "call step() once per optimizer step, after the backward outside "
                "model.no_sync() (backward passes under no_sync() are not all-reduced)"
            )
        if len(done) > 1:
            raise ValueError(
                f"NoiseScaleHook.step(): {len(done)} synchronised backward passes since the "
                "last step; with gradient accumulation, run all micro-batches but the last "
                "(forward and backward) under model.no_sync(): otherwise DDP all-reduces "
                "each one and a rank's gradient is no longer its own batch (these steps are "
                "not counted)"
            )
        if done[0].size_error is not None:
            raise ValueError(f"NoiseScaleHook.step(): {done[0].size_error}")
        self._queue((index, done[0]))

    def _to_host(self, pending: list[Any]) -> list[Step]:
        """The pending steps' norms in one device-to-host copy, summed per module."""
        parts = [iteration.host_parts() for _, iteration in pending]
        flat = torch.cat([t for part in parts for t in part]).cpu().numpy()
        steps: list[Step] = []
        offset = 0
        for (index, iteration), part in zip(pending, parts, strict=True):
            size = sum(t.numel() for t in part)
            view = flat[offset : offset + size]
            steps.append(iteration.step(index, view, self._assign, self.world_size))
            offset += size
        return steps

    # ----- results -----------------------------------------------------------------------

    def result(self) -> NoiseScaleResult:
        """Everything so far as a frozen :class:`~batchlab.noise.NoiseScaleResult`.

        ``micro_batch_size`` is B_small (examples per rank and step; the harmonic mean
        over ranks if they differ) and ``batch_size`` is B_big = world size x B_small.
        ``per_module`` is empty unless the hook was registered with ``per_module=True``.
        """
        return super().result()

    def remove(self) -> None:
        """Stop measuring; the statistics gathered so far stay readable.

        DDP cannot unregister a communication hook, so the hook stays and does DDP's
        plain all-reduce from now on (no norms); the forward pre-hook is removed.
        """
        self._active = False
        self._handle.remove()
        self._flush()


def register_noise_scale_hook(
    model: DistributedDataParallel,
    *,
    local_batch_size: int | None = None,
    per_module: bool = False,
    ema_decay: float | None = None,
    confidence: float = 0.95,
) -> NoiseScaleHook:
    """Measure B_simple during DDP training, with no extra gradient communication.

    Registers a DDP communication hook that does DDP's default all-reduce (the model
    trains exactly as under plain DDP: the same averaged gradients) and takes two
    squared gradient norms per step: each rank's own gradient before the all-reduce
    (B_small = that rank's examples) and the all-reduced average after it (B_big =
    world size x B_small). |G_small|² is the mean over ranks of their own squared
    norms, which needs one float per bucket (per parameter tensor with
    ``per_module=True``) to cross ranks: they ride along in the last bucket's all-reduce (float32/float64 buckets; a half-precision
    bucket sends them in one extra tiny float64 all-reduce). |G_big|² is computed on
    every rank from the averaged gradient it already has, so every rank ends up with
    the same statistics. Then, per step, :class:`~batchlab.noise.NoiseScaleStatistics`
    forms the unbiased |G|² and tr(Σ) estimates and averages them; B_simple is the
    ratio of the averages.

    Use::

        model = DistributedDataParallel(net)
        gns = register_noise_scale_hook(model, local_batch_size=32)
        for x, y in loader:                       # 32 examples per rank
            loss_fn(model(x), y).backward()
            optimizer.step()
            gns.step()                            # once per optimizer step
            optimizer.zero_grad()
        gns.b_simple, gns.b_simple_ci, gns.result()

    Gradient accumulation: run all micro-batches but the last, forward and backward,
    under ``model.no_sync()`` (DDP's idiom; DDP decides at the forward); the hook sees the rank's gradient accumulated
    over its k micro-batches, so ``local_batch_size`` is all of them (k x micro-batch
    size), or leave it ``None`` to count the examples of the forwards. Accumulating
    *without* ``no_sync()`` all-reduces every micro-batch, and :meth:`NoiseScaleHook.step`
    raises. As for :class:`~batchlab.noise.NoiseScaleTracker`, each rank's gradient is
    taken to be its mean gradient (``loss / k`` per micro-batch); a common factor
    does not change B_simple.

    Ranks with different batch sizes b_r: DDP averages the ranks' mean gradients with
    equal weights, so E mean_r|g_r|² = |G|² + tr(Σ)·mean_r(1/b_r) and
    E|mean_r g_r|² = |G|² + tr(Σ)·mean_r(1/b_r)/W; the estimators stay unbiased with
    B_small the harmonic mean of the b_r and B_big = W·B_small, which is what is used.

    Not covered: loss scaling (norms are in the units of the scaled gradients; a
    changing scale weights steps unequally), other communication hooks (DDP takes
    one hook; this one replaces e.g. fp16 compression), sparse gradients,
    ``parameters_to_ignore`` (not measured), and FSDP (for FSDP2, ``fully_shard``,
    use :func:`~batchlab.noise.register_fsdp_noise_scale_hook`).

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162: the two-batch-size
        estimators, and that the per-device gradients of data-parallel training give
        the small batch at no cost.

    Args:
        model: a ``DistributedDataParallel`` model with no communication hook yet
            (register before the first backward, on every rank).
        local_batch_size: examples this rank contributes per optimizer step, or
            ``None`` to count them from the DDP model's forwards with grad enabled.
        per_module: also estimate each module's own noise scale (``result().per_module``,
            as :class:`~batchlab.noise.NoiseScaleTracker` does). It takes one norm per
            parameter tensor instead of one per bucket, twice a step: a fused kernel on
            a GPU, but a few microseconds per tensor on a CPU, hence off by default.
        ema_decay: ``None`` for a plain average over all steps, or β in [0, 1) for an
            exponential moving average.
        confidence: coverage of the intervals.

    Returns:
        The :class:`NoiseScaleHook`; call its ``step()`` once per optimizer step.

    Raises:
        ShardedModelError: (a ``TypeError`` and ``BatchlabError``) for FSDP or DTensor
            models, whose gradients are sharded.
        TypeError: ``model`` is not ``DistributedDataParallel``.
        ValueError: a world size of 1, or a bad ``local_batch_size``.
    """
    return NoiseScaleHook(
        model,
        local_batch_size=local_batch_size,
        per_module=per_module,
        ema_decay=ema_decay,
        confidence=confidence,
    )
