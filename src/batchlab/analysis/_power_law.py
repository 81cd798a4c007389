"""Power laws across studies: y = a·x^k in log-log space, with the exponent's interval.

How the critical batch size grows with the data seen D (or the model size N) is a
power law B_crit ∝ D^k (Kaplan et al. 2020, Sec. 5.1 and eq. 5.6: B_crit(L) ∝
L^{-1/α_B}; Zhang et al. 2024, Sec. 4: B_crit grows with D, not with N, at fixed D).
Each point is one study's B_crit (with its interval); the fit is least squares of
log y on log x, which is the maximum-likelihood fit when the errors are log-normal,
as a ratio-like quantity's are.

The exponent's interval is the union of two:

* the *residual* interval: Student's t with n − 2 degrees of freedom on the slope's
  standard error (exact for independent log-normal scatter about the law; it is
  how far the points stray from a power law);
* the *measurement* interval, when each y has its own interval: a parametric
  bootstrap that redraws every log y from a normal with that interval (σ = half
  its log width / z), refits, and takes the percentile interval of the slopes.

Either alone can be too narrow: points that lie on a line by luck hide their own
measurement error, and exact measurements can still stray from a power law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._checks import AnalysisError


@dataclass(frozen=True)
class PowerLawFit:
    """y = prefactor · x^exponent, fitted to ``len(x)`` points in log-log space.

    Attributes:
        exponent: the slope k of log y on log x.
        exponent_ci: its interval at ``confidence`` (the union of the residual and,
            with per-point intervals, the measurement interval; see the module).
        residual_ci: the residual (Student-t) interval alone (``None`` with 2 points).
        measurement_ci: the measurement (bootstrap) interval alone (``None`` without
            per-point intervals).
        prefactor: a, so that y = a · x^k.
        scatter: the residual standard deviation of log y (natural log).
        x, y: the points.
        confidence: the intervals' coverage.
    """

    exponent: float
    exponent_ci: tuple[float, float] | None
    residual_ci: tuple[float, float] | None
    measurement_ci: tuple[float, float] | None
    prefactor: float
    scatter: float
    x: tuple[float, ...]
    y: tuple[float, ...]
    confidence: float

    def predict(self, x: float | Sequence[float]) -> np.ndarray:
        """The law's y at ``x``."""
        return self.prefactor * np.asarray(x, dtype=float) ** self.exponent

    @property
    def message(self) -> str:
        """One line: the exponent and its interval."""
        text = f"y ∝ x^{self.exponent:.3g}"
        if self.exponent_ci is not None:
            low, high = self.exponent_ci
            text += f" ({self.confidence:.0%} interval {low:.3g} to {high:.3g})"
        return text + f" over {len(self.x)} points"

    def to_dict(self) -> dict[str, Any]:
        def pair(ci: tuple[float, float] | None) -> list[float] | None:
            return None if ci is None else [float(ci[0]), float(ci[1])]

        return {
            "exponent": self.exponent,
            "exponent_ci": pair(self.exponent_ci),
            "residual_ci": pair(self.residual_ci),
            "measurement_ci": pair(self.measurement_ci),
            "prefactor": self.prefactor,
            "scatter": self.scatter,
            "x": list(self.x),
            "y": list(self.y),
            "confidence": self.confidence,
        }


def _positive(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise AnalysisError(f"{name} must be a flat sequence of numbers")
    if not (np.all(np.isfinite(array)) and np.all(array > 0)):
        raise AnalysisError(f"{name} must be finite and positive, got {list(values)}")
    return array


def _slopes(log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of ``log_y`` (…, n) on ``log_x`` (n,)."""
    centred = log_x - log_x.mean()
    return (log_y - log_y.mean(axis=-1, keepdims=True)) @ centred / (centred @ centred)


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    *,
    y_ci: Sequence[tuple[float, float] | None] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 4000,
    seed: int = 0,
) -> PowerLawFit:
    """Fit y = a · x^k by least squares in log-log space, with the exponent's interval.

    References:
        Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
        arXiv:2001.08361, Sec. 5.1 (B_crit as a power law); Zhang et al. 2024, "How
        Does Critical Batch Size Scale in Pre-training?", arXiv:2410.21676, Sec. 4.

    Args:
        x: positive abscissae, at least two distinct (e.g. tokens seen per study).
        y: positive values (e.g. each study's B_crit).
        y_ci: optional per-point intervals ``(low, high)`` of y at ``confidence``
            (``None`` entries: exact), for the measurement interval.
        confidence: the intervals' coverage, in (0, 1).
        n_bootstrap: replicates of the measurement interval.
        seed: its random seed.

    Raises:
        AnalysisError: fewer than two points, non-positive or non-finite values, all
            x equal, mismatched lengths, or an interval that does not contain its y.
    """
    xs, ys = _positive(x, "x"), _positive(y, "y")
    if len(xs) != len(ys):
        raise AnalysisError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    if len(xs) < 2 or np.ptp(np.log(xs)) == 0:
        raise AnalysisError("a power law needs at least two points with different x")
    if not 0 < confidence < 1:
        raise AnalysisError(f"confidence must be in (0, 1), got {confidence}")
    log_x, log_y = np.log(xs), np.log(ys)
    slope = float(_slopes(log_x, log_y))
    intercept = float(log_y.mean() - slope * log_x.mean())
    n = len(xs)
    residuals = log_y - (intercept + slope * log_x)
    dof = n - 2
    scatter = float(math.sqrt(residuals @ residuals / dof)) if dof > 0 else math.nan
    residual_ci = None
    if dof > 0:
        centred = log_x - log_x.mean()
        half = stats.t.ppf(0.5 + confidence / 2, dof) * scatter / math.sqrt(centred @ centred)
        residual_ci = (slope - half, slope + half)
    measurement_ci = None
    if y_ci is not None:
        measurement_ci = _measurement_interval(
            log_x, ys, y_ci, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed
        )
    parts = [ci for ci in (residual_ci, measurement_ci) if ci is not None]
    exponent_ci = (min(ci[0] for ci in parts), max(ci[1] for ci in parts)) if parts else None
    return PowerLawFit(
        exponent=slope,
        exponent_ci=exponent_ci,
        residual_ci=residual_ci,
        measurement_ci=measurement_ci,
        prefactor=math.exp(intercept),
        scatter=scatter,
        x=tuple(float(v) for v in xs),
        y=tuple(float(v) for v in ys),
        confidence=confidence,
    )


def _measurement_interval(
    log_x: np.ndarray,
    ys: np.ndarray,
    y_ci: Sequence[tuple[float, float] | None],
    *,
    confidence: float,
    n_bootstrap: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile interval of the slope when each log y is redrawn within its interval."""
    if len(y_ci) != len(ys):
        raise AnalysisError(f"y_ci must have one entry per point, got {len(y_ci)} for {len(ys)}")
    z = stats.norm.ppf(0.5 + confidence / 2)
    sigma = np.zeros(len(ys))
    for i, (value, ci) in enumerate(zip(ys, y_ci, strict=True)):
        if ci is None:
            continue
        low, high = (float(c) for c in ci)
        if not (0 < low <= value <= high and math.isfinite(high)):
            raise AnalysisError(f"y_ci[{i}] = {ci} must be a positive interval containing {value}")
        sigma[i] = (math.log(high) - math.log(low)) / (2 * z)
    draws = np.random.default_rng(seed).standard_normal((n_bootstrap, len(ys)))
    slopes = _slopes(log_x, np.log(ys) + draws * sigma)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(slopes, [alpha, 1 - alpha])
    return float(low), float(high)
