"""Gradient noise scale statistics: numbers in, estimates out (no torch, no hooks).

McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training",
Appendix A. A mean gradient over B examples has E|G_B|² = |G|² + tr(Σ)/B, so squared
norms measured at two batch sizes B_small < B_big give unbiased estimates of |G|²
(the squared norm of the true gradient) and tr(Σ) (the trace of the per-example
gradient covariance). Their ratio B_simple = tr(Σ)/|G|² is the simple noise scale.

A single step's estimates are very noisy (the |G|² estimate is often negative), and
the ratio of two unbiased estimates is not unbiased: E[t/g] ≠ E[t]/E[g]. So |G|² and
tr(Σ) are averaged *separately* over many steps and the ratio is taken last, as the
paper does. The confidence interval is Fieller's (below), and nothing is clipped: a
negative |G|² average is reported as such.

This module is the statistics half of the package; :mod:`._tracker` and
:mod:`._measure` only collect squared norms from torch and feed them here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ArrayLike = float | np.ndarray | Sequence[float]


def _is_scalar(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _check_sizes(b_small: Any, b_big: Any) -> tuple[Any, Any]:
    if _is_scalar(b_small, b_big):  # the common case, without NumPy's per-call overhead
        small, big = float(b_small), float(b_big)
        ok_small, ok_big = 0 < small < math.inf, small < big < math.inf
    else:
        small, big = np.asarray(b_small, dtype=np.float64), np.asarray(b_big, dtype=np.float64)
        ok_small = bool(np.all((small > 0) & np.isfinite(small)))
        ok_big = bool(np.all((big > small) & np.isfinite(big)))
    if not ok_small:
        raise ValueError(f"b_small must be positive and finite, got {b_small!r}")
    if not ok_big:
        raise ValueError(
            f"b_big must be larger than b_small (two different batch sizes), "
            f"got b_small={b_small!r}, b_big={b_big!r}"
        )
    return small, big


def _out(value: Any) -> Any:
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


def grad_sq_norm_estimate(
    sq_norm_small: ArrayLike, sq_norm_big: ArrayLike, b_small: ArrayLike, b_big: ArrayLike
) -> Any:
    """Unbiased |G|² from squared gradient norms at two batch sizes.

    |G|² ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small), which follows
    from E|G_B|² = |G|² + tr(Σ)/B. With k micro-batches, |G_small|² is the mean of
    their k squared norms and |G_big|² the squared norm of their mean.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        sq_norm_small: |G_small|², squared norm of the small-batch mean gradient.
        sq_norm_big: |G_big|², squared norm of the big-batch mean gradient.
        b_small: examples in a small batch, B_small.
        b_big: examples in the big batch, B_big > B_small.

    Returns:
        The estimate (a float, or an array if any argument is one). It can be
        negative: single-step estimates are noisy; average before dividing.
    """
    small, big = _check_sizes(b_small, b_big)
    if _is_scalar(sq_norm_small, sq_norm_big, small, big):
        return (big * sq_norm_big - small * sq_norm_small) / (big - small)
    s, g = np.asarray(sq_norm_small, dtype=np.float64), np.asarray(sq_norm_big, dtype=np.float64)
    return _out((big * g - small * s) / (big - small))


def trace_cov_estimate(
    sq_norm_small: ArrayLike, sq_norm_big: ArrayLike, b_small: ArrayLike, b_big: ArrayLike
) -> Any:
    """Unbiased tr(Σ) from squared gradient norms at two batch sizes.

    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big), with Σ the per-example
    gradient covariance.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        sq_norm_small: |G_small|² (mean over micro-batches of their squared norms).
        sq_norm_big: |G_big|², squared norm of the big-batch mean gradient.
        b_small: examples in a small batch, B_small.
        b_big: examples in the big batch, B_big > B_small.

    Returns:
        The estimate (a float, or an array if any argument is one); can be negative.
    """
    small, big = _check_sizes(b_small, b_big)
    if _is_scalar(sq_norm_small, sq_norm_big, small, big):
        return (sq_norm_small - sq_norm_big) / (1.0 / small - 1.0 / big)
    s, g = np.asarray(sq_norm_small, dtype=np.float64), np.asarray(sq_norm_big, dtype=np.float64)
    return _out((s - g) / (1.0 / small - 1.0 / big))


def _t_quantile(confidence: float, dof: float) -> float:
    from scipy.special import stdtrit  # lazily: scipy is slow to import

    return float(stdtrit(dof, 0.5 + confidence / 2))


def _ratio(numerator: float, denominator: float) -> float:
    if denominator != 0:
        return numerator / denominator
    if numerator == 0 or math.isnan(numerator):
        return math.nan
    return math.copysign(math.inf, numerator)


def fieller_interval(
    mean_num: float,
    mean_den: float,
    var_num: float,
    var_den: float,
    cov: float,
    *,
    dof: float,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Fieller's confidence interval for a ratio of two means, ``mean_num / mean_den``.

    Why Fieller and not the plain delta method: the delta method linearises the ratio
    and gives a symmetric interval, which under-covers badly when the denominator (the
    |G|² average) is uncertain relative to its size — the usual situation for the
    noise scale, where single-step |G|² estimates are often negative. Fieller's
    interval is the set of ρ for which ``mean_num − ρ·mean_den`` is compatible with 0:
    (mean_num − ρ mean_den)² ≤ q² (var_num − 2ρ cov + ρ² var_den), with q the Student-t
    quantile. It is exact when the two means are jointly normal (the means of many
    independent steps are, by the CLT), is asymmetric where the ratio's distribution
    is, and reduces to the delta-method interval when the denominator is precise.

    When the denominator is not significantly different from zero the set is
    unbounded; the part that contains the point estimate is returned, so one bound is
    ±inf — meaning "|G|² is not distinguishable from 0; measure more steps or use a
    larger big batch". If no ratio can be excluded the interval is (−inf, inf).

    References:
        Fieller 1954, "Some Problems in Interval Estimation", JRSS B 16(2):175-185.

    Args:
        mean_num, mean_den: the two means (tr Σ and |G|² averages).
        var_num, var_den, cov: variances and covariance *of the means*.
        dof: degrees of freedom of the variance estimates (n − 1 for n steps).
        confidence: coverage probability, in (0, 1).

    Returns:
        (low, high); (nan, nan) when ``dof`` < 1 or an input is not finite.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    values = (mean_num, mean_den, var_num, var_den, cov)
    if not dof >= 1 or not all(math.isfinite(v) for v in values):
        return (math.nan, math.nan)
    q2 = _t_quantile(confidence, dof) ** 2
    # (a ρ² + b ρ + c) ≤ 0
    a = mean_den**2 - q2 * var_den
    b = -2.0 * (mean_num * mean_den - q2 * cov)
    c = mean_num**2 - q2 * var_num
    estimate = _ratio(mean_num, mean_den)
    disc = b * b - 4.0 * a * c
    if a > 0:
        # The estimate satisfies the inequality, so disc >= 0 up to rounding.
        root = math.sqrt(max(disc, 0.0))
        # Numerically stable roots (no cancellation between -b and the root).
        q = -0.5 * (b + math.copysign(root, b))
        r1, r2 = (q / a, c / q) if q != 0 else (-b / (2 * a), -b / (2 * a))
        return (min(r1, r2), max(r1, r2))
    if disc < 0 or math.isnan(estimate):
        return (-math.inf, math.inf)
    if a == 0:
        if b == 0:
            return (-math.inf, math.inf)
        edge = -c / b
        return (edge, math.inf) if estimate >= edge else (-math.inf, edge)
    # a < 0: the set is (-inf, lo] ∪ [hi, inf); keep the piece holding the estimate.
    root = math.sqrt(disc)
    lo, hi = sorted(((-b + root) / (2 * a), (-b - root) / (2 * a)))
    return (hi, math.inf) if estimate >= hi else (-math.inf, lo)
