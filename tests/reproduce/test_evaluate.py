"""The seven findings' evaluation on synthetic results with known answers."""

from __future__ import annotations

import dataclasses
import math

import pytest

from batchlab.analysis import interval_ratio
from batchlab.reproduce import (
    evaluate_dataset_size,
    evaluate_fixed_epochs,
    evaluate_large_batch,
    evaluate_lr_rules,
    evaluate_momentum,
    evaluate_noise_scale,
    evaluate_regimes,
)

from .synthetic import LADDER, exact_steps, make_curve, noisy_steps, sharp_bend_steps

TARGET = {"metric": "accuracy", "value": 0.85, "direction": "max"}


def close_in_log(value: float, expected: float, tol: float = 0.1) -> bool:
    return abs(math.log(value / expected)) < tol


# ----- 1. regimes ---------------------------------------------------------------------


def test_regimes_held_with_the_right_ratio_when_models_bend_apart():
    a = make_curve("a", noisy_steps(LADDER, 200, 32, 0.03, seed=1))
    b = make_curve("b", noisy_steps(LADDER, 100, 512, 0.03, seed=2))
    finding = evaluate_regimes([a, b])
    assert finding.verdict == "held"
    assert close_in_log(finding.fits[0].b_crit, 32) and close_in_log(finding.fits[1].b_crit, 512)
    (pair,) = finding.pairs
    assert (pair.numerator, pair.denominator) == ("b", "a")
    assert close_in_log(pair.value, 16, 0.15) and pair.ci[0] > 1


def test_regimes_did_not_hold_when_models_share_their_bend():
    a = make_curve("a", exact_steps(LADDER, 200, 128))
    b = make_curve("b", exact_steps(LADDER, 50, 128))
    finding = evaluate_regimes([a, b])
    assert finding.verdict == "did not hold", finding.reason
    assert close_in_log(finding.pairs[0].value, 1.0, 0.02)


def test_regimes_classify_rungs_by_the_fitted_bends():
    finding = evaluate_regimes(
        [
            make_curve("a", exact_steps(LADDER, 200, 100)),
            make_curve("b", exact_steps(LADDER, 200, 64)),
        ]
    )
    fit = finding.fits[0]
    # tol = 0.25: perfect scaling up to B_crit/4 = 25, maximal from 4 B_crit = 400.
    assert fit.perfect == (16,) and fit.maximal == (512, 1024, 2048)
    assert fit.diminishing == (32, 64, 128, 256) and fit.ideal_batch_size == 16
    assert "All three regimes appear in a" in finding.reason


def test_regimes_inconclusive_with_fewer_than_two_fits():
    a = make_curve("a", exact_steps(LADDER, 200, 128))
    b = make_curve("b", [100, 90, None, None, None, None, None, None])
    finding = evaluate_regimes([a, b])
    assert finding.verdict == "inconclusive" and finding.missing == ("b",)


# ----- 2. momentum --------------------------------------------------------------------


def test_momentum_held_when_momentum_bends_later():
    sgd = make_curve("sgd", noisy_steps(LADDER, 300, 64, 0.03, seed=3), optimizer="sgd")
    mom = make_curve("mom", noisy_steps(LADDER, 150, 512, 0.03, seed=4))
    finding = evaluate_momentum(sgd, mom)
    assert finding.verdict == "held"
    assert close_in_log(finding.b_crit_ratio.value, 8, 0.15) and finding.b_crit_ratio.ci[0] > 1
    assert close_in_log(finding.s_min_ratio.value, 0.5, 0.15)
    assert finding.rungs[0][0] == 16 and len(finding.rungs) == len(LADDER)


