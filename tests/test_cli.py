"""The batchlab command line: help, version, workloads, errors without tracebacks."""

import pytest
from typer.testing import CliRunner

from batchlab import __version__
from batchlab.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("workloads", "train", "study"):
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


BUILTINS = ("mnist1d-cnn", "digits-mlp", "shakespeare-char", "linreg", "nqm")


@pytest.mark.parametrize("columns", ["200", "60"])
def test_workloads_table_names_every_builtin_whole(columns):
    # A pipe or CI gets a narrow, non-TTY console: the name a user copies is never cut.
    result = runner.invoke(app, ["workloads"], env={"COLUMNS": columns})
    assert result.exit_code == 0
    for name in BUILTINS:
        assert name in result.output
    names = [line.split("│")[1] for line in result.output.splitlines() if line.startswith("│")]
    assert names and not any("…" in cell for cell in names)


def test_workloads_json_is_parsed():
    import json

    result = runner.invoke(app, ["workloads", "--json"], env={"COLUMNS": "40"})
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == list(BUILTINS)
    assert rows[0]["target"] == {"metric": "accuracy", "value": 0.85, "direction": "max"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--workload", "mnist-cnn"], "unknown workload 'mnist-cnn'"),
        (["train", "--workload", "linreg", "--batch-size", "0"], "--batch-size must be positive"),
        (["train", "--workload", "digits-mlp", "--batch-size", "5000"], "at most 1300"),
        (["train", "--workload", "nomodule_xyz:make"], "could not import module 'nomodule_xyz'"),
        (["train", "--workload", "linreg", "--param", "dim"], "--param expects KEY=VALUE"),
        (
            ["train", "--workload", "linreg", "--optimizer", "adagrad"],
            "unknown optimizer 'adagrad'",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(args, message):
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_reaches_the_linreg_target():
    result = runner.invoke(
        app,
        ["train", "--workload", "linreg", "--batch-size", "64", "--lr", "0.5"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Reached excess_loss <= 0.05 at step" in result.output


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["train"], "Step budget [default: the workload's]."),
        (["ramp"], "Cap of the ramp [default: none]."),
        (["study", "run"], "Study directory [default: runs/<name>]."),
        (["report"], "[default: DIR/report.html for one study, else ./report.html]"),
        (["cbs"], "[default: largest branch B]; 0 skips it."),
    ],
)
def test_a_default_written_in_an_options_help_is_shown_not_eaten_as_markup(command, shown):
    # Help text is rich markup: an unescaped "[default: ...]" is read as a style tag
    # and vanishes, leaving "Step budget ." behind.
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert shown in " ".join(result.output.split())
