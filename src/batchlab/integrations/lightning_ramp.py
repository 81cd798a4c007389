"""``BatchRampCallback``: grow Lightning's gradient accumulation to a fraction of the calibrated B_crit.

A :class:`~batchlab.integrations.lightning.NoiseScaleCallback` that drives a
:class:`~batchlab.BatchRamp`: the trainer's ``accumulate_grad_batches`` grows (never
shrinks) towards ``fraction`` · r̂ · B_simple, r̂ = B_crit/B_simple learned from the
B_crit measurements that ``calibrate`` hands back, and on every change the optimizer's
``lr``, ``betas[1]`` and ``weight_decay`` (and the LR scheduler's base LRs) move by
the ramp's transfer rules::

    from batchlab.integrations.lightning_ramp import BatchRampCallback

    def calibrate(trainer, pl_module, ramp):        # when ramp.calibration_due
        fit = my_branches(pl_module, around=ramp.b_crit)   # e.g. bl.analysis.fit_scaling
        return fit.b_crit, fit.b_crit_ci            # or None: no usable measurement

    ramp = BatchRampCallback(calibrate=calibrate, fraction=0.5, max_batch_size=1024)
    trainer = pl.Trainer(accumulate_grad_batches=2, callbacks=[ramp])
    trainer.fit(model, DataLoader(data, batch_size=32, shuffle=True, drop_last=True))
    ramp.ramp.history, ramp.ramp.calibrations, ramp.ramp.ratio

Without ``calibrate`` nothing measures B_crit: the ramp then follows ``prior_ratio``
(B_crit taken as ``prior_ratio`` · B_simple from the first update on), i.e. a
B_simple-only schedule whose hyperparameters move by the transfer rules.

**When a change is safe.** Lightning zeroes the gradients at the batch indices (within
the epoch) that are multiples of ``accumulate_grad_batches`` and steps when the count
of batches is; a new value that the next batch index is not a multiple of would add
the last window's gradients into the next step. So a change the ramp decides is
applied at the first later window boundary aligned with it (at once for half the
windows when the accumulation doubles, always at an epoch start), and the
hyperparameters move at that same moment, from the batch size in use to the new one,
so LR and batch size never disagree for a step.

**Resuming.** The ramp's state (history, calibration points, ratio), the tracker's
running statistics, the accumulation in effect, the moved hyperparameters and the
``max_lr_factor`` caps are saved in every Lightning checkpoint and restored by
``trainer.fit(module, ckpt_path="last")`` (with a ``ModelCheckpoint``): the resumed run
takes the same steps as if it had not stopped, and ``calibrate`` is not asked again for
what the checkpoint holds. Build its ``Trainer`` with the same starting
``accumulate_grad_batches`` and dataloader ``batch_size``; checkpoint at optimizer steps
or epoch ends.

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, Sec. 2.3, eq. 2.11.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, arXiv:2505.23971, Sec. 6.
    Meterez et al. 2025, "Seesaw", arXiv:2510.14717.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..training import BatchRamp
from ._accumulation import AccumulationCallback
from ._ramp_driver import RampDriver
from .lightning import pl

__all__ = ["BatchRampCallback", "Calibrate"]

#: ``calibrate(trainer, pl_module, ramp) -> (b_crit, (low, high))`` or ``None``.
Calibrate = Callable[[Any, Any, BatchRamp], Any]


class BatchRampCallback(RampDriver, AccumulationCallback):
    """Measures B_simple, calibrates it against B_crit and grows ``accumulate_grad_batches``.

    The dataloader's batch is the micro-batch; the trainer's ``accumulate_grad_batches``
    at fit start (>= 2, as :class:`NoiseScaleCallback` requires) is the base
    accumulation. After every optimizer step the ramp counts the step (and may decide
    a larger batch); when :attr:`BatchRamp.calibration_due`, ``calibrate(trainer,
    pl_module, ramp)`` is called (the tracker paused, so its passes are not measured;
    the module is put back in train mode after) and must return ``(b_crit, (low,
    high))`` (the measured B_crit and its interval; ``high`` may be ``inf``), an object
    with ``b_crit`` and ``b_crit_ci`` (e.g. :func:`batchlab.analysis.fit_scaling`'s
    result), or ``None`` for "no usable measurement" (counted as an attempt, see
    :meth:`BatchRamp.skip_calibration`). With ``calibrate`` the batch waits for the
    first calibration; without it, it follows ``prior_ratio`` · B_simple at once.

    A decided change is applied at the next aligned window boundary (module
    docstring). Then each param group's ``lr``, ``betas[1]`` and ``weight_decay`` move
    by :func:`batchlab.training.move_hparams` from the batch in use to the new one,
    with the ramp's rules (``lr_rule``/``seesaw``; ``"surge"``/``"saturating"`` use the
    calibrated B_crit). With an LR scheduler the move is computed on the scheduler's
    base LR and the same factor multiplies the scheduled LR, ``initial_lr`` and
    ``base_lrs``, so warmup/decay go on from the moved base. ``max_lr_factor`` caps
    every group's base LR at that factor × its base LR at the first batch of ``fit``.
    (:attr:`ramp` is built without the optimizer, so the ``lr`` of its
    :class:`~batchlab.training.RampChange` records is ``nan``; the trainer's optimizer
    holds the moved values.) Logs ``{prefix}batch_size`` besides the noise-scale
    metrics. Automatic optimization only; one optimizer, one process.

    Resumes from a Lightning checkpoint (``trainer.fit(module, ckpt_path=...)``):
    :meth:`state_dict` holds the ramp's state, the tracker's, the accumulation in
    effect, the optimizer's moved hyperparameters and the LR caps of
    ``max_lr_factor`` (from the base LRs at the first run's start). On restore the
    accumulation is set back, a change pending at the checkpoint is applied where the
    uninterrupted run would have, and lr/β2/weight decay (and the scheduler's
    ``base_lrs``) come back with the optimizer's and scheduler's own state (checked).

    References:
        McCandlish et al. 2018, arXiv:1812.06162, Sec. 2.3; Merrill et al. 2025,
        arXiv:2505.23971; Meterez et al. 2025, arXiv:2510.14717.

    Args:
        calibrate: ``(trainer, pl_module, ramp) -> (b_crit, (low, high)) | None``,
            called when a calibration is due (``None``: never calibrate, follow
            ``prior_ratio``).
        fraction: target batch as a fraction of the calibrated B_crit, > 0.
        max_batch_size: cap on the effective batch size (``None``: none).
        growth: ``"pow2"`` (double the accumulation) or ``"multiple"``.
        max_growth: the batch grows by at most this factor per update (``None``: no limit).
        lr_rule: an LR rule of :data:`batchlab.optim.LR_RULES` (default: the optimizer's).
        seesaw: Seesaw's LR-for-batch trade instead of ``lr_rule``.
        optimizer_name: the optimizer's batchlab name for the rules (default: from its
            type; needed for optimizers batchlab does not know).
        max_lr_factor: cap on every group's LR over its base LR at the start, >= 1.
        update_every: optimizer steps between decisions.
        min_steps: measured steps before the first calibration or change.
        recalibrate_growth, max_calibrations, calibration_gap: when a calibration is
            due again (see :class:`~batchlab.BatchRamp`).
        prior_ratio: r = B_crit/B_simple before any calibration, > 0.
        micro_batch_size: examples per batch (default: read from the first batch).
        ema_decay: the tracker's EMA (default 0.9: B_simple moves during training).
        confidence: level of the tracker's and the ratio's intervals.
        prefix: prepended to every logged metric name.

    Raises:
        ValueError, TypeError: a bad option (when the callback is built), manual
            optimization or no way to count a batch's examples (at fit start), a
            ``calibrate`` result that is none of the above (naming ``calibrate``), or a
            checkpoint that cannot be resumed exactly (saved inside an accumulation
            window, another starting ``accumulate_grad_batches`` or micro-batch size, an
            optimizer whose moved values did not come back; each named).
    """

    # The constructor is RampDriver's (typed keywords, checked when the callback is built).

    _manual_hint = "batchlab.BatchRamp"
    _state_key = "ramp"

    def _build(
        self, trainer: pl.Trainer, *, micro_batch_size: int, base_accumulation: int
    ) -> BatchRamp:
        assert self.tracker is not None
        return self._new_ramp(
            self.tracker,
            micro_batch_size=micro_batch_size,
            base_accumulation=base_accumulation,
            optimizer=trainer.optimizers[0],
            lr_scheduler=self._lr_scheduler,
        )

    def _after_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                    examples: int) -> None:  # fmt: skip
        assert self._ramp is not None and self.tracker is not None
        self._ramp.step(examples=examples)
        self._calibrate_if_due(self.tracker, pl_module, trainer, pl_module)

    def _move(self, trainer: pl.Trainer, from_batch_size: int, to_batch_size: int) -> None:
        self._move_optimizer(trainer.optimizers[0], self._lr_scheduler, from_batch_size,
                             to_batch_size)  # fmt: skip

    def _extra_state(self) -> dict[str, Any]:
        # The LR caps come from the base LRs at the first batch of the *first* fit; a
        # resumed fit's optimizer already holds moved LRs, so they are carried over.
        return {"max_lrs": list(self._max_lrs)}

    def _load_extra_state(self, state: Mapping[str, Any], trainer: pl.Trainer) -> None:
        max_lrs = state.get("max_lrs")
        groups = len(trainer.optimizers[0].param_groups)
        if not isinstance(max_lrs, list | tuple) or len(max_lrs) != groups:
            raise ValueError(
                f"BatchRampCallback cannot resume: its checkpointed state needs 'max_lrs', one "
                f"LR cap (or None) per param group ({groups}), got {max_lrs!r}"
            )
        self._max_lrs = [None if cap is None else float(cap) for cap in max_lrs]
