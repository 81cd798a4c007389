"""The answer (B_crit, cost per rung, the two 20% rules) against the closed form S(B)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from batchlab.analysis import AnalysisError, batch_size_answer, fit_scaling, lr_at

LADDER = [16, 32, 64, 128, 256, 512, 1024]
S_MIN, B_CRIT = 100.0, 64.0


def exact_steps(batch_sizes, s_min=S_MIN, b_crit=B_CRIT):
    """McCandlish et al. eq. 2.11: S(B) = S_min (1 + B_crit / B)."""
    return [s_min * (1 + b_crit / b) for b in batch_sizes]


def test_costs_and_rules_match_the_closed_form():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=200)
    answer = batch_size_answer(LADDER, steps, fit, lrs=[0.1 * 2**i for i in range(7)])
    assert answer.b_crit == pytest.approx(B_CRIT, rel=1e-6)
    assert answer.reason is None
    # At the knee a run costs 2·S_min steps and 2·E_min examples (eq. 2.11).
    knee = next(r for r in answer.rungs if r.batch_size == 64)
    assert knee.steps_ratio == pytest.approx(2.0, rel=1e-6)
    assert knee.examples_ratio == pytest.approx(2.0, rel=1e-6)
    # E(B) = S_min (B + B_crit) is least at 16 (8000); within 20%: B + 64 <= 96, B <= 32.
    assert answer.largest_efficient == 32
    # S(B) is least at 1024 (106.25); within 20%: 1 + 64/B <= 1.275, B >= 232.7.
    assert answer.smallest_fast == 256
    assert [r.lr for r in answer.rungs][:2] == [0.1, 0.2]
    assert "B_crit = 64" in answer.headline and "32" in answer.headline


def test_overhead_moves_both_rules():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    # 100% overhead: B + 64 <= 160 -> 64 (the largest rung <= 96); 1 + 64/B <= 2.125 -> 64.
    answer = batch_size_answer(LADDER, steps, fit, overhead=1.0)
    assert answer.largest_efficient == 64
    assert answer.smallest_fast == 64


def test_unreached_rungs_are_kept_and_never_chosen():
    steps = exact_steps(LADDER)
    steps[0] = None
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    answer = batch_size_answer(LADDER, steps, fit)
    assert answer.rungs[0].steps is None and answer.rungs[0].examples_ratio is None
    # The fewest examples among the reached rungs is now at 32 (96·100): <= 11520 -> B <= 51.
    assert answer.largest_efficient == 32


def test_no_fit_says_why_and_what_to_do():
    steps = [None, None, 300.0, 200.0, None, None, None]
    answer = batch_size_answer(LADDER, steps, None)
    assert answer.b_crit is None and answer.b_crit_ci is None
    assert answer.reason.startswith("Only 2 rung(s) reached the target")
    assert answer.headline  # never empty


def test_all_perfect_scaling_asks_for_larger_rungs():
    steps = [1e5 / b for b in LADDER]
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    answer = batch_size_answer(LADDER, steps, fit)
    assert answer.b_crit is None
    assert "add rungs 2048 and 4096" in answer.reason


def test_flat_curve_asks_for_smaller_rungs():
    steps = [100.0] * len(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=0)
    answer = batch_size_answer(LADDER, steps, fit)
    assert answer.b_crit is None
    assert "add rungs 4 and 8" in answer.reason
    assert answer.smallest_fast == 16


def test_to_dict_is_json_safe():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=50)
    data = batch_size_answer(LADDER, steps, fit).to_dict()
    assert data["largest_efficient"] == 32
    assert all(v is None or math.isfinite(v) for r in data["rungs"] for v in (r["steps_ratio"],))
    assert data["headline"].startswith("B_crit = ")
    assert data["b_crit_model"] == "hyperbola"


def test_an_unknown_b_crit_model_names_the_field():
    answer = batch_size_answer(LADDER, exact_steps(LADDER), None)
    with pytest.raises(AnalysisError, match="b_crit_model must be one of"):
        replace(answer, b_crit_model="parabola")


@pytest.mark.parametrize("overhead", [0, -0.1, float("nan"), "0.2", True])
def test_bad_overhead_names_the_argument(overhead):
    with pytest.raises(AnalysisError, match="overhead"):
        batch_size_answer(LADDER, exact_steps(LADDER), None, overhead=overhead)


def test_lrs_of_the_wrong_length_are_refused():
    with pytest.raises(AnalysisError, match="lrs must have one entry per rung"):
        batch_size_answer(LADDER, exact_steps(LADDER), None, lrs=[0.1])


def test_lr_at_interpolates_log_log_between_neighbours():
    # LR ∝ √B between rungs 64 (0.1) and 256 (0.2): at 128 the interpolation is 0.1·√2.
    result = lr_at([16, 64, 256], [0.05, 0.1, 0.2], 128)
    assert result.lr == pytest.approx(0.1 * math.sqrt(2), rel=1e-12)
    assert result.bracket == (0.1, 0.2)
    assert result.neighbours == (64, 256)
    assert lr_at([16, 64, 256], [0.05, 0.1, 0.2], 64).lr == 0.1


def test_lr_at_skips_untuned_rungs_and_never_extrapolates():
    result = lr_at([16, 64, 256, 1024], [0.05, None, 0.2, None], 32)
    assert result.neighbours == (16, 256)
    with pytest.raises(AnalysisError, match="above the largest tuned rung \\(256\\).*add a rung"):
        lr_at([16, 64, 256, 1024], [0.05, None, 0.2, None], 512)
    with pytest.raises(AnalysisError, match="below the smallest tuned rung"):
        lr_at([16, 64], [0.05, 0.1], 8)
