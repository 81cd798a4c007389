"""``batchlab study ...`` end to end, and a table of bad inputs: one clear line naming
the field, exit code 2, no traceback, no files left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from batchlab.cli import app

from .conftest import NQM_STUDY

runner = CliRunner()
ENV = {"COLUMNS": "240"}


def toml_of(data: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the flat/nested dicts of study configs."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    text = (f"[{prefix}]\n" if prefix and lines else "") + "\n".join(lines) + "\n"
    for key, value in tables:
        text += "\n" + toml_of(value, f"{prefix}.{key}" if prefix else key)
    return text


def write_config(tmp_path: Path, data: dict, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(toml_of(data))
    assert tomllib.loads(path.read_text()) == data  # the writer round-trips
    return path


def changed(path: str, value) -> dict:
    data = json.loads(json.dumps(NQM_STUDY))
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


def test_run_status_and_resume(tmp_path):
    config = write_config(tmp_path, NQM_STUDY)
    out = tmp_path / "runs" / "nqm"
    result = runner.invoke(app, ["study", "run", str(config), "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "steps to loss <= 0.5" in result.output
    assert (out / "results.json").exists() and (out / "results.csv").exists()
    status = runner.invoke(app, ["study", "status", str(out)], env=ENV)
    assert status.exit_code == 0 and "8/8" in status.output
    scripted = runner.invoke(app, ["study", "status", str(out), "--json"], env=ENV)
    assert scripted.exit_code == 0
    rungs = json.loads(scripted.output)["rungs"]
    assert [(r["batch_size"], r["done"], r["planned"]) for r in rungs] == [
        (b, 8, 8) for b in NQM_STUDY["ladder"]["batch_sizes"]
    ]
    again = runner.invoke(app, ["study", "resume", str(out), "--threads", "1"], env=ENV)
    assert again.exit_code == 0, again.output


def test_status_gives_the_learning_rate_at_a_batch_size_between_tuned_rungs(tmp_path):
    config = write_config(tmp_path, changed("search.trials_per_rung", 3))
    out = tmp_path / "nqm"
    assert runner.invoke(app, ["study", "run", str(config), "--out", str(out)]).exit_code == 0
    tuned = [
        (r["batch_size"], r["best_hparams"]["lr"])
        for r in json.loads((out / "results.json").read_text())["rungs"]
        if r["steps_to_target"] is not None
    ]
    (b0, lr0), (b1, lr1) = tuned[:2]
    between = (b0 * b1) ** 0.5  # halfway in log B: the geometric mean of the two LRs
    args = ["study", "status", str(out), "--lr-at", f"{between}"]
    scripted = runner.invoke(app, [*args, "--json"], env=ENV)
    assert scripted.exit_code == 0, scripted.output
    (at,) = json.loads(scripted.output)["lr_at"]
    assert at["lr"] == pytest.approx((lr0 * lr1) ** 0.5, rel=1e-9)
    assert at["bracket"] == pytest.approx(sorted([lr0, lr1]))
    shown = runner.invoke(app, args, env=ENV)
    assert f"{at['lr']:.4g}" in shown.output and f"between rungs {b0} and {b1}" in shown.output
    beyond = runner.invoke(app, ["study", "status", str(out), "--lr-at", "1e6"], env=ENV)
    assert beyond.exit_code == 2 and "not extrapolated" in beyond.output
    assert "Traceback" not in beyond.output


def test_threads_option_sets_the_workers_torch_threads(tmp_path):
    config = write_config(tmp_path, changed("search.trials_per_rung", 2))
    out = tmp_path / "nqm"
    result = runner.invoke(
        app, ["study", "run", str(config), "--out", str(out), "--threads", "1"], env=ENV
    )
    assert result.exit_code == 0, result.output
    rungs = json.loads((out / "results.json").read_text())["rungs"]
    assert {t["threads"] for r in rungs for t in r["trials"]} == {1}


def test_changed_config_is_refused_with_a_diff(tmp_path):
    out = tmp_path / "s"
    assert (
        runner.invoke(
            app, ["study", "run", str(write_config(tmp_path, NQM_STUDY)), "--out", str(out)]
        ).exit_code
        == 0
    )
    edited = write_config(tmp_path, changed("budget.steps", 5000), "edited.toml")
    result = runner.invoke(app, ["study", "run", str(edited), "--out", str(out)], env=ENV)
    assert result.exit_code == 2
    assert "budget.steps: 6000 -> 5000" in result.output
    assert "Traceback" not in result.output
    forced = runner.invoke(
        app, ["study", "run", str(edited), "--out", str(out), "--force"], env=ENV
    )
    assert forced.exit_code == 2 and "would invalidate finished trials" in forced.output


def test_more_trials_per_rung_with_force_extends_the_study(tmp_path):
    out = tmp_path / "s"
    assert (
        runner.invoke(
            app, ["study", "run", str(write_config(tmp_path, NQM_STUDY)), "--out", str(out)]
        ).exit_code
        == 0
    )
    more = write_config(tmp_path, changed("search.trials_per_rung", 12), "more.toml")
    assert (
        runner.invoke(app, ["study", "run", str(more), "--out", str(out)], env=ENV).exit_code == 2
    )
    result = runner.invoke(app, ["study", "run", str(more), "--out", str(out), "--force"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert all(r["trials_done"] == 12 for r in data["rungs"])


BAD_CONFIGS = [
    ("workload.name", "mnist", "unknown workload 'mnist'"),
    ("ladder", {"batch_sizes": []}, "batch_sizes is empty"),
    ("ladder", {"batch_sizes": [0, 4]}, "ladder.batch_sizes.0"),
    ("ladder", {"min": 64, "max": 4}, "min (64) is larger than max (4)"),
    ("optimizer", "adagrad", "unknown optimizer 'adagrad'"),
    ("search.sampler", "grid", "search.sampler"),
    ("search.trials_per_rung", 0, "search.trials_per_rung"),
    ("search.space", {"lr": {"low": 1.0, "high": 0.1}}, "must be smaller than high"),
    ("search.space", {"lr": {"low": -1.0, "high": 0.1, "scale": "log"}}, "log scale needs low > 0"),
    (
        "search.space",
        {"lr": {"low": 0.1, "high": 1.0}, "beta2": {"low": 0.9, "high": 0.99}},
        "'beta2' does not apply",
    ),
    ("budget", {"steps": 5}, "smaller than the evaluation interval"),
    ("budget", {"steps": 100, "examples": 100}, "exactly one of steps or examples"),
    ("evaluation", {"every": 0}, "evaluation.every"),
    (
        "target",
        {"metric": "accuracy", "value": 0.9, "direction": "max"},
        "does not report 'accuracy'",
    ),
    ("target", {"metric": "loss", "value": 0.5, "direction": "sideways"}, "target.direction"),
    ("workload.params", {"dim": -5}, "dim must be a positive integer"),
    ("workload.params", {"dimension": 5}, "has no parameter 'dimension'"),
    ("name", "bad name!", "name"),
    ("storage", "journal://../../outside.journal", "points outside the study directory"),
    ("storage", "sqlite:////etc/batchlab.db", "points outside the study directory"),
    ("seed", -3, "seed"),
    ("typo_field", 1, "typo_field: unknown field"),
    ("workers", {"heartbeat_interval": 10, "grace_period": 5}, "grace_period must be longer"),
    ("performance", {"ensemble_size": 0}, "ensemble_size must be a positive integer"),
    ("schedule", {"decay": "exponential"}, "schedule.decay"),
    ("schedule", {"decay": "cosine"}, "exact curves for a constant learning rate only"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_CONFIGS)
def test_bad_config_is_one_clear_error_and_leaves_nothing_behind(tmp_path, path, value, message):
    config = write_config(tmp_path, changed(path, value))
    out = tmp_path / "out"
    result = runner.invoke(app, ["study", "run", str(config), "--out", str(out)], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert not out.exists()


BAD_CALLS = [
    (["study", "run", "does-not-exist.toml"], "no such file or directory"),
    (["study", "resume", "no-such-dir"], "is not a study directory"),
    (["study", "status", "no-such-dir"], "is not a study directory"),
    (["study", "run", "{config}", "--workers", "0"], "Invalid value for '--workers'"),
    (["study", "run", "{config}", "--threads", "0"], "Invalid value for '--threads'"),
    (["study", "worker", "journal:///{tmp}/missing.journal"], "no journal file at"),
    (["study", "worker", "journal:///{tmp}/empty.journal"], "no batchlab study in storage"),
    (["study", "run", "{broken}"], "invalid TOML"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CALLS)
def test_bad_cli_call_is_one_clear_error(tmp_path, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, NQM_STUDY)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [unclosed\n")
    (tmp_path / "empty.journal").touch()
    args = [a.format(config=config, broken=broken, tmp=str(tmp_path).lstrip("/")) for a in args]
    before = set(tmp_path.iterdir())
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    leftovers = set(tmp_path.iterdir()) - before - {tmp_path / "empty.journal.lock"}
    assert not leftovers
