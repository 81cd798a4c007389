"""``batchlab init``: a study of your own model, scaffolded, smoke-tested, ready to run."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

import optuna
import typer

from .._errors import ConfigError
from ..study import Study, StudyConfig
from ._common import cli_errors, console

MODULE = "my_workload"
CONFIG = "my_study.toml"


def _template(template: str, **fields: str) -> str:
    text = resources.files("batchlab.cli").joinpath("templates", template).read_text()
    return text.format(**fields)


def smoke_config(config: StudyConfig) -> StudyConfig:
    """The study cut to a minute: two rungs, two trials each, a short budget, search only."""
    data = config.to_json_dict()
    sizes = config.batch_sizes()
    data["ladder"] = {"batch_sizes": sorted({sizes[0], sizes[len(sizes) // 2]})}
    data["search"] = {
        **data["search"],
        "trials_per_rung": 2,
        "refine": 0,
        "neighbours": 0,
        "confirm_top": 0,
    }
    data["budget"] = {"steps": 100}
    data["evaluation"] = {"every": 20}
    return StudyConfig.model_validate(data)


def init_command(
    directory: Annotated[
        Path, typer.Argument(help="Where to write my_study.toml and my_workload.py.")
    ] = Path("."),
    smoke: Annotated[
        bool, typer.Option(help="Run a one-minute smoke study of the new files.")
    ] = True,
) -> None:
    """Start a study of your own model: a workload template and a study config.

    Writes DIRECTORY/my_workload.py (a commented workload: replace its data and model
    with yours) and DIRECTORY/my_study.toml, runs a tiny smoke study of them (two
    batch sizes, two trials, 100 steps) and prints the command that runs the real one.
    Existing files are never overwritten.

    Example: batchlab init my_project
    """
    with cli_errors():
        directory.mkdir(parents=True, exist_ok=True)
        files = {directory / f"{MODULE}.py": _template("my_workload.py.txt", module=MODULE)}
        files[directory / CONFIG] = _template("my_study.toml.txt", module=MODULE, name="my-study")
        existing = [str(path) for path in files if path.exists()]
        if existing:
            raise ConfigError(
                f"init: {', '.join(existing)} already exist(s); batchlab init never "
                "overwrites files (choose another directory or remove them)"
            )
        for path, text in files.items():
            path.write_text(text)
            console.print(f"wrote {path}")
        config_path = directory / CONFIG
        if smoke:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            config = smoke_config(StudyConfig.from_toml(config_path))
            with tempfile.TemporaryDirectory(prefix="batchlab-smoke-") as tmp:
                result = Study(config, Path(tmp) / "smoke").run()
            done = sum(r.trials_done for r in result.rungs)
            failed = sum(1 for r in result.rungs for t in r.trials if t.status == "error")
            if failed:
                raise ConfigError(
                    f"init: the smoke study's trials failed ({failed} of {done}); run "
                    f"`batchlab train --workload {MODULE}:make --workload-path {directory}` "
                    "to see the error"
                )
            best = {r.batch_size: r.steps_to_target for r in result.rungs}
            console.print(
                f"smoke study: {done} trials ran at batch sizes {sorted(best)} "
                f"(steps to target in 100 steps: {best})"
            )
        console.print(
            f"Next: edit {directory / (MODULE + '.py')} for your model and data, then\n"
            f"  batchlab study run {config_path} --workers 2"
        )
