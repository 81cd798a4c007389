"""Trials that raise or run out of memory are recorded with their reason and traceback;
the study goes on, unless asked to fail fast."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.study import FailFast, Study, StudyConfig, WorkersDied

from .test_cli_study import write_config

SPEC = "tests.study.failing_workload:make"


def failing_study(linreg_study: dict, error: str) -> dict:
    linreg_study["workload"] = {"name": SPEC, "params": {"error": error, "every": 3}}
    linreg_study["performance"] = {"ensemble_size": 1}
    return linreg_study


@pytest.mark.parametrize(
    ("error", "reason"),
    [("runtime", "RuntimeError: boom"), ("memory", "out of memory: boom")],
)
def test_failing_trials_are_recorded_with_reason_and_traceback(
    tmp_path, linreg_study, error, reason
):
    config = StudyConfig.model_validate(failing_study(linreg_study, error))
    result = Study(config, tmp_path / "study").run()
    trials = [t for r in result.rungs for t in r.trials]
    failed = [t for t in trials if t.seed % 3 == 0]
    assert failed, "the seeds should make some trials fail"
    for trial in failed:
        assert trial.status == "error"
        assert trial.reason.startswith(reason)
        assert "Traceback" in trial.traceback and "loss_fn" in trial.traceback
    # The study went on: every other trial ran to its own result.
    assert result.complete
    assert all(t.status != "error" for t in trials if t.seed % 3 != 0)


def test_fail_fast_stops_at_the_first_failing_trial(tmp_path, linreg_study):
    config = StudyConfig.model_validate(failing_study(linreg_study, "runtime"))
    with pytest.raises(FailFast, match="failed: RuntimeError: boom"):
        Study(config, tmp_path / "study").run(fail_fast=True)


def test_cli_fail_fast_is_one_line_and_a_non_zero_exit(tmp_path, linreg_study):
    config = write_config(tmp_path, failing_study(linreg_study, "runtime"))
    result = CliRunner().invoke(
        app, ["study", "run", str(config), "--out", str(tmp_path / "out"), "--fail-fast"]
    )
    assert result.exit_code == 1, result.output
    assert "failed: RuntimeError: boom" in result.output
    assert "Traceback" not in result.output


def test_workers_that_all_die_raise_instead_of_returning_a_partial_study(tmp_path, linreg_study):
    # Every trial's process exits at its first step: both workers die, trials remain.
    study = failing_study(linreg_study, "exit")
    study["workload"]["params"]["every"] = 1
    config = StudyConfig.model_validate(study)
    with pytest.raises(WorkersDied, match=r"2 of 2 worker processes exited .*exit codes 3, 3"):
        Study(config, tmp_path / "study").run(workers=2)
    assert (tmp_path / "study" / "results.json").is_file()  # what there is, on disk
    result = CliRunner().invoke(app, ["study", "resume", str(tmp_path / "study"), "-w", "2"])
    assert result.exit_code == 1, result.output
    assert "exited abnormally" in result.output and "Traceback" not in result.output
