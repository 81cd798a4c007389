"""Resume without its storage (issue #22, item 7): a study whose journal (or database)
is gone is a clear error, exit 2, saying where batchlab looked; nothing is re-planned
or written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.study import StorageError, Study, StudyConfig

runner = CliRunner()
ENV = {"COLUMNS": "240"}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def started(tmp_path: Path, linreg_study: dict, storage: str | None = None) -> Study:
    if storage is not None:
        linreg_study["storage"] = storage
    study = Study(StudyConfig.model_validate(linreg_study), tmp_path / "study")
    study.prepare()  # config.json and every rung's planned trials
    return study


@pytest.mark.parametrize("command", ["resume", "status"])
def test_resume_without_its_journal_says_the_trials_are_gone(tmp_path, linreg_study, command):
    study = started(tmp_path, linreg_study)
    journal = study.directory / "optuna.journal"
    journal.unlink()
    before = snapshot(study.directory)
    result = runner.invoke(app, ["study", command, str(study.directory)], env=ENV)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "are gone" in output and str(journal) in output
    assert "Nothing was planned or written" in output and "Traceback" not in output
    assert snapshot(study.directory) == before  # no new journal, no results


def test_resume_of_an_emptied_journal_names_the_missing_rungs(tmp_path, linreg_study):
    study = started(tmp_path, linreg_study)
    journal = study.directory / "optuna.journal"
    journal.write_bytes(b"")
    result = runner.invoke(app, ["study", "resume", str(study.directory)], env=ENV)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"the file {journal} holds none of its 3 rung studies" in output
    assert journal.read_bytes() == b""  # nothing re-planned
    assert not (study.directory / "results.json").exists()


def test_python_run_of_a_study_whose_sqlite_file_is_gone_is_refused(tmp_path, linreg_study):
    study = started(tmp_path, linreg_study, storage="sqlite:///study.db")
    database = study.directory / "study.db"
    database.unlink()
    before = snapshot(study.directory)
    with pytest.raises(StorageError, match="are gone") as error:
        Study.load(study.directory).run()
    assert str(database.resolve()) in str(error.value)
    assert snapshot(study.directory) == before


def test_preparing_a_started_study_again_lists_the_storages_studies_once(
    tmp_path, linreg_study, monkeypatch
):
    # The checks before re-planning (its trials are there; its confirmations can grow)
    # share one listing of the storage's studies: on a remote database each is a query.
    import optuna

    started(tmp_path, linreg_study)
    listing = optuna.study.get_all_study_names
    calls = []

    def counted(storage):
        calls.append(storage)
        return listing(storage)

    monkeypatch.setattr(optuna.study, "get_all_study_names", counted)
    Study(StudyConfig.model_validate(linreg_study), tmp_path / "study").prepare()
    assert len(calls) == 1
