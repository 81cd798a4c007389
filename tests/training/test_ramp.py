"""``BatchRamp``: the ratio calibration by hand, the controller's moves, the driver's cost."""

from __future__ import annotations

import math
from collections.abc import Iterator
from statistics import NormalDist
from typing import Any

import pytest
import torch

import batchlab as bl
from batchlab.optim import scale_weight_decay, transfer_hparams
from batchlab.training import (
    BatchRamp,
    CalibrationPoint,
    calibrated_b_crit,
    estimate_ratio,
    ramp_training,
)
from batchlab.workloads import get_workload

Z = NormalDist().inv_cdf(0.975)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny steps: threads only add contention
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def point(b_crit: float, se: float, b_simple: float = 100.0, step: int = 0) -> CalibrationPoint:
    """A point whose 95% interval is b_crit · exp(±z·se), i.e. log-variance se²."""
    ci = (b_crit * math.exp(-Z * se), b_crit * math.exp(Z * se))
    return CalibrationPoint(step=step, b_crit=b_crit, b_crit_ci=ci, b_simple=b_simple)


# ----- calibration ---------------------------------------------------------------------


def test_point_variance_is_read_off_its_log_interval():
    p = CalibrationPoint(step=0, b_crit=200.0, b_crit_ci=(100.0, 400.0), b_simple=100.0)
    assert p.log_ratio == pytest.approx(math.log(2))
    assert p.log_variance == pytest.approx((math.log(4) / (2 * Z)) ** 2)


def test_no_point_gives_the_prior_with_infinite_error():
    est = estimate_ratio([], prior_ratio=0.5)
    assert est.ratio == pytest.approx(0.5)
    assert est.log_ratio_se == math.inf and est.n == 0
    assert est.ratio_ci == (0.0, math.inf)


def test_one_point_is_its_own_estimate():
    est = estimate_ratio([point(300.0, 0.2)])
    assert est.ratio == pytest.approx(3.0)
    assert est.log_ratio_se == pytest.approx(0.2)
    assert est.tau2 == 0.0
    assert est.ratio_ci == pytest.approx((3 * math.exp(-Z * 0.2), 3 * math.exp(Z * 0.2)))


def test_random_effects_mean_matches_hand_computation():
    # y = (0, 1), v = (0.01, 0.04): w = (100, 25); fixed-effect mean 25/125 = 0.2;
    # Q = 100·0.2² + 25·0.8² = 20; c = 125 − (100² + 25²)/125 = 40; τ² = (20 − 1)/40 = 0.475;
    # w* = 1/(v + τ²) = (1/0.485, 1/0.515); mean = (1/0.515)/(1/0.485 + 1/0.515) = 0.485.
    est = estimate_ratio([point(100.0, 0.1), point(100.0 * math.e, 0.2)])
    assert est.tau2 == pytest.approx(0.475)
    assert est.log_ratio == pytest.approx(0.485)
    assert est.log_ratio_se == pytest.approx(1 / math.sqrt(1 / 0.485 + 1 / 0.515))
    assert est.prediction_sd == pytest.approx(math.sqrt(est.log_ratio_se**2 + 0.475))


def test_agreeing_points_have_no_scatter_and_a_plain_weighted_mean():
    # y = (0, 0.1), v = (0.04, 0.04): Q = 2·25·0.05² = 0.125 < k − 1, so τ² = 0.
    est = estimate_ratio([point(100.0, 0.2), point(100.0 * math.exp(0.1), 0.2)])
    assert est.tau2 == 0.0
    assert est.log_ratio == pytest.approx(0.05)
    assert est.log_ratio_se == pytest.approx(0.2 / math.sqrt(2))


def test_a_point_without_upper_bound_carries_no_weight():
    unbounded = CalibrationPoint(step=0, b_crit=1e4, b_crit_ci=(10.0, math.inf), b_simple=100.0)
    est = estimate_ratio([point(200.0, 0.1), unbounded])
    assert est.n == 1 and est.ratio == pytest.approx(2.0)


def test_calibrated_b_crit_scales_b_simple_and_adds_its_variance():
    est = estimate_ratio([point(200.0, 0.1)])
    plain = calibrated_b_crit(est, 50.0)
    assert plain.b_crit == pytest.approx(100.0)
    assert plain.b_crit_ci == pytest.approx((100 * math.exp(-Z * 0.1), 100 * math.exp(Z * 0.1)))
    # B_simple's own interval, log-half-width z·0.1 too: total sd √(0.1² + 0.1²).
    wide = calibrated_b_crit(est, 50.0, (50 * math.exp(-Z * 0.1), 50 * math.exp(Z * 0.1)))
    sd = math.sqrt(0.02)
    assert wide.b_crit_ci == pytest.approx((100 * math.exp(-Z * sd), 100 * math.exp(Z * sd)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b_crit": -1.0}, "b_crit"),
        ({"b_simple": math.nan}, "b_simple"),
        ({"b_crit_ci": (5.0, 1.0)}, "b_crit_ci"),
        ({"confidence": 1.5}, "confidence"),
    ],
)
def test_bad_calibration_points_name_the_argument(kwargs, message):
    args: dict[str, Any] = {"step": 0, "b_crit": 10.0, "b_crit_ci": (5.0, 20.0), "b_simple": 8.0}
    with pytest.raises(ValueError, match=message):
        CalibrationPoint(**{**args, **kwargs})


