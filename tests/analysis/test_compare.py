"""compare_prediction and compare_fits: ratios against closed-form values, with intervals."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import (
    FitComparison,
    PredictionComparison,
    compare_fits,
    compare_prediction,
    fit_scaling,
)

LADDER = 2.0 ** np.arange(13)  # 1 ... 4096


def steps(s_min, b_crit, sigma=0.0, seed=0):
    noise = np.random.default_rng(seed).normal(0.0, sigma, LADDER.size)
    return s_min * (1.0 + b_crit / LADDER) * np.exp(noise)


def contains(interval, value, rel=1e-9):
    return interval[0] * (1 - rel) <= value <= interval[1] * (1 + rel)


@pytest.fixture(scope="module")
def exact_fit():
    return fit_scaling(LADDER, steps(1000.0, 300.0))


def test_prediction_ratio_on_an_exact_curve_is_b_simple_over_b_crit(exact_fit):
    result = compare_prediction(exact_fit, 600.0)
    assert result.ratio == pytest.approx(2.0, rel=1e-9)
    # Without an interval for B_simple, only B_crit's (here exact) uncertainty counts.
    assert contains(result.ratio_ci, 2.0)
    assert result.ratio_ci == pytest.approx((2.0, 2.0), rel=1e-9)
    assert result.agrees  # 2 is on the edge of [1/2, 2]


def test_prediction_interval_is_the_log_normal_interval_of_b_simple_on_an_exact_fit(exact_fit):
    # B_crit is exact, so the ratio's interval is B_simple's log-normal interval / 300:
    # σ = max(ln(600/400), ln(900/600)) / 1.96 = ln(1.5) / 1.96, so the 95% interval is
    # 2·exp(±ln 1.5) = (1.333, 3.0). Its ends are Monte-Carlo quantiles of 1000 normal
    # draws: standard error ≈ sqrt(0.025·0.975/1000)/φ(1.96) ≈ 0.085 in z, i.e.
    # 0.085·σ ≈ 1.8% of the ratio; allow 6% (>3 standard errors).
    result = compare_prediction(exact_fit, 600.0, (400.0, 900.0))
    assert result.ratio == pytest.approx(2.0)
    assert result.ratio_ci[0] == pytest.approx(2.0 / 1.5, rel=0.06)
    assert result.ratio_ci[1] == pytest.approx(3.0, rel=0.06)
    assert result.agrees
    assert "within a factor of 2" in result.message


def test_prediction_far_from_the_measurement_does_not_agree(exact_fit):
    over = compare_prediction(exact_fit, 3000.0, (2500.0, 3600.0))
    assert over.ratio == pytest.approx(10.0)
    assert contains(over.ratio_ci, 10.0)
    assert not over.agrees
    assert "overestimates" in over.message
    under = compare_prediction(exact_fit, 30.0, [25.0, 36.0])
    assert not under.agrees and "underestimates" in under.message


def test_prediction_interval_that_reaches_the_band_agrees(exact_fit):
    # Ratio 3, but B_simple is so uncertain that the interval reaches below 2.
    result = compare_prediction(exact_fit, 900.0, (300.0, 2700.0))
    assert result.ratio_ci[0] < 2.0 and result.agrees


def test_prediction_interval_with_a_non_positive_lower_bound_uses_the_upper_side(exact_fit):
    result = compare_prediction(exact_fit, 600.0, (-50.0, 900.0))
    assert result.ratio_ci[0] == pytest.approx(2.0 / 1.5, rel=0.06)
    # None (an unbounded end, as JSON writes it) works the same way.
    unbounded = compare_prediction(exact_fit, 600.0, [None, 900.0])
    assert unbounded.ratio_ci == result.ratio_ci


def test_prediction_interval_covers_the_truth_on_a_noisy_curve():
    fit = fit_scaling(LADDER, steps(1000.0, 300.0, sigma=0.03, seed=11))
    result = compare_prediction(fit, 450.0, (380.0, 530.0))
    assert contains(result.ratio_ci, 450.0 / 300.0)
    assert result.ratio == pytest.approx(450.0 / fit.b_crit)


def test_fit_comparison_on_exact_curves_gives_the_closed_form_ratios(exact_fit):
    momentum = fit_scaling(LADDER, steps(800.0, 1200.0))
    result = compare_fits(exact_fit, momentum)
    assert result.b_crit_ratio == pytest.approx(4.0, rel=1e-9)
    assert result.s_min_ratio == pytest.approx(0.8, rel=1e-9)
    assert contains(result.b_crit_ratio_ci, 4.0)
    assert contains(result.s_min_ratio_ci, 0.8)
    assert "larger" in result.message and "smaller" in result.message


def test_fit_comparison_intervals_cover_the_true_ratios_on_noisy_curves():
    reference = fit_scaling(LADDER, steps(1000.0, 300.0, sigma=0.03, seed=1))
    other = fit_scaling(LADDER, steps(800.0, 1200.0, sigma=0.03, seed=2))
    result = compare_fits(reference, other)
    assert contains(result.b_crit_ratio_ci, 4.0)
    assert contains(result.s_min_ratio_ci, 0.8)
    assert result.b_crit_ratio_ci[0] > 1  # clearly larger, as it truly is


def test_fit_comparison_treats_the_two_fits_as_independent():
    # Comparing a fit with itself (same seed, same ladder: identical replicates) must
    # not pair replicate k with replicate k (that would give a zero-width interval at
    # 1): independent draws give a log-width about √2 times that of one fit.
    fit = fit_scaling(LADDER, steps(1000.0, 300.0, sigma=0.03, seed=3))
    result = compare_fits(fit, fit)
    assert result.b_crit_ratio == 1.0 and contains(result.b_crit_ratio_ci, 1.0)
    single = math.log(fit.b_crit_ci[1] / fit.b_crit_ci[0])
    paired = math.log(result.b_crit_ratio_ci[1] / result.b_crit_ratio_ci[0])
    assert paired == pytest.approx(math.sqrt(2) * single, rel=0.15)
    assert "no clear difference" in result.message


def test_comparisons_to_dict_are_plain_json(exact_fit):
    prediction = compare_prediction(exact_fit, 600.0, (400.0, 900.0))
    comparison = compare_fits(exact_fit, exact_fit)
    assert isinstance(prediction, PredictionComparison)
    assert isinstance(comparison, FitComparison)
    for result in (prediction, comparison, compare_prediction(exact_fit, 600.0)):
        data = result.to_dict()
        assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert prediction.to_dict()["b_simple_ci"] == [400.0, 900.0]
    assert type(prediction.to_dict()["agrees"]) is bool
    assert compare_prediction(exact_fit, 600.0).to_dict()["b_simple_ci"] is None
