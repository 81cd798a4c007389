"""What the Lightning callbacks that grow ``accumulate_grad_batches`` share.

:class:`AccumulationCallback` is the window-boundary plumbing of
:class:`~batchlab.integrations.lightning_schedule.BatchSizeScheduleCallback` (driving a
:class:`~batchlab.BatchSizeSchedule`) and
:class:`~batchlab.integrations.lightning_ramp.BatchRampCallback` (driving a
:class:`~batchlab.BatchRamp`): the grower is built at the first batch of ``fit``, told
after every optimizer step, and its accumulation is applied only where Lightning can
take it, with the optimizer's hyperparameters moved at that same moment.

**When a change is safe.** Lightning zeroes the gradients at the first batch of a
window (batch index within the epoch ``% accumulate_grad_batches == 0``) and steps
when the count of batches ``% accumulate_grad_batches == 0`` or the epoch ends. A new
``accumulate_grad_batches`` that the next batch index is not a multiple of would
leave the last window's gradients in ``.grad`` (added into the next step) or step
after a partial window. So a change decided after one optimizer step is applied at
the first later window boundary whose batch index is a multiple of the new value (at
once for half the windows when the accumulation doubles, and always at an epoch
start), and the hyperparameters move at that same moment, so LR and batch size never
disagree for a step.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from ..training import BatchRamp, BatchSizeSchedule
from .lightning import NoiseScaleCallback, _examples, pl

logger = logging.getLogger(__name__)

#: What drives the accumulation (both share ``micro_batch_size``,
#: ``accumulation_steps``, ``step(examples=)`` and ``state_dict()``).
Grower = BatchSizeSchedule | BatchRamp


class AccumulationCallback(NoiseScaleCallback, ABC):
    """A :class:`NoiseScaleCallback` that grows ``accumulate_grad_batches`` at aligned windows.

    Subclasses build the grower in :meth:`_build` (at the first batch of ``fit``, when
    the micro-batch size, the trainer's starting accumulation and its optimizer are
    known), may act after each optimizer step in :meth:`_after_step` (the default
    counts the step) and move the optimizer's hyperparameters in :meth:`_move` when a
    new accumulation is applied. Automatic optimization only; one optimizer, one
    process. Logs ``{prefix}batch_size`` (examples per optimizer step) besides the
    noise-scale metrics.
    """

    #: What to use instead under manual optimization (for the error message).
    _manual_hint = "batchlab.BatchSizeSchedule"

    def __init__(
        self,
        *,
        micro_batch_size: int | None,
        ema_decay: float | None,
        confidence: float,
        prefix: str,
    ) -> None:
        super().__init__(
            micro_batch_size=micro_batch_size,
            ema_decay=ema_decay,
            confidence=confidence,
            prefix=prefix,
        )
        self._grower: Grower | None = None
        self._stepped = False
        self._lr_scheduler: Any = None

    # ----- what subclasses provide ---------------------------------------------------------

    @abstractmethod
    def _build(
        self, trainer: pl.Trainer, *, micro_batch_size: int, base_accumulation: int
    ) -> Grower:
        """The grower for this ``fit`` (the tracker is :attr:`tracker`)."""

    def _after_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                    examples: int) -> None:  # fmt: skip
        """After every optimizer step of ``examples`` examples: count it (may decide a change)."""
        assert self._grower is not None
        self._grower.step(examples=examples)

    @abstractmethod
    def _move(self, trainer: pl.Trainer, from_batch_size: int, to_batch_size: int) -> None:
        """Move the optimizer's hyperparameters for a batch that grows now."""

    # ----- Lightning hooks -------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = type(self).__name__
        if not pl_module.automatic_optimization:
            raise ValueError(
                f"{name} drives Trainer(accumulate_grad_batches), which only automatic "
                f"optimization uses; with manual optimization use {self._manual_hint} in "
                "training_step"
            )
        super().on_fit_start(trainer, pl_module)
        self._grower = None
        self._stepped = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if self._grower is None and self.tracker is not None:
            micro = self.micro_batch_size or _examples(batch)
            if not micro:
                raise ValueError(
                    f"{type(self).__name__} could not tell the examples per batch from a "
                    f"{type(batch).__name__}; pass micro_batch_size="
                )
            schedulers = getattr(trainer, "lr_scheduler_configs", None) or []
            self._lr_scheduler = schedulers[0].scheduler if schedulers else None
            self._grower = self._build(
                trainer,
                micro_batch_size=micro,
                base_accumulation=int(trainer.accumulate_grad_batches),
            )

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:  # fmt: skip
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self._stepped = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if not self._stepped or self._grower is None:
            return
        self._stepped = False
        applied = int(trainer.accumulate_grad_batches) * self._grower.micro_batch_size
        self._after_step(trainer, pl_module, applied)
        self._apply(trainer, next_batch_idx=batch_idx + 1)
        if (trainer.global_step % max(int(trainer.log_every_n_steps), 1)) == 0:
            pl_module.log(f"{self.prefix}batch_size", float(applied), on_step=True, on_epoch=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, next_batch_idx=0)  # the batch index restarts: always aligned

    # ----- plumbing --------------------------------------------------------------------

    def _apply(self, trainer: pl.Trainer, *, next_batch_idx: int) -> None:
        """Set the grower's accumulation if the next window starts aligned with it."""
        grower = self._grower
        if grower is None:
            return
        current, wanted = int(trainer.accumulate_grad_batches), grower.accumulation_steps
        if wanted == current or next_batch_idx % wanted:
            return
        micro = grower.micro_batch_size
        self._move(trainer, current * micro, wanted * micro)
        trainer.accumulate_grad_batches = wanted
        logger.info(
            "%s: accumulate_grad_batches %d -> %d (batch %d -> %d) at step %d",
            type(self).__name__, current, wanted, current * micro, wanted * micro,
            trainer.global_step,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {} if self._grower is None else {self._state_key: self._grower.state_dict()}

    #: The key of the grower's state in :meth:`state_dict`.
    _state_key = "schedule"
