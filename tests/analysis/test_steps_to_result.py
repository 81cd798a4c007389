"""Steps-to-result from a table of runs, on hand-built tables (Shallue et al. 2018, Sec. 3.3).

As in google-research ``batch_science/measurement_utils.py``: the fewest steps-to-target
over a batch size's runs; a batch size none of whose runs reached the target is
infeasible (``None``).
"""

from __future__ import annotations

from batchlab.analysis import best_run_per_batch_size, best_steps_per_batch_size

TABLE = [
    {"batch_size": 64, "steps_to_target": 900},
    {"batch_size": 16, "steps_to_target": None},
    {"batch_size": 16, "steps_to_target": 2400},
    {"batch_size": 64, "steps_to_target": 700},
    {"batch_size": 16, "steps_to_target": 2000},
    {"batch_size": 256, "steps_to_target": None},
    {"batch_size": 256},  # no steps_to_target at all: never reached
]


def test_steps_to_result_is_the_minimum_over_a_batch_sizes_runs():
    assert best_steps_per_batch_size(TABLE) == {16: 2000, 64: 700, 256: None}


def test_a_batch_size_no_run_reached_maps_to_none():
    runs = [{"batch_size": 32, "steps_to_target": None}, {"batch_size": 32}]
    assert best_steps_per_batch_size(runs) == {32: None}
    assert best_run_per_batch_size(runs) == {32: None}


def test_the_best_run_is_the_one_with_the_fewest_steps():
    assert best_run_per_batch_size(TABLE) == {16: 4, 64: 3, 256: None}


def test_of_tied_runs_the_first_in_order_wins():
    runs = [
        {"batch_size": 8, "slot": 0, "steps_to_target": 500},
        {"batch_size": 8, "slot": 1, "steps_to_target": 300},
        {"batch_size": 8, "slot": 2, "steps_to_target": 300},
        {"batch_size": 8, "slot": 3, "steps_to_target": 300},
    ]
    assert best_run_per_batch_size(runs) == {8: 1}
    assert best_run_per_batch_size(list(reversed(runs))) == {8: 0}  # slot 3, first now
    assert best_steps_per_batch_size(runs) == {8: 300}


def test_batch_sizes_come_out_ascending_from_any_iterable():
    steps = best_steps_per_batch_size(iter(TABLE))  # a generator is read once
    assert list(steps) == [16, 64, 256]


def test_an_empty_table_has_no_batch_sizes():
    assert best_steps_per_batch_size([]) == {}


def test_median_steps_counts_an_unreached_seed_as_more_than_any_reached():
    from batchlab.analysis import median_steps

    assert median_steps([300, 200, 250]) == 250
    assert median_steps([300, None, 250]) == 300  # None sorts last
    assert median_steps([None, None, 250]) is None
    assert median_steps([400, 200]) == 200  # the lower median of an even count
    assert median_steps([None]) is None


def test_confirmed_candidate_is_the_fewest_median_not_the_luckiest_seed():
    from batchlab.analysis import confirmed_candidate

    # Candidate 0 won the search by one lucky seed (100); over three seeds its median
    # is 400, above candidate 1's 300.
    assert confirmed_candidate([[100, 400, 500], [150, 300, 310]]) == 1
    assert confirmed_candidate([[100, 300, 500], [150, 300, 310]]) == 0  # a tie: rank wins
    assert confirmed_candidate([[100, None, None], [None, None, 200]]) is None


def test_median_interval_coverage_is_the_binomial_closed_form():
    from math import comb

    from batchlab.analysis import median_interval

    # n = 3: only the range, which covers the median unless all three fall on one
    # side of it: 1 − 2·(½)³ = 75%.
    assert median_interval([300, 100, 200]) == (100, 300, 0.75)
    # n = 9: [X(2), X(8)] covers with 1 − 2·P(Bin(9, ½) <= 1) = 1 − 2·10/512 ≈ 96.1%;
    # [X(3), X(7)] would cover only 1 − 2·46/512 ≈ 82%, below 95%.
    low, high, coverage = median_interval(list(range(1, 10)))
    assert (low, high) == (2, 8)
    assert coverage == 1 - 2 * (comb(9, 0) + comb(9, 1)) / 2**9
    # A seed that never reached the target bounds the interval from above: unbounded.
    assert median_interval([120, None, 100]) == (100, None, 0.75)
