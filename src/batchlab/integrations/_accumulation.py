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

**Resuming.** :meth:`AccumulationCallback.state_dict` holds the grower's state, the
tracker's running statistics, the accumulation in effect and the moved
hyperparameters of the optimizer (each param group's ``lr`` / ``betas`` /
``weight_decay`` / ``initial_lr`` and the LR scheduler's ``base_lrs``). Lightning
saves it in every checkpoint and hands it back on ``trainer.fit(..., ckpt_path=...)``
through :meth:`~AccumulationCallback.load_state_dict`, before or after
``on_fit_start`` depending on the strategy, and restores the optimizer's and the LR
scheduler's own state (which hold the moved values) only after that. So
``load_state_dict`` keeps the state; ``on_train_start`` (after every restore) loads the
tracker, checks that the optimizer came back with the saved values and sets the
accumulation in effect at the checkpoint; the first batch builds the grower, loads its
state and applies a change that was pending at the checkpoint if that batch starts an
aligned window, as the uninterrupted run would have there.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from ..training import BatchRamp, BatchSizeSchedule
from ._moved_hparams import check_hparams, moved_hparams
from .lightning import NoiseScaleCallback, _examples, pl

logger = logging.getLogger(__name__)

#: What drives the accumulation (both share ``micro_batch_size``,
#: ``accumulation_steps``, ``step(examples=)`` and ``state_dict()``).
Grower = BatchSizeSchedule | BatchRamp

#: Keys of :meth:`AccumulationCallback.state_dict` besides the grower's own.
_STATE_KEYS = ("tracker", "micro_batch_size", "base_accumulation", "accumulation",
               "hparams", "pending_backwards")  # fmt: skip


class AccumulationCallback(NoiseScaleCallback, ABC):
    """A :class:`NoiseScaleCallback` that grows ``accumulate_grad_batches`` at aligned windows.

    Subclasses build the grower in :meth:`_build` (at the first batch of ``fit``, when
    the micro-batch size, the trainer's starting accumulation and its optimizer are
    known), may act after each optimizer step in :meth:`_after_step` (the default
    counts the step) and move the optimizer's hyperparameters in :meth:`_move` when a
    new accumulation is applied. Automatic optimization only; one optimizer, one
    process. Logs ``{prefix}batch_size`` (examples per optimizer step) besides the
    noise-scale metrics. Resumes from a Lightning checkpoint (module docstring);
    subclasses add their own state with :meth:`_extra_state` / :meth:`_load_extra_state`.
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
        self._trainer: pl.Trainer | None = None
        self._base_accumulation: int | None = None
        self._restored: dict[str, Any] | None = None  # from load_state_dict, until applied

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

    def _extra_state(self) -> dict[str, Any]:
        """A subclass's own state for :meth:`state_dict` (plain values); none here."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any], trainer: pl.Trainer) -> None:
        """Restore :meth:`_extra_state` after the grower was built (a no-op here)."""

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

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning restored the callbacks, the optimizer and the LR scheduler.
        self._base_accumulation = int(trainer.accumulate_grad_batches)
        if self._restored is not None:
            self._restore_at_start(trainer)

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
            self._trainer = trainer
            base = self._base_accumulation
            self._grower = self._build(
                trainer,
                micro_batch_size=micro,
                base_accumulation=int(trainer.accumulate_grad_batches) if base is None else base,
            )
            if self._restored is not None:
                self._restore_grower(trainer, micro)
                # A change pending at the checkpoint: where the uninterrupted run applied it
                # (this batch starts a window of the accumulation in effect).
                self._apply(trainer, next_batch_idx=batch_idx)

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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        self._restored = None  # a later fit without ckpt_path starts afresh

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._restored = None

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

    # ----- checkpointing ---------------------------------------------------------------

    #: The key of the grower's state in :meth:`state_dict`.
    _state_key = "schedule"

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs (empty before the first batch of ``fit``: nothing to resume).

        The grower's state (under ``"schedule"`` or ``"ramp"``), the tracker's, the
        micro-batch size, the base accumulation and the one in effect, the optimizer's
        moved hyperparameters (:func:`moved_hparams`) and the backward passes of a window
        not finished yet (0 at an optimizer step, where checkpoints are taken).
        """
        grower, tracker, trainer = self._grower, self.tracker, self._trainer
        if grower is None or tracker is None or trainer is None:
            return {}
        return {
            self._state_key: grower.state_dict(),
            "tracker": tracker.state_dict(),
            "micro_batch_size": grower.micro_batch_size,
            "base_accumulation": grower.base_accumulation,
            "accumulation": int(trainer.accumulate_grad_batches),
            "hparams": moved_hparams(trainer.optimizers[0], self._lr_scheduler),
            "pending_backwards": self._backwards,
            **self._extra_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep :meth:`state_dict`'s output for the resumed ``fit`` (applied at its start).

        Raises:
            ValueError: the state is not this callback's (a missing key, named), or it
                was saved inside an accumulation window, whose backward passes (and
                Lightning's ``.grad``) a checkpoint does not hold.
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise ValueError(
                f"{name}.load_state_dict expects the dict from state_dict(), got "
                f"{type(state_dict).__name__}"
            )
        if not state_dict:  # saved before the first batch: a fresh start
            self._restored = None
            return
        for key in (self._state_key, *_STATE_KEYS):
            if key not in state_dict:
                raise ValueError(
                    f"{name} cannot resume: its checkpointed state has no {key!r} (a state "
                    f"saved by another callback or an older batchlab?); expected the keys "
                    f"{[self._state_key, *_STATE_KEYS]}"
                )
        pending = int(state_dict["pending_backwards"])
        if pending:
            raise ValueError(
                f"{name} cannot resume exactly from a checkpoint saved inside an accumulation "
                f"window ({pending} of its micro-batches done): the checkpoint holds neither "
                "their gradients nor their noise-scale norms. Resume from one saved at an "
                "optimizer step (ModelCheckpoint(every_n_train_steps=...) or an epoch end)"
            )
        self._restored = dict(state_dict)

    def _restore_at_start(self, trainer: pl.Trainer) -> None:
        """At ``on_train_start``: the tracker, the optimizer check and the accumulation."""
        state, name = self._restored, type(self).__name__
        assert state is not None
        base = int(state["base_accumulation"])
        if self._base_accumulation != base:
            raise ValueError(
                f"{name} cannot resume: the checkpointed run started from "
                f"Trainer(accumulate_grad_batches={base}), this one from "
                f"accumulate_grad_batches={self._base_accumulation}; build the Trainer as "
                "before (the callback sets the accumulation in effect at the checkpoint)"
            )
        schedulers = getattr(trainer, "lr_scheduler_configs", None) or []
        now = moved_hparams(trainer.optimizers[0], schedulers[0].scheduler if schedulers else None)
        check_hparams(name, state["hparams"], now)
        if self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])
        trainer.accumulate_grad_batches = int(state["accumulation"])

    def _restore_grower(self, trainer: pl.Trainer, micro: int) -> None:
        """At the first batch, once the grower is built: its state and the subclass's."""
        state, name = self._restored, type(self).__name__
        assert state is not None and self._grower is not None
        self._restored = None
        saved = int(state["micro_batch_size"])
        if saved != micro:
            raise ValueError(
                f"{name} cannot resume: the checkpointed run had micro_batch_size={saved} "
                f"examples per batch, this one {micro}; use the same dataloader batch_size"
            )
        self._grower.load_state_dict(state[self._state_key])
        self._load_extra_state(state, trainer)
