"""Resume after SIGKILL and share a study between workers: every trial exactly once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from batchlab.study import Study, StudyConfig, open_storage, work

from .checks import assert_each_slot_once


def test_sigkill_then_resume_finishes_every_trial_exactly_once(tmp_path, linreg_study):
    config = StudyConfig.model_validate(linreg_study)
    directory = tmp_path / "killed"
    study = Study(config, directory)
    study.prepare()
    script = (
        "import sys; from batchlab.study import Study, StudyConfig; "
        f"Study(StudyConfig.model_validate_json(sys.argv[1]), {str(directory)!r}).run()"
    )
    process = subprocess.Popen([sys.executable, "-c", script, config.model_dump_json()])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(s.done for s in study.status()) >= 4:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = sum(s.done for s in study.status())
    assert 4 <= done_before < 18, "the kill should land in the middle of the study"
    # The killed trial is still RUNNING; the resumed worker sees its process is gone.
    result = Study.load(directory).run()
    assert all(r.trials_done == r.trials_planned for r in result.rungs)
    assert_each_slot_once(study.storage_url, config.search.trials_per_rung)


def _worker(config_json: str, url: str) -> None:
    work(StudyConfig.model_validate_json(config_json), url)


def test_two_workers_on_one_storage_run_each_trial_once(tmp_path, linreg_study):
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "shared")
    study.prepare()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(config.model_dump_json(), study.storage_url))
        for _ in range(2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert_each_slot_once(study.storage_url, config.search.trials_per_rung)
    storage = open_storage(study.storage_url)
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        assert len(trials) == config.search.trials_per_rung  # no duplicate, no retry needed
    # Same trials, same seeds: the same results as one worker would get.
    single = Study(config, tmp_path / "single").run()
    assert study.results().steps_to_target == single.steps_to_target


@pytest.mark.parametrize("workers", [2])
def test_run_with_local_worker_processes(tmp_path, nqm_study, workers):
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "multi").run(workers=workers)
    assert result.complete
    assert result.steps_to_target == Study(config, tmp_path / "one").run().steps_to_target


def test_a_study_saved_before_newer_fields_existed_resumes_as_it_was(tmp_path, nqm_study):
    """Fields added since a study started take their defaults (which keep the old
    meaning): resume does not call that a change; a real change is still refused."""
    import json

    from batchlab._errors import ConfigError

    directory = tmp_path / "old"
    Study(StudyConfig.model_validate(nqm_study), directory).prepare()
    path = directory / "config.json"
    saved = json.loads(path.read_text())
    for section, key in (("search", "edge_extension"), ("performance", "device")):
        del saved[section][key]  # as a batchlab without them wrote it
    path.write_text(json.dumps(saved))
    Study.load(directory).prepare()  # not refused
    saved["search"]["refine_width"] = 0.5  # a change that alters what trials measure
    path.write_text(json.dumps(saved))
    changed = Study(
        StudyConfig.model_validate(
            {**nqm_study, "search": {**nqm_study["search"], "refine_width": 0.25}}
        ),
        directory,
    )
    with pytest.raises(ConfigError, match="search.refine_width: 0.5 -> 0.25"):
        changed.prepare()
