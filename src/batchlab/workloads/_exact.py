"""Closed-form gradient statistics returned by the ground-truth workloads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExactNoiseScale:
    """Closed-form gradient statistics at one point (population quantities).

    Attributes:
        grad_sq_norm: |G|², the squared norm of the true gradient.
        trace_cov: tr Σ, the trace of the per-example gradient covariance.
        b_simple: tr Σ / |G|² (McCandlish et al. 2018, eq. 2.9).
        b_noise: tr(HΣ) / GᵀHG (eq. 2.8), or ``None`` where not known.
    """

    grad_sq_norm: float
    trace_cov: float
    b_simple: float
    b_noise: float | None = None
