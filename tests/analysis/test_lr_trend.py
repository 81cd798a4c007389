"""lr_trend: exponents of exact power laws, overall and within each scaling regime."""

import json

import numpy as np
import pytest

from batchlab.analysis import LRTrend, lr_trend, scaling_regimes

LADDER = [2**k for k in range(14)]  # 1 ... 8192


def exact_regimes():
    """Regimes of S = 100 (1 + 300/B): perfect 1–64, diminishing 128–1024, maximal 2048–8192."""
    return scaling_regimes(LADDER, [100.0 * (1 + 300.0 / b) for b in LADDER])


def test_lr_proportional_to_batch_size_has_exponent_one_and_reads_as_the_linear_rule():
    trend = lr_trend(LADDER, [0.1 * b / 256 for b in LADDER])
    assert trend.exponent == pytest.approx(1.0, abs=1e-12)
    assert trend.rule == "linear"
    assert "linear rule" in trend.message
    assert trend.per_regime == {}


def test_lr_proportional_to_sqrt_batch_size_has_exponent_one_half():
    trend = lr_trend(LADDER, [0.3 * np.sqrt(b) for b in LADDER])
    assert trend.exponent == pytest.approx(0.5, abs=1e-12)
    assert trend.rule == "square-root"
    assert "square-root rule" in trend.message


def test_flat_lr_follows_neither_rule():
    trend = lr_trend(LADDER, [0.5] * len(LADDER))
    assert trend.exponent == pytest.approx(0.0, abs=1e-12)
    assert trend.rule is None
    assert "neither rule" in trend.message


def test_per_regime_slopes_of_a_piecewise_power_law():
    # Shallue et al.'s picture: LR ∝ B in perfect scaling, ∝ √B in diminishing
    # returns, constant in maximal parallelism (continuous at the joins).
    def lr(b):
        if b <= 64:
            return 1e-3 * b
        if b <= 1024:
            return 1e-3 * 64 * np.sqrt(b / 64)
        return 1e-3 * 64 * np.sqrt(1024 / 64)

    trend = lr_trend(LADDER, [lr(b) for b in LADDER], regimes=exact_regimes())
    assert trend.per_regime["perfect"] == pytest.approx(1.0, abs=1e-12)
    assert trend.per_regime["diminishing"] == pytest.approx(0.5, abs=1e-12)
    assert trend.per_regime["maximal"] == pytest.approx(0.0, abs=1e-12)
    assert trend.per_regime_rule == {
        "perfect": "linear",
        "diminishing": "square-root",
        "maximal": None,
    }
    assert "linear rule holds in perfect scaling but breaks in" in trend.message
    # The overall slope is some average of the three and follows neither picture well.
    assert 0.3 < trend.exponent < 0.8


def test_per_regime_slope_needs_two_rungs_in_the_regime():
    sizes = [16, 32, 64, 128, 2048]  # one rung in diminishing returns, one in maximal
    trend = lr_trend(sizes, [1e-3 * b for b in sizes], regimes=exact_regimes())
    assert trend.per_regime["perfect"] == pytest.approx(1.0)
    assert trend.per_regime["diminishing"] is None
    assert trend.per_regime["maximal"] is None


def test_regimes_may_be_given_as_their_dict():
    regimes = exact_regimes()
    lrs = [0.01 * b**0.7 for b in LADDER]
    from_object = lr_trend(LADDER, lrs, regimes=regimes)
    from_dict = lr_trend(LADDER, lrs, regimes=regimes.to_dict())
    assert from_object.per_regime == from_dict.per_regime


def test_exponent_standard_error_reflects_scatter():
    rng = np.random.default_rng(0)
    lrs = [0.01 * b * np.exp(rng.normal(0, 0.2)) for b in LADDER]
    trend = lr_trend(LADDER, lrs)
    # OLS standard error of a slope: σ / sqrt(Σ(x - x̄)²) with x = ln B; here σ = 0.2.
    x = np.log(LADDER)
    expected = 0.2 / np.sqrt(((x - x.mean()) ** 2).sum())
    assert trend.exponent_se == pytest.approx(expected, rel=0.5)
    assert abs(trend.exponent - 1) < 4 * expected
    assert lr_trend([1, 2], [0.1, 0.2]).exponent_se is None


def test_lr_trend_to_dict_is_plain_json():
    trend = lr_trend(
        np.array(LADDER), np.array([0.01 * b for b in LADDER]), regimes=exact_regimes()
    )
    assert isinstance(trend, LRTrend)
    data = trend.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert type(data["exponent"]) is float
    assert isinstance(data["message"], str)