@pytest.mark.parametrize(
    ("sgd_steps", "momentum_steps", "verdict", "has_ratio"),
    [
        pytest.param(
            exact_steps(LADDER, 300, 512),
            exact_steps(LADDER, 150, 64),
            "did not hold",
            True,
            id="did-not-hold-when-sgd-bends-later",
        ),
        pytest.param(
            [None] * len(LADDER),
            exact_steps(LADDER, 150, 64),
            "inconclusive",
            False,
            id="inconclusive-without-a-fit",
        ),
    ],
)
def test_momentum_verdict_and_a_ratio_only_with_both_fits(
    sgd_steps, momentum_steps, verdict, has_ratio
):
    sgd = make_curve("sgd", sgd_steps, optimizer="sgd")
    finding = evaluate_momentum(sgd, make_curve("mom", momentum_steps))
    assert finding.verdict == verdict
    assert (finding.b_crit_ratio is not None) == has_ratio


# ----- 3. LR rules --------------------------------------------------------------------


def test_lr_rules_held_when_the_tuned_lr_stops_growing():
    # B_crit = 64: perfect scaling up to 16; beyond it the LR is flat.
    steps = exact_steps(LADDER, 200, 64)
    lrs = [0.1 * (16 / 16), *[0.2 * (1 + 0.05 * (-1) ** i) for i in range(len(LADDER) - 1)]]
    finding = evaluate_lr_rules([make_curve("a", steps, lrs=lrs)])
    (row,) = finding.rows
    assert finding.verdict == "held", finding.reason
    assert row.status == "neither rule" and row.beyond == LADDER[1:]
    assert abs(row.beyond_exponent) < 0.05
    assert row.beyond_ci[1] < 0.5


@pytest.mark.parametrize(("k", "rule"), [(1.0, "linear rule"), (0.5, "square-root rule")])
def test_lr_rules_did_not_hold_when_the_lr_follows_a_rule(k, rule):
    steps = exact_steps(LADDER, 200, 64)
    lrs = [0.01 * b**k * (1 + 0.02 * (-1) ** i) for i, b in enumerate(LADDER)]
    finding = evaluate_lr_rules([make_curve("a", steps, lrs=lrs)])
    assert finding.rows[0].status == rule
    assert finding.verdict == "did not hold"
    assert abs(finding.rows[0].exponent - k) < 0.02


def test_lr_rules_inconclusive_without_rungs_beyond_perfect_scaling():
    steps = exact_steps(LADDER, 10, 1e6)  # all perfect scaling
    finding = evaluate_lr_rules([make_curve("a", steps, lrs=[1e-3 * b for b in LADDER])])
    assert finding.rows[0].status == "too few rungs" and finding.verdict == "inconclusive"


def test_lr_rules_do_not_rest_on_an_lr_at_the_edge_of_the_searched_range():
    # The flat LR of the "held" case above, but the search never tried beyond it at
    # B = 128: that rung's optimum is not measured, so the model is not judged.
    steps = exact_steps(LADDER, 200, 64)
    lrs = [0.1, *[0.2 * (1 + 0.05 * (-1) ** i) for i in range(len(LADDER) - 1)]]
    curve = dataclasses.replace(make_curve("a", steps, lrs=lrs), lr_edges=(16, 128))
    finding = evaluate_lr_rules([curve])
    (row,) = finding.rows
    assert row.status == "LR on the edge" and row.edges == (128,)  # 16 is not beyond
    assert finding.verdict == "inconclusive"
    assert "a at B = 128" in finding.reason
    other = make_curve("b", steps, lrs=lrs)
    assert evaluate_lr_rules([curve, other]).verdict == "held"


# ----- 4. data-set size ---------------------------------------------------------------


def test_dataset_size_held_when_b_crit_is_the_same():
    small = make_curve("small", noisy_steps(LADDER, 200, 100, 0.02, seed=5), train_size=4000)
    large = make_curve("large", noisy_steps(LADDER, 180, 110, 0.02, seed=6), train_size=40000)
    finding = evaluate_dataset_size(small, large)
    assert finding.verdict == "held", finding.reason
    assert finding.b_crit_ratio.within(2.0) and close_in_log(finding.b_crit_ratio.value, 1.1, 0.1)
    assert (finding.small_size, finding.large_size) == (4000, 40000)


def test_dataset_size_did_not_hold_when_b_crit_moves_by_a_decade():
    small = make_curve("small", exact_steps(LADDER, 200, 40))
    large = make_curve("large", exact_steps(LADDER, 200, 400))
    assert evaluate_dataset_size(small, large).verdict == "did not hold"


