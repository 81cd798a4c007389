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
