"""Torch threads per worker: chosen with ``threads=``, recorded with every trial."""

from __future__ import annotations

import pytest
import torch

from batchlab._threads import torch_threads
from batchlab.study import Study, StudyConfig


def test_torch_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_in_process_trials_train_with_the_given_threads_and_the_setting_is_restored(
    tmp_path, linreg_study
):
    linreg_study["ladder"]["batch_sizes"] = [4, 16]
    linreg_study["search"]["trials_per_rung"] = 2
    seen: list[int] = []
    with torch_threads(2):
        result = Study(StudyConfig.model_validate(linreg_study), tmp_path / "s").run(
            threads=1, on_event=lambda event: seen.append(torch.get_num_threads())
        )
        assert torch.get_num_threads() == 2
    assert seen and set(seen) == {1}
    assert {t.threads for r in result.rungs for t in r.trials} == {1}


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_bad_thread_counts_are_refused_before_anything_runs(tmp_path, linreg_study, threads):
    study = Study(StudyConfig.model_validate(linreg_study), tmp_path / "s")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        study.run(threads=threads)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_worker_processes_train_with_the_given_threads(tmp_path, linreg_study):
    linreg_study["ladder"]["batch_sizes"] = [4, 16]
    linreg_study["search"]["trials_per_rung"] = 2
    result = Study(StudyConfig.model_validate(linreg_study), tmp_path / "s").run(
        workers=2, threads=1
    )
    assert {t.threads for r in result.rungs for t in r.trials} == {1}
