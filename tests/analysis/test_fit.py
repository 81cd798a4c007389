"""fit_scaling against synthetic curves S(B) = S_min (1 + B_crit / B) with known parameters."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import ScalingFit, fit_scaling
from batchlab.analysis._fit import Data, _fit_point
from batchlab.analysis._fit_many import fit_many

S_MIN, B_CRIT = 1000.0, 300.0
LADDER = 2.0 ** np.arange(13)  # 1 ... 4096: B_crit/300 to 14·B_crit, a typical study


def exact_steps(batch_sizes, s_min=S_MIN, b_crit=B_CRIT):
    return s_min * (1.0 + b_crit / np.asarray(batch_sizes, dtype=float))


def noisy_steps(seed, sigma=0.03, batch_sizes=LADDER):
    rng = np.random.default_rng(seed)
    return exact_steps(batch_sizes) * np.exp(rng.normal(0.0, sigma, len(batch_sizes)))


def covers(interval, value):
    return interval[0] <= value <= interval[1]


def test_noiseless_fit_recovers_s_min_and_b_crit():
    fit = fit_scaling(LADDER, exact_steps(LADDER))
    assert fit.s_min == pytest.approx(S_MIN, rel=0.01)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.01)
    assert fit.e_min == pytest.approx(S_MIN * B_CRIT, rel=0.01)
    # In fact to round-off, and the residuals vanish.
    assert fit.b_crit == pytest.approx(B_CRIT, rel=1e-9)
    assert max(abs(r) for r in fit.residuals) < 1e-9
    assert not fit.at_bound


@pytest.mark.parametrize(("s_min", "b_crit"), [(50.0, 8.0), (20_000.0, 2048.0), (3.0, 1e5)])
def test_noiseless_fit_recovers_parameters_across_scales(s_min, b_crit):
    sizes = np.geomspace(b_crit / 40, b_crit * 40, 8)
    fit = fit_scaling(sizes, exact_steps(sizes, s_min, b_crit))
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.b_crit == pytest.approx(b_crit, rel=1e-6)


def test_fit_with_three_percent_noise_is_within_ten_and_five_percent():
    # With 13 rungs and 3% log-normal scatter the fit's standard errors are about
    # 0.018 (log S_min) and 0.024 (log B_crit) (half-widths of the intervals / 1.96,
    # averaged over simulations), so 5% and 10% are ~2.8σ and ~4σ; the seed is fixed.
    fit = fit_scaling(LADDER, noisy_steps(seed=7))
    assert fit.s_min == pytest.approx(S_MIN, rel=0.05)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.10)


def test_bootstrap_intervals_cover_the_truth_on_a_seeded_noisy_curve():
    fit = fit_scaling(LADDER, noisy_steps(seed=7), seed=3)
    assert covers(fit.s_min_ci, S_MIN)
    assert covers(fit.b_crit_ci, B_CRIT)
    assert covers(fit.e_min_ci, S_MIN * B_CRIT)
    for interval, estimate in [
        (fit.s_min_ci, fit.s_min),
        (fit.b_crit_ci, fit.b_crit),
        (fit.e_min_ci, fit.e_min),
    ]:
        assert interval[0] < estimate < interval[1]


@pytest.mark.slow
def test_bootstrap_coverage_is_near_nominal_over_repeated_experiments():
    # 200 independent noisy ladders of 7 rungs (the small-ladder case where naive
    # percentile intervals undercover, ~90%). Each interval covers with probability
    # p = 0.95 if calibrated; the count over R = 200 repeats is Binomial(R, p), with
    # standard deviation sqrt(p(1-p)/R) = 0.0154 in coverage. Accept 3σ either side:
    # [0.904, 0.996] (a false alarm per quantity has probability ~0.3%).
    sizes = 2.0 ** np.arange(4, 11)
    repeats, nominal = 200, 0.95
    sd = math.sqrt(nominal * (1 - nominal) / repeats)
    hits = np.zeros(3)
    for k in range(repeats):
        fit = fit_scaling(sizes, noisy_steps(seed=1000 + k, batch_sizes=sizes), seed=k)
        hits += [
            covers(fit.s_min_ci, S_MIN),
            covers(fit.b_crit_ci, B_CRIT),
            covers(fit.e_min_ci, S_MIN * B_CRIT),
        ]
    coverage = hits / repeats
    assert np.all(coverage >= nominal - 3 * sd), coverage
    assert np.all(coverage <= nominal + 3 * sd), coverage


def test_bootstrap_coverage_quick_check_over_100_repeats():
    # Fast version of the check above: 100 ladders of 7 rungs, 200 replicates each.
    # Binomial sd at p = 0.95, R = 100 is 0.022; require coverage >= 0.95 - 3·0.022.
    sizes = 2.0 ** np.arange(4, 11)
    repeats = 100
    hits = np.zeros(2)
    for k in range(repeats):
        fit = fit_scaling(
            sizes, noisy_steps(seed=5000 + k, batch_sizes=sizes), seed=k, n_bootstrap=200
        )
        hits += [covers(fit.s_min_ci, S_MIN), covers(fit.b_crit_ci, B_CRIT)]
    assert np.all(hits / repeats >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / repeats)), hits


def test_rungs_that_never_reached_the_target_are_ignored():
    steps = list(exact_steps(LADDER))
    with_gaps = [None, *steps[1:5], math.inf, *steps[6:10], math.nan, *steps[11:]]
    fit = fit_scaling(LADDER, with_gaps)
    reached_only = fit_scaling(
        [b for b, s in zip(LADDER, with_gaps, strict=True) if s is not None and np.isfinite(s)],
        [s for s in with_gaps if s is not None and np.isfinite(s)],
    )
    assert fit.unreached == (1, 32, 1024)
    assert 32 not in fit.batch_sizes and len(fit.batch_sizes) == len(LADDER) - 3
    assert fit.b_crit == reached_only.b_crit and fit.s_min_ci == reached_only.s_min_ci
    assert fit.b_crit == pytest.approx(B_CRIT, rel=1e-9)


def test_one_bad_rung_moves_the_robust_fit_little():
    # A rung whose tuning failed (twice the steps) is an outlier of log 2 ≈ 0.69, far
    # beyond the soft-L1 scale 0.1, so it enters the loss roughly linearly: B_crit
    # moves ~1%, where least squares (a soft-L1 scale far above every residual)
    # moves it ~8%.
    steps = exact_steps(LADDER)
    steps[6] *= 2.0
    fit = fit_scaling(LADDER, steps)
    assert fit.s_min == pytest.approx(S_MIN, rel=0.03)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.03)
    assert fit.residuals[6] == pytest.approx(math.log(2.0), abs=0.03)
    least_squares = fit_scaling(LADDER, steps, robust_scale=100.0, n_bootstrap=0)
    assert abs(least_squares.b_crit / B_CRIT - 1) > 2 * abs(fit.b_crit / B_CRIT - 1)


def test_predictions_follow_the_fitted_curve_for_scalars_and_arrays():
    fit = fit_scaling(LADDER, exact_steps(LADDER))
    assert isinstance(fit.predict_steps(300), float)
    assert fit.predict_steps(300) == pytest.approx(2 * S_MIN)
    assert fit.predict_examples(300) == pytest.approx(2 * S_MIN * B_CRIT)
    grid = np.array([[1.0, 10.0], [1e3, 1e6]])
    np.testing.assert_allclose(fit.predict_steps(grid), exact_steps(grid), rtol=1e-9)
    np.testing.assert_allclose(fit.predict_examples(grid), grid * exact_steps(grid), rtol=1e-9)
    assert fit.predict_steps([1e12]) == pytest.approx([S_MIN])
    with pytest.raises(ValueError, match="batch_size must be positive"):
        fit.predict_steps(0)


def test_bootstrap_is_reproducible_from_its_seed():
    steps = noisy_steps(seed=1)
    first, again = fit_scaling(LADDER, steps, seed=5), fit_scaling(LADDER, steps, seed=5)
    other = fit_scaling(LADDER, steps, seed=6)
    assert first.b_crit_ci == again.b_crit_ci
    assert first.bootstrap_b_crit == again.bootstrap_b_crit
    assert first.b_crit_ci != other.b_crit_ci
    assert first.b_crit == other.b_crit  # the point estimate does not depend on the seed
    generator = fit_scaling(LADDER, steps, seed=np.random.default_rng(5))
    assert generator.b_crit_ci == first.b_crit_ci


def test_bootstrap_refit_converges_to_the_scipy_point_fit():
    # The vectorised refit of the replicates must solve the same problem as the
    # point fit: started far away, it lands on scipy's least_squares solution.
    log_b = np.log(LADDER)
    bounds = (log_b[0] - math.log(1e4), log_b[-1] + math.log(1e4))
    rng = np.random.default_rng(0)
    curves = np.log(exact_steps(LADDER))[None, :] + rng.normal(0, 0.08, (20, LADDER.size))
    a, c = fit_many(log_b, curves, np.full(20, 5.0), np.full(20, 2.0), bounds, 0.1, 200)
    for k in range(20):
        measured = Data(log_b=log_b, log_s=curves[k], censored=np.zeros(log_b.size, dtype=bool))
        a_ref, c_ref = _fit_point(measured, bounds, 0.1)
        assert a[k] == pytest.approx(a_ref, abs=1e-5)
        assert c[k] == pytest.approx(c_ref, abs=1e-5)


def test_curve_without_a_bend_is_flagged_and_keeps_the_identified_quantity():
    # S ∝ 1/B on every rung: all perfect scaling, only E_min is identified.
    perfect = fit_scaling(LADDER, 5e5 / LADDER)
    assert perfect.at_bound
    assert perfect.e_min == pytest.approx(5e5, rel=1e-3)
    assert perfect.b_crit_ci[1] == math.inf and perfect.s_min_ci[0] == 0.0
    # Flat: all maximal data parallelism, only S_min is identified.
    flat = fit_scaling(LADDER, np.full(LADDER.size, 250.0))
    assert flat.at_bound
    assert flat.s_min == pytest.approx(250.0, rel=1e-3)
    assert flat.b_crit_ci[0] == 0.0 and flat.e_min_ci[0] == 0.0


def test_no_bootstrap_gives_point_intervals():
    fit = fit_scaling(LADDER, noisy_steps(seed=1), n_bootstrap=0)
    assert fit.b_crit_ci == (fit.b_crit, fit.b_crit)
    assert fit.bootstrap_b_crit == ()


def test_to_dict_is_plain_json_without_replicates():
    fit = fit_scaling(list(LADDER.astype(int)), list(noisy_steps(seed=1)))
    data = fit.to_dict()
    json.dumps(data, allow_nan=False)
    assert "bootstrap_b_crit" not in data and "bootstrap_b_crit" not in repr(fit)
    assert data["batch_sizes"] == [int(b) for b in LADDER]
    assert all(type(v) is float for v in data["residuals"])
    assert type(data["b_crit"]) is float and type(data["b_crit_ci"][0]) is float
    # Unbounded interval ends become None, never inf.
    unbounded = fit_scaling(LADDER, 5e5 / LADDER).to_dict()
    assert unbounded["b_crit_ci"][1] is None
    json.dumps(unbounded, allow_nan=False)


def test_fit_is_a_frozen_dataclass():
    fit = fit_scaling(LADDER, exact_steps(LADDER))
    assert isinstance(fit, ScalingFit)
    with pytest.raises(AttributeError):
        fit.b_crit = 1.0  # type: ignore[misc]
