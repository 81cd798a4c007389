"""Bad inputs fail at the boundary with a ValueError that names the argument."""

import math

import pytest

from batchlab import BatchlabError
from batchlab.analysis import (
    AnalysisError,
    compare_fits,
    compare_prediction,
    fit_scaling,
    lr_trend,
    scaling_regimes,
)

SIZES = [16, 32, 64, 128, 256]
STEPS = [900.0, 480.0, 270.0, 165.0, 112.0]


@pytest.fixture(scope="module")
def fit():
    return fit_scaling(SIZES, STEPS, n_bootstrap=50)


@pytest.mark.parametrize(
    ("sizes", "steps", "match"),
    [
        ([16, 32], [900.0, 480.0], "at least 3 rungs that reached the target.*got 2"),
        (SIZES, [900.0, None, math.inf, math.nan, 112.0], "at least 3 rungs.*got 2"),
        ([0, 32, 64, 128, 256], STEPS, "batch_sizes must be positive"),
        ([-16, 32, 64, 128, 256], STEPS, "batch_sizes must be positive"),
        ([16, 32, math.inf, 128, 256], STEPS, "batch_sizes must be positive and finite"),
        ([16, 32, 32, 128, 256], STEPS, "batch_sizes must be strictly increasing"),
        ([16, 64, 32, 128, 256], STEPS, "batch_sizes must be strictly increasing"),
        (SIZES, STEPS[:4], "same length, got 5 and 4"),
        (SIZES, [900.0, 480.0, 0.0, 165.0, 112.0], "steps must be positive.*batch size 64"),
        (SIZES, [900.0, -480.0, 270.0, 165.0, 112.0], "steps must be positive"),
        (SIZES, [900.0, -math.inf, 270.0, 165.0, 112.0], "steps must be positive"),
        (SIZES, [900.0, "many", 270.0, 165.0, 112.0], r"steps\[1\] must be a number"),
        ("16,32", STEPS, "batch_sizes must be a sequence"),
    ],
)
def test_fit_scaling_rejects_bad_ladders(sizes, steps, match):
    with pytest.raises(ValueError, match=match):
        fit_scaling(sizes, steps)
    with pytest.raises(ValueError, match=match):
        scaling_regimes(sizes, steps)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bootstrap": -1}, "n_bootstrap must be an integer >= 0"),
        ({"n_bootstrap": 10.5}, "n_bootstrap must be an integer"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
        ({"confidence": 0}, r"confidence must be in \(0, 1\)"),
        ({"robust_scale": 0.0}, "robust_scale must be positive"),
    ],
)
def test_fit_scaling_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_scaling(SIZES, STEPS, **kwargs)


@pytest.mark.parametrize("tol", [0, -0.25, 1.0, 2.0, math.nan])
def test_scaling_regimes_rejects_a_tolerance_outside_zero_one(tol):
    with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):
        scaling_regimes(SIZES, STEPS, tol=tol)


@pytest.mark.parametrize(
    ("sizes", "lrs", "match"),
    [
        (SIZES, [0.1, 0.2, 0.0, 0.5, 0.8], "best_lrs must be positive.*batch size 64"),
        (SIZES, [0.1, -0.2, 0.3, 0.5, 0.8], "best_lrs must be positive"),
        (SIZES, [0.1, 0.2, math.nan, 0.5, 0.8], "best_lrs must be positive"),
        (SIZES, [0.1, 0.2, 0.3], "same length, got 5 and 3"),
        ([16], [0.1], "at least 2 rungs"),
        ([32, 16], [0.1, 0.2], "batch_sizes must be strictly increasing"),
        ([0, 16], [0.1, 0.2], "batch_sizes must be positive"),
    ],
)
def test_lr_trend_rejects_bad_inputs(sizes, lrs, match):
    with pytest.raises(ValueError, match=match):
        lr_trend(sizes, lrs)


def test_lr_trend_rejects_regimes_without_rung_lists():
    with pytest.raises(ValueError, match="regimes must have"):
        lr_trend(SIZES, [0.1, 0.2, 0.3, 0.4, 0.5], regimes={"perfect": [16]})


@pytest.mark.parametrize(
    ("b_simple", "ci", "match"),
    [
        (0.0, None, "b_simple must be positive"),
        (-40.0, None, "b_simple must be positive"),
        (math.inf, None, "b_simple must be positive and finite"),
        (40.0, (50.0, 80.0), r"b_simple_ci must contain b_simple \(40\)"),
        (40.0, (10.0,), r"b_simple_ci must be a \(low, high\) pair"),
        (40.0, (-1.0, math.inf), "b_simple_ci must have a finite positive bound"),
    ],
)
def test_compare_prediction_rejects_bad_predictions(fit, b_simple, ci, match):
    with pytest.raises(ValueError, match=match):
        compare_prediction(fit, b_simple, ci)


def test_compare_prediction_rejects_a_band_factor_of_one_or_less(fit):
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        compare_prediction(fit, 40.0, factor=1.0)


def test_comparisons_reject_objects_that_are_not_fits(fit):
    with pytest.raises(TypeError, match="fit must be a ScalingFit"):
        compare_prediction(fit.to_dict(), 40.0)
    with pytest.raises(TypeError, match="other must be a ScalingFit"):
        compare_fits(fit, None)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        compare_fits(fit, fit, confidence=95)


def test_analysis_errors_are_batchlab_errors():
    # The CLI turns BatchlabError into one line and exit code 2.
    with pytest.raises(AnalysisError) as info:
        fit_scaling([1, 2], [2.0, 1.0])
    assert isinstance(info.value, BatchlabError) and isinstance(info.value, ValueError)
