"""``from_tensors``: a user's tensors and model get the built-ins' fast path.

The same tensors and model as a built-in workload give the same model, batches,
metrics and curves; a rung's members are evaluated in one batched pass; chunked
evaluation equals one pass; bad arguments are named; a model vmap cannot run makes a
study say so once, with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import batchlab as bl
from batchlab.study import RunSpec, Study, StudyConfig, run_training
from batchlab.training import run_ensemble
from batchlab.workloads import Target, from_tensors

NEVER = Target("loss", -1.0, "min")  # unreachable: compare whole curves


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def digits():
    return bl.get_workload("digits-mlp")


@pytest.fixture(scope="module")
def own(digits):
    return from_tensors(
        mlp,
        train=(digits.x_train, digits.y_train),
        val=(digits.x_val, digits.y_val),
        target=digits.target,
    )


def spec(seed: int, lr: float = 0.1) -> RunSpec:
    return RunSpec(
        batch_size=32,
        optimizer="nesterov",
        hparams={"lr": lr, "momentum": 0.9},
        max_steps=60,
        eval_every=20,
        seed=seed,
    )


def test_same_model_batches_metrics_and_curve_as_the_builtin(digits, own):
    for a, b in zip(
        digits.build_model(3).parameters(), own.build_model(3).parameters(), strict=True
    ):
        assert torch.equal(a, b)
    ours = own.train_batches(32, torch.Generator().manual_seed(5))
    theirs = digits.train_batches(32, torch.Generator().manual_seed(5))
    for _ in range(50):  # past an epoch boundary (1,300 examples)
        for a, b in zip(next(ours), next(theirs), strict=True):
            assert torch.equal(a, b)
    model = digits.build_model(0)
    assert own.evaluate(model) == digits.evaluate(model)
    assert own.metrics == ("accuracy", "loss")
    ours_run = run_training(own, spec(7), NEVER)
    theirs_run = run_training(digits, spec(7), NEVER)
    assert ours_run.metrics == theirs_run.metrics
    assert ours_run.train_loss == theirs_run.train_loss


def test_ensemble_members_are_evaluated_in_one_batched_pass(own, monkeypatch):
    calls = []
    original = own.val_metrics
    monkeypatch.setattr(own, "val_metrics", lambda model: calls.append(1) or original(model))
    specs = [spec(seed, lr) for seed, lr in ((1, 0.05), (2, 0.1), (3, 0.2))]
    together = run_ensemble(own, specs, NEVER)
    # 3 evaluation steps (20, 40, 60), each one vmapped call for all 3 members.
    assert len(calls) == 3
    monkeypatch.undo()
    for member, s in zip(together, specs, strict=True):
        alone = run_training(own, s, NEVER)
        assert member.steps == alone.steps
        for metric in own.metrics:
            torch.testing.assert_close(
                member.metrics[metric], alone.metrics[metric], rtol=1e-5, atol=1e-6
            )


def test_chunked_evaluation_equals_one_pass(digits):
    chunked = from_tensors(
        mlp,
        train=(digits.x_train, digits.y_train),
        val=(digits.x_val, digits.y_val),
        target=("accuracy", 0.9, "max"),
        eval_batch_size=64,  # 497 examples: 7 full chunks and one of 49
    )
    model = digits.build_model(1)
    whole, parts = digits.evaluate(model), chunked.evaluate(model)
    assert parts.keys() == whole.keys()
    for key in whole:
        assert parts[key] == pytest.approx(whole[key], rel=1e-5)


def test_mse_loss_and_custom_metrics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    workload = from_tensors(
        lambda: nn.Linear(4, 1),
        train=(x[:150], y[:150]),
        val=(x[150:], y[150:]),
        loss="mse",
        metrics={"mse": F.mse_loss, "mae": lambda out, lab: (out - lab).abs().mean()},
        target=("mse", 0.01, "min"),
    )
    model = workload.build_model(0)
    with torch.no_grad():
        out = model(x[150:])
    values = workload.evaluate(model)
    assert values["mse"] == pytest.approx(float(F.mse_loss(out, y[150:])), rel=1e-6)
    assert values["mae"] == pytest.approx(float((out - y[150:]).abs().mean()), rel=1e-6)
    assert workload.params == {"num_train": 150, "num_val": 50}


X, Y = torch.randn(20, 4), torch.randint(0, 3, (20,))
GOOD = {"train": (X, Y), "val": (X, Y), "target": ("accuracy", 0.5, "max")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": 3}, "model must be a callable"),
        ({"train": X}, "train must be a pair"),
        ({"val": (X, Y[:5])}, "val inputs and labels must have the same number of examples"),
        ({"val": (torch.randn(20, 5), Y)}, "train inputs have shape"),
        ({"target": ("f1", 0.5, "max")}, "target metric 'f1' is not a metric"),
        ({"target": ("accuracy", 0.5, "up")}, "target must be a Target"),
        ({"loss": "hinge"}, "loss must be one of cross_entropy, mse"),
        ({"model": lambda: nn.Linear(5, 3)}, r"model fails on inputs of shape \(2, 4\)"),
        ({"model": lambda: "net"}, "must return an nn.Module"),
        ({"metrics": {"accuracy": lambda o, y: o.argmax(-1) == y}}, "single-number tensor"),
        ({"eval_batch_size": 0}, "eval_batch_size must be a positive integer"),
        ({"default_steps": -1}, "default_steps must be a positive integer"),
    ],
)
def test_bad_arguments_are_named(change, message):
    arguments = {"model": lambda: nn.Linear(4, 3), **GOOD, **change}
    model = arguments.pop("model")
    with pytest.raises(ValueError, match=message):
        from_tensors(model, **arguments)


WORKLOAD = """
import torch
from torch import nn

