"""``fit_knee``: S(B) = S_min (1 + (B_crit / B)^α)^(1/α) against closed forms.

Exact curves of the family give back their parameters; McCandlish et al.'s hyperbola
(α = 1) gives back ``fit_scaling``'s B_crit; noisy ladders drawn from a sharp bend are
covered by the interval at about its level; censored bounds, seeds and bad input
behave as in ``fit_scaling``; and ``summarize_ladder`` adds the fit to the answer's
explanation exactly when the rungs bend unlike the hyperbola.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis import AnalysisError, KneeFit, fit_knee, fit_scaling, summarize_ladder
from batchlab.analysis._knee import SHARPNESS_RANGE

LADDER = [16, 32, 64, 128, 256, 512, 1024, 2048]


def knee(s_min: float, b_crit: float, alpha: float, ladder=LADDER) -> list[float]:
    return [s_min * (1 + (b_crit / b) ** alpha) ** (1 / alpha) for b in ladder]


@pytest.mark.parametrize(("s_min", "b_crit", "alpha"), [(200, 80, 3.0), (50, 300, 0.7),
                                                        (1000, 40, 1.0)])  # fmt: skip
def test_an_exact_curve_of_the_family_gives_back_its_parameters(s_min, b_crit, alpha):
    fit = fit_knee(LADDER, knee(s_min, b_crit, alpha), n_bootstrap=20)
    assert fit.s_min == pytest.approx(s_min, rel=1e-5)
    assert fit.b_crit == pytest.approx(b_crit, rel=1e-5)
    assert fit.sharpness == pytest.approx(alpha, rel=1e-4)
    assert fit.e_min == pytest.approx(s_min * b_crit, rel=1e-5)
    assert fit.rms < 1e-6
    assert fit.predict_steps(100) == pytest.approx(knee(s_min, b_crit, alpha, [100])[0], rel=1e-5)
    # No scatter: the intervals shrink onto the estimates.
    assert fit.b_crit_ci == pytest.approx((b_crit, b_crit), rel=1e-3)
    assert fit.unlike_hyperbola == (alpha != 1.0)


def test_the_hyperbola_gives_back_fit_scalings_b_crit():
    # α = 1 is S_min (1 + B_crit / B): both fits agree, on noisy data too.
    wiggle = np.exp(np.random.default_rng(3).normal(0, 0.03, len(LADDER)))
    steps = [s * w for s, w in zip(knee(220, 96, 1.0), wiggle, strict=True)]
    free, fixed = fit_knee(steps=steps, batch_sizes=LADDER), fit_scaling(LADDER, steps)
    low, high = free.sharpness_ci
    assert low <= 1.0 <= high and not free.unlike_hyperbola
    assert free.b_crit == pytest.approx(fixed.b_crit, rel=0.1)
    assert free.b_crit_ci[0] <= 96 <= free.b_crit_ci[1]


def test_it_moves_b_crit_when_the_two_differ_by_ten_percent():
    fit = fit_knee(LADDER, knee(200, 80, 3.0), n_bootstrap=0)
    assert fit.moves(80 / 1.11) and fit.moves(80 * 1.11)
    assert not fit.moves(80 / 1.09) and not fit.moves(80 * 1.09)


def test_b_crit_is_where_the_asymptotes_cross():
    # S → S_min as B → ∞ and S·B → E_min as B → 0, for every α: B_crit = E_min / S_min.
    fit = fit_knee(LADDER, knee(200, 80, 4.0), n_bootstrap=0)
    assert fit.predict_steps(1e9) == pytest.approx(fit.s_min, rel=1e-6)
    assert fit.predict_steps(1e-3) * 1e-3 == pytest.approx(fit.e_min, rel=1e-6)
    # At B_crit the curve lies 2^(1/α) above S_min (2 for the hyperbola).
    assert fit.predict_steps(fit.b_crit) == pytest.approx(2 ** (1 / 4.0) * fit.s_min, rel=1e-5)


def test_a_broken_line_runs_to_the_sharpest_bend_tried():
    steps = [max(220.0, 220.0 * 96 / b) for b in LADDER]
    fit = fit_knee(LADDER, steps, n_bootstrap=20)
    assert fit.sharpness == pytest.approx(SHARPNESS_RANGE[1], rel=1e-6)
    assert fit.b_crit == pytest.approx(96, rel=0.01)


def test_an_unreached_rung_with_a_budget_enters_as_a_bound():
    steps = knee(200, 80, 3.0)
    # The curve is far above a small budget: the bound does not pull.
    below = fit_knee(LADDER, [None] + steps[1:], budgets=[100] + [None] * 7, n_bootstrap=0)
    left_out = fit_knee(LADDER, [None] + steps[1:], n_bootstrap=0)
    assert below.b_crit == pytest.approx(left_out.b_crit, rel=1e-6)
    # A budget above the curve is violated: it pulls the small-batch end up.
    above = fit_knee(LADDER, [None] + steps[1:], budgets=[4 * steps[0]] + [None] * 7,
                     n_bootstrap=0)  # fmt: skip
    assert above.e_min > left_out.e_min * 1.05


def test_fresh_seeds_widen_the_interval_to_contain_theirs():
    steps = knee(200, 80, 3.0)
    rng = np.random.default_rng(0)
    candidates = [[[int(s * f) for f in np.exp(rng.normal(0, 0.1, 3))]] for s in steps]
    fit = fit_knee(LADDER, steps, candidates=candidates, n_bootstrap=100)
    assert fit.seeds_ci is not None and fit.seeds_ci[1] > fit.seeds_ci[0]
    assert fit.b_crit_ci[0] <= min(fit.seeds_ci[0], fit.residuals_ci[0])
    assert fit.b_crit_ci[1] >= max(fit.seeds_ci[1], fit.residuals_ci[1])
    # One seed per candidate: nothing to resample.
    single = fit_knee(LADDER, steps, candidates=[[[int(s)]] for s in steps], n_bootstrap=20)
    assert single.seeds_ci is None


def test_bad_input_names_the_argument():
    with pytest.raises(AnalysisError, match="at least 5 rungs"):
        fit_knee(LADDER, knee(200, 80, 3.0)[:4] + [None] * 4)
    with pytest.raises(AnalysisError, match="candidates must have one entry per batch size"):
        fit_knee(LADDER, knee(200, 80, 3.0), candidates=[None])
    with pytest.raises(AnalysisError, match="n_bootstrap"):
        fit_knee(LADDER, knee(200, 80, 3.0), n_bootstrap=-1)
    with pytest.raises(AnalysisError, match="strictly increasing"):
        fit_knee(LADDER[::-1], knee(200, 80, 3.0))


def test_to_dict_is_plain_json():
    data = fit_knee(LADDER, knee(200, 80, 3.0), n_bootstrap=10).to_dict()
    assert set(data) >= {"b_crit", "b_crit_ci", "sharpness", "sharpness_ci", "rms"}
    assert all(isinstance(v, float) for v in data["b_crit_ci"])


def test_the_answer_takes_b_crit_off_the_sharper_bend_when_the_rungs_need_it():
    # A sharp bend (α = 4) measured with tight seeds: the rungs' own intervals exclude
    # the hyperbola; the answer's B_crit is the free-sharpness fit's, the hyperbola's
    # stays in the fit and the explanation names it.
    steps = knee(220, 96, 4.0)
    seeds = [[[int(s), int(s * 1.01), int(s * 0.99)]] for s in steps]
    summary = summarize_ladder(LADDER, steps, candidates=seeds)
    answer, sources = summary.answer, summary.answer.interval_sources
    assert sources is not None and sources.shape_limited
    assert answer.b_crit_model == "free bend" and sources.knee is not None
    assert (answer.b_crit, answer.b_crit_ci) == (sources.knee.b_crit, sources.knee.b_crit_ci)
    assert summary.fit is not None and sources.knee.moves(summary.fit.b_crit)
    assert answer.headline.startswith(f"B_crit = {answer.b_crit:.3g} (95% interval ")
    assert "a free bend, α = 4" in answer.headline
    assert answer.to_dict()["b_crit_model"] == "free bend"
    assert sources.sentence.startswith("The hyperbola's B_crit interval is set by")
    assert sources.knee_sentence.endswith("the answer's B_crit.")
    assert isinstance(sources.knee, KneeFit) and sources.knee.b_crit == pytest.approx(96, rel=0.02)
    assert sources.knee_sentence is not None
    assert sources.knee_sentence.startswith("A sharper bend fits the rungs")
    assert f"at {sources.knee.b_crit:.3g} (95% interval" in sources.knee_sentence
    assert sources.to_dict()["knee_sentence"] == sources.knee_sentence
    assert sources.to_dict()["knee"]["sharpness"] == pytest.approx(4.0, rel=0.05)
    # The hyperbola itself, measured the same way: nothing to add.
    steps = knee(220, 96, 1.0)
    seeds = [[[int(s), int(s * 1.01), int(s * 0.99)]] for s in steps]
    summary = summarize_ladder(LADDER, steps, candidates=seeds)
    sources = summary.answer.interval_sources
    assert sources is not None and sources.knee is None and sources.knee_sentence is None
    assert summary.answer.b_crit_model == "hyperbola" and summary.fit is not None
    assert (
        summary.answer.b_crit == summary.fit.b_crit and "free bend" not in summary.answer.headline
    )


def test_the_interval_covers_the_true_b_crit_at_about_its_level():
    # 60 ladders from S_min (1 + (80/B)^3)^(1/3) with 8% log-normal scatter per rung.
    # At 95% nominal, 60 draws: P(fewer than 52 covered) < 1% if the coverage is 95%.
    rng = np.random.default_rng(0)
    truth, covered, ratios = knee(200, 80, 3.0), 0, []
    for draw in range(60):
        steps = [s * math.exp(rng.normal(0, 0.08)) for s in truth]
        fit = fit_knee(LADDER, steps, n_bootstrap=300, seed=draw)
        covered += fit.b_crit_ci[0] <= 80 <= fit.b_crit_ci[1]
        ratios.append(fit.b_crit_ci[1] / fit.b_crit_ci[0])
    assert covered >= 52, covered
    assert float(np.median(ratios)) < 1.8


def test_the_answer_takes_the_free_bend_where_its_fit_rejects_the_hyperbola_alone():
    # A sharp bend (α = 4) whose rungs' own intervals are wide (seeds ±30%): none of
    # them excludes the hyperbola, but the free bend's fit, whose residuals are tiny,
    # excludes α = 1, so the answer's B_crit is the free bend's.
    steps = knee(220, 96, 4.0)
    seeds = [[[int(s), int(s * 1.3), int(s * 0.77)]] for s in steps]
    summary = summarize_ladder(LADDER, steps, candidates=seeds)
    sources = summary.answer.interval_sources
    assert sources is not None and not sources.off_curve and sources.widest == "residuals"
    assert sources.knee is not None and sources.knee.unlike_hyperbola
    assert summary.answer.b_crit_model == "free bend"
    assert summary.answer.b_crit == pytest.approx(96, rel=0.02)
    assert "as their coverage allows, but a bend of free sharpness fits" in sources.sentence
    assert sources.sentence.startswith("The hyperbola's B_crit interval")


@pytest.mark.slow
def test_on_the_hyperbola_the_answer_rarely_takes_the_free_bend_and_still_covers():
    # 60 ladders from S_min (1 + 80 / B) with 8% log-normal scatter per rung. The free
    # bend is taken only where α's 95% interval excludes 1 (about 5% of draws under
    # this null) and it moves B_crit by 10%: at a 10% rate, P(more than 12 of 60) < 1%.
    # On the hyperbola both curves' B_crit is 80; the answer's interval covers it at
    # about the bootstraps' level (90% measured, benchmarks/knee_shape.py --synthetic):
    # at 90%, P(fewer than 48 of 60) < 1%.
    rng = np.random.default_rng(1)
    truth, taken, covered = knee(200, 80, 1.0), 0, 0
    for draw in range(60):
        steps = [s * math.exp(rng.normal(0, 0.08)) for s in truth]
        answer = summarize_ladder(LADDER, steps, seed=draw).answer
        taken += answer.b_crit_model == "free bend"
        assert answer.b_crit_ci is not None
        covered += answer.b_crit_ci[0] <= 80 <= answer.b_crit_ci[1]
    assert taken <= 12, taken
    assert covered >= 48, covered
