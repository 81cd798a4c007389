"""A planned slot with no trial left to run (lost: failed as dead, never re-enqueued)
is named, makes the study exit non-zero, and is enqueued again by ``study resume``
(issue [hardening], item 2: nothing lost, or a non-zero exit naming what is)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.study import Study, StudyConfig, StudyIncomplete, unfinished_trials
from batchlab.study._claims import claim
from batchlab.study._optuna import fail_trial
from batchlab.study._plan import load_rung_studies

from .checks import assert_each_slot_once


def lose_a_slot(study: Study) -> tuple[int, int]:
    """Claim a trial and fail it as a dead worker's without re-enqueueing it: what a
    reaper that dies between the two steps leaves behind. Returns (batch size, slot)."""
    rung, rung_study = load_rung_studies(study._storage(), study.config)[1]
    (claimed,) = claim(rung_study, study.config, rung, 1)
    fail_trial(rung_study, claimed.trial, {"status": "worker_died"})
    return rung.batch_size, claimed.slot


@pytest.fixture
def lost(tmp_path, linreg_study):
    study = Study(StudyConfig.model_validate(linreg_study), tmp_path / "lost")
    study.prepare()
    return study, *lose_a_slot(study)


def test_a_run_that_ends_with_a_lost_slot_names_it_and_resume_runs_it(lost, monkeypatch):
    study, batch_size, slot = lost
    # The slot is lost after the run's own planning: the run cannot see it coming.
    monkeypatch.setattr(Study, "_enqueue_lost", lambda self, rung_study, rung: None)
    with pytest.raises(StudyIncomplete, match=rf"batch size {batch_size}: slot {slot}\b"):
        study.run()
    assert study.unfinished() == {batch_size: [slot]}
    assert unfinished_trials(study.config, study.storage_url) == {batch_size: [slot]}
    assert (study.directory / "results.json").exists()  # what did finish is kept
    statuses = CliRunner().invoke(app, ["study", "status", str(study.directory), "--json"])
    rungs = {r["batch_size"]: r for r in json.loads(statuses.stdout)["rungs"]}
    assert rungs[batch_size]["missing"] == [slot]
    monkeypatch.undo()
    resumed = CliRunner().invoke(app, ["study", "resume", str(study.directory)])
    assert resumed.exit_code == 0, resumed.output
    assert study.unfinished() == {}
    assert_each_slot_once(study.storage_url, study.config.search.trials_per_rung)


def test_a_worker_that_finds_a_lost_slot_exits_non_zero_naming_it(lost):
    study, batch_size, slot = lost
    url = study.storage_url
    result = CliRunner().invoke(app, ["study", "worker", url])
    assert result.exit_code == 1, result.output
    assert f"batch size {batch_size}: slot {slot}" in result.output
    assert "study resume" in result.output


def test_a_run_repairs_a_slot_lost_before_it_starts(lost):
    study, _, _ = lost
    result = study.run()  # prepare() finds the lost slot and enqueues it again
    assert all(r.trials_done == r.trials_planned for r in result.rungs)
    assert_each_slot_once(study.storage_url, study.config.search.trials_per_rung)
