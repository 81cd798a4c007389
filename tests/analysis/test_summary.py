"""summarize_ladder: the fit, regimes, LR trend and answer of a ladder, computed once."""

from __future__ import annotations

import pytest

from batchlab.analysis import (
    MIN_RUNGS_FOR_FIT,
    AnalysisError,
    fit_scaling,
    scaling_regimes,
    summarize_ladder,
)

LADDER = [16, 32, 64, 128, 256, 512, 1024]
S_MIN, B_CRIT = 100.0, 64.0


def exact_steps(batch_sizes):
    """McCandlish et al. eq. 2.11: S(B) = S_min (1 + B_crit / B)."""
    return [S_MIN * (1 + B_CRIT / b) for b in batch_sizes]


def test_summary_of_the_closed_form_curve_recovers_its_knee():
    lrs = [0.01 * b / 16 for b in LADDER]
    summary = summarize_ladder(LADDER, exact_steps(LADDER), lrs, seed=3)
    assert summary.fit is not None and summary.regimes is not None
    assert summary.fit.b_crit == pytest.approx(B_CRIT, rel=1e-6)
    assert summary.fit.s_min == pytest.approx(S_MIN, rel=1e-6)
    assert summary.lr_trend is not None and summary.lr_trend.exponent == pytest.approx(1.0)
    assert summary.answer.b_crit == pytest.approx(B_CRIT, rel=1e-6)
    assert summary.note is None and summary.error is None


def test_summary_is_exactly_the_analysis_functions_it_calls():
    steps = exact_steps(LADDER)
    summary = summarize_ladder(LADDER, steps, tol=0.2, seed=7)
    fit = fit_scaling(LADDER, steps, seed=7)
    assert summary.fit == fit
    assert summary.regimes == scaling_regimes(LADDER, steps, tol=0.2, fit=fit)


def test_to_dict_keeps_the_keys_of_results_json():
    with_lrs = summarize_ladder(LADDER, exact_steps(LADDER), [0.1] * len(LADDER)).to_dict()
    assert set(with_lrs) == {"fit", "regimes", "answer", "lr_trend"}
    without = summarize_ladder(LADDER, exact_steps(LADDER)).to_dict()
    assert set(without) == {"fit", "regimes", "answer"}


def test_too_few_reached_rungs_give_no_fit_and_say_why():
    steps = exact_steps(LADDER)[: MIN_RUNGS_FOR_FIT - 1] + [None] * (
        len(LADDER) - MIN_RUNGS_FOR_FIT + 1
    )
    summary = summarize_ladder(LADDER, steps, [0.1] * len(LADDER))
    assert summary.fit is None and summary.regimes is None and summary.lr_trend is None
    assert f"{MIN_RUNGS_FOR_FIT - 1} rung(s) reached" in summary.note
    assert f"at least {MIN_RUNGS_FOR_FIT}" in summary.note
    assert summary.to_dict() is None
    assert summary.answer.reason is not None  # the answer says what to run next


def test_exactly_the_minimum_of_reached_rungs_is_fitted():
    sizes = LADDER[:MIN_RUNGS_FOR_FIT]
    assert summarize_ladder(sizes, exact_steps(sizes)).fit is not None


def test_unreached_rungs_are_neither_fitted_nor_trended():
    steps = exact_steps(LADDER)
    steps[-1] = None
    lrs = [0.01 * b / 16 for b in LADDER]
    summary = summarize_ladder(LADDER, steps, lrs)
    assert summary.fit is not None and summary.fit.unreached == (1024,)
    assert summary.lr_trend is not None and 1024 not in summary.lr_trend.batch_sizes


def test_a_failed_fit_is_reported_as_the_analysis_error(monkeypatch):
    import batchlab.analysis._summary as module

    def failing_fit(*args, **kwargs):
        raise AnalysisError("the fit did not converge")

    monkeypatch.setattr(module, "fit_scaling", failing_fit)
    summary = summarize_ladder(LADDER, exact_steps(LADDER))
    assert summary.fit is None and summary.error == "the fit did not converge"
    assert summary.note == "Analysis impossible: the fit did not converge"
    assert summary.to_dict() == {"error": "the fit did not converge"}


@pytest.mark.parametrize(
    ("sizes", "steps", "lrs", "tol", "match"),
    [
        ([64, 32, 128], [10, 20, 5], None, 0.25, "strictly increasing"),
        ([16, 32, 64], [0, 20, 5], None, 0.25, "steps must be positive"),
        ([16, 32, 64], [30, 20], None, 0.25, "same length"),
        ([16, 32, 64], [30, 20, 10], [0.1], 0.25, "lrs must have one entry"),
        ([16, 32, 64], [30, 20, 10], None, 1.5, "tol must be in"),
    ],
)
def test_a_malformed_ladder_is_refused_naming_the_argument(sizes, steps, lrs, tol, match):
    with pytest.raises(AnalysisError, match=match):
        summarize_ladder(sizes, steps, lrs, tol=tol)


def test_a_rung_left_out_is_not_fitted_but_stays_in_the_answer():
    sizes = [*LADDER, 2048]
    steps = [*exact_steps(LADDER), 3 * S_MIN]  # the largest batch rises to 3 S_min
    why = "B = 2048 needs more steps than B = 1024 even at its point."
    summary = summarize_ladder(sizes, steps, left_out=[None] * len(LADDER) + [why], seed=3)
    assert summary.fit is not None and summary.regimes is not None
    assert list(summary.fit.batch_sizes) == LADDER
    assert summary.fit.b_crit == pytest.approx(B_CRIT, rel=1e-6)
    assert summary.fit.s_min == pytest.approx(S_MIN, rel=1e-6)
    assert [r.batch_size for r in summary.answer.rungs] == sizes
    assert summary.answer.rungs[-1].steps == pytest.approx(3 * S_MIN)
    sources = summary.answer.interval_sources
    assert sources is not None and sources.left_out == ((2048, why),)
    assert sources.sentence.endswith(why)
    data = summary.to_dict()["answer"]["interval_sources"]
    assert data["left_out"] == [{"batch_size": 2048, "reason": why}]
    # Fitted, the rise drags the curve: B_crit moves by far more than the fit's tolerance.
    fitted = summarize_ladder(sizes, steps, seed=3).fit
    assert fitted is not None and abs(fitted.b_crit / B_CRIT - 1) > 0.05


def test_left_out_needs_one_entry_per_rung():
    with pytest.raises(AnalysisError, match=r"left_out must have one entry per batch size \(7\)"):
        summarize_ladder(LADDER, exact_steps(LADDER), left_out=[None] * 6)
