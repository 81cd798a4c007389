"""hparam_trends: exponents and rule errors of exact ladders, intervals on noisy ones."""

import json
import math

import numpy as np
import pytest

from batchlab.analysis import AnalysisError, hparam_trends, scaling_regimes, summarize_ladder
from batchlab.optim import scale_beta2, scale_lr, scale_weight_decay

LADDER = [64, 128, 256, 512]
LN2 = math.log(2.0)


def test_beta2_at_a_fixed_half_life_has_half_life_exponent_zero_and_no_error():
    # β2(B) = 0.99^(B/64): 0.99, 0.9801, 0.96059601, 0.92274469 (Marek et al.'s rule).
    tuned = [{"beta2": 0.99 ** (b / 64)} for b in LADDER]
    trend = hparam_trends(LADDER, tuned).trends["beta2"]
    half_life = trend.exponent("half_life")
    assert half_life.exponent == pytest.approx(0.0, abs=1e-12)
    # h = 64 ln ½ / ln 0.99 = 4413.9 examples at every rung.
    assert half_life.values == pytest.approx([64 * math.log(0.5) / math.log(0.99)] * 4)
    rule = trend.rule("half-life")
    assert rule.log_errors == pytest.approx([0.0] * 4, abs=1e-12)
    assert rule.mean_abs_log_error == pytest.approx(0.0, abs=1e-12)
    assert rule.consistent and trend.reads_as == "half-life" and trend.closest == "half-life"
    # "Unchanged" keeps 0.99: off by (1 − β2)/0.01 = 1.99, 3.940399, 7.725531.
    unchanged = trend.rule("unchanged")
    expected = [math.log(1.99), math.log(3.940399), math.log(7.72553099)]
    assert unchanged.log_errors[1:] == pytest.approx(expected, rel=1e-6)
    assert unchanged.mean_abs_log_error == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert not unchanged.consistent
    # 1 − β2 roughly doubles per doubling: Malladi et al.'s first-order reading.
    assert 0.9 < trend.exponent("one_minus_beta2").exponent < 1.0


def test_lr_proportional_to_sqrt_batch_size_reads_as_the_square_root_rule():
    tuned = [{"lr": 1e-3 * math.sqrt(b / 64)} for b in LADDER]
    trend = hparam_trends(LADDER, tuned).trends["lr"]
    fit = trend.exponent("lr")
    assert fit.exponent == pytest.approx(0.5, abs=1e-12)
    assert fit.exponent_ci == pytest.approx((0.5, 0.5), abs=1e-9)
    assert trend.reads_as == "square-root" and trend.closest == "square-root"
    assert trend.rule("square-root").mean_abs_log_error == pytest.approx(0.0, abs=1e-12)
    # The linear rule overshoots by √(B/64): log errors −½ ln 2, −ln 2, −3/2 ln 2, mean ln 2.
    linear = trend.rule("linear")
    assert linear.log_errors[1:] == pytest.approx([-0.5 * LN2, -LN2, -1.5 * LN2])
    assert linear.mean_abs_log_error == pytest.approx(LN2)
    assert linear.error_factor == pytest.approx(2.0)
    assert [r.consistent for r in trend.rules] == [False, True, False]


def test_adamw_decay_proportional_to_batch_size_at_fixed_lr_keeps_the_timescale():
    # λ ∝ B at η = 1e-3, N = 64,000: τ = B/(ηλN) = 64/(1e-3 · 0.1 · 64,000) = 10 epochs.
    tuned = [{"lr": 1e-3, "weight_decay": 0.1 * b / 64} for b in LADDER]
    result = hparam_trends(LADDER, tuned, train_size=64_000)
    assert "lr" not in result.trends  # the same at every rung: not searched
    trend = result.trends["weight_decay"]
    timescale = trend.exponent("timescale")
    assert timescale.exponent == pytest.approx(0.0, abs=1e-12)
    assert timescale.values == pytest.approx([10.0] * 4)
    assert "epochs" in timescale.label
    assert trend.exponent("weight_decay").exponent == pytest.approx(1.0)
    assert trend.rule("timescale").mean_abs_log_error == pytest.approx(0.0, abs=1e-12)
    # Keeping λ = 0.1 is off by B/64: ln 2, ln 4, ln 8, mean 2 ln 2.
    assert trend.rule("unchanged").mean_abs_log_error == pytest.approx(2 * LN2)
    assert trend.reads_as == "timescale"


