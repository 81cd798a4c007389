"""Calibrating the noise scale against the measured critical batch size: pure functions.

The tracked noise scale B_simple is cheap (it comes free with gradient accumulation)
but only predicts B_crit up to a factor that depends on the optimizer and the stage of
training (McCandlish et al. 2018, Sec. 2.3: B_simple ≈ B_noise only when the Hessian
is well conditioned; Merrill et al. 2025 find it does not track B_crit under Adam).
Branching from checkpoints measures B_crit directly but costs training. The ramp does
both: a few branch measurements give the ratio r = B_crit / B_simple, and between them
B_crit(t) ≈ r̂ · B_simple(t).

Each calibration point gives y = log r with a variance read off its B_crit interval
(the fit's interval is in log space, so half its log-width over z is a standard
error). The points are combined as a random-effects mean (DerSimonian & Laird 1986):
inverse-variance weights, plus a between-point variance τ² estimated from their
scatter, so that a ratio that drifts during training widens the interval instead of
being averaged away.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, eqs. 2.9-2.11.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, "Critical Batch Size Revisited",
    arXiv:2505.23971.
    DerSimonian & Laird 1986, "Meta-analysis in clinical trials", Controlled Clinical
    Trials 7(3), eqs. 1-4 (the moment estimator of τ²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

#: Floor on a point's log-variance (a 10% standard error). A fit through three or four
#: branches can come back with an interval of zero width (the bootstrap has no
#: residuals to resample), which would take all the weight; and steps-to-target read off
#: an evaluation grid of 10% spacing are not known better than that anyway.
MIN_LOG_VARIANCE = 0.01


def _z(confidence: float) -> float:
    if not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CalibrationPoint:
    """One measurement of B_crit (by branches) next to the tracked B_simple.

    Attributes:
        step: optimizer steps of the run when it was taken.
        b_crit: the measured critical batch size.
        b_crit_ci: its interval (low, high) at ``confidence``; ``high`` may be ``inf``
            (a fit with no visible bend), and then the point carries no weight.
        b_simple: the tracked noise scale at that step.
        confidence: the level of ``b_crit_ci``.
    """

    step: int
    b_crit: float
    b_crit_ci: tuple[float, float]
    b_simple: float
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _positive(self.b_crit, "b_crit")
        _positive(self.b_simple, "b_simple")
        _z(self.confidence)
        low, high = self.b_crit_ci
        if not (0 <= low <= high):
            raise ValueError(
                f"b_crit_ci must be (low, high) with 0 <= low <= high, got {self.b_crit_ci!r}"
            )

    @property
    def log_ratio(self) -> float:
        """y = log(B_crit / B_simple)."""
        return math.log(self.b_crit / self.b_simple)

    @property
    def log_variance(self) -> float:
        """Var(y) from the interval: ((log high − log low) / 2z)², at least :data:`MIN_LOG_VARIANCE`."""
        low, high = self.b_crit_ci
        if low <= 0 or not math.isfinite(high):
            return math.inf
        se = (math.log(high) - math.log(low)) / (2 * _z(self.confidence))
        return max(se * se, MIN_LOG_VARIANCE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "b_crit": self.b_crit,
            "b_crit_ci": [v if math.isfinite(v) else None for v in self.b_crit_ci],
            "b_simple": self.b_simple,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CalibrationPoint:
        low, high = raw["b_crit_ci"]
        return cls(
            step=int(raw["step"]),
            b_crit=float(raw["b_crit"]),
            b_crit_ci=(float(low), math.inf if high is None else float(high)),
            b_simple=float(raw["b_simple"]),
            confidence=float(raw.get("confidence", 0.95)),
        )


@dataclass(frozen=True)
class RatioEstimate:
    """The running estimate of r = B_crit / B_simple, in log space.

    Attributes:
        log_ratio: the random-effects mean of log r (the prior's before any point).
        log_ratio_se: its standard error (``inf`` before any weighted point).
        tau2: between-point variance of log r (0 with fewer than two points).
        n: points with finite variance that entered the mean.
        confidence: level of :attr:`ratio_ci`.
    """

    log_ratio: float
    log_ratio_se: float
    tau2: float
    n: int
    confidence: float = 0.95

    @property
    def ratio(self) -> float:
        """r̂ = exp(mean log r)."""
        return math.exp(self.log_ratio)

    @property
    def prediction_sd(self) -> float:
        """sd of log r at a new point: √(se² + τ²) (the mean's error plus the drift)."""
        return math.sqrt(self.log_ratio_se**2 + self.tau2)

    @property
    def ratio_ci(self) -> tuple[float, float]:
        """Interval of r at a new point: exp(log r̂ ± z·√(se² + τ²))."""
        half = _z(self.confidence) * self.prediction_sd
        if not math.isfinite(half):
            return (0.0, math.inf)
        return (math.exp(self.log_ratio - half), math.exp(self.log_ratio + half))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "ratio_ci": [v if math.isfinite(v) else None for v in self.ratio_ci],
            "log_ratio": self.log_ratio,
            "log_ratio_se": self.log_ratio_se if math.isfinite(self.log_ratio_se) else None,
            "tau2": self.tau2,
            "n": self.n,
        }


def estimate_ratio(
    points: Sequence[CalibrationPoint], *, prior_ratio: float = 1.0, confidence: float = 0.95
) -> RatioEstimate:
    """The random-effects mean of log(B_crit/B_simple) over calibration points.

    With y_i = log r_i and v_i its variance (:attr:`CalibrationPoint.log_variance`),
    w_i = 1/v_i, the fixed-effect mean ȳ = Σw_i y_i / Σw_i, Cochran's
    Q = Σw_i (y_i − ȳ)², and τ² = max(0, (Q − (k − 1)) / (Σw_i − Σw_i²/Σw_i))
    (DerSimonian & Laird 1986); then w*_i = 1/(v_i + τ²), log r̂ = Σw*_i y_i / Σw*_i and
    se = 1/√Σw*_i. Points with infinite variance (no upper bound on B_crit) are left
    out. With none left, the estimate is the prior (B_crit ≈ B_simple, McCandlish et al.
    2018, eq. 2.11, by default) with an infinite standard error.

    References:
        DerSimonian & Laird 1986, Controlled Clinical Trials 7(3), 177-188.
        McCandlish et al. 2018, arXiv:1812.06162, eq. 2.11.

    Args:
        points: the calibration points so far, in any order.
        prior_ratio: the ratio to use before any point, > 0.
        confidence: level of the estimate's interval.

    Returns:
        A :class:`RatioEstimate`.
    """
    prior_ratio = _positive(prior_ratio, "prior_ratio")
    _z(confidence)
    used = [(p.log_ratio, p.log_variance) for p in points if math.isfinite(p.log_variance)]
    if not used:
        return RatioEstimate(math.log(prior_ratio), math.inf, 0.0, 0, confidence)
    weights = [1.0 / v for _, v in used]
    total = sum(weights)
    mean_fixed = sum(w * y for w, (y, _) in zip(weights, used, strict=True)) / total
    tau2 = 0.0
    if len(used) > 1:
        q = sum(w * (y - mean_fixed) ** 2 for w, (y, _) in zip(weights, used, strict=True))
        c = total - sum(w * w for w in weights) / total
        tau2 = max(0.0, (q - (len(used) - 1)) / c)
    star = [1.0 / (v + tau2) for _, v in used]
    mean = sum(w * y for w, (y, _) in zip(star, used, strict=True)) / sum(star)
    return RatioEstimate(mean, 1.0 / math.sqrt(sum(star)), tau2, len(used), confidence)


@dataclass(frozen=True)
class CalibratedBCrit:
    """B_crit(t) = r̂ · B_simple(t) with its interval.

    Attributes:
        b_crit: the calibrated estimate.
        b_crit_ci: (low, high) at the estimate's confidence.
        b_simple: the noise scale it scales.
        ratio: r̂.
    """

    b_crit: float
    b_crit_ci: tuple[float, float]
    b_simple: float
    ratio: float


def calibrated_b_crit(
    estimate: RatioEstimate,
    b_simple: float,
    b_simple_ci: tuple[float, float] | None = None,
) -> CalibratedBCrit:
    """B_crit = r̂ · B_simple, interval exp(log B_crit ± z·√(se² + τ² + v_s)).

    v_s is the variance of log B_simple read off ``b_simple_ci`` the same way as a
    calibration point's (0 when it is not given; ``inf`` when it is unbounded).

    Args:
        estimate: the ratio (:func:`estimate_ratio`).
        b_simple: the tracked noise scale now, > 0.
        b_simple_ci: its interval, optional.
    """
    b_simple = _positive(b_simple, "b_simple")
    var = estimate.prediction_sd**2
    if b_simple_ci is not None:
        low, high = b_simple_ci
        if low > 0 and math.isfinite(high) and high >= low:
            var += ((math.log(high) - math.log(low)) / (2 * _z(estimate.confidence))) ** 2
        else:
            var = math.inf
    b_crit = estimate.ratio * b_simple
    half = _z(estimate.confidence) * math.sqrt(var)
    ci = (
        (0.0, math.inf)
        if not math.isfinite(half)
        else (b_crit * math.exp(-half), b_crit * math.exp(half))
    )
    return CalibratedBCrit(b_crit, ci, b_simple, estimate.ratio)
