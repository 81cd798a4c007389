"""What the Lightning and Hugging Face noise-scale callbacks share.

Option checks at the boundary, the options and results themselves
(:class:`TrackerCallback`), closing one optimizer step of a
:class:`~batchlab.noise.NoiseScaleTracker` (or dropping a step that had too few
micro-batches to measure), and the metric names the callbacks log. The statistics
themselves stay in :mod:`batchlab.noise`.
"""

from __future__ import annotations

import logging
import math

from .._checks import check_positive_int
from ..noise import NoiseScaleStatistics, NoiseScaleTracker

logger = logging.getLogger(__name__)

#: Names (after the prefix) of the metrics a callback logs, in order.
METRIC_NAMES = ("b_simple", "b_simple_ci_low", "b_simple_ci_high", "grad_sq_norm", "trace_cov")


def missing_framework(module: str, extra: str, error: ImportError) -> ImportError:
    """The ImportError raised when a callback's framework is not installed."""
    return ImportError(
        f"batchlab.integrations.{extra} needs {module}, which is not installed "
        f"({error}); install it with: pip install 'batchlab[{extra}]'"
    )


def check_options(
    *,
    micro_batch_size: int | None,
    ema_decay: float | None,
    confidence: float,
    prefix: str,
) -> None:
    """Validate a callback's options when it is built, not at fit start.

    Raises:
        ValueError: a bad ``micro_batch_size``, ``ema_decay`` or ``confidence``.
        TypeError: ``prefix`` is not a string.
    """
    check_positive_int(micro_batch_size, "micro_batch_size", optional=True)
    # The statistics class owns the rules for these two; build one to apply them now.
    NoiseScaleStatistics(ema_decay=ema_decay, confidence=confidence)
    if not isinstance(prefix, str):
        raise TypeError(
            f"prefix must be a string (e.g. 'noise_scale/'), got {type(prefix).__name__}"
        )


def close_step(tracker: NoiseScaleTracker, micro_batches: int) -> bool:
    """``tracker.step()`` for one optimizer step of ``micro_batches`` backward passes.

    A step of fewer than two micro-batches (e.g. the last, partial accumulation window
    of an epoch) carries no small/big pair; it is dropped instead of stopping training.
    The tracker's ``step()`` still runs so that it forgets that step's lone backward
    pass (it clears its state before it raises) and its step count stays equal to the
    optimizer's.

    Returns:
        Whether the step was measured.
    """
    if micro_batches >= 2:
        tracker.step()
        return True
    try:
        tracker.step()
    except ValueError:
        logger.debug(
            "NoiseScaleTracker: optimizer step of %d micro-batch(es) not measured", micro_batches
        )
        return False
    return True


class TrackerCallback:
    """The options, tracker and results a framework's noise-scale callback shares.

    A mixin ahead of the framework's own callback class: it validates the options
    when the callback is built and reads the running estimates of the tracker the
    subclass creates at training start (``self._tracker``).
    """

    def __init__(
        self,
        *,
        micro_batch_size: int | None = None,
        ema_decay: float | None = None,
        confidence: float = 0.95,
        prefix: str = "noise_scale/",
    ) -> None:
        check_options(
            micro_batch_size=micro_batch_size,
            ema_decay=ema_decay,
            confidence=confidence,
            prefix=prefix,
        )
        super().__init__()
        self.micro_batch_size = micro_batch_size
        self.ema_decay = ema_decay
        self.confidence = confidence
        self.prefix = prefix
        self._tracker: NoiseScaleTracker | None = None

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