# ----- the controller ------------------------------------------------------------------


class FakeTracker:
    """A tracker whose estimate the test sets."""

    def __init__(self, b_simple: float = 1000.0, n: int = 100) -> None:
        self.b_simple, self.n = b_simple, n


def adamw(lr: float = 1e-3) -> torch.optim.Optimizer:
    model = torch.nn.Linear(3, 1)
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1)


def run(ramp: BatchRamp, steps: int) -> None:
    for _ in range(steps):
        ramp.step()


def test_the_batch_waits_for_the_first_calibration_then_follows_it():
    tracker = FakeTracker(1000.0)
    ramp = BatchRamp(tracker, micro_batch_size=8, max_batch_size=4096, update_every=1,
                     min_steps=1, max_growth=None)  # fmt: skip
    run(ramp, 5)
    assert ramp.batch_size == 16 and ramp.calibration_due
    ramp.add_calibration(200.0, (100.0, 400.0))  # r = 0.2: B_crit = 200, target 100
    assert ramp.b_crit == pytest.approx(200.0)
    run(ramp, 1)
    assert ramp.batch_size == 64  # largest 16·2^j <= 0.5 · 200
    assert ramp.history[-1].b_crit == pytest.approx(200.0)
    assert not ramp.calibration_due  # B_simple has not doubled since


def test_without_calibrations_to_come_the_batch_follows_the_prior_ratio():
    # A ratio carried over from an earlier run: no calibration will come, so waiting
    # for one would keep the batch forever; it follows prior_ratio · B_simple instead.
    carried = BatchRamp(FakeTracker(1000.0), micro_batch_size=8, update_every=1, min_steps=1,
                        max_growth=None, max_calibrations=0, prior_ratio=0.2)  # fmt: skip
    assert not carried.calibration_due
    run(carried, 1)
    assert carried.batch_size == 64  # largest 16·2^j <= 0.5 · 0.2 · 1000
    # Every calibration spent without a usable point: the same.
    spent = BatchRamp(FakeTracker(1000.0), micro_batch_size=8, update_every=1, min_steps=1,
                      max_growth=None, max_calibrations=1, prior_ratio=0.2)  # fmt: skip
    run(spent, 3)
    assert spent.batch_size == 16 and spent.calibration_due
    spent.skip_calibration()
    run(spent, 1)
    assert spent.batch_size == 64


def test_carried_points_set_the_ratio_with_their_interval_from_the_first_step():
    # Two points from an earlier run (r = 0.2 and 0.3): r̂ and its interval are theirs
    # from the start, the batch does not wait, and this run's point joins them.
    earlier = [point(20.0, 0.2, b_simple=100.0), point(60.0, 0.2, b_simple=200.0)]
    ramp = BatchRamp(FakeTracker(1000.0), micro_batch_size=8, update_every=1, min_steps=1,
                     max_growth=None, carried=earlier)  # fmt: skip
    assert ramp.ratio == estimate_ratio(earlier)
    assert math.isfinite(ramp.ratio.log_ratio_se) and ramp.ratio.n == 2
    run(ramp, 1)
    r = estimate_ratio(earlier).ratio  # about 0.245: target 0.5 · 245 = 122
    assert ramp.batch_size == 64 and ramp.history[-1].ratio == pytest.approx(r)
    assert ramp.calibration_due and ramp.calibrations == []  # this run's own come on top
    ramp.add_calibration(300.0, (150.0, 600.0))
    assert ramp.ratio == estimate_ratio([*earlier, ramp.calibrations[0]])
    with pytest.raises(TypeError, match="carried"):
        BatchRamp(FakeTracker(), micro_batch_size=8, carried=[0.2])


def test_growth_is_monotone_rounded_and_capped():
    tracker = FakeTracker(1000.0)
    ramp = BatchRamp(tracker, micro_batch_size=8, max_batch_size=256, fraction=1.0,
                     growth="multiple", update_every=1, min_steps=1, max_growth=None)  # fmt: skip
    ramp.add_calibration(120.0, (60.0, 240.0))  # r = 0.12: target 120
    run(ramp, 1)
    assert ramp.batch_size == 120 and ramp.accumulation_steps == 15
    tracker.b_simple = 100.0  # the estimate falls back: the batch stays
    run(ramp, 3)
    assert ramp.batch_size == 120
    tracker.b_simple = 1e6
    run(ramp, 1)
    assert ramp.batch_size == 256  # the cap
    sizes = [c.batch_size for c in ramp.history]
    assert sizes == sorted(sizes)


