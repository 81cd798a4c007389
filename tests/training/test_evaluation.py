"""Dense evaluation near the target: steps-to-target resolved to a fraction of itself."""

import numpy as np
import pytest

from batchlab.training import RunSpec, run_ensemble, run_training
from batchlab.training._evaluation import (
    EvaluationSchedule,
    near_target,
    refinement,
    resolution_steps,
)
from batchlab.workloads import Target, get_workload
from batchlab.workloads.nqm import nqm_expected_loss

LOSS = Target("loss", 0.5, "min")
ACCURACY = Target("accuracy", 0.9, "max")


def test_near_target_extrapolates_the_last_coarse_intervals_progress():
    # Loss 1.0 -> 0.8 over 10 steps: 0.02 per step, 0.3 to go: 15 steps <= 2 x 10.
    assert near_target([10, 20], [1.0, 0.8], LOSS, every=10)
    # 0.5 to go at that rate: 25 steps, beyond two intervals.
    assert not near_target([10, 20], [1.2, 1.0], LOSS, every=10)
    # Accuracy (max): 0.8 -> 0.86 over 10 steps, 0.04 to go.
    assert near_target([10, 20], [0.8, 0.86], ACCURACY, every=10)
    # No progress, or a step backwards, predicts nothing.
    assert not near_target([10, 20], [0.8, 0.8], ACCURACY, every=10)
    assert not near_target([10, 20], [0.89, 0.85], ACCURACY, every=10)


def test_near_target_measures_progress_over_a_whole_coarse_interval():
    # The first evaluation has nothing a full interval back.
    assert not near_target([10], [0.89], ACCURACY, every=10)
    # Dense points 1 step apart: the rate is from step 20 (a full interval before 31),
    # not from step 30 (where a noisy dip would predict no progress at all).
    steps, values = [10, 20, 30, 31], [0.5, 0.80, 0.87, 0.86]
    assert near_target(steps, values, ACCURACY, every=10)


def test_near_target_follows_the_best_value_so_far_through_noisy_dips():
    # A dip at the last evaluation (0.75) does not hide the progress of the best (0.80
    # by step 20 -> 0.87 by step 35): a noisy metric that jumps over the target is caught.
    assert near_target([10, 20, 30, 35], [0.5, 0.80, 0.87, 0.75], ACCURACY, every=10)
    # A best that did not improve over the last interval predicts nothing.
    assert not near_target([10, 20, 30], [0.5, 0.87, 0.80], ACCURACY, every=10)
    # The same on a loss (min direction).
    assert near_target([10, 20, 30, 35], [2.0, 1.0, 0.6, 1.5], LOSS, every=10)


def test_schedule_keeps_the_coarse_grid_and_goes_dense_while_near():
    schedule = EvaluationSchedule([10, 20, 30, 40], resolution=0.1)
    seen = []
    near_at = {20, 22, 24, 26}  # the run looks near after these evaluations
    for step in range(1, 41):
        if schedule.due(step):
            seen.append(step)
            schedule.advance(step, step in near_at)
    # Dense every max(1, floor(0.1 * step)) = 2 steps from 20 until not near (28);
    # every coarse step is evaluated regardless.
    assert seen == [10, 20, 22, 24, 26, 28, 30, 40]


def test_schedule_with_resolution_zero_is_the_coarse_grid():
    schedule = EvaluationSchedule([10, 20, 25], resolution=0.0)
    seen = []
    for step in range(1, 26):
        if schedule.due(step):
            seen.append(step)
            schedule.advance(step, True)
    assert seen == [10, 20, 25]


def test_refinement_spaces_steps_a_fraction_of_the_step_count_apart():
    assert refinement(0, 5, 0.02) == [1, 2, 3, 4]
    assert refinement(100, 110, 0.02) == [102, 104, 106, 108]
    assert refinement(100, 102, 0.02) == []
    assert refinement(100, 110, 0.0) == []


def test_resolution_steps_is_the_gap_to_the_previous_evaluation():
    assert resolution_steps([10, 20, 22, 24], 24) == 2
    assert resolution_steps([10, 20], 10) == 10  # crossed somewhere in (0, 10]
    assert resolution_steps([10, 20], None) is None


@pytest.fixture(scope="module")
def linreg():
    return get_workload("linreg", {"dim": 8})


def linreg_spec(**changes) -> RunSpec:
    values = {
        "batch_size": 32,
        "optimizer": "sgd",
        "hparams": {"lr": 0.02},
        "max_steps": 400,
        "eval_every": 50,
        "seed": 0,
        "resolution": 0.02,
    }
    return RunSpec(**{**values, **changes})


