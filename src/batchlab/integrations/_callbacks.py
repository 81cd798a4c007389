"""What the Lightning and Hugging Face noise-scale callbacks share.

:class:`TrackerCallback`: the options (one typed constructor, checked when the
callback is built), the tracker's life (started at training start, one step closed
per optimizer step, or dropped when it had too few micro-batches to measure, removed
at the end) and the results and metric names the callbacks log. The statistics
themselves stay in :mod:`batchlab.noise`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from torch import nn

from .._checks import check_positive_int
from ..noise import NoiseScaleStatistics, NoiseScaleTracker, check_micro_batch_size

logger = logging.getLogger(__name__)

#: Names (after the prefix) of the metrics a callback logs, in order.
METRIC_NAMES = ("b_simple", "b_simple_ci_low", "b_simple_ci_high", "grad_sq_norm", "trace_cov")


def missing_framework(module: str, extra: str, error: ImportError) -> ImportError:
    """The ImportError raised when a callback's framework is not installed."""
    return ImportError(
        f"batchlab.integrations.{extra} needs {module}, which is not installed "
        f"({error}); install it with: pip install 'batchlab[{extra}]'"
    )


class TrackerCallback:
    """The options, tracker and results a framework's noise-scale callback shares.

    A mixin ahead of the framework's own callback class, whose constructor is the
    callbacks' one (the subclasses add no options, so IDEs and type checkers see these
    typed keywords). The options are checked here, when the callback is built, not at
    training start. The subclass starts a tracker at training start
    (:meth:`_start_tracker`), counts backward passes in ``_backwards``, closes each
    optimizer step with :meth:`_close_step` and stops the tracker at the end.

    ``measure_every`` is :class:`~batchlab.noise.NoiseScaleTracker`'s: one optimizer
    step in that many is measured (and reaches ``on_measured_step``), the others call
    no hook.

    Raises:
        ValueError: a bad ``micro_batch_size``, ``ema_decay``, ``confidence`` or
            ``measure_every``.
        TypeError: ``prefix`` is not a string.
    """

    def __init__(
        self,
        *,
        micro_batch_size: int | None = None,
        ema_decay: float | None = None,
        confidence: float = 0.95,
        prefix: str = "noise_scale/",
        measure_every: int = 1,
    ) -> None:
        check_micro_batch_size(micro_batch_size)
        self.measure_every = check_positive_int(measure_every, "measure_every")
        # The statistics class owns the rules for these two; build one to apply them now.
        NoiseScaleStatistics(ema_decay=ema_decay, confidence=confidence)
        if not isinstance(prefix, str):
            raise TypeError(
                f"prefix must be a string (e.g. 'noise_scale/'), got {type(prefix).__name__}"
            )
        super().__init__()
        self.micro_batch_size = micro_batch_size
        self.ema_decay = ema_decay
        self.confidence = confidence
        self.prefix = prefix
        self._tracker: NoiseScaleTracker | None = None
        self._backwards = 0  # backward passes counted since the last optimizer step

    @property
    def tracker(self) -> NoiseScaleTracker | None:
        """The tracker of the current (or last) training run; ``None`` before the first."""
        return self._tracker

    @property
    def b_simple(self) -> float:
        """The running B_simple (NaN before the first measured step)."""
        return math.nan if self._tracker is None else self._tracker.b_simple

    def metrics(self) -> dict[str, float]:
        """What is logged: ``{prefix + name: value}`` from the tracker's running estimates.

        B_simple = tr(Σ)/|G|² with its interval, and the averaged unbiased |G|² and
        tr(Σ) (McCandlish et al. 2018, Appendix A); see :data:`METRIC_NAMES`. Reading
        them moves the tracker's pending norms to the host (one device sync), so
        callbacks do it only when logging.
        """
        if self._tracker is None:
            return {}
        tracker = self._tracker
        low, high = tracker.b_simple_ci
        values = (tracker.b_simple, low, high, tracker.grad_sq_norm, tracker.trace_cov)
        return {
            f"{self.prefix}{name}": float(value)
            for name, value in zip(METRIC_NAMES, values, strict=True)
        }

    # ----- the tracker's life ------------------------------------------------------------

    def _start_tracker(self, model: nn.Module, scaler: Any) -> NoiseScaleTracker:
        """A new tracker on ``model`` for a new training run (the last one's is removed).

        Args:
            model: the model being trained (after the framework moved it to its device:
                the tracker keeps its norms on the parameters' device).
            scaler: the framework's ``GradScaler`` under fp16 mixed precision, else ``None``.
        """
        self._stop_tracker()
        self._tracker = NoiseScaleTracker(
            model,
            micro_batch_size=self.micro_batch_size,
            scaler=scaler,
            ema_decay=self.ema_decay,
            confidence=self.confidence,
            measure_every=self.measure_every,
        )
        self._backwards = 0
        return self._tracker

    def _close_step(self, micro_batches: int) -> bool:
        """``tracker.step()`` for one optimizer step of ``micro_batches`` backward passes.

        A step of fewer than two micro-batches (e.g. the last, partial accumulation window
        of an epoch) carries no small/big pair; it is dropped instead of stopping training.
        The tracker's ``step()`` still runs so that it forgets that step's lone backward
        pass (it clears its state before it raises) and its step count stays equal to the
        optimizer's. The backward count starts again from 0.

        Returns:
            Whether the step was measured (``False`` too without a tracker).
        """
        self._backwards = 0
        if self._tracker is None:
            return False
        measured = self._tracker.measures_next_step  # else measure_every leaves it out
        if micro_batches >= 2:
            self._tracker.step()
            return measured
        try:
            self._tracker.step()
        except ValueError:
            logger.debug(
                "NoiseScaleTracker: optimizer step of %d micro-batch(es) not measured",
                micro_batches,
            )
            return False
        return measured

    def _stop_tracker(self) -> None:
        """Remove the tracker's hooks; its statistics stay readable."""
        if self._tracker is not None:
            self._tracker.remove()


class NoTracker:
    """Stands in for a tracker while a callback's options are checked at construction."""

    b_simple = math.nan
    n = 0
