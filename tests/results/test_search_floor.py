"""search_floor: a rung's count less the search gap, read off its own trials."""

from __future__ import annotations

import math

import pytest

from batchlab.results import RungResult, SearchRange, TrialRecord, search_floor

LR = SearchRange(low=1e-3, high=1.0, scale="log")


def record(number, lr, steps, *, momentum=None, confirm_of=None, status=None, curve=None):
    params = {"lr": lr} if momentum is None else {"lr": lr, "momentum": momentum}
    return TrialRecord(
        number=number,
        slot=number if confirm_of is None else confirm_of,
        seed=number,
        params=params,
        hparams=dict(params),
        status=status or ("reached" if steps is not None else "beaten"),
        steps_to_target=steps,
        reason=None,
        wall_time_s=1.0,
        curve=curve,
        confirm_of=confirm_of,
    )


def rung(trials):
    return RungResult(
        batch_size=64,
        budget_steps=1000,
        eval_every=10,
        trials_planned=len(trials),
        trials_done=len(trials),
        trials_running=0,
        steps_to_target=min(t.steps_to_target for t in trials if t.steps_to_target),
        best_hparams=None,
        best_trial=0,
        trials=trials,
    )


def test_floor_is_the_count_times_exp_minus_the_gap():
    # log steps: 100 at lr 0.1, e·100 at lr 0.01 (one log-LR unit ln 10 away) and the
    # right neighbour 0.2 never reached: left secant 1 / ln 10, right bracket ln 2.
    trials = [record(0, 0.1, 100), record(1, 0.01, round(100 * math.e)), record(2, 0.2, None)]
    gap = (math.log(round(100 * math.e)) - math.log(100)) / math.log(10)
    # left of the best it borrows the same secant over ln 10 (down to lr 0.01)
    expected = 100 * math.exp(-gap * max(math.log(2), math.log(10)))
    assert search_floor(rung(trials), {"lr": LR}) == pytest.approx(expected)


def test_the_resolution_of_the_best_run_lowers_the_floor_first():
    curve = {"steps": [10, 20, 90, 100], "loss": [3, 2, 1.1, 0.9]}
    trials = [
        record(0, 0.1, 100, curve=curve),
        record(1, 0.05, 120),
        record(2, 0.2, 120),
    ]
    gap = math.log(120 / 100) / math.log(2)  # both secants, both brackets ln 2
    expected = (100 - 10) * math.exp(-gap * math.log(2))
    assert search_floor(rung(trials), {"lr": LR}) == pytest.approx(expected)


def test_confirmations_and_failed_trials_take_no_part():
    base = [record(0, 0.1, 100), record(1, 0.05, 120), record(2, 0.2, 120)]
    floor = search_floor(rung(base), {"lr": LR})
    extra = [
        record(3, 0.1, 60, confirm_of=0),  # a lucky seed of the best point
        record(4, 0.11, 50, status="error"),
    ]
    assert search_floor(rung(base + extra), {"lr": LR}) == pytest.approx(floor)


def test_no_floor_without_a_line_through_the_best():
    # Two searched dimensions: no other trial shares the best's momentum.
    trials = [record(0, 0.1, 100, momentum=0.9), record(1, 0.05, 120, momentum=0.8)]
    space = {"lr": LR, "momentum": SearchRange(0.5, 0.99, "linear")}
    assert search_floor(rung(trials), space) is None
    # ... unless they share it: then the line through lr gives one.
    same = [
        record(0, 0.1, 100, momentum=0.9),
        record(1, 0.05, 120, momentum=0.9),
        record(2, 0.005, 200, momentum=0.9),  # ln 20 away: long enough to reach lr 1
    ]
    assert search_floor(rung(same), space) is not None
    # A linear-scaled or unsearched lr gives none.
    assert search_floor(rung(trials), {"lr": SearchRange(1e-3, 1.0, "linear")}) is None
    assert search_floor(rung(trials), {}) is None


def test_a_beaten_neighbour_gives_its_slope_through_its_fresh_seeds():
    # NQM, B = 512, calibration seed 4: the search trial at lr 0.09 was stopped once
    # beaten (the best, lr 0.1, had reached the target in 80 steps); its confirmation
    # seeds took 83 and 83. Without them the best has no reached neighbour: no floor.
    base = [record(0, 0.1, 80), record(1, 0.09, None), record(2, 0.13, None)]
    assert search_floor(rung(base), {"lr": LR}) is None
    seeds = [record(3, 0.09, 83, confirm_of=1), record(4, 0.09, 83, confirm_of=1)]
    floor = search_floor(rung(base + seeds), {"lr": LR})
    # The median seed, 83, at log-distance ln(10/9) on the left; the right bracket is
    # ln 1.3 long, longer than that secant: it is extended (search_gap).
    slope = math.log(83 / 80) / math.log(0.1 / 0.09)
    assert floor == pytest.approx(80 * math.exp(-slope * math.log(1.3)))
    # Seeds that mostly never reached the target give no count: still no floor.
    missed = [record(3, 0.09, 83, confirm_of=1), record(4, 0.09, None, confirm_of=1)]
    missed += [record(5, 0.09, None, confirm_of=1)]
    assert search_floor(rung(base + missed), {"lr": LR}) is None


def test_seed_noise_is_the_widest_spread_of_a_points_runs():
    from batchlab.results._space import seed_noise

    best = [record(0, 0.1, 100), record(1, 0.1, 120, confirm_of=0)]
    other = [record(2, 0.2, 150), record(3, 0.2, 150, confirm_of=2)]
    beaten = [record(4, 0.3, None), record(5, 0.3, 200, confirm_of=4)]  # one run measured
    assert seed_noise([best, other, beaten]) == pytest.approx(math.log(1.2))
    missed = [record(6, 0.4, 90), record(7, 0.4, None, confirm_of=6, status="not_reached")]
    assert seed_noise([best, missed]) == math.inf
    assert seed_noise([beaten, [record(8, 0.5, 70)]]) is None  # no point with two runs
