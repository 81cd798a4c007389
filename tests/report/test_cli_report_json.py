"""``batchlab report --json``: the report's path and its warnings, as JSON on stdout."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.cli._common import EXIT_BAD_INPUT, EXIT_OK

from .conftest import make_results, write_results

runner = CliRunner()


def test_report_json_names_the_file_and_its_warnings(tmp_path):
    # Small and unfinished: three rungs of two trials, the largest still running.
    study = write_results(tmp_path / "small", make_results(batch_sizes=(8, 16, 32), trials=2))
    result = runner.invoke(app, ["report", str(study), "--json"])
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"report", "warnings"}
    assert doc["report"] == str(study / "report.html") and (study / "report.html").is_file()
    warnings = doc["warnings"]
    assert warnings[0].startswith("Analysis impossible: 2 rung(s) reached the target")
    assert warnings[1].startswith("The study is still in progress")
    assert len(warnings) == 6 and all("widen the range" in w for w in warnings[2:])


def test_report_json_bad_directory_is_exit_2_with_nothing_on_stdout(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope"), "--json"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.stdout == "" and "error:" in result.stderr
