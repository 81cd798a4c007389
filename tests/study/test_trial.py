"""Steps-to-target of one run: stop at target, stop once beaten, divergence, exact curves."""

import math

import numpy as np
import pytest

from batchlab.study import RunSpec, run_training, steps_to_target
from batchlab.workloads import Target, get_workload
from batchlab.workloads.nqm import nqm_expected_loss


def test_steps_to_target_is_the_first_evaluated_step_meeting_it():
    target = Target("accuracy", 0.9, "max")
    assert steps_to_target([10, 20, 30], [0.5, 0.91, 0.95], target) == 20
    assert steps_to_target([10, 20, 30], [0.5, 0.6, math.nan], target) is None


def test_eval_steps_include_the_last_step():
    assert RunSpec(
        batch_size=8, optimizer="sgd", hparams={"lr": 0.1}, max_steps=25, eval_every=10, seed=0
    ).eval_steps() == [10, 20, 25]


@pytest.fixture(scope="module")
def linreg():
    return get_workload("linreg", {"dim": 8})


def test_run_stops_at_target_and_reports_the_step(linreg):
    spec = RunSpec(
        batch_size=32, optimizer="sgd", hparams={"lr": 0.5}, max_steps=2000, eval_every=10, seed=0
    )
    result = run_training(linreg, spec, linreg.target)
    assert result.status == "reached"
    assert result.steps_to_target == result.steps[-1]
    assert linreg.target.reached(result.metrics["excess_loss"][-1])
    assert all(not linreg.target.reached(v) for v in result.metrics["excess_loss"][:-1])


def test_run_is_reproducible_from_its_seed(linreg):
    spec = RunSpec(
        batch_size=16,
        optimizer="momentum",
        hparams={"lr": 0.1, "momentum": 0.9},
        max_steps=200,
        eval_every=20,
        seed=3,
    )
    a = run_training(linreg, spec, linreg.target, stop_at_target=False)
    b = run_training(linreg, spec, linreg.target, stop_at_target=False)
    assert a.metrics == b.metrics


def test_run_stops_once_beaten(linreg):
    slow = RunSpec(
        batch_size=32, optimizer="sgd", hparams={"lr": 0.01}, max_steps=2000, eval_every=10, seed=0
    )
    result = run_training(linreg, slow, linreg.target, stop_after=100)
    assert result.status == "beaten" and result.steps_to_target is None
    assert result.steps[-1] == 100


def test_run_stops_once_a_best_found_meanwhile_beats_it(linreg):
    # The worker passes a callable re-read at every evaluation: a best found by
    # another worker during this run must stop it too.
    best: list[int | None] = [None]

    def known_best() -> int | None:
        return best[0]

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if step == 50:
            best[0] = 80

    slow = RunSpec(
        batch_size=32, optimizer="sgd", hparams={"lr": 0.01}, max_steps=2000, eval_every=10, seed=0
    )
    result = run_training(linreg, slow, linreg.target, stop_after=known_best, on_eval=on_eval)
    assert result.status == "beaten" and result.steps[-1] == 80
    assert "by step 80" in result.reason


def test_divergence_is_recorded_with_its_reason(linreg):
    spec = RunSpec(
        batch_size=32, optimizer="sgd", hparams={"lr": 50.0}, max_steps=2000, eval_every=10, seed=0
    )
    result = run_training(linreg, spec, linreg.target)
    assert result.status == "diverged"
    assert "became" in result.reason


def test_budget_exhausted_is_not_reached(linreg):
    result = run_training(
        linreg,
        RunSpec(
            batch_size=32,
            optimizer="sgd",
            hparams={"lr": 1e-4},
            max_steps=50,
            eval_every=10,
            seed=0,
        ),
        linreg.target,
    )
    assert result.status == "not_reached" and "not reached within 50 steps" in result.reason


def test_unknown_target_metric_names_the_reported_ones(linreg):
    with pytest.raises(ValueError, match="reports: loss, excess_loss"):
        run_training(
            linreg,
            RunSpec(
                batch_size=8,
                optimizer="sgd",
                hparams={"lr": 0.1},
                max_steps=10,
                eval_every=10,
                seed=0,
            ),
            Target("accuracy", 0.9, "max"),
        )


def test_nqm_runs_through_its_exact_curves():
    nqm = get_workload("nqm", {"dim": 500})
    spec = RunSpec(
        batch_size=16,
        optimizer="momentum",
        hparams={"lr": 0.3, "momentum": 0.8},
        max_steps=3000,
        eval_every=10,
        seed=0,
    )
    result = run_training(nqm, spec, nqm.target, stop_at_target=False)
    exact = nqm_expected_loss(
        nqm.curvature,
        nqm.noise,
        nqm.w0,
        lr=0.3,
        momentum=0.8,
        batch_size=16,
        eval_steps=spec.eval_steps(),
    )
    np.testing.assert_allclose(result.metrics["loss"], exact, rtol=1e-12)
    assert result.steps_to_target == spec.eval_steps()[int(np.argmax(exact <= nqm.target.value))]


def test_decay_schedule_is_the_optimizers_warmup_schedule(linreg):
    # The trainer's LR follows batchlab.optim.warmup_schedule(warmup, budget, decay):
    # the same loop written out by hand gives the same curve, bit for bit.
    import torch

    from batchlab._seeding import make_generator
    from batchlab.optim import warmup_schedule

    spec = RunSpec(
        batch_size=16,
        optimizer="sgd",
        hparams={"lr": 0.3, "warmup_steps": 10},
        max_steps=60,
        eval_every=20,
        seed=4,
        decay="linear",
    )
    result = run_training(linreg, spec, linreg.target, stop_at_target=False)
    model = linreg.build_model(spec.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    schedule = warmup_schedule(optimizer, 10, 60, decay="linear")
    batches = linreg.train_batches(16, make_generator(spec.seed))
    expected = []
    for step in range(1, 61):
        loss = linreg.loss_fn(model, next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            expected.append(linreg.evaluate(model)["loss"])
    assert result.metrics["loss"] == expected
    constant = run_training(
        linreg,
        RunSpec(
            batch_size=16,
            optimizer="sgd",
            hparams={"lr": 0.3, "warmup_steps": 10},
            max_steps=60,
            eval_every=20,
            seed=4,
        ),
        linreg.target,
        stop_at_target=False,
    )
    assert constant.metrics["loss"] != expected


def test_exact_curves_refuse_a_schedule_at_run_trainings_entry():
    nqm = get_workload("nqm", {"dim": 50})
    for spec in (
        RunSpec(
            batch_size=16,
            optimizer="sgd",
            hparams={"lr": 0.1, "warmup_steps": 5},
            max_steps=100,
            eval_every=10,
            seed=0,
        ),
        RunSpec(
            batch_size=16,
            optimizer="sgd",
            hparams={"lr": 0.1},
            max_steps=100,
            eval_every=10,
            seed=0,
            decay="cosine",
        ),
    ):
        with pytest.raises(ValueError, match="constant learning rate"):
            run_training(nqm, spec, nqm.target)