def test_timescale_rule_uses_each_rungs_own_tuned_learning_rate():
    # η ∝ √B and λ ∝ √B keep B/(ηλ) fixed: the rule predicts λ' = λ (B'/B)(η/η').
    tuned = [
        {"lr": 1e-3 * math.sqrt(b / 64), "weight_decay": 0.1 * math.sqrt(b / 64)} for b in LADDER
    ]
    trend = hparam_trends(LADDER, tuned).trends["weight_decay"]
    assert trend.rule("timescale").log_errors == pytest.approx([0.0] * 4, abs=1e-12)
    assert "examples" in trend.exponent("timescale").label  # no train_size: in examples


def test_predictions_equal_the_optim_transfer_functions():
    """The analysis' (quantity, exponent) rules are optim's one-step maps from B₀."""
    tuned = [
        {"lr": lr, "beta2": beta2, "weight_decay": wd}
        for lr, beta2, wd in zip(
            [1e-3, 1.7e-3, 2.1e-3, 4e-3],
            [0.995, 0.99, 0.97, 0.95],
            [0.1, 0.3, 0.2, 0.9],
            strict=True,
        )
    ]
    trends = hparam_trends(LADDER, tuned).trends
    lr0, beta0, wd0 = (tuned[0][k] for k in ("lr", "beta2", "weight_decay"))
    for i, b in enumerate(LADDER):
        assert trends["lr"].rule("linear").predicted[i] == pytest.approx(
            scale_lr(lr0, 64, b, "linear")
        )
        assert trends["lr"].rule("square-root").predicted[i] == pytest.approx(
            scale_lr(lr0, 64, b, "sqrt")
        )
        assert trends["beta2"].rule("half-life").predicted[i] == pytest.approx(
            scale_beta2(beta0, 64, b), rel=1e-12
        )
        assert trends["weight_decay"].rule("timescale").predicted[i] == pytest.approx(
            scale_weight_decay(wd0, 64, b, lr_factor=tuned[i]["lr"] / lr0)
        )


def test_interval_contains_the_true_exponent_on_noisy_data():
    # log η = 0.7 log B + c + ε, ε ~ N(0, 0.3²) (a log-spaced search's tuning error).
    sizes = [2**k for k in range(4, 12)]
    rng = np.random.default_rng(0)
    tuned = [{"lr": 1e-3 * b**0.7 * math.exp(rng.normal(0, 0.3))} for b in sizes]
    fit = hparam_trends(sizes, tuned).trends["lr"].exponent("lr")
    low, high = fit.exponent_ci
    assert low < 0.7 < high
    assert fit.exponent_se > 0 and high - low < 0.6


def test_interval_coverage_is_its_nominal_level():
    # With Gaussian errors in log η the t interval is exact: over 400 replicates its
    # coverage is 0.95 with binomial sd √(0.95·0.05/400) ≈ 0.011; ±0.035 is 3 sd.
    sizes = np.array([2**k for k in range(4, 10)], dtype=float)
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        lrs = 1e-3 * sizes**0.4 * np.exp(rng.normal(0, 0.5, sizes.size))
        fit = hparam_trends(sizes, [{"lr": float(v)} for v in lrs]).trends["lr"].exponent("lr")
        hits += fit.exponent_ci[0] <= 0.4 <= fit.exponent_ci[1]
    assert abs(hits / 400 - 0.95) < 0.035


def test_two_rungs_give_no_interval_and_read_within_a_quarter():
    trend = hparam_trends([64, 256], [{"lr": 1e-3}, {"lr": 2.2e-3}]).trends["lr"]
    fit = trend.exponent("lr")
    assert fit.exponent_se is None and fit.exponent_ci is None
    assert fit.exponent == pytest.approx(math.log(2.2) / math.log(4))  # 0.569
    assert trend.reads_as == "square-root"


