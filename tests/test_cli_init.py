"""``batchlab init``: the scaffolded workload and study run, first time, as printed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchlab.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "240"}


@pytest.fixture(autouse=True)
def forget_the_template_module(monkeypatch):
    """The in-process smoke study imports my_workload: keep it out of later tests."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop("my_workload", None)


def test_init_writes_the_files_smoke_tests_them_and_prints_the_next_command(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "proj")], env=ENV)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj" / "my_workload.py").exists()
    assert (tmp_path / "proj" / "my_study.toml").exists()
    assert "smoke study: 4 trials ran" in result.output
    assert f"batchlab study run {tmp_path / 'proj' / 'my_study.toml'} --workers 2" in result.output


def test_init_never_overwrites(tmp_path):
    (tmp_path / "my_study.toml").write_text("name = 'mine'\n")
    result = runner.invoke(app, ["init", str(tmp_path), "--no-smoke"], env=ENV)
    assert result.exit_code == 2
    assert "never overwrites" in result.output and "my_study.toml" in result.output
    assert (tmp_path / "my_study.toml").read_text() == "name = 'mine'\n"
    assert not (tmp_path / "my_workload.py").exists()  # nothing half-written


@pytest.mark.slow
def test_the_printed_command_runs_the_study_in_a_fresh_directory(tmp_path):
    # As a user would: the console script, no PYTHONPATH, from another directory.
    script = str(Path(sys.executable).with_name("batchlab"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ENV
    init = subprocess.run(
        [script, "init", str(tmp_path / "proj"), "--no-smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    command = init.stdout.strip().splitlines()[-1].split()
    assert command[:3] == ["batchlab", "study", "run"]
    out = tmp_path / "runs" / "mine"
    run = subprocess.run(
        [script, *command[1:], "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, shlex.join(command) + "\n" + run.stderr + run.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["analysis"]["fit"]["b_crit"] > 0
