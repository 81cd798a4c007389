"""A worker imports a ``module:function`` workload named in the storage only with local
consent (issue #22, item 6): ``--allow-workload`` or ``--config``; built-ins need none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.study import Study, StudyConfig, find_study_config, work
from batchlab.study._worker import WorkloadNotAllowed

from .test_cli_study import write_config

runner = CliRunner()
ENV = {"COLUMNS": "240"}

WORKLOAD = '''
from batchlab.workloads import get_workload


def make(dim: int = 4):
    """The built-in linreg, as a user's own module:function builds a workload."""
    return get_workload("linreg", {"dim": dim})
'''


def own_study(tmp_path: Path, linreg_study: dict, module: str) -> tuple[Path, Path, str]:
    """A planned study of a module:function workload: (its config file, journal URL, spec).

    ``module`` is unique per test: a module imported once stays in ``sys.modules``.
    """
    home = tmp_path / "project"
    home.mkdir()
    (home / f"{module}.py").write_text(WORKLOAD)
    spec = f"{module}:make"
    linreg_study["workload"] = {"name": spec, "params": {"dim": 4}}
    linreg_study["ladder"] = {"batch_sizes": [4, 16]}
    linreg_study["search"]["trials_per_rung"] = 2
    config = write_config(home, linreg_study, "study.toml")
    study = Study.from_config(config, tmp_path / "runs" / "own")
    study.prepare()
    return config, Path(study.storage_url.removeprefix("journal://")), spec


def worker(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["study", "worker", *args], env=ENV)
    return result.exit_code, " ".join(result.output.split())


def trials_done(journal: Path) -> int:
    return sum(s.done + s.running for s in Study.load(journal.parent).status())


def test_worker_refuses_a_module_function_workload_without_consent(
    tmp_path, linreg_study, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    _, journal, spec = own_study(tmp_path, linreg_study, "consent_wl_refused")
    code, output = worker(f"journal://{journal}", "--workload-path", str(journal.parent))
    assert code == 2, output
    assert f"workload {spec!r}" in output and f"--allow-workload {spec}" in output
    assert "--config" in output and "Traceback" not in output
    assert trials_done(journal) == 0


def test_worker_runs_it_with_allow_workload(tmp_path, linreg_study, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, journal, spec = own_study(tmp_path, linreg_study, "consent_wl_allowed")
    code, output = worker(
        f"journal://{journal}",
        "--allow-workload",
        "other_module:make",
        "--allow-workload",
        spec,
        "--workload-path",
        str(config.parent),
    )
    assert code == 0, output
    assert "this worker ran 4" in output


def test_worker_runs_it_with_the_study_config(tmp_path, linreg_study, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, journal, _ = own_study(tmp_path, linreg_study, "consent_wl_config")
    # No --workload-path: the module is found beside the config file given here.
    code, output = worker(f"journal://{journal}", "--config", str(config))
    assert code == 0, output
    assert "this worker ran 4" in output


def test_worker_refuses_a_config_of_another_workload(tmp_path, linreg_study, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, journal, spec = own_study(tmp_path, linreg_study, "consent_wl_other")
    other = dict(linreg_study, workload={"name": "evil_module:make"})
    code, output = worker(f"journal://{journal}", "--config", str(write_config(tmp_path, other)))
    assert code == 2, output
    assert "'evil_module:make'" in output and repr(spec) in output
    assert trials_done(journal) == 0


def test_worker_does_not_import_from_directories_named_in_the_storage(tmp_path, linreg_study):
    # The storage's workload.path points at the project; consent to the name alone
    # does not let the storage choose where the code comes from. (A fresh process:
    # this one imported the module when it planned the study.)
    config, journal, spec = own_study(tmp_path, linreg_study, "consent_wl_paths")
    stored = find_study_config(f"journal://{journal}")
    assert str(config.parent.resolve()) in stored.workload.path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = Path(sys.executable).with_name("batchlab")
    joined = subprocess.run(
        [str(script), "study", "worker", f"journal://{journal}", "--allow-workload", spec],
        cwd=tmp_path,
        env={**env, "COLUMNS": "240"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = " ".join(joined.stderr.split())
    assert joined.returncode == 2, joined.stdout + joined.stderr
    assert "could not import module 'consent_wl_paths'" in output
    assert "--workload-path" in output
    assert trials_done(journal) == 0


def test_python_work_checks_allowed_workloads(tmp_path, linreg_study, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, journal, spec = own_study(tmp_path, linreg_study, "consent_wl_api")
    url = f"journal://{journal}"
    stored = find_study_config(url).with_workload_path([config.parent])
    with pytest.raises(WorkloadNotAllowed, match=spec):
        work(stored, url, allowed_workloads=[])
    with pytest.raises(TypeError, match="allowed_workloads"):
        work(stored, url, allowed_workloads=spec)  # a string, not a list of names
    assert trials_done(journal) == 0
    assert work(stored, url, allowed_workloads=[spec], max_trials=1) == 1


def test_built_in_workloads_need_no_consent(tmp_path, linreg_study):
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path / "builtin")
    study.prepare()
    assert work(config, study.storage_url, allowed_workloads=(), max_trials=1) == 1
