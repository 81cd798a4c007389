"""Fault matrix (issue #22), files on disk: a corrupt ``config.json`` and a corrupt
record in the middle of the journal. Each is a clear error, exit 2, naming the file
and the problem, with the study directory byte-for-byte unchanged."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
from optuna.study import StudyDirection
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.study import Study, StudyConfig, open_storage

from .checks import assert_each_slot_once
from .test_cli_study import write_config

runner = CliRunner()
ENV = {"COLUMNS": "240"}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def started(tmp_path: Path, linreg_study: dict) -> Study:
    study = Study(StudyConfig.model_validate(linreg_study), tmp_path / "study")
    study.prepare()  # config.json and every rung's planned trials
    return study


def truncated(text: str) -> str:
    return text[: len(text) // 2]


def wrong_type(text: str) -> str:
    data = json.loads(text)
    data["search"]["trials_per_rung"] = "many"
    return json.dumps(data)


@pytest.mark.parametrize("command", ["resume", "status"])
@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [(truncated, "Invalid JSON"), (wrong_type, "search.trials_per_rung")],
    ids=["truncated", "wrong-type"],
)
def test_corrupt_config_json_is_refused_naming_it(
    tmp_path, linreg_study, command, corrupt, problem
):
    study = started(tmp_path, linreg_study)
    config = study.directory / "config.json"
    config.write_text(corrupt(config.read_text()))
    before = snapshot(study.directory)
    result = runner.invoke(app, ["study", command, str(study.directory)], env=ENV)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{config} is corrupt" in output and problem in output, output
    assert "Traceback" not in output
    assert output.count("error:") == 1  # one message (rich may fold it)
    assert snapshot(study.directory) == before  # nothing re-planned or written


@pytest.mark.parametrize("command", ["resume", "status"])
def test_corrupt_record_in_the_middle_of_the_journal(tmp_path, linreg_study, command):
    study = started(tmp_path, linreg_study)
    journal = study.directory / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    lines[middle] = b'{"op_code": 5, "worker_id": "x", "trial_id": \n'
    journal.write_bytes(b"".join(lines))
    before = snapshot(study.directory)
    result = runner.invoke(app, ["study", command, str(study.directory)], env=ENV)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert str(journal) in output and "Traceback" not in output
    assert snapshot(study.directory) == before
    assert f"line {middle + 1} (record {middle + 1}) is not a valid record" in output
    assert "Restore the journal from a backup" in output


def test_append_after_a_torn_tail_does_not_make_a_corrupt_middle_record(tmp_path):
    """A writer cut short mid-append (killed, or the disk filled up) leaves a tail
    without a newline while the others go on: the next append drops it first."""
    journal = tmp_path / "optuna.journal"
    storage = open_storage(f"journal://{journal}")
    storage.create_new_study([StudyDirection.MINIMIZE], "first")
    with journal.open("ab") as handle:
        handle.write(b'{"op_code": 0, "worker_id": "dead", "study_na')  # torn
    storage.create_new_study([StudyDirection.MINIMIZE], "second")
    lines = journal.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines)
    names = {s.study_name for s in open_storage(f"journal://{journal}").get_all_studies()}
    assert names == {"first", "second"}


def test_run_into_a_read_only_directory_is_refused_before_training(
    tmp_path, linreg_study, monkeypatch
):
    config = write_config(tmp_path, linreg_study)
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o555)
    out = parent / "study"
    if os.access(parent, os.W_OK):  # root ignores the mode (as in CI): simulate it
        real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp

        def mkdir(self, *args, **kwargs):
            if self.is_relative_to(parent) and self != parent:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).is_relative_to(parent):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    try:
        result = runner.invoke(
            app, ["study", "run", str(config), "--out", str(out), "--workers", "1"], env=ENV
        )
    finally:
        parent.chmod(0o755)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "permission denied" in output and f"{parent} is not writable" in output, output
    assert "Traceback" not in output and output.count("error:") == 1
    assert list(parent.iterdir()) == []  # nothing written, so nothing trained


def fill_the_disk_at_append(monkeypatch, n: int) -> list[int]:
    """From now on, the journal's ``n``-th append writes half its record, then raises
    ENOSPC (as a disk filling up mid-write); returns the sizes appended so far."""
    import optuna.storages.journal._file as journal_file

    appends: list[int] = []

    class Full:
        def __init__(self, handle):
            self._handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

        def write(self, data):
            appends.append(len(data))
            if len(appends) == n:  # the disk fills up half-way through a record
                self._handle.write(data[: len(data) // 2])
                self._handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._handle.write(data)

        def __iter__(self):
            return iter(self._handle)

        def __getattr__(self, name):
            return getattr(self._handle, name)

    real_open = open
    monkeypatch.setattr(
        journal_file, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False
    )
    return appends


def test_disk_full_mid_study_stops_cleanly_and_resume_finishes_every_slot_once(
    tmp_path, linreg_study, monkeypatch
):
    config = write_config(tmp_path, linreg_study)
    out = tmp_path / "study"
    appends = fill_the_disk_at_append(monkeypatch, 40)
    result = runner.invoke(
        app, ["study", "run", str(config), "--out", str(out), "--workers", "1"], env=ENV
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert len(appends) >= 40  # the fault was injected, mid-study
    journal = out / "optuna.journal"
    assert f"no space left on device writing {journal}" in output, output
    assert "Traceback" not in output and "batchlab study resume" in output
    assert not list(out.glob(".*.tmp"))  # no temporary left behind
    if (out / "results.json").exists():  # an earlier snapshot, whole
        json.loads((out / "results.json").read_text())
    monkeypatch.undo()  # the disk is freed
    result = runner.invoke(app, ["study", "resume", str(out), "--workers", "1"], env=ENV)
    assert result.exit_code == 0, result.output
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())  # no torn record
    study = Study.load(out)
    assert not any(study.unfinished().values())
    assert_each_slot_once(study.storage_url, linreg_study["search"]["trials_per_rung"])
    json.loads((out / "results.json").read_text())


def test_disk_full_while_rewriting_a_file_keeps_the_old_one_whole(tmp_path, monkeypatch):
    from batchlab import _io

    path = tmp_path / "results.json"
    _io.atomic_write_json(path, {"old": True})
    before = path.read_bytes()

    def full(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as error:
        _io.atomic_write_json(path, {"new": True})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert path.read_bytes() == before  # the old version, whole
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


@pytest.mark.parametrize("command", ["resume", "worker"])
def test_disk_full_under_resume_or_a_worker_stops_cleanly_and_loses_nothing(
    tmp_path, linreg_study, monkeypatch, command
):
    study = started(tmp_path, linreg_study)
    journal = study.directory / "optuna.journal"
    appends = fill_the_disk_at_append(monkeypatch, 25)
    args = {
        "resume": ["study", "resume", str(study.directory), "--workers", "1"],
        "worker": ["study", "worker", f"journal://{journal}"],
    }[command]
    result = runner.invoke(app, args, env=ENV)
    output = " ".join(result.output.split())
    assert len(appends) >= 25  # the fault was injected
    assert result.exit_code == 1, result.output
    assert f"no space left on device writing {journal}" in output, output
    assert "Traceback" not in output and "Finished trials are kept" in output
    assert "batchlab study resume" in output
    monkeypatch.undo()  # the disk is freed
    result = runner.invoke(app, ["study", "resume", str(study.directory), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())
    assert not any(Study.load(study.directory).unfinished().values())
    assert_each_slot_once(study.storage_url, linreg_study["search"]["trials_per_rung"])


def test_disk_full_writing_the_report_keeps_the_old_one_and_says_what_to_do(
    tmp_path, linreg_study, monkeypatch
):
    from batchlab import _io

    study = started(tmp_path, linreg_study)
    assert runner.invoke(app, ["study", "resume", str(study.directory)]).exit_code == 0
    assert runner.invoke(app, ["report", str(study.directory)]).exit_code == 0
    report = study.directory / "report.html"
    before = report.read_bytes()

    def full(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full)
    result = runner.invoke(app, ["report", str(study.directory)], env=ENV)
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"no space left on device writing {report}" in output, output
    assert "free some space, then run the command again" in output.lower()
    assert "study resume" not in output and "Traceback" not in output
    assert report.read_bytes() == before and not list(study.directory.glob(".*.tmp"))
