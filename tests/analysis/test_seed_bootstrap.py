"""The seed bootstrap: resampled seeds and candidate choice, refitted.

Checked against closed forms (the sampling distribution of a lower median of three
draws), degenerate cases (identical seeds resample to the point estimate) and, on
synthetic ladders drawn from a known S(B), the coverage of the widened interval.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis import fit_scaling, seed_bootstrap, summarize_ladder
from batchlab.analysis._seed_bootstrap import resample_rung_steps
from batchlab.results import RungResult, TrialRecord

SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048]
S_MIN, B_CRIT = 200.0, 100.0


def exact_steps(b: float) -> float:
    return S_MIN * (1 + B_CRIT / b)


def test_a_rung_reaches_when_two_of_three_resampled_seeds_do():
    # Seeds (100, None, None): the lower median of 3 draws with replacement is finite
    # iff at least 2 draws are the 100, with probability 3·(1/3)²·(2/3) + (1/3)³ = 7/27.
    n = 20_000
    draws = resample_rung_steps([[100, None, None]], n, np.random.default_rng(0))
    p = 7 / 27
    assert set(np.unique(draws)) == {100.0, math.inf}
    # 4 binomial standard errors: fails by chance with probability ~6e-5.
    assert abs(np.isfinite(draws).mean() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_the_fewest_median_over_candidates_wins():
    draws = resample_rung_steps([[100, 100, 100], [50, 50]], 100, np.random.default_rng(0))
    assert np.all(draws == 50)


def test_identical_seeds_give_the_point_estimate():
    steps = [round(exact_steps(b)) for b in SIZES]
    fit = fit_scaling(SIZES, steps)
    seeds = seed_bootstrap(fit, SIZES, [[[s, s, s]] for s in steps], n_bootstrap=200)
    assert seeds is not None and seeds.rungs_resampled == len(SIZES)
    for low, high in (seeds.b_crit_ci, seeds.s_min_ci):
        assert low == pytest.approx(high, rel=1e-6)
    assert seeds.b_crit_ci[0] == pytest.approx(fit.b_crit, rel=1e-6)


def test_nothing_to_resample_gives_none():
    steps = [round(exact_steps(b)) for b in SIZES]
    fit = fit_scaling(SIZES, steps)
    assert seed_bootstrap(fit, SIZES, [[] for _ in SIZES]) is None
    assert seed_bootstrap(fit, SIZES, [[[s]] for s in steps]) is None


def test_a_seed_that_misses_is_censored_at_the_budget():
    steps = [round(exact_steps(b)) for b in SIZES]
    candidates = [[[s, round(s * 1.1), round(s * 0.9)]] for s in steps]
    candidates[-1] = [[steps[-1], None, None]]  # the last rung often misses on resampling
    fit = fit_scaling(SIZES, steps, budgets=[1000] * len(SIZES))
    seeds = seed_bootstrap(fit, SIZES, candidates, [1000] * len(SIZES), n_bootstrap=500)
    assert seeds is not None and seeds.n_fitted == 500
    assert seeds.b_crit_ci[0] <= fit.b_crit <= seeds.b_crit_ci[1]


def simulated_ladder(rng: np.random.Generator, noise: float) -> list[list[list[int]]]:
    """Two candidates per rung (the second 10% slower), three seeds each, lognormal noise."""
    return [
        [
            [
                round(exact_steps(b) * factor * math.exp(noise * rng.standard_normal()))
                for _ in "abc"
            ]
            for factor in (1.0, 1.1)
        ]
        for b in SIZES
    ]


def test_the_widened_interval_covers_the_true_b_crit():
    # 40 ladders from the known S(B) with 15% seed-to-seed noise. At a nominal 95%,
    # the count of covering intervals is Binomial(40, 0.95): mean 38, sd 1.4; 34 is
    # about 3 sd below, so a calibrated interval fails this by chance < 1% of the time.
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(40):
        candidates = simulated_ladder(rng, 0.15)
        steps = [min(sorted(c)[1] for c in rung) for rung in candidates]
        summary = summarize_ladder(SIZES, steps, candidates=candidates)
        low, high = summary.fit.b_crit_ci
        covered += low <= B_CRIT <= high
    assert covered >= 34


def test_summarize_ladder_widens_the_fit_and_records_both():
    rng = np.random.default_rng(3)
    candidates = simulated_ladder(rng, 0.15)
    steps = [min(sorted(c)[1] for c in rung) for rung in candidates]
    plain = summarize_ladder(SIZES, steps)
    both = summarize_ladder(SIZES, steps, candidates=candidates)
    assert plain.fit.interval_sources == ("residuals",)
    assert plain.seeds is None and "seed_bootstrap" not in plain.to_dict()
    assert both.fit.interval_sources == ("residuals", "seeds")
    assert both.fit.b_crit == plain.fit.b_crit
    for residual, seeds, union in (
        (plain.fit.b_crit_ci, both.seeds.b_crit_ci, both.fit.b_crit_ci),
        (plain.fit.s_min_ci, both.seeds.s_min_ci, both.fit.s_min_ci),
    ):
        assert union == (min(residual[0], seeds[0]), max(residual[1], seeds[1]))
    data = both.to_dict()
    assert data["fit"]["interval_sources"] == ["residuals", "seeds"]
    assert data["seed_bootstrap"]["n_fitted"] == 1000


def trial(number: int, slot: int, steps: int | None, confirm_of: int | None = None) -> TrialRecord:
    return TrialRecord(
        number=number,
        slot=slot,
        seed=number,
        params={},
        hparams={},
        status="reached" if steps is not None else "not_reached",
        steps_to_target=steps,
        reason=None,
        wall_time_s=None,
        curve=None,
        confirm_of=confirm_of,
    )


def test_a_rung_lists_its_candidates_in_the_order_they_were_confirmed():
    rung = RungResult(
        batch_size=64,
        budget_steps=500,
        eval_every=10,
        trials_planned=7,
        trials_done=7,
        trials_running=0,
        steps_to_target=None,
        best_hparams=None,
        best_trial=None,
        trials=[
            trial(0, 0, 120),
            trial(1, 1, 100),
            trial(2, 2, None),
            trial(3, 1_000_000, 110, confirm_of=1),
            trial(4, 1_000_001, 130, confirm_of=0),
            trial(5, 1_000_002, None, confirm_of=1),
            trial(6, 1_000_003, 125, confirm_of=0),
        ],
    )
    assert rung.candidate_slots == [1, 0]
    assert rung.candidates == [[100, 110, None], [120, 130, 125]]
