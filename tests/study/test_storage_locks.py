"""Planning and re-queueing hold a lock the storage itself holds (issue [hardening],
"exactly once"), and an RDB storage keeps Optuna's own safety net: its server-time
heartbeat and its transactional reaper, seen through Optuna's cache."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from optuna.trial import TrialState

from batchlab.study import Study, StudyConfig
from batchlab.study._claims import claim, record
from batchlab.study._liveness import PID_ATTR, reaping, requeue_stale_trials
from batchlab.study._locks import advisory_key, storage_lock
from batchlab.study._optuna import has_optuna_heartbeat, set_system_attrs, storage_of
from batchlab.study._plan import load_rung_studies
from batchlab.training import RunResult

from .test_worker_deaths import dead_pid


def prepared(tmp_path, linreg_study, storage=None):
    if storage is not None:
        linreg_study["storage"] = storage
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "study")
    study.prepare()
    rung, rung_study = load_rung_studies(study._storage(), config)[0]
    return study, config, rung, rung_study


def is_locked(path) -> bool:
    """Whether another open file description holds an ``flock`` on ``path``."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def test_advisory_keys_are_stable_signed_64_bit_integers():
    key = advisory_key("batchlab:plan:linreg-test")
    assert key == advisory_key("batchlab:plan:linreg-test")
    assert -(2**63) <= key < 2**63
    assert key != advisory_key("batchlab:reap:linreg-test")


@pytest.mark.parametrize("storage", [None, "sqlite:///study.db"], ids=["journal", "sqlite"])
def test_the_lock_is_a_file_beside_the_journal_or_database(tmp_path, linreg_study, storage):
    study, _, _, rung_study = prepared(tmp_path, linreg_study, storage)
    name = "study.db" if storage else "optuna.journal"
    lock_file = tmp_path / "study" / f"{name}.plan.lock"
    with storage_lock(storage_of(rung_study), "plan", "linreg-test"):
        assert is_locked(lock_file)
    assert not is_locked(lock_file)


def test_a_reaper_waits_while_another_process_holds_the_reap_lock(tmp_path, linreg_study):
    study, config, rung, rung_study = prepared(tmp_path, linreg_study)
    (claimed,) = claim(rung_study, config, rung, 1)
    set_system_attrs(rung_study, claimed.trial, {PID_ATTR: dead_pid()})
    reaped = []
    with reaping(rung_study):  # e.g. `study resume` repairing lost slots
        reaper = threading.Thread(
            target=lambda: reaped.append(requeue_stale_trials(rung_study, 60.0))
        )
        reaper.start()
        reaper.join(timeout=0.5)
        assert reaper.is_alive() and reaped == []
    reaper.join(timeout=30)
    assert reaped == [1]


def test_an_rdb_study_keeps_optunas_heartbeat_behind_its_cache(tmp_path, linreg_study):
    study, config, rung, rung_study = prepared(tmp_path, linreg_study, "sqlite:///study.db")
    assert type(storage_of(rung_study)).__name__ == "_CachedStorage"
    assert has_optuna_heartbeat(rung_study)


def test_a_trial_whose_worker_died_before_training_is_reaped_by_optuna_once(tmp_path, linreg_study):
    """Claimed, then never a heartbeat of its own: the claim's heartbeat (server time)
    goes stale, Optuna's reaper fails the trial and the callback re-enqueues its slot,
    once however many reapers run; the dead worker's late result is dropped."""
    study, config, rung, rung_study = prepared(tmp_path, linreg_study, "sqlite:///study.db")
    waiting = len(rung_study.get_trials(states=(TrialState.WAITING,)))
    (claimed,) = claim(rung_study, config, rung, 1)
    grace = 2  # Optuna's smallest (whole seconds); the config asks for 1.0
    assert requeue_stale_trials(rung_study, config.workers.grace_period) == 0
    time.sleep(grace + 1.1)
    assert requeue_stale_trials(rung_study, config.workers.grace_period) == 1
    assert requeue_stale_trials(rung_study, config.workers.grace_period) == 0
    trials = rung_study.get_trials()
    assert len([t for t in trials if t.state == TrialState.WAITING]) == waiting
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.user_attrs["slot"] == claimed.slot
    late = RunResult(
        status="not_reached", steps_to_target=None, steps=[10], metrics={"loss": [1.0]}
    )
    assert record(rung_study, claimed, late, wall_time=1.0, ensemble=1) is False


def test_a_dead_local_worker_on_an_rdb_storage_is_reaped_at_once(tmp_path, linreg_study):
    study, config, rung, rung_study = prepared(tmp_path, linreg_study, "sqlite:///study.db")
    (claimed,) = claim(rung_study, config, rung, 1)
    set_system_attrs(rung_study, claimed.trial, {PID_ATTR: dead_pid()})
    assert requeue_stale_trials(rung_study, 60.0) == 1
    assert requeue_stale_trials(rung_study, 60.0) == 0
    slots = [t.user_attrs["slot"] for t in rung_study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(slots) == list(range(config.search.trials_per_rung))
