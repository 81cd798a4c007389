"""Scriptable: the listing and summarising commands have ``--json``, the exit codes are
the documented ones (docs/cli.md)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.cli._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED

runner = CliRunner()
DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_every_exit_code_is_in_the_documented_table():
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    codes = {row.split("|")[1].strip() for row in rows}
    assert {str(c) for c in (EXIT_OK, EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_INTERRUPTED)} <= codes


@pytest.mark.parametrize(
    "command",
    [
        ["workloads"],
        ["study", "status"],
        ["study", "run"],
        ["study", "resume"],
        ["report"],
        ["noise-scale"],
        ["cbs"],
    ],
)
def test_listing_and_summarising_commands_have_json(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_OK
    assert "--json" in result.stdout
    assert f"`{' '.join(command)}" in DOC.read_text()  # and the page says what it prints
