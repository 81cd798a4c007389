"""Measured B_crit against the noise-scale prediction, and two fitted curves against each other.

Both comparisons are ratios, and both get intervals by combining the fits' bootstrap
draws (:attr:`ScalingFit.bootstrap_b_crit`, :attr:`ScalingFit.bootstrap_s_min`) in log
space with draws of the other quantity, treated as independent: the noise scale is
measured in other runs than the steps-to-target, and two studies share no runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ._checks import AnalysisError, check_confidence, check_positive, plain, plain_pair
from ._fit import ScalingFit, percentile_interval

#: Above this many pairs of draws, intervals use a seeded random subset of the pairs.
_MAX_PAIRS = 1_000_000


@dataclass(frozen=True)
class PredictionComparison:
    """The noise scale's prediction B_simple set against the fitted B_crit.

    Attributes:
        ratio: B_simple / B_crit (1 = perfect prediction).
        ratio_ci: interval of the ratio at the fit's confidence level.
        agrees: whether ``ratio_ci`` overlaps [1/factor, factor].
        factor: the agreement band (2 by default).
        b_simple, b_simple_ci: the prediction and its interval (``None`` if none given).
        b_crit, b_crit_ci: the measurement and its interval.
        message: one sentence for a human.
    """

    ratio: float
    ratio_ci: tuple[float, float]
    agrees: bool
    factor: float
    b_simple: float
    b_simple_ci: tuple[float, float] | None
    b_crit: float
    b_crit_ci: tuple[float, float]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "ratio": plain(self.ratio),
            "ratio_ci": plain_pair(self.ratio_ci),
            "agrees": bool(self.agrees),
            "factor": float(self.factor),
            "b_simple": plain(self.b_simple),
            "b_simple_ci": plain_pair(self.b_simple_ci),
            "b_crit": plain(self.b_crit),
            "b_crit_ci": plain_pair(self.b_crit_ci),
            "message": self.message,
        }


@dataclass(frozen=True)
class FitComparison:
    """Two fitted curves (e.g. SGD as reference, momentum as other), as ratios.

    Attributes:
        b_crit_ratio, b_crit_ratio_ci: other's B_crit / reference's, with interval.
        s_min_ratio, s_min_ratio_ci: other's S_min / reference's, with interval.
        confidence: level of the intervals.
        message: one or two sentences for a human.
    """

    b_crit_ratio: float
    b_crit_ratio_ci: tuple[float, float]
    s_min_ratio: float
    s_min_ratio_ci: tuple[float, float]
    confidence: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "b_crit_ratio": plain(self.b_crit_ratio),
            "b_crit_ratio_ci": plain_pair(self.b_crit_ratio_ci),
            "s_min_ratio": plain(self.s_min_ratio),
            "s_min_ratio_ci": plain_pair(self.s_min_ratio_ci),
            "confidence": float(self.confidence),
            "message": self.message,
        }


def compare_prediction(
    fit: ScalingFit,
    b_simple: float,
    b_simple_ci: Sequence[float] | None = None,
    *,
    factor: float = 2.0,
    b_simple_confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> PredictionComparison:
    """Check the noise-scale prediction B_crit ≈ B_simple against a fitted B_crit.

    The interval of the ratio B_simple / B_crit combines the fit's bootstrap draws of
    B_crit with draws of B_simple from a log-normal matching its interval:
    log B_simple ~ N(log b_simple, σ²) with σ = (log high − log b_simple)/z or
    (log b_simple − log low)/z, whichever is larger (z: the normal quantile of
    ``b_simple_confidence``; only the upper side counts if low ≤ 0). The log-normal
    suits a ratio estimator such as B_simple = tr(Σ)/|G|², whose intervals are
    skewed upwards. The two are independent (measured in different runs). Without
    ``b_simple_ci`` the interval reflects the uncertainty of B_crit alone.

    **Agreement rule.** ``agrees`` is true when the ratio's interval overlaps
    [1/factor, factor] (factor = 2): the data cannot rule out that the prediction
    is within a factor of two. McCandlish et al. derive B_crit ≈ B_noise ≈ B_simple
    only approximately (B_simple = B_noise needs a Hessian ∝ identity; B_crit is
    B_noise only for the idealised model of their Sec. 2.2), and a factor of two is
    one rung of the usual power-of-two ladder: a prediction that good picks the
    ideal batch size to within one rung. Requiring the interval to contain 1 would
    instead test an exact equality the theory does not claim.

    References:
        McCandlish et al. 2018, "An Empirical Model of Large-Batch Training",
        arXiv:1812.06162, Sec. 2.2 (B_noise, B_simple) and Sec. 2.3 (B_crit ≈ B_noise).

    Args:
        fit: the fitted S(B) of a study.
        b_simple: the measured noise scale, positive.
        b_simple_ci: its interval (low, high), or ``None``; an end that is ``None``
            is unbounded (low 0, high inf).
        factor: the agreement band [1/factor, factor], > 1.
        b_simple_confidence: level of ``b_simple_ci``.
        seed: seed (or ``numpy.random.Generator``) of the B_simple draws.

    Returns:
        A :class:`PredictionComparison`.

    Raises:
        AnalysisError (a ValueError): non-positive ``b_simple``, an interval that
            does not contain it or has no finite positive side, ``factor`` <= 1.
        TypeError: ``fit`` is not a :class:`ScalingFit`.
    """
    _check_fit(fit, "fit")
    b_simple = check_positive(b_simple, "b_simple")
    if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 1):
        raise AnalysisError(f"factor must be a number > 1, got {factor!r}")
    level = check_confidence(b_simple_confidence)
    rng = np.random.default_rng(seed)
    log_b_crit = _log_draws(fit.bootstrap_b_crit, fit.b_crit)
    ci = None
    if b_simple_ci is None:
        log_b_simple = np.array([math.log(b_simple)])
    else:
        ci = _check_interval(b_simple_ci, b_simple, "b_simple_ci", "b_simple")
        if ci[0] <= 0 and not math.isfinite(ci[1]):
            raise AnalysisError(
                f"b_simple_ci must have a finite positive bound, got ({ci[0]:g}, {ci[1]:g})"
            )
        sigma = _log_normal_sigma(b_simple, ci, level)
        log_b_simple = math.log(b_simple) + sigma * rng.standard_normal(log_b_crit.size)
    ratio = b_simple / fit.b_crit
    ratio_ci = _ratio_interval(log_b_simple, log_b_crit, ratio, fit.confidence, rng)
    agrees = ratio_ci[0] <= factor and ratio_ci[1] >= 1.0 / factor
    return PredictionComparison(
        ratio=ratio,
        ratio_ci=ratio_ci,
        agrees=agrees,
        factor=float(factor),
        b_simple=b_simple,
        b_simple_ci=ci,
        b_crit=fit.b_crit,
        b_crit_ci=fit.b_crit_ci,
        message=_prediction_message(ratio, ratio_ci, agrees, float(factor), fit.confidence),
    )


def compare_fits(
    reference: ScalingFit,
    other: ScalingFit,
    *,
    confidence: float | None = None,
    seed: int | np.random.Generator = 0,
) -> FitComparison:
    """Ratios of B_crit and S_min of two fitted curves, with bootstrap intervals.

    The intervals are percentile intervals of the ratio over pairs of bootstrap
    draws, one from each fit, taken as independent (two studies share no runs).
    Draws are paired all against all (the exact distribution of the ratio of the two
    bootstrap distributions), not index by index: two fits bootstrapped with the
    same seed on ladders of the same length share their resampling indices, and
    pairing replicate k with replicate k would correlate them.

    References:
        McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", eq. 2.11;
        Shallue et al. 2018, JMLR 20(112), Sec. 4 (optimizers compared by their
        steps-to-result curves: momentum extends perfect scaling).

    Args:
        reference: the fit to compare against (denominator).
        other: the fit compared (numerator).
        confidence: level of the intervals (default: the reference's).
        seed: seed (or ``numpy.random.Generator``) used only when the number of
            pairs of draws exceeds 10⁶ and a random subset of them is taken.

    Returns:
        A :class:`FitComparison`.

    Raises:
        TypeError: either argument is not a :class:`ScalingFit`.
        AnalysisError (a ValueError): a bad ``confidence``.
    """
    _check_fit(reference, "reference")
    _check_fit(other, "other")
    level = reference.confidence if confidence is None else check_confidence(confidence)
    rng = np.random.default_rng(seed)
    b_crit_ratio = other.b_crit / reference.b_crit
    s_min_ratio = other.s_min / reference.s_min
    b_crit_ci = _ratio_interval(
        _log_draws(other.bootstrap_b_crit, other.b_crit),
        _log_draws(reference.bootstrap_b_crit, reference.b_crit),
        b_crit_ratio,
        level,
        rng,
    )
    s_min_ci = _ratio_interval(
        _log_draws(other.bootstrap_s_min, other.s_min),
        _log_draws(reference.bootstrap_s_min, reference.s_min),
        s_min_ratio,
        level,
        rng,
    )
    message = (
        f"Relative to the reference, B_crit is ×{b_crit_ratio:.3g} "
        f"({_interval_text(b_crit_ci, level)}, {_direction(b_crit_ci)}) and S_min is "
        f"×{s_min_ratio:.3g} ({_interval_text(s_min_ci, level)}, {_direction(s_min_ci)})."
    )
    return FitComparison(
        b_crit_ratio=b_crit_ratio,
        b_crit_ratio_ci=b_crit_ci,
        s_min_ratio=s_min_ratio,
        s_min_ratio_ci=s_min_ci,
        confidence=level,
        message=message,
    )


def interval_ratio(
    numerator: float,
    numerator_ci: Sequence[float | None],
    denominator: float,
    denominator_ci: Sequence[float | None],
) -> tuple[float, tuple[float, float]]:
    """``numerator / denominator`` with an interval built from the two quantities' intervals.

    For two estimates whose intervals are known but whose draws are not (an answer's
    B_crit may be widened by the seed bootstrap, or read off the free bend, and a
    measured noise scale comes with its own interval), the ratio's interval is
    recovered from the two intervals on the log scale by the MOVER rule: each side of
    the log ratio's interval adds in quadrature the distance from the estimate to
    the matching end of each input interval (the numerator's lower end with the
    denominator's upper end for the lower side, and the reverse for the upper side).
    It keeps each interval's skew and its level, for independent estimates (two
    studies, or a study and a noise-scale run, share no runs). An input interval
    that is open (a low end ≤ 0 or a high end of ∞) opens the ratio's on that side.

    References:
        Zou & Donner 2008, "Construction of confidence limits about effect measures:
        A general approach", Statistics in Medicine 27(10):1693-1702, eq. 5 (the
        difference of two parameters; here of two logs).

    Args:
        numerator, numerator_ci: the numerator, positive, and its interval (low, high;
            an end that is ``None`` is open: 0 or ∞).
        denominator, denominator_ci: the denominator, positive, and its interval.

    Returns:
        ``(ratio, (low, high))``.

    Raises:
        AnalysisError (a ValueError): a non-positive estimate, or an interval that is
            not a pair containing its estimate.
    """
    top = check_positive(numerator, "numerator")
    bottom = check_positive(denominator, "denominator")
    top_low, top_high = _check_interval(numerator_ci, top, "numerator_ci", "its estimate")
    bottom_low, bottom_high = _check_interval(
        denominator_ci, bottom, "denominator_ci", "its estimate"
    )
    log_ratio = math.log(top) - math.log(bottom)
    down = math.hypot(_log_gap(top_low, top), _log_gap(bottom, bottom_high))
    up = math.hypot(_log_gap(top, top_high), _log_gap(bottom_low, bottom))
    return top / bottom, (_exp(log_ratio - down), _exp(log_ratio + up))


def _log_gap(low: float, high: float) -> float:
    """log(high) − log(low), ∞ where either end is open (low ≤ 0 or high = ∞)."""
    if low <= 0 or math.isinf(high):
        return math.inf
    return math.log(high) - math.log(low)


def _exp(x: float) -> float:
    return 0.0 if x == -math.inf else math.inf if x == math.inf else math.exp(x)


def _check_fit(fit: Any, name: str) -> None:
    if not isinstance(fit, ScalingFit):
        raise TypeError(f"{name} must be a ScalingFit (from fit_scaling), got {type(fit).__name__}")


def _check_interval(ci: Any, estimate: float, name: str, what: str) -> tuple[float, float]:
    """``ci`` as ``(low, high)`` around ``estimate`` (``what`` names it in errors)."""
    try:
        # None stands for an unbounded end, as in the to_dict() of an interval.
        low, high = (float(d if v is None else v) for v, d in zip(ci, (0.0, math.inf), strict=True))
    except (TypeError, ValueError):
        raise AnalysisError(f"{name} must be a (low, high) pair, got {ci!r}") from None
    if math.isnan(low) or math.isnan(high) or not low <= estimate <= high:
        raise AnalysisError(f"{name} must contain {what} ({estimate:g}), got ({low:g}, {high:g})")
    return low, high


def _log_normal_sigma(estimate: float, ci: tuple[float, float], level: float) -> float:
    """σ of log B_simple from the wider finite side of its interval."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    sides = []
    if ci[0] > 0:
        sides.append(math.log(estimate) - math.log(ci[0]))
    if math.isfinite(ci[1]):
        sides.append(math.log(ci[1]) - math.log(estimate))
    return max(sides) / z


