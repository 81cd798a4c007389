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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._results import NoiseScaleEstimate

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


#: Version of :meth:`NoiseScaleStatistics.state_dict`'s layout.
STATE_VERSION = 1
_MOMENT_KEYS = ("mean_g", "mean_t", "m_gg", "m_tt", "m_tg")
_STATE_KEYS = (
    "version",
    "ema_decay",
    "confidence",
    "shape",
    "n",
    "weight",
    "weight_sq",
    *_MOMENT_KEYS,
)


class NoiseScaleStatistics:
    """Running averages of per-step |G|² and tr(Σ) estimates; B_simple taken last.

    Feed it squared norms with :meth:`update` (or per-step estimates with
    :meth:`update_estimates`, many at once with :meth:`update_many`); read
    :attr:`b_simple`, :attr:`b_simple_ci`, :attr:`grad_sq_norm`, :attr:`trace_cov`.
    The two averages are kept separately and only their ratio is reported, because
    the mean of single-step ratios is biased (Jensen; see the module docstring).

    Each step's estimates get weight 1, or, with ``ema_decay=β``, all earlier
    weights are multiplied by β first (an exponential moving average without
    start-up bias). Means and co-moments are updated with West's weighted algorithm
    (one step) or Chan et al.'s merge (many steps), so long runs do not lose
    precision to cancellation.

    The interval (:func:`fieller_interval`) treats steps as independent, which they
    are at fixed parameters (:func:`~batchlab.noise.measure_noise_scale`); during
    training it describes the sampling noise around a slowly drifting value. With an
    EMA the effective number of steps is (Σw)²/Σw² (Kish) and the variance of a mean
    uses reliability weights.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A; West 1979, "Updating mean and variance estimates: an
        improved method", CACM 22(9); Chan, Golub, LeVeque 1979, "Updating formulae
        and a pairwise algorithm for computing sample variances".

    Args:
        ema_decay: β in [0, 1) for an exponential moving average, or ``None`` for a
            plain average over all steps so far.
        confidence: coverage of :attr:`b_simple_ci`.
        shape: shape of the statistics: ``()`` for one model (plain floats), or
            ``(m,)`` to track m parameter groups at once.
    """

    def __init__(
        self,
        ema_decay: float | None = None,
        confidence: float = 0.95,
        shape: tuple[int, ...] = (),
    ) -> None:
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be None or in [0, 1), got {ema_decay!r}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
        self.ema_decay = ema_decay
        self.confidence = confidence
        self.shape = tuple(shape)
        self.n = 0
        self._weight = 0.0  # Σ w
        self._weight_sq = 0.0  # Σ w²
        # Plain floats for one model (cheap per step); arrays for groups.
        zero: Any = 0.0 if not self.shape else np.zeros(self.shape)
        self._mean_g = self._mean_t = zero
        self._m_gg = self._m_tt = self._m_tg = zero

    def update(
        self, sq_norm_small: ArrayLike, sq_norm_big: ArrayLike, b_small: float, b_big: float
    ) -> None:
        """Add one step's squared norms at batch sizes ``b_small`` < ``b_big``.

        Args:
            sq_norm_small: |G_small|² (mean over the micro-batches of their squared norms).
            sq_norm_big: |G_big|², squared norm of the big-batch mean gradient.
            b_small: examples per small batch.
            b_big: examples in the big batch.
        """
        self.update_estimates(
            grad_sq_norm_estimate(sq_norm_small, sq_norm_big, b_small, b_big),
            trace_cov_estimate(sq_norm_small, sq_norm_big, b_small, b_big),
        )

    def update_estimates(self, grad_sq_norm: ArrayLike, trace_cov: ArrayLike) -> None:
        """Add one step's unbiased |G|² and tr(Σ) estimates (already computed)."""
        if not self.shape:
            g, t = float(grad_sq_norm), float(trace_cov)  # type: ignore[arg-type]
            finite = math.isfinite(g) and math.isfinite(t)
        else:
            g = np.broadcast_to(np.asarray(grad_sq_norm, dtype=np.float64), self.shape)
            t = np.broadcast_to(np.asarray(trace_cov, dtype=np.float64), self.shape)
            finite = bool(np.all(np.isfinite(g)) and np.all(np.isfinite(t)))
        if not finite:
            raise ValueError("grad_sq_norm and trace_cov estimates must be finite")
        if self.ema_decay is not None and self.n:
            beta = self.ema_decay
            self._weight *= beta
            self._weight_sq *= beta * beta
            self._m_gg = self._m_gg * beta
            self._m_tt = self._m_tt * beta
            self._m_tg = self._m_tg * beta
        # West's update with a new weight of 1.
        self._weight += 1.0
        self._weight_sq += 1.0
        dg, dt = g - self._mean_g, t - self._mean_t
        self._mean_g = self._mean_g + dg / self._weight
        self._mean_t = self._mean_t + dt / self._weight
        self._m_gg = self._m_gg + dg * (g - self._mean_g)
        self._m_tt = self._m_tt + dt * (t - self._mean_t)
        self._m_tg = self._m_tg + dt * (g - self._mean_g)
        self.n += 1

    def update_many(self, grad_sq_norms: ArrayLike, trace_covs: ArrayLike) -> None:
        """Add many steps' estimates at once (first axis = steps, in order).

        Gives the same result as :meth:`update_estimates` step by step (up to
        rounding), in a handful of vectorised operations: the steps' own weighted
        moments are merged into the running ones (Chan et al.'s pairwise formula).
        """
        g = np.asarray(grad_sq_norms, dtype=np.float64).reshape((-1, *self.shape))
        t = np.asarray(trace_covs, dtype=np.float64).reshape((-1, *self.shape))
        if g.shape != t.shape:
            raise ValueError(
                f"grad_sq_norms and trace_covs must have the same shape, got {g.shape} and "
                f"{t.shape}"
            )
        steps = g.shape[0]
        if not steps:
            return
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(t))):
            raise ValueError("grad_sq_norm and trace_cov estimates must be finite")
        beta = 1.0 if self.ema_decay is None else self.ema_decay
        w = beta ** np.arange(steps - 1, -1, -1, dtype=np.float64)  # the newest has weight 1
        w_b, w2_b = float(w.sum()), float((w * w).sum())
        wx = w.reshape((steps,) + (1,) * len(self.shape))
        mean_g_b, mean_t_b = (wx * g).sum(0) / w_b, (wx * t).sum(0) / w_b
        dg, dt = g - mean_g_b, t - mean_t_b
        m_gg_b, m_tt_b, m_tg_b = (wx * dg * dg).sum(0), (wx * dt * dt).sum(0), (wx * dt * dg).sum(0)
        decay = beta**steps if self.n else 0.0
        w_a = self._weight * decay
        total = w_a + w_b
        delta_g, delta_t = mean_g_b - self._mean_g, mean_t_b - self._mean_t
        cross = w_a * w_b / total
        self._m_gg = self._m_gg * decay + m_gg_b + delta_g * delta_g * cross
        self._m_tt = self._m_tt * decay + m_tt_b + delta_t * delta_t * cross
        self._m_tg = self._m_tg * decay + m_tg_b + delta_t * delta_g * cross
        self._mean_g = self._mean_g + delta_g * (w_b / total)
        self._mean_t = self._mean_t + delta_t * (w_b / total)
        self._weight, self._weight_sq = total, self._weight_sq * decay * decay + w2_b
        self.n += steps
        if not self.shape:
            self._mean_g, self._mean_t = float(self._mean_g), float(self._mean_t)
            self._m_gg, self._m_tt, self._m_tg = (
                float(self._m_gg),
                float(self._m_tt),
                float(self._m_tg),
            )

    @property
    def n_effective(self) -> float:
        """Effective number of steps, (Σw)²/Σw² (equals :attr:`n` without an EMA)."""
        return self._weight**2 / self._weight_sq if self.n else 0.0

    @property
    def grad_sq_norm(self) -> Any:
        """Average unbiased |G|² estimate (NaN before the first step)."""
        return _out(self._mean_g) if self.n else _out(np.full(self.shape, np.nan))

    @property
    def trace_cov(self) -> Any:
        """Average unbiased tr(Σ) estimate (NaN before the first step)."""
        return _out(self._mean_t) if self.n else _out(np.full(self.shape, np.nan))

    def state(self) -> tuple[Any, ...]:
        """An immutable snapshot for :meth:`estimate_from_state` (a plain tuple)."""
        copy = (lambda v: v) if not self.shape else np.copy
        return (
            self.n,
            self._weight,
            self._weight_sq,
            copy(self._mean_g),
            copy(self._mean_t),
            copy(self._m_gg),
            copy(self._m_tt),
            copy(self._m_tg),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume these statistics, e.g. from a training checkpoint.

        Plain numbers and lists (``torch.save``- and JSON-able), like k-diffusion's
        ``GradientNoiseScale.state_dict``; :meth:`load_state_dict` restores it exactly.
        """
        as_plain = (lambda v: float(v)) if not self.shape else (lambda v: np.asarray(v).tolist())
        n, weight, weight_sq, *moments = self.state()
        return {
            "version": STATE_VERSION,
            "ema_decay": self.ema_decay,
            "confidence": self.confidence,
            "shape": list(self.shape),
            "n": int(n),
            "weight": float(weight),
            "weight_sq": float(weight_sq),
            **{key: as_plain(value) for key, value in zip(_MOMENT_KEYS, moments, strict=True)},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (its ``ema_decay`` and ``confidence`` too).

        Raises:
            ValueError: a missing key, another version, or another ``shape``.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"noise-scale state is missing {', '.join(missing)}")
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"noise-scale state version {state['version']!r} is not {STATE_VERSION}"
            )
        if tuple(state["shape"]) != self.shape:
            raise ValueError(
                f"noise-scale state has shape {tuple(state['shape'])}, these statistics "
                f"{self.shape}"
            )
        restored = NoiseScaleStatistics(state["ema_decay"], state["confidence"], self.shape)
        self.ema_decay, self.confidence = restored.ema_decay, restored.confidence
        as_value = float if not self.shape else (lambda v: np.asarray(v, dtype=np.float64))
        self.n = int(state["n"])
        self._weight, self._weight_sq = float(state["weight"]), float(state["weight_sq"])
        self._mean_g, self._mean_t, self._m_gg, self._m_tt, self._m_tg = (
            as_value(state[key]) for key in _MOMENT_KEYS
        )

    def estimate(self, index: int | tuple[int, ...] = ()) -> NoiseScaleEstimate:
        """The current estimate as a frozen record (for one entry if ``shape`` is not ())."""
        return self.estimate_from_state(self.state(), index)

    def estimate_from_state(
        self, state: tuple[Any, ...], index: int | tuple[int, ...] = ()
    ) -> NoiseScaleEstimate:
        """The estimate at an earlier :meth:`state` (used for histories, computed lazily)."""
        n, weight, weight_sq, mean_g, mean_t, m_gg, m_tt, m_tg = state
        if not n:
            nan = math.nan
            return NoiseScaleEstimate(nan, (nan, nan), nan, nan, 0, nan, nan)
        g, t = float(np.asarray(mean_g)[index]), float(np.asarray(mean_t)[index])
        var_g = var_t = cov = math.nan
        spread = weight - weight_sq / weight  # 0 when one step has all the weight
        if n >= 2 and spread > 0:
            # Unbiased covariance M / (W − W2/W); the variance of the weighted mean is
            # that times W2/W² (equal weights: M/(n − 1)/n).
            factor = weight_sq / weight**2 / spread
            var_g = float(np.asarray(m_gg)[index]) * factor
            var_t = float(np.asarray(m_tt)[index]) * factor
            cov = float(np.asarray(m_tg)[index]) * factor
        ci = fieller_interval(
            t,
            g,
            var_t,
            var_g,
            cov,
            dof=weight**2 / weight_sq - 1,
            confidence=self.confidence,
        )
        return NoiseScaleEstimate(
            b_simple=_ratio(t, g),
            b_simple_ci=ci,
            grad_sq_norm=g,
            trace_cov=t,
            n=n,
            grad_sq_norm_se=math.sqrt(var_g) if var_g >= 0 else math.nan,
            trace_cov_se=math.sqrt(var_t) if var_t >= 0 else math.nan,
        )

    @property
    def b_simple(self) -> Any:
        """tr(Σ) average / |G|² average (negative if the |G|² average is; never clipped)."""
        if not self.shape:
            return _ratio(self._mean_t, self._mean_g) if self.n else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._mean_t / self._mean_g if self.n else np.full(self.shape, np.nan)

    @property
    def b_simple_ci(self) -> tuple[float, float]:
        """Fieller's interval for :attr:`b_simple` (scalar statistics only)."""
        if self.shape:
            raise ValueError("b_simple_ci is per entry here: use estimate(index).b_simple_ci")
        return self.estimate().b_simple_ci


def noise_scale_from_norms(
    sq_norms_small: ArrayLike,
    sq_norms_big: ArrayLike,
    b_small: ArrayLike,
    b_big: ArrayLike,
    *,
    confidence: float = 0.95,
) -> NoiseScaleEstimate:
    """B_simple with its interval from per-step squared norms (e.g. logged from DDP).

    One (small, big) pair per step: ``sq_norms_small[i]`` is the mean squared norm of
    step i's small-batch (micro-batch or per-rank) gradients, ``sq_norms_big[i]`` the
    squared norm of their mean. |G|² and tr(Σ) are averaged over steps, then divided.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        sq_norms_small, sq_norms_big: per-step squared norms, same length.
        b_small, b_big: batch sizes (scalars, or one per step).
        confidence: coverage of the interval.

    Returns:
        A :class:`~batchlab.noise.NoiseScaleEstimate`.
    """
    small = np.asarray(sq_norms_small, dtype=np.float64).reshape(-1)
    big = np.asarray(sq_norms_big, dtype=np.float64).reshape(-1)
    if small.shape != big.shape:
        raise ValueError(
            f"sq_norms_small and sq_norms_big must have the same length, "
            f"got {small.size} and {big.size}"
        )
    if small.size == 0:
        raise ValueError("need at least one step of squared norms, got 0")
    g = np.broadcast_to(grad_sq_norm_estimate(small, big, b_small, b_big), small.shape)
    t = np.broadcast_to(trace_cov_estimate(small, big, b_small, b_big), small.shape)
    stats = NoiseScaleStatistics(confidence=confidence)
    stats.update_many(g, t)
    return stats.estimate()
