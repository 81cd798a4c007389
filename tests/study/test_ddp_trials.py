"""Trials trained with DDP through torchrun (gloo on CPU) measure what one process does."""

from __future__ import annotations

import math

import pytest
import torch

from batchlab import ConfigError, StudyConfig
from batchlab.study import Study
from batchlab.study._config import validate_against_workload
from batchlab.training import DDPTrialError, RunSpec, run_ddp_trial, run_training, shard_batch
from batchlab.workloads import get_workload

from .checks import trial_outcomes

DIGITS_STUDY = {
    "name": "digits-ddp",
    "optimizer": "nesterov",
    "workload": {"name": "digits-mlp"},
    "ladder": {"batch_sizes": [32, 128]},
    "search": {
        "trials_per_rung": 2,
        # The search alone: each trial is a torchrun launch, and DDP equivalence is what
        # is tested here (the stages are tests/study/test_stages.py's).
        "refine": 0,
        "confirm_top": 0,
        "space": {"lr": {"low": 0.05, "high": 0.5}},
        "fixed": {"momentum": 0.9},
    },
    "target": {"metric": "accuracy", "value": 0.9, "direction": "max"},
    "budget": {"steps": 120},
    "evaluation": {"every": 20},
    "stopping": {"at_target": True, "once_beaten": False},
    "seed": 3,
}


def digits_spec(max_steps: int, seed: int, **extra) -> RunSpec:
    """Nesterov SGD on digits-mlp at global batch 64, evaluated every 10 steps."""
    return RunSpec(
        batch_size=64,
        optimizer="nesterov",
        hparams={"lr": 0.1, "momentum": 0.9},
        max_steps=max_steps,
        eval_every=10,
        seed=seed,
        **extra,
    )


