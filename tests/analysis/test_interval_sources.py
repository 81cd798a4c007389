"""What sets B_crit's interval (explain_interval) and how the answer reports it."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from batchlab.analysis import (
    AnalysisError,
    explain_interval,
    fit_scaling,
    summarize_ladder,
)
from batchlab.analysis._interval_sources import RUNG_MISS_RATE

LADDER = [16, 32, 64, 128, 256, 512, 1024, 2048]


def hyperbola(s_min: float, b_crit: float) -> list[float]:
    return [s_min * (1 + b_crit / b) for b in LADDER]


def around(steps: list[float], rel: float) -> list[tuple[float, float]]:
    return [(s * (1 - rel), s * (1 + rel)) for s in steps]


def test_the_binomial_p_value_is_the_closed_form():
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    curve = hyperbola(fit.s_min, fit.b_crit)
    cis = around(curve, 0.01)
    for i in (0, 3, 7):  # three rungs' intervals placed 10% above the curve
        cis[i] = (curve[i] * 1.1, curve[i] * 1.2)
    sources = explain_interval(fit, (50.0, 80.0), None, LADDER, cis)
    assert sources.off_curve == (16, 128, 2048) and sources.rungs_checked == 8
    # P(X >= 3), X ~ Binomial(8, 0.1): 1 - sum_{k<3} C(8,k) 0.1^k 0.9^(8-k) = 0.0381
    exact = 1 - sum(math.comb(8, k) * 0.1**k * 0.9 ** (8 - k) for k in range(3))
    assert sources.p_value == pytest.approx(exact, rel=1e-9)
    assert RUNG_MISS_RATE == 0.1
    assert sources.shape_limited and "will not narrow" in sources.sentence
    assert "B = 16, 128, 2048" in sources.sentence


def test_a_hard_knee_is_shape_limited_and_a_noisy_hyperbola_is_not():
    # S(B) = max(S_min, E_min / B): perfect scaling, then none: a sharper bend than
    # S_min (1 + B_crit / B). Rung intervals of ±3% (fresh seeds) cannot hold the curve.
    knee = [max(220.0, 220.0 * 96 / b) for b in LADDER]
    fit = fit_scaling(LADDER, knee, seed=0)
    sources = explain_interval(fit, fit.b_crit_ci, (80.0, 100.0), LADDER, around(knee, 0.03))
    assert sources.widest == "residuals"
    assert len(sources.off_curve) >= 3 and sources.p_value < 0.05
    assert sources.shape_limited

    # The same widths about an exact hyperbola with ±2% scatter: every rung's ±3%
    # interval holds the fitted curve, so the scatter is noise (more seeds help).
    wiggle = [1.02, 0.98, 1.02, 0.98, 1.02, 0.98, 1.02, 0.98]
    noisy = [s * w for s, w in zip(hyperbola(220, 96), wiggle, strict=True)]
    fit = fit_scaling(LADDER, noisy, seed=0)
    sources = explain_interval(fit, fit.b_crit_ci, None, LADDER, around(noisy, 0.03))
    assert sources.off_curve == () and sources.p_value == 1.0
    assert not sources.shape_limited
    assert "measurement noise" in sources.sentence and "confirm_seeds" in sources.sentence
    assert "more rungs ([ladder] per_octave) narrow it" in sources.sentence


def test_the_wider_source_in_log_units_is_named():
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    cis = around(hyperbola(200, 64), 0.05)
    # residuals ×1.5 wide, seeds ×2: the seeds set the interval.
    sources = explain_interval(fit, (52.0, 78.0), (45.0, 90.0), LADDER, cis)
    assert sources.widest == "seeds" and not sources.shape_limited
    assert sources.sentence.startswith("B_crit's interval is set by fresh seeds")
    # No seed bootstrap: the residuals, and the sentence says how to measure seed noise.
    sources = explain_interval(fit, (52.0, 78.0), None, LADDER, cis)
    assert sources.widest == "residuals" and "confirm_top" in sources.sentence
    # Unreached rungs (None) are not checked.
    sources = explain_interval(fit, (52.0, 78.0), None, LADDER, [None] * 2 + cis[2:])
    assert sources.rungs_checked == 6


def test_bad_input_names_the_argument():
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    cis = around(hyperbola(200, 64), 0.05)
    with pytest.raises(
        AnalysisError, match="batch_sizes and steps_cis must have the same length, got 8 and 7"
    ):
        explain_interval(fit, (50.0, 80.0), None, LADDER, cis[:-1])
    with pytest.raises(AnalysisError, match="residuals_ci must satisfy 0 < low <= high"):
        explain_interval(fit, (80.0, 50.0), None, LADDER, cis)
    with pytest.raises(AnalysisError, match="seeds_ci must be an interval"):
        explain_interval(fit, (50.0, 80.0), "wide", LADDER, cis)  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="steps_cis at B = 64"):
        explain_interval(fit, (50.0, 80.0), None, LADDER, [*cis[:2], (0.0, 1.0), *cis[3:]])


def test_summarize_ladder_puts_it_in_the_answer():
    steps = [max(220.0, 220.0 * 96 / b) for b in LADDER]
    seeds = [[[round(s), round(s * 1.03), round(s * 0.97)]] for s in steps]
    summary = summarize_ladder(LADDER, steps, candidates=seeds)
    sources = summary.answer.interval_sources
    assert sources is not None and summary.fit is not None and summary.seeds is not None
    # The union of the two is the fit's interval.
    low = min(sources.residuals_ci[0], sources.seeds_ci[0])
    high = max(sources.residuals_ci[1], sources.seeds_ci[1])
    assert summary.fit.b_crit_ci == pytest.approx((low, high))
    data = summary.to_dict()["answer"]["interval_sources"]
    assert data["sentence"] == sources.sentence and data["shape_limited"] == sources.shape_limited
    # Without a bend B_crit is not identified: nothing to explain.
    flat = summarize_ladder(LADDER, [100.0 * (1 + 0.01 * i) for i in range(8)])
    assert flat.fit is not None and flat.fit.at_bound
    assert flat.answer.interval_sources is None


def test_miss_rate_matches_a_binomial_survival_function():
    # The p-value is scipy's binomial survival function at k - 1 (P(X >= k)).
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    curve = hyperbola(fit.s_min, fit.b_crit)
    cis = [(c * 1.1, c * 1.2) for c in curve]  # every interval misses
    sources = explain_interval(fit, (50.0, 80.0), None, LADDER, cis)
    assert sources.p_value == pytest.approx(stats.binom.sf(7, 8, RUNG_MISS_RATE))
    assert sources.p_value == pytest.approx(0.1**8)


def test_an_off_curve_rung_without_a_search_term_may_be_a_search_miss():
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    curve = hyperbola(fit.s_min, fit.b_crit)
    cis = around(curve, 0.01)
    for i in (0, 3, 7):
        cis[i] = (curve[i] * 1.1, curve[i] * 1.2)
    bounded = [True] * 8
    bounded[3] = bounded[5] = False  # B = 128 (off the curve) and 512 (on it)
    sources = explain_interval(fit, (50.0, 80.0), None, LADDER, cis, bounded)
    assert sources.unbounded_search == (128,) and sources.shape_limited
    assert "the search missed the optimum at B = 128" in sources.sentence
    assert "trials_per_rung" in sources.sentence
    # the measured remedy first: more rungs average the search noise out of the fit
    assert "will not narrow the interval; more rungs per doubling ([ladder] per_octave)" in (
        sources.sentence
    )
    assert sources.to_dict()["unbounded_search"] == [128]
    with pytest.raises(
        AnalysisError, match="batch_sizes and search_bounded must have the same length"
    ):
        explain_interval(fit, (50.0, 80.0), None, LADDER, cis, bounded[:-1])
    # Every off-curve rung bounded: the curve's shape alone.
    sources = explain_interval(fit, (50.0, 80.0), None, LADDER, cis, [True] * 8)
    assert sources.unbounded_search == () and "bends unlike" in sources.sentence
    assert "the search missed the optimum at" not in sources.sentence


def test_a_rung_above_a_smaller_rung_beyond_both_intervals_is_named_as_a_likely_search_miss():
    fit = fit_scaling(LADDER, hyperbola(200, 64), n_bootstrap=0)
    cis = around(hyperbola(200, 64), 0.05)
    cis[7] = (291.0, 468.0)  # B = 2048 above B = 512 (~213 to 235) and B = 1024
    cis[6] = (230.0, 250.0)  # B = 1024 overlaps B = 512's interval: not rising
    sources = explain_interval(fit, (50.0, 80.0), None, LADDER, cis)
    smaller = cis[5]
    assert sources.rising == ((2048, 512, (291.0, 468.0), smaller),)
    assert sources.sentence.endswith(
        f"B = 2048 needs more steps than B = 512, beyond both rungs' intervals (291 to 468 "
        f"against {smaller[0]:.3g} to {smaller[1]:.3g}); a larger batch at its best "
        "settings needs no more steps, so its search most likely missed its optimum; more "
        "trials there ([search] recheck, trials_per_rung, refine, neighbours) would show whether."
    )
    assert sources.to_dict()["rising"] == [
        {"batch_size": 2048, "smaller": 512, "steps_ci": [291.0, 468.0],
         "smaller_steps_ci": list(smaller)}
    ]  # fmt: skip
    # Overlapping intervals, an unchecked rung (None) and an open upper end never rise.
    cis[7], cis[4] = (230.0, math.inf), None
    assert explain_interval(fit, (50.0, 80.0), None, LADDER, cis).rising == ()
    # A decreasing ladder never rises.
    plain = explain_interval(fit, (50.0, 80.0), None, LADDER, around(hyperbola(200, 64), 0.01))
    assert plain.rising == () and "needs more steps than" not in plain.sentence
