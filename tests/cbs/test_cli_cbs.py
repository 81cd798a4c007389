"""``batchlab cbs``: tables, cbs.json, the report, checkpoints reused, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}
SMALL = ["--workload", "linreg", "-p", "dim=16", "--optimizer", "sgd", "--lr", "0.1",
         "--base-batch-size", "8", "--batch-sizes", "4,16,64", "--lr-rule", "linear",
         "--improvement", "0.3", "--max-steps", "300", "--eval-resolution", "0",
         "--noise-batch-size", "64"]  # fmt: skip


def test_cbs_writes_cbs_json_and_a_report(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoints", "0,20", "--out", str(out), "--report",
              "--save-checkpoints"], env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Critical batch size over training" in result.output and "B_simple" in result.output
    assert "Steps to the target" in result.output
    data = json.loads((out / "cbs.json").read_text())
    assert data["kind"] == "batchlab-cbs" and [c["step"] for c in data["checkpoints"]] == [0, 20]
    assert data["settings"]["lr_rule"] == "linear" and data["hparams"] == {"lr": 0.1}
    assert (out / "report.html").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000000.pt", "step_00000020.pt"
    ]  # fmt: skip

    # Branch again from the saved checkpoints: same states, same measurement.
    again = tmp_path / "again"
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoint-dir", str(out / "checkpoints"), "--checkpoints", "20",
              "--out", str(again)], env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reused = json.loads((again / "cbs.json").read_text())["checkpoints"]
    assert len(reused) == 1 and reused[0]["rungs"] == data["checkpoints"][1]["rungs"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --checkpoints"),
        (["--checkpoints", "0", "--batch-sizes", "4,x"], "--batch-sizes expects comma-separated"),
        (["--checkpoints", "0", "--improvement", "0.1", "--improvement-delta", "0.1"], "not both"),
        (["--checkpoints", "0", "--lr-rule", "cubic"], "lr_rule must be one of"),
        (["--checkpoints", "0", "--optimizer-state", "keep"], "--optimizer-state must be one of"),
        (["--checkpoints", "0", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    base = [a for a in SMALL if a not in ("--improvement", "0.3")]
    result = runner.invoke(app, ["cbs", *base, *args, "--out", str(tmp_path)], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_checkpoints_of_another_workload_are_refused(tmp_path):
    out = tmp_path / "run"
    runner.invoke(app, ["cbs", *SMALL, "--checkpoints", "0", "--noise-batch-size", "0",
                        "--out", str(out), "--save-checkpoints"], env=ENV)  # fmt: skip
    result = runner.invoke(
        app, ["cbs", "--workload", "nqm", "--checkpoint-dir", str(out / "checkpoints"),
              "--batch-sizes", "4,8,16", "--out", str(tmp_path / "x")], env=ENV,
    )  # fmt: skip
    assert result.exit_code == 2 and "of workload 'linreg'" in result.output


def test_help_has_examples():
    result = runner.invoke(app, ["cbs", "--help"], env=ENV)
    assert result.exit_code == 0 and "batchlab cbs --workload linreg" in result.output
