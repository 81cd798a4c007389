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

**Resuming** (``trainer.train(resume_from_checkpoint=...)``). The Trainer finds its
place in a resumed run from ``global_step`` and ``gradient_accumulation_steps``
(``Trainer._init_training_state``), before any callback runs: after the ramp grew the
accumulation, that is the wrong epoch and the wrong batch. So at every checkpoint the
callback writes its state into the checkpoint folder (``batchlab_ramp.pt``: the ramp's
state, the tracker's, the accumulation in effect, the epoch and the batches done in
it, the moved hyperparameters and the ``max_lr_factor`` caps), and :meth:`attach`
wraps the Trainer's ``_init_training_state`` so that a resumed run starts at that
epoch and batch with that accumulation. The resumed run then takes the same steps,
on the same batches, with the same hyperparameters, as if it had not stopped, and
``calibrate`` is not asked again for what the checkpoint holds. Build the resumed
Trainer as the first one (same ``gradient_accumulation_steps`` and
``per_device_train_batch_size``) and add the callback with :meth:`attach`; a checkpoint
without the callback's state, or a callback not attached, is refused, naming why.

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, Sec. 2.3, eq. 2.11.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, arXiv:2505.23971, Sec. 6.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length

from .._io import atomic_write
from ..training import BatchRamp
from ._moved_hparams import check_hparams, moved_hparams
from ._ramp_driver import RampDriver
from .hf import NoiseScaleCallback

if TYPE_CHECKING:  # importing Trainer itself loads most of transformers
    from transformers import Trainer

__all__ = ["RESUME_FILE", "BatchRampCallback", "Calibrate"]

logger = logging.getLogger(__name__)

#: ``calibrate(args, state, model, ramp) -> (b_crit, (low, high))`` or ``None``.
Calibrate = Callable[[TrainingArguments, TrainerState, Any, BatchRamp], Any]

#: The callback's state in every checkpoint folder (module docstring, "Resuming").
RESUME_FILE = "batchlab_ramp.pt"

#: Version of the state in :data:`RESUME_FILE`.
_STATE_VERSION = 1

