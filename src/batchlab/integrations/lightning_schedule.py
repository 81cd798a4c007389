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

**When a change is safe.** Lightning zeroes the gradients at the first batch of a
window (batch index within the epoch ``% accumulate_grad_batches == 0``) and steps
when the count of batches ``% accumulate_grad_batches == 0`` or the epoch ends. A new
``accumulate_grad_batches`` that the next batch index is not a multiple of would
leave the last window's gradients in ``.grad`` (added into the next step) or step
after a partial window. So a change decided after one optimizer step is applied at
the first later window boundary whose batch index is a multiple of the new value —
at once for half the windows when the accumulation doubles, and always at an epoch
start — and the learning rate is rescaled at that same moment, so LR and batch size
never disagree for a step. The delay is a few windows at most (at most one epoch).

References:
    McCandlish et al. 2018, arXiv:1812.06162, Sec. 4; Merrill et al. 2025,
    arXiv:2505.23971, Sec. 6 (batch size warmup).
"""

from __future__ import annotations

import logging
from typing import Any

from ..training import BatchSizeSchedule, Growth, rescale_learning_rates
from .lightning import NoiseScaleCallback, _examples, pl

__all__ = ["BatchSizeScheduleCallback"]

logger = logging.getLogger(__name__)


class BatchSizeScheduleCallback(NoiseScaleCallback):
    """Measures B_simple and grows ``accumulate_grad_batches`` with it during ``fit``.

    The dataloader's batch is the micro-batch; the trainer's ``accumulate_grad_batches``
    at fit start (>= 2, as :class:`NoiseScaleCallback` requires) is the base
    accumulation. See the module docstring for when a change is applied. Logs
    ``{prefix}batch_size`` besides the noise-scale metrics. Automatic optimization
    only; one optimizer, one process.

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
        BatchSizeSchedule(_NoTracker(), micro_batch_size=1, base_accumulation=2,
                          **{**self.options, "max_batch_size": None})  # fmt: skip
        self._schedule: BatchSizeSchedule | None = None
        self._stepped = False
        self._lr_scheduler: Any = None

    @property
    def schedule(self) -> BatchSizeSchedule | None:
        """The schedule of the current (or last) ``fit``; ``None`` before its first batch."""
        return self._schedule

    # ----- Lightning hooks ---------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise ValueError(
                "BatchSizeScheduleCallback drives Trainer(accumulate_grad_batches), which only "
                "automatic optimization uses; with manual optimization use "
                "batchlab.BatchSizeSchedule in training_step"
            )
        super().on_fit_start(trainer, pl_module)
        self._schedule = None
        self._stepped = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if self._schedule is None and self.tracker is not None:
            micro = self.micro_batch_size or _examples(batch)
            if not micro:
                raise ValueError(
                    "BatchSizeScheduleCallback could not tell the examples per batch; pass "
                    "micro_batch_size="
                )
            schedulers = getattr(trainer, "lr_scheduler_configs", None) or []
            self._schedule = BatchSizeSchedule(
                self.tracker,
                micro_batch_size=micro,
                base_accumulation=int(trainer.accumulate_grad_batches),
                # The callback rescales the LR itself, when it applies a change.
                optimizer=None,
                **self.options,
            )
            self._lr_scheduler = schedulers[0].scheduler if schedulers else None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:  # fmt: skip
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self._stepped = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if not self._stepped or self._schedule is None:
            return
        self._stepped = False
        applied = int(trainer.accumulate_grad_batches) * self._schedule.micro_batch_size
        self._schedule.step(examples=applied)
        self._apply(trainer, next_batch_idx=batch_idx + 1)
        if (trainer.global_step % max(int(trainer.log_every_n_steps), 1)) == 0:
            pl_module.log(f"{self.prefix}batch_size", float(applied), on_step=True, on_epoch=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, next_batch_idx=0)  # the batch index restarts: always aligned

    # ----- plumbing --------------------------------------------------------------------

    def _apply(self, trainer: pl.Trainer, *, next_batch_idx: int) -> None:
        """Set the schedule's accumulation if the next window starts aligned with it."""
        schedule = self._schedule
        if schedule is None:
            return
        current, wanted = int(trainer.accumulate_grad_batches), schedule.accumulation_steps
        if wanted == current or next_batch_idx % wanted:
            return
        micro = schedule.micro_batch_size
        ratio = schedule.lr_factor_at(wanted * micro) / schedule.lr_factor_at(current * micro)
        rescale_learning_rates(trainer.optimizers[0], self._lr_scheduler, ratio)
        trainer.accumulate_grad_batches = wanted
        logger.info(
            "BatchSizeScheduleCallback: accumulate_grad_batches %d -> %d (batch %d -> %d) at "
            "step %d",
            current, wanted, current * micro, wanted * micro, trainer.global_step,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {} if self._schedule is None else {"schedule": self._schedule.state_dict()}


class _NoTracker:
    """Stands in for a tracker while the options are checked."""

    b_simple = float("nan")
    n = 0
