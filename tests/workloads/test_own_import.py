"""A workload file beside the config imports without PYTHONPATH, in every process.

[own-model]: ``[workload] name = "my_wl:make"`` with ``my_wl.py`` next to the TOML
resolves from the config's directory and from the current directory, in the main
process, in worker processes and in a ``study worker`` that joins later (with the
worker's consent, ``--allow-workload``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchlab import WorkloadError
from batchlab.study import StudyConfig
from batchlab.workloads import get_workload

WORKLOAD = '''
from batchlab.workloads import get_workload


def make(dim: int = 8):
    """The built-in linreg, as a user's own module:function would build a workload."""
    return get_workload("linreg", {"dim": dim})
'''

STUDY = """
name = "own"
optimizer = "sgd"
seed = 0

[workload]
name = "my_wl_{tag}:make"

[ladder]
batch_sizes = [4, 16]

[search]
trials_per_rung = 2
refine = 0
confirm_top = 0
space.lr = {{ low = 0.05, high = 0.5 }}

[budget]
steps = 200

[evaluation]
every = 10
"""


def project(tmp_path: Path, tag: str) -> Path:
    home = tmp_path / "project"
    home.mkdir()
    (home / f"my_wl_{tag}.py").write_text(WORKLOAD)
    (home / "my_study.toml").write_text(STUDY.format(tag=tag))
    return home


def batchlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (``python -m`` would put the
    current directory on sys.path by itself, hiding what this test checks)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = Path(sys.executable).with_name("batchlab")
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("where", ["beside", "parent"])
def test_study_run_imports_the_workload_beside_its_config(tmp_path, where):
    home = project(tmp_path, where)
    cwd = home if where == "beside" else tmp_path
    config = home / "my_study.toml"
    out = tmp_path / "runs" / "own"
    run = batchlab("study", "run", str(config), "--out", str(out), "--workers", "2", cwd=cwd)
    assert run.returncode == 0, run.stderr + run.stdout
    result = json.loads((out / "results.json").read_text())
    assert all(r["trials_done"] == 2 for r in result["rungs"])
    # A worker joining later on "another machine": the config's directory does not
    # exist there, the project is checked out elsewhere and the worker starts in it.
    elsewhere = tmp_path / "checkout"
    home.rename(elsewhere)
    storage = f"journal://{out / 'optuna.journal'}"
    # The storage names the workload; the worker imports it only with local consent.
    spec = f"my_wl_{where}:make"
    refused = batchlab("study", "worker", storage, cwd=elsewhere)
    assert refused.returncode == 2, refused.stderr + refused.stdout
    assert f"--allow-workload {spec}" in " ".join(refused.stderr.split())
    joined = batchlab("study", "worker", storage, "--allow-workload", spec, cwd=elsewhere)
    assert joined.returncode == 0, joined.stderr + joined.stdout
    assert "No trials left" in joined.stdout


def test_config_path_is_absolute_and_ends_with_the_config_directory(tmp_path):
    home = project(tmp_path, "paths")
    (home / "my_study.toml").write_text(
        STUDY.format(tag="paths").replace(
            'name = "my_wl_paths:make"', 'name = "my_wl_paths:make"\npath = ["lib"]'
        )
    )
    config = StudyConfig.from_toml(home / "my_study.toml")
    assert config.workload.path == [str((home / "lib").resolve()), str(home.resolve())]
    extra = config.with_workload_path([tmp_path])
    assert extra.workload.path[0] == str(tmp_path.resolve())


def test_import_from_a_path_directory_in_process(tmp_path):
    home = project(tmp_path, "inproc")
    workload = get_workload("my_wl_inproc:make", {"dim": 4}, [home])
    assert workload.name == "linreg"


def test_a_missing_module_says_where_it_looked(tmp_path):
    with pytest.raises(WorkloadError) as error:
        get_workload("no_such_module_xyz:make", {}, [tmp_path])
    message = str(error.value)
    assert str(tmp_path.resolve()) in message and str(Path.cwd()) in message
    assert "--workload-path" in message
