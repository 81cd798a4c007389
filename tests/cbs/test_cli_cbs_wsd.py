"""``batchlab cbs --schedule wsd``: the schedule is recorded, printed, and checked."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from batchlab.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}
SMALL = ["--workload", "linreg", "-p", "dim=8", "--optimizer", "sgd", "--lr", "0.1",
         "--base-batch-size", "4", "--batch-sizes", "4,8,16", "--lr-rule", "none",
         "--improvement", "0.3", "--max-steps", "40", "--noise-batch-size", "0"]  # fmt: skip


def test_wsd_schedule_is_printed_and_saved(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoints", "6", "--schedule", "wsd", "--warmup-steps", "4",
              "--cooldown-fraction", "0.2", "--cooldown-decay", "cosine", "--out", str(out)],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Schedule: WSD (warmup 4 steps" in result.output
    assert "cosine cooldown over 20% of each branch" in result.output
    data = json.loads((out / "cbs.json").read_text())
    assert data["schedule"]["name"] == "wsd"
    assert data["schedule"]["cooldown"] == {"fraction": 0.2, "examples": None, "decay": "cosine"}


def test_constant_schedule_is_printed(tmp_path):
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoints", "0", "--out", str(tmp_path / "c")], env=ENV
    )
    assert result.exit_code == 0, result.output
    assert "Schedule: constant LR" in result.output


def test_checkpoint_in_the_warmup_is_a_one_line_error(tmp_path):
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoints", "2", "--schedule", "wsd", "--warmup-steps", "4",
              "--out", str(tmp_path / "bad")], env=ENV,
    )  # fmt: skip
    assert result.exit_code != 0
    assert "step 2 is in the warmup phase" in result.output