def _log_draws(draws: tuple[float, ...], estimate: float) -> np.ndarray:
    """Bootstrap draws in log space (the estimate alone for a fit without bootstrap)."""
    return np.log(np.asarray(draws, dtype=float)) if draws else np.array([math.log(estimate)])


def _ratio_interval(
    log_numerator: np.ndarray,
    log_denominator: np.ndarray,
    ratio: float,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile interval of numerator/denominator over independent pairs of draws."""
    if log_numerator.size * log_denominator.size <= _MAX_PAIRS:
        log_ratios = np.subtract.outer(log_numerator, log_denominator).ravel()
    else:
        log_ratios = (
            log_numerator[rng.integers(0, log_numerator.size, _MAX_PAIRS)]
            - (log_denominator[rng.integers(0, log_denominator.size, _MAX_PAIRS)])
        )
    low, high = percentile_interval(log_ratios, math.log(ratio), confidence)
    return math.exp(low), math.exp(high)


def _interval_text(ci: tuple[float, float], confidence: float) -> str:
    return f"{confidence:.0%} interval {ci[0]:.3g}–{ci[1]:.3g}"


def _direction(ci: tuple[float, float]) -> str:
    if ci[0] > 1:
        return "larger"
    if ci[1] < 1:
        return "smaller"
    return "no clear difference"


def _prediction_message(
    ratio: float, ci: tuple[float, float], agrees: bool, factor: float, confidence: float
) -> str:
    where = f"B_simple / B_crit = {ratio:.3g} ({_interval_text(ci, confidence)})"
    if agrees:
        return f"{where}: the noise scale predicts B_crit to within a factor of {factor:g}."
    side = "overestimates" if ci[0] > factor else "underestimates"
    return f"{where}: the noise scale {side} B_crit by more than a factor of {factor:g}."
