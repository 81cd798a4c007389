"""``NoiseScaleCallback``: the gradient noise scale of a Lightning model while it trains.

A :class:`~batchlab.noise.NoiseScaleTracker` on the ``LightningModule``, closed once
per optimizer step, with its running estimates sent to the trainer's logger::

    import lightning.pytorch as pl
    from batchlab.integrations.lightning import NoiseScaleCallback

    noise = NoiseScaleCallback(ema_decay=0.95)
    trainer = pl.Trainer(accumulate_grad_batches=4, callbacks=[noise])
    trainer.fit(model, train_loader)
    noise.b_simple, noise.tracker.b_simple_ci

Uses ``lightning.pytorch`` (``pip install 'batchlab[lightning]'``); where only the
standalone ``pytorch_lightning`` package is installed, that one.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", Appendix A, https://arxiv.org/abs/1812.06162.
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.data import extract_batch_size
except ImportError as _lightning_error:  # the standalone package has the same API
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.utilities.data import (  # type: ignore[no-redef]
            extract_batch_size,
        )
    except ImportError:
        from ._callbacks import missing_framework

        raise missing_framework("Lightning", "lightning", _lightning_error) from None

from torch.optim import Optimizer

from ._callbacks import TrackerCallback

__all__ = ["NoiseScaleCallback"]


class NoiseScaleCallback(TrackerCallback, pl.Callback):
    """Measures B_simple = tr(Σ)/|G|² during ``Trainer.fit`` and logs it.

    At fit start a :class:`~batchlab.noise.NoiseScaleTracker` is attached to the
    ``LightningModule`` (parameter hooks; the model is not changed). Every backward
    pass is one micro-batch (the small batch); the gradient accumulated over an
    optimizer step is the big batch. ``tracker.step()`` runs once per optimizer step,
    in ``on_before_optimizer_step`` (after the step's last backward, before clipping
    and the update). At fit end (or on an exception) the hooks are removed; the
    statistics stay readable.

    Logged with ``pl_module.log`` (so to every logger of the trainer) on the steps the
    trainer writes logs (``Trainer(log_every_n_steps=...)``), as ``{prefix}b_simple``,
    ``{prefix}b_simple_ci_low``, ``{prefix}b_simple_ci_high``, ``{prefix}grad_sq_norm``
    and ``{prefix}trace_cov``. Reading them costs one device sync, so only those steps
    pay it.

    Requirements and behaviour:

    * Automatic optimization needs ``Trainer(accumulate_grad_batches >= 2)``: each
      batch from the dataloader is one micro-batch. Its examples are read from the
      batch (Lightning's ``extract_batch_size``) unless ``micro_batch_size`` is given.
      A step of fewer than two micro-batches (the last, partial window of an epoch)
      is not measured. Lightning divides every micro-batch loss by
      ``accumulate_grad_batches``, which matches the tracker's convention when the
      micro-batches of a step are equally large; use ``drop_last=True`` (or a data
      set size that is a multiple of the batch size) to keep a short last batch out.
    * Manual optimization: the callback cannot see the accumulation, so call
      ``self.manual_backward`` once per micro-batch, at least twice per
      ``optimizer.step()``; examples per micro-batch come from ``micro_batch_size``
      or from the first tensor argument of ``self(...)`` in ``training_step``.
    * One optimizer and one process (``world_size == 1``): under DDP the gradient
      read at the end of a backward pass races with the all-reduce; use the DDP
      communication hook of :mod:`batchlab.integrations.ddp` there.
    * Mixed precision: the precision plugin's ``GradScaler`` (``16-mixed``) is passed
      to the tracker, which divides the norms by the loss scale.

    Each ``fit`` starts a new tracker. Subclasses can act on every measured step by
    overriding :meth:`on_measured_step` and change what is logged by overriding
    :meth:`metrics`.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        micro_batch_size: examples per micro-batch; ``None`` to read them from each
            batch (automatic optimization) or from the forward pass (manual).
        ema_decay: ``None`` for a plain average over all steps, or β in [0, 1) for an
            exponential moving average (to follow B_simple as training moves on).
        confidence: coverage of the logged interval.
        prefix: prepended to every logged metric name.
    """

    # ----- results (constructor, tracker, b_simple, metrics(): from TrackerCallback) -----

    _batch_sizes = False  # read each batch's examples (automatic optimization)

    def on_measured_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Called after every measured optimizer step; a no-op, for subclasses."""

    # ----- Lightning hooks -----------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_trainer(trainer, pl_module)
        # Here, after the strategy moved the model to its device.
        self._start_tracker(pl_module, getattr(trainer.precision_plugin, "scaler", None))
        self._batch_sizes = self.micro_batch_size is None and pl_module.automatic_optimization

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._tracker is not None and self._batch_sizes:
            # One batch is one micro-batch; a LightningModule's training_step need not call
            # forward, so the tracker's forward hook may never see it.
            self._tracker.micro_batch_size = _examples(batch)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._backwards += 1

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if not self._close_step(self._backwards):
            return
        self.on_measured_step(trainer, pl_module)
        # Lightning writes step metrics when (optimizer steps before this one + 1) is a
        # multiple of log_every_n_steps; logging only then keeps the other steps sync-free.
        if (trainer.global_step + 1) % max(int(trainer.log_every_n_steps), 1) == 0:
            for name, value in self.metrics().items():
                pl_module.log(name, value, on_step=True, on_epoch=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_tracker()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._stop_tracker()

    # ----- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _check_trainer(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size != 1:
            raise ValueError(
                f"NoiseScaleCallback measures in one process, got Trainer world_size="
                f"{trainer.world_size}; under DDP use the communication hook in "
                "batchlab.integrations.ddp, whose per-rank gradients give the small batches"
            )
        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"NoiseScaleCallback needs exactly one optimizer, got {len(trainer.optimizers)} "
                "from configure_optimizers()"
            )
        accumulate = trainer.accumulate_grad_batches
        if pl_module.automatic_optimization and accumulate < 2:
            raise ValueError(
                f"NoiseScaleCallback needs Trainer(accumulate_grad_batches >= 2), got "
                f"accumulate_grad_batches={accumulate}: the noise scale compares one "
                "micro-batch's gradient (the small batch) with the gradient accumulated over "
                "the optimizer step (the big batch). Set accumulate_grad_batches=k and divide "
                "the dataloader's batch_size by k to keep the same batch size per step"
            )


def _examples(batch: Any) -> int | None:
    """Examples in a Lightning batch, or ``None`` (then the tracker's forward hook counts)."""
    try:
        return int(extract_batch_size(batch))
    except Exception:  # noqa: BLE001 - Lightning raises its own types for odd batches
        return None
