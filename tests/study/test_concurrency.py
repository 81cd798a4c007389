"""Several workers on one storage (journal file, SQLite, PostgreSQL): every trial
exactly once, and the same results as one worker with the same seeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchlab.study import Study, StudyConfig

from .checks import assert_each_slot_once, assert_same_results
from .postgres import postgres_server


def start_workers(url: str, count: int) -> list[subprocess.Popen]:
    """``batchlab study worker URL`` in ``count`` processes, as a user would start them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "batchlab", "study", "worker", url, "--threads", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]


def wait_all(processes: list[subprocess.Popen], timeout: float = 600) -> None:
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err.decode()


def run_shared(config: StudyConfig, directory: Path, workers: int) -> Study:
    study = Study(config, directory)
    study.prepare()  # plans the trials; workers then only pull them
    wait_all(start_workers(study.storage_url, workers))
    return study


def test_four_workers_on_one_journal_file(tmp_path, linreg_study):
    config = StudyConfig.model_validate(linreg_study)
    study = run_shared(config, tmp_path / "journal", workers=4)
    assert_each_slot_once(study.storage_url, config.search.trials_per_rung)
    single = Study(config, tmp_path / "single").run()
    assert_same_results(study.results(), single)


def test_four_workers_on_sqlite(tmp_path, linreg_study):
    linreg_study["storage"] = "sqlite:///study.db"
    config = StudyConfig.model_validate(linreg_study)
    study = run_shared(config, tmp_path / "sqlite", workers=4)
    assert study.storage_url == f"sqlite:///{(tmp_path / 'sqlite' / 'study.db').resolve()}"
    assert_each_slot_once(study.storage_url, config.search.trials_per_rung)
    linreg_study.pop("storage")
    single = Study(StudyConfig.model_validate(linreg_study), tmp_path / "single").run()
    assert_same_results(study.results(), single)


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on localhost, with an empty database ``studies``."""
    with postgres_server() as server:
        create = [str(server.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port)]
        subprocess.run([*create, "-U", "batchlab", "studies"], check=True, capture_output=True)
        yield f"postgresql+psycopg://batchlab@127.0.0.1:{server.port}/studies"


@pytest.mark.slow
def test_four_workers_on_postgresql_match_the_journal_backend(tmp_path, linreg_study, postgres_url):
    linreg_study["storage"] = postgres_url
    config = StudyConfig.model_validate(linreg_study)
    study = run_shared(config, tmp_path / "pg", workers=4)
    assert_each_slot_once(postgres_url, config.search.trials_per_rung)
    assert not (tmp_path / "pg" / "optuna.journal").exists()
    linreg_study.pop("storage")
    journal = Study(StudyConfig.model_validate(linreg_study), tmp_path / "journal").run()
    assert_same_results(study.results(), journal)


def test_a_worker_whose_trial_was_reaped_drops_its_result_and_goes_on(tmp_path, linreg_study):
    # An overloaded machine can starve a heartbeat past the grace period: a peer
    # then fails the trial and re-enqueues its slot. The late worker must not crash
    # when it finishes, and the slot must still end up finished exactly once.
    from batchlab.study._claims import claim
    from batchlab.study._liveness import requeue
    from batchlab.study._optuna import fail_trial, reload_trial
    from batchlab.study._plan import load_rung_studies
    from batchlab.study._runner import TrialRunner

    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "reaped")
    study.prepare()
    rung, rung_study = load_rung_studies(study._storage(), config)[0]
    (claimed,) = claim(rung_study, config, rung, 1)
    fail_trial(rung_study, claimed.trial, {})  # what a peer's reaper does
    requeue(rung_study, reload_trial(rung_study, claimed.trial))

    runner = TrialRunner(study.workload(), config)
    runner.run(rung, rung_study, [claimed])  # finishes, finds the trial reaped, drops it

    result = study.run()
    assert_each_slot_once(study.storage_url, config.search.trials_per_rung)
    assert all(r.trials_done == config.search.trials_per_rung for r in result.rungs)
