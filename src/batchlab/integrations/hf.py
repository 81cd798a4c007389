"""``NoiseScaleCallback``: the gradient noise scale of a model trained by ``transformers.Trainer``.

A :class:`~batchlab.noise.NoiseScaleTracker` on the Trainer's model, closed once per
optimizer step, with its running estimates added to the Trainer's logs::

    from transformers import Trainer, TrainingArguments
    from batchlab.integrations.hf import NoiseScaleCallback

    args = TrainingArguments("out", per_device_train_batch_size=8, gradient_accumulation_steps=4)
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    noise = NoiseScaleCallback(ema_decay=0.95).attach(trainer)
    trainer.train()
    noise.b_simple, trainer.state.log_history[-2]["noise_scale/b_simple"]

Needs ``transformers`` and ``accelerate`` (``pip install 'batchlab[hf]'``).

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", Appendix A, https://arxiv.org/abs/1812.06162.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from transformers import (
        DefaultFlowCallback,
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )
except ImportError as _transformers_error:
    from ._callbacks import missing_framework

    raise missing_framework("transformers", "hf", _transformers_error) from None

from torch import nn

from ._callbacks import TrackerCallback

if TYPE_CHECKING:  # importing Trainer itself loads most of transformers
    from transformers import Trainer

__all__ = ["NoiseScaleCallback"]


class NoiseScaleCallback(TrackerCallback, TrainerCallback):
    """Measures B_simple = tr(Σ)/|G|² during ``Trainer.train()`` and logs it.

    Trainer callbacks never see a micro-batch's gradient, so the measuring is done by a
    :class:`~batchlab.noise.NoiseScaleTracker` attached to the model in
    ``on_train_begin``: its parameter hooks record every backward pass (one
    micro-batch, the small batch) and the gradient accumulated over the optimizer step
    (the big batch) as each backward pass ends, before clipping and the update.
    ``tracker.step()`` runs in ``on_step_end``, once per optimizer step, when all of the
    step's backward passes are done (the Trainer has zeroed ``.grad`` by then, which
    the tracker no longer reads). The hooks are removed in ``on_train_end`` (the
    Trainer has no event for an exception: after a failed ``train()`` call
    ``callback.tracker.remove()``).

    The running estimates are added to each training log (the ``logs`` that carry
    ``loss``, every ``logging_steps``) as ``{prefix}b_simple``, ``{prefix}b_simple_ci_low``,
    ``{prefix}b_simple_ci_high``, ``{prefix}grad_sq_norm`` and ``{prefix}trace_cov``;
    they land in ``trainer.state.log_history``. The ``report_to`` integrations (and the
    progress printer) see them only if this callback runs before them: add it with
    :meth:`attach` rather than ``Trainer(callbacks=[...])``, which puts user
    callbacks after the integrations.

    Requirements and behaviour:

    * ``TrainingArguments(gradient_accumulation_steps >= 2)``: each micro-batch of
      ``per_device_train_batch_size`` is one small batch. A step of fewer than two
      micro-batches (the last, partial window of an epoch) is not measured.
    * Examples per micro-batch: the first dimension of the first tensor given to the
      model's forward (``input_ids``), unless ``micro_batch_size`` is given. When the
      model normalizes its loss by the tokens of the whole step (``num_items_in_batch``),
      micro-batches are weighted by tokens; the tracker's convention (weights by
      examples) matches exactly only when every micro-batch has as many label tokens
      per example, e.g. unpadded sequences of one length.
    * One process (``world_size == 1``, at most one GPU): under DDP the gradient read
      at the end of a backward pass races with the all-reduce; use the DDP
      communication hook of :mod:`batchlab.integrations.ddp` there.
    * fp16 mixed precision: the optimizer's ``GradScaler`` (accelerate's
      ``AcceleratedOptimizer.scaler``) is passed to the tracker, which divides the norms
      by the loss scale.

    Each ``train()`` starts a new tracker. Subclasses can act on every measured step by
    overriding :meth:`on_measured_step` and change what is logged by overriding
    :meth:`metrics`.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        micro_batch_size: examples per micro-batch; ``None`` to read them from the
            model's forward pass.
        ema_decay: ``None`` for a plain average over all steps, or β in [0, 1) for an
            exponential moving average (to follow B_simple as training moves on).
        confidence: coverage of the logged interval.
        prefix: prepended to every logged metric name.
    """

    # ----- set-up (constructor, tracker, b_simple, metrics(): from TrackerCallback) ------

    def attach(self, trainer: Trainer) -> NoiseScaleCallback:
        """Add this callback to ``trainer`` ahead of its ``report_to`` integrations.

        It goes right after the Trainer's ``DefaultFlowCallback`` (or first), so the
        metrics it adds to a log reach every logger and the progress printer.

        Returns:
            ``self``, to keep a reference in one line.
        """
        callbacks = trainer.callback_handler.callbacks
        if not isinstance(callbacks, list):
            raise TypeError(
                f"trainer.callback_handler.callbacks must be a list, got {type(callbacks).__name__}"
            )
        if self in callbacks:
            callbacks.remove(self)
        flow = [
            i for i, callback in enumerate(callbacks) if isinstance(callback, DefaultFlowCallback)
        ]
        callbacks.insert(flow[0] + 1 if flow else 0, self)
        return self

    def on_measured_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl
    ) -> None:
        """Called after every measured optimizer step; a no-op, for subclasses."""

    # ----- Trainer events ------------------------------------------------------------------

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        self._check_args(args)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"NoiseScaleCallback.on_train_begin: the Trainer passed model="
                f"{type(model).__name__}, expected a torch.nn.Module"
            )
        # accelerate wraps the optimizer; with fp16 its GradScaler scales the losses.
        self._start_tracker(model, getattr(optimizer, "scaler", None))

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._backwards += 1

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # The Trainer calls on_substep_end after every micro-batch but a step's last.
        if self._close_step(self._backwards + 1):
            self.on_measured_step(args, state, control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Only training logs carry "loss" (evaluation logs have "eval_loss", the end of
        # training "train_loss"); reading the tracker there costs one device sync.
        if self._tracker is None or logs is None or "loss" not in logs or self._tracker.n == 0:
            return
        metrics = self.metrics()
        # Trainer.log appended a copy of these logs to the history before calling us.
        entry = state.log_history[-1] if state.log_history else None
        if isinstance(entry, dict) and entry is not logs and _same_log(entry, logs, state):
            entry.update(metrics)
        logs.update(metrics)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._stop_tracker()

    # ----- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _check_args(args: TrainingArguments) -> None:
        steps = args.gradient_accumulation_steps
        if steps < 2:
            raise ValueError(
                f"NoiseScaleCallback needs TrainingArguments(gradient_accumulation_steps >= 2), "
                f"got gradient_accumulation_steps={steps}: the noise scale compares one "
                "micro-batch's gradient (the small batch) with the gradient accumulated over the "
                "optimizer step (the big batch). Set gradient_accumulation_steps=k and divide "
                "per_device_train_batch_size by k to keep the same batch size per step"
            )
        if args.world_size != 1 or args.n_gpu > 1:
            raise ValueError(
                f"NoiseScaleCallback measures in one process on at most one device, got "
                f"world_size={args.world_size}, n_gpu={args.n_gpu}; under DDP use the "
                "communication hook in batchlab.integrations.ddp, whose per-rank gradients "
                "give the small batches"
            )


def _same_log(entry: dict[str, Any], logs: dict[str, Any], state: TrainerState) -> bool:
    """Whether history ``entry`` is the copy ``Trainer.log`` made of ``logs``.

    Callbacks that ran before this one may have added keys to ``logs`` since.
    """
    return entry.get("step") == state.global_step and set(entry) - {"step"} <= set(logs)
