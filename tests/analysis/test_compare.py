"""compare_prediction, compare_fits and interval_ratio: ratios against closed forms, with intervals."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import (
    AnalysisError,
    FitComparison,
    PredictionComparison,
    compare_fits,
    compare_prediction,
    fit_scaling,
    interval_ratio,
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


# ----- interval_ratio (MOVER on the log scale) -----------------------------------------

Z95 = 1.959963984540054


def log_normal_interval(estimate, sigma):
    return (estimate * math.exp(-Z95 * sigma), estimate * math.exp(Z95 * sigma))


def test_interval_ratio_of_log_normal_intervals_adds_their_variances():
    # Symmetric intervals on the log scale: the ratio's interval is exactly
    # exp(log(a/b) ± z·sqrt(σa² + σb²)), the interval of a difference of two normals.
    ratio, (low, high) = interval_ratio(
        80.0, log_normal_interval(80.0, 0.3), 40.0, log_normal_interval(40.0, 0.4)
    )
    assert ratio == pytest.approx(2.0)
    assert (low, high) == pytest.approx(log_normal_interval(2.0, 0.5), rel=1e-12)


def test_interval_ratio_pairs_each_side_with_the_matching_end_of_the_other():
    # Lower side: the numerator's lower end with the denominator's upper end.
    ratio, (low, high) = interval_ratio(100.0, (50.0, 110.0), 10.0, (9.0, 40.0))
    assert low == pytest.approx(10.0 * math.exp(-math.hypot(math.log(2.0), math.log(4.0))))
    assert high == pytest.approx(10.0 * math.exp(math.hypot(math.log(1.1), math.log(10 / 9))))


def test_interval_ratio_opens_on_the_side_of_an_open_input():
    assert interval_ratio(8.0, (0.0, 10.0), 4.0, (3.0, 5.0))[1][0] == 0.0
    assert interval_ratio(8.0, (None, 10.0), 4.0, (3.0, 5.0))[1][0] == 0.0  # None: open
    assert interval_ratio(8.0, (6.0, 10.0), 4.0, (3.0, math.inf))[1][0] == 0.0
    assert interval_ratio(8.0, (6.0, math.inf), 4.0, (3.0, 5.0))[1] == pytest.approx(
        (8 / 4 * math.exp(-math.hypot(math.log(8 / 6), math.log(5 / 4))), math.inf)
    )


def test_interval_ratio_covers_the_true_ratio_at_the_inputs_level():
    # 4000 pairs of independent log-normal estimates with exact 95% intervals: MOVER is
    # exact here, so coverage is 95% up to binomial scatter (sd 0.34%; ±1.5% is 4.4 sd).
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(4000):
        a = 50.0 * math.exp(rng.normal(0, 0.2))
        b = 20.0 * math.exp(rng.normal(0, 0.5))
        _, (low, high) = interval_ratio(
            a, log_normal_interval(a, 0.2), b, log_normal_interval(b, 0.5)
        )
        covered += low <= 2.5 <= high
    assert abs(covered / 4000 - 0.95) < 0.015, covered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, (0.0, 1.0), 1.0, (0.5, 2.0)), "numerator"),
        ((1.0, (0.5, 2.0), -1.0, (-2.0, 0.0)), "denominator"),
        ((1.0, (2.0, 3.0), 1.0, (0.5, 2.0)), "numerator_ci must contain"),
        ((1.0, (0.5, 2.0), 1.0, 5.0), "denominator_ci must be a"),
    ],
)
def test_interval_ratio_names_the_bad_argument(args, message):
    with pytest.raises(AnalysisError, match=message):
        interval_ratio(*args)