def test_untuned_rungs_and_unsearched_hyperparameters_are_left_out():
    tuned = [
        {"lr": 1e-3, "beta2": 0.999, "weight_decay": 0.0},
        None,
        {"lr": 2e-3, "beta2": 0.999, "weight_decay": 0.0},
        {"lr": 4e-3, "beta2": 0.999, "weight_decay": 0.0, "momentum": 0.9},
    ]
    result = hparam_trends(LADDER, tuned)
    assert list(result.trends) == ["lr"]
    assert result.trends["lr"].batch_sizes == (64, 256, 512)
    assert (result.from_batch_size, result.to_batch_size) == (64, 512)


def test_per_regime_exponents_follow_the_regimes():
    sizes = [2**k for k in range(14)]
    regimes = scaling_regimes(sizes, [100.0 * (1 + 300.0 / b) for b in sizes])
    tuned = [{"lr": 1e-3 * min(b, 64)} for b in sizes]
    fit = hparam_trends(sizes, tuned, regimes=regimes).trends["lr"].exponent("lr")
    assert fit.per_regime["perfect"] == pytest.approx(1.0)
    assert fit.per_regime["maximal"] == pytest.approx(0.0, abs=1e-12)


def test_transfer_line_and_json():
    tuned = [
        {"lr": 1e-3 * math.sqrt(b / 64), "beta2": 0.99 ** (b / 64), "weight_decay": 0.1 * b / 64}
        for b in LADDER
    ]
    result = hparam_trends(LADDER, tuned, train_size=100_000)
    assert result.transfer == (
        "to go from B=64 to B=512 on this model: "
        "lr x2.83 (closest: square-root rule, off by x1), "
        "beta2 0.99 -> 0.9227 (closest: half-life rule, off by x1), "
        # λ ∝ B against the timescale rule's λ ∝ B/η ∝ √B: off by √(B/64), mean ×2.
        "weight_decay x8 (closest: timescale rule, off by x2)"
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["hparams"]["beta2"]["closest"] == "half-life"
    assert data["hparams"]["lr"]["exponents"][0]["exponent_ci"] == pytest.approx([0.5, 0.5])
    assert data["transfer"] == result.transfer


@pytest.mark.parametrize(
    ("tuned", "match"),
    [
        ([{"beta2": 1.0}, {"beta2": 0.9}], "beta2 at batch size 64 must be in"),
        ([{"lr": -1.0}, {"lr": 1.0}], "lr at batch size 64 must be > 0"),
        ([{"lr": 1.0}], "same length"),
        ([{"lr": 1.0}, None], "at least 2 tuned rungs"),
        ([{"lr": "fast"}, {"lr": 1.0}], "must be a number"),
    ],
)
def test_bad_input_names_the_argument(tuned, match):
    with pytest.raises(AnalysisError, match=match):
        hparam_trends([64, 128], tuned)


def test_summarize_ladder_reads_hparams_and_writes_them_to_the_analysis_block():
    sizes = [16, 32, 64, 128, 256]
    steps = [2000.0 * (1 + 100 / b) / 2 for b in sizes]
    hparams = [{"lr": 1e-3 * b**0.5, "beta2": 0.999 ** (b / 16)} for b in sizes]
    hparams[-1] = dict(hparams[-1])
    summary = summarize_ladder(sizes, steps[:-1] + [None], hparams=hparams, train_size=5000)
    trends = summary.hparam_trends
    assert trends is not None and list(trends.trends) == ["lr", "beta2"]
    assert trends.to_batch_size == 128  # the rung that never reached the target is left out
    assert summary.lr_trend is not None  # lrs default to the hparams' lr
    assert summary.lr_trend.exponent == pytest.approx(0.5)
    block = summary.to_dict()
    assert block["hparam_trends"]["transfer"].startswith("to go from B=16 to B=128")
    assert "hparam_trends" not in summarize_ladder(sizes, steps).to_dict()
