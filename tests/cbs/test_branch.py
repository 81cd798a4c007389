"""One branch: optimizer state resumed with the branch's LR, stop rules, divergence."""

from __future__ import annotations

import copy

import pytest

from batchlab._seeding import make_generator, seed_for
from batchlab.cbs import eval_schedule, improvement_target, run_branch, train_base_run
from batchlab.optim import optimizer_for
from batchlab.training import set_lr, train_step
from batchlab.workloads import Target, get_workload


@pytest.fixture(scope="module")
def linreg_checkpoint():
    linreg = get_workload("linreg", {"dim": 16})
    (checkpoint,) = train_base_run(
        linreg, [20], batch_size=8, optimizer="momentum", hparams={"lr": 0.05, "momentum": 0.9}
    )
    return linreg, checkpoint


def manual_branch(linreg, checkpoint, *, lr, batch_size, steps, resume, seed=0):
    """What a branch must do, written out: load, (resume and) set the LR, train, evaluate."""
    model = linreg.build_model(0)
    model.load_state_dict(checkpoint.model_state)
    opt = optimizer_for(model, "momentum", {"lr": lr, "momentum": 0.9})
    if resume:
        opt.load_state_dict(copy.deepcopy(checkpoint.optimizer_state))
        set_lr(opt, lr)
    batches = linreg.train_batches(
        batch_size, make_generator(seed_for(seed, checkpoint.step, batch_size, 0))
    )
    values = []
    for _ in range(steps):
        train_step(linreg, model, opt, batches)
        values.append(linreg.evaluate(model)["excess_loss"])
    return values


@pytest.mark.parametrize("state", ["resume", "reset"])
def test_branch_resumes_the_optimizer_state_at_the_branch_lr(linreg_checkpoint, state):
    linreg, checkpoint = linreg_checkpoint
    never = Target("excess_loss", -1.0, "min")
    branch = run_branch(linreg, checkpoint, batch_size=32, lr=0.02, target=never,
                        eval_steps=[1, 2, 3, 4, 5], optimizer_state=state)  # fmt: skip
    assert branch.status == "not_reached" and branch.steps == (1, 2, 3, 4, 5)
    # Twice: a branch must not change the checkpoint it started from.
    again = run_branch(linreg, checkpoint, batch_size=32, lr=0.02, target=never,
                       eval_steps=[1, 2, 3, 4, 5], optimizer_state=state)  # fmt: skip
    assert again.values == branch.values
    expected = manual_branch(
        linreg, checkpoint, lr=0.02, batch_size=32, steps=5, resume=state == "resume"
    )
    assert list(branch.values) == pytest.approx(expected, rel=1e-12)
    # Resuming with the base run's LR (0.05) would be another curve: the LR was replaced.
    base_lr = manual_branch(
        linreg, checkpoint, lr=0.05, batch_size=32, steps=5, resume=state == "resume"
    )
    assert list(branch.values) != pytest.approx(base_lr, rel=1e-3)


def test_branch_stops_at_the_target_and_when_beaten(linreg_checkpoint):
    linreg, checkpoint = linreg_checkpoint
    target = improvement_target(checkpoint.metrics["excess_loss"], "min", metric="excess_loss",
                                fraction=0.5)  # fmt: skip
    reached = run_branch(linreg, checkpoint, batch_size=64, lr=0.01, target=target,
                         eval_steps=eval_schedule(500, 0.0))  # fmt: skip
    assert reached.status == "reached" and reached.steps_to_target == reached.steps[-1]
    assert target.reached(reached.values[-1]) and not target.reached(reached.values[-2])
    beaten = run_branch(linreg, checkpoint, batch_size=64, lr=0.0001, target=target,
                        eval_steps=eval_schedule(500, 0.0), stop_after=reached.steps_to_target)  # fmt: skip
    assert beaten.status == "beaten" and beaten.steps[-1] == reached.steps_to_target
    assert beaten.steps_to_target is None and "another learning rate" in beaten.reason


def test_a_diverging_branch_says_so(linreg_checkpoint):
    linreg, checkpoint = linreg_checkpoint
    branch = run_branch(linreg, checkpoint, batch_size=4, lr=40.0,
                        target=Target("excess_loss", -1.0, "min"), eval_steps=eval_schedule(3000, 0.1))  # fmt: skip
    assert branch.status == "diverged" and branch.steps_to_target is None
    assert "became" in branch.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be a positive"),
        ({"repeats": 0}, "repeats must be a positive"),
        ({"optimizer_state": "keep"}, "optimizer_state must be one of"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"optimizer": "adam"}, "cannot resume the optimizer state of 'momentum' with 'adam'"),
    ],
)
def test_bad_branch_arguments_name_the_argument(linreg_checkpoint, kwargs, message):
    linreg, checkpoint = linreg_checkpoint
    args = {"batch_size": 8, "lr": 0.1, "target": Target("excess_loss", 0.0, "min"),
            "eval_steps": [1], **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        run_branch(linreg, checkpoint, **args)