def test_growth_per_update_is_limited_by_max_growth():
    opt = adamw()
    ramp = BatchRamp(
        FakeTracker(1000.0), micro_batch_size=8, optimizer=opt, update_every=1, min_steps=1
    )  # max_growth=2 by default
    ramp.add_calibration(1000.0, (500.0, 2000.0))  # target 500: 16 -> 256 in four doublings
    run(ramp, 4)
    assert [c.batch_size for c in ramp.history] == [32, 64, 128, 256]
    # Four moves from each previous size compose to the same sqrt-rule LR as one move.
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * math.sqrt(256 / 16))


def test_calibrations_are_due_when_b_simple_grew_after_a_gap_and_at_most_k_times():
    tracker = FakeTracker(100.0, n=0)
    ramp = BatchRamp(tracker, micro_batch_size=8, min_steps=5, max_calibrations=2,
                     calibration_gap=3, update_every=100)  # fmt: skip
    assert not ramp.calibration_due  # too few tracker steps
    tracker.n = 5
    assert ramp.calibration_due
    ramp.add_calibration(100.0, (50.0, 200.0))
    tracker.b_simple = 190.0
    run(ramp, 3)
    assert not ramp.calibration_due  # not doubled yet
    tracker.b_simple = 200.0
    assert ramp.calibration_due
    ramp.skip_calibration()  # a failed one counts
    tracker.b_simple = 1e5
    run(ramp, 3)
    assert not ramp.calibration_due  # two of two


def test_no_calibration_before_the_gap_has_passed():
    tracker = FakeTracker(100.0)
    ramp = BatchRamp(tracker, micro_batch_size=8, min_steps=1, calibration_gap=10,
                     update_every=100)  # fmt: skip
    ramp.add_calibration(100.0, (50.0, 200.0))
    tracker.b_simple = 1e4
    run(ramp, 9)
    assert not ramp.calibration_due
    run(ramp, 1)
    assert ramp.calibration_due


def test_hparams_move_by_transfer_hparams_on_every_change():
    opt = adamw()
    tracker = FakeTracker(1000.0)
    ramp = BatchRamp(tracker, micro_batch_size=8, optimizer=opt, update_every=1, min_steps=1,
                     max_growth=None)  # fmt: skip
    assert ramp.optimizer_name == "adamw"
    ramp.add_calibration(1000.0, (500.0, 2000.0))  # target 500: 16 -> 256
    run(ramp, 1)
    assert ramp.batch_size == 256
    want = transfer_hparams({"lr": 1e-3, "beta2": 0.99, "weight_decay": 0.1}, 16, 256,
                            optimizer="adamw").hparams  # fmt: skip
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(want["lr"])
    assert group["betas"] == (0.9, pytest.approx(want["beta2"]))
    assert group["weight_decay"] == pytest.approx(want["weight_decay"])
    assert ramp.history[-1].lr == pytest.approx(want["lr"])


def test_seesaw_trades_the_lr_for_the_batch():
    opt = adamw()
    ramp = BatchRamp(FakeTracker(1000.0), micro_batch_size=8, optimizer=opt, seesaw=True,
                     update_every=1, min_steps=1, max_growth=None)  # fmt: skip
    ramp.add_calibration(1000.0, (500.0, 2000.0))
    run(ramp, 1)  # 16 -> 256, α = 16: lr / √16
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3 / 4)
    beta2 = transfer_hparams({"lr": 1e-3, "beta2": 0.99}, 16, 256, optimizer="adamw").hparams
    assert group["betas"][1] == pytest.approx(beta2["beta2"])
    assert group["weight_decay"] == pytest.approx(scale_weight_decay(0.1, 16, 256, lr_factor=0.25))


def test_the_lr_cap_binds_and_weight_decay_follows_the_capped_lr():
    opt = adamw()
    ramp = BatchRamp(FakeTracker(1000.0), micro_batch_size=8, optimizer=opt, max_lr_factor=2.0,
                     update_every=1, min_steps=1, max_growth=None)  # fmt: skip
    ramp.add_calibration(1000.0, (500.0, 2000.0))
    run(ramp, 1)  # sqrt rule would give ×4
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(2e-3)
    assert group["weight_decay"] == pytest.approx(scale_weight_decay(0.1, 16, 256, lr_factor=2.0))


