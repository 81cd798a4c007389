"""``fit_power_law`` against closed forms: an exact law, the t-interval's coverage, the
measurement interval's width, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis import AnalysisError, fit_power_law


def test_an_exact_power_law_is_recovered_exactly():
    x = [1e8, 3e8, 1e9, 3e9, 1e10]
    fit = fit_power_law(x, [3.0 * v**0.5 for v in x])
    assert fit.exponent == pytest.approx(0.5, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-9)
    assert fit.exponent_ci == pytest.approx((0.5, 0.5), abs=1e-9)
    assert fit.predict([4e10]) == pytest.approx([3.0 * 2e5])
    assert "x^0.5" in fit.message and fit.to_dict()["exponent"] == fit.exponent


def test_the_residual_interval_covers_the_true_exponent_at_its_nominal_rate():
    # Log-normal scatter about y = x^0.4: the t-interval is exact, so over R fits its
    # coverage is Binomial(R, 0.95)/R; 3 standard deviations of that is the tolerance.
    rng = np.random.default_rng(7)
    x = np.geomspace(1e3, 1e6, 6)
    replicates = 600
    covered = 0
    for _ in range(replicates):
        y = x**0.4 * np.exp(0.2 * rng.standard_normal(len(x)))
        low, high = fit_power_law(x, y).residual_ci
        covered += low <= 0.4 <= high
    tolerance = 3 * math.sqrt(0.95 * 0.05 / replicates)
    assert abs(covered / replicates - 0.95) <= tolerance


def test_the_measurement_interval_is_the_slopes_standard_error_from_the_points_intervals():
    # Points exactly on the law, each with a 95% interval of log half-width w: the
    # slope's standard error is σ/√Sxx with σ = w / z, so the interval's half-width is
    # z σ/√Sxx = w/√Sxx. 4000 draws pin a 95% quantile to about 2%; 5% is the tolerance.
    x = np.geomspace(10, 1e4, 5)
    y = 2.0 * x**0.7
    w = 0.3
    fit = fit_power_law(x, y, y_ci=[(v * math.exp(-w), v * math.exp(w)) for v in y])
    sxx = float(np.sum((np.log(x) - np.log(x).mean()) ** 2))
    low, high = fit.measurement_ci
    assert (high - low) / 2 == pytest.approx(w / math.sqrt(sxx), rel=0.05)
    assert fit.exponent_ci == pytest.approx(fit.measurement_ci)  # no scatter: it decides


def test_exact_points_in_the_measurement_interval_add_nothing():
    x, y = [1.0, 10.0, 100.0], [1.0, 10.0, 100.0]
    fit = fit_power_law(x, y, y_ci=[None, None, None])
    assert fit.measurement_ci == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1.0], [1.0]), {}, "at least two points"),
        (([2.0, 2.0], [1.0, 3.0]), {}, "different x"),
        (([1.0, -2.0], [1.0, 3.0]), {}, "x must be finite and positive"),
        (([1.0, 2.0], [1.0, math.nan]), {}, "y must be finite and positive"),
        (([1.0, 2.0, 3.0], [1.0, 2.0]), {}, "same length"),
        (([1.0, 2.0], [1.0, 2.0]), {"confidence": 1.5}, "confidence"),
        (([1.0, 2.0], [1.0, 2.0]), {"y_ci": [(0.5, 2.0)]}, "one entry per point"),
        (([1.0, 2.0], [1.0, 2.0]), {"y_ci": [(1.5, 2.0), None]}, r"y_ci\[0\]"),
    ],
)
def test_bad_input_is_named(args, kwargs, match):
    with pytest.raises(AnalysisError, match=match):
        fit_power_law(*args, **kwargs)