def test_crossing_between_coarse_evaluations_is_resolved_to_two_percent(linreg):
    dense = run_training(linreg, linreg_spec(), linreg.target)
    every_step = run_training(
        linreg,
        linreg_spec(eval_every=1, resolution=0.0),
        linreg.target,
        stop_at_target=False,
    )
    coarse = run_training(linreg, linreg_spec(resolution=0.0), linreg.target)
    exact = every_step.steps_to_target
    assert coarse.steps_to_target - exact >= 10  # the coarse grid is off by 10+ steps here
    assert coarse.resolution_steps == 50
    assert dense.status == "reached"
    # The crossing lies in (previous evaluation, steps-to-target], 2% of the count wide.
    assert dense.steps_to_target - dense.resolution_steps < exact <= dense.steps_to_target
    assert dense.resolution_steps <= 0.02 * dense.steps_to_target
    assert dense.resolution_steps == dense.steps_to_target - dense.steps[-2]
    # Evaluating does not change training: the curve is the every-step curve, sampled.
    for step, value in zip(dense.steps, dense.metrics["excess_loss"], strict=True):
        assert value == every_step.metrics["excess_loss"][step - 1]
    # Every coarse step up to the crossing was evaluated too.
    assert set(linreg_spec().eval_steps()) & set(range(dense.steps_to_target)) <= set(dense.steps)


def test_dense_steps_one_apart_find_the_every_step_count(linreg):
    # Below 100 steps, dense evaluation is every step: the exact count.
    spec = linreg_spec(hparams={"lr": 0.1}, eval_every=10)
    dense = run_training(linreg, spec, linreg.target)
    every_step = run_training(linreg, linreg_spec(hparams={"lr": 0.1}, eval_every=1), linreg.target)
    coarse = run_training(linreg, linreg_spec(hparams={"lr": 0.1}, resolution=0.0), linreg.target)
    assert dense.steps_to_target == every_step.steps_to_target != coarse.steps_to_target
    assert dense.resolution_steps == 1


def test_resolution_zero_reproduces_the_coarse_grid_exactly(linreg):
    spec = linreg_spec(resolution=0.0)
    result = run_training(linreg, spec, linreg.target, stop_at_target=False)
    assert result.steps == spec.eval_steps()
    every_step = run_training(linreg, linreg_spec(eval_every=1, resolution=0.0), linreg.target)
    first = every_step.steps_to_target
    assert result.steps_to_target == -(-first // 50) * 50  # rounded up to the grid


def test_stop_once_beaten_and_pruning_act_at_dense_steps(linreg):
    alone = run_training(linreg, linreg_spec(), linreg.target)
    dense_step = alone.steps[-2]  # the evaluation before the crossing, a dense one
    assert dense_step % 50
    # Another run reached the target just before: this one stops at that dense step.
    beaten = run_training(linreg, linreg_spec(), linreg.target, stop_after=dense_step - 1)
    assert beaten.status == "beaten"
    assert beaten.steps == alone.steps[:-1]
    asked: list[int] = []

    def prune(step, best, cohort):
        asked.append(step)
        return None

    pruned = run_training(linreg, linreg_spec(), linreg.target, prune=prune)
    assert asked == pruned.steps[:-1]  # asked at every evaluation short of the target
    assert any(step % 50 for step in asked)  # dense ones included


def test_exact_curves_refine_the_interval_of_the_crossing():
    nqm = get_workload("nqm", {"dim": 500})
    hparams = {"lr": 0.3, "momentum": 0.8}
    spec = RunSpec(
        batch_size=16,
        optimizer="momentum",
        hparams=hparams,
        max_steps=3000,
        eval_every=100,
        seed=0,
        resolution=0.02,
    )
    result = run_training(nqm, spec, nqm.target)
    every = np.arange(1, 3001)
    loss = nqm_expected_loss(
        nqm.curvature, nqm.noise, nqm.w0, lr=0.3, momentum=0.8, batch_size=16, eval_steps=every
    )
    exact = int(every[np.argmax(loss <= nqm.target.value)])
    assert exact % 100  # between coarse evaluations
    assert result.steps_to_target - result.resolution_steps < exact <= result.steps_to_target
    assert result.resolution_steps <= 0.02 * result.steps_to_target
    np.testing.assert_allclose(result.metrics["loss"], loss[np.array(result.steps) - 1], rtol=1e-12)
    # resolution 0: the coarse grid, as before.
    coarse = run_training(nqm, RunSpec(**{**spec.__dict__, "resolution": 0.0}), nqm.target)
    assert coarse.steps_to_target == -(-exact // 100) * 100
    assert coarse.steps == spec.eval_steps()[: len(coarse.steps)]


def test_ensemble_members_keep_their_own_dense_schedules():
    workload = get_workload("digits-mlp")
    target = Target("accuracy", 0.9, "max")
    specs = [
        RunSpec(
            batch_size=64,
            optimizer="momentum",
            hparams=hp,
            max_steps=300,
            eval_every=20,
            seed=seed,
            resolution=0.02,
        )
        for seed, hp in enumerate([{"lr": 0.03, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.9}])
    ]
    together = run_ensemble(workload, specs, target, stop_after=None)
    for member, spec in zip(together, specs, strict=True):
        alone = run_training(workload, spec, target)
        assert member.status == alone.status == "reached"
        # Evaluated where it would be alone (its co-members do not change what it measures).
        assert member.steps == alone.steps
        assert member.steps_to_target == alone.steps_to_target
        assert member.resolution_steps == alone.resolution_steps
        assert member.resolution_steps <= 0.02 * member.steps_to_target
        assert any(step % 20 for step in member.steps)  # dense evaluations
        for name in workload.metrics:
            np.testing.assert_allclose(
                member.metrics[name], alone.metrics[name], rtol=1e-5, atol=1e-6
            )
    assert together[0].steps != together[1].steps  # two schedules
