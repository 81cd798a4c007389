"""A trial that kills its worker (OOM killer, segfault) is re-run at most
``workers.max_retries`` times, then recorded as failed with the reason, and the study
goes on (issue [hardening], item 5)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from batchlab.study import Study, StudyConfig
from batchlab.study._claims import claim
from batchlab.study._liveness import PID_ATTR, requeue_stale_trials
from batchlab.study._optuna import set_system_attrs, start_trial
from batchlab.study._plan import load_rung_studies


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): as a killed worker's."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_slot_whose_worker_keeps_dying_is_recorded_failed_after_max_retries(
    tmp_path, linreg_study, max_retries
):
    linreg_study["workers"] = {**linreg_study["workers"], "max_retries": max_retries}
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "study")
    study.prepare()
    rung, rung_study = load_rung_studies(study._storage(), config)[0]
    slot = None
    for death in range(1, max_retries + 2):
        (claimed,) = claim(rung_study, config, rung, 1, order=lambda t: -int(t.user_attrs["slot"]))
        slot = claimed.slot if slot is None else slot
        assert claimed.slot == slot  # the re-run of the same slot (highest first)
        set_system_attrs(rung_study, claimed.trial, {PID_ATTR: dead_pid()})
        assert requeue_stale_trials(rung_study, 60.0, max_retries) == 1
        waiting = [
            t.user_attrs["slot"] for t in rung_study.get_trials(states=(TrialState.WAITING,))
        ]
        # Re-run while the deaths do not exceed max_retries; then not any more.
        assert (slot in waiting) == (death <= max_retries)
    result = study.run()  # the other slots, and the study finishes
    first = result.rungs[0]
    assert first.trials_done == first.trials_planned == config.search.trials_per_rung
    (given_up,) = [t for t in first.trials if t.slot == slot]
    assert given_up.status == "error"
    assert f"its worker died {max_retries + 1} times" in given_up.reason
    assert f"workers.max_retries = {max_retries}" in given_up.reason
    assert all(t.status != "error" for t in first.trials if t.slot != slot)


def test_a_bad_max_retries_is_named():
    from pydantic import ValidationError

    from .conftest import LINREG_STUDY

    data = {**LINREG_STUDY, "workers": {**LINREG_STUDY["workers"], "max_retries": -1}}
    with pytest.raises(ValidationError, match="workers.max_retries"):
        StudyConfig.model_validate(data)


@pytest.mark.parametrize("storage", [None, "sqlite:///study.db"], ids=["journal", "sqlite"])
def test_a_trial_claimed_by_a_worker_that_died_before_marking_it_is_rerun(
    tmp_path, linreg_study, storage
):
    """The storage went away (or the worker died) between the claim and the marks that
    follow it (host, pid, first heartbeat): nothing says who holds the trial, and an RDB
    storage's reaper ignores a trial that never had a heartbeat. Such a trial is re-run
    once the grace period has passed; it does not hold its slot (and the study) forever:
    CI saw ``study resume`` wait 600 s on one after a PostgreSQL outage."""
    if storage:
        linreg_study["storage"] = storage
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "study")
    study.prepare()
    rung, rung_study = load_rung_studies(study._storage(), config)[0]
    waiting = rung_study.get_trials(states=(TrialState.WAITING,))[0]
    unmarked = start_trial(rung_study, waiting)  # claimed, never marked
    assert unmarked is not None
    grace = config.workers.grace_period
    # Not before the grace period: a live worker may be about to mark it.
    assert requeue_stale_trials(rung_study, grace) == 0
    assert rung_study.trials[unmarked.number].state == TrialState.RUNNING
    deadline = time.monotonic() + 30
    while (reaped := requeue_stale_trials(rung_study, grace)) == 0:
        assert time.monotonic() < deadline, "the unmarked trial was never re-run"
        time.sleep(0.2)
    assert reaped == 1
    assert rung_study.trials[unmarked.number].state == TrialState.FAIL
    waiting_now = rung_study.get_trials(states=(TrialState.WAITING,))
    assert waiting_now[-1].number > unmarked.number  # its slot, enqueued again
    assert waiting_now[-1].user_attrs["slot"] == waiting.user_attrs["slot"]
    result = study.run()
    first = result.rungs[0]
    assert first.trials_done == first.trials_planned == config.search.trials_per_rung
    assert waiting.user_attrs["slot"] in {t.slot for t in first.trials if t.status != "error"}
