"""``batchlab cbs --json``: what OUT/cbs.json holds, on stdout; progress on stderr."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.cli._common import EXIT_OK

from .test_cli_cbs import SMALL

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def test_cbs_json_is_cbs_json_and_no_table(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["cbs", *SMALL, "--checkpoints", "0", "--out", str(out), "--json"], env=ENV
    )
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "cbs.json").read_text())
    assert doc["kind"] == "batchlab-cbs" and [c["step"] for c in doc["checkpoints"]] == [0]
    assert sorted(r["batch_size"] for r in doc["checkpoints"][0]["rungs"]) == [4, 16, 64]
    assert "Steps to the target" not in result.output  # no tables, on either stream
    assert "Critical batch size of" in result.stderr and "Saved" in result.stderr
