"""A trial that kills its worker (OOM killer, segfault) is re-run at most
``workers.max_retries`` times, then recorded as failed with the reason, and the study
goes on (issue [hardening], item 5)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from optuna.trial import TrialState

from batchlab.study import Study, StudyConfig
from batchlab.study._claims import claim
from batchlab.study._liveness import PID_ATTR, requeue_stale_trials
from batchlab.study._optuna import set_system_attrs
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
