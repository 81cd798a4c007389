"""Frozen records of noise-scale measurements, with JSON-safe ``to_dict()``.

Also where a measurement becomes a record: :func:`make_record` (one step of a
history) and :func:`make_result` (the whole measurement), shared by
``measure_noise_scale``, the tracker and the DDP hook.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._statistics import NoiseScaleStatistics

logger = logging.getLogger(__name__)

#: Fields that hold a batch size: whole sizes are written as ints.
_SIZE_FIELDS = frozenset({"b_small", "b_big", "micro_batch_size", "batch_size"})


def _json_float(value: float | None) -> float | None:
    """A finite float, or ``None`` for NaN/±inf (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_size(value: float | None) -> int | float | None:
    """A batch size: an ``int`` when whole (sizes can be harmonic means), else a float."""
    value = _json_float(value)
    if value is not None and value.is_integer():
        return int(value)
    return value


def _json_value(name: str, value: Any) -> Any:
    """One field of a record, JSON-safe: sizes, intervals, floats, nested records."""
    if name in _SIZE_FIELDS:
        return _json_size(value)
    if isinstance(value, _JsonRecord):
        return value.to_dict()
    if isinstance(value, dict):
        return {key: _json_value(key, item) for key, item in value.items()}
    if isinstance(value, tuple) and name.endswith("_ci"):
        return [_json_float(bound) for bound in value]
    if isinstance(value, tuple):
        return [_json_value(name, item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return _json_float(value)  # type: ignore[arg-type]
    return value


class _JsonRecord:
    """``to_dict()`` for the frozen dataclasses below: one JSON-safe value per field."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: non-finite numbers become ``None``, whole batch sizes ``int``."""
        return {f.name: _json_value(f.name, getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class NoiseScaleEstimate(_JsonRecord):
    """B_simple with its interval and the two averages it is the ratio of.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A (estimators) and eq. 2.9 (B_simple).

    Attributes:
        b_simple: tr(Σ)/|G|², the ratio of the two averages below. Negative when the
            |G|² average is (the big batch is too small for the noise, or too few
            steps); reported as is, never clipped.
        b_simple_ci: Fieller's interval at the chosen confidence (95% by default). A
            bound is ±inf when |G|² is not distinguishable from 0; (nan, nan) with
            fewer than two steps.
        grad_sq_norm: average unbiased estimate of |G|², the true gradient's squared norm.
        trace_cov: average unbiased estimate of tr(Σ), Σ the per-example gradient
            covariance.
        n: number of (small, big) pairs (steps or batches) averaged.
        grad_sq_norm_se: standard error of ``grad_sq_norm`` (NaN if n < 2).
        trace_cov_se: standard error of ``trace_cov`` (NaN if n < 2).
    """

    b_simple: float
    b_simple_ci: tuple[float, float]
    grad_sq_norm: float
    trace_cov: float
    n: int
    grad_sq_norm_se: float
    trace_cov_se: float


@dataclass(frozen=True)
class NoiseScaleRecord(_JsonRecord):
    """One step of a noise-scale history: this step's norms and the running estimate.

    Attributes:
        step: index of the step (the tracker's count of ``step()`` calls before this
            one, or the batch index for :func:`~batchlab.noise.measure_noise_scale`).
        b_simple, b_simple_ci: running estimate and interval after this step.
        grad_sq_norm, trace_cov: running averages after this step.
        sq_norm_small: this step's |G_small|² (mean over its micro-batches).
        sq_norm_big: this step's |G_big|² (squared norm of the big-batch gradient).
        b_small: examples per micro-batch (harmonic mean if they differ).
        b_big: examples in the big batch.
    """

    step: int
    b_simple: float
    b_simple_ci: tuple[float, float]
    grad_sq_norm: float
    trace_cov: float
    sq_norm_small: float
    sq_norm_big: float
    b_small: float
    b_big: float


@dataclass(frozen=True)
class NoiseScaleResult(NoiseScaleEstimate):
    """A noise-scale measurement of a whole model, with a per-module breakdown.

    Everything in :class:`NoiseScaleEstimate`, plus:

    Attributes:
        per_module: module name → its own estimate, from that module's own
            parameters (``"(root)"`` for parameters of the model itself). Each module's
            |G|² and tr(Σ) add up to the model's; a module with a much larger
            B_simple than the model is a noisy one.
        history: the running estimate after each step/batch.
        micro_batch_size: examples per micro-batch (B_small), ``None`` if it varied.
        batch_size: examples per big batch (B_big), ``None`` if it varied.
        confidence: coverage of the intervals.
        skipped: steps skipped because a gradient was NaN/inf.
        b_noise: tr(HΣ)/(GᵀHG), the Hessian-weighted noise scale (eq. 2.8), if measured.
        b_noise_ci: its interval (Fieller), if measured.
    """

    per_module: dict[str, NoiseScaleEstimate] = field(default_factory=dict)
    history: tuple[NoiseScaleRecord, ...] = ()
    micro_batch_size: float | None = None
    batch_size: float | None = None
    confidence: float = 0.95
    skipped: int = 0
    b_noise: float | None = None
    b_noise_ci: tuple[float, float] | None = None


def make_record(
    step: int,
    estimate: NoiseScaleEstimate,
    sq_norm_small: float,
    sq_norm_big: float,
    b_small: float,
    b_big: float,
) -> NoiseScaleRecord:
    """The history entry of a step: its own norms and the running estimate after it."""
    return NoiseScaleRecord(
        step=step,
        b_simple=estimate.b_simple,
        b_simple_ci=estimate.b_simple_ci,
        grad_sq_norm=estimate.grad_sq_norm,
        trace_cov=estimate.trace_cov,
        sq_norm_small=sq_norm_small,
        sq_norm_big=sq_norm_big,
        b_small=b_small,
        b_big=b_big,
    )


def make_result(
    total: NoiseScaleStatistics,
    modules: NoiseScaleStatistics,
    group_names: Sequence[str],
    history: Sequence[NoiseScaleRecord],
    *,
    skipped: int = 0,
    b_noise_stats: NoiseScaleStatistics | None = None,
) -> NoiseScaleResult:
    """Assemble the frozen result: the whole model's statistics and those of each group."""
    whole = total.estimate()
    per_module = {name: modules.estimate(i) for i, name in enumerate(group_names)}
    smalls = {r.b_small for r in history}
    bigs = {r.b_big for r in history}
    b_noise = b_noise_ci = None
    if b_noise_stats is not None:
        noise = b_noise_stats.estimate()
        b_noise, b_noise_ci = noise.b_simple, noise.b_simple_ci
    if total.n and not whole.grad_sq_norm > 0:
        logger.warning(
            "the |G|^2 average is %.3g <= 0 after %d steps: B_simple = %.3g is not meaningful; "
            "measure more steps or use a larger batch",
            whole.grad_sq_norm,
            total.n,
            whole.b_simple,
        )
    return NoiseScaleResult(
        b_simple=whole.b_simple,
        b_simple_ci=whole.b_simple_ci,
        grad_sq_norm=whole.grad_sq_norm,
        trace_cov=whole.trace_cov,
        n=whole.n,
        grad_sq_norm_se=whole.grad_sq_norm_se,
        trace_cov_se=whole.trace_cov_se,
        per_module=per_module,
        history=tuple(history),
        micro_batch_size=smalls.pop() if len(smalls) == 1 else None,
        batch_size=bigs.pop() if len(bigs) == 1 else None,
        confidence=total.confidence,
        skipped=skipped,
        b_noise=b_noise,
        b_noise_ci=b_noise_ci,
    )
