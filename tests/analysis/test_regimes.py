"""scaling_regimes on exact curves S(B) = S_min (1 + B_crit / B), where the answer is closed-form."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import (
    PairReading,
    RegimeBoundaries,
    ScalingRegimes,
    fit_scaling,
    scaling_regimes,
)

LADDER = [2**k for k in range(14)]  # 1 ... 8192


def exact_steps(batch_sizes, s_min=100.0, b_crit=300.0):
    return [s_min * (1.0 + b_crit / b) for b in batch_sizes]


def closed_form(batch_sizes, b_crit, tol):
    """Regimes by the definitions on the exact curve: bends at tol·B_crit and B_crit/tol."""
    perfect = [b for b in batch_sizes if b <= tol * b_crit]
    maximal = [b for b in batch_sizes if b >= b_crit / tol]
    diminishing = [b for b in batch_sizes if b not in perfect and b not in maximal]
    return perfect, diminishing, maximal


@pytest.mark.parametrize(
    ("b_crit", "tol"), [(300.0, 0.25), (300.0, 0.1), (300.0, 0.5), (37.0, 0.25), (5000.0, 0.3)]
)
def test_regimes_of_an_exact_curve_match_the_closed_form(b_crit, tol):
    regimes = scaling_regimes(LADDER, exact_steps(LADDER, b_crit=b_crit), tol=tol)
    perfect, diminishing, maximal = closed_form(LADDER, b_crit, tol)
    assert regimes.perfect == perfect
    assert regimes.diminishing == diminishing
    assert regimes.maximal == maximal
    assert regimes.ideal_batch_size == (perfect[-1] if perfect else None)
    assert regimes.boundaries.perfect_end == pytest.approx(tol * b_crit)
    assert regimes.boundaries.maximal_start == pytest.approx(b_crit / tol)
    assert regimes.tol == tol and regimes.unreached == []


def test_default_tolerance_puts_the_bends_at_a_quarter_and_four_times_b_crit():
    # B_crit = 300: perfect up to 75, maximal from 1200.
    regimes = scaling_regimes(LADDER, exact_steps(LADDER))
    assert regimes.perfect == [1, 2, 4, 8, 16, 32, 64]
    assert regimes.diminishing == [128, 256, 512, 1024]
    assert regimes.maximal == [2048, 4096, 8192]
    assert regimes.ideal_batch_size == 64
    assert regimes.boundaries == RegimeBoundaries(
        perfect_end=pytest.approx(75.0), maximal_start=pytest.approx(1200.0)
    )


def test_fitted_model_and_definitions_agree_on_e_and_s_thresholds():
    # The regimes are the DESIGN.md definitions: E(B) <= (1+tol) E_min, S(B) <= (1+tol) S_min.
    regimes = scaling_regimes(LADDER, exact_steps(LADDER))
    fit = regimes.fit
    for b in regimes.perfect:
        assert fit.predict_examples(b) <= 1.25 * fit.e_min
    for b in regimes.maximal:
        assert fit.predict_steps(b) <= 1.25 * fit.s_min
    for b in regimes.diminishing:
        assert fit.predict_examples(b) > 1.25 * fit.e_min
        assert fit.predict_steps(b) > 1.25 * fit.s_min


def test_a_rung_exactly_on_a_bend_is_inside_the_regime():
    # B_crit = 256, tol = 0.25: the bends fall on the rungs 64 and 1024 exactly.
    regimes = scaling_regimes(LADDER, exact_steps(LADDER, b_crit=256.0))
    assert regimes.ideal_batch_size == 64
    assert regimes.maximal[0] == 1024


def test_unreached_rungs_are_listed_separately():
    steps = exact_steps(LADDER)
    steps[5] = None  # 32: never reached (a failed search), inside perfect scaling
    steps[-1] = math.inf  # 8192
    steps[-2] = math.nan  # 4096
    regimes = scaling_regimes(LADDER, steps)
    assert regimes.unreached == [32, 4096, 8192]
    assert regimes.perfect == [1, 2, 4, 8, 16, 64]
    assert regimes.maximal == [2048]
    assert regimes.ideal_batch_size == 64
    # The model-free pairs skip the unreached rung.
    assert (16, 64) in [(r.lower, r.upper) for r in regimes.model_free]


def test_no_rung_in_perfect_scaling_gives_no_ideal_batch_size():
    sizes = [512, 1024, 2048, 4096]
    regimes = scaling_regimes(sizes, exact_steps(sizes))
    assert regimes.perfect == [] and regimes.ideal_batch_size is None


def test_model_free_reading_agrees_with_the_fit_on_an_exact_curve():
    for b_crit in (37.0, 300.0, 5000.0):
        for tol in (0.1, 0.25, 0.5):
            regimes = scaling_regimes(LADDER, exact_steps(LADDER, b_crit=b_crit), tol=tol)
            assert regimes.disagreements == []
            assert all(reading.agrees for reading in regimes.model_free)
    # And on an uneven ladder (ratios 3, 1.5, 10, ...): the rule does not assume doubling.
    uneven = [1, 3, 4.5, 45, 60, 600, 7000, 20000]
    regimes = scaling_regimes(uneven, exact_steps(uneven))
    assert regimes.disagreements == []


def test_model_free_reading_uses_the_model_slopes_at_the_bends():
    regimes = scaling_regimes(LADDER, exact_steps(LADDER))
    readings = {(r.lower, r.upper): r for r in regimes.model_free}
    deep_perfect = readings[(1, 2)]
    assert deep_perfect.regime == "perfect" and deep_perfect.fitted == ("perfect", "perfect")
    assert deep_perfect.step_ratio == pytest.approx((1 + 300) / (1 + 150))
    assert deep_perfect.slope == pytest.approx(math.log2(301 / 151))
    assert readings[(4096, 8192)].regime == "maximal"
    assert readings[(256, 512)].regime == "diminishing"
    # For a doubling at tol = 0.25, steps must fall by 2^0.8 to read as perfect and
    # by at most 2^0.2 to read as maximal.
    assert isinstance(deep_perfect, PairReading)
    assert all(
        (r.regime == "perfect") == (r.step_ratio >= 2**0.8 * (1 - 1e-9))
        and (r.regime == "maximal") == (r.step_ratio <= 2**0.2 * (1 + 1e-9))
        for r in regimes.model_free
    )


def test_model_free_reading_flags_an_anomalous_point():
    # Rung 16 (deep in perfect scaling) reports 2.5x fewer steps than the curve: the
    # robust fit barely moves, but 16 -> 32 then shows steps *rising* (slope < 0),
    # which reads as maximal data parallelism between two perfect-scaling rungs.
    steps = exact_steps(LADDER)
    steps[4] /= 2.5
    regimes = scaling_regimes(LADDER, steps)
    assert regimes.perfect[-1] == 64  # the fit still puts the bend near 75
    assert 16 in regimes.disagreements
    flagged = [r for r in regimes.model_free if not r.agrees]
    assert [(r.lower, r.upper) for r in flagged] == [(16, 32)]
    assert flagged[0].regime == "maximal" and flagged[0].fitted == ("perfect", "perfect")


def test_precomputed_fit_is_reused_and_kept():
    steps = exact_steps(LADDER)
    fit = fit_scaling(LADDER, steps, n_bootstrap=10)
    regimes = scaling_regimes(LADDER, steps, fit=fit)
    assert regimes.fit is fit
    with pytest.raises(ValueError, match="fit was made on rungs"):
        scaling_regimes(LADDER[:-1], steps[:-1], fit=fit)
    with pytest.raises(TypeError, match="fit must be a ScalingFit"):
        scaling_regimes(LADDER, steps, fit={"b_crit": 300.0})


def test_regime_of_names_the_regime_of_a_rung():
    regimes = scaling_regimes(LADDER, exact_steps(LADDER))
    assert regimes.regime_of(64) == "perfect"
    assert regimes.regime_of(128) == "diminishing"
    assert regimes.regime_of(8192) == "maximal"
    assert regimes.regime_of(3) is None


def test_regimes_to_dict_is_plain_json():
    steps = exact_steps(LADDER)
    steps[0] = None
    regimes = scaling_regimes(np.array(LADDER, dtype=float), steps)
    assert isinstance(regimes, ScalingRegimes)
    data = regimes.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["ideal_batch_size"] == 64 and type(data["ideal_batch_size"]) is int
    assert data["unreached"] == [1]
    assert set(data["boundaries"]) == {"perfect_end", "maximal_start"}
    assert data["model_free"][0]["fitted"] == ["perfect", "perfect"]
    assert "fit" not in data
