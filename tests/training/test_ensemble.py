"""Trial ensembles: each member's curve equals the same trial run alone."""

import pytest
import torch
from torch import nn

from batchlab import get_workload
from batchlab.study import RunSpec, run_training
from batchlab.training import EnsembleUnsupported, run_ensemble
from batchlab.workloads import Target

NEVER = Target("loss", -1.0, "min")  # unreachable: compare whole curves

CASES = [
    (
        "mnist1d-cnn",
        "nesterov",
        [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.8, "warmup_steps": 30}],
    ),
    ("mnist1d-cnn", "adamw", [{"lr": 1e-3, "weight_decay": 0.01}, {"lr": 3e-3, "beta1": 0.8}]),
    (
        "digits-mlp",
        "momentum",
        [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.2, "momentum": 0.5, "weight_decay": 1e-3}],
    ),
    ("digits-mlp", "sgd", [{"lr": 0.1}, {"lr": 0.5, "warmup_steps": 10}]),
    (
        "digits-mlp",
        ("nesterov", "cosine"),
        [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.3, "momentum": 0.9, "warmup_steps": 20}],
    ),
    ("digits-mlp", "adam", [{"lr": 1e-3}, {"lr": 3e-3, "beta2": 0.99, "eps": 1e-6}]),
]


@pytest.mark.parametrize(("name", "optimizer", "hparams"), CASES)
def test_member_curve_equals_the_trial_run_alone(name, optimizer, hparams):
    workload = get_workload(name)
    optimizer, decay = optimizer if isinstance(optimizer, tuple) else (optimizer, "constant")
    specs = [
        RunSpec(
            batch_size=32,
            optimizer=optimizer,
            hparams=hp,
            max_steps=120,
            eval_every=20,
            seed=10 + i,
            decay=decay,
            # Dense evaluation on: NEVER is unreachable, but a steep early loss curve
            # extrapolates to it, so some members are evaluated densely for a while.
            resolution=0.02,
        )
        for i, hp in enumerate(hparams)
    ]
    together = run_ensemble(workload, specs, NEVER)
    for member, spec in zip(together, specs, strict=True):
        alone = run_training(workload, spec, NEVER)
        assert member.steps == alone.steps  # each member on its own schedule, as alone
        for metric in workload.metrics:
            # float32 rounding only: vmap's batched kernels may sum in another order.
            torch.testing.assert_close(
                member.metrics[metric], alone.metrics[metric], rtol=1e-5, atol=1e-6
            )
        torch.testing.assert_close(member.train_loss, alone.train_loss, rtol=1e-5, atol=1e-6)


def test_first_member_to_reach_the_target_stops_the_ones_it_beat():
    workload = get_workload("digits-mlp")
    target = Target("accuracy", 0.9, "max")
    fast = RunSpec(
        batch_size=64,
        optimizer="momentum",
        hparams={"lr": 0.3, "momentum": 0.9},
        max_steps=400,
        eval_every=10,
        seed=0,
    )
    slow = RunSpec(
        batch_size=64,
        optimizer="momentum",
        hparams={"lr": 0.001, "momentum": 0.5},
        max_steps=400,
        eval_every=10,
        seed=1,
    )
    # Stop-once-beaten on (a callable: no best known yet at this rung).
    fast_result, slow_result = run_ensemble(workload, [fast, slow], target, stop_after=lambda: None)
    assert fast_result.status == "reached"
    assert slow_result.status == "beaten"
    assert slow_result.steps[-1] == fast_result.steps_to_target
    assert fast_result.steps_to_target == run_training(workload, fast, target).steps_to_target


def test_without_stop_once_beaten_every_member_runs_to_its_own_result():
    workload = get_workload("digits-mlp")
    target = Target("accuracy", 0.9, "max")
    fast = RunSpec(
        batch_size=64,
        optimizer="momentum",
        hparams={"lr": 0.3, "momentum": 0.9},
        max_steps=200,
        eval_every=10,
        seed=0,
    )
    slow = RunSpec(
        batch_size=64,
        optimizer="momentum",
        hparams={"lr": 0.001, "momentum": 0.5},
        max_steps=200,
        eval_every=10,
        seed=1,
    )
    fast_result, slow_result = run_ensemble(workload, [fast, slow], target, stop_after=None)
    assert fast_result.status == "reached"
    assert slow_result.status == "not_reached" and slow_result.steps[-1] == 200


def test_known_best_of_the_rung_stops_members_early():
    workload = get_workload("digits-mlp")
    specs = [
        RunSpec(
            batch_size=64,
            optimizer="sgd",
            hparams={"lr": 1e-4},
            max_steps=400,
            eval_every=10,
            seed=s,
        )
        for s in range(2)
    ]
    results = run_ensemble(workload, specs, workload.target, stop_after=50)
    assert [r.status for r in results] == ["beaten", "beaten"]
    assert all(r.steps[-1] == 50 for r in results)


def test_diverging_member_leaves_and_the_others_go_on():
    workload = get_workload("linreg", {"dim": 8})
    specs = [
        RunSpec(
            batch_size=16,
            optimizer="sgd",
            hparams={"lr": 100.0},
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
            seed=1,
        ),
    ]
    bad, good = run_ensemble(workload, specs, NEVER)
    assert bad.status == "diverged" and "became" in bad.reason
    assert good.status == "not_reached" and good.steps[-1] == 100
    alone = run_training(workload, specs[1], NEVER)
    torch.testing.assert_close(good.metrics["loss"], alone.metrics["loss"], rtol=1e-5, atol=1e-7)


def test_optimizers_without_a_batched_update_are_refused():
    workload = get_workload("digits-mlp")
    specs = [
        RunSpec(
            batch_size=32, optimizer="lars", hparams={"lr": 1.0}, max_steps=10, eval_every=5, seed=s
        )
        for s in range(2)
    ]
    with pytest.raises(EnsembleUnsupported, match="no batched update"):
        run_ensemble(workload, specs, NEVER)


class DataDependent(nn.Module):
    """Python control flow on tensor values: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


def test_models_that_vmap_cannot_run_are_refused(monkeypatch):
    workload = get_workload("digits-mlp")
    monkeypatch.setattr(workload, "build_model", lambda seed: DataDependent())
    specs = [
        RunSpec(
            batch_size=32, optimizer="sgd", hparams={"lr": 0.1}, max_steps=10, eval_every=5, seed=s
        )
        for s in range(2)
    ]
    with pytest.raises(EnsembleUnsupported, match="does not run under vmap"):
        run_ensemble(workload, specs, NEVER)