def test_findings_read_each_studys_answer_and_its_free_bend_where_that_fits_better():
    # A sharp bend (α = 4) at B_crit 80: the hyperbola puts B_crit near 56 with a
    # wide interval; the study's answer reads it off the free bend, as the CLI does,
    # and the findings compare that answer, with the ratio's interval built from the
    # two answers' intervals.
    small = make_curve("small", noisy_steps(LADDER, 200, 100, 0.02, seed=5), train_size=4000)
    large = make_curve(
        "large", sharp_bend_steps(LADDER, 200, 80, 4.0, 0.02, seed=5), train_size=40000
    )
    finding = evaluate_dataset_size(small, large)
    assert finding.small.b_crit_model == "hyperbola"
    assert finding.small.b_crit == finding.small.fit.b_crit
    assert finding.large.b_crit_model == "free bend"
    assert finding.large.b_crit == finding.large.answer.b_crit
    assert close_in_log(finding.large.b_crit, 80, 0.05)
    assert not close_in_log(finding.large.fit.b_crit, 80, 0.2)
    knee = finding.large.answer.free_bend
    assert finding.large.predict_steps(64) == pytest.approx(knee.predict_steps(64))
    value, ci = interval_ratio(
        finding.large.b_crit, finding.large.b_crit_ci, finding.small.b_crit, finding.small.b_crit_ci
    )
    assert finding.b_crit_ratio.value == pytest.approx(value)
    assert finding.b_crit_ratio.ci == pytest.approx(ci)
    assert finding.b_crit_ratio.ci[1] < 1  # 80 against 100, each pinned to a few %


# ----- 5. fixed epochs ----------------------------------------------------------------


def budget_records(fixed: dict[int, float | None], tuned: dict[int, float | None]) -> list[dict]:
    records = []
    for batch_size, value in fixed.items():
        steps = max(1, round(10 * 4000 / batch_size))
        records.append(
            {
                "batch_size": batch_size,
                "budget": "fixed_epochs",
                "max_steps": steps,
                "epochs": steps * batch_size / 4000,
                "final": value,
            }
        )
    for batch_size, value in tuned.items():
        records.append(
            {
                "batch_size": batch_size,
                "budget": "tuned_steps",
                "max_steps": 3000,
                "epochs": 3000 * batch_size / 4000,
                "final": value,
            }
        )
    return records


LOSS = {"metric": "loss", "value": 2.0, "direction": "min"}


def fixed_epochs_finding(fixed, tuned, target=TARGET, tolerance=0.02):
    """Finding 5 at 10 epochs with B <= 32 as the small batches."""
    return evaluate_fixed_epochs(
        "s",
        budget_records(fixed, tuned),
        target=target,
        epochs=10,
        small_batch_max=32,
        tolerance=tolerance,
    )


@pytest.mark.parametrize(
    ("fixed", "tuned", "target", "tolerance", "expected", "says"),
    [
        pytest.param(
            {16: 0.90, 32: 0.89, 128: 0.80, 512: 0.6, 2048: 0.3},
            {16: 0.90, 32: 0.90, 128: 0.91, 512: 0.905, 2048: 0.90},
            TARGET,
            0.02,
            {
                "verdict": "held",
                "gap_fixed": pytest.approx(0.90 - 0.80),
                "gap_tuned": pytest.approx(0.90 - 0.91),
                "best_fixed": (16, 0.90),
                "best_tuned": (128, 0.91),
            },
            "win only when every batch size gets the same epochs",
            id="held-when-small-batches-win-only-at-fixed-epochs",
        ),
        pytest.param(
            {16: 0.90, 128: 0.80},
            {16: 0.95, 128: 0.88},
            TARGET,
            0.02,
            {"verdict": "did not hold"},
            "stay better",
            id="did-not-hold-when-small-batches-stay-better",
        ),
        pytest.param(
            {16: 1.8, 128: 2.4},
            {16: 1.8, 128: 1.79},
            LOSS,
            0.05,
            {"verdict": "held", "gap_fixed": pytest.approx(0.6), "gap_tuned": pytest.approx(-0.01)},
            "win only when every batch size gets the same epochs",
            id="reads-a-loss-target-with-the-sign-flipped",
        ),
        pytest.param(
            {16: 0.80, 128: 0.85},
            {16: 0.85, 128: 0.91},
            TARGET,
            0.02,
            {"verdict": "inconclusive", "gap_fixed": pytest.approx(0.80 - 0.85)},
            "premise is not reproduced",
            id="inconclusive-when-small-batches-do-not-win-even-at-fixed-epochs",
        ),
        pytest.param(
            {128: 0.8},
            {128: 0.9},
            TARGET,
            0.02,
            {"verdict": "inconclusive", "gap_fixed": None},
            "a side has no finished run",
            id="inconclusive-when-a-side-is-missing",
        ),
    ],
)
def test_fixed_epochs_verdict_from_the_gaps_at_both_budgets(
    fixed, tuned, target, tolerance, expected, says
):
    finding = fixed_epochs_finding(fixed, tuned, target, tolerance)
    assert {name: getattr(finding, name) for name in expected} == expected, finding.reason
    assert says in finding.reason


