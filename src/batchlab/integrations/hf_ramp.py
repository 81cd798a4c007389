"""``BatchRampCallback``: grow ``transformers.Trainer``'s gradient accumulation to a fraction of the calibrated B_crit.

A :class:`~batchlab.integrations.hf.NoiseScaleCallback` that drives a
:class:`~batchlab.BatchRamp`: ``args.gradient_accumulation_steps`` grows (never
shrinks) towards ``fraction`` · r̂ · B_simple, r̂ = B_crit/B_simple learned from the
B_crit measurements ``calibrate`` hands back, and on every change the optimizer's
``lr``, ``betas[1]`` and ``weight_decay`` (and the LR scheduler's base LRs) move by
the ramp's transfer rules::

    from batchlab.integrations.hf_ramp import BatchRampCallback

    def calibrate(args, state, model, ramp):        # when ramp.calibration_due
        fit = my_branches(model, around=ramp.b_crit)
        return fit.b_crit, fit.b_crit_ci            # or None: no usable measurement

    args = TrainingArguments("out", per_device_train_batch_size=8, gradient_accumulation_steps=2,
                             num_train_epochs=3)
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    ramp = BatchRampCallback(calibrate=calibrate, max_batch_size=512).attach(trainer)
    trainer.train()
    ramp.ramp.history, ramp.ramp.calibrations

Without ``calibrate`` the ramp follows ``prior_ratio`` · B_simple.

**Why this is exact, and its limits** (transformers 5.x, ``Trainer._run_epoch``). The
Trainer reads ``args.gradient_accumulation_steps`` afresh for every optimizer step:
it fetches that many micro-batches (``get_batch_samples``), scales each micro-batch
loss by the window it fetched (``current_gradient_accumulation_steps =
len(batch_samples)``, or ``num_items_in_batch`` counted over the same window) and
syncs when ``(step + 1) % gradient_accumulation_steps == 0`` or at the epoch's last
batch, ``step`` being the batch index within the epoch. So a new value is safe
exactly when the batches done in the epoch are a multiple of it: the callback
applies a change at the first such step end (always at an epoch start), and moves the
optimizer's hyperparameters at that same moment. Two things the Trainer fixes at the
start of ``train()`` from the starting accumulation stay fixed:

* the number of epochs: with ``max_steps`` and a sized dataset the Trainer plans
  ``ceil(max_steps / steps per epoch at the starting accumulation)`` epochs, and a
  growing batch fits fewer steps into each, so training ends after those epochs, at
  fewer than ``max_steps`` steps (an LR schedule planned over ``max_steps`` is then cut
  short). Give the budget in epochs (``num_train_epochs``) and read the LR schedule's
  horizon as an upper bound, or size ``max_steps`` for the epochs you want.
* a dataset without a length is refused: the Trainer then runs one "epoch" of
  ``max_steps`` × (starting accumulation) batches, syncs also at that batch, and its
  last optimizer step fetches ``remainder`` micro-batches computed from the starting
  accumulation, which after a growth leaves a partial window's gradient behind.

Resuming from a checkpoint is refused (the Trainer finds its place in the epoch with
the accumulation of the resumed run, ``Trainer._init_training_state``).

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, Sec. 2.3, eq. 2.11.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, arXiv:2505.23971, Sec. 6.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import has_length

from ..training import BatchRamp
from ._ramp_driver import RampDriver
from .hf import NoiseScaleCallback

__all__ = ["BatchRampCallback", "Calibrate"]

logger = logging.getLogger(__name__)

#: ``calibrate(args, state, model, ramp) -> (b_crit, (low, high))`` or ``None``.
Calibrate = Callable[[TrainingArguments, TrainerState, Any, BatchRamp], Any]


class BatchRampCallback(RampDriver, NoiseScaleCallback):
    """Measures B_simple, calibrates it against B_crit and grows ``gradient_accumulation_steps``.

    One micro-batch is ``per_device_train_batch_size`` examples (or ``micro_batch_size``);
    ``args.gradient_accumulation_steps`` at ``train()`` start (>= 2) is the base
    accumulation. After every optimizer step (``on_step_end``) the ramp counts the
    step's examples and may decide a larger batch; when a calibration is due,
    ``calibrate(args, state, model, ramp)`` is called (tracker paused, model put back
    in its mode after) and returns ``(b_crit, (low, high))``, an object with
    ``b_crit`` and ``b_crit_ci``, or ``None`` (no usable measurement). A decided change
    is applied when the batches done in the epoch are a multiple of the new
    accumulation (module docstring), and then every param group's ``lr``, ``betas[1]``
    and ``weight_decay`` (and the scheduler's base LRs) move by
    :func:`batchlab.training.move_hparams`, exactly as in
    :class:`batchlab.integrations.lightning_ramp.BatchRampCallback`. At the end of
    ``train()`` the user's ``gradient_accumulation_steps`` is put back.

    The options are those of the Lightning callback; ``calibrate`` gets ``(args,
    state, model, ramp)``. Add it with :meth:`attach` to have its metrics reach the
    ``report_to`` loggers; besides the noise-scale metrics it logs
    ``{prefix}batch_size``. One process; no resuming (module docstring).
    """

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step > 0:
            raise ValueError(
                f"BatchRampCallback cannot resume a run (resume_from_checkpoint at step "
                f"{state.global_step}): the Trainer finds its place in the epoch with "
                "gradient_accumulation_steps, which the ramp changed; start a new run"
            )
        super().on_train_begin(args, state, control, model=model, optimizer=optimizer, **kwargs)
        assert self.tracker is not None
        # accelerate wraps both; the param groups and base LRs are the inner ones'.
        self._optimizer = getattr(optimizer, "optimizer", optimizer)
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        self._lr_scheduler = scheduler if isinstance(getattr(scheduler, "base_lrs", None),
                                                     list) else None  # fmt: skip
        self._user_accumulation = int(args.gradient_accumulation_steps)
        # The Trainer's own test of whether it knows the epoch's length (``_run_epoch``).
        if train_dataloader is None or not has_length(train_dataloader):
            raise ValueError(
                "BatchRampCallback needs a train_dataset with a length: without one the "
                "Trainer runs one 'epoch' of max_steps x gradient_accumulation_steps batches "
                "planned at the starting accumulation, and its last optimizer step would "
                "take a partial window of micro-batches (Trainer._run_epoch); pass a "
                "map-style dataset, or keep the accumulation fixed"
            )
        self._batches = 0  # micro-batches done in this epoch
        self._window = 0  # micro-batches of the step under way
        self._accumulation = self._user_accumulation  # the one in effect
        self._new_ramp(
            self.tracker,
            micro_batch_size=self.micro_batch_size or int(args.per_device_train_batch_size),
            base_accumulation=self._user_accumulation,
            optimizer=self._optimizer,
            lr_scheduler=self._lr_scheduler,
        )

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._batches = 0
        self._window = 0
        self._apply(args, state)  # the batch index restarts: always aligned

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        super().on_substep_end(args, state, control, **kwargs)
        self._batches += 1
        self._window += 1

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        super().on_step_end(args, state, control, model=model, **kwargs)
        ramp = self._ramp
        if ramp is None or self.tracker is None:
            return
        self._batches += 1
        micro_batches, self._window = self._window + 1, 0
        ramp.step(examples=micro_batches * ramp.micro_batch_size)
        self._calibrate_if_due(self.tracker, model, args, state, model)
        self._apply(args, state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        super().on_train_end(args, state, control, **kwargs)
        if self._ramp is not None:
            args.gradient_accumulation_steps = self._user_accumulation

    def metrics(self) -> dict[str, float]:
        """The noise-scale metrics and ``{prefix}batch_size``, the effective batch in effect."""
        found = super().metrics()
        if found and self._ramp is not None:
            batch = self._accumulation * self._ramp.micro_batch_size
            found[f"{self.prefix}batch_size"] = float(batch)
        return found

    # ----- plumbing --------------------------------------------------------------------

    def _apply(self, args: TrainingArguments, state: TrainerState) -> None:
        """Set the ramp's accumulation if the next window starts aligned with it."""
        ramp = self._ramp
        if ramp is None:
            return
        current, wanted = int(args.gradient_accumulation_steps), ramp.accumulation_steps
        if wanted == current or self._batches % wanted:
            return
        micro = ramp.micro_batch_size
        self._move_optimizer(self._optimizer, self._lr_scheduler, current * micro, wanted * micro)
        args.gradient_accumulation_steps = self._accumulation = wanted
        logger.info(
            "BatchRampCallback: gradient_accumulation_steps %d -> %d (batch %d -> %d) at step %d",
            current, wanted, current * micro, wanted * micro, state.global_step,
        )  # fmt: skip
