"""Frozen records of noise-scale measurements, with JSON-safe ``to_dict()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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


def _json_interval(interval: tuple[float, float] | None) -> list[float | None] | None:
    if interval is None:
        return None
    return [_json_float(interval[0]), _json_float(interval[1])]


@dataclass(frozen=True)
class NoiseScaleEstimate:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; non-finite numbers become ``None``."""
        return {
            "b_simple": _json_float(self.b_simple),
            "b_simple_ci": _json_interval(self.b_simple_ci),
            "grad_sq_norm": _json_float(self.grad_sq_norm),
            "trace_cov": _json_float(self.trace_cov),
            "n": self.n,
            "grad_sq_norm_se": _json_float(self.grad_sq_norm_se),
            "trace_cov_se": _json_float(self.trace_cov_se),
        }


@dataclass(frozen=True)
class NoiseScaleRecord:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the shape :func:`batchlab.report` reads for its plot)."""
        return {
            "step": self.step,
            "b_simple": _json_float(self.b_simple),
            "b_simple_ci": _json_interval(self.b_simple_ci),
            "grad_sq_norm": _json_float(self.grad_sq_norm),
            "trace_cov": _json_float(self.trace_cov),
            "sq_norm_small": _json_float(self.sq_norm_small),
            "sq_norm_big": _json_float(self.sq_norm_big),
            "b_small": _json_size(self.b_small),
            "b_big": _json_size(self.b_big),
        }


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the estimate, ``per_module``, ``history`` and sizes."""
        out = super().to_dict()
        out.update(
            {
                "confidence": self.confidence,
                "micro_batch_size": _json_size(self.micro_batch_size),
                "batch_size": _json_size(self.batch_size),
                "skipped": self.skipped,
                "b_noise": _json_float(self.b_noise),
                "b_noise_ci": _json_interval(self.b_noise_ci),
                "per_module": {name: est.to_dict() for name, est in self.per_module.items()},
                "history": [record.to_dict() for record in self.history],
            }
        )
        return out