def test_fixed_epochs_rows_are_the_rungs_with_the_fixed_epoch_steps():
    finding = fixed_epochs_finding(
        {16: 0.90, 32: 0.89, 128: 0.80, 512: 0.6, 2048: 0.3},
        {16: 0.90, 32: 0.90, 128: 0.91, 512: 0.905, 2048: 0.90},
    )
    assert [r.batch_size for r in finding.rows] == [16, 32, 128, 512, 2048]
    assert finding.rows[0].fixed_steps == 2500


# ----- 6. noise scale -----------------------------------------------------------------


def noise_record(study: str, b_simple: float, ci: tuple[float, float]) -> dict:
    checkpoints = [
        {
            "step": s,
            "fraction": s / 100,
            "metrics": {"accuracy": 0.5 + s / 400},
            "b_simple": b_simple * (0.2 + 0.8 * s / 100),
            "b_simple_ci": [ci[0], ci[1]],
        }
        for s in (0, 50, 100)
    ]
    return {
        "key": study,
        "job": {
            "study": study,
            "workload": "mnist1d-cnn",
            "train_batch_size": 128,
            "batch_size": 1024,
            "micro_batch_size": 128,
        },
        "checkpoints": checkpoints,
    }


def test_noise_scale_held_when_b_simple_matches_b_crit():
    curve = make_curve("a", noisy_steps(LADDER, 200, 100, 0.02, seed=7))
    finding = evaluate_noise_scale([noise_record("a", 120.0, (100.0, 145.0))], {"a": curve})
    (row,) = finding.rows
    assert finding.verdict == "held", finding.reason
    assert row.status == "agrees" and close_in_log(row.ratio, 1.2, 0.1)
    assert row.at_target.metric == pytest.approx(0.75)
    assert finding.metric_names == {"a": "accuracy"}


@pytest.mark.parametrize(
    ("seed", "b_simple", "ci", "status", "verdict"),
    [
        pytest.param(
            # Averaged over the run (x0.49, see noise_record): about 15x B_crit.
            8,
            3000.0,
            (2700.0, 3300.0),
            "disagrees",
            "did not hold",
            id="fifteen-times-b-crit",
        ),
        pytest.param(9, 100.0, (5.0, 5000.0), "unclear", "inconclusive", id="interval-too-wide"),
    ],
)
def test_noise_scale_fails_or_cannot_tell_when_b_simple_misses_or_is_too_uncertain(
    seed, b_simple, ci, status, verdict
):
    curve = make_curve("a", noisy_steps(LADDER, 200, 100, 0.02, seed=seed))
    finding = evaluate_noise_scale([noise_record("a", b_simple, ci)], {"a": curve})
    assert finding.rows[0].status == status and finding.verdict == verdict