from batchlab.workloads import from_tensors


def make(dropout: float = 0.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    extra = [nn.Dropout(dropout)] if dropout else []
    return from_tensors(
        lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), *extra, nn.Linear(16, 3)),
        train=(x[:500], y[:500]),
        val=(x[500:], y[500:]),
        target=("accuracy", 0.8, "max"),
    )
"""


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_study_says_once_why_a_model_is_not_ensembled(tmp_path: Path, caplog, dropout):
    (tmp_path / "tensors_wl.py").write_text(WORKLOAD)
    config = StudyConfig.model_validate(
        {
            "name": "own-tensors",
            "optimizer": "momentum",
            "workload": {
                "name": "tensors_wl:make",
                "params": {"dropout": dropout},
                "path": [str(tmp_path)],
            },
            "ladder": {"batch_sizes": [8, 32]},
            "search": {
                "trials_per_rung": 3,
                "refine": 0,
                "confirm_top": 0,
                "space": {"lr": {"low": 0.05, "high": 0.5}},
            },
            "budget": {"steps": 80},
            "evaluation": {"every": 10},
        }
    )
    with caplog.at_level(logging.WARNING):
        result = Study(config, tmp_path / "run").run(workers=1)
    assert sorted(result.steps_to_target) == [8, 32]
    off = [r.getMessage() for r in caplog.records if "ensembles off" in r.getMessage()]
    if dropout:
        assert len(off) == 1
        assert "randomness" in off[0]  # the reason, from vmap
    else:
        assert off == []


def test_the_readme_example_builds_a_workload():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "from_tensors" in b]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    workload = namespace["make"]()
    assert isinstance(workload, bl.Workload)
    assert workload.target == Target("accuracy", 0.6, "max")
    assert workload.train_size == 4000


def test_the_own_model_example_runs_a_study(tmp_path: Path):
    """examples/own_model: the TOML finds my_cnn.py beside it; a cut-down study runs."""
    example = Path(__file__).parents[2] / "examples" / "own_model" / "my_study.toml"
    data = StudyConfig.from_toml(example).to_json_dict()
    data["ladder"] = {"batch_sizes": [256, 1024]}
    data["search"] = {**data["search"], "trials_per_rung": 2, "refine": 0, "confirm_top": 0}
    data["search"]["space"] = {"lr": {"low": 0.3, "high": 1.0, "scale": "log"}}
    data["search"]["fixed"] = {"momentum": 0.9}
    data["budget"] = {"steps": 200}
    result = Study(StudyConfig.model_validate(data), tmp_path / "run").run(workers=1)
    assert result.config["workload"]["name"] == "my_cnn:make"
    assert result.workload["name"] == "my-cnn"
    assert all(steps is not None for steps in result.steps_to_target.values())