def test_state_dict_round_trip():
    tracker = FakeTracker(1000.0)
    ramp = BatchRamp(tracker, micro_batch_size=8, update_every=1, min_steps=1)
    ramp.add_calibration(400.0, (200.0, 800.0))
    run(ramp, 3)
    ramp.skip_calibration()
    state = ramp.state_dict()
    again = BatchRamp(tracker, micro_batch_size=8, update_every=1, min_steps=1)
    again.load_state_dict(state)
    assert again.batch_size == ramp.batch_size == 128
    assert (again.steps, again.examples_seen) == (ramp.steps, ramp.examples_seen)
    assert again.history == ramp.history
    assert again.calibrations == ramp.calibrations
    assert again.ratio == ramp.ratio
    assert again.state_dict() == state
    assert not again.calibration_due  # the skipped attempt came back too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"base_accumulation": 1}, "base_accumulation"),
        ({"fraction": 0.0}, "fraction"),
        ({"max_batch_size": 8}, "max_batch_size"),
        ({"growth": "cubic"}, "growth"),
        ({"lr_rule": "quadratic"}, "lr_rule"),
        ({"optimizer_name": "adagrad"}, "optimizer_name"),
        ({"seesaw": True, "lr_rule": "sqrt"}, "seesaw"),
        ({"recalibrate_growth": 1.0}, "recalibrate_growth"),
        ({"max_calibrations": -1}, "max_calibrations"),
        ({"calibration_gap": -1}, "calibration_gap"),
        ({"max_lr_factor": 0.5}, "max_lr_factor"),
        ({"max_growth": 1.0}, "max_growth"),
        ({"prior_ratio": -2.0}, "prior_ratio"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchRamp(FakeTracker(), **{"micro_batch_size": 8, **kwargs})


def test_a_non_tracker_is_a_type_error():
    with pytest.raises(TypeError, match="tracker"):
        BatchRamp(object(), micro_batch_size=8)  # type: ignore[arg-type]


def test_it_is_exported_at_the_root():
    assert bl.BatchRamp is BatchRamp


# ----- the driver ----------------------------------------------------------------------


class Counting:
    """A workload that counts every training example it hands out."""

    def __init__(self, workload: Any) -> None:
        self._workload = workload
        self.examples = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workload, name)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        for batch in self._workload.train_batches(batch_size, generator):
            self.examples += batch_size
            yield batch


def test_driver_reaches_the_target_and_counts_every_branch_example():
    work = Counting(get_workload("linreg"))
    result = ramp_training(
        work, micro_batch_size=4, max_batch_size=256, max_lr_factor=1.0, max_steps=400,
        eval_every=5, min_steps=10, calibration_gap=5, branch_improvement=0.3, seed=0,
    )  # fmt: skip
    assert result.status == "reached"
    assert work.target.reached(result.eval_values[-1])
    assert result.calibrations, "a calibration was due at min_steps"
    branches = [b for c in result.calibrations for b in c.branches]
    assert result.branch_examples == sum(b.batch_size * b.steps_run for b in branches) > 0
    assert result.branch_steps == sum(b.steps_run for b in branches)
    # Every example the workload handed out is counted: training + branches.
    assert work.examples == result.examples_to_target + result.branch_examples
    assert result.total_examples_to_target == work.examples
    assert result.total_steps_to_target == result.steps_to_target + result.branch_steps
    points = [c.point for c in result.calibrations if c.point is not None]
    assert points and result.ratio.n == sum(math.isfinite(p.log_variance) for p in points)
    assert result.to_dict()["branch_examples"] == result.branch_examples


def test_driver_rejects_bad_branch_settings():
    with pytest.raises(ValueError, match="branch_factors"):
        ramp_training(get_workload("linreg"), micro_batch_size=4, branch_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match="branch_improvement"):
        ramp_training(get_workload("linreg"), micro_batch_size=4, branch_improvement=0)


def test_branch_ladder_keeps_three_rungs_when_rounding_merges_them():
    from batchlab.training._ramp_training import _ladder

    assert _ladder(100.0, (0.25, 1.0, 4.0), 8, None) == [32, 128, 512]
    assert _ladder(10.0, (0.25, 1.0, 4.0), 8, None) == [8, 32, 64]  # 2.5 and 10 both -> 8
    assert _ladder(1e4, (0.25, 1.0, 4.0), 8, 256) == [64, 128, 256]  # the cap merges the top


def test_a_zero_width_interval_gets_the_floor_variance_not_all_the_weight():
    exact = CalibrationPoint(step=0, b_crit=200.0, b_crit_ci=(200.0, 200.0), b_simple=100.0)
    assert exact.log_variance == pytest.approx(0.01)
    est = estimate_ratio([exact, point(100.0, 0.1)])  # equal weights: the plain mean
    assert est.log_ratio == pytest.approx(math.log(2) / 2)