def test_the_trajectory_average_is_the_geometric_mean_with_combined_intervals():
    from batchlab.reproduce._finding_noise_scale import NoiseCheckpoint, trajectory_average

    points = [
        NoiseCheckpoint(step=s, fraction=f, metric=None, b_simple=b, b_simple_ci=ci)
        for s, f, b, ci in (
            (0, 0.0, 10.0, (5.0, 20.0)),
            (50, 0.5, 40.0, (20.0, 80.0)),
            (60, 0.6, None, (None, None)),  # no estimate: left out
        )
    ]
    average, (low, high) = trajectory_average(points)
    assert average == pytest.approx(20.0)
    # Each log-interval is ±log 2, so s_i = log 2 / z and the mean's half-width is
    # z·√2·(log 2 / z)/2 = log 2 / √2.
    half = math.log(2) / math.sqrt(2)
    assert (low, high) == (
        pytest.approx(20 * math.exp(-half)),
        pytest.approx(20 * math.exp(half)),
    )
    assert trajectory_average(points[2:]) == (None, None)


def test_noise_scale_verdict_reads_the_average_and_leaves_adaptive_optimizers_out():
    # The endpoint, 1500 against B_crit ≈ 100, misses a band of 10; the run's average
    # (x0.49, see noise_record: about 740) agrees: the verdict follows the average.
    sgd = make_curve("sgd", noisy_steps(LADDER, 200, 100, 0.02, seed=7))
    adam = make_curve("adam", noisy_steps(LADDER, 200, 100, 0.02, seed=8), optimizer="adam")
    records = [
        noise_record("sgd", 1500.0, (1400.0, 1600.0)),
        noise_record("adam", 100_000.0, (90_000.0, 110_000.0)),
    ]
    finding = evaluate_noise_scale(records, {"sgd": sgd, "adam": adam})
    by_study = {r.study: r for r in finding.rows}
    assert by_study["sgd"].endpoint_status == "disagrees"
    assert by_study["sgd"].status == "agrees"
    assert by_study["adam"].status == "disagrees" and not by_study["adam"].judged
    assert finding.verdict == "held", finding.reason
    assert "Not judged (adaptive optimizer): adam" in finding.reason
    only_adam = evaluate_noise_scale(records[1:], {"adam": adam})
    assert only_adam.verdict == "inconclusive"


# ----- 7. large batch -----------------------------------------------------------------


def large_curves(ref, lars, lamb):
    rungs = (512, 1024, 2048)
    return (
        make_curve("ref", list(ref), batch_sizes=rungs),
        [
            make_curve("lars", list(lars), batch_sizes=rungs, optimizer="lars"),
            make_curve("lamb", list(lamb), batch_sizes=rungs, optimizer="lamb"),
        ],
    )


@pytest.mark.parametrize(
    ("ref", "lars", "lamb", "verdict", "decisive"),
    [
        pytest.param(
            [300, 260, 300],
            [320, 300, 310],
            [200, 150, 120],
            "held",
            2048,
            id="held-when-lamb-needs-fewer-steps-at-the-largest-rung",
        ),
        pytest.param(
            [300, 260, 300],
            [320, 300, 295],
            [300, 280, None],
            "did not hold",
            2048,
            id="did-not-hold-within-one-evaluation-interval",
        ),
        pytest.param(
            [300, 260, None],
            [320, 300, None],
            [300, 200, None],
            "held",
            1024,
            id="decided-at-the-largest-rung-anyone-reached",
        ),
        pytest.param(
            [None] * 3,
            [None] * 3,
            [None] * 3,
            "inconclusive",
            None,
            id="inconclusive-when-nothing-reached",
        ),
    ],
)
def test_large_batch_verdict_at_the_decisive_rung(ref, lars, lamb, verdict, decisive):
    finding = evaluate_large_batch(*large_curves(ref, lars, lamb))
    assert finding.verdict == verdict, finding.reason
    assert finding.decisive == decisive


def test_large_batch_rows_hold_every_optimizers_steps_and_the_coarsest_interval():
    finding = evaluate_large_batch(*large_curves([300, 260, 300], [320, 300, 310], [200, 150, 120]))
    assert (
        finding.rows[-1].others == {"lars": 310, "lamb": 120} and finding.rows[-1].resolution == 10
    )
