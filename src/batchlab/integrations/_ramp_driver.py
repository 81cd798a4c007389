"""What the Lightning and Hugging Face ``BatchRampCallback`` share, framework aside.

:class:`RampDriver` is a mixin ahead of a framework's noise-scale callback: one typed
constructor for the :class:`~batchlab.BatchRamp` options (checked when the callback
is built), the ramp itself (built at training start, without the optimizer: the
callback moves the optimizer when a change is *applied*, which a framework allows
only at some window boundaries, some steps after the ramp decided it), the call of
the user's ``calibrate`` when a calibration is due, and the move of every param
group's ``lr`` / ``betas[1]`` / ``weight_decay`` (and the LR scheduler's base LRs)
from one batch size to another by :func:`batchlab.training.move_hparams`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from ..noise import NoiseScaleTracker
from ..training import BatchRamp, Growth, move_hparams, optimizer_name_of
from ._callbacks import NoTracker

logger = logging.getLogger(__name__)


class RampDriver:
    """The options, ramp, calibration and hyperparameter moves of a ramp callback.

    The framework subclass builds the ramp at training start with :meth:`_new_ramp`,
    counts each optimizer step with ``ramp.step(examples=...)``, calls
    :meth:`_calibrate_if_due` after it, and :meth:`_move_optimizer` when it applies a
    new accumulation. See the subclasses for the arguments.
    """

    def __init__(
        self,
        *,
        calibrate: Callable[..., Any] | None = None,
        fraction: float = 0.5,
        max_batch_size: int | None = None,
        growth: Growth = "pow2",
        max_growth: float | None = 2.0,
        lr_rule: str | None = None,
        seesaw: bool = False,
        optimizer_name: str | None = None,
        max_lr_factor: float | None = None,
        update_every: int = 10,
        min_steps: int = 20,
        recalibrate_growth: float = 2.0,
        max_calibrations: int = 3,
        calibration_gap: int = 100,
        prior_ratio: float = 1.0,
        micro_batch_size: int | None = None,
        ema_decay: float | None = 0.9,
        confidence: float = 0.95,
        prefix: str = "noise_scale/",
    ) -> None:
        super().__init__(  # the framework's noise-scale callback
            micro_batch_size=micro_batch_size,
            ema_decay=ema_decay,
            confidence=confidence,
            prefix=prefix,
        )
        if calibrate is not None and not callable(calibrate):
            raise TypeError(
                f"calibrate must be a callable returning (b_crit, (low, high)) or None, got "
                f"{type(calibrate).__name__}"
            )
        self.calibrate = calibrate
        self.options: dict[str, Any] = {
            "fraction": fraction,
            "max_batch_size": max_batch_size,
            "growth": growth,
            "max_growth": max_growth,
            "lr_rule": lr_rule,
            "seesaw": seesaw,
            "optimizer_name": optimizer_name,
            "max_lr_factor": max_lr_factor,
            "update_every": update_every,
            "min_steps": min_steps,
            "recalibrate_growth": recalibrate_growth,
            "max_calibrations": max_calibrations,
            "calibration_gap": calibration_gap,
            "prior_ratio": prior_ratio,
            "confidence": confidence,
            # Without a calibrate nothing would ever end the wait.
            "wait_for_calibration": calibrate is not None,
        }
        # Validate now, not at training start: a ramp on a stand-in tracker.
        BatchRamp(NoTracker(), micro_batch_size=1, base_accumulation=2,
                  **{**self.options, "max_batch_size": None})  # fmt: skip
        self._ramp: BatchRamp | None = None
        self._max_lrs: list[float | None] = []

    @property
    def ramp(self) -> BatchRamp | None:
        """The ramp of the current (or last) training run; ``None`` before it is built."""
        return self._ramp

    # ----- for the framework subclass ----------------------------------------------------

    def _new_ramp(
        self,
        tracker: NoiseScaleTracker,
        *,
        micro_batch_size: int,
        base_accumulation: int,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any,
    ) -> BatchRamp:
        """A new ramp for this run; the LR caps are taken from ``optimizer`` now."""
        name = self.options["optimizer_name"] or optimizer_name_of(optimizer)
        factor = self.options["max_lr_factor"]
        self._max_lrs = [
            None if factor is None else factor * _base_lr(group, index, lr_scheduler)
            for index, group in enumerate(optimizer.param_groups)
        ]
        self._ramp = BatchRamp(
            tracker,
            micro_batch_size=micro_batch_size,
            base_accumulation=base_accumulation,
            # The callback caps and moves the optimizer itself (_move_optimizer).
            **{**self.options, "optimizer_name": name, "max_lr_factor": None},
        )
        return self._ramp

    def _calibrate_if_due(
        self, tracker: NoiseScaleTracker, module: torch.nn.Module, *args: Any
    ) -> None:
        """``calibrate(*args, ramp)`` if the ramp says so; its answer goes to the ramp.

        The tracker is paused (a branch's passes are not measurements of the run) and
        ``module`` is put back in the mode it had.
        """
        ramp = self._ramp
        if self.calibrate is None or ramp is None or not ramp.calibration_due:
            return
        was_training = module.training
        with tracker.paused():
            result = self.calibrate(*args, ramp)
        module.train(was_training)
        if result is None:
            logger.info("%s: calibration at step %d skipped", type(self).__name__, ramp.steps)
            ramp.skip_calibration()
            return
        b_crit, b_crit_ci = _calibration(result)
        point = ramp.add_calibration(b_crit, b_crit_ci)
        logger.info(
            "%s: B_crit %.4g [%.4g, %.4g] at B_simple %.4g (step %d); ratio now %.4g",
            type(self).__name__, point.b_crit, *point.b_crit_ci, point.b_simple, point.step,
            ramp.ratio.ratio,
        )  # fmt: skip

    def _move_optimizer(
        self,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any,
        from_batch_size: int,
        to_batch_size: int,
    ) -> None:
        """Move every param group from ``from_batch_size`` to ``to_batch_size`` by the ramp's rules.

        The LR move is computed on the group's base LR (the scheduler's, if any) and
        capped there; the same factor multiplies the scheduled ``lr``, ``initial_lr``
        and the scheduler's ``base_lrs``, so a warmup or decay goes on around the moved
        base. ``betas[1]`` and ``weight_decay`` take the moved values.
        """
        ramp = self._ramp
        assert ramp is not None and ramp.optimizer_name is not None
        noise_scale = ramp.b_crit if math.isfinite(ramp.b_crit) else None
        for index, group in enumerate(optimizer.param_groups):
            base_lr = _base_lr(group, index, lr_scheduler)
            hparams = {"lr": base_lr}
            if "betas" in group:  # the Adam family's (β1, β2)
                hparams["beta2"] = float(group["betas"][1])
            if "weight_decay" in group:
                hparams["weight_decay"] = float(group["weight_decay"])
            moved = move_hparams(
                hparams, from_batch_size, to_batch_size, optimizer=ramp.optimizer_name,
                lr_rule=ramp.lr_rule, seesaw=ramp.seesaw, noise_scale=noise_scale,
                max_lr=self._max_lrs[index] if index < len(self._max_lrs) else None,
            )  # fmt: skip
            ratio = moved["lr"] / base_lr if base_lr else 1.0
            group["lr"] = group["lr"] * ratio
            if "initial_lr" in group:  # set by torch LR schedulers
                group["initial_lr"] = group["initial_lr"] * ratio
            if lr_scheduler is not None and index < len(lr_scheduler.base_lrs):
                lr_scheduler.base_lrs[index] = lr_scheduler.base_lrs[index] * ratio
            if "beta2" in hparams:
                group["betas"] = (group["betas"][0], moved["beta2"])
            if "weight_decay" in hparams:
                group["weight_decay"] = moved["weight_decay"]


def _base_lr(group: dict[str, Any], index: int, lr_scheduler: Any) -> float:
    """The group's LR before any scheduler factor: the scheduler's base LR, else ``lr``."""
    if lr_scheduler is not None and index < len(lr_scheduler.base_lrs):
        return float(lr_scheduler.base_lrs[index])
    return float(group["lr"])


def _calibration(result: Any) -> tuple[float, tuple[float, float]]:
    """``(b_crit, (low, high))`` from what ``calibrate`` returned, or an error naming it."""
    if hasattr(result, "b_crit") and hasattr(result, "b_crit_ci"):
        result = (result.b_crit, result.b_crit_ci)
    expected = "(b_crit, (low, high)), an object with b_crit and b_crit_ci, or None"
    try:
        b_crit, (low, high) = result
        b_crit, low, high = float(b_crit), float(low), float(high)
    except (TypeError, ValueError):
        raise TypeError(f"calibrate must return {expected}, got {result!r}") from None
    if not (math.isfinite(b_crit) and b_crit > 0):
        raise ValueError(f"calibrate returned b_crit={b_crit!r}; expected a finite number > 0")
    if not (0 <= low <= high) or math.isnan(high):
        raise ValueError(
            f"calibrate returned the interval ({low!r}, {high!r}); expected 0 <= low <= high "
            "(high may be inf)"
        )
    return b_crit, (low, high)