def test_shard_batch_gives_each_rank_an_equal_slice() -> None:
    x, y = torch.arange(12).view(6, 2), torch.arange(6)
    parts = [shard_batch((x, y), rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    assert [p[1].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="does not split evenly over 4 processes"):
        shard_batch(x, 0, 4)


def test_a_rank_that_only_lost_its_peer_is_told_from_one_that_failed() -> None:
    # gloo's error in the surviving rank says where the peer died, not why: the trial's
    # error quotes the rank that failed, and a launch where no rank did is relaunched.
    from batchlab.training._ddp_launch import _lost_peer

    lost = (
        "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
        "by peer [127.0.0.1]:401. This is typically caused by a remote worker crashing."
    )
    assert _lost_peer(["Traceback (most recent call last):", lost])
    assert _lost_peer(["RuntimeError: Connection reset by peer"])
    assert not _lost_peer(["Traceback (most recent call last):", "ValueError: bad batch"])
    assert not _lost_peer([])


def test_processes_per_trial_must_divide_every_batch_size() -> None:
    config = {**DIGITS_STUDY, "ladder": {"batch_sizes": [32, 48, 100]}}
    config["performance"] = {"processes_per_trial": 3}
    with pytest.raises(ValueError, match=r"processes_per_trial = 3 must divide.*\[32, 100\]"):
        StudyConfig.model_validate(config)


def test_exact_workloads_refuse_processes_per_trial(nqm_study) -> None:
    config = StudyConfig.model_validate({**nqm_study, "performance": {"processes_per_trial": 2}})
    with pytest.raises(ConfigError, match="performance.processes_per_trial"):
        validate_against_workload(config, get_workload("nqm", {"dim": 1000}))


@pytest.mark.slow
def test_ddp_trial_curve_equals_the_single_process_curve_at_the_same_global_batch() -> None:
    # Evaluated at the same steps too, dense ones included (decided from rank 0's metrics).
    workload = get_workload("digits-mlp", {})
    spec = digits_spec(60, 7, resolution=0.02)
    alone = run_training(workload, spec, workload.target, stop_at_target=False)
    assert any(step % 10 for step in alone.steps)  # dense evaluations: the ranks agree on them
    seen: list[int] = []
    ddp = run_ddp_trial(
        {"name": "digits-mlp", "params": {}},
        spec,
        workload.target,
        2,
        stop_at_target=False,
        on_eval=lambda step, metrics: seen.append(step),
    )
    assert ddp.status == alone.status and ddp.steps == alone.steps == seen
    # Two half-batch means averaged by the all-reduce equal the full-batch mean up to
    # float32 rounding (~1e-7 relative per step); 60 steps of Nesterov SGD grow that
    # to ~1e-6, far below any difference a real bug (a wrong slice, a missing
    # all-reduce: the loss curves then differ in the first digits) would make.
    for name in alone.metrics:
        assert ddp.metrics[name] == pytest.approx(alone.metrics[name], rel=1e-4), name
    assert ddp.train_loss == pytest.approx(alone.train_loss, rel=1e-4)


@pytest.mark.slow
def test_a_failing_rank_raises_with_torchruns_output() -> None:
    workload = get_workload("digits-mlp", {})
    spec = digits_spec(20, 0)
    with pytest.raises(DDPTrialError, match=r"(?s)exited with code \d+.*no_such_module"):
        run_ddp_trial({"name": "no_such_module:build", "params": {}}, spec, workload.target, 2)


@pytest.mark.slow
def test_a_rank_that_aborts_is_relaunched_and_each_evaluation_reported_once(tmp_path) -> None:
    # A rank killed by SIGABRT with no Python error (gloo's transport does this now and
    # then) costs a relaunch, not the trial: the relaunch trains the same curve.
    workload = get_workload("digits-mlp", {})
    spec = digits_spec(40, 7)
    alone = run_training(workload, spec, workload.target, stop_at_target=False)
    counter = tmp_path / "launches"
    aborting = {"name": "tests.study.aborting_workload:make", "params": {"counter": str(counter)}}
    seen: list[int] = []
    ddp = run_ddp_trial(
        aborting,
        spec,
        workload.target,
        2,
        stop_at_target=False,
        on_eval=lambda step, metrics: seen.append(step),
    )
    assert counter.read_text() == "2"  # the first launch aborted, the second trained
    assert ddp.steps == alone.steps == seen
    assert ddp.train_loss == pytest.approx(alone.train_loss, rel=1e-4)

    counter.unlink()
    leaving = {**aborting, "params": {"counter": str(counter), "at_eval": 0}}
    again = run_ddp_trial(leaving, spec, workload.target, 2, stop_at_target=False)
    assert (again.steps, again.train_loss) == (ddp.steps, ddp.train_loss)
    assert counter.read_text() == "1"  # aborted after rank 0 wrote the result: it stands

    counter.unlink()
    always = {**aborting, "params": {"counter": str(counter), "aborts": 9}}
    with pytest.raises(DDPTrialError, match=r"exited with code \d+"):
        run_ddp_trial(always, spec, workload.target, 2, launch_retries=1)
    assert counter.read_text() == "2"  # one launch and one relaunch, then the error
    with pytest.raises(ValueError, match="launch_retries must be >= 0, got -1"):
        run_ddp_trial(always, spec, workload.target, 2, launch_retries=-1)


@pytest.mark.slow
def test_a_study_with_ddp_trials_records_the_same_outcomes_as_one_process(tmp_path) -> None:
    single = Study(StudyConfig.model_validate(DIGITS_STUDY), tmp_path / "one").run(workers=1)
    ddp_config = {**DIGITS_STUDY, "performance": {"processes_per_trial": 2}}
    ddp = Study(StudyConfig.model_validate(ddp_config), tmp_path / "ddp").run(workers=1)
    assert trial_outcomes(ddp) == trial_outcomes(single)
    assert any(t.steps_to_target is not None for r in ddp.rungs for t in r.trials)
    for rung_one, rung_ddp in zip(single.rungs, ddp.rungs, strict=True):
        for a, b in zip(rung_one.trials, rung_ddp.trials, strict=True):
            assert b.curve is not None and a.curve is not None
            assert b.curve["steps"] == a.curve["steps"]
            assert all(
                math.isclose(u, v, rel_tol=1e-4)
                for u, v in zip(a.curve["loss"], b.curve["loss"], strict=True)
            )
