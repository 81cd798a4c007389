"""Per-rung intervals of the answer's table (issue [answer], items 1, 3 and 5): each
rung's steps-to-target from fresh seeds (the seed bootstrap) and from where between
two evaluations the target was crossed (the resolution), and the cost ratios
steps/S_min and examples/E_min with them. Checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis import batch_size_answer, fit_scaling, rung_steps_interval, seed_bootstrap
from batchlab.analysis._seed_bootstrap import rung_interval
from batchlab.results import RungResult, TrialRecord

LADDER = [16, 32, 64, 128, 256, 512, 1024]
S_MIN, B_CRIT = 100.0, 64.0


def exact_steps(batch_sizes):
    return [S_MIN * (1 + B_CRIT / b) for b in batch_sizes]


def trial(number, slot, steps, eval_steps, confirm_of=None):
    return TrialRecord(
        number=number,
        slot=slot,
        seed=number,
        params={"lr": 0.1},
        hparams={"lr": 0.1},
        status="reached" if steps is not None else "not_reached",
        steps_to_target=steps,
        reason=None,
        wall_time_s=1.0,
        curve=None
        if eval_steps is None
        else {"steps": eval_steps, "loss": [1.0] * len(eval_steps)},
        confirm_of=confirm_of,
    )


def test_a_trials_resolution_is_the_gap_to_the_evaluation_before_the_crossing():
    # Coarse every 10, dense (every 2, then 1) near the target: crossed in (25, 27].
    assert trial(0, 0, 27, [10, 20, 25, 26, 27]).resolution_steps == 1
    assert trial(0, 0, 25, [10, 20, 25, 26, 27]).resolution_steps == 5
    assert trial(0, 0, 10, [10, 20]).resolution_steps == 10  # first evaluation: from 0
    assert trial(0, 0, None, [10, 20]).resolution_steps is None  # never reached
    assert trial(0, 0, 20, None).resolution_steps is None  # no curve kept


def test_a_rungs_resolution_is_the_coarsest_of_the_runs_its_count_comes_from():
    rung = RungResult(
        batch_size=64,
        budget_steps=500,
        eval_every=10,
        trials_planned=4,
        trials_done=4,
        trials_running=0,
        steps_to_target=30,
        best_hparams={"lr": 0.1},
        best_trial=1,
        trials=[
            trial(0, 0, 20, [10, 20]),  # not the best point: its resolution is ignored
            trial(1, 1, 30, [10, 20, 28, 30]),  # 2
            trial(2, 1_000_000, 34, [10, 20, 30, 34], confirm_of=1),  # 4
            trial(3, 1_000_001, 40, [10, 20, 30, 40], confirm_of=0),  # other candidate
        ],
    )
    assert rung.resolution_steps == 4


def test_the_interval_reaches_one_resolution_below_the_count():
    assert rung_steps_interval(100.0, None, 7) == (93.0, 100.0)
    assert rung_steps_interval(100.0, (90.0, 120.0), 7) == (83.0, 120.0)
    assert rung_steps_interval(100.0, (104.0, 120.0), None) == (100.0, 120.0)  # widened
    assert rung_steps_interval(3.0, None, 5) == (1.0, 3.0)  # a count is at least 1 step


def test_a_rungs_seed_interval_matches_the_lower_median_of_three_draws():
    # Seeds (90, 100, 120): the lower median of 3 draws with replacement is 90 when at
    # least 2 draws are 90, with probability 7/27 > 2.5% (so the 2.5% quantile is 90);
    # likewise 120 with probability 7/27: the 95% interval is (90, 120).
    draws = np.sort(np.random.default_rng(0).choice([90.0, 100.0, 120.0], (4000, 3)), axis=1)
    assert rung_interval(draws[:, 1], 100.0, 0.95) == (90.0, 120.0)
    # (100, None, None): finite with probability 7/27 < 97.5%, so the top is unreached.
    assert rung_interval(np.array([100.0] * 26 + [math.inf] * 74), 100.0, 0.95) == (100.0, math.inf)
    assert rung_interval(np.full(10, math.inf), None, 0.95) is None


def test_seed_bootstrap_gives_each_resampled_rung_its_interval():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    spread = [
        [[s * 0.9, s, s * 1.2]] if b in (64, 256) else None
        for b, s in zip(LADDER, steps, strict=True)
    ]
    seeds = seed_bootstrap(fit, LADDER, spread, n_bootstrap=2000, seed=0)
    assert seeds is not None
    cis = dict(zip(LADDER, seeds.rung_steps_ci, strict=True))
    assert cis[32] is None and cis[1024] is None  # not resampled
    for b in (64, 256):
        s = exact_steps([b])[0]
        assert cis[b] == pytest.approx((0.9 * s, 1.2 * s))  # see the closed form above
    assert seeds.to_dict()["rung_steps_ci"][2] == pytest.approx([0.9 * 200.0, 1.2 * 200.0])


def test_cost_ratios_carry_the_rung_interval_over_the_fits():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=200)
    seeds_ci = [None, None, (180.0, 240.0), None, None, None, None]
    resolutions = [None, 4, 10, None, None, None, None]
    answer = batch_size_answer(LADDER, steps, fit, seeds_ci=seeds_ci, resolutions=resolutions)
    knee = next(r for r in answer.rungs if r.batch_size == 64)  # 200 steps: ratio 2
    assert knee.steps_ci == (170.0, 240.0)  # the seeds' low end, one resolution lower
    s_low, s_high = fit.s_min_ci
    e_low, e_high = fit.e_min_ci
    assert knee.steps_ratio_ci == pytest.approx((170.0 / s_high, 240.0 / s_low))
    assert knee.examples_ratio_ci == pytest.approx((64 * 170.0 / e_high, 64 * 240.0 / e_low))
    assert knee.steps_ratio_ci[0] <= knee.steps_ratio <= knee.steps_ratio_ci[1]
    exact = next(r for r in answer.rungs if r.batch_size == 16)  # no seeds, no resolution
    assert exact.steps_ci == (500.0, 500.0)
    assert next(r for r in answer.rungs if r.batch_size == 32).steps_ci == (296.0, 300.0)
    assert knee.to_dict()["steps_ci"] == [170.0, 240.0]


def test_an_unreached_rung_has_no_interval_and_bad_lengths_are_named():
    steps = exact_steps(LADDER)
    steps[-1] = None
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    answer = batch_size_answer(LADDER, steps, fit, resolutions=[1] * 7)
    assert answer.rungs[-1].steps_ci is None and answer.rungs[-1].steps_ratio_ci is None
    with pytest.raises(ValueError, match="resolutions must have one entry per rung"):
        batch_size_answer(LADDER, steps, fit, resolutions=[1])
    with pytest.raises(ValueError, match="seeds_ci must have one entry per rung"):
        batch_size_answer(LADDER, steps, fit, seeds_ci=[None])
