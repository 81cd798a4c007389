"""Running averages of |G|² and tr(Σ) over steps, with B_simple and its interval last.

The estimators (:mod:`._estimators`) turn one step's squared norms into unbiased
|G|² and tr(Σ); this class averages them *separately* over many steps (the ratio of
averages, not the average of ratios; McCandlish et al. 2018, Appendix A), weighted
plainly or by an EMA, and keeps its state for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._estimators import (
    ArrayLike,
    _out,
    _ratio,
    fieller_interval,
    grad_sq_norm_estimate,
    trace_cov_estimate,
)
from ._results import NoiseScaleEstimate

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
            ValueError: a missing key, another version, another ``shape``, or a value
                of the wrong kind (each message names the key).
        """
        what = "noise-scale state"
        check_state(state, _STATE_KEYS, what=what)
        if tuple(state["shape"]) != self.shape:
            raise ValueError(
                f"{what} has shape {tuple(state['shape'])}, these statistics {self.shape}"
            )
        # Everything is checked before anything is set: a bad state changes nothing.
        restored = NoiseScaleStatistics(state["ema_decay"], state["confidence"], self.shape)
        n = state_int(state, "n", what=what)
        weights = [_state_array(state, key, (), what=what) for key in ("weight", "weight_sq")]
        moments = [_state_array(state, key, self.shape, what=what) for key in _MOMENT_KEYS]
        self.ema_decay, self.confidence, self.n = restored.ema_decay, restored.confidence, n
        self._weight, self._weight_sq = weights
        self._mean_g, self._mean_t, self._m_gg, self._m_tt, self._m_tg = moments

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


def check_state(state: Any, keys: Sequence[str], *, what: str) -> None:
    """A ``state_dict()`` to load: a mapping with every key of ``keys`` and our version.

    Raises:
        TypeError: ``state`` is not a mapping.
        ValueError: naming the missing keys, or the version found.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"{what} must be a dict from state_dict(), got {type(state).__name__}")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{what} is missing {', '.join(missing)}")
    if state["version"] != STATE_VERSION:
        raise ValueError(f"{what} version {state['version']!r} is not {STATE_VERSION}")


def state_int(state: Mapping[str, Any], key: str, *, what: str) -> int:
    """``state[key]`` as a count (an integer >= 0), or a ValueError naming the key."""
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{what}[{key!r}] must be an integer >= 0, got {value!r}")
    return int(value)


def _state_array(state: Mapping[str, Any], key: str, shape: tuple[int, ...], *, what: str) -> Any:
    """``state[key]`` as a float (``shape == ()``) or a float array of ``shape``."""
    try:
        value = np.asarray(state[key], dtype=np.float64)
    except (TypeError, ValueError):
        value = None
    if value is None or value.shape != shape:
        expected = "a number" if not shape else f"a list of {shape[0]} numbers"
        raise ValueError(f"{what}[{key!r}] must be {expected}, got {state[key]!r}")
    return float(value) if not shape else value


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
