"""Rungs that ran out of budget enter fit_scaling as censored lower bounds S(B) > budget."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import AnalysisError, fit_scaling
from batchlab.analysis._fit import Data, _fit_point
from batchlab.analysis._fit_many import fit_many

S_MIN, B_CRIT = 100.0, 128.0
LADDER = 2.0 ** np.arange(4, 12)  # 16 ... 2048


def exact_steps(batch_sizes):
    return S_MIN * (1.0 + B_CRIT / np.asarray(batch_sizes, dtype=float))


def test_a_bound_the_curve_already_clears_changes_nothing():
    steps = [None, *exact_steps(LADDER[1:])]  # B=16 unreached, with a budget far below S(16)
    budgets = [0.5 * exact_steps(LADDER[0]), *[None] * (LADDER.size - 1)]
    dropped = fit_scaling(LADDER, steps, n_bootstrap=0)
    censored = fit_scaling(LADDER, steps, budgets=budgets, n_bootstrap=0)
    assert censored.s_min == pytest.approx(dropped.s_min, rel=1e-9)
    assert censored.b_crit == pytest.approx(dropped.b_crit, rel=1e-9)
    assert censored.unreached == (16,)
    assert censored.lower_bounds == (pytest.approx(0.5 * exact_steps(16.0)),)


def test_a_violated_bound_pulls_the_curve_up_to_it():
    # Exact rungs 16..1024; B=2048 never got there in 2·S(2048) steps: S(2048) is larger
    # than the rest of the curve says. The censored fit moves towards the bound.
    steps = [*exact_steps(LADDER[:-1]), None]
    bound = 2.0 * exact_steps(LADDER[-1])
    budgets = [None] * (LADDER.size - 1) + [bound]
    dropped = fit_scaling(LADDER, steps, n_bootstrap=0)
    censored = fit_scaling(LADDER, steps, budgets=budgets, n_bootstrap=0)
    assert dropped.predict_steps(2048.0) == pytest.approx(exact_steps(2048.0), rel=1e-6)
    assert dropped.predict_steps(2048.0) < censored.predict_steps(2048.0) < bound
    assert censored.s_min > dropped.s_min
    # Budgets of rungs that reached the target are not bounds: they change nothing.
    all_budgets = fit_scaling(LADDER, steps, budgets=[bound] * LADDER.size, n_bootstrap=0)
    assert all_budgets.s_min == pytest.approx(censored.s_min, rel=1e-12)


def test_vectorised_refit_solves_the_same_censored_problem_as_the_point_fit():
    # The bootstrap's refits and the point fit minimise the same one-sided loss.
    log_b = np.log(LADDER)
    censored = np.arange(LADDER.size) >= LADDER.size - 2
    bounds = (log_b[0] - math.log(1e4), log_b[-1] + math.log(1e4))
    rng = np.random.default_rng(0)
    curves = np.log(exact_steps(LADDER))[None, :] + rng.normal(0, 0.1, (20, LADDER.size))
    curves[:, censored] += 0.3  # bounds above the curve: active in most rows
    a, c = fit_many(log_b, curves, np.full(20, 4.0), np.full(20, 4.0), bounds, 0.1, 200, censored)
    for k in range(20):
        a_ref, c_ref = _fit_point(Data(log_b, curves[k], censored), bounds, 0.1)
        assert a[k] == pytest.approx(a_ref, abs=1e-5)
        assert c[k] == pytest.approx(c_ref, abs=1e-5)


def test_censoring_removes_part_of_the_bias_of_dropping_unreached_rungs():
    # A fixed example budget (1.05·E(1024)): the large rungs reach the target only when
    # their noise is lucky, so dropping the others biases S_min low. Over the same
    # 200 noisy ladders (10% log-normal noise), the censored estimate of log S_min is
    # higher; the paired difference must exceed 3 of its standard errors.
    rng = np.random.default_rng(0)
    budgets = 1.05 * exact_steps(1024.0) * 1024.0 / LADDER
    differences = []
    for _ in range(200):
        observed = exact_steps(LADDER) * np.exp(rng.normal(0.0, 0.1, LADDER.size))
        steps = [float(s) if s <= b else None for s, b in zip(observed, budgets, strict=True)]
        dropped = fit_scaling(LADDER, steps, n_bootstrap=0)
        censored = fit_scaling(LADDER, steps, budgets=list(budgets), n_bootstrap=0)
        differences.append(math.log(censored.s_min / dropped.s_min))
    d = np.asarray(differences)
    assert d.mean() > 3.0 * d.std(ddof=1) / math.sqrt(d.size)


def test_bootstrap_intervals_with_bounds_contain_the_estimate():
    rng = np.random.default_rng(1)
    observed = exact_steps(LADDER) * np.exp(rng.normal(0.0, 0.05, LADDER.size))
    steps = [*observed[:-2], None, None]
    budgets = [None] * (LADDER.size - 2) + [1.2 * observed[-2], 1.2 * observed[-1]]
    fit = fit_scaling(LADDER, steps, budgets=budgets, n_bootstrap=400, seed=0)
    assert fit.b_crit_ci[0] <= fit.b_crit <= fit.b_crit_ci[1]
    assert fit.s_min_ci[0] <= fit.s_min <= fit.s_min_ci[1]
    data = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert data["unreached"] == [1024, 2048]
    assert data["lower_bounds"] == pytest.approx(budgets[-2:])


def test_unreached_rung_without_a_budget_is_recorded_as_having_no_bound():
    steps = [*exact_steps(LADDER[:-1]), None]
    data = fit_scaling(LADDER, steps, budgets=[None] * LADDER.size, n_bootstrap=0).to_dict()
    assert data["lower_bounds"] == [None]


@pytest.mark.parametrize(
    ("budgets", "message"),
    [
        ([100.0], "batch_sizes and budgets must have the same length"),
        ("100", "budgets must be a sequence"),
        ([-1.0] + [None] * 7, r"budgets\[0\]"),
        ([math.inf] + [None] * 7, r"budgets\[0\]"),
    ],
)
def test_bad_budgets_are_named(budgets, message):
    with pytest.raises(AnalysisError, match=message):
        fit_scaling(LADDER, exact_steps(LADDER), budgets=budgets)
