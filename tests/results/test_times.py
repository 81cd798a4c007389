"""results.json's times say what they are: elapsed wall time, and the summed trial time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from batchlab.results import load_study
from batchlab.study import Study, StudyConfig

FIXTURE = Path(__file__).parent / "fixtures" / "mnist1d-cnn-schema1.json"


def test_elapsed_is_within_the_run_and_trial_time_is_the_sum(tmp_path):
    from ..study.conftest import LINREG_STUDY

    config = StudyConfig.model_validate(LINREG_STUDY)
    started = time.time()
    result = Study(config, tmp_path / "s").run(workers=2)
    took = time.time() - started
    assert 0 < result.wall_time_s <= took
    trials = [t.wall_time_s for r in result.rungs for t in r.trials]
    assert result.trial_time_s == sum(trials)
    written = json.loads((tmp_path / "s" / "results.json").read_text())
    assert written["wall_time_s"] == result.wall_time_s
    assert written["trial_time_s"] == result.trial_time_s


def test_an_old_file_s_wall_time_is_read_as_the_summed_trial_time():
    # Before trial_time_s existed, wall_time_s held the sum of the trials' times.
    old = json.loads(FIXTURE.read_text())
    assert "trial_time_s" not in old
    study = load_study(old)
    assert study.trial_time_s == old["wall_time_s"]
    assert study.wall_time_s is None
