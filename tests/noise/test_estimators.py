"""The pure noise-scale statistics: unbiasedness, ratio-last, Fieller's interval, EMA.

Gradients are simulated directly: a micro-batch of b examples has mean gradient
G + N(0, Σ/b) with Σ diagonal, so |G|² and tr(Σ) are known exactly. All randomness
comes from seeded ``numpy.random.Generator`` objects.
"""

import math

import numpy as np
import pytest

from batchlab.noise import (
    NoiseScaleStatistics,
    fieller_interval,
    grad_sq_norm_estimate,
    noise_scale_from_norms,
    trace_cov_estimate,
)

DIM = 20
B_SIMPLE_TRUE = 100.0


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A unit-norm G and per-coordinate noise std with tr(Σ) = B_SIMPLE_TRUE."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(DIM)
    g /= np.linalg.norm(g)
    std = np.sqrt(rng.uniform(0.2, 1.8, DIM))
    std *= math.sqrt(B_SIMPLE_TRUE / (std**2).sum())
    return g, std


def simulate_norms(
    rng: np.random.Generator, steps: int, k: int, b: int, g: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per step: mean squared norm of k micro-batch gradients, squared norm of their mean."""
    micro = g + rng.standard_normal((steps, k, g.size)) * std / math.sqrt(b)
    small = (micro**2).sum(-1).mean(-1)
    big = (micro.mean(1) ** 2).sum(-1)
    return small, big


def test_estimators_recover_exact_values_from_expected_norms():
    # E|G_B|² = |G|² + tr(Σ)/B: with |G|² = 2, tr(Σ) = 64, B_small = 8, B_big = 32.
    small, big = 2 + 64 / 8, 2 + 64 / 32
    assert grad_sq_norm_estimate(small, big, 8, 32) == pytest.approx(2.0)
    assert trace_cov_estimate(small, big, 8, 32) == pytest.approx(64.0)


def test_single_step_estimates_are_unbiased():
    g, std = _problem()
    small, big = simulate_norms(np.random.default_rng(1), 20_000, 4, 16, g, std)
    gs = grad_sq_norm_estimate(small, big, 16, 64)
    ts = trace_cov_estimate(small, big, 16, 64)
    # Means of 20k iid estimates: within 4 standard errors of the truth.
    assert abs(gs.mean() - 1.0) < 4 * gs.std() / math.sqrt(gs.size)
    assert abs(ts.mean() - B_SIMPLE_TRUE) < 4 * ts.std() / math.sqrt(ts.size)


def test_ratio_of_single_step_estimates_is_biased_but_ratio_of_averages_is_not():
    # b = 64, k = 4: the per-step |G|² estimate has a coefficient of variation of
    # about 0.3 and is never <= 0 here, so E[t/g] is finite; to second order
    # E[t/g] ≈ (E t/E g)(1 + CV_g² − cov(t,g)/(E t E g)), about 14% too high.
    g, std = _problem()
    b, k, steps = 64, 4, 4000
    small, big = simulate_norms(np.random.default_rng(0), steps, k, b, g, std)
    gs = grad_sq_norm_estimate(small, big, b, k * b)
    ts = trace_cov_estimate(small, big, b, k * b)
    assert gs.min() > 0
    single_ratios = ts / gs
    ratio_se = single_ratios.std() / math.sqrt(steps)
    assert single_ratios.mean() - B_SIMPLE_TRUE > 10 * ratio_se
    assert single_ratios.mean() > 1.08 * B_SIMPLE_TRUE

    estimate = noise_scale_from_norms(small, big, b, k * b)
    # Its 95% interval half-width is ~1.96 SE; the truth is within 3 SE of the estimate.
    half_width = (estimate.b_simple_ci[1] - estimate.b_simple_ci[0]) / 2
    assert abs(estimate.b_simple - B_SIMPLE_TRUE) < 3 * half_width / 1.96
    assert estimate.b_simple_ci[0] < B_SIMPLE_TRUE < estimate.b_simple_ci[1]


@pytest.mark.parametrize(
    ("b", "steps"),
    [(16, 30), (4, 50)],  # per-step |G|² CV ~0.8 and ~5 (often negative)
)
def test_fieller_interval_covers_truth_in_95_percent_of_simulations(b, steps):
    g, std = _problem()
    rng = np.random.default_rng(2)
    repeats, covered = 300, 0
    for _ in range(repeats):
        small, big = simulate_norms(rng, steps, 4, b, g, std)
        low, high = noise_scale_from_norms(small, big, b, 4 * b).b_simple_ci
        covered += low <= B_SIMPLE_TRUE <= high
    # Binomial(300, 0.95) has SD 1.3%: 0.91..0.99 is about ±3 SD around 0.95.
    assert 0.91 <= covered / repeats <= 0.99


def test_fieller_interval_reduces_to_delta_method_when_denominator_is_precise():
    # Relative SE of the denominator 1e-4: Fieller == mean ± q·SE(ratio) to first order.
    mean_t, mean_g, var_t, var_g, cov = 100.0, 1.0, 4.0, 1e-8, 0.0
    low, high = fieller_interval(mean_t, mean_g, var_t, var_g, cov, dof=1e6)
    assert low == pytest.approx(100 - 1.959964 * 2, rel=1e-4)
    assert high == pytest.approx(100 + 1.959964 * 2, rel=1e-4)


def test_fieller_interval_is_unbounded_when_grad_sq_norm_is_indistinguishable_from_zero():
    # |G|² mean 0.1 with SE 0.1: zero is not excluded, so B_simple has no upper bound.
    low, high = fieller_interval(10.0, 0.1, 0.25, 0.01, 0.0, dof=50)
    assert high == math.inf
    assert 0 < low < 10.0 / 0.1
    # Neither mean distinguishable from zero: nothing can be excluded.
    assert fieller_interval(0.1, 0.1, 1.0, 1.0, 0.0, dof=50) == (-math.inf, math.inf)


def test_fieller_interval_is_undefined_with_one_step():
    low, high = fieller_interval(1.0, 1.0, 0.0, 0.0, 0.0, dof=0)
    assert math.isnan(low) and math.isnan(high)


def test_negative_grad_sq_norm_average_is_reported_not_clipped():
    stats = NoiseScaleStatistics()
    stats.update_estimates(-1.0, 50.0)
    stats.update_estimates(-3.0, 70.0)
    assert stats.grad_sq_norm == -2.0
    assert stats.b_simple == -30.0
    assert stats.estimate().b_simple == -30.0


def test_running_statistics_match_batch_formulas():
    rng = np.random.default_rng(3)
    gs, ts = rng.normal(1.0, 0.5, 200), rng.normal(100.0, 20.0, 200) + 10 * rng.normal(size=200)
    stats = NoiseScaleStatistics()
    for gi, ti in zip(gs, ts, strict=True):
        stats.update_estimates(gi, ti)
    est = stats.estimate()
    assert est.grad_sq_norm == pytest.approx(gs.mean(), rel=1e-12)
    assert est.trace_cov == pytest.approx(ts.mean(), rel=1e-12)
    assert est.b_simple == pytest.approx(ts.mean() / gs.mean(), rel=1e-12)
    assert est.grad_sq_norm_se == pytest.approx(gs.std(ddof=1) / math.sqrt(200), rel=1e-10)
    cov = np.cov(np.stack([ts, gs])) / 200
    expected = fieller_interval(ts.mean(), gs.mean(), cov[0, 0], cov[1, 1], cov[0, 1], dof=199)
    assert est.b_simple_ci == pytest.approx(expected, rel=1e-9)


def test_ema_statistics_match_explicitly_weighted_averages():
    rng = np.random.default_rng(4)
    beta, n = 0.9, 60
    gs, ts = rng.normal(1.0, 0.3, n), rng.normal(50.0, 5.0, n)
    stats = NoiseScaleStatistics(ema_decay=beta)
    for gi, ti in zip(gs, ts, strict=True):
        stats.update_estimates(gi, ti)
    w = beta ** np.arange(n - 1, -1, -1)
    mean_g, mean_t = np.average(gs, weights=w), np.average(ts, weights=w)
    assert stats.grad_sq_norm == pytest.approx(mean_g, rel=1e-12)
    assert stats.trace_cov == pytest.approx(mean_t, rel=1e-12)
    assert stats.n_effective == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-12)
    # Variance of the weighted mean with reliability weights: Σw²/(Σw)² · unbiased var.
    var_g = np.sum(w * (gs - mean_g) ** 2) / (w.sum() - (w**2).sum() / w.sum())
    expected_se = math.sqrt(var_g * (w**2).sum() / w.sum() ** 2)
    assert stats.estimate().grad_sq_norm_se == pytest.approx(expected_se, rel=1e-10)


@pytest.mark.parametrize("ema_decay", [None, 0.9, 0.0])
@pytest.mark.parametrize("shape", [(), (3,)])
def test_update_many_equals_step_by_step_updates(ema_decay, shape):
    rng = np.random.default_rng(5)
    gs, ts = rng.normal(1.0, 0.3, (50, *shape)), rng.normal(50.0, 5.0, (50, *shape))
    one, many = (NoiseScaleStatistics(ema_decay=ema_decay, shape=shape) for _ in range(2))
    for gi, ti in zip(gs, ts, strict=True):
        one.update_estimates(gi, ti)
    for chunk in (slice(0, 1), slice(1, 20), slice(20, 50)):  # merged in uneven chunks
        many.update_many(gs[chunk], ts[chunk])
    assert many.n == one.n == 50
    index = () if not shape else 1
    a, b = one.estimate(index), many.estimate(index)
    assert b.grad_sq_norm == pytest.approx(a.grad_sq_norm, rel=1e-12)
    assert b.trace_cov == pytest.approx(a.trace_cov, rel=1e-12)
    if ema_decay != 0.0:  # with β = 0 only the last step counts: no interval
        assert b.b_simple_ci == pytest.approx(a.b_simple_ci, rel=1e-9)
        assert b.grad_sq_norm_se == pytest.approx(a.grad_sq_norm_se, rel=1e-9)


def test_ema_follows_a_change_in_noise_scale():
    stats_plain, stats_ema = NoiseScaleStatistics(), NoiseScaleStatistics(ema_decay=0.8)
    for step in range(200):
        trace = 10.0 if step < 100 else 40.0
        for stats in (stats_plain, stats_ema):
            stats.update_estimates(1.0, trace)
    assert stats_ema.b_simple == pytest.approx(40.0)
    assert stats_plain.b_simple == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("b_small", "b_big", "message"),
    [
        (32, 32, "b_big must be larger than b_small"),
        (64, 32, "b_small=64, b_big=32"),
        (0, 32, "b_small must be positive"),
    ],
)
def test_bad_batch_sizes_raise_value_error_naming_them(b_small, b_big, message):
    with pytest.raises(ValueError, match=message):
        grad_sq_norm_estimate(1.0, 1.0, b_small, b_big)


def test_bad_statistics_arguments_raise_value_error():
    with pytest.raises(ValueError, match="ema_decay"):
        NoiseScaleStatistics(ema_decay=1.0)
    with pytest.raises(ValueError, match="confidence"):
        NoiseScaleStatistics(confidence=95)
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        noise_scale_from_norms([1, 2, 3], [1, 2], 4, 16)


@pytest.mark.parametrize("shape", [(), (3,)])
def test_statistics_state_dict_round_trips_exactly_and_is_json_safe(shape):
    import json

    rng = np.random.default_rng(0)
    g = rng.uniform(1.0, 2.0, size=(20, *shape))
    t = rng.uniform(50.0, 80.0, size=(20, *shape))
    whole = NoiseScaleStatistics(ema_decay=0.9, shape=shape)
    whole.update_many(g, t)
    first = NoiseScaleStatistics(ema_decay=0.9, shape=shape)
    first.update_many(g[:12], t[:12])
    resumed = NoiseScaleStatistics(shape=shape)  # ema_decay comes from the state
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    resumed.update_many(g[12:], t[12:])
    assert resumed.ema_decay == 0.9 and resumed.n == whole.n
    np.testing.assert_allclose(resumed.b_simple, whole.b_simple, rtol=1e-12)
    for index in np.ndindex(shape):
        np.testing.assert_allclose(
            resumed.estimate(index).b_simple_ci, whole.estimate(index).b_simple_ci, rtol=1e-12
        )


def test_statistics_state_dict_errors_name_what_is_wrong():
    state = NoiseScaleStatistics().state_dict()
    with pytest.raises(ValueError, match="shape"):
        NoiseScaleStatistics(shape=(2,)).load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        NoiseScaleStatistics().load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="missing m_tg"):
        NoiseScaleStatistics().load_state_dict({k: v for k, v in state.items() if k != "m_tg"})
    with pytest.raises(ValueError, match=r"state\['n'\] must be an integer >= 0, got -1"):
        NoiseScaleStatistics().load_state_dict({**state, "n": -1})
    with pytest.raises(ValueError, match=r"state\['mean_g'\] must be a number, got 'x'"):
        NoiseScaleStatistics().load_state_dict({**state, "mean_g": "x"})
    with pytest.raises(ValueError, match=r"state\['m_gg'\] must be a list of 2 numbers"):
        NoiseScaleStatistics(shape=(2,)).load_state_dict(
            {**NoiseScaleStatistics(shape=(2,)).state_dict(), "m_gg": [1.0]}
        )
    with pytest.raises(TypeError, match="must be a dict from state_dict"):
        NoiseScaleStatistics().load_state_dict([("n", 0)])