#: Its keys.
_STATE_KEYS = ("version", "global_step", "ramp", "tracker", "micro_batch_size",
               "base_accumulation", "accumulation", "epoch", "epoch_batches",
               "epoch_length", "hparams", "max_lrs")  # fmt: skip


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
    state, model, ramp)``. Add it with :meth:`attach`: its metrics then reach the
    ``report_to`` loggers (besides the noise-scale metrics it logs
    ``{prefix}batch_size``), and a run resumed from one of its checkpoints starts where
    it stopped (module docstring, "Resuming"). One process.

    Raises:
        ValueError, TypeError: a bad option (when the callback is built), a dataset
            without a length or one micro-batch per step (at ``train()`` start), a
            ``calibrate`` result that is none of the accepted ones (naming
            ``calibrate``), or a resumed run that cannot continue exactly (a checkpoint
            without :data:`RESUME_FILE`, a callback not added with :meth:`attach`,
            another starting accumulation or micro-batch size, an optimizer whose moved
            values did not come back; each named).
    """

    # The constructor is RampDriver's (typed keywords, checked when the callback is built).

    _resume: dict[str, Any] | None = None  # the checkpoint's state, until applied
    _attached = False  # whether attach() wrapped a Trainer's _init_training_state

    def attach(self, trainer: Trainer) -> BatchRampCallback:
        """Add this callback ahead of ``trainer``'s loggers and let it set a resumed run's place.

        Besides :meth:`NoiseScaleCallback.attach`, it wraps ``trainer``'s
        ``_init_training_state`` (transformers 5.x), which places a resumed run by
        ``global_step`` and ``gradient_accumulation_steps``: the wrapper places it at the
        epoch, batch and accumulation of the checkpoint's :data:`RESUME_FILE` instead.

        Returns:
            ``self``, to keep a reference in one line.
        """
        super().attach(trainer)
        init = getattr(trainer, "_init_training_state", None)
        if init is None:
            logger.warning(
                "BatchRampCallback: this Trainer has no _init_training_state (a transformers "
                "version other than 5.x?); its runs cannot be resumed"
            )
            return self
        original = getattr(init, "batchlab_original", init)
        parameters = inspect.signature(original)

        @functools.wraps(original)
        def init_training_state(*args: Any, **kwargs: Any) -> tuple[int, int]:
            epochs_trained, skip = original(*args, **kwargs)
            checkpoint = parameters.bind(*args, **kwargs).arguments.get("resume_from_checkpoint")
            return self._resume_position(trainer, checkpoint, epochs_trained, skip)

        init_training_state.batchlab_original = original  # type: ignore[attr-defined]
        trainer._init_training_state = init_training_state  # type: ignore[method-assign]
        self._attached = True
        return self

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
        resume, self._resume = self._resume, None
        if state.global_step > 0 and resume is None:
            how = (
                "add the callback with BatchRampCallback(...).attach(trainer), not "
                "Trainer(callbacks=[...])"
                if not self._attached
                else f"the checkpoint holds no {RESUME_FILE} (saved without this callback?)"
            )
            raise ValueError(
                f"BatchRampCallback cannot resume this run (resume_from_checkpoint at step "
                f"{state.global_step}): the Trainer finds its place in the epoch with "
                f"gradient_accumulation_steps, which the ramp changed; {how}"
            )
        super().on_train_begin(args, state, control, model=model, optimizer=optimizer, **kwargs)
        assert self.tracker is not None
        # accelerate wraps both; the param groups and base LRs are the inner ones'.
        self._optimizer = getattr(optimizer, "optimizer", optimizer)
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        self._lr_scheduler = scheduler if isinstance(getattr(scheduler, "base_lrs", None),
                                                     list) else None  # fmt: skip
        # The Trainer's own test of whether it knows the epoch's length (``_run_epoch``).
        if train_dataloader is None or not has_length(train_dataloader):
            raise ValueError(
                "BatchRampCallback needs a train_dataset with a length: without one the "
                "Trainer runs one 'epoch' of max_steps x gradient_accumulation_steps batches "
                "planned at the starting accumulation, and its last optimizer step would "
                "take a partial window of micro-batches (Trainer._run_epoch); pass a "
                "map-style dataset, or keep the accumulation fixed"
            )
        self._epoch_length = len(train_dataloader)
        self._accumulation = int(args.gradient_accumulation_steps)  # the one in effect
        self._user_accumulation = (
            self._accumulation if resume is None else int(resume["base_accumulation"])
        )
        self._window = 0  # micro-batches of the step under way
        self._start = (0, 0) if resume is None else resume["start"]  # epoch, batches done
        self._epoch = self._start[0] - 1  # on_epoch_begin counts it
        micro = self.micro_batch_size or int(args.per_device_train_batch_size)
        ramp = self._new_ramp(
            self.tracker,
            micro_batch_size=micro,
            base_accumulation=self._user_accumulation,
            optimizer=self._optimizer,
            lr_scheduler=self._lr_scheduler,
        )
        if resume is not None:
            self._restore(resume, ramp)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._epoch += 1
        # The batch index restarts (always aligned), but a resumed epoch goes on.
        self._batches = self._start[1] if self._epoch == self._start[0] else 0
        self._window = 0
        self._apply(args, state)

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

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Write :data:`RESUME_FILE` into the checkpoint folder the Trainer just saved."""
        ramp, tracker = self._ramp, self.tracker
        if ramp is None or tracker is None:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():  # e.g. a hyperparameter search's per-trial folder
            logger.warning(
                "BatchRampCallback: no checkpoint folder %s to save its state in; a run "
                "resumed from this checkpoint will be refused", folder,
            )  # fmt: skip
            return
        saved = {
            "version": _STATE_VERSION,
            "global_step": int(state.global_step),
            "ramp": ramp.state_dict(),
            "tracker": tracker.state_dict(),
            "micro_batch_size": ramp.micro_batch_size,
            "base_accumulation": self._user_accumulation,
            "accumulation": int(args.gradient_accumulation_steps),
            "epoch": self._epoch,
            "epoch_batches": self._batches,
            "epoch_length": self._epoch_length,
            "hparams": moved_hparams(self._optimizer, self._lr_scheduler),
            "max_lrs": list(self._max_lrs),
        }
        atomic_write(folder / RESUME_FILE, lambda handle: torch.save(saved, handle))

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

    def _resume_position(
        self, trainer: Trainer, checkpoint: Any, epochs_trained: int, skip: int
    ) -> tuple[int, int]:
        """Where a resumed run starts: the epoch and batch of the checkpoint's state.

        Called by the wrapped ``_init_training_state`` after the Trainer restored its
        state and before it skips batches; sets ``gradient_accumulation_steps`` to the
        one in effect at the checkpoint. Without a checkpoint it changes nothing.
        """
        self._resume = None
        if checkpoint is None:
            return epochs_trained, skip
        path = Path(checkpoint) / RESUME_FILE
        if not path.is_file():
            return epochs_trained, skip  # on_train_begin refuses, naming the file
        saved = _load_state(path)
        args, name = trainer.args, type(self).__name__
        if int(saved["global_step"]) != trainer.state.global_step:
            raise ValueError(
                f"{name} cannot resume: {path} was saved at step {saved['global_step']}, the "
                f"checkpoint's trainer state is at step {trainer.state.global_step}"
            )
        base, now = int(saved["base_accumulation"]), int(args.gradient_accumulation_steps)
        if base != now:
            raise ValueError(
                f"{name} cannot resume: the checkpointed run started from "
                f"gradient_accumulation_steps={base}, this one from {now}; build the "
                "TrainingArguments as before (the callback sets the accumulation in effect "
                "at the checkpoint)"
            )
        epoch, batches = int(saved["epoch"]), int(saved["epoch_batches"])
        if batches >= int(saved["epoch_length"]):  # saved at an epoch's end
            epoch, batches = epoch + 1, 0
        if args.ignore_data_skip:  # the Trainer's option: restart the epoch's data
            batches = 0
        args.gradient_accumulation_steps = int(saved["accumulation"])
        self._resume = {**saved, "start": (epoch, batches)}
        logger.info(
            "BatchRampCallback: resuming at epoch %d, batch %d, gradient_accumulation_steps %d",
            epoch, batches, args.gradient_accumulation_steps,
        )  # fmt: skip
        return epoch, batches

    def _restore(self, saved: Mapping[str, Any], ramp: BatchRamp) -> None:
        """The checkpoint's tracker, ramp and LR caps, once the optimizer came back (checked)."""
        name = type(self).__name__
        if int(saved["micro_batch_size"]) != ramp.micro_batch_size:
            raise ValueError(
                f"{name} cannot resume: the checkpointed run had micro_batch_size="
                f"{saved['micro_batch_size']} examples per micro-batch, this one "
                f"{ramp.micro_batch_size}; use the same per_device_train_batch_size"
            )
        now = moved_hparams(self._optimizer, self._lr_scheduler)
        check_hparams(name, saved["hparams"], now)
        max_lrs = saved["max_lrs"]
        if len(max_lrs) != len(self._optimizer.param_groups):
            raise ValueError(
                f"{name} cannot resume: its checkpointed state has {len(max_lrs)} LR caps, "
                f"the optimizer {len(self._optimizer.param_groups)} param groups"
            )
        assert self.tracker is not None
        self.tracker.load_state_dict(saved["tracker"])
        ramp.load_state_dict(saved["ramp"])
        # The caps come from the base LRs at the *first* run's start; the resumed
        # optimizer already holds moved LRs.
        self._max_lrs = [None if cap is None else float(cap) for cap in max_lrs]


def _load_state(path: Path) -> dict[str, Any]:
    """:data:`RESUME_FILE`'s state, or a ValueError naming the file and what is wrong."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"BatchRampCallback cannot read its state {path}: {error}") from None
    if not isinstance(saved, Mapping) or saved.get("version") != _STATE_VERSION:
        version = saved.get("version") if isinstance(saved, Mapping) else None
        raise ValueError(
            f"BatchRampCallback cannot resume from {path}: expected its state version "
            f"{_STATE_VERSION}, got {version!r}"
        )
    missing = [key for key in _STATE_KEYS if key not in saved]
    if missing:
        raise ValueError(f"BatchRampCallback cannot resume from {path}: it has no {missing}")
    return dict(saved)
