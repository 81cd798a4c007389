"""``BatchSizeScheduleCallback``: grow Lightning's gradient accumulation with the noise scale.

A :class:`~batchlab.integrations.lightning.NoiseScaleCallback` that also drives a
:class:`~batchlab.BatchSizeSchedule`: as the tracked B_simple grows, the trainer's
``accumulate_grad_batches`` grows (never shrinks) so that the effective batch stays
near ``fraction`` · B_simple, and the learning rate follows ``lr_rule``::

    from batchlab.integrations.lightning_schedule import BatchSizeScheduleCallback

    schedule = BatchSizeScheduleCallback(fraction=0.5, max_batch_size=1024, lr_rule="sqrt")
    trainer = pl.Trainer(accumulate_grad_batches=2, callbacks=[schedule])
    trainer.fit(model, DataLoader(data, batch_size=32, shuffle=True, drop_last=True))
    schedule.schedule.history           # when the batch grew, and why

**When a change is safe.** Lightning zeroes the gradients at the batch indices (within
the epoch) that are multiples of ``accumulate_grad_batches`` and steps when the count
of batches is; a new value that the next batch index is not a multiple of would add
the last window's gradients into the next step. So a change is applied at the first
later window boundary aligned with it (at once for half the windows when the
accumulation doubles, always at an epoch start), and the learning rate is rescaled at
that same moment, so LR and batch size never disagree for a step. The delay is a few
windows at most (at most one epoch).

**Resuming.** The callback's state (the schedule's, the tracker's running statistics,
the accumulation in effect, the moved LRs) is saved in every Lightning checkpoint and
restored by ``trainer.fit(module, ckpt_path="last")`` (with a ``ModelCheckpoint``):
the resumed run goes on with the same accumulation, LR and decisions as if it had not
stopped. Build its ``Trainer`` with the same starting ``accumulate_grad_batches`` and
the same dataloader ``batch_size``; checkpoint at optimizer steps or epoch ends.

References:
    McCandlish et al. 2018, arXiv:1812.06162, Sec. 4; Merrill et al. 2025,
    arXiv:2505.23971, Sec. 6 (batch size warmup).
"""

from __future__ import annotations

from typing import Any

from ..training import BatchSizeSchedule, Growth, rescale_learning_rates
from ._accumulation import AccumulationCallback
from ._callbacks import NoTracker
from .lightning import pl

__all__ = ["BatchSizeScheduleCallback"]


class BatchSizeScheduleCallback(AccumulationCallback):
    """Measures B_simple and grows ``accumulate_grad_batches`` with it during ``fit``.

    The dataloader's batch is the micro-batch; the trainer's ``accumulate_grad_batches``
    at fit start (>= 2, as :class:`NoiseScaleCallback` requires) is the base
    accumulation. See the module docstring for when a change is applied. Logs
    ``{prefix}batch_size`` besides the noise-scale metrics. Automatic optimization
    only; one optimizer, one process.

    Resumes from a Lightning checkpoint (``trainer.fit(module, ckpt_path=...)``):
    :meth:`state_dict` holds the schedule's state, the tracker's, the accumulation in
    effect and the optimizer's moved LRs; on restore the accumulation is set back, a
    change pending at the checkpoint is applied where the uninterrupted run would have,
    and the LRs come back with the optimizer's and LR scheduler's own state (checked).
    A ``ValueError`` names what cannot be resumed exactly: a checkpoint saved inside an
    accumulation window, another starting ``accumulate_grad_batches`` or micro-batch
    size, an optimizer whose LRs did not come back as saved.

    Args:
        fraction: target effective batch as a fraction of B_simple.
        max_batch_size: cap on the effective batch size (``None``: none).
        growth: ``"pow2"`` (double the accumulation) or ``"multiple"``.
        lr_rule: ``"linear"``, ``"sqrt"`` or ``"none"``: LR = LR₀ · scale_lr(1, B₀, B).
        update_every: optimizer steps between decisions.
        min_steps: measured steps before the first change.
        max_lr_factor: cap on the LR multiplier (see :class:`~batchlab.BatchSizeSchedule`).
        micro_batch_size: examples per batch (default: read from the first batch).
        ema_decay: the tracker's EMA (default 0.95: B_simple moves during training).
        confidence, prefix: as for :class:`NoiseScaleCallback`.
    """

    def __init__(
        self,
        *,
        fraction: float = 0.5,
        max_batch_size: int | None = None,
        growth: Growth = "pow2",
        lr_rule: str = "sqrt",
        update_every: int = 10,
        min_steps: int = 20,
        max_lr_factor: float | None = None,
        micro_batch_size: int | None = None,
        ema_decay: float | None = 0.95,
        confidence: float = 0.95,
        prefix: str = "noise_scale/",
    ) -> None:
        super().__init__(
            micro_batch_size=micro_batch_size,
            ema_decay=ema_decay,
            confidence=confidence,
            prefix=prefix,
        )
        self.options: dict[str, Any] = {
            "fraction": fraction,
            "max_batch_size": max_batch_size,
            "growth": growth,
            "lr_rule": lr_rule,
            "update_every": update_every,
            "min_steps": min_steps,
            "max_lr_factor": max_lr_factor,
        }
        # Validate now, not at fit start: a schedule on a stand-in tracker.
        BatchSizeSchedule(NoTracker(), micro_batch_size=1, base_accumulation=2,
                          **{**self.options, "max_batch_size": None})  # fmt: skip

    @property
    def schedule(self) -> BatchSizeSchedule | None:
        """The schedule of the current (or last) ``fit``; ``None`` before its first batch."""
        grower = self._grower
        return grower if isinstance(grower, BatchSizeSchedule) else None

    def _build(
        self, trainer: pl.Trainer, *, micro_batch_size: int, base_accumulation: int
    ) -> BatchSizeSchedule:
        assert self.tracker is not None
        return BatchSizeSchedule(
            self.tracker,
            micro_batch_size=micro_batch_size,
            base_accumulation=base_accumulation,
            # The callback rescales the LR itself, when it applies a change.
            optimizer=None,
            **self.options,
        )

    def _move(self, trainer: pl.Trainer, from_batch_size: int, to_batch_size: int) -> None:
        schedule = self.schedule
        assert schedule is not None
        ratio = schedule.lr_factor_at(to_batch_size) / schedule.lr_factor_at(from_batch_size)
        rescale_learning_rates(trainer.optimizers[0], self._lr_scheduler, ratio)
