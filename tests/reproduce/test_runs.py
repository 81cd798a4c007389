"""Findings 5 and 6's runs: which runs are made, that they retrace the study's trial, how a plan runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlab import get_workload
from batchlab.reproduce import _run, load_plan, run_plan
from batchlab.reproduce._curves import curve_from_results
from batchlab.reproduce._fixed_budget import budget_jobs, fixed_epoch_steps, run_budget_job
from batchlab.reproduce._noise_runs import (
    checkpoint_steps,
    noise_job,
    run_noise_job,
    training_rung,
)
from batchlab.reproduce._run import run_jobs, study_is_finished
from batchlab.study import RunSpec, StudyConfig, run_training

from .synthetic import LADDER, exact_steps, make_curve

QUICK_PLAN = Path(__file__).resolve().parents[2] / "examples" / "findings" / "quick"


def test_fixed_epoch_steps_are_epochs_times_examples_over_batch():
    assert fixed_epoch_steps(10, 4000, 16) == 2500
    assert fixed_epoch_steps(10, 4000, 2048) == 20
    assert fixed_epoch_steps(0.001, 4000, 2048) == 1


def test_budget_jobs_pair_every_reached_rung_with_its_tuned_values():
    curve = make_curve("s", [1000, 500, None], batch_sizes=(16, 128, 1024), lrs=[0.1, 0.2, 0.3])
    jobs = budget_jobs(curve, epochs=10, evaluations=20, decay="constant")
    assert [(j.spec.batch_size, j.budget, j.spec.max_steps) for j in jobs] == [
        (16, "fixed_epochs", 2500),
        (16, "tuned_steps", 3000),
        (128, "fixed_epochs", 312),
        (128, "tuned_steps", 3000),
    ]
    assert jobs[2].spec.hparams == {"lr": 0.2} and jobs[2].spec.seed == 1
    assert jobs[2].epochs == pytest.approx(312 * 128 / 4000)
    assert jobs[0].spec.eval_every == 125


def test_budget_jobs_need_a_finite_training_set():
    curve = make_curve("s", [100, 50, 40], batch_sizes=(16, 32, 64), train_size=None)
    with pytest.raises(ValueError, match="finite training set"):
        budget_jobs(curve, epochs=1, evaluations=5, decay="constant")


def test_checkpoints_are_evenly_spaced_from_zero_to_the_target():
    assert checkpoint_steps(100, 5) == (0, 25, 50, 75, 100)
    assert checkpoint_steps(3, 5) == (0, 1, 2, 3)
    with pytest.raises(ValueError):
        checkpoint_steps(10, 1)


def test_noise_is_measured_on_the_rung_nearest_b_crit():
    ladder = (16, 32, 64, 128, 256, 512)
    assert training_rung(make_curve("s", exact_steps(ladder, 200, 100), batch_sizes=ladder)) == 128
    assert training_rung(make_curve("s", [None] * 6, batch_sizes=ladder)) is None
    assert (
        training_rung(make_curve("s", [90, 80, None, None, None, None], batch_sizes=ladder)) == 32
    )


def digits_curve(steps: int = 40) -> tuple:
    """A one-rung 'study' on digits-mlp whose best trial reached the target at ``steps``."""
    curve = make_curve(
        "d",
        [steps, steps, steps],
        batch_sizes=(32, 64, 128),
        workload="digits-mlp",
        lrs=[0.1, 0.1, 0.1],
        train_size=1300,
        workload_params={},
    )
    workload = get_workload("digits-mlp")
    return curve, workload


def test_noise_run_retraces_the_trial_and_measures_at_each_checkpoint():
    curve, workload = digits_curve()
    job = noise_job(
        curve, checkpoints=3, batch_size=64, micro_batch_size=16, batches=3, decay="constant"
    )
    record = run_noise_job(job)
    assert [c["step"] for c in record["checkpoints"]] == [0, 20, 40]
    assert all(c["n"] == 3 and c["b_simple"] is not None for c in record["checkpoints"])
    # The metrics at the target equal those of the same run trained by the study's trainer.
    spec = RunSpec(
        batch_size=job.spec.batch_size,
        optimizer="nesterov",
        hparams={"lr": 0.1},
        max_steps=40,
        eval_every=20,
        seed=job.spec.seed,
    )
    trained = run_training(workload, spec, workload.target, stop_at_target=False)
    assert record["checkpoints"][-1]["metrics"]["accuracy"] == trained.metrics["accuracy"][-1]
    assert record["checkpoints"][1]["metrics"]["loss"] == trained.metrics["loss"][0]
    json.dumps(record, allow_nan=False)


def test_budget_run_reports_the_final_metric(tmp_path):
    curve, _ = digits_curve()
    job = budget_jobs(curve, epochs=1, evaluations=4, decay="constant")[0]
    record = run_budget_job(job)
    assert record["final"] == record["values"][-1] and record["steps"][-1] == job.spec.max_steps
    json.dumps(record, allow_nan=False)


def test_finished_jobs_are_not_run_again(tmp_path):
    curve, _ = digits_curve()
    jobs = budget_jobs(curve, epochs=0.5, evaluations=2, decay="constant")[:2]
    calls = []

    def function(job):
        calls.append(job.key)
        return {"job": job.describe(), "key": job.key}

    assert run_jobs(jobs, function, tmp_path, "stage", workers=1, report=lambda d, t: None) == 2
    assert run_jobs(jobs, function, tmp_path, "stage", workers=1, report=lambda d, t: None) == 0
    assert calls == [jobs[0].key, jobs[1].key]
    assert (tmp_path / "measurements" / "stage" / f"{jobs[0].key}.json").is_file()


def test_a_study_counts_as_finished_only_for_the_same_config(tmp_path):
    config = StudyConfig.model_validate(
        {
            "name": "s",
            "workload": {"name": "nqm"},
            "ladder": {"batch_sizes": [4, 8]},
            "optimizer": "sgd",
            "budget": {"steps": 100},
        }
    )
    results = {
        "config": config.to_json_dict(),
        "rungs": [{"trials_done": 16, "trials_planned": 16}] * 2,
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert study_is_finished(tmp_path, config)
    other = config.model_copy(update={"seed": 1})
    assert not study_is_finished(tmp_path, other)
    results["rungs"][1] = {"trials_done": 3, "trials_planned": 16}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert not study_is_finished(tmp_path, config)


def test_curve_reads_the_best_trials_seed_from_results():
    data = {
        "name": "s",
        "config": {
            "optimizer": "sgd",
            "search": {"trials_per_rung": 2, "space": {"lr": {"low": 0.1, "high": 1.0}}},
        },
        "workload": {"name": "nqm", "params": {}, "train_size": None},
        "target": {"metric": "loss", "value": 0.5, "direction": "min"},
        "rungs": [
            {
                "batch_size": 8,
                "budget_steps": 100,
                "eval_every": 10,
                "steps_to_target": 50,
                "best_hparams": {"lr": 0.5},
                "best_trial": 1,
                "trials": [{"number": 0, "seed": 11}, {"number": 1, "seed": 22}],
            },
            {
                "batch_size": 4,
                "budget_steps": 100,
                "eval_every": 10,
                "steps_to_target": None,
                "best_hparams": None,
                "best_trial": None,
                "trials": [],
            },
        ],
    }
    curve = curve_from_results(data)
    assert curve.batch_sizes == (4, 8) and curve.steps == (None, 50)
    assert curve.seeds == (None, 22) and curve.lr(8) == 0.5 and curve.lr(4) is None
    assert curve.search_space == {"lr": (0.1, 1.0)}


def test_run_plan_skips_finished_studies_then_runs_and_reads_back_both_measurements(
    tmp_path, monkeypatch
):
    plan = load_plan(QUICK_PLAN)
    curves = {name: make_curve(name, exact_steps(LADDER, 200, 100)) for name in plan.studies}

    def finished(job):
        return {"key": job.key, "job": job.describe(), "checkpoints": []}

    monkeypatch.setattr(_run, "study_is_finished", lambda directory, config: True)
    monkeypatch.setattr(_run, "load_curve", lambda directory: curves[Path(directory).name])
    monkeypatch.setattr(_run, "run_budget_job", finished)
    monkeypatch.setattr(_run, "run_noise_job", finished)
    events = []
    measurements = run_plan(plan, tmp_path, on_progress=events.append)

    studies, stages = len(plan.studies), len(plan.studies) + 2
    assert all(e.stages == stages for e in events)
    skipped = [e for e in events if e.skipped]
    assert [e.index for e in skipped] == list(range(1, studies + 1))
    assert all(e.stage.startswith("study ") and e.done == e.total > 0 for e in skipped)
    titles = {e.index: e.stage for e in events}
    assert titles[studies + 1] == "fixed-epoch and tuned-step runs"
    assert titles[stages] == "noise scale during training"
    assert events[-1].done == events[-1].total
    budget = _run.plan_budget_jobs(plan, measurements.curves)
    assert list(measurements.fixed_budget) == [job.key for job in budget] and len(budget) == 16
    noise_studies = [run.study for run in plan.settings.noise_scale.runs]
    assert list(measurements.noise) == noise_studies
    assert all((tmp_path / name / "noise_scale.json").is_file() for name in noise_studies)
    assert set(measurements.stage_seconds) == {
        "fixed-epoch and tuned-step runs",
        "noise scale during training",
    }
